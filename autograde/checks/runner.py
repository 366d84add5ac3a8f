"""Run one check against a student's function, in the current process.

Used directly by notebooks (self-check) and, inside the sandbox, by the
grader's worker. The verdict is a plain dict so it can cross a process
boundary as JSON.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
from typing import Any, Callable

import torch

from autograde.checks.core import Case, Verdict, draw_seed
from autograde.checks.messages import message, register_messages
from autograde.checks.registry import get_check


register_messages({
    "mutated_input": {
        "en": "your function changed its argument {argument} in place; the caller's value must come back unchanged "
              "(write x = x / t, not x /= t; copy a list before changing it)",
        "ko": "함수가 인자 {argument}의 값을 제자리에서 바꿨습니다. 호출한 쪽의 값은 그대로 돌아가야 합니다 "
              "(x /= t 대신 x = x / t로 쓰고, 리스트는 복사한 다음 고치세요)"},
    "raised_for_input": {
        "en": "your function raised {error} ({text}) for this input, though it returned for the others: something "
              "that sets this input apart (its size, a length of 0 or 1, a value at a boundary, a missing field) breaks "
              "an assumption of your code, and this step expects a result for it too",
        "ko": "이 입력에서 함수가 {error} 예외를 일으켰습니다 ({text}). 다른 입력에서는 값을 돌려주었으므로, 이 입력만의 "
              "특징(크기, 길이 0이나 1, 경계에 걸친 값, 빠진 항목)이 코드의 가정을 깨뜨린 것입니다. 이 단계는 이 입력에도 "
              "결과를 기대합니다"},
    "dependency_failed": {
        "en": "this function calls {dependency}, which does not pass its own check yet: fix that first, "
              "this failure may only be its consequence. Here:",
        "ko": "이 함수가 호출하는 {dependency} 단계가 아직 자기 검사를 통과하지 못했습니다. 그쪽을 먼저 고치세요. "
              "여기서 난 실패는 그 결과일 수 있습니다. 이번 결과:"},
})


class ForbiddenCall(Exception):
    """Raised when a step's function calls something the step forbids."""


def _resolve(dotted: str):
    """'torch.Tensor.softmax' -> (torch.Tensor, 'softmax'), importing the module part."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name, None)
        return (owner, parts[-1]) if owner is not None and hasattr(owner, parts[-1]) else None
    return None


@contextlib.contextmanager
def forbid(names: tuple[str, ...], targets: dict | None = None):
    """Temporarily replace dotted attributes (e.g. torch.nn.functional.softmax) by a tripwire.

    targets: name -> (owner, attribute) resolved earlier (the grader's worker resolves them before
    it blocks imports of the reference); by default each name is resolved now.

    Yields a list that each tripwire appends its name to before it raises: a caller that
    catches ForbiddenCall (a bare `except Exception`) does not hide the call."""
    saved, tripped = [], []
    for dotted in names:
        found = targets.get(dotted) if targets is not None else _resolve(dotted)
        if found is None:
            continue
        owner, attr = found

        def tripwire(*args, _name=dotted, **kwargs):
            tripped.append(_name)
            raise ForbiddenCall(_name)

        own = attr in vars(owner)
        saved.append((owner, attr, vars(owner).get(attr), own))
        setattr(owner, attr, tripwire)
    try:
        yield tripped
    finally:
        for owner, attr, original, own in reversed(saved):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)


def drive_greedy(forward: Callable, ids: torch.Tensor, *rest, new_tokens: int, **kwargs) -> list[int]:
    """Greedy decoding with a forward pass: ids (1, T) -> logits (1, T, V); returns the new ids."""
    new_ids = []
    for _ in range(new_tokens):
        logits = forward(ids, *rest, **kwargs)                    # (1, T, V)
        token = logits[:, -1, :].argmax(dim=-1, keepdim=True)      # (1, 1)
        ids = torch.cat([ids, token.to(ids.dtype)], dim=1)         # (1, T + 1)
        new_ids.append(int(token))
    return new_ids


def drive_grad(loss_fn: Callable, logp: torch.Tensor, old_logp, *rest, **kwargs):
    """A loss of log-probs and its gradient: (loss, d loss / d logp), both detached.

    logp becomes a leaf that requires grad; old_logp None means "the same tensor as logp" (the
    first gradient step on a batch, where the sampling policy is the policy): a loss that does not
    detach it then loses the surrogate's gradient, which only the gradient shows. A loss that is not
    a scalar tensor comes back as it is (the judge names it); one that no gradient reaches gives zeros."""
    logp = logp.detach().clone().requires_grad_(True)
    loss = loss_fn(logp, logp if old_logp is None else old_logp, *rest, **kwargs)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        return loss
    grad = torch.autograd.grad(loss.reshape(()), logp, allow_unused=True)[0] if loss.requires_grad else None
    return loss.detach().reshape(()), torch.zeros_like(logp) if grad is None else grad.detach()


def call(fn: Callable, args: tuple, kwargs: dict, drive: str | None = None):
    """fn(*args, **kwargs), or the driver named by a case's `drive` around it."""
    if drive is None:
        return fn(*args, **kwargs)
    if drive == "grad":
        return drive_grad(fn, *args, **kwargs)
    kind, _, n = drive.partition(":")
    if kind != "greedy" or not n.isdigit():
        raise ValueError(f"unknown driver {drive!r}")
    return drive_greedy(fn, *args, new_tokens=int(n), **kwargs)


# ----------------------------------------------------------------------------
# inputs must come back unchanged


def snapshot(value, depth: int = 0):
    """A private copy of the parts of an argument that a function could change in place:
    tensors, and the lists, dicts and tuples holding them (or ints, strings, ...). Anything
    else (a model, a generator, whose state is meant to move) is kept as None: not compared."""
    if depth > 8:
        return None
    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():          # a subclass's overrides do not run here
            return torch.Tensor.as_subclass(value, torch.Tensor).detach().clone()
    if type(value) in (list, tuple):
        return type(value)(snapshot(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: snapshot(v, depth + 1) for k, v in value.items()}
    if value is None or type(value) in (int, float, str, bytes, bool):
        return value
    return None


def changed(before, after, where: str = "") -> str | None:
    """Where `after` (the argument after the call) differs from its snapshot `before`, e.g.
    'argument 1' or 'argument 2[3]'; None when nothing the snapshot covers changed."""
    if before is None and after is not None and not isinstance(after, (torch.Tensor, list, dict, tuple)):
        return None                                     # not covered by the snapshot
    if isinstance(before, torch.Tensor):
        if not isinstance(after, torch.Tensor) or tuple(after.shape) != tuple(before.shape) \
                or after.dtype != before.dtype:
            return where
        with torch._C.DisableTorchFunctionSubclass():
            a = torch.Tensor.as_subclass(after, torch.Tensor).detach()
            same = torch.equal(a, before) or (a.dtype.is_floating_point and
                                              bool(((a == before) | (a.isnan() & before.isnan())).all()))
        return None if same else where
    if type(before) in (list, tuple, dict):
        if type(after) is not type(before) or len(after) != len(before):
            return where
        keys = list(before) if type(before) is dict else range(len(before))
        for k in keys:
            if type(before) is dict and k not in after:
                return where
            found = changed(before[k], after[k], f"{where}[{k!r}]")
            if found is not None:
                return found
        return None
    if before is not None and (type(after) is not type(before) or after != before):
        return where
    return None


def changed_argument(snapshots: tuple, args: tuple, kwargs_snapshot: dict, kwargs: dict) -> str | None:
    """The first argument that the call changed in place ('1' for the first, '2[0]' for an item of
    the second, 'mask' for a keyword argument), or None."""
    for i, (before, after) in enumerate(zip(snapshots, args)):
        found = changed(before, after, f"{i + 1}")
        if found is not None:
            return found
    for name, before in kwargs_snapshot.items():
        found = changed(before, kwargs.get(name), str(name))
        if found is not None:
            return found
    return None


def call_student(fn: Callable, case: Case, forbidden: tuple[str, ...] = ()) -> tuple[Any, Verdict | None]:
    """Call fn on one case. Returns (output, None) or (None, failing verdict)."""
    try:
        before = tuple(snapshot(a) for a in case.args), {k: snapshot(v) for k, v in case.kwargs.items()}
        with forbid(forbidden) as tripped:
            output = call(fn, case.args, case.kwargs, case.drive)
        if tripped:
            raise ForbiddenCall(tripped[0])
        where = changed_argument(before[0], case.args, before[1], case.kwargs)
        if where is not None:
            return None, Verdict(False, "mutated_input", {"argument": where}, case.label)
        return output, None
    except NotImplementedError:
        return None, Verdict(False, "not_implemented", {"function": getattr(fn, "__name__", "?")}, case.label)
    except ForbiddenCall as exc:
        return None, Verdict(False, "forbidden_call", {"name": str(exc)}, case.label)
    except Exception as exc:  # the student's bug, reported, never re-raised
        error, text = type(exc).__name__, str(exc)[:300]
        if case.raises:   # the case expects an exception: the right class passes
            if case.raises in {cls.__name__ for cls in type(exc).__mro__}:
                return None, Verdict(True, "ok", {}, case.label)
            return None, Verdict(False, "wrong_exception", {"expected": case.raises, "error": error, "text": text},
                                 case.label)
        return None, Verdict(False, "raised", {"error": error, "text": text}, case.label)


def run_check(step: str, fn: Callable | None, hidden: bool = False, seed: int | None = None,
              device: str | torch.device = "cpu", remember: bool = False) -> dict:
    """All cases of one step. Returns {"step", "passed", "key", "params", "case", "n", "seed"}.

    remember: record the outcome in LAST_RESULTS and, when this step fails without a named mistake
    while a step it depends on failed its latest check, say so (the notebook's check() does this;
    a process that checks unrelated functions one after another, like a test, should not)."""
    check = get_check(step)
    seed = draw_seed(hidden, step) if seed is None else seed
    result = {"step": step, "seed": seed, "hidden": hidden, "points": check.points}
    if fn is None or not callable(fn):
        return {**result, "passed": False, "key": "missing_function", "params": {"function": check.function},
                "case": "", "n": 0}
    cases = check.cases(seed, hidden)
    for index, case in enumerate(cases):
        case = dataclasses.replace(case, args=tuple(_to(a, device) for a in case.args))
        output, failure = _call_on_copies(fn, case, check.forbidden, device)
        if failure is not None and failure.key == "raised":   # a known mistake that raises?
            failure.key = check.explain_raised(case, failure.params["error"], failure.params["text"]) or \
                _raised_here(fn, cases, index, check.forbidden, device)
        verdict = failure or check.judge(case, output)
        if not verdict.passed:
            if failure is None:                                  # which known mistake: the other cases decide
                check.narrow(verdict, case, output, _other_outputs(fn, cases, index, check.forbidden, device))
            failed = {**result, "passed": False, "key": verdict.key, "params": _jsonable(verdict.params),
                      "case": verdict.case, "n": len(cases)}
            if not remember:
                return failed
            LAST_RESULTS[step] = False
            return blame_dependency(failed, check.depends, LAST_RESULTS)
    if remember:
        LAST_RESULTS[step] = True
    return {**result, "passed": True, "key": "ok", "params": {}, "case": "", "n": len(cases)}


def _call_on_copies(fn, case: Case, forbidden, device):
    """call_student with copies of the inputs, so that changing one in place (x += ...) cannot
    change the inputs the reference is computed from afterwards."""
    mine = dataclasses.replace(case, args=tuple(_to(a, device, copy=True) for a in case.args),
                               kwargs=dict(case.kwargs))
    return call_student(fn, mine, forbidden)


def _raised_here(fn, cases, failed: int, forbidden, device) -> str:
    """"raised_for_input" when the function returns for another case (this input's own property broke it),
    "raised" when it raises for every input."""
    returned = next(_other_outputs(fn, cases, failed, forbidden, device), None)
    return "raised" if returned is None else "raised_for_input"


def _other_outputs(fn, cases, failed: int, forbidden, device):
    """(case, output) for every case but the failed one whose call returns (lazily: only as many
    as it takes to tell the candidate mistakes apart)."""
    for index, case in enumerate(cases):
        if index != failed:
            case = dataclasses.replace(case, args=tuple(_to(a, device) for a in case.args))
            output, failure = _call_on_copies(fn, case, forbidden, device)
            if failure is None:
                yield case, output


LAST_RESULTS: dict[str, bool] = {}     # step -> passed, the latest check of each step in this process


# Failures that say only that the output is off: these may come from a dependency. A named mistake
# of the step itself, a forbidden call, a changed input, a tampered library ... stay as they are.
UNEXPLAINED = frozenset({"wrong_values", "wrong_value", "wrong_item", "wrong_shape", "wrong_type", "wrong_dtype",
                         "wrong_length", "wrong_keys", "nan_output", "inf_output", "raised", "timeout",
                         "wrong_exception", "did_not_raise", "wrong_generated_token", "grader_crashed",
                         "wrong_dtype_precision", "lost_precision", "float_for_int", "raised_for_input"})


def blame_dependency(result: dict, depends: tuple[str, ...], passed: dict[str, bool]) -> dict:
    """A failed result, with no known mistake of its own, whose function calls a step that failed
    its own check too: say to fix that one first (the failure here may be its consequence),
    keeping this step's own detail.

    passed: step -> whether its latest check passed (in the grader: this submission's results)."""
    broken = [d for d in depends if passed.get(d) is False]
    if result["passed"] or not broken or result["key"] not in UNEXPLAINED:
        return result
    detail = {"key": result["key"], "params": result["params"]}
    return {**result, "key": "dependency_failed",
            "params": {"dependency": ", ".join(broken), "detail_key": detail["key"], **detail["params"]}}


def describe(result: dict, lang: str) -> str:
    """One line of feedback in the notebook's language."""
    if result["passed"]:
        return "✅ " + message("passed_cases", lang, step=result["step"], n=result["n"])
    detail = message(result["key"], lang, **result["params"])
    if result["key"] == "dependency_failed":
        detail += " " + message(str(result["params"].get("detail_key", "")), lang, **result["params"])
    if result["case"]:
        detail = message("case", lang, case=result["case"]) + detail
    return "❌ " + message("failed", lang, step=result["step"], detail=detail)


def _to(value, device, copy: bool = False):
    """Tensors, also inside plain dicts, lists and tuples (a layer's weights by name), to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, copy=copy)
    if type(value) is dict:
        return {k: _to(v, device, copy) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_to(v, device, copy) for v in value)
    return value


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
    return out
