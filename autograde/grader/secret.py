"""Trusted: the course's secret key, from which the seeds of hidden cases derive.

    seed = HMAC-SHA256(key, assignment, test cell, step, student)   (autograde.checks.core.case_seed)

`course grade` creates the key once, in COURSE_ROOT/.course-secret (32 random bytes as hex,
mode 0600), and uses it for every later run: a regrade draws exactly the same hidden cases, so
the same submission gets the same score and the same feedback, while nobody without the key can
know the cases in advance. Keep the file out of git and out of the student release (it is in
.gitignore; `nbgrader generate_assignment` never copies it, since it is not in source/), and
back it up with the gradebook: with a new key the hidden cases change.

COURSE_SECRET_FILE names another file (for example one shared by several graders, or the one
bundled into a Gradescope autograder). `course check` uses a key only when given one
(`--secret FILE` or COURSE_SECRET_FILE); otherwise it uses the public fixed stream, which is
reproducible but not secret.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from autograde.errors import CourseError

SECRET_NAME = ".course-secret"
ENV = "COURSE_SECRET_FILE"
_HEX = re.compile(r"[0-9a-f]{64}")


def secret_path(root: Path) -> Path:
    return Path(os.environ[ENV]) if os.environ.get(ENV) else Path(root) / SECRET_NAME


def read_secret(path: Path) -> bytes:
    """The key in `path`; CourseError naming the file when it is unreadable or malformed."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseError(f"cannot read the course secret {path}: {exc.__class__.__name__}: {exc}") from None
    if not _HEX.fullmatch(text):
        raise CourseError(f"the course secret {path} is not 64 hexadecimal characters; restore it from your "
                          f"backup (with a new key every hidden case changes)")
    return bytes.fromhex(text)


def course_secret(root: Path, create: bool = True) -> bytes:
    """The course's key: COURSE_SECRET_FILE, else ROOT/.course-secret, created (0600) when missing."""
    path = secret_path(root)
    if not path.exists() and create and not os.environ.get(ENV):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass                                   # another grader created it just now
        except OSError as exc:
            raise CourseError(f"cannot create the course secret {path}: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
    return read_secret(path)


def optional_secret(path: Path | None) -> bytes | None:
    """For `course check`: the key in `path`, else in COURSE_SECRET_FILE, else None (public stream)."""
    if path is not None:
        return read_secret(path)
    if os.environ.get(ENV):
        return read_secret(Path(os.environ[ENV]))
    return None
