"""The check machinery shared by notebooks (self-check) and the grader.

A check is split in three so that the trusted and untrusted sides can live in
different processes:

    cases = check.cases(seed, hidden)          # trusted: inputs (tensors / JSON values)
    outputs = [student_fn(*c.args) for c ...]  # untrusted: the student's code
    verdict = check.judge(case, output)        # trusted: compare with the reference

In a notebook all three run in one process (`check(...)` below). The grader
runs the middle step in a sandboxed child process and ships inputs and outputs
across as tensors or JSON (autograde.protocol), never as pickles.

Feedback names the mistake: each check may list *mutants*, reference variants
that make a known mistake (no 1/sqrt(d_k), softmax over the wrong axis, ...).
When the student's output is wrong but matches a mutant, the verdict carries
that mistake's message key (autograde.checks.messages).
"""
from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from autograde.checks.messages import message
from autograde.checks.tolerance import close, tolerance_for

_LANGUAGE = "en"


def set_language(lang: str) -> None:
    """Notebooks call this once in their first cell ("en" or "ko")."""
    global _LANGUAGE
    if lang not in ("en", "ko"):
        raise ValueError(f"language must be 'en' or 'ko', not {lang!r}")
    _LANGUAGE = lang


def get_language() -> str:
    return _LANGUAGE


@dataclass
class Case:
    """One call of the student's function: positional arguments and a label.

    raises: the name of an exception class the call must raise (a subclass
    counts, matched by the names in its MRO so that the verdict can cross a
    process boundary), e.g. "ValueError"; None when the call must return.
    drive: None (one call), or "greedy:N": the function is a model's forward,
    ids (1, T) -> logits (1, T, V), and the output is the N tokens that greedy
    decoding with it writes after args[0] (runner.drive_greedy, run where the
    student's code runs: in the notebook, or in the grader's sandbox); or "grad":
    the function is a loss of log-probs args[0], and the output is (loss, its
    gradient with respect to args[0]) (runner.drive_grad).
    """
    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    raises: str | None = None
    drive: str | None = None


@dataclass
class Verdict:
    passed: bool
    key: str = "ok"                 # message key in the catalog
    params: dict = field(default_factory=dict)
    case: str = ""

    def text(self, lang: str | None = None) -> str:
        return message(self.key, lang or _LANGUAGE, **self.params)


class Check:
    """Base class. Subclasses set `step`, `function`, and implement cases/reference.

    step:     stable id, e.g. "attention.sdpa"; also the grade_id stem.
    function: the name the student's notebook defines, e.g. "scaled_dot_product_attention".
    points:   nbgrader points for the graded cell.
    mutants:  {mistake message key: callable with the reference's signature}.
    forbidden: dotted names the student's function may not call in this step,
              e.g. ("torch.nn.functional.scaled_dot_product_attention",).
    forbidden_names: like forbidden, but refused only by the grader's static pass, by name (for functions
              whose module costs seconds to import, so that no tripwire is set on them at each call).
    needs_reference: the cases pass the reference model (a $model on the wire), so the
              grader's sandbox must load it (and the notebook's setup may import it).
    depends:  step ids whose functions this step's function normally calls (sample_next calls
              top_k_filter, ...). When this step fails and one of them failed too, the feedback
              says to fix that one first instead of blaming this step.
    """
    step: str = ""
    function: str = ""
    points: int = 1
    mutants: dict[str, Callable] = {}
    forbidden: tuple[str, ...] = ()
    forbidden_names: tuple[str, ...] = ()
    needs_reference: bool = False
    depends: tuple[str, ...] = ()

    # -- inputs -------------------------------------------------------------
    def cases(self, seed: int, hidden: bool) -> list[Case]:
        raise NotImplementedError

    def reference(self, *args, **kwargs):
        raise NotImplementedError

    # -- verdicts -----------------------------------------------------------
    def judge(self, case: Case, output: Any) -> Verdict:
        """Default: compare tensors/lists/numbers with the reference output."""
        if case.raises:   # the call returned, but it had to raise
            return Verdict(False, "did_not_raise", {"error": case.raises, "got": _fmt(output)}, case.label)
        expected = self.reference(*case.args, **case.kwargs)
        verdict = compare_outputs(output, expected, label=case.label)
        if not verdict.passed:
            mistake = self.diagnose(case, output)
            if mistake:
                verdict.key, verdict.params = mistake, {**verdict.params, "where": case.label}
        return verdict

    def explain_raised(self, case: Case, error: str, text: str) -> str | None:
        """A known mistake that shows up as an exception instead of a wrong output.

        Called when the student's function raised although the case expects a
        result. `error` is the exception's class name and `text` its message
        (what crosses the sandbox boundary). Return a mistake message key (its
        message may use {error} and {text}), or None for the generic "raised".
        """
        return None

    def mistakes(self, case: Case, output: Any) -> list[str]:
        """Every known mistake whose output matches the student's on this case, in order."""
        return list(self._matching(case, output))

    def _matching(self, case: Case, output: Any):
        """The known mistakes whose output matches the student's, lazily, in the check's order.

        A mutant entry is one callable or a list/tuple of callables: several ways to make the
        same mistake (the first variant that matches names it). A mutant is written like a student's
        function, so it is called the way the student's is: through the case's driver, if any."""
        from autograde.checks.runner import call

        for key, mutants in self.mutants.items():
            for mutant in mutants if isinstance(mutants, (list, tuple)) else (mutants,):
                try:
                    wrong = call(mutant, case.args, case.kwargs, case.drive)
                except Exception:
                    continue
                if compare_outputs(output, wrong, label=case.label).passed:
                    yield key
                    break

    def narrow(self, verdict: Verdict, case: Case, output: Any, rest) -> None:
        """When the first failing case fits several known mistakes, let the other cases decide:
        the true mistake gives the student's output on every case. rest: (case, output) pairs of
        the other cases whose call returned. Sets verdict.key to the first mistake (in the check's
        order) that fits all the cases it can be told apart on."""
        if verdict.key not in self.mutants:
            return
        candidates = self.mistakes(case, output)
        for other, out in rest:
            if len(candidates) < 2:
                break
            matching = self.mistakes(other, out)
            fits = [k for k in candidates if k in matching]
            if fits:                        # none fits: a variant of a mistake that no mutant spells
                candidates = fits
        if candidates:
            verdict.key = candidates[0]

    def diagnose(self, case: Case, output: Any) -> str | None:
        """The first known mistake whose output matches the student's."""
        return next(self._matching(case, output), None)


def compare_outputs(output, expected, label: str = "") -> Verdict:
    """Structural comparison with per-dtype tolerances and a precise message."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(output, torch.Tensor):
            return Verdict(False, "wrong_type", {"expected": "torch.Tensor", "got": type(output).__name__}, label)
        if tuple(output.shape) != tuple(expected.shape):
            return Verdict(False, "wrong_shape", {"expected": tuple(expected.shape), "got": tuple(output.shape)}, label)
        if output.dtype.is_floating_point != expected.dtype.is_floating_point:
            return Verdict(False, "wrong_dtype", {"expected": str(expected.dtype), "got": str(output.dtype)}, label)
        out = output.detach().to("cpu")
        exp = expected.detach().to("cpu")
        if out.dtype.is_floating_point:
            bad = torch.isnan(out) & ~torch.isnan(exp)
            if bad.any():
                return Verdict(False, "nan_output", {"index": _first_index(bad)}, label)
            bad = torch.isinf(out) & ~torch.isinf(exp)
            if bad.any():
                return Verdict(False, "inf_output", {"index": _first_index(bad)}, label)
            # an expected inf (a masked score, a filtered logit) must be that same inf: the relative
            # tolerance rtol * |inf| would otherwise accept any value there
            bad = torch.isinf(exp) & (out != exp)
            if bad.any():
                idx = _first_index(bad)
                return Verdict(False, "wrong_values", {"index": idx, "expected": _fmt(exp[idx]), "got": _fmt(out[idx]),
                                                       "max_diff": "inf"}, label)
        if not close(out, exp, tolerance_for(exp.dtype, output.device)):
            diff = (out.double() - exp.double()).abs().nan_to_num(float("inf")) if out.dtype.is_floating_point \
                else (out != exp).double()
            idx = _first_index(diff == diff.max())
            params = {"index": idx, "expected": _fmt(exp[idx]), "got": _fmt(out[idx]), "max_diff": f"{float(diff.max()):.3g}",
                      "got_dtype": str(output.dtype).removeprefix("torch.")}
            return Verdict(False, _precision_lost(out, exp, output.device) or "wrong_values", params, label)
        return Verdict(True, case=label)
    if isinstance(expected, (list, tuple)):
        if not isinstance(output, (list, tuple)):
            return Verdict(False, "wrong_type", {"expected": type(expected).__name__, "got": type(output).__name__}, label)
        if len(output) != len(expected):
            return Verdict(False, "wrong_length", {"expected": len(expected), "got": len(output)}, label)
        for i, (o, e) in enumerate(zip(output, expected)):
            v = compare_outputs(o, e, label)
            if not v.passed:
                v.params.setdefault("index", i)
                return v
        return Verdict(True, case=label)
    if isinstance(expected, dict):
        if not isinstance(output, dict):
            return Verdict(False, "wrong_type", {"expected": "dict", "got": type(output).__name__}, label)
        if set(output) != set(expected):
            missing = sorted(set(expected) - set(output), key=str)[:3]
            extra = sorted(set(output) - set(expected), key=str)[:3]
            return Verdict(False, "wrong_keys", {"missing": missing, "extra": extra}, label)
        for k in expected:
            v = compare_outputs(output[k], expected[k], label)
            if not v.passed:
                v.params.setdefault("index", k)
                return v
        return Verdict(True, case=label)
    if type(expected) is int and isinstance(output, float) and output == expected:
        return Verdict(False, "float_for_int", {"expected": _fmt(expected), "got": _fmt(output)}, label)
    if isinstance(expected, float):
        if not isinstance(output, (int, float)) or isinstance(output, bool) or not math.isclose(
                float(output), expected, rel_tol=1e-5, abs_tol=1e-6):
            return Verdict(False, "wrong_value", {"expected": _fmt(expected), "got": _fmt(output)}, label)
        return Verdict(True, case=label)
    # exact types: int, str, bytes, bool, None. type() is checked first so that an
    # object whose __eq__ always says True cannot pass.
    if type(output) is not type(expected) or output != expected:
        return Verdict(False, "wrong_value", {"expected": _fmt(expected), "got": _fmt(output)}, label)
    return Verdict(True, case=label)


def _precision_lost(out: torch.Tensor, exp: torch.Tensor, device) -> str | None:
    """A float64 result that misses float64's tolerance but meets float32's: the values are right, computed (or
    returned) in float32 somewhere. "wrong_dtype_precision" when the output's dtype itself is float32 (or
    half), "lost_precision" when it is float64 again. None otherwise: a real difference in the values."""
    if exp.dtype != torch.float64 or not out.dtype.is_floating_point:
        return None
    smaller = out.dtype if out.dtype != torch.float64 else torch.float32
    if not close(out, exp, tolerance_for(smaller, device)):
        return None
    return "wrong_dtype_precision" if out.dtype != torch.float64 else "lost_precision"


def dtype_kept(verdict: Verdict, output, expected) -> Verdict:
    """A passing verdict fails with wrong_dtype where a tensor of the output (in lists and tuples too) has
    another dtype than the reference's: compare_outputs accepts any float dtype, and a float64 result
    within float32's tolerance is still a bug (twice the memory; it promotes whatever it meets)."""
    pairs = [(output, expected)] if verdict.passed else []
    while pairs:
        out, exp = pairs.pop()
        if isinstance(out, torch.Tensor) and isinstance(exp, torch.Tensor) and out.dtype != exp.dtype:
            return Verdict(False, "wrong_dtype", {"expected": str(exp.dtype), "got": str(out.dtype)}, verdict.case)
        if isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple)):
            pairs.extend(zip(out, exp))
    return verdict


def _first_index(mask: torch.Tensor):
    idx = mask.nonzero()
    return tuple(int(i) for i in idx[0]) if len(idx) else ()


def _fmt(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.numel() <= 8 else f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


PUBLIC_KEY = b"course-public-stream/1"


def case_seed(hidden: bool, *identity: str, key: bytes | None = None) -> int:
    """The seed of a check's cases: 0 for visible checks (the same hints for everyone), and for
    hidden checks a 31-bit number derived from a key and an identity (assignment, test cell,
    step, student): HMAC-SHA256(key, identity).

    The class grader passes the course's secret key (autograde.grader.secret), so nobody without
    it can know the hidden cases, yet the same submission always gets the same cases and the
    same grade. Without a key (a notebook's own check(), `course check` with no secret) the
    public key gives a fixed stream: reproducible, but not secret."""
    if not hidden:
        return 0
    message_ = "\x1f".join(str(part) for part in identity).encode("utf-8", "surrogatepass")
    digest = hmac.new(key or PUBLIC_KEY, message_, hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def draw_seed(hidden: bool, *identity: str) -> int:
    """case_seed with the public key: what a notebook's own check() uses."""
    return case_seed(hidden, *identity)


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`: every case a check draws comes from one of these."""
    return torch.Generator().manual_seed(seed)
