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
from autograde.checks.messages import message
from autograde.checks.registry import get_check


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
    it blocks imports of the reference); by default each name is resolved now."""
    saved = []
    for dotted in names:
        found = targets.get(dotted) if targets is not None else _resolve(dotted)
        if found is None:
            continue
        owner, attr = found

        def tripwire(*args, _name=dotted, **kwargs):
            raise ForbiddenCall(_name)

        own = attr in vars(owner)
        saved.append((owner, attr, vars(owner).get(attr), own))
        setattr(owner, attr, tripwire)
    try:
        yield
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


def call(fn: Callable, args: tuple, kwargs: dict, drive: str | None = None):
    """fn(*args, **kwargs), or the driver named by a case's `drive` around it."""
    if drive is None:
        return fn(*args, **kwargs)
    kind, _, n = drive.partition(":")
    if kind != "greedy" or not n.isdigit():
        raise ValueError(f"unknown driver {drive!r}")
    return drive_greedy(fn, *args, new_tokens=int(n), **kwargs)


def call_student(fn: Callable, case: Case, forbidden: tuple[str, ...] = ()) -> tuple[Any, Verdict | None]:
    """Call fn on one case. Returns (output, None) or (None, failing verdict)."""
    try:
        with forbid(forbidden):
            return call(fn, case.args, case.kwargs, case.drive), None
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
              device: str | torch.device = "cpu") -> dict:
    """All cases of one step. Returns {"step", "passed", "key", "params", "case", "n", "seed"}."""
    check = get_check(step)
    seed = draw_seed(hidden) if seed is None else seed
    result = {"step": step, "seed": seed, "hidden": hidden, "points": check.points}
    if fn is None or not callable(fn):
        return {**result, "passed": False, "key": "missing_function", "params": {"function": check.function},
                "case": "", "n": 0}
    cases = check.cases(seed, hidden)
    for case in cases:
        case = dataclasses.replace(case, args=tuple(_to(a, device) for a in case.args))
        # the student gets copies, so that changing an input in place (x += ...) cannot change
        # the inputs the reference is computed from afterwards
        mine = dataclasses.replace(case, args=tuple(_to(a, device, copy=True) for a in case.args),
                                   kwargs=dict(case.kwargs))
        output, failure = call_student(fn, mine, check.forbidden)
        if failure is not None and failure.key == "raised":   # a known mistake that raises?
            failure.key = check.explain_raised(case, failure.params["error"], failure.params["text"]) or "raised"
        verdict = failure or check.judge(case, output)
        if not verdict.passed:
            return {**result, "passed": False, "key": verdict.key, "params": _jsonable(verdict.params),
                    "case": verdict.case, "n": len(cases)}
    return {**result, "passed": True, "key": "ok", "params": {}, "case": "", "n": len(cases)}


def describe(result: dict, lang: str) -> str:
    """One line of feedback in the notebook's language."""
    if result["passed"]:
        return "✅ " + message("passed_cases", lang, step=result["step"], n=result["n"])
    detail = message(result["key"], lang, **result["params"])
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
