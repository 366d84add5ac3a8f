"""Trusted: grade one notebook end to end.

    rebuild (pristine + the student's solution cells)
      -> plan: the checks of every test cell, cases drawn now (hidden seeds recorded)
      -> sandbox: the worker runs the cells and calls the functions (wire format both ways)
      -> judge: Check.judge on every case here, in the parent; a test cell scores its
         points only when every check in it, visible and hidden, passes.

A step that hangs or crashes the worker fails alone: the worker is started
again after it (at most MAX_ATTEMPTS times), skipping the cell or step that
hung, so one infinite loop does not cost the other steps their points.
"""
from __future__ import annotations

import contextlib
import errno
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from autograde import manifest
from autograde.checks.core import Case, Verdict, case_seed
from autograde.checks.messages import message, register_messages
from autograde.checks.registry import get_check
from autograde.checks.runner import blame_dependency, describe
from autograde import protocol as wire
from autograde.errors import GraderFault, describe_os_error
from autograde.grader import GRADER_VERSION, static
from autograde.grader.rebuild import Rebuilt, SubmissionError, load_submission, rebuild
from autograde.grader.sandbox import Limits, run_worker, sandbox_mode

MAX_ATTEMPTS = 4
REFERENCE_IMPORT = re.compile(r"^\s*(from|import)\s+autograde\.reference\b", re.M)

register_messages({
    # what the grader itself says of a cell that failed (the rest is Python's own exception text)
    "hidden_same_failure": {"en": "The hidden cases of this check fail for the same reason.",
                            "ko": "이 검사의 숨은 사례도 같은 이유로 통과하지 못했습니다."},
    "cell_stopped_time": {"en": "the cell stopped the notebook (time limit of {seconds} s)",
                          "ko": "이 셀에서 노트북 실행이 멈췄습니다(시간 제한 {seconds}초)"},
    "cell_stopped_exit": {"en": "the cell stopped the notebook (exit status {status})",
                          "ko": "이 셀에서 노트북 실행이 멈췄습니다(종료 코드 {status})"},
    "cell_took_too_long": {"en": "CallTimeout: took longer than {seconds} s",        # the worker's CallTimeout
                           "ko": "CallTimeout: 시간 제한 {seconds}초를 넘겼습니다"},
    "grader_crashed": {"en": "the notebook's process ended before this step finished ({reason})",
                       "ko": "이 단계가 끝나기 전에 노트북 프로세스가 끝났습니다 ({reason})"},
    "grader_bad_output": {"en": "the output could not be read back: {reason}",
                          "ko": "출력을 읽을 수 없습니다: {reason}"},
    "grader_judge_error": {"en": "the grader could not judge this case ({reason}); please tell the instructor",
                           "ko": "채점기가 이 사례를 판정하지 못했습니다 ({reason}). 강사에게 알려 주세요"},
    "grader_no_checks": {"en": "the grader found no checks in this cell", "ko": "채점기가 이 셀에서 검사를 찾지 못했습니다"},
    "grader_failed_cell": {"en": "{failed} of {total} checks failed; first: {detail}",
                           "ko": "검사 {total}개 중 {failed}개가 실패했습니다. 첫 실패: {detail}"},
    "grader_escape": {
        "en": "cell {cell}, line {line}: {what} is not allowed in graded code (it can reach or change the "
              "grader inside your notebook's process), so nothing in this notebook was graded; remove it and "
              "submit again",
        "ko": "{cell} 셀 {line}번째 줄: 채점하는 코드에서는 {what} 항목을 쓸 수 없습니다 (노트북 프로세스 안에서 "
              "채점기에 손을 댈 수 있기 때문입니다). 그래서 이 노트북은 채점하지 않았습니다. 지우고 다시 제출하세요"},
    "grader_unanalysable": {
        "en": "cell {cell} could not be analysed ({what}): the grader reads every solution cell before it runs "
              "anything, and this one is nested too deeply or is too large to read, so nothing in this notebook "
              "was graded; simplify that cell and submit again",
        "ko": "{cell} 셀을 분석할 수 없습니다 ({what}). 채점기는 실행하기 전에 풀이 셀을 모두 읽는데, 이 셀은 너무 "
              "깊게 중첩되었거나 너무 커서 읽을 수 없습니다. 그래서 이 노트북은 채점하지 않았습니다. 그 셀을 "
              "단순하게 고치고 다시 제출하세요"},
    "grader_tampered": {
        "en": "your code changed {what} while it ran; graded code may not change a library the grader relies on",
        "ko": "코드가 실행 중에 {what} 항목을 바꿨습니다. 채점하는 코드는 채점기가 쓰는 라이브러리를 바꾸면 안 됩니다"},
    "forbidden_reference": {
        "en": "this step must be written by hand; your code uses {name} (cell {cell}, line {line}), which this "
              "step does not allow",
        "ko": "이 단계는 직접 구현해야 합니다. 코드가 이 단계에서 쓸 수 없는 {name} 함수를 씁니다 "
              "({cell} 셀 {line}번째 줄)"},
})


@dataclass
class Planned:
    cell: str                  # the test cell's grade_id
    step: str
    function: str
    hidden: bool
    seed: int
    cases: list[Case]


# ----------------------------------------------------------------------------
# plan


def planned_checks(assignment: str, test_cells: list) -> list[tuple[str, manifest.Step, bool]]:
    """(test cell, step, hidden) for every check of the assignment's test cells, from the manifest
    (autograde/steps.toml): each cell's steps visible first, then hidden, as its code runs them."""
    present = {c.grade_id for c in test_cells}
    return [(cell.id, step, hidden) for cell in manifest.test_cells(assignment) if cell.id in present
            for hidden in (False, True) for step in cell.steps]


def plan(rebuilt: Rebuilt, key: bytes | None = None, identity: str = "") -> list[Planned]:
    """Every check of every test cell, with its cases generated now.

    Hidden cases' seeds come from `key` (the course's secret; None: the public stream) and
    assignment, test cell, step and `identity` (the student): a regrade draws the same cases."""
    planned = []
    for cell, step, hidden in planned_checks(rebuilt.assignment, rebuilt.test_cells()):
        seed = case_seed(hidden, rebuilt.assignment, cell, step.id, identity, key=key)
        planned.append(Planned(cell, step.id, step.function, hidden, seed, get_check(step.id).cases(seed, hidden)))
    return planned


def static_report(rebuilt: Rebuilt, planned: list[Planned]) -> static.Report:
    """The parent's own reading of the student's cells (autograde.grader.static)."""
    cells = rebuilt.code_cells()
    return static.analyse([(c.grade_id, c.source) for c in cells if c.kind == "solution"],
                          [(c.grade_id, c.source) for c in cells if c.kind == "setup"],
                          [(p.step, p.function, (*get_check(p.step).forbidden, *get_check(p.step).forbidden_names))
                           for p in planned])


def write_job(directory: Path, rebuilt: Rebuilt, planned: list[Planned], call_timeout: float = 0) -> list[str]:
    """job.json and cases_N.json(+.safetensors) for the worker; returns the files it may write."""
    steps = []
    for i, p in enumerate(planned):
        wire.write(directory / f"cases_{i}.json", [(c.args, c.kwargs) for c in p.cases])
        steps.append({"step": p.step, "function": p.function, "cases": f"cases_{i}.json",
                      "forbidden": list(get_check(p.step).forbidden), "drives": [c.drive for c in p.cases]})
    cells = [{"id": c.grade_id, "kind": c.kind, "source": c.source} for c in rebuilt.code_cells()]
    job = {"cells": cells, "steps": steps, "skip_cells": [], "skip_steps": [], "start_step": 0,
           "call_timeout": call_timeout,
           "reference": needs_reference(rebuilt, planned)}
    (directory / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    writable = ["out/progress.jsonl"]
    for i in range(len(planned)):
        writable += [f"out/step_{i}.json", f"out/step_{i}.safetensors"]
    return writable


def needs_reference(rebuilt: Rebuilt, planned: list[Planned]) -> bool:
    """Whether the worker must load the reference model: a step's cases pass it, or a locked
    setup cell imports it (notebook 4 builds its attention from the reference pieces)."""
    return any(get_check(p.step).needs_reference for p in planned) or \
        any(REFERENCE_IMPORT.search(c.source) for c in rebuilt.code_cells() if c.kind == "setup")


# ----------------------------------------------------------------------------
# sandbox runs


def read_progress(path: Path) -> dict:
    """Which cell/step was running when the worker stopped (the file is the child's: parse defensively)."""
    state = {"cell_running": None, "step_running": None, "done": False, "cell_errors": {},
             "boot": None, "torch": None, "ready": None, "cells": 0.0, "calls": 0.0}
    opened: dict = {}
    try:
        with open(path, "rb") as f:
            lines = f.read(4 * 2**20).splitlines()
    except OSError:
        return state
    for event in wire.progress_events(lines):
        _time_event(state, opened, event)
        if isinstance(event.get("cell"), int):
            state["cell_running"] = event["cell"] if event.get("phase") == "start" else None
            if event.get("phase") == "end" and isinstance(event.get("error"), str):
                state["cell_errors"][event["cell"]] = event["error"][:300]
        if isinstance(event.get("step"), int):
            state["step_running"] = event["step"] if event.get("phase") == "start" else None
        if event.get("done") is True:
            state["done"] = True
    return state


def _time_event(state: dict, opened: dict, event: dict) -> None:
    """Statistics only (the child's clock, never used for a score): start-up, cells, calls."""
    t = event.get("t")
    if type(t) is not float:
        return
    if event.get("ready") is True and type(event.get("boot")) is float and type(event.get("torch")) is float:
        state["boot"], state["torch"], state["ready"] = event["boot"], event["torch"], t
    for kind, total in (("cell", "cells"), ("step", "calls")):
        if isinstance(event.get(kind), int):
            if event.get("phase") == "start":
                opened[kind] = t
            elif event.get("phase") == "end" and kind in opened:
                state[total] += max(0.0, t - opened.pop(kind))


def run_sandbox(directory: Path, n_steps: int, writable: list[str], limits: Limits, extra_hidden,
                reference: bool = False) -> dict:
    """Run the worker until every step has run once; restart after a cell or step that hangs or crashes."""
    failures: dict[int, str] = {}        # step index -> why it has no output
    cell_failures: dict[int, str] = {}
    runs = []
    # start_up: from starting the sandbox until the worker is ready to run the first cell, of which
    # import_torch is the `import torch` that the notebook's setup cell would pay anyway
    timing = {"start_up": 0.0, "import_torch": 0.0, "cells": 0.0, "calls": 0.0}
    job_path = directory / "job.json"
    for attempt in range(MAX_ATTEMPTS):
        run = run_worker(directory, writable, limits, extra_hidden, reference)
        runs.append(run)
        state = read_progress(directory / "out" / "progress.jsonl")
        cell_failures.update(state["cell_errors"])
        timing["warm_starts"] = timing.get("warm_starts", 0) + (run.extra.get("start") == "warm")
        if state["ready"] is not None:
            timing["start_up"] += max(0.0, state["ready"] - run.started)
            timing["import_torch"] += max(0.0, state["torch"] - state["boot"])
        timing["cells"] += state["cells"]
        timing["calls"] += state["calls"]
        if state["done"]:
            break
        # the limit that fired: one cell or call (call_timeout, enforced from outside) or the whole run
        seconds = f"{(run.limit_seconds or limits.timeout):g}"
        why = f"time limit of {seconds} s" if run.timed_out else f"exit status {run.returncode}"
        job = json.loads(job_path.read_text(encoding="utf-8"))
        if state["step_running"] is not None:          # a step hung or killed the process: skip it,
            hung = state["step_running"]                # and every later step of the same function
            function = job["steps"][hung]["function"]
            same = [j for j, step in enumerate(job["steps"]) if j >= hung and step["function"] == function]
            for j in same:
                failures[j] = why
            job["skip_steps"] = sorted(set(job.get("skip_steps", [])) | set(same))
            job["start_step"] = hung + 1
        elif state["cell_running"] is not None:        # a cell did: run again without it
            cell_failures[state["cell_running"]] = message("cell_stopped_time", seconds=seconds) if run.timed_out \
                else message("cell_stopped_exit", status=run.returncode)
            job["skip_cells"] = sorted(set(job["skip_cells"]) | {state["cell_running"]})
            job["start_step"] = 0
        else:                                          # died before any cell: nothing more to learn
            break
        if state["step_running"] is not None and set(range(job["start_step"], n_steps)) <= set(job["skip_steps"]):
            break                                      # nothing left to run
        job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        (directory / "out" / "progress.jsonl").write_bytes(b"")
    return {"failures": failures, "cell_failures": cell_failures, "runs": runs, "timing": timing}


# ----------------------------------------------------------------------------
# judge


def _child_verdict(check, case: Case, report: wire.CaseReport) -> Verdict | None:
    """The verdict for a call that raised (as the child reports it, already checked by the protocol).

    None when the case expected exactly that exception (Case.raises, matched by class names in the MRO)."""
    label, params = case.label, report.params
    raises = getattr(case, "raises", None)
    if report.err == "raised" and raises:
        if raises in report.mro:
            return None
        return Verdict(False, "wrong_exception", {"expected": raises, "error": params.get("error", "?"),
                                                  "text": params.get("text", "")}, label)
    key = report.err
    if key == "raised" and hasattr(check, "explain_raised"):
        key = check.explain_raised(case, params.get("error", ""), params.get("text", "")) or "raised"
    return Verdict(False, key, params, label)


def record_spy_calls(case: Case, record: list) -> bool:
    """Put the child's record of model calls into the case's spy (the parent's own ModelSpy)."""
    spies = [a for a in (*case.args, *case.kwargs.values()) if getattr(type(a), "__wire_model__", None) == "spy"]
    if not spies:
        return False
    spies[0].calls = wire.record_to_calls(record)
    return True


def judge_step(p: Planned, out_file: Path, failure: str | None, report: static.Report | None = None) -> dict:
    """{"passed", "key", "params", "case", "n", ...} like runner.run_check, judged here.

    report: the static pass's findings, which decide before any output is looked at."""
    check = get_check(p.step)
    base = {"step": p.step, "seed": p.seed, "hidden": p.hidden, "n": len(p.cases)}
    verdict = static_verdict(p, report) if report else None
    if verdict is None:
        verdict = _judge_cases(check, p, out_file, failure)
    if verdict is None:
        return {**base, "passed": True, "key": "ok", "params": {}, "case": ""}
    params = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in verdict.params.items()}
    return {**base, "passed": False, "key": verdict.key, "params": params, "case": verdict.case}


def static_verdict(p: Planned, report: static.Report) -> Verdict | None:
    """The verdict the static pass forces on a step: an escape route anywhere, or a forbidden
    function within the step's reach."""
    if report.escapes:
        first = report.escapes[0]
        key = "grader_unanalysable" if first.kind == "unreadable" else "grader_escape"
        return Verdict(False, key, {"cell": first.cell, "line": first.line, "what": first.what})
    found = report.forbidden.get(p.step)
    if found:
        return Verdict(False, "forbidden_reference", {"name": found.what, "cell": found.cell, "line": found.line})
    return None


def blame_dependencies(planned: list[Planned], steps: list[dict]) -> list[dict]:
    """A failed step whose function calls a step that failed too says so (runner.blame_dependency)."""
    passed: dict[str, bool] = {}
    for p, s in zip(planned, steps):
        passed[p.step] = passed.get(p.step, True) and s["passed"]
    return [blame_dependency(s, get_check(p.step).depends, passed) for p, s in zip(planned, steps)]


def _judge_cases(check, p: Planned, out_file: Path, failure: str | None) -> Verdict | None:
    if failure:
        key = "timeout" if failure.startswith("time limit") else "grader_crashed"
        return Verdict(False, key, {"reason": failure, "seconds": failure.split()[-2] if key == "timeout" else ""})
    try:
        report = wire.parse_step_report(wire.read(out_file), len(p.cases))
    except wire.WireError as exc:
        return Verdict(False, "grader_crashed", {"reason": str(exc)})
    except wire.ReportError as exc:
        return Verdict(False, "grader_bad_output", {"reason": str(exc)})
    if report.tampered:
        return Verdict(False, "grader_tampered", {"what": ", ".join(report.tampered[:3])})
    if report.missing:
        return Verdict(False, "missing_function", {"function": p.function})
    if report.unwritable is not None:
        return Verdict(False, "grader_bad_output", {"reason": report.unwritable})
    for index, (case, entry) in enumerate(zip(p.cases, report.cases)):
        if entry.calls is not None and not record_spy_calls(case, entry.calls):
            return Verdict(False, "grader_bad_output", {"reason": "a call record without a model"}, case.label)
        if entry.err is not None:
            verdict = _child_verdict(check, case, entry)
            if verdict is None:
                continue
            return verdict
        try:
            verdict = check.judge(case, entry.out)
            if not verdict.passed:           # which known mistake: the other cases decide
                others = [(c, e.out) for i, (c, e) in enumerate(zip(p.cases, report.cases))
                          if i != index and e.err is None and e.calls is None]
                check.narrow(verdict, case, entry.out, others)
        except Exception as exc:     # an output so odd that the comparison itself failed
            verdict = Verdict(False, "grader_judge_error", {"reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
                              case.label)
        if not verdict.passed:
            return verdict
    return None


# ----------------------------------------------------------------------------
# one notebook


def error_result(path: Path, error: str, sha256: str = "") -> dict:
    return {"score": 0.0, "max_score": 0.0, "tests": [], "output": error, "error": error,
            "grader_version": GRADER_VERSION, "seeds": {}, "submission_sha256": sha256, "tamper": [],
            "notebook": str(path)}


def grade_notebook(path: Path, limits: Limits | None = None, extra_hidden=(), solutions: Path | None = None,
                   keep_dir: Path | None = None, strict: bool = False, key: bytes | None = None,
                   identity: str = "", refuse_escapes: bool = True, assignment: str | None = None,
                   inside: Path | None = None, sealed=None) -> dict:
    """The full result of one submission; a bad submission gives an error result with score 0
    (or, with strict=True, raises SubmissionError, a CourseError).

    key, identity: the course's secret and the student, from which hidden cases' seeds derive
    (plan); the same submission with the same key and identity always gets the same grade.
    refuse_escapes=False runs code that the static pass refuses (a notebook that blocks SIGALRM or
    forks): only the sandbox's own tests use it, to show what the sandbox holds without that pass.

    assignment: what the notebook was submitted as; another assignment's notebook is refused (0, with
    the reason in both languages), never graded as that one. inside: the folder every submission sits
    in (ROOT/submitted): no symbolic link between it and the file is followed (open_submission).
    sealed: a context manager factory wrapped around the sandbox runs (Gradescope's plain mode takes
    the course key and the solutions off the disk while the student's code runs)."""
    path = Path(path)
    limits = limits or Limits()
    start = time.monotonic()
    # The grader's reference runs are small: with torch's default of one thread per core they
    # fight the sandboxes and the other workers for the cores and run 10-30x slower.
    torch.set_num_threads(1)
    try:
        nb, raw = load_submission(path, inside)
        rebuilt = rebuild(nb, raw, path, **({"solutions": solutions} if solutions else {}), expected=assignment)
    except SubmissionError as exc:
        if strict:
            raise
        sha = _sha_or_empty(path, inside)
        return error_result(path, str(exc), sha)
    except (OSError, MemoryError) as exc:   # reading the pristine notebook, or an EIO: the grader's machine
        raise GraderFault(f"the grader could not grade {path.name}: {describe_os_error(exc)}") from exc
    for attempt in (1, 2):                  # a sandbox that failed to start is tried once more
        clock = {"read": time.monotonic() - start}
        try:
            return _grade_rebuilt(path, rebuilt, limits, extra_hidden, keep_dir, start, clock, key, identity,
                                  refuse_escapes, sealed)
        except SandboxNotStarted:
            if attempt == 2:
                raise
        except (OSError, MemoryError) as exc:   # the grader's machine (disk, memory, fork), not the student
            where = f" (in {tempfile.gettempdir()}; TMPDIR chooses another place)" \
                if getattr(exc, "errno", None) == errno.ENOSPC and not exc.filename else ""
            raise GraderFault(f"the grader could not grade {path.name}: {describe_os_error(exc)}{where}") from exc


class SandboxNotStarted(GraderFault):
    """The sandbox ended before any of the notebook's code ran: nothing to grade, nothing the student did."""


def _grade_rebuilt(path, rebuilt, limits, extra_hidden, keep_dir, start, clock, key=None, identity="",
                   refuse_escapes=True, sealed=None) -> dict:
    planned = plan(rebuilt, key, identity)
    begun = time.monotonic()
    report = static_report(rebuilt, planned)
    clock["static"] = time.monotonic() - begun              # the static pass, apart from the plan
    if not refuse_escapes:
        report.escapes = []
    if report.escapes:                 # nothing measured in that process could be believed: do not run it
        clock["plan"] = time.monotonic() - start - clock["read"] - clock["static"]
        steps = blame_dependencies(planned, [judge_step(p, Path("/nonexistent"), None, report) for p in planned])
        sandbox = {"failures": {}, "cell_failures": {}, "runs": [],
                   "timing": {k: round(v, 3) for k, v in clock.items()}}
        return assemble(path, rebuilt, planned, steps, sandbox, time.monotonic() - start, report)
    directory = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
    try:
        writable = write_job(directory, rebuilt, planned, limits.call_timeout)
        clock["plan"] = time.monotonic() - start - clock["read"] - clock["static"]
        with (sealed() if sealed else contextlib.nullcontext()):
            sandbox = run_sandbox(directory, len(planned), writable, limits, [path.parent, *extra_hidden],
                                  needs_reference(rebuilt, planned))
        clock["sandbox"] = time.monotonic() - start - clock["read"] - clock["static"] - clock["plan"]
        last = read_progress(directory / "out" / "progress.jsonl")
        if not last["done"] and last["ready"] is None:       # the last run ended before any student code
            run = sandbox["runs"][-1]
            raise SandboxNotStarted(f"the grader's sandbox for {path.name} stopped before the notebook's code ran "
                              f"({'time limit' if run.timed_out else f'exit status {run.returncode}'}: "
                              f"{' '.join(run.output.split())[-200:] or 'no output'})")
        steps = blame_dependencies(planned, [judge_step(p, directory / "out" / f"step_{i}.json",
                                                        sandbox["failures"].get(i), report)
                                             for i, p in enumerate(planned)])
        clock["judge"] = time.monotonic() - start - sum(clock.values())
        sandbox["timing"] = {**{k: round(v, 3) for k, v in clock.items()},
                             **{k: round(v, 3) for k, v in sandbox["timing"].items()}}
        if keep_dir:
            shutil.copytree(directory, keep_dir, dirs_exist_ok=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return assemble(path, rebuilt, planned, steps, sandbox, time.monotonic() - start, report)


def _sha_or_empty(path: Path, inside: Path | None = None) -> str:
    from autograde.grader.rebuild import submission_sha256

    return submission_sha256(path, inside)      # never follows a link, never blocks on a pipe, never raises


def assemble(path: Path, rebuilt: Rebuilt, planned: list[Planned], steps: list[dict], sandbox: dict,
             seconds: float, report: static.Report | None = None) -> dict:
    """The Gradescope-compatible result (a superset of results.json)."""
    lang = rebuilt.lang
    tests = []
    for cell in rebuilt.test_cells():
        mine = [s for p, s in zip(planned, steps) if p.cell == cell.grade_id]
        failed = [s for s in mine if not s["passed"]]
        passed = bool(mine) and not failed
        if not mine:
            text = message("grader_no_checks", lang)
        elif passed:
            text = "\n".join(describe(s, lang) for s in mine if not s["hidden"]) or message("ok", lang)
        else:
            text = _failure_text(failed, lang)
        tests.append({"name": cell.grade_id, "score": float(cell.points if passed else 0),
                      "max_score": float(cell.points), "status": "passed" if passed else "failed",
                      "output": text, "visibility": "visible",
                      "steps": [{k: s[k] for k in ("step", "hidden", "passed", "key", "params", "case", "n")}
                                for s in mine]})
    cells = rebuilt.code_cells()
    cell_errors = [{"cell": cells[i].grade_id, "error": e} for i, e in sorted(sandbox["cell_failures"].items())
                   if i < len(cells)]
    runs = sandbox["runs"]
    return {
        "score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
        "tests": tests, "output": _summary(tests, rebuilt, cell_errors), "error": None,
        "grader_version": GRADER_VERSION,
        "seeds": {f"{p.cell}:{p.step}{':hidden' if p.hidden else ''}": p.seed for p in planned},
        "submission_sha256": rebuilt.sha256, "tamper": rebuilt.tamper, "cell_errors": cell_errors,
        "static": report.to_json() if report else {"escapes": [], "forbidden": {}},
        "assignment": rebuilt.assignment, "lang": lang, "notebook": str(path),
        "sandbox": {"mode": runs[0].mode if runs else sandbox_mode(), "attempts": len(runs),
                    "timed_out": any(r.timed_out for r in runs), "output_bytes": sum(r.output_bytes for r in runs),
                    "output": "".join(r.output for r in runs)[:4000], "seconds": round(seconds, 2),
                    "timing": sandbox.get("timing", {})},
    }


def _failure_text(failed: list[dict], lang: str) -> str:
    """A failed test cell's feedback: each failing check once. A hidden check that fails for the same
    reason as its visible one (same step, same message key) adds only a short line, not the same
    message again on other inputs; one that finds another problem is shown in full."""
    visible = {(s["step"], s["key"]) for s in failed if not s["hidden"]}
    shown = [s for s in failed if not s["hidden"] or (s["step"], s["key"]) not in visible]
    lines = [describe(s, lang) for s in shown]
    if len(shown) < len(failed):
        lines.append(message("hidden_same_failure", lang))
    return "\n".join(lines)


_CELL_ERROR_KEYS = ("cell_stopped_time", "cell_stopped_exit", "cell_took_too_long")


def cell_error_text(text: str, lang: str) -> str:
    """A failed cell's error in the student's language: the grader's own words (the
    _CELL_ERROR_KEYS messages, recorded in English) are said again in `lang`; Python's exception
    text stays as Python wrote it."""
    for key in _CELL_ERROR_KEYS:
        template = message(key, "en")
        pattern = re.escape(template).replace(r"\{seconds\}", r"(?P<seconds>[0-9.]+)") \
            .replace(r"\{status\}", r"(?P<status>-?[0-9]+|None)")
        match = re.fullmatch(pattern, text)
        if match:
            return message(key, lang, **match.groupdict())
    return text


def _summary(tests: list[dict], rebuilt: Rebuilt, cell_errors: list[dict]) -> str:
    lines = [f"{sum(t['score'] for t in tests):g} / {sum(t['max_score'] for t in tests):g} points"]
    lines += [f"tamper: {t['event']} {t['cell']}".rstrip() for t in rebuilt.tamper]
    lines += [f"cell {e['cell']}: {e['error']}" for e in cell_errors]
    return "\n".join(lines)
