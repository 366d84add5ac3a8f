"""`course release`, `course feedback`, `course export-grades`: nbgrader's steps, never losing a file.

The whole class (release, grade, feedback, export, two languages) runs in
tests/test_grader.py::test_a_mixed_class_as_the_guide_runs_it; here, the failure path: nbgrader
failing midway (no `alembic` for the second language) leaves every committed notebook and the
gradebook byte for byte as they were, and the same release then succeeds, on a gradebook in which
`course grade` had recorded a submission before any release.
"""
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autograde import classroom, courselock, notebooks
from autograde.errors import CourseError

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "01_tokenizer"
NOTE = "A line the instructor added after the release."


def copy_of_the_course(where: Path) -> Path:
    """solutions/ and exercises/ of one assignment, both languages: what release reads and writes."""
    for kind in ("solutions", "exercises"):
        for lang in notebooks.LANGS:
            shutil.copytree(REPO / kind / lang / ASSIGNMENT, where / kind / lang / ASSIGNMENT)
    return where


def snapshot(*folders: Path) -> dict[Path, bytes]:
    """Every file's bytes, but the lock file (an empty file `course release` leaves, by design)."""
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != courselock.COURSE_LOCK}


def a_gradebook(root: Path, pristine: Path) -> Path:
    """An instructor's gradebook in which `course grade` has already recorded a graded submission
    (made in-process: nbgrader stamps a new gradebook with alembic)."""
    from nbgrader.api import Gradebook

    from autograde.grader.grade import _alembic_on_path
    from autograde.grader.gradebook import ensure_assignment, save_result
    from autograde.grader.rebuild import pristine_cells

    _alembic_on_path()
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        notebook = ensure_assignment(gb, ASSIGNMENT, pristine)
        tests = [{"name": c.grade_id, "score": float(c.points)} for c in pristine_cells(pristine) if c.kind == "test"]
        save_result(gb, ASSIGNMENT, notebook, "ana", {"tests": tests})
    return root / "gradebook.db"


def scores(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT student.id, SUM(grade.auto_score) FROM grade "
                           "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
                           "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
                           "JOIN student ON submitted_assignment.student_id = student.id GROUP BY 1").fetchall()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")      # nbgrader's own add_submission
def test_a_release_failing_midway_changes_nothing_then_succeeds(tmp_path, monkeypatch):
    repo, root = copy_of_the_course(tmp_path / "repo"), tmp_path / "course"
    root.mkdir()
    source = repo / "solutions" / "en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = json.loads(source.read_text(encoding="utf-8"))
    nb["cells"][0]["source"] += "\n\n" + NOTE                    # the English student version is now stale
    source.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    db = a_gradebook(root, repo / "solutions" / "en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    graded = scores(db)
    assert graded and graded[0][0] == "ana" and graded[0][1] > 0
    before = snapshot(repo, root)

    real = classroom.nbgrader_generate

    def korean_without_alembic(name, lang, *args):
        if lang == "ko":                                          # the English one has succeeded by now
            monkeypatch.setattr(notebooks, "tool_env", lambda: {"PATH": "/nonexistent"})
        return real(name, lang, *args)

    monkeypatch.setattr(classroom, "nbgrader_generate", korean_without_alembic)
    with pytest.raises(CourseError, match=r"(?s)generate_assignment failed for ko/.*no committed notebook "
                                          r"was changed.*alembic"):
        classroom.release(ASSIGNMENT, root=root, repo=repo)
    assert snapshot(repo, root) == before                        # every byte, the gradebook included
    assert sorted(p.name for p in root.iterdir()) == [".course-lock", "gradebook.db"]    # no staging folder left

    monkeypatch.undo()
    done = classroom.release(ASSIGNMENT, root=root, repo=repo)
    exercise = repo / "exercises" / "en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert done.updated == [exercise] and NOTE in exercise.read_text(encoding="utf-8")
    assert [p.parts[-3] for p in done.unchanged] == ["ko"]
    with sqlite3.connect(db) as con:                             # recorded, after `course grade` had
        assert con.execute("SELECT name FROM assignment").fetchall() == [(ASSIGNMENT,)]
        cells = con.execute("SELECT COUNT(*) FROM source_cell WHERE source != ''").fetchone()[0]
    assert cells >= 2 and scores(db) == graded                   # the locked cells' source; ana's grades kept
    assert sorted(p.name for p in root.iterdir()) == [".course-lock", "gradebook.db"]


def test_the_steps_refuse_clearly_before_touching_anything(tmp_path, capsys):
    from autograde.cli import main

    for args, fragment in ((["release", "99_nothing"], "unknown assignment '99_nothing'"),
                           (["feedback", ASSIGNMENT], f"run `course grade {ASSIGNMENT}` first"),
                           (["export-grades", "-o", str(tmp_path)], "is a directory"),
                           (["export-grades", "-o", str(tmp_path / "grades.csv")], "no gradebook")):
        assert main([*args, "--root", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lang, framing", [("en", "When the grader ran this cell, it stopped with an error"),
                                           ("ko", "채점기가 이 셀을 실행했을 때 오류가 나서 멈췄습니다")])
def test_the_feedback_notebook_says_why_an_answer_cell_failed(lang, framing):
    """A syntax error or a time limit in an answer cell: without the cell's own error, the feedback
    says only "there is no function `greedy` yet: run the cell that defines it first"."""
    from autograde.grader.gradebook import autograded_notebook

    release = REPO / "exercises" / lang / "05_sampling" / "05_sampling.ipynb"
    syntax = "SyntaxError: expected ':' (<cell greedy>, line 1)"
    result = {"lang": lang, "tests": [], "cell_errors": [{"cell": "greedy", "error": syntax}]}
    nb = autograded_notebook(release, {"greedy": "def greedy(logits)\n    return logits.argmax(-1)\n"}, result)
    by_id = {c["metadata"].get("nbgrader", {}).get("grade_id"): c for c in nb["cells"] if c["cell_type"] == "code"}
    [shown] = by_id["greedy"]["outputs"]
    assert shown["output_type"] == "error" and shown["traceback"][0].startswith(framing)
    assert syntax in shown["traceback"][0]
    assert by_id["temperature"]["outputs"] == [] and by_id["top_k"]["outputs"] == []


NBCONVERT_FAILURE = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/traitlets/traitlets.py", line 652, in get
    value = obj._trait_values[self.name]
KeyError: 'template_paths'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/nbconvert/exporters/templateexporter.py", line 669, in get_template_names
    raise ValueError(msg)
ValueError: No template sub-directory with name 'classic' found in the following paths:
\t/venv/share/jupyter
\t/usr/share/jupyter
"""


def test_a_failing_nbgrader_is_one_line_naming_its_error(tmp_path, capsys, monkeypatch):
    """nbgrader's traceback (40 lines of nbconvert's frames) is not the instructor's business: the
    error line names the step and the exception that ended it; the old CSV is untouched."""
    import subprocess

    from autograde.cli import main

    (tmp_path / "gradebook.db").write_bytes(b"")
    (tmp_path / "grades.csv").write_text("the old export\n", encoding="utf-8")
    monkeypatch.setattr(classroom.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, stdout="", stderr="[ExportApp | ERROR] the export failed\n" + NBCONVERT_FAILURE))
    assert main(["export-grades", "-o", str(tmp_path / "grades.csv"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "File " not in err and "KeyError" not in err, err
    assert err.startswith("error: nbgrader export failed (exit status 1): [ExportApp | ERROR] the export failed "
                          "ValueError: No template sub-directory with name 'classic'"), err
    assert (tmp_path / "grades.csv").read_text(encoding="utf-8") == "the old export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gradebook.db", "grades.csv"]


def test_feedback_again_does_not_warn_about_rewriting_it(tmp_path, capsys, monkeypatch):
    """Writing the feedback again is what `course feedback` does: nbgrader's per-student 'Removing
    existing assignment' warnings are not shown; its other warnings are."""
    from autograde.cli import main

    (tmp_path / "autograded" / "ana" / ASSIGNMENT).mkdir(parents=True)
    (tmp_path / "autograded" / "ana" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / "gradebook.db").write_bytes(b"")

    def nbgrader(args, root):
        (root / "feedback" / "ana" / ASSIGNMENT).mkdir(parents=True)
        (root / "feedback" / "ana" / ASSIGNMENT / f"{ASSIGNMENT}.html").write_text("<html/>", encoding="utf-8")
        return (f"[GenerateFeedbackApp | WARNING] Removing existing assignment: {root}/feedback/ana/{ASSIGNMENT}\n"
                "[GenerateFeedbackApp | WARNING] something else")

    monkeypatch.setattr(classroom, "run_nbgrader", nbgrader)
    assert main(["feedback", ASSIGNMENT, "--root", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "Removing existing" not in captured.err and "something else" in captured.err
    assert f"wrote 1 feedback file(s) under {tmp_path.resolve() / 'feedback'}" in captured.out


def test_nbgrader_finds_nbconvert_templates_wherever_nbconvert_is_installed():
    """`course feedback` renders with nbconvert's `classic` template; a venv that reuses another
    environment's packages has none under its own prefix, and nbgrader failed there."""
    import os
    import sys

    env = notebooks.tool_env()
    places = [*filter(None, env.get("JUPYTER_PATH", "").split(os.pathsep)), str(Path(sys.prefix) / "share" / "jupyter")]
    assert any((Path(p) / "nbconvert" / "templates" / "classic").is_dir() for p in places), places


def test_one_notebook_per_student_as_the_guide_says(tmp_path):
    """instructors.md: ASSIGNMENT.ipynb, else the folder's first .ipynb by name; the others are not graded."""
    from autograde.grader.grade import find_submissions

    for student, names in {"ana": ["zz.ipynb", f"{ASSIGNMENT}.ipynb"], "ben": ["b.ipynb", "a.ipynb", "notes.txt"],
                           "cy": ["notes.txt"]}.items():
        folder = tmp_path / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("{}", encoding="utf-8")
    found = {student: path.name for student, path in find_submissions(tmp_path, ASSIGNMENT).items()}
    assert found == {"ana": f"{ASSIGNMENT}.ipynb", "ben": "a.ipynb"}
    for lang in ("en", "ko"):
        guide = " ".join((REPO / "course" / lang / "instructors.md").read_text(encoding="utf-8").split())
        assert f"`submitted/STUDENT/ASSIGNMENT/ASSIGNMENT.ipynb` (" in guide or \
            "`submitted/STUDENT/ASSIGNMENT/ASSIGNMENT.ipynb`를" in guide


def test_the_graders_own_words_about_a_failed_cell_are_in_the_students_language():
    """A cell the grader had to stop (a time limit, a killed process) is explained in Korean in a
    Korean notebook's feedback and `course check` table; Python's own exception text stays as it is.
    The worker's time-limit text is the one the catalogue recognises."""
    import signal
    import time

    from autograde.grader.gradebook import autograded_notebook
    from autograde.grader.pipeline import cell_error_text
    from autograde.grader.worker import CallTimeout, alarm

    try:
        with alarm(0.05):
            while True:
                time.sleep(0.01)
    except CallTimeout as exc:
        worker_text = f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert cell_error_text(worker_text, "ko") == "CallTimeout: 시간 제한 0.05초를 넘겼습니다"
    assert cell_error_text(worker_text, "en") == worker_text
    stopped = "the cell stopped the notebook (time limit of 10 s)"
    assert cell_error_text(stopped, "ko") == "이 셀에서 노트북 실행이 멈췄습니다(시간 제한 10초)"
    assert cell_error_text("the cell stopped the notebook (exit status -9)", "ko").endswith("(종료 코드 -9)")
    assert cell_error_text("SyntaxError: invalid syntax", "ko") == "SyntaxError: invalid syntax"

    release = REPO / "exercises" / "ko" / "05_sampling" / "05_sampling.ipynb"
    result = {"lang": "ko", "tests": [], "cell_errors": [{"cell": "greedy", "error": stopped}]}
    nb = autograded_notebook(release, {}, result)
    [shown] = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "greedy")["outputs"]
    assert "시간 제한 10초" in shown["traceback"][0] and "time limit" not in shown["traceback"][0]


def test_a_hidden_check_failing_like_the_visible_one_is_said_once():
    """Feedback names each failing check once: a hidden check with the visible one's mistake adds a
    short line; a hidden check that finds another mistake is shown in full."""
    from autograde.checks.messages import message
    from autograde.grader.pipeline import _failure_text

    def step(hidden, key, case):
        return {"step": "sampling.top_p", "hidden": hidden, "passed": False, "key": key, "params": {},
                "case": case, "n": 5}

    same = _failure_text([step(False, "mistake_topp_boundary", "zeros(1, 4), p=0.5"),
                          step(True, "mistake_topp_boundary", "zeros(1, 8), p=3/8")], "ko")
    lines = same.splitlines()
    assert len(lines) == 2 and "zeros(1, 4)" in lines[0] and lines[1] == message("hidden_same_failure", "ko")
    other = _failure_text([step(False, "mistake_topp_boundary", "zeros(1, 4), p=0.5"),
                           step(True, "mistake_topp_tie_order", "log(...), p=0.2")], "en")
    assert len(other.splitlines()) == 2 and message("hidden_same_failure", "en") not in other
    only_hidden = _failure_text([step(True, "mistake_topp_tie_order", "log(...), p=0.2")], "en")
    assert only_hidden.startswith("❌") and len(only_hidden.splitlines()) == 1


def test_release_sets_the_due_date_in_its_zone_and_keeps_it(tmp_path):
    """`course release --due` writes the due date in UTC as the gradebook keeps it; a release
    without --due keeps it; 'none' removes it."""
    from datetime import datetime

    repo, root = copy_of_the_course(tmp_path / "repo"), tmp_path / "course"
    root.mkdir()
    done = classroom.release(ASSIGNMENT, root=root, repo=repo, due="2026-12-10 23:59 Asia/Seoul")
    assert done.due == datetime(2026, 12, 10, 14, 59)
    # what a release without --due and one with --due none do to the gradebook they stage
    assert classroom._set_due(root / "gradebook.db", ASSIGNMENT, None) == datetime(2026, 12, 10, 14, 59)
    assert classroom._set_due(root / "gradebook.db", ASSIGNMENT, "none") is None


@pytest.mark.parametrize("due, utc", [
    ("2026-12-10 23:59 Asia/Seoul", "2026-12-10 14:59:00"),
    ("2026-12-10 23:59+09:00", "2026-12-10 14:59:00"),
    ("2026-12-10 23:59:00 +0900", "2026-12-10 14:59:00"),       # nbgrader's db command: 23:44 UTC
    ("2026-12-10T14:59Z", "2026-12-10 14:59:00"),
    ("2026-12-10 14:59 UTC", "2026-12-10 14:59:00"),
])
def test_a_due_date_is_read_in_its_own_zone(due, utc):
    from autograde.grader.gradebook import read_due_date

    assert str(read_due_date(due)) == utc


@pytest.mark.parametrize("due, fragment", [
    ("2026-12-10 23:59 KST", "'KST' is a zone name this machine does not know"),   # nbgrader's: UTC
    ("2026-12-10 23:59", "names no zone"),
    ("2026-12-10 23:59 9", "is not a date and time"),
    ("next friday", "is not a date and time"),
])
def test_a_due_date_without_a_clear_zone_is_refused_before_anything(tmp_path, due, fragment):
    done = subprocess.run([sys.executable, "-m", "autograde.cli", "release", ASSIGNMENT, "--due", due,
                           "--root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
