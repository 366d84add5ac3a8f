"""Trusted: write `course grade` results into nbgrader's own gradebook.

The same SQLite database and the same rows nbgrader's autograder writes
(assignment, notebook, grade cells; student, submission, Grade.auto_score),
so that `nbgrader generate_feedback`, `nbgrader export` and formgrader see
the scores. Rows are created only when missing: an assignment already set
up by `nbgrader generate_assignment` keeps its records.
"""
from __future__ import annotations

import json
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograde.checks.messages import message, register_messages
from autograde.grader.rebuild import pristine_cells


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


def save_result(gb: Gradebook, assignment: str, notebook: str, student: str, result: dict) -> dict[str, tuple]:
    """One student's auto scores (0 for every cell when the submission could not be graded).

    Returns what was written, grade cell -> (score, max score): the gradebook's own cells decide,
    so `course grade`'s state and summary, built from this, always say what the gradebook says."""
    gb.update_or_create_student(student)
    try:
        gb.find_submission(assignment, student)
    except MissingEntry:
        gb.add_submission(assignment, student)
    scores = {t["name"]: t["score"] for t in result["tests"]}
    submission_nb = gb.find_submission_notebook(notebook, assignment, student)
    written = {}
    for grade in submission_nb.grades:
        grade.auto_score = float(scores.get(grade.name, 0.0))
        grade.needs_manual_grade = grade.manual_score is not None
        written[grade.name] = (grade.auto_score, float(grade.max_score or 0.0))
    gb.db.commit()
    return written


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
