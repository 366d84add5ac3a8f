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

Only the student's own code earns a score. A submission that cannot be read
(a directory, unreadable, not UTF-8) is the student's doing: 0 with a message
naming the problem. So is one that is a symbolic link (the notebook, the
assignment folder or the student folder: links are never followed, whatever
they point to), another assignment's notebook (known from its own metadata and
cells), and a student folder whose name is not UTF-8 (refused by its escaped
name, and kept out of the gradebook, whose student ids are text). The state
file records exactly what was written to the gradebook, so the summary and the
gradebook always agree. The grader's own trouble (a full disk,
no memory, a sandbox that could not start, a gradebook that cannot be
written) is never a score: that submission is "not graded", is neither
written to the gradebook nor marked done, and the next run grades it.

Exit status: 0 when every submission is graded; 3 when some are not graded
because of the grader's trouble (they are named, with the command to run
again); 130 after Ctrl-C or SIGTERM (queued submissions are cancelled, running
sandboxes stopped, every finished one recorded, and the command to resume printed).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from autograde import courselock, interrupt
from autograde.courselock import STATE_DIR
from autograde.checks.messages import both, register_messages
from autograde.errors import CourseError, describe_os_error
from autograde.grader import GRADER_VERSION
from autograde.grader import sandbox as sandbox_module
from autograde.grader.pipeline import grade_notebook
from autograde.grader.secret import course_secret, secret_path
from autograde.grader.rebuild import (EXERCISES, SubmissionError, _nbgrader, _source, load_submission, pristine_cells,
                                      pristine_path, show, submission_sha256, tamper_counts)
from autograde.grader.sandbox import Limits, sandbox_mode
from autograde.manifest import current, renamed_note

EXIT_NOT_GRADED = 3                 # some submissions were not graded (the grader's trouble): run again
EXIT_INTERRUPTED = 130              # Ctrl-C: what finished is recorded, the rest runs on the next call

register_messages({
    "submission_folder_not_utf8": {
        "en": "the student folder submitted/{name} has a name that is not UTF-8 text, so it cannot be a student "
              "id in the gradebook; rename the folder and grade again (nothing in it was graded)",
        "ko": "학생 폴더 submitted/{name} 이름이 UTF-8 텍스트가 아니어서 성적부의 학생 ID로 쓸 수 없습니다. "
              "폴더 이름을 바꾼 뒤 다시 채점하세요 (이 폴더의 제출물은 채점하지 않았습니다)"},
})


# ----------------------------------------------------------------------------
# finding the work


def find_submissions(root: Path, assignment: str) -> dict[str, Path]:
    """student -> the notebook to grade (ASSIGNMENT.ipynb if present, else the first .ipynb).

    Nothing here follows a symbolic link: a student folder, an assignment folder or a notebook that
    is a link is listed as it is, and reading it is refused (rebuild.open_submission), so that a
    link to another student's work or to the grader's files is a 0 with the reason, never graded.
    A folder name that is not UTF-8 is listed under a safe escaped form (rebuild.show; see
    refused_name)."""
    submitted = root / "submitted"
    if not submitted.is_dir():
        raise CourseError(f"{submitted} does not exist: put submissions in submitted/<student>/{assignment}/")
    with os.scandir(submitted) as scan:
        entries = sorted(scan, key=lambda e: (not _is_text(e.name), e.name))   # the escaped forms last
    found: dict[str, Path] = {}
    for entry in entries:
        student_dir = submitted / entry.name
        if entry.is_symlink():
            path = student_dir / assignment / f"{assignment}.ipynb"          # refused when read
        elif entry.is_dir(follow_symlinks=False):
            path = _notebook_in(student_dir / assignment, assignment)
            if path is None:
                continue
        else:
            continue
        name, n = show(entry.name), 1
        while name in found:                   # an escaped form that happens to be another folder's name
            n += 1
            name = f"{show(entry.name)} ({n})"
        found[name] = path
    return found


def _notebook_in(folder: Path, assignment: str) -> Path | None:
    """The notebook to grade in one student's assignment folder (the folder itself when it is a link:
    refused when read), or None when there is none."""
    if folder.is_symlink():
        return folder / f"{assignment}.ipynb"
    if not folder.is_dir():
        return None
    notebooks = sorted(p for p in folder.iterdir() if p.name.endswith(".ipynb"))
    exact = folder / f"{assignment}.ipynb"
    return exact if exact in notebooks else notebooks[0] if notebooks else None


def _is_text(name: str) -> bool:
    try:
        os.fsencode(name).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def refused_name(root: Path, path: Path) -> str | None:
    """Why a submission is refused by its folder's name alone (None: it is not): a student folder
    whose name is not UTF-8 cannot be an nbgrader student id; the instructor renames it."""
    student = path.relative_to(root / "submitted").parts[0]
    if _is_text(student):
        return None
    return both("submission_folder_not_utf8", name=show(student))


def db_url(root: Path) -> str:
    """nbgrader_config.py's CourseDirectory.db_url when it sets one, else ROOT/gradebook.db."""
    config = root / "nbgrader_config.py"
    if config.is_file():
        match = re.search(r"""^c\.CourseDirectory\.db_url\s*=\s*["']([^"']+)["']""", config.read_text(), re.M)
        if match:
            return match.group(1)
    return f"sqlite:///{(root / 'gradebook.db').resolve()}"


def sha256(path: Path, inside: Path | None = None) -> str:
    """The submission's sha256, or a marker when it is not a readable file (never raises or blocks,
    never follows a link)."""
    return submission_sha256(path, inside)


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
    """Grade the class; returns the exit status (0, EXIT_NOT_GRADED or EXIT_INTERRUPTED). SIGTERM
    counts as Ctrl-C from the first line on (a KeyboardInterrupt before the queue starts reaches the
    CLI, which says "interrupted" and exits 130)."""
    with interrupt.installed():
        return _grade_assignment(assignment, workers, root, limits, quiet)


def _grade_assignment(assignment: str, workers: int, root: Path, limits: Limits | None, quiet: bool) -> int:
    root = Path(root).resolve()
    if workers < 1:
        raise CourseError(f"--workers must be at least 1 (got {workers})")
    if not root.is_dir():
        raise CourseError(f"--root {root} is not a directory")
    if not quiet:                       # the progress bar comes after some 10 s of set-up: say what happens
        print(f"{assignment}: starting the sandbox and the gradebook, then reading the submissions…", flush=True)
    with courselock.grading(root, assignment):      # no `course release` and no other run of it beside this one
        return _grade_locked(assignment, workers, root, limits, quiet)


def _grade_locked(assignment: str, workers: int, root: Path, limits: Limits | None, quiet: bool) -> int:
    import warnings

    sandbox_module.prestart()           # the zygote imports torch while nbgrader is imported (~3 s)
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)   # nbgrader's own add_submission warns

    from autograde.grader.gradebook import LatePolicy, ensure_assignment

    try:
        pristine = pristine_path(assignment, "en")
    except SubmissionError as exc:
        raise CourseError(str(exc)) from None
    if renamed_note(assignment):
        print(renamed_note(assignment), file=sys.stderr)
    submissions = find_submissions(root, assignment)
    state_path = root / STATE_DIR / f"{assignment}.json"
    state = load_state(state_path)
    inside = root / "submitted"
    times, no_time = _submission_times(submissions, inside)
    todo = {s: p for s, p in submissions.items()
            if s not in no_time and state["done"].get(s, {}).get("sha256") != sha256(p, inside)}
    late = LatePolicy(root)
    limits = limits or Limits.from_env()
    key = course_secret(root)           # hidden cases: the same for a submission at every regrade
    mode = sandbox_mode()               # probe once, before the threads start
    if mode != "namespaces" and not quiet:
        print("note: the sandbox runs in plain mode here (no namespaces: COURSE_SANDBOX=plain, no root or no "
              "util-linux): the students' code runs with the limits and as a user of its own where the grader "
              "is root, but sees the file system as it is; each result records the mode", file=sys.stderr)
    _warm_checks(pristine)
    url = db_url(root)
    _alembic_on_path()
    with _open_gradebook(Gradebook, url) as gb:
        notebook = ensure_assignment(gb, assignment, pristine)
        due = gb.find_assignment(assignment).duedate
        if due is not None and not quiet:   # nbgrader reads some zones wrongly without a word: show its reading
            print(f"due date: {due:%Y-%m-%d %H:%M:%S} UTC (the gradebook's); late rule: {late.describe()}")
        max_score = float(sum(c.points for c in pristine_cells(pristine) if c.kind == "test"))
        interrupt.raise_if_stopped()    # a stop whose exception an import's callback swallowed
        outcome = _run_all(todo, workers, limits, root, quiet,
                           lambda student, path, result: _record(gb, assignment, notebook, student, path, result,
                                                                 state, state_path, root, times.get(student), late),
                           max_score, key, assignment)
        if not outcome.interrupted:
            _refresh_late(gb, assignment, notebook, [s for s in submissions if s not in todo and s not in no_time],
                          times, late, state, state_path)
    outcome.not_graded.update(no_time)
    if not quiet:
        _print_summary(assignment, submissions, todo, outcome, state, mode)
    again = resume_command(assignment, root, workers)
    if outcome.interrupted:
        left = sum(1 for s in todo if s not in outcome.results)
        print(f"interrupted: {len(outcome.results)} submission(s) graded and recorded in this run, {left} still to "
              f"grade; resume with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.not_graded:
        names = ", ".join(sorted(outcome.not_graded))
        print(f"error: {len(outcome.not_graded)} submission(s) not graded (nothing was recorded for them): {names}",
              file=sys.stderr)
        for student, why in sorted(outcome.not_graded.items()):
            print(f"  {student}: {why}", file=sys.stderr)
        print(f"fix the cause above, then run again to grade them: {again}", file=sys.stderr)
        return EXIT_NOT_GRADED
    return 0


def resume_command(assignment: str, root: Path, workers: int) -> str:
    """The exact command that grades what is left (the state file skips what is done)."""
    return " ".join(["course", "grade", shlex.quote(assignment), "--root", shlex.quote(str(root)),
                     "--workers", str(workers)])


def _submission_times(submissions: dict[str, Path], inside: Path) -> tuple[dict, dict[str, str]]:
    """student -> when nbgrader recorded the submission (None: no timestamp.txt), and student -> why
    the time could not be read: those are not graded this run (nbgrader's autograde fails them too)."""
    from autograde.grader.gradebook import submission_time

    times, unreadable = {}, {}
    for student, path in submissions.items():
        try:
            times[student] = submission_time(path, inside)
        except CourseError as exc:
            unreadable[student] = str(exc)
    return times, unreadable


def _refresh_late(gb, assignment: str, notebook: str, students: list[str], times: dict, late, state: dict,
                  state_path: Path) -> None:
    """Submissions graded in an earlier run keep their scores, but their time (a new timestamp.txt),
    the due date (`nbgrader db assignment add --duedate`) or the late rule (nbgrader_config.py) may
    have changed since: their submission time and late penalty are written again (no sandbox)."""
    from nbgrader.api import MissingEntry

    from autograde.grader.gradebook import save_time

    changed = False
    for student in students:
        entry = state["done"].get(student)
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:            # a refused folder name, kept in the state alone
            continue
        if not entry:
            continue
        try:
            save_time(gb, assignment, student, times.get(student))
            seconds_late, penalty = late.apply(gb, assignment, notebook, student)
        except Exception:
            gb.db.rollback()
            raise
        now = {"submitted_at": _iso(times.get(student)) or entry.get("submitted_at"),
               "seconds_late": seconds_late, "late_penalty": penalty}
        if any(entry.get(k) != v for k, v in now.items()):
            entry.update(now)
            changed = True
    if changed:
        save_state(state_path, state)


def _iso(when) -> str | None:
    return when.isoformat(sep=" ") if when is not None else None


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


class Outcome:
    """What one run did: results recorded now, submissions not graded (why), whether Ctrl-C stopped it."""

    def __init__(self):
        self.results: dict[str, dict] = {}
        self.not_graded: dict[str, str] = {}
        self.interrupted = False

    def settled(self, student: str) -> bool:
        return student in self.results or student in self.not_graded


def _run_all(todo: dict[str, Path], workers: int, limits: Limits, root: Path, quiet: bool, record,
             max_score: float = 0.0, key: bytes | None = None, assignment: str | None = None) -> Outcome:
    """Grade in parallel; `record` is called in this thread as each one finishes.

    Ctrl-C: submissions not started are cancelled, running sandboxes are stopped (their results,
    which the stop would spoil, are dropped), and everything that had finished is recorded."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    # the sandbox shows only what the worker needs (an allow-list); these stay hidden even where the
    # course lies inside a folder it shows
    hidden = [root, root / "submitted", root / "autograded", root / "feedback", root / STATE_DIR, secret_path(root)]
    outcome = Outcome()
    columns = (TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    pool = ThreadPoolExecutor(max_workers=workers)
    futures: dict = {}
    try:
        with Progress(*columns, disable=quiet or not todo, transient=False) as bar:
            task = bar.add_task("grading", total=len(todo))
            inside = root / "submitted"
            for student, path in todo.items():
                refused = refused_name(root, path)
                job = pool.submit(_refused, path, refused, inside) if refused else \
                    pool.submit(grade_notebook, path, limits, hidden, key=key, identity=student,
                                assignment=assignment, inside=inside)
                futures[job] = (student, path)
            pending = set(futures)
            while pending:
                interrupt.raise_if_stopped()     # a stop whose exception a callback swallowed
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    _finish(future, *futures[future], outcome, record, max_score)
                    bar.advance(task)
    except KeyboardInterrupt:
        outcome.interrupted = True
        finished = [f for f in futures if f.done() and not f.cancelled() and not outcome.settled(futures[f][0])]
        for future in futures:
            future.cancel()
        _stop_sandboxes()
        for future in finished:           # finished before the stop: real results
            _finish(future, *futures[future], outcome, record, max_score)
        _wind_down([f for f in futures if not f.done()])
    finally:
        pool.shutdown(wait=not outcome.interrupted, cancel_futures=True)
    return outcome


def _refused(path: Path, why: str, inside: Path) -> dict:
    """The result of a submission refused before it is read (its folder's name): 0 with the reason,
    kept out of the gradebook (the name is no student id there)."""
    from autograde.grader.pipeline import error_result

    return {**error_result(path, why, sha256(path, inside)), "refused_name": True}


def _finish(future, student: str, path: Path, outcome: Outcome, record, max_score: float) -> None:
    """Record one finished submission, or note why it is not graded (never a score for the grader's trouble)."""
    try:
        result = future.result()
    except Exception as exc:            # GraderFault, or a grader bug: not the student's doing
        outcome.not_graded[student] = "grader trouble: " + _fault_text(exc)
        return
    if result.get("error") and not result.get("max_score"):
        result["max_score"] = max_score
    try:
        record(student, path, result)
    except Exception as exc:            # the gradebook or the disk: not marked done, graded again next run
        outcome.not_graded[student] = "grader trouble: its grade could not be recorded: " + _fault_text(exc)
        return
    outcome.results[student] = result


def _fault_text(exc: BaseException) -> str:
    if isinstance(exc, CourseError):
        return str(exc)[:300]
    if isinstance(exc, (OSError, MemoryError)):
        return describe_os_error(exc)[:300]
    return f"grader error: {type(exc).__name__}: {str(exc)[:200]}"


def _stop_sandboxes() -> None:
    """Kill every sandbox this process runs: sandbox.stop_all() when it exists, and in any case
    every child process of ours (each sandbox leads its own process group)."""
    stop_all = getattr(sandbox_module, "stop_all", None)
    if callable(stop_all):
        try:
            stop_all()
        except Exception:
            pass
    me = os.getpid()
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return
    for name in entries:
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[1]) == me and int(fields[2]) == int(name):   # our child, a group leader
            try:
                os.killpg(int(name), signal.SIGKILL)
            except OSError:
                pass


def _wind_down(running: list, seconds: float = 10.0) -> None:
    """Let the stopped submissions' threads end (they clean up their temporary directories); a
    sandbox started again meanwhile (the pipeline restarts after a crash) is stopped as well."""
    deadline = time.monotonic() + seconds
    while running and time.monotonic() < deadline:
        _, not_done = wait(running, timeout=0.2)
        running = list(not_done)
        if running:
            _stop_sandboxes()


def _record(gb, assignment, notebook, student, path, result, state, state_path, root, submitted_at=None,
            late=None) -> None:
    """Gradebook first, then the autograded notebook, then the state file. The state (and so the
    summary) records exactly the scores written to the gradebook: the two never disagree."""
    from autograde.grader.gradebook import save_result

    seconds_late, penalty = 0.0, None
    if result.get("refused_name"):       # not a student id the gradebook can hold: the state alone
        written = {t["name"]: (t["score"], t["max_score"]) for t in result.get("tests", [])}
        total = result["max_score"]
    else:
        try:
            written = save_result(gb, assignment, notebook, student, result, submitted_at)
            if late is not None:
                seconds_late, penalty = late.apply(gb, assignment, notebook, student)
        except BaseException:
            gb.db.rollback()
            raise
        _write_autograded(root, assignment, student, path, result)
        total = sum(m for _, m in written.values())
    counts = tamper_counts(result.get("tamper", []))
    state["done"][student] = {"sha256": result.get("submission_sha256") or sha256(path, root / "submitted"),
                              "score": sum(s for s, _ in written.values()), "max_score": total,
                              "error": result.get("error"),
                              "cell_errors": [{"cell": e.get("cell"), "error": str(e.get("error"))[:200]}
                                              for e in result.get("cell_errors", []) if isinstance(e, dict)],
                              "tests": {name: s for name, (s, _) in written.items()},
                              "sandbox_mode": result.get("sandbox", {}).get("mode"),
                              "tamper": list(counts), "tamper_counts": counts,
                              "grader_version": GRADER_VERSION, "seeds": result.get("seeds", {}),
                              "timing": result.get("sandbox", {}).get("timing", {}),
                              "submitted_at": _iso(submitted_at), "seconds_late": seconds_late,
                              "late_penalty": penalty,
                              "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        save_state(state_path, state)
    except BaseException:
        del state["done"][student]       # not on disk: the summary must not say it is done
        raise


def _write_autograded(root: Path, assignment: str, student: str, path: Path, result: dict) -> None:
    from autograde.grader.gradebook import autograded_notebook

    if result.get("error") or "lang" not in result:
        return
    try:
        nb, raw = load_submission(path, root / "submitted")
    except SubmissionError:
        return
    if hashlib.sha256(raw).hexdigest() != result.get("submission_sha256"):
        return                          # changed since it was graded: the next run grades it again
    sources = {}
    for cell in nb["cells"]:
        gid = _nbgrader(cell).get("grade_id") if isinstance(cell, dict) else None
        if isinstance(gid, str) and gid not in sources and cell.get("cell_type") == "code":
            sources[gid] = _source(cell)
    release = EXERCISES / result["lang"] / current(assignment) / f"{current(assignment)}.ipynb"
    if not release.is_file():
        return                          # no released notebook to show the answers in (never the solutions)
    out = root / "autograded" / student / assignment / f"{assignment}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(autograded_notebook(release, sources, result), indent=1, ensure_ascii=False),
                   encoding="utf-8")


HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _error_column(entry: dict, width: int = 100) -> str:
    """What went wrong with a graded submission, for the instructor's table (in English, as the rest of
    the table): the submission's own error (the English half of a message given in both languages),
    else the answer cells that failed and why."""
    error = entry.get("error") or ""
    korean, _, english = error.partition(" / ")
    if english and HANGUL.search(korean):
        error = english
    if not error and entry.get("cell_errors"):
        error = "; ".join(f"cell {e['cell']}: {e['error']}" for e in entry["cell_errors"])
    return error if len(error) <= width else error[:width - 1] + "…"


def _print_summary(assignment, submissions, todo, outcome: Outcome, state, mode: str = "") -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    title = f"{assignment}: {len(outcome.results)} graded now, {len(submissions) - len(todo)} already done"
    title += f" (sandbox: {mode})" if mode else ""
    if outcome.not_graded:
        title += f", {len(outcome.not_graded)} NOT graded (run again)"
    if outcome.interrupted:
        title += f", {sum(1 for s in todo if not outcome.settled(s))} left by the interruption"
    table = Table()                     # the title on a line of its own: as the table's title it wrapped
    for column in ("student", "score", "tamper", "error"):
        table.add_column(column, justify="right" if column == "score" else "left")

    def row(*cells: str) -> None:       # plain text: a folder name or a student's error like "[/]" is no markup
        table.add_row(*(Text(cell) for cell in cells))

    for student in sorted(submissions):
        if student in outcome.not_graded:
            row(student, "not graded", "", outcome.not_graded[student][:160])
            continue
        if student in todo and student not in outcome.results:
            row(student, "not graded", "", "interrupted: graded on the next run")
            continue
        entry = state["done"].get(student, {})
        mark = "" if student in outcome.results else " (earlier)"
        counts = entry.get("tamper_counts") or {k: 1 for k in entry.get("tamper", [])}
        tamper = ", ".join(k if n == 1 else f"{k} x{n}" for k, n in counts.items())
        score = f"{entry.get('score', 0):g} / {entry.get('max_score', 0):g}"
        if entry.get("late_penalty"):
            score += f" (late: -{entry['late_penalty']:g})"
        row(student + mark, score, tamper, _error_column(entry))
    console = Console(highlight=False)
    console.print(title, soft_wrap=True, markup=False)
    console.print(table)
