"""Trusted: write `course grade` results into nbgrader's own gradebook.

The same SQLite database and the same rows nbgrader's autograder writes
(assignment, notebook, grade cells; student, submission, Grade.auto_score),
so that `nbgrader generate_feedback`, `nbgrader export` and formgrader see
the scores. Rows are created only when missing: an assignment already set
up by `nbgrader generate_assignment` keeps its records.
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys
from datetime import datetime
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograde.checks.messages import message, register_messages
from autograde.errors import CourseError
from autograde.grader.rebuild import SubmissionError, open_submission, pristine_cells

TIMESTAMP_FILE = "timestamp.txt"    # nbgrader's submit writes it, `nbgrader collect` copies it beside the notebook
MAX_TIMESTAMP_BYTES = 200


def ensure_assignment(gb: Gradebook, assignment: str, pristine: Path) -> str:
    """Assignment, notebook, grade and solution cells from the pristine notebook; returns the notebook name."""
    notebook = pristine.stem
    try:
        gb.find_assignment(assignment)
    except MissingEntry:
        gb.add_assignment(assignment)
    try:
        gb.find_notebook(notebook, assignment)
    except MissingEntry:
        gb.add_notebook(notebook, assignment)
    for cell in pristine_cells(pristine):
        if cell.kind == "test":
            try:
                gb.find_grade_cell(cell.grade_id, notebook, assignment)
            except MissingEntry:
                gb.add_grade_cell(cell.grade_id, notebook, assignment, max_score=float(cell.points),
                                  cell_type="code")
        elif cell.kind == "solution":
            try:
                gb.find_solution_cell(cell.grade_id, notebook, assignment)
            except MissingEntry:
                gb.add_solution_cell(cell.grade_id, notebook, assignment)
        _ensure_source_cell(gb, cell, notebook, assignment)
    return notebook


def _ensure_source_cell(gb: Gradebook, cell, notebook: str, assignment: str) -> None:
    """nbgrader's record of every cell with a grade id, as generate_assignment makes it. Without it, a
    later `course release` (nbgrader generate_assignment) refuses a notebook that has submissions:
    "Cannot add or remove cells". A locked cell keeps its source and checksum, so that nbgrader's
    own autograde restores it; a solution cell's text is the student's, never recorded."""
    from nbformat.v4 import new_code_cell
    from nbgrader.utils import compute_checksum

    try:
        gb.find_source_cell(cell.grade_id, notebook, assignment)
        return
    except MissingEntry:
        pass
    if cell.kind == "solution":
        gb.add_source_cell(cell.grade_id, notebook, assignment, cell_type="code", locked=False, source="")
        return
    meta = {"grade_id": cell.grade_id, "grade": cell.kind == "test", "solution": False, "locked": True}
    if cell.kind == "test":
        meta["points"] = cell.points
    code = new_code_cell(cell.source, metadata={"nbgrader": meta})
    gb.add_source_cell(cell.grade_id, notebook, assignment, cell_type="code", locked=True, source=cell.source,
                       checksum=compute_checksum(code))


def save_result(gb: Gradebook, assignment: str, notebook: str, student: str, result: dict,
                submitted_at: datetime | None = None) -> dict[str, tuple]:
    """One student's auto scores (0 for every cell when the submission could not be graded), and the
    time it was handed in when nbgrader recorded one (`submission_time`), as `nbgrader autograde` does.

    Returns what was written, grade cell -> (score, max score): the gradebook's own cells decide,
    so `course grade`'s state and summary, built from this, always say what the gradebook says."""
    gb.update_or_create_student(student)
    save_time(gb, assignment, student, submitted_at)
    scores = {t["name"]: t["score"] for t in result["tests"]}
    submission_nb = gb.find_submission_notebook(notebook, assignment, student)
    written = {}
    for grade in submission_nb.grades:
        grade.auto_score = float(scores.get(grade.name, 0.0))
        grade.needs_manual_grade = grade.manual_score is not None
        written[grade.name] = (grade.auto_score, float(grade.max_score or 0.0))
    gb.db.commit()
    return written


def save_time(gb: Gradebook, assignment: str, student: str, submitted_at: datetime | None) -> None:
    """The submission's row, with its time when there is one (a time recorded earlier stays when
    timestamp.txt is gone, as with nbgrader's autograde)."""
    if submitted_at is not None:
        gb.update_or_create_submission(assignment, student, timestamp=submitted_at)
        return
    try:
        gb.find_submission(assignment, student)
    except MissingEntry:
        gb.add_submission(assignment, student)


def submission_time(notebook: Path, inside: Path) -> datetime | None:
    """When the student handed the notebook in, as nbgrader recorded it: timestamp.txt in the same
    folder, read as nbgrader reads it (UTC, naive); None without that file or with an empty one.
    The folder is the student's, so the file is opened as a submission is (no link followed, no wait
    on a pipe, a few bytes at most). CourseError naming the file when it holds something else: that
    submission is not graded until the instructor fixes or deletes the file (a time nobody can read
    could hide a late submission; nbgrader's autograde fails it too)."""
    path = Path(notebook).parent / TIMESTAMP_FILE
    try:
        fd = open_submission(path, inside)
    except (FileNotFoundError, SubmissionError):   # none, or a link (the student's own doing): no time,
        return None                                # as with a time they wrote themselves (nbgrader trusts it)
    except OSError as exc:
        raise CourseError(f"{path} cannot be read as nbgrader's submission time: {exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TIMESTAMP_BYTES:
            raise CourseError(f"{path} is not nbgrader's submission time (not a small text file); fix or "
                              f"delete it, then run again")
        raw = f.read(MAX_TIMESTAMP_BYTES + 1)
    try:
        text = raw.decode("utf-8").strip()
        return read_time(text) if text else None
    except UnknownZone as exc:
        raise CourseError(f"{path} gives the time in {exc.zone!r}, a zone name this machine does not know: nbgrader "
                          f"would take it for UTC, hours off. Write the offset instead (for Korea: "
                          f"sed -i 's/ {exc.zone}$/+09:00/' on each timestamp.txt), and keep nbgrader's exchange "
                          f"on UTC, its default (c.Exchange.timezone)") from None
    except (UnicodeDecodeError, ValueError, OverflowError, TypeError):
        raise CourseError(f"{path} holds {raw[:60]!r}, not a time nbgrader reads (it writes e.g. "
                          f"'2026-12-01 09:30:00.000000 UTC'); fix or delete it, then run again") from None


class UnknownZone(ValueError):
    def __init__(self, zone: str):
        super().__init__(zone)
        self.zone = zone


def read_time(text: str) -> datetime:
    """A submission time as nbgrader's parse_utc reads it (naive UTC), without its two silent
    misreadings of a zone written after a space: a name the system's zone files lack, such as the
    'KST' that an exchange set to Asia/Seoul writes, is taken for UTC; a numeric '+0900' for 900
    seconds. The first raises UnknownZone; the second is read as the offset it is."""
    from dateutil.tz import gettz
    from nbgrader.utils import parse_utc

    parts = text.split(" ")
    if len(parts) == 3:
        day, clock, zone = parts
        if re.fullmatch(r"[+-]\d{4}", zone):                    # +0900: nine hours, not 900 seconds
            text = f"{day} {clock}{zone[:3]}:{zone[3:]}"
        elif not re.fullmatch(r"[+-]?\d+", zone) and gettz(zone) is None:
            raise UnknownZone(zone)
    return parse_utc(text)


def read_due_date(text: str) -> datetime:
    """A due date as an instructor writes it ("2026-12-10 23:59 Asia/Seoul", "2026-12-10 23:59+09:00",
    "2026-12-10T14:59Z"), in naive UTC as the gradebook keeps it. CourseError unless it names its zone
    in a form read as it is meant: a bare time would be UTC, nbgrader's `db assignment add` reads 'KST'
    as UTC and ' +0900' as 900 seconds, all without a word."""
    from dateutil import parser as dateparser

    text = " ".join(str(text).split())
    parts = text.split(" ")
    try:
        if len(parts) == 3:
            zone = parts[2]
            if re.fullmatch(r"[+-]?\d+", zone) and not re.fullmatch(r"[+-]\d{4}", zone):
                raise ValueError(zone)
            return read_time(text)
        when = dateparser.parse(text)
    except UnknownZone as exc:
        raise CourseError(f"--due {text!r}: {exc.zone!r} is a zone name this machine does not know; write a zone "
                          f"such as Asia/Seoul or an offset such as +09:00") from None
    except (ValueError, OverflowError):
        raise CourseError(f"--due {text!r} is not a date and time; write e.g. '2026-12-10 23:59 Asia/Seoul' or "
                          f"'2026-12-10 23:59+09:00'") from None
    if when.tzinfo is None:
        raise CourseError(f"--due {text!r} names no zone, so it could be any of 24 hours; add one, e.g. "
                          f"'{text} Asia/Seoul', '{text} UTC' or '{text}+09:00'")
    return (when - when.utcoffset()).replace(tzinfo=None)


class LatePolicy:
    """Late submissions, as nbgrader's autograder treats them: the rule is the course's own
    nbgrader_config.py (`c.AssignLatePenalties.plugin_class`, by default nbgrader's
    LateSubmissionPlugin with `c.LateSubmissionPlugin.penalty_method`, 'none' unless set to
    'zero'), the due date the assignment's in the gradebook (`nbgrader db assignment add NAME
    --duedate=...`), and the penalty is kept between 0 and the notebook's score."""

    def __init__(self, root: Path):
        from nbgrader.preprocessors import AssignLatePenalties

        root = Path(root)
        config = _course_config(root)
        sys.path.insert(0, str(root))       # a plugin class of the instructor's own, beside the config
        try:
            preprocessor = AssignLatePenalties(config=config)
            preprocessor.init_plugin()
        except Exception as exc:
            raise CourseError(f"the late-submission plugin set in {root / 'nbgrader_config.py'} could not be "
                              f"loaded: {type(exc).__name__}: {str(exc)[:200]}") from None
        finally:
            sys.path.remove(str(root))
        self.plugin = preprocessor.plugin_inst

    def describe(self) -> str:
        """The rule in a few words, for `course grade`'s output."""
        method = getattr(self.plugin, "penalty_method", None)
        kind = type(self.plugin)
        if method is not None:
            return f"{kind.__name__}, penalty_method = {method!r}"
        return f"{kind.__module__}.{kind.__qualname__}"

    def apply(self, gb: Gradebook, assignment: str, notebook: str, student: str) -> tuple[float, float | None]:
        """Write the notebook's late penalty (None when on time); returns (seconds late, penalty)."""
        submission = gb.find_submission(assignment, student)
        submitted_nb = gb.find_submission_notebook(notebook, assignment, student)
        seconds_late = float(submission.total_seconds_late or 0)
        penalty = None
        if seconds_late > 0:
            score = float(submitted_nb.score or 0.0)
            penalty = self.plugin.late_submission_penalty(student, score, seconds_late)
            if penalty is not None:
                penalty = min(max(float(penalty), 0.0), score)
        submitted_nb.late_submission_penalty = penalty
        gb.db.commit()
        return seconds_late, penalty


def _course_config(root: Path):
    """The course root's nbgrader_config.py, loaded as nbgrader loads it (an empty config without one)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    path = root / "nbgrader_config.py"
    if not path.is_file():
        return Config()
    try:
        return PyFileConfigLoader(path.name, path=str(root)).load_config()
    except Exception as exc:
        raise CourseError(f"{path} could not be read: {type(exc).__name__}: {str(exc)[:200]}") from None


register_messages({
    "autograded_missing_cell": {
        "en": "# This answer cell was not in your submission (deleted, or its nbgrader metadata was removed),\n"
              "# so nothing of yours was graded here: its checks scored 0.\n",
        "ko": "# 제출한 노트북에 이 답안 셀이 없었습니다 (셀을 지웠거나 nbgrader 메타데이터가 지워졌습니다).\n"
              "# 그래서 여기서는 채점할 코드가 없었고, 이 셀의 검사는 0점입니다.\n"},
    "autograded_cell_error": {
        "en": "When the grader ran this cell, it stopped with an error, so whatever the cell defines was "
              "missing for the checks that need it:\n{error}\n",
        "ko": "채점기가 이 셀을 실행했을 때 오류가 나서 멈췄습니다. 그래서 이 셀에서 정의하는 것이 그것을 "
              "쓰는 검사에 없었습니다:\n{error}\n"},
})


def autograded_notebook(release: Path, solution_sources: dict[str, str], result: dict) -> dict:
    """The released exercise notebook (exercises/LANG/A/A.ipynb: its locked cells as the students got
    them, no hidden tests, no answers) with the student's own solution cells and the results as
    test-cell outputs, for autograded/<student>/<assignment>/ (what `nbgrader generate_feedback`
    renders). A solution cell the student did not submit shows a note, never the instructor's code:
    nothing of the solutions notebook is read here. A cell that failed when the grader ran it (a syntax
    error, a time limit) shows why under it: otherwise the feedback says only that a function is
    missing, which a student who did run the cell cannot make sense of."""
    nb = json.loads(Path(release).read_text(encoding="utf-8"))
    tests = {t["name"]: t for t in result["tests"]}
    from autograde.grader.pipeline import cell_error_text

    lang = result.get("lang", "en")
    failed = {e["cell"]: cell_error_text(e["error"], lang) for e in result.get("cell_errors", [])}
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if cell["cell_type"] != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if meta.get("solution"):
            cell["source"] = solution_sources[gid] if gid in solution_sources else \
                message("autograded_missing_cell", lang)
        if gid in failed and not meta.get("grade"):
            text = message("autograded_cell_error", lang, error=failed[gid])
            cell["outputs"] = [{"output_type": "error", "ename": "CellError", "evalue": failed[gid],
                                "traceback": [text]}]
        if meta.get("grade") and gid in tests:
            test = tests[gid]
            text = test["output"] + "\n"
            if test["status"] == "passed":
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}]
            else:
                cell["outputs"] = [{"output_type": "error", "ename": "CheckFailed", "evalue": test["output"],
                                    "traceback": [text]}]
    return nb
