"""Trusted: rebuild what to grade from the pristine notebook and the submission.

Only the source of the solution cells (matched by nbgrader grade_id) is taken
from the submission. Setup cells, test cells and hidden tests all come from
the pristine instructor notebook solutions/<lang>/<a>/<a>.ipynb. Anything the
student changed outside their cells is reported as a tamper event, never
trusted and never a crash. A solution cell that is missing (deleted, or its
nbgrader metadata stripped) runs as an empty cell: its steps score 0.

The submission is read without following any symbolic link (open_submission),
and its assignment is the one its own metadata and cells say (identify): a
notebook of another assignment is refused, never graded as that one.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from autograde.checks.messages import both, register_messages
from autograde.errors import CourseError
from autograde.manifest import current

REPO_ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO_ROOT / "solutions"
EXERCISES = REPO_ROOT / "exercises"          # the released notebooks (no answers, no hidden tests)
HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)
# The setup cell's install line names the course's repository and branch (autograde/repository.py).
# An instructor who changes that setting after a release must not see every notebook handed out
# before it reported as an edited locked cell: the line is compared without them (the pristine cell
# is what runs, either way).
INSTALL_SOURCE = re.compile(r"git\+https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[A-Za-z0-9_./-]+")
MAX_NOTEBOOK_BYTES = 20 * 2**20
TAMPER_KEPT = 3                   # tamper events listed per kind; the rest are counted


class SubmissionError(CourseError):
    """The submission cannot be graded at all (score 0, with this message)."""


@dataclass
class Cell:
    grade_id: str
    kind: str                 # "setup", "solution" or "test"
    source: str
    points: int = 0


@dataclass
class Rebuilt:
    assignment: str
    lang: str
    pristine_path: Path
    sha256: str
    cells: list[Cell]                       # in pristine order; solution sources from the submission
    tamper: list[dict] = field(default_factory=list)

    def code_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.kind in ("setup", "solution")]

    def test_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "test"]


# ----------------------------------------------------------------------------
# reading notebooks


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        return "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def _nbgrader(cell: dict) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


# OSErrors that say something about the submission itself (the student's doing: score 0 with the
# message); any other (EIO, ENOMEM, EMFILE ...) is the grader's machine and is raised as it is.
SUBMISSION_ERRNOS = {errno.EACCES, errno.EPERM, errno.ELOOP, errno.EISDIR, errno.ENOENT, errno.ENOTDIR,
                     errno.ENXIO, errno.EINVAL, errno.ENAMETOOLONG}

register_messages({
    "submission_symlink": {
        "en": "{name} is a symbolic link: links in a submission are never followed (they could point at another "
              "student's work or at the grader's files); submit the notebook file itself",
        "ko": "{name} 항목은 심볼릭 링크입니다. 제출물 안의 링크는 따라가지 않습니다 (다른 학생의 과제나 채점기의 "
              "파일을 가리킬 수 있기 때문입니다). 노트북 파일 자체를 제출하세요"},
    "submission_outside": {
        "en": "{name} is not inside the submission's own folder; submit the notebook file itself",
        "ko": "{name} 항목이 제출물 폴더 안에 있지 않습니다. 노트북 파일 자체를 제출하세요"},
    "submission_wrong_assignment": {
        "en": "this notebook belongs to assignment {found}, but it was submitted as {assignment}: submit the "
              "{assignment} notebook (nothing of it was graded)",
        "ko": "이 노트북은 {found} 과제의 것인데 {assignment} 과제로 제출되었습니다. {assignment} 과제의 노트북을 "
              "제출하세요 (이 노트북은 채점하지 않았습니다)"},
})


def show(name) -> str:
    """A file or folder name as text that is safe to print and to store as JSON: bytes that are not
    UTF-8 (a folder made on another system) appear as \\xNN escapes instead of breaking the output."""
    raw = os.fsencode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name).encode()
    return raw.decode("utf-8", "backslashreplace")


def _symlink_error(where: str) -> SubmissionError:
    return SubmissionError(both("submission_symlink", name=show(where)))


def _unreadable(path: Path, exc: OSError) -> SubmissionError:
    name = show(Path(path).name)
    if exc.errno == errno.ELOOP:
        return _symlink_error(name)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SubmissionError(f"{name} cannot be read (permission denied); submit a readable notebook file")
    if exc.errno == errno.EISDIR:
        return SubmissionError(f"{name} is a directory, not a notebook file")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return SubmissionError(f"{name} is missing; submit the notebook file")
    return SubmissionError(f"{name} cannot be read ({exc.strerror or exc})")


OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC     # a pipe: no wait; a link: ELOOP
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_submission(path: Path, inside: Path | None = None) -> int:
    """A read-only descriptor of the submission, opened without following any symbolic link: the file
    itself never, and with `inside` (the folder that holds every submission, e.g. ROOT/submitted) no
    folder between `inside` and the file either, so that what is read is the file that sits in the
    student's own folder and nothing it points to. SubmissionError (both languages) for a link or a
    path outside `inside`; other OSErrors as they are."""
    path = Path(path)
    if inside is None:
        return _open_checked(path, lambda: os.open(path, OPEN_FLAGS), path.name)
    try:
        parts = path.relative_to(inside).parts
    except ValueError:
        parts = ()
    if not parts or any(p in ("..", ".") for p in parts):
        raise SubmissionError(both("submission_outside", name=show(path.name)))
    fd = os.open(inside, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts[:-1]):
            where = "/".join(show(p) for p in parts[:i + 1])
            folder = _open_checked(path, lambda: os.open(part, DIR_FLAGS, dir_fd=fd), where,
                                   is_link=lambda: stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode))
            os.close(fd)
            fd = folder
        return _open_checked(path, lambda: os.open(parts[-1], OPEN_FLAGS, dir_fd=fd),
                             "/".join(show(p) for p in parts))
    finally:
        os.close(fd)


def _open_checked(path: Path, opener, where: str, is_link=None) -> int:
    """opener(), with a symbolic link named as one: `where` is what the student sees (the file, or
    the folder of theirs that is a link). A link fails O_NOFOLLOW with ELOOP, or with ENOTDIR where
    a folder is opened (O_DIRECTORY): `is_link` tells that case from a file where a folder should be."""
    try:
        return opener()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_error(where) from None
        if is_link is not None and exc.errno == errno.ENOTDIR:
            if is_link():
                raise _symlink_error(where) from None
            raise SubmissionError(f"{where} is not a folder; submit the notebook in your own folder") from None
        raise


def _read_submission(path: Path, inside: Path | None = None) -> bytes:
    """The file's bytes; SubmissionError when the submission is not a readable regular file."""
    try:
        fd = open_submission(path, inside)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise SubmissionError(f"{show(path.name)} is a directory, not a notebook file")
            if not stat.S_ISREG(info.st_mode):
                raise SubmissionError(f"{show(path.name)} is not a regular file (a device, pipe or socket)")
            if info.st_size > MAX_NOTEBOOK_BYTES:
                raise SubmissionError(f"{show(path.name)} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
            return f.read(MAX_NOTEBOOK_BYTES + 1)
    except OSError as exc:
        if exc.errno in SUBMISSION_ERRNOS:
            raise _unreadable(path, exc) from None
        raise


def submission_sha256(path: Path, inside: Path | None = None) -> str:
    """The sha256 of a submission's bytes, or a stable marker of why there are none ("dir", "fifo",
    "errno-13" ...): a submission that cannot be read is still graded (0, with the reason) and
    recorded, and is graded again once it changes. Opened as open_submission opens it (no link is
    followed: a link's target is never digested). Never blocks on a pipe, never raises."""
    try:
        fd = open_submission(path, inside)
    except SubmissionError:
        return "link"
    except OSError as exc:
        return f"errno-{exc.errno}"
    try:
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                kind = "dir" if stat.S_ISDIR(info.st_mode) else "special"
                return f"{kind}:{info.st_ino}:{info.st_mtime_ns}"
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
            return digest.hexdigest()
    except OSError as exc:
        return f"errno-{exc.errno}"


def lone_surrogate(nb: dict) -> str | None:
    """Where the notebook holds a lone surrogate (valid JSON escape, not valid Unicode), or None."""
    def bad(value) -> bool:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
                return False
            except UnicodeEncodeError:
                return True
        if isinstance(value, dict):
            return any(bad(k) or bad(v) for k, v in value.items())
        if isinstance(value, list):
            return any(bad(v) for v in value)
        return False

    for i, cell in enumerate(nb.get("cells") or []):
        if bad(cell):
            gid = _nbgrader(cell).get("grade_id") if isinstance(cell, dict) else None
            return f"cell {i + 1}" + (f" ({gid!r})" if isinstance(gid, str) and not bad(gid) else "")
    return "the notebook's metadata" if bad(nb) else None


def load_submission(path: Path, inside: Path | None = None) -> tuple[dict, bytes]:
    """The notebook as a dict and its raw bytes; SubmissionError for anything unreadable, a symbolic
    link, or (with `inside`) a path that leaves that folder (open_submission)."""
    path = Path(path)
    raw = _read_submission(path, inside)
    name = show(path.name)
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                              "a notebook is UTF-8 JSON: save it again from Jupyter or Colab") from None
    try:
        nb = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError(f"{name} is not a valid notebook (invalid JSON: {str(exc)[:120]})") from None
    if not isinstance(nb, dict):
        raise SubmissionError(f"{name} is not a valid notebook (the JSON is not an object)")
    major = nb.get("nbformat")
    if major != 4:
        raise SubmissionError(f"{name} is in notebook format {major!r}; only format 4 (Jupyter 4+) can be "
                              "graded: open and save it in a current Jupyter or Colab")
    if not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{name} has no list of cells")
    try:
        where = lone_surrogate(nb)
    except RecursionError:
        raise SubmissionError(f"{name} is not a valid notebook (nested too deeply)") from None
    if where:
        raise SubmissionError(f"{name} holds text that is not valid Unicode (a lone surrogate such as "
                              f"\\ud800, in {where}); delete that character and save again")
    return nb, raw


def identify(nb: dict, path: Path, expected: str | None = None) -> tuple[str, str]:
    """(assignment, lang): the assignment from metadata.course, else from the notebook's cells (their
    nbgrader ids, infer_assignment), else `expected`, else the file name; lang defaults to en.

    expected: the assignment this notebook was submitted as (`course grade`'s folder, Gradescope's
    configuration); a notebook that names or looks like another one is refused (SubmissionError in
    both languages), so that it is never graded as the other assignment and recorded as this one."""
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    course = meta.get("course") if isinstance(meta.get("course"), dict) else {}
    lang = course.get("lang") if course.get("lang") in ("en", "ko") else "en"
    found = course.get("assignment") if isinstance(course.get("assignment"), str) else None
    if found is None:
        found = infer_assignment(nb, expected) or expected or Path(path).stem
    if expected is not None and current(found) != current(expected):
        raise SubmissionError(both("submission_wrong_assignment", found=show(found)[:80], assignment=expected))
    return (expected if expected is not None else found), lang


@functools.lru_cache(maxsize=1)
def _ids_by_assignment() -> dict[str, frozenset[str]]:
    """assignment -> the nbgrader ids that only its notebook has (from the manifest's test cells and
    the pristine notebook's cells where this installation has it; ids two notebooks share, such as
    `setup` or `check_forward`, say nothing)."""
    from autograde import manifest

    known: dict[str, set[str]] = {}
    for assignment in manifest.assignments():
        ids = {cell.id for cell in manifest.test_cells(assignment)}
        for lang in ("en", "ko"):
            pristine = SOLUTIONS / lang / assignment / f"{assignment}.ipynb"
            if pristine.is_file():
                ids |= {cell.grade_id for cell in pristine_cells(pristine)}
                break
        known[assignment] = ids
    return {a: frozenset(ids - set().union(*(v for b, v in known.items() if b != a))) for a, ids in known.items()}


def infer_assignment(nb: dict, expected: str | None = None) -> str | None:
    """The assignment whose own cell ids the notebook holds most of (expected wins a tie); None when
    the notebook holds none (every nbgrader id stripped: nothing to tell by)."""
    ids = {_nbgrader(c).get("grade_id") for c in nb.get("cells") or [] if isinstance(c, dict)}
    counts = {a: len(ids & own) for a, own in _ids_by_assignment().items()}
    best = max(counts.values(), default=0)
    if best == 0:
        return None
    if expected is not None and counts.get(expected, 0) == best:
        return expected
    return min(a for a, n in counts.items() if n == best)


def pristine_path(assignment: str, lang: str, solutions: Path = SOLUTIONS) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", assignment or ""):
        raise SubmissionError(f"unknown assignment {assignment!r}")
    assignment = current(assignment)
    path = solutions / lang / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        known = sorted(p.name for p in (solutions / lang).iterdir() if p.is_dir()) if (solutions / lang).is_dir() else []
        raise SubmissionError(f"unknown assignment {assignment!r} (known: {', '.join(known) or 'none'})")
    return path


def pristine_cells(path: Path) -> list[Cell]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb["cells"]:
        meta = _nbgrader(cell)
        if cell.get("cell_type") != "code" or "grade_id" not in meta:
            continue
        kind = "solution" if meta.get("solution") else "test" if meta.get("grade") else "setup"
        cells.append(Cell(meta["grade_id"], kind, _source(cell), int(meta.get("points", 0) or 0)))
    return cells


# ----------------------------------------------------------------------------
# comparing


def _normalize(source: str) -> str:
    """Hidden tests removed, trailing spaces and blank lines ignored (what nbgrader releases), the
    repository in the install line ignored (a setting that may change after the release)."""
    source = INSTALL_SOURCE.sub("git+https://github.com/REPOSITORY@BRANCH", HIDDEN_TESTS.sub("", source))
    return "\n".join(line.rstrip() for line in source.splitlines() if line.strip())


def rebuild(nb: dict, raw: bytes, path: Path, solutions: Path = SOLUTIONS, expected: str | None = None) -> Rebuilt:
    """expected: the assignment the notebook was submitted as (identify refuses another one)."""
    assignment, lang = identify(nb, path, expected)
    ppath = pristine_path(assignment, lang, solutions)
    pristine = pristine_cells(ppath)
    tamper: list[dict] = []
    submitted: dict[str, dict] = {}
    order: list[str] = []
    for cell in nb["cells"]:
        gid = _nbgrader(cell).get("grade_id") if isinstance(cell, dict) else None
        if not isinstance(gid, str):
            continue
        if gid in submitted:
            tamper.append({"event": "duplicated_cell", "cell": gid,
                           "detail": "the cell appears more than once; the first copy is graded"})
            continue
        submitted[gid] = cell
        order.append(gid)
    cells = []
    for p in pristine:
        cell = submitted.get(p.grade_id)
        if p.kind == "solution":
            cells.append(Cell(p.grade_id, "solution", _solution_source(p, cell, tamper)))
        else:
            _check_locked(p, cell, tamper)
            cells.append(p)
    _check_order([p.grade_id for p in pristine if p.grade_id in submitted],
                 [g for g in order if g in {p.grade_id for p in pristine}], tamper)
    return Rebuilt(assignment, lang, ppath, hashlib.sha256(raw).hexdigest(), cells, summarise_tamper(tamper))


def summarise_tamper(events: list[dict], keep: int = TAMPER_KEPT) -> list[dict]:
    """At most `keep` events of each kind, then one event per kind that stands for the rest:
    {"event": kind, "cell": "(+N more)", "detail": ..., "more": N}. 10,000 copies of a cell are
    one short report, in the table, the result and the state file alike."""
    out, seen = [], {}
    for event in events:
        kind = event["event"]
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] <= keep:
            out.append(event)
    for kind, count in seen.items():
        if count > keep:
            out.append({"event": kind, "cell": f"(+{count - keep} more)", "more": count - keep,
                        "detail": f"{count} {kind} events in all; the first {keep} are listed"})
    return out


def tamper_counts(events: list[dict]) -> dict[str, int]:
    """kind -> how many times it happened (a summary event counts for the ones it stands for)."""
    counts: dict[str, int] = {}
    for event in events:
        more = event.get("more")
        counts[event["event"]] = counts.get(event["event"], 0) + (more if type(more) is int else 1)
    return counts


def _solution_source(p: Cell, cell: dict | None, tamper: list) -> str:
    if cell is None:
        tamper.append({"event": "deleted_cell", "cell": p.grade_id, "detail": "the solution cell is missing"})
        return ""
    if cell.get("cell_type") != "code":
        tamper.append({"event": "changed_cell_type", "cell": p.grade_id,
                       "detail": f"the solution cell was turned into {cell.get('cell_type')!r}"})
        return ""
    return _source(cell)


def _check_locked(p: Cell, cell: dict | None, tamper: list) -> None:
    """A locked cell (setup or test) must be unchanged; the pristine one is used either way."""
    if cell is None:
        tamper.append({"event": "deleted_cell", "cell": p.grade_id,
                       "detail": "a locked cell is missing (the original is used)"})
    elif _normalize(_source(cell)) != _normalize(p.source):
        tamper.append({"event": "edited_locked_cell", "cell": p.grade_id,
                       "detail": "a locked cell was edited (the original is used)"})


def _check_order(expected: list[str], got: list[str], tamper: list) -> None:
    if expected != got:
        tamper.append({"event": "reordered_cells", "cell": "",
                       "detail": "graded cells are not in the original order (the original order is used)"})
