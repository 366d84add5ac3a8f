"""`course release`, `course feedback`, `course export-grades`: nbgrader's steps an instructor needs.

    course release ASSIGNMENT     the gradebook's record of the assignment (what `course grade` and
                                  `nbgrader autograde` grade against) and the student notebooks
                                  exercises/<lang>/ASSIGNMENT/ checked against solutions/
    course grade ASSIGNMENT       (autograde/grader/grade.py) every submission, in its own language
    course feedback ASSIGNMENT    feedback/<student>/ASSIGNMENT/*.html, from autograded/
    course export-grades          grades.csv, one row per student and assignment

Each runs nbgrader as `sys.executable -m nbgrader` with the interpreter's bin directory first on
PATH (nbgrader runs `alembic` by name), so nothing needs activating. None of them can delete or
half-write course material: `release` runs nbgrader in a staging folder against a copy of the
gradebook, and only when every language succeeded does it move the copy over the gradebook and a
changed student notebook over the committed one, each with one rename. A failure leaves the gradebook
and every committed notebook as they were, and says what failed (a CourseError). Running a step
again is harmless: an unchanged notebook is not rewritten, a recorded assignment keeps its grades.
`release` and `course grade` never run at once on one course (autograde/courselock.py).
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from autograde import courselock
from autograde.errors import CourseError
from autograde.notebooks import LANGS, install_file, nbgrader_generate, tool_env

REPO_ROOT = Path(__file__).resolve().parent.parent
# nbgrader's note in a course root without nbgrader_config.py: harmless here, since every setting the
# step needs (root, gradebook, source folder) is given on its command line
NO_CONFIG = "No nbgrader_config.py file found"
# nbgrader's warning, once per student, when `course feedback` runs again: rewriting the feedback is
# what the command does (its --force), not something the instructor must act on
REWRITTEN = "Removing existing assignment:"


@dataclass
class Released:
    """What `release` did: the gradebook it recorded into and the student notebooks it changed."""
    assignment: str
    gradebook: Path
    lang: str
    due: datetime | None = None         # the assignment's due date in the gradebook afterwards (UTC)
    updated: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)


def _known(assignment: str, releasing: bool = False) -> None:
    """CourseError for a name that is no notebook's; an old name (manifest.FORMER_NAMES) is known to
    the commands that work on a class that already has it, never released anew."""
    from autograde import manifest

    if assignment in manifest.FORMER_NAMES and not releasing:
        return
    if assignment in manifest.FORMER_NAMES:
        raise CourseError(f"{assignment} is now called {manifest.current(assignment)} (since December 2026, "
                          f"chapter n has notebook n): release it under its new name; a class that already has "
                          f"{assignment} is still graded with `course grade {assignment}`")
    if assignment not in manifest.assignments():
        raise CourseError(f"unknown assignment {assignment!r} (known: {', '.join(manifest.assignments())})")


def _course_root(root: Path) -> Path:
    root = Path(root).resolve()
    if not root.is_dir():
        raise CourseError(f"--root {root} is not a directory")
    return root


def gradebook_path(root: Path) -> Path:
    """The SQLite file of the course's gradebook (nbgrader_config.py's db_url, else ROOT/gradebook.db)."""
    from autograde.grader.grade import db_url

    url = db_url(root)
    if not url.startswith("sqlite:///"):
        raise CourseError(f"the gradebook {url} is not a SQLite file; the course's commands need one "
                          "(set c.CourseDirectory.db_url = 'sqlite:///...' in nbgrader_config.py)")
    path = Path(url[len("sqlite:///"):])
    return path if path.is_absolute() else Path(root) / path     # nbgrader's root is the course root


def _copy_gradebook(source: Path, target: Path) -> None:
    """A consistent copy of the gradebook (SQLite's own backup), even while another process reads it."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    except sqlite3.DatabaseError as exc:
        raise CourseError(f"the gradebook {source} cannot be read ({exc}); restore it from a backup") from None
    finally:
        src.close()
        dst.close()


def release(assignment: str, root: Path = Path("."), gradebook_lang: str = "en",
            repo: Path = REPO_ROOT, due: str | None = None) -> Released:
    """Record `assignment` in the gradebook from solutions/<gradebook_lang>/ and bring the student
    notebooks of both languages up to date with solutions/, all or nothing. `due` sets its due date
    (read by gradebook.read_due_date; "none" removes it); without it the recorded one stays."""
    _known(assignment, releasing=True)
    if gradebook_lang not in LANGS:
        raise CourseError(f"--lang must be one of {', '.join(LANGS)} (got {gradebook_lang!r})")
    if due is not None:
        from autograde.grader.gradebook import read_due_date

        due = "none" if due.strip().lower() == "none" else read_due_date(due)     # before anything is touched
    root, repo = _course_root(root), Path(repo).resolve()
    for lang in LANGS:
        source = repo / "solutions" / lang / assignment / f"{assignment}.ipynb"
        if not source.is_file():
            raise CourseError(f"{source} is missing: run `course build` to generate the notebooks")
    db = gradebook_path(root)
    if not db.parent.is_dir():
        raise CourseError(f"the gradebook's folder {db.parent} does not exist")
    with courselock.releasing(root):    # never while `course grade` writes into the gradebook it replaces
        return _release(assignment, root, repo, db, gradebook_lang, due)


def _release(assignment: str, root: Path, repo: Path, db: Path, gradebook_lang: str, due) -> Released:
    report = Released(assignment, db, gradebook_lang)
    staging = Path(tempfile.mkdtemp(prefix=".course-release-", dir=root))
    # the new gradebook is made beside the old one, so that it can replace it with one rename
    fd, staged_db = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".release", dir=db.parent)
    os.close(fd)
    staged_db = Path(staged_db)
    try:
        if db.is_file():
            _copy_gradebook(db, staged_db)
        else:
            staged_db.unlink()                          # nbgrader creates a new one (with alembic's stamp)
        made = {}
        for lang in LANGS:
            book = staged_db if lang == gradebook_lang else staging / f"throwaway-{lang}.db"
            made[lang] = nbgrader_generate(assignment, lang, repo / "solutions", staging, book)
        if not staged_db.is_file():
            raise CourseError(f"nbgrader generate_assignment made no gradebook for {assignment}; nothing changed")
        report.due = _set_due(staged_db, assignment, due)
        os.replace(staged_db, db)
        for lang in LANGS:
            target = repo / "exercises" / lang / assignment / f"{assignment}.ipynb"
            (report.updated if install_file(made[lang], target) else report.unchanged).append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if staged_db.exists():
            staged_db.unlink()
    return report


def _set_due(db: Path, assignment: str, due) -> datetime | None:
    """Write the due date (None: keep it, "none": remove it) into the staged gradebook; return it."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        if due is not None:
            gb.update_or_create_assignment(assignment, duedate=None if due == "none" else due)
        return gb.find_assignment(assignment).duedate


def run_nbgrader(args: list[str], root: Path) -> str:
    """nbgrader ARGS in the course root, with the project's environment. Returns what it printed
    (warnings and errors; its own INFO lines are off); a failure is a CourseError with its last lines."""
    cmd = [sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"]
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, encoding="utf-8", errors="replace",
                              env=tool_env())
    except OSError as exc:
        raise CourseError(f"cannot run nbgrader ({exc.strerror or exc}): run `python3 tasks.py build`") from None
    said = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                     if line.strip() and NO_CONFIG not in line)
    if done.returncode != 0:
        raise CourseError(f"nbgrader {args[0]} failed (exit status {done.returncode}): {nbgrader_failure(said)}")
    return said


# the last line of a Python traceback: `ValueError: ...`, `nbgrader.api.MissingEntry`, `KeyboardInterrupt`
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Entry|Warning)\b:?")


def nbgrader_failure(said: str) -> str:
    """What went wrong, from nbgrader's output: its own log lines and the exception that ended it,
    never the frames of its traceback (the instructor gets one line, not 40 lines of nbconvert)."""
    lines = said.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), None)
    if start is None:
        return "\n".join(lines[-8:])[-1000:]
    logged = [line for line in lines[:start] if line.startswith("[")][-3:]
    last = max((i for i in range(start, len(lines)) if EXCEPTION_LINE.match(lines[i])), default=len(lines) - 1)
    return "\n".join(logged + lines[last:])[-1000:]


def _root_args(root: Path, repo: Path) -> list[str]:
    """The course root and gradebook for nbgrader, whichever folder the command runs in."""
    return [f"--CourseDirectory.root={root}", f"--CourseDirectory.source_directory={repo / 'solutions' / 'en'}",
            f"--CourseDirectory.db_url=sqlite:///{gradebook_path(root)}"]


def feedback(assignment: str, root: Path = Path("."), repo: Path = REPO_ROOT) -> list[Path]:
    """nbgrader generate_feedback from autograded/ (which `course grade` writes, each notebook in its
    student's language): one HTML file per student. Running it again rewrites them."""
    _known(assignment)
    root = _course_root(root)
    graded = sorted((root / "autograded").glob(f"*/{assignment}/*.ipynb"))
    if not graded:
        raise CourseError(f"nothing is graded for {assignment} under {root / 'autograded'}: run "
                          f"`course grade {assignment}` first")
    if not gradebook_path(root).is_file():
        raise CourseError(f"there is no gradebook at {gradebook_path(root)}: run `course release {assignment}` "
                          f"and `course grade {assignment}` first")
    said = run_nbgrader(["generate_feedback", assignment, "--force", *_root_args(root, Path(repo).resolve())], root)
    said = "\n".join(line for line in said.splitlines() if REWRITTEN not in line)
    if said:
        print(said, file=sys.stderr)
    made = sorted((root / "feedback").glob(f"*/{assignment}/*.html"))
    missing = {p.parts[-3] for p in graded} - {p.parts[-3] for p in made}
    if missing:
        raise CourseError(f"nbgrader wrote no feedback for {', '.join(sorted(missing))}")
    return made


def export_grades(out: Path, root: Path = Path("."), repo: Path = REPO_ROOT) -> Path:
    """nbgrader export to a CSV file, written beside `out` and renamed: an old file stays whole."""
    root = _course_root(root)
    out = Path(out).resolve()
    if out.is_dir():
        raise CourseError(f"{out} is a directory; give the CSV file's name, e.g. grades.csv")
    if not out.parent.is_dir():
        raise CourseError(f"the folder {out.parent} does not exist")
    if not gradebook_path(root).is_file():
        raise CourseError(f"there is no gradebook at {gradebook_path(root)}: nothing is graded yet")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        said = run_nbgrader(["export", f"--CsvExportPlugin.to={tmp}", *_root_args(root, Path(repo).resolve())],
                            root)
        if said:
            print(said, file=sys.stderr)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
