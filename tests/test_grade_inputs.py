"""What a class hands in is input, not instructions: `course grade` on a course root inside the
checkout (where instructors keep theirs, not /tmp).

* A submission that is a symbolic link (the notebook, the assignment folder or the student folder),
  to another student's work, /etc/shadow or the course key, is refused: 0 with the reason in both
  languages; the link is never followed, so no digest or parse error of its target reaches the
  state file.
* A deleted or unmarked answer cell never brings the instructor's code into the autograded
  notebook or nbgrader's feedback HTML.
* Another assignment's notebook is refused by what it is, not by the folder it sits in; the state
  (the summary) and the gradebook agree for everyone.
* A student folder whose name is not UTF-8 is refused by its (escaped) name; the run exits 0.
"""
import hashlib
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autograde.grader.grade import STATE_DIR, grade_assignment
from autograde.grader.sandbox import sandbox_mode
from test_grader import (ASSIGNMENT, FAST, REPO, _cells_by_id, course_root, env_with_venv, grade_rows,
                         make_submission, needs_reference, write_submissions)

pytestmark = [needs_reference, pytest.mark.slow]
NOT_UTF8 = b"caf\xe9"


def strip_metadata(nb: dict) -> dict:
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("nbgrader", None)
    return nb


def without_cell(nb: dict, grade_id: str) -> dict:
    nb["cells"] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def answer_lines(grade_ids, keep_out_of: dict | None = None) -> set[str]:
    """Lines of the instructor's answer cells that the released exercise does not hold (and, with
    keep_out_of, that no cell of that notebook holds either): what must never be shown for them."""
    solution = _cells_by_id(json.loads((REPO / "solutions/en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()))
    known = {line.strip() for nb in [make_submission("blank"), keep_out_of or {"cells": []}]
             for cell in nb["cells"] for line in "".join(cell["source"]).splitlines()}
    return {line.strip() for gid in grade_ids for line in "".join(solution[gid]["source"]).splitlines()
            if len(line.strip()) >= 12 and not line.strip().startswith("#") and line.strip() not in known}


def shown_text(notebook: Path) -> str:
    """Every cell's source and output text of an autograded notebook."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        parts.append("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
        for out in cell.get("outputs", []):
            parts += [str(out.get("text", "")), str(out.get("evalue", "")), "".join(out.get("traceback", []))]
    return "\n".join(parts)


def html_text(path: Path) -> str:
    """The feedback page as text: tags dropped (the code's highlighting splits it into spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def jupyter_share() -> str:
    """nbconvert's templates, where the environment that installed nbconvert keeps them (a venv
    that reuses another one's packages does not have them under its own prefix)."""
    import nbconvert

    return os.pathsep.join(filter(None, [str(Path(nbconvert.__file__).parents[4] / "share" / "jupyter"),
                                         os.environ.get("JUPYTER_PATH")]))


@pytest.fixture(scope="module")
def graded():
    with course_root("inputs") as root:
        submitted = root / "submitted"
        key_file = root / ".course-secret"
        folder = lambda student: (submitted / student / ASSIGNMENT).mkdir(parents=True) or \
            submitted / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        other = folder("deleted_rope")              # the one student here graded in a sandbox with "stripped"
        other.write_text(json.dumps(without_cell(make_submission("full"), "rope")))
        folder("link_notebook").symlink_to(other)                       # another student's notebook
        (submitted / "link_folder").mkdir()
        (submitted / "link_folder" / ASSIGNMENT).symlink_to(other.parent)
        (submitted / "link_student").symlink_to(submitted / "deleted_rope")   # the whole student folder
        folder("link_shadow").symlink_to("/etc/shadow")
        folder("link_key").symlink_to(key_file)
        full = make_submission("full")
        old = make_submission("full")
        old["metadata"]["course"]["assignment"] = "02_attention"       # downloaded before the renaming
        folder("old_download").write_text(json.dumps(old))
        folder("stripped").write_text(json.dumps(strip_metadata(make_submission("full"))))
        tokenizer = make_submission("full", assignment="01_tokenizer")
        folder("other_assignment").write_text(json.dumps(tokenizer))
        del tokenizer["metadata"]["course"]                              # told apart by its cells alone
        (submitted / "other_unnamed" / ASSIGNMENT).mkdir(parents=True)
        (submitted / "other_unnamed" / ASSIGNMENT / "my_work.ipynb").write_text(json.dumps(tokenizer))
        odd = os.path.join(os.fsencode(submitted), NOT_UTF8, os.fsencode(ASSIGNMENT))
        os.makedirs(odd)
        with open(os.path.join(odd, os.fsencode(f"{ASSIGNMENT}.ipynb")), "w") as f:
            json.dump(full, f)

        code = grade_assignment(ASSIGNMENT, workers=2, root=root, limits=FAST, quiet=True)
        state_text = (root / STATE_DIR / f"{ASSIGNMENT}.json").read_text(encoding="utf-8")
        yield root, code, json.loads(state_text)["done"], state_text, key_file.read_text().strip()


def test_links_are_refused_and_never_followed(graded):
    root, code, state, state_text, key = graded
    assert code == 0
    full = state["deleted_rope"]["max_score"]
    assert state["deleted_rope"]["score"] > 0
    for student in ("link_notebook", "link_folder", "link_student", "link_shadow", "link_key"):
        entry = state[student]
        assert entry["score"] == 0 and entry["max_score"] == full, student
        assert "symbolic link" in entry["error"] and "심볼릭 링크" in entry["error"], (student, entry["error"])
        assert entry["sha256"] == "link", student                        # no digest of what it points to
    assert "link_student" in state["link_student"]["error"]             # names the folder that is the link
    assert key[:6] not in state_text
    if os.access("/etc/shadow", os.R_OK):
        assert hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest() not in state_text
    earned = {row[0] for row in grade_rows(root / "gradebook.db") if row[2]}
    assert "deleted_rope" in earned and not {s for s in earned if s.startswith("link_")}   # linkers earn nothing


def test_another_assignments_notebook_is_refused_and_the_summary_is_the_gradebook(graded):
    root, code, state, _, _ = graded
    for student in ("other_assignment", "other_unnamed"):
        entry = state[student]
        assert entry["score"] == 0 and entry["tests"] and not any(entry["tests"].values()), student
        assert "belongs to assignment 01_tokenizer" in entry["error"] and "01_tokenizer 과제" in entry["error"]
    rows = grade_rows(root / "gradebook.db")
    in_gradebook = {}
    for student, cell, score in rows:
        in_gradebook.setdefault(student, {})[cell] = score
    assert set(in_gradebook) == set(state) - {NOT_UTF8.decode("utf-8", "backslashreplace")}
    for student, cells in in_gradebook.items():
        assert state[student]["tests"] == cells, student
        assert state[student]["score"] == sum(cells.values()), student


def test_a_notebook_downloaded_under_the_old_name_is_graded_in_full(graded):
    """Its metadata says 02_attention (the name before December 2026): the same notebook, graded."""
    _, _, state, _, _ = graded
    entry = state["old_download"]
    assert not entry.get("error") and entry["score"] == entry["max_score"] > 0, entry


def test_a_student_folder_that_is_not_utf8_is_refused_by_name(graded):
    _, code, state, _, _ = graded
    entry = state["caf\\xe9"]
    assert code == 0                                                    # not the grader's fault
    assert entry["score"] == 0 and "UTF-8" in entry["error"] and "caf\\xe9" in entry["error"]


def test_the_sandbox_mode_is_recorded(graded):
    _, _, state, _, _ = graded
    assert state["deleted_rope"]["sandbox_mode"] == sandbox_mode()
    assert state["link_key"]["sandbox_mode"] is None                    # refused: nothing ran


def test_a_missing_or_unmarked_answer_never_shows_the_instructors_code(graded):
    """In the autograded notebook and in nbgrader's feedback HTML made from it."""
    root, _, state, _, _ = graded
    tests = state["deleted_rope"]["tests"]
    assert tests["check_rope"] == 0 and tests["check_softmax"] > 0
    assert state["stripped"]["score"] == 0
    rope = answer_lines(["rope"], keep_out_of=without_cell(make_submission("full"), "rope"))
    every = answer_lines([g for g, c in _cells_by_id(make_submission("blank")).items()
                          if c["metadata"]["nbgrader"].get("solution")])
    submitted = every - rope                   # the answers deleted_rope did hand in: shown, as they should be
    assert rope and submitted
    autograded = lambda student: root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert submitted <= set(map(str.strip, shown_text(autograded("deleted_rope")).splitlines()))   # can fail
    for student, lines in (("deleted_rope", rope), ("stripped", every)):
        text = shown_text(autograded(student))
        assert not [line for line in lines if line in text], student
        assert "### BEGIN HIDDEN TESTS" not in text

    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{root / 'gradebook.db'}'\n")
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--force",
                           "--log-level=WARN", "--CourseDirectory.student_id=*"], cwd=root, capture_output=True,
                          text=True, env=env_with_venv(JUPYTER_PATH=jupyter_share()), timeout=600)
    feedback = lambda student: root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert feedback("deleted_rope").exists(), done.stdout[-2000:] + done.stderr[-2000:]
    assert [line for line in submitted if line in html_text(feedback("deleted_rope"))]   # the check can fail
    for student, lines in (("deleted_rope", rope), ("stripped", every)):
        text = html_text(feedback(student))
        assert not [line for line in lines if line in text], student


def test_a_notebook_sharing_a_test_cell_id_is_told_apart():
    """04_ffn_block and 07_real_model both have `check_forward`: a notebook of 07 handed in as 03,
    with its metadata or without it, is refused rather than credited for the cell they share."""
    from autograde.grader.rebuild import SubmissionError, rebuild

    real = make_submission("full", assignment="07_real_model")
    bare = json.loads(json.dumps(real))
    del bare["metadata"]["course"]
    for nb in (real, bare):
        with pytest.raises(SubmissionError, match="belongs to assignment 07_real_model"):
            rebuild(nb, b"", Path("04_ffn_block.ipynb"), expected="04_ffn_block")
    ffn = make_submission("blank", assignment="04_ffn_block")
    del ffn["metadata"]["course"]
    assert rebuild(ffn, b"", Path("anything.ipynb"), expected="04_ffn_block").assignment == "04_ffn_block"


@pytest.mark.parametrize("text, utc", [
    ("2026-12-01 09:30:00.000000 UTC", "2026-12-01 09:30:00"),            # what nbgrader writes by default
    ("2026-12-01 18:30:00.000000 Asia/Seoul", "2026-12-01 09:30:00"),
    ("2026-12-01 18:30:00+09:00", "2026-12-01 09:30:00"),
    ("2026-12-01 18:30:00 +0900", "2026-12-01 09:30:00"),                 # nbgrader alone: 18:15 UTC
    ("2026-12-01 09:30:00", "2026-12-01 09:30:00"),                       # no zone: UTC, as nbgrader
])
def test_a_submission_time_is_read_in_its_own_zone(tmp_path, text, utc):
    from autograde.grader.gradebook import submission_time

    notebook = tmp_path / "submitted" / "ana" / "03_attention" / "03_attention.ipynb"
    notebook.parent.mkdir(parents=True)
    (notebook.parent / "timestamp.txt").write_text(text + "\n")
    assert str(submission_time(notebook, tmp_path / "submitted")) == utc


@pytest.mark.parametrize("text, fragment", [
    ("2026-12-01 18:30:00.000000 KST", "'KST', a zone name this machine does not know"),   # nbgrader: UTC
    ("yesterday", "not a time nbgrader reads"),
    ("\udcff", "not a time nbgrader reads"),
])
def test_a_submission_time_nbgrader_would_misread_is_refused(tmp_path, text, fragment):
    from autograde.errors import CourseError
    from autograde.grader.gradebook import submission_time

    notebook = tmp_path / "submitted" / "ana" / "03_attention" / "03_attention.ipynb"
    notebook.parent.mkdir(parents=True)
    (notebook.parent / "timestamp.txt").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(CourseError, match=re.escape(fragment)):
        submission_time(notebook, tmp_path / "submitted")


def test_a_submission_time_that_is_a_link_or_missing_is_no_time(tmp_path):
    """A link (the student's own doing, like any time they write) is not followed: no time."""
    from autograde.errors import CourseError
    from autograde.grader.gradebook import submission_time

    notebook = tmp_path / "submitted" / "ana" / "03_attention" / "03_attention.ipynb"
    notebook.parent.mkdir(parents=True)
    assert submission_time(notebook, tmp_path / "submitted") is None
    (tmp_path / "elsewhere.txt").write_text("2026-12-01 09:30:00 UTC")
    (notebook.parent / "timestamp.txt").symlink_to(tmp_path / "elsewhere.txt")
    assert submission_time(notebook, tmp_path / "submitted") is None
    (notebook.parent / "timestamp.txt").unlink()
    os.mkfifo(notebook.parent / "timestamp.txt")                    # never waited on
    with pytest.raises(CourseError, match="not a small text file"):
        submission_time(notebook, tmp_path / "submitted")
