"""Errors meant for people, not stack traces.

Anything raised as a CourseError is printed by the `course` CLI as one clear
line (`error: ...`) with exit status 2; every other exception is a bug.

GraderFault is the grader's own trouble (a full disk, no memory, a sandbox
that could not start): nothing the student did. `course grade` records such a
submission as "not graded, retry", never as a score; `course check` prints it
as one `error:` line.
"""


class CourseError(Exception):
    """A problem with the user's input that the message fully explains."""


class GraderFault(CourseError):
    """The grader could not grade (its machine, not the submission): retry, never a score."""


def describe_os_error(exc: BaseException) -> str:
    """One line for an OSError or MemoryError: what failed and on which path, no traceback."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError):
        what = exc.strerror or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        return f"{what}{where}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
