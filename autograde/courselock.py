"""One writer at a time on a course: `course release` and `course grade` never overlap.

`course release` builds a new gradebook from a copy of the old one and renames it into place, so
any grade written to the old file meanwhile would be lost; two `course grade` runs of the same
assignment would each record and resume the same state file. So:

    course release            the whole course, alone            ROOT/.course-lock, exclusive
    course grade ASSIGNMENT   the course beside other gradings    ROOT/.course-lock, shared
                              and that assignment, alone         ROOT/.course-grade/ASSIGNMENT.lock

A command that cannot take its lock at once stops before it touches anything, with one line that
names what holds it (flock: the kernel drops the lock when its holder ends, even by SIGKILL, so a
crash never leaves a stale lock behind). `course feedback` and `course export-grades` only read the
gradebook and take no lock: a rename swaps it whole, and they read the old file or the new one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from autograde.errors import CourseError

COURSE_LOCK = ".course-lock"
STATE_DIR = ".course-grade"        # course grade's state files, and its locks beside them


@contextlib.contextmanager
def releasing(root: Path):
    """Held while `course release` changes the course: no grading runs beside it."""
    with _locked(Path(root) / COURSE_LOCK, exclusive=True, what="course release",
                 busy=f"a `course grade` (or another `course release`) is working on the course at {root}; "
                      f"release once it has finished (a release would replace the gradebook under it)"):
        yield


@contextlib.contextmanager
def grading(root: Path, assignment: str):
    """Held while `course grade ASSIGNMENT` runs: other assignments may be graded beside it."""
    root = Path(root)
    with _locked(root / COURSE_LOCK, exclusive=False, what=f"course grade {assignment}",
                 busy=f"`course release` is changing the course at {root} (its gradebook among others); "
                      f"grade once it has finished"):
        (root / STATE_DIR).mkdir(exist_ok=True)
        with _locked(root / STATE_DIR / f"{assignment}.lock", exclusive=True, what=f"course grade {assignment}",
                     busy=f"`course grade {assignment}` is already running on the course at {root}", signed=True):
            yield


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool, what: str, busy: str, signed: bool = False):
    """flock on `path`, or CourseError(busy). `signed`: the holder writes its pid and command in the
    file, and `busy` names it (a lock that several share has no one holder to name)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CourseError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd) if signed else ""
            raise CourseError(busy + (f" ({holder})" if holder else "")) from None
        if signed:                          # who holds it, for the message of whoever comes next
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {what}".encode(), 0)
        yield
    finally:
        os.close(fd)                        # closing drops the lock


def _holder(fd: int) -> str:
    """What the lock file says of its holder ("pid 123: course grade 03_attention"), if anything."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        pid = int(text.split(":")[0].removeprefix("pid "))
        os.kill(pid, 0)                     # still alive: not the words of a run that has ended
    except (OSError, ValueError):
        return ""
    return text
