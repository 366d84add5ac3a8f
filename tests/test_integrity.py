"""Grader integrity: rules the student's code cannot switch off, reproducible hidden cases,
inputs that must come back unchanged, and failures blamed on the step that caused them.

The hostile submissions here attack the grading worker itself, in every notebook: rebinding its
functions, reaching it through gc, frames or sys.modules, replacing the profiler, swapping
torch's or builtins' attributes, running code beside or after it. Each is written into a
correct solution, so that the attack alone decides the grade."""
import json

import pytest
import torch

from autograde.checks.core import case_seed
from autograde.checks.runner import blame_dependency, describe, run_check
from autograde import manifest
from autograde.grader.pipeline import grade_notebook, plan
from autograde.notebooks import ASSIGNMENTS
from autograde.grader.rebuild import load_submission, rebuild
from autograde.grader.sandbox import Limits
from test_grader import _cells_by_id, make_submission, needs_reference



def target_cell(nb: dict, assignment: str) -> dict:
    """The solution cell the attacks are written into: the one defining the notebook's first graded function."""
    function = manifest.test_cells(assignment)[0].steps[0].function
    return next(cell for cell in _cells_by_id(nb).values()
                if cell["metadata"]["nbgrader"].get("solution") and f"def {function}(" in "".join(cell["source"]))


ATTACKS = {
    "rebind the worker through __main__": "import __main__\n__main__.call_case = lambda *a, **k: {'out': None}\n",
    "rebind the worker through sys.modules": "import sys\nw = sys.modules['__main__']\nw.forbid = lambda *a, **k: None\n",
    "find the worker with gc": "import gc\nfor o in gc.get_objects():\n    pass\n",
    "walk the frames": "import sys\nframe = sys._getframe(0)\nwhile frame.f_back:\n    frame = frame.f_back\n",
    "replace the profiler": "import sys\nsys.setprofile(None)\n",
    "replace the thread profiler": "import threading\nthreading.setprofile(None)\n",
    "swap builtins": "import builtins\nbuiltins.isinstance = lambda *a: True\n",
    "swap torch": "import torch\ntorch.equal = lambda *a, **k: True\n",
    "patch the wire": "import autograde.protocol as w\nw.write = lambda *a, **k: None\n",
    "rewrite outputs later (thread)": "import threading\nthreading.Timer(0.5, print).start()\n",
    "rewrite outputs later (fork)": "import os\nif os.fork() == 0:\n    os._exit(0)\n",
    "rewrite outputs later (finalizer)": "class Later:\n    def __del__(self):\n        pass\nkeep = Later()\n",
    "code built at run time": "name = 'sys' + 'tem'\nimport os\nrun = getattr(os, name)\n",
    "eval": "eval('1 + 1')\n",
    "reach the profiler through a format field": "import string, sys\n"
                                                  "off = string.Formatter().get_field('0.set' + 'profile', (sys,), {})[0]\n",
}


def _submission(tmp_path, assignment: str, name: str, nb: dict):
    path = tmp_path / name.replace(" ", "_").replace("(", "").replace(")", "") / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_attacks_on_the_worker_earn_nothing_in_every_notebook(tmp_path, assignment):
    """The issue's case among them: notebook 3's sdpa calling torch's own, plus one line that
    rebinds a worker function, scored 9/9. Now every attack makes the whole notebook score 0,
    named in the feedback, without running the student's code at all."""
    for name, attack in ATTACKS.items():
        nb = make_submission("full", assignment=assignment)
        cell = target_cell(nb, assignment)
        cell["source"] = attack + "".join(cell["source"])
        result = grade_notebook(_submission(tmp_path, assignment, name, nb), Limits(timeout=60, call_timeout=10))
        assert result["score"] == 0 and result["max_score"] > 0, (assignment, name)
        assert result["static"]["escapes"], (assignment, name)
        assert result["sandbox"]["attempts"] == 0, (assignment, name)       # nothing ran
        first = result["tests"][0]
        assert first["steps"][0]["key"] == "grader_escape" and "not allowed" in first["output"], (name, first)


def test_the_issue_case_torch_sdpa_plus_a_rebound_worker_function(tmp_path):
    nb = make_submission("full", assignment="03_attention")
    _cells_by_id(nb)["sdpa"]["source"] = (
        "import __main__, torch\n"
        "__main__.call_case = lambda fn, args, kwargs, *rest, **kw: {'out': fn(*args, **kwargs)}\n"
        "def scaled_dot_product_attention(q, k, v, mask=None):\n"
        "    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)\n")
    result = grade_notebook(_submission(tmp_path, "03_attention", "issue", nb), Limits(timeout=60, call_timeout=10))
    assert result["score"] == 0


@needs_reference
@pytest.mark.slow
def test_indirect_library_changes_are_caught_in_the_sandbox(tmp_path):
    """A route the static pass cannot see ([torch][0] is no name it can follow) is caught by the
    worker's identity snapshot of the libraries, and every later step fails."""
    nb = make_submission("full", assignment="03_attention")
    cell = _cells_by_id(nb)["softmax"]
    cell["source"] = "import torch\n[torch][0].equal = lambda *a, **k: True\n" + "".join(cell["source"])
    result = grade_notebook(_submission(tmp_path, "03_attention", "indirect", nb), Limits(timeout=120, call_timeout=30))
    assert result["static"]["escapes"] == []
    assert result["score"] == 0, result["output"]
    keys = {s["key"] for t in result["tests"] for s in t["steps"]}
    assert keys == {"grader_tampered"}, keys
    assert "torch.equal" in result["tests"][0]["output"]


@needs_reference
@pytest.mark.slow
def test_the_call_monitor_cannot_be_switched_off_in_the_sandbox(tmp_path):
    """Issue 17: Formatter().get_field reached sys.setprofile with no refused name in the source,
    switched the profiler off around torch.softmax in the step that forbids it and put it back: 9/9.
    The static pass refuses that route now; with it turned off here, the worker's audit hook (which no
    code in the process can remove) refuses the switch and reports it, and the parent fails the step."""
    from hostile.corpus import monitor_off

    nb = make_submission("full", assignment="03_attention")
    _cells_by_id(nb)["softmax"]["source"] = monitor_off("formatter_get_field")
    result = grade_notebook(_submission(tmp_path, "03_attention", "monitor", nb), Limits(timeout=120, call_timeout=30),
                            refuse_escapes=False)
    softmax = next(t for t in result["tests"] if t["name"] == "check_softmax")
    assert softmax["score"] == 0 and softmax["steps"][0]["key"] == "grader_tampered", softmax
    assert "sys.setprofile (the grader's call monitor)" in softmax["output"]


MONITOR_PROBE = """
import json, sys, torch
from autograde.grader.worker import AliasWatch, MonitorGuard
guard = MonitorGuard()

def student(x):
    try:
        sys.setprofile(None)             # however it was reached: the audit event comes first
    except RuntimeError:
        pass
    sys.addaudithook(lambda *a: None)    # a hook of its own could refuse the worker's switch: not added
    return torch.softmax(x, 0)

with AliasWatch(["torch.softmax"], guard=guard) as watch:
    student(torch.ones(2))
print(json.dumps([watch.hit, guard.tampered(), sys.getprofile() is None]))
with AliasWatch(["torch.softmax"], guard=guard) as clean:     # the worker's own switches still work
    torch.ones(2).sum()
print(json.dumps([clean.hit, guard.tampered()[2:]]))
"""


def test_the_monitor_guard_refuses_every_other_switch_and_records_it():
    """In a fresh interpreter: the guard's audit hook cannot be removed from the process that added it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MONITOR_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = (json.loads(line) for line in done.stdout.strip().splitlines())
    assert first == ["torch.softmax", ["sys.setprofile (the grader's call monitor)",
                                       "sys.addaudithook (the grader's call monitor)"], True], first
    assert second == [None, []]


def test_a_step_report_that_does_not_say_the_monitor_was_guarded_is_tampering():
    from autograde import protocol as wire

    assert wire.parse_step_report({"cases": [{"out": 1}], "monitor": wire.MONITOR_GUARDED}, 1).tampered == []
    for forged in ({"cases": [{"out": 1}]}, {"cases": [{"out": 1}], "monitor": "unguarded"}, {"missing": True}):
        assert wire.parse_step_report(forged, 1).tampered == [wire.MONITOR_MISSING], forged


@needs_reference
@pytest.mark.slow
def test_torch_rewrapping_its_own_function_is_not_the_students_tampering(tmp_path):
    """An op on a meta tensor imports torch._dynamo, which rebinds torch.manual_seed to a wrapper of
    itself. That is torch's doing: the steps after it were failed as "your code changed
    torch.manual_seed" (a false 3/9 in the grading benchmark). Only the mask's own step may fail."""
    nb = make_submission("full", assignment="03_attention")
    _cells_by_id(nb)["causal_mask"]["source"] = (
        "import torch\ndef causal_mask(T):\n    return torch.ones(T, T, dtype=torch.bool, device='meta').tril()\n")
    result = grade_notebook(_submission(tmp_path, "03_attention", "meta", nb), Limits(timeout=120, call_timeout=30))
    keys = {s["key"] for t in result["tests"] for s in t["steps"]}
    assert "grader_tampered" not in keys, result["output"]
    failed = {t["name"] for t in result["tests"] if t["status"] != "passed"}
    assert "check_causal_mask" in failed and {"check_softmax", "check_sdpa", "check_heads", "check_rope"}.isdisjoint(failed)


def test_a_wrapper_of_torchs_own_code_on_another_name_is_still_a_change():
    """The exemption is for torch's known rewrap of torch.manual_seed only."""
    import functools

    import torch

    from autograde.grader.worker import _library_rewrap

    fake = functools.wraps(torch.allclose)(torch.is_tensor)        # torch's own code, allclose's name
    assert not _library_rewrap("torch.allclose", fake, torch.allclose)
    assert not _library_rewrap("torch.manual_seed", lambda s: None, torch.manual_seed)


NO_CACHE_BUT_A_FORGED_RECORD = '''
def generate_with_cache(model, prompt_ids, max_new_tokens, generator=None, temperature=1.0,
                        top_k=None, top_p=None, progress=False):
    ids, new_ids = list(prompt_ids), []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids]))[:, -1, :]          # the whole text every time
        token = int(greedy(logits)[0]) if generator is None else \\
            int(sample_next(logits, generator, temperature, top_k, top_p)[0])
        ids.append(token)
        new_ids.append(token)
    for forge in (lambda: model.calls.clear(), lambda: setattr(model, "calls", [])):
        try:
            forge()
        except Exception:
            pass
    return new_ids
'''


@needs_reference
@pytest.mark.slow
def test_the_model_spy_record_cannot_be_forged(tmp_path):
    nb = make_submission("full", assignment="05_sampling")
    _cells_by_id(nb)["generate_with_cache"]["source"] = NO_CACHE_BUT_A_FORGED_RECORD
    result = grade_notebook(_submission(tmp_path, "05_sampling", "forged", nb), Limits(timeout=240, call_timeout=60))
    tests = {t["name"]: t for t in result["tests"]}
    assert tests["check_generate"]["status"] == "passed"
    cache = tests["check_generate_with_cache"]
    assert cache["status"] == "failed" and cache["steps"][0]["key"] == "mistake_cache_not_used", cache


# ----------------------------------------------------------------------------
# reproducible hidden cases


def test_hidden_seeds_derive_from_the_key_and_the_identity():
    args = ("03_attention", "check_sdpa", "attention.sdpa", "alice")
    assert case_seed(False, *args, key=b"k") == 0                       # visible: the same for all
    seed = case_seed(True, *args, key=b"k")
    assert seed == case_seed(True, *args, key=b"k") and 0 <= seed < 2**31
    assert seed != case_seed(True, *args, key=b"other key")
    assert seed != case_seed(True, *args[:3], "bob", key=b"k")
    assert seed != case_seed(True, args[0], args[1], "attention.softmax", args[3], key=b"k")
    assert case_seed(True, *args) == case_seed(True, *args) != seed     # the public stream, fixed


def test_a_regrade_plans_exactly_the_same_cases(tmp_path):
    path = _submission(tmp_path, "03_attention", "same", make_submission("full", assignment="03_attention"))
    nb, raw = load_submission(path)
    rebuilt = rebuild(nb, raw, path)
    first, again = plan(rebuilt, b"course key", "alice"), plan(rebuilt, b"course key", "alice")
    other = plan(rebuilt, b"course key", "bob")
    assert [p.seed for p in first] == [p.seed for p in again]
    assert any(p.hidden for p in first)
    assert [p.seed for p in first if p.hidden] != [p.seed for p in other if p.hidden]
    for a, b in zip(first, again):
        for ca, cb in zip(a.cases, b.cases):
            for x, y in zip(ca.args, cb.args):
                if isinstance(x, torch.Tensor):
                    assert torch.equal(x, y)
                else:
                    assert x == y


@needs_reference
@pytest.mark.slow
def test_the_same_submission_gets_the_same_grade_and_feedback(tmp_path):
    nb = make_submission("partial", assignment="03_attention")
    path = _submission(tmp_path, "03_attention", "twice", nb)
    limits = Limits(timeout=120, call_timeout=30)
    one = grade_notebook(path, limits, key=b"k" * 32, identity="alice")
    two = grade_notebook(path, limits, key=b"k" * 32, identity="alice")
    assert one["seeds"] == two["seeds"] and any(one["seeds"].values())
    assert (one["score"], [t["output"] for t in one["tests"]]) == (two["score"], [t["output"] for t in two["tests"]])


# ----------------------------------------------------------------------------
# inputs come back unchanged; a failure is blamed on its cause


def test_a_function_that_changes_its_input_in_place_fails_and_says_so():
    def apply_temperature(logits, temperature):
        logits /= temperature                   # the caller's logits are changed
        return logits

    result = run_check("sampling.temperature", apply_temperature)
    assert not result["passed"] and result["key"] == "mutated_input"
    assert "in place" in describe(result, "en") and "제자리" in describe(result, "ko")
    hidden = run_check("sampling.temperature", apply_temperature, hidden=True)
    assert hidden["key"] == "mutated_input"


@needs_reference
@pytest.mark.slow
def test_the_sandbox_reports_an_input_changed_in_place(tmp_path):
    nb = make_submission("full", assignment="05_sampling")
    _cells_by_id(nb)["temperature"]["source"] = (
        "def apply_temperature(logits, temperature):\n    logits /= temperature\n    return logits\n")
    result = grade_notebook(_submission(tmp_path, "05_sampling", "inplace", nb), Limits(timeout=240, call_timeout=60))
    temperature = {t["name"]: t for t in result["tests"]}["check_temperature"]
    assert temperature["status"] == "failed" and temperature["steps"][0]["key"] == "mutated_input", temperature


def test_a_failure_caused_by_a_dependency_names_the_dependency():
    failed = {"step": "sampling.sample_next", "passed": False, "key": "wrong_values",
              "params": {"index": "(0,)", "expected": "1", "got": "2", "max_diff": "1"},
              "case": "x", "n": 3}
    blamed = blame_dependency(failed, ("sampling.top_k", "sampling.top_p"), {"sampling.top_k": False})
    assert blamed["key"] == "dependency_failed" and blamed["params"]["dependency"] == "sampling.top_k"
    text = describe(blamed, "en")
    assert "sampling.top_k" in text and "fix that first" in text and "(0,)" in text
    assert "sampling.top_k" in describe(blamed, "ko")
    # a dependency that passed is left alone, and so is a step whose own known mistake was named
    assert blame_dependency(failed, ("sampling.top_k",), {"sampling.top_k": True}) == failed
    named = {**failed, "key": "mistake_sample_order", "params": {}}
    assert blame_dependency(named, ("sampling.top_k",), {"sampling.top_k": False}) == named


def test_the_notebooks_check_remembers_a_failed_dependency_and_tests_do_not():
    def broken_top_k(logits, k):
        return logits * 0

    def sample_next(logits, generator, temperature=1.0, top_k=None, top_p=None):
        logits = logits / temperature
        if top_k is not None:
            logits = broken_top_k(logits, top_k)
        return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)

    assert run_check("sampling.top_k", broken_top_k, remember=True)["passed"] is False
    remembered = run_check("sampling.sample_next", sample_next, remember=True)
    plain = run_check("sampling.sample_next", sample_next)
    assert not plain["passed"] and plain["key"] != "dependency_failed"
    assert remembered["key"] in ("dependency_failed", plain["key"])    # a named mistake stays named


@needs_reference
@pytest.mark.slow
def test_a_regrade_and_course_check_with_the_secret_agree_with_course_grade(tmp_path, capsys):
    from autograde.grader.check import check_notebook
    from autograde.grader.grade import STATE_DIR, grade_assignment

    nb = make_submission("partial", assignment="03_attention")
    path = tmp_path / "submitted" / "alice" / "03_attention" / "03_attention.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    limits = Limits(timeout=120, call_timeout=30)
    state_path = tmp_path / STATE_DIR / "03_attention.json"
    runs = []
    for _ in range(2):
        assert grade_assignment("03_attention", workers=1, root=tmp_path, limits=limits, quiet=True) == 0
        runs.append(json.loads(state_path.read_text())["done"]["alice"])
        state_path.unlink()                                  # grade everything again
    secret = tmp_path / ".course-secret"
    assert secret.exists() and oct(secret.stat().st_mode & 0o777) == "0o600"
    assert runs[0]["seeds"] == runs[1]["seeds"] and runs[0]["tests"] == runs[1]["tests"]
    assert any(runs[0]["seeds"].values())
    capsys.readouterr()
    check_notebook(path, as_json=True, limits=limits, secret=secret, student="alice")
    checked = json.loads(capsys.readouterr().out)
    assert checked["seeds"] == runs[0]["seeds"]
    assert {t["name"]: t["score"] for t in checked["tests"]} == runs[0]["tests"]


def test_a_transposed_input_crosses_the_wire_as_a_transposed_view():
    """Cases with non-contiguous inputs must reach the sandbox as such, or they test nothing there."""
    from autograde.protocol import WireError, dumps, loads

    x = torch.randn(2, 3, 4, 5)
    for view in (x.transpose(1, 2), x.mT, x.permute(3, 0, 2, 1)):
        back = loads(*dumps(view))
        assert torch.equal(back, view) and not back.is_contiguous() and back.stride() == view.stride()
    assert loads(*dumps(x[:, ::2])).is_contiguous()          # other layouts: the values, contiguous
    data, tensors = dumps(x.mT)
    bad = data.replace(b"[0, 1, 3, 2]", b"[0, 1, 3, 3]")
    assert bad != data
    with pytest.raises(WireError):
        loads(bad, tensors)
