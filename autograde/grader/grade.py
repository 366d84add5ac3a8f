"""`course grade ASSIGNMENT [--workers N] [--root DIR]`: a whole class, hardened and resumable.

    ROOT/submitted/<student>/<ASSIGNMENT>/*.ipynb   what nbgrader collects
    ROOT/gradebook.db (or nbgrader_config.py's db_url)   the scores, nbgrader's rows
    ROOT/autograded/<student>/<ASSIGNMENT>/<nb>.ipynb   for `nbgrader generate_feedback`
    ROOT/.course-grade/<ASSIGNMENT>.json            which submissions are done (student -> sha256)

Each submission runs in its own sandbox; N run at once (a thread pool: the
threads only wait on their sandboxes). Results are written by the main thread
alone, one submission at a time: gradebook commit first, then the state file
(atomically). A run that is killed and started again grades only submissions
missing from the state file (or changed since); writing a grade again updates
the same Grade row, so nothing is duplicated or lost.
"""
from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from autograde.errors import CourseError
from autograde.grader import GRADER_VERSION
from autograde.grader.pipeline import grade_notebook
from autograde.grader.rebuild import (SOLUTIONS, SubmissionError, _nbgrader, _source, load_submission,
                                      pristine_cells, pristine_path)
from autograde.grader.sandbox import Limits, sandbox_mode

STATE_DIR = ".course-grade"


# ----------------------------------------------------------------------------
# finding the work


def find_submissions(root: Path, assignment: str) -> dict[str, Path]:
    """student -> the notebook to grade (ASSIGNMENT.ipynb if present, else the only .ipynb)."""
    submitted = root / "submitted"
    if not submitted.is_dir():
        raise CourseError(f"{submitted} does not exist: put submissions in submitted/<student>/{assignment}/")
    found = {}
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        folder = student_dir / assignment
        notebooks = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
        exact = folder / f"{assignment}.ipynb"
        if exact in notebooks:
            found[student_dir.name] = exact
        elif notebooks:
            found[student_dir.name] = notebooks[0]
    return found


def db_url(root: Path) -> str:
    """nbgrader_config.py's CourseDirectory.db_url when it sets one, else ROOT/gradebook.db."""
    config = root / "nbgrader_config.py"
    if config.is_file():
        match = re.search(r"""^c\.CourseDirectory\.db_url\s*=\s*["']([^"']+)["']""", config.read_text(), re.M)
        if match:
            return match.group(1)
    return f"sqlite:///{(root / 'gradebook.db').resolve()}"


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------
# the state file


def load_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return state if isinstance(state.get("done"), dict) else {"done": {}}
    except (OSError, ValueError):
        return {"done": {}}


def save_state(path: Path, state: dict) -> None:
    """Write a temporary file and rename it: a kill leaves the old or the new state, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------
# grading


def grade_assignment(assignment: str, workers: int = 2, root: Path = Path("."), limits: Limits | None = None,
                     quiet: bool = False) -> int:
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)   # nbgrader's own add_submission warns

    from autograde.grader.gradebook import ensure_assignment

    root = Path(root).resolve()
    if workers < 1:
        raise CourseError(f"--workers must be at least 1 (got {workers})")
    if not root.is_dir():
        raise CourseError(f"--root {root} is not a directory")
    try:
        pristine = pristine_path(assignment, "en")
    except SubmissionError as exc:
        raise CourseError(str(exc)) from None
    submissions = find_submissions(root, assignment)
    state_path = root / STATE_DIR / f"{assignment}.json"
    state = load_state(state_path)
    todo = {s: p for s, p in submissions.items() if state["done"].get(s, {}).get("sha256") != sha256(p)}
    limits = limits or Limits.from_env()
    sandbox_mode()                      # probe once, before the threads start
    _warm_checks(pristine)
    url = db_url(root)
    _alembic_on_path()
    with _open_gradebook(Gradebook, url) as gb:
        notebook = ensure_assignment(gb, assignment, pristine)
        max_score = float(sum(c.points for c in pristine_cells(pristine) if c.kind == "test"))
        results = _run_all(todo, workers, limits, root, quiet,
                           lambda student, path, result: _record(gb, assignment, notebook, student, path, result,
                                                                 state, state_path, root), max_score)
    if not quiet:
        _print_summary(assignment, submissions, todo, results, state)
    return 0


def _alembic_on_path() -> None:
    """nbgrader's Gradebook runs `alembic` by name: the interpreter's bin directory must be on PATH."""
    import sys

    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _open_gradebook(cls, url: str):
    try:
        return cls(url)
    except Exception as exc:  # sqlalchemy / alembic errors: name the database, no traceback
        raise CourseError(f"cannot open the gradebook {url}: {str(exc)[:200]}") from None


def _warm_checks(pristine: Path) -> None:
    """Load the check modules (and the reference model they use) once, before the threads."""
    from autograde.checks.registry import get_check
    from autograde.grader.pipeline import planned_checks
    from autograde.grader.rebuild import pristine_cells

    tests = [c for c in pristine_cells(pristine) if c.kind == "test"]
    for _, step, hidden in planned_checks(pristine.stem, tests):
        get_check(step.id).cases(0, hidden)


def _run_all(todo: dict[str, Path], workers: int, limits: Limits, root: Path, quiet: bool, record,
             max_score: float = 0.0) -> dict:
    """Grade in parallel; `record` is called in this thread as each one finishes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    hidden = [root / "submitted", root / "autograded", root / "feedback", root / STATE_DIR]
    results = {}
    columns = (TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, disable=quiet or not todo, transient=False) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        task = bar.add_task("grading", total=len(todo))
        futures = {pool.submit(grade_notebook, path, limits, hidden): (student, path)
                   for student, path in todo.items()}
        for future in as_completed(futures):
            student, path = futures[future]
            try:
                result = future.result()
            except Exception as exc:    # a grader bug: recorded for this student, never the whole run
                result = {"score": 0.0, "max_score": 0.0, "tests": [], "error": f"grader error: {exc!r}"[:300],
                          "tamper": [], "submission_sha256": sha256(path)}
            if result.get("error") and not result.get("max_score"):
                result["max_score"] = max_score
            record(student, path, result)
            results[student] = result
            bar.advance(task)
    return results


def _record(gb, assignment, notebook, student, path, result, state, state_path, root) -> None:
    """Gradebook first, then the autograded notebook, then the state file."""
    from autograde.grader.gradebook import save_result

    save_result(gb, assignment, notebook, student, result)
    _write_autograded(root, assignment, student, path, result)
    state["done"][student] = {"sha256": result.get("submission_sha256") or sha256(path),
                              "score": result["score"], "max_score": result["max_score"],
                              "error": result.get("error"),
                              "tests": {t["name"]: t["score"] for t in result.get("tests", [])},
                              "tamper": [t["event"] for t in result.get("tamper", [])],
                              "grader_version": GRADER_VERSION, "seeds": result.get("seeds", {}),
                              "timing": result.get("sandbox", {}).get("timing", {}),
                              "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    save_state(state_path, state)


def _write_autograded(root: Path, assignment: str, student: str, path: Path, result: dict) -> None:
    from autograde.grader.gradebook import autograded_notebook

    if result.get("error") or "lang" not in result:
        return
    try:
        nb, _ = load_submission(path)
    except SubmissionError:
        return
    sources = {}
    for cell in nb["cells"]:
        gid = _nbgrader(cell).get("grade_id") if isinstance(cell, dict) else None
        if isinstance(gid, str) and gid not in sources and cell.get("cell_type") == "code":
            sources[gid] = _source(cell)
    pristine = SOLUTIONS / result["lang"] / assignment / f"{assignment}.ipynb"
    out = root / "autograded" / student / assignment / f"{assignment}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(autograded_notebook(pristine, sources, result), indent=1, ensure_ascii=False),
                   encoding="utf-8")


def _print_summary(assignment, submissions, todo, results, state) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{assignment}: {len(results)} graded now, {len(submissions) - len(todo)} already done")
    for column in ("student", "score", "tamper", "error"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for student in sorted(submissions):
        entry = state["done"].get(student, {})
        mark = "" if student in results else " (earlier)"
        table.add_row(student + mark, f"{entry.get('score', 0):g} / {entry.get('max_score', 0):g}",
                      ", ".join(entry.get("tamper", [])), (entry.get("error") or "")[:60])
    Console(highlight=False).print(table)
