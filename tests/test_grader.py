"""The hardened grader: `course check`, `course grade` into nbgrader's gradebook,
resuming after a kill, and the same scores as nbgrader's own autograder.

Submissions are made the way students make them: the released exercise
notebook with its solution cells filled in (from the solution notebook), one
with a wrong causal mask, one left blank.
"""
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import sqlite3
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograde.checks.messages import message
from autograde import classroom
from autograde.notebooks import ASSIGNMENTS

from autograde.grader import grade as grade_mod
from autograde.grader.grade import STATE_DIR, grade_assignment
from autograde.grader.sandbox import Limits, sandbox_mode
from autograde.protocol import WireError, dumps, loads

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_attention"
REFERENCE = REPO / "autograde" / "data" / "reference" / "model.safetensors"
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="the reference model is not trained yet")
FAST = Limits(timeout=30, call_timeout=5)
WRONG_MASK = "import torch\ndef causal_mask(T):\n    return torch.ones(T, T, dtype=torch.bool).tril(-1)\n"


COURSES = REPO / ".test-courses"          # git-ignored: course roots outside /tmp, where instructors keep them


@contextlib.contextmanager
def course_root(name: str):
    """A fresh course root inside the checkout (not under /tmp, which the sandbox hides anyway, so
    that what a test shows holds where real courses live), removed afterwards."""
    COURSES.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=COURSES))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        try:
            COURSES.rmdir()
        except OSError:
            pass                         # another test's root is still there


def env_with_venv(**extra):
    """nbgrader calls `alembic` by name: the venv's bin directory goes first on PATH."""
    env = dict(os.environ, **extra)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _cells_by_id(nb):
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if "nbgrader" in c.get("metadata", {})}


def make_submission(kind: str, lang: str = "en", assignment: str = ASSIGNMENT) -> dict:
    """'full', 'partial' (wrong causal mask) or 'blank', from the released exercise notebook."""
    exercise = json.loads((REPO / "exercises" / lang / assignment / f"{assignment}.ipynb").read_text())
    solution = _cells_by_id(json.loads((REPO / "solutions" / lang / assignment / f"{assignment}.ipynb").read_text()))
    if kind != "blank":
        for gid, cell in _cells_by_id(exercise).items():
            if cell["metadata"]["nbgrader"].get("solution"):
                cell["source"] = solution[gid]["source"]
    if kind == "partial":
        _cells_by_id(exercise)["causal_mask"]["source"] = WRONG_MASK
    return exercise


def write_submissions(root: Path, kinds: dict[str, str]) -> None:
    for student, kind in kinds.items():
        path = root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(make_submission(kind), ensure_ascii=False), encoding="utf-8")


def course(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "autograde.cli", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env or env_with_venv(COURSE_GRADE_TIMEOUT="60"), timeout=timeout)


# ----------------------------------------------------------------------------
# wire format


def test_wire_round_trip_and_bounds():
    import torch

    value = {"t": torch.arange(6.0).reshape(2, 3), "b": b"\x00\xff", "tup": (1, 2.5, "한국어", None, True),
             "nan": float("nan"), 3: [float("inf")]}
    back = loads(*dumps(value))
    assert torch.equal(back["t"], value["t"]) and back["b"] == value["b"] and back["tup"] == value["tup"]
    assert back["nan"] != back["nan"] and back[3] == [float("inf")]
    g = torch.Generator().manual_seed(3)
    copy = loads(*dumps(g))                                                  # a CPU generator, by its state
    assert torch.equal(torch.rand(4, generator=copy), torch.rand(4, generator=g))
    import numpy as np
    assert type(loads(*dumps(np.zeros(2)))).__name__ == "ndarray"          # a named stand-in, never the object
    for bad in (b"not json", b'{"format": "course-wire/1", "value": {"$tensor": "t9"}}',
                b'{"format": "course-wire/1", "value": {"$evil": 1}}', b"[" * 100000):
        with pytest.raises(WireError):
            loads(bad, b"")
    with pytest.raises(WireError):
        dumps(torch.ones(2, device="meta"))


def test_the_reference_model_crosses_the_wire_by_name_only():
    from autograde.checks.steps.sampling import ModelSpy, NoGradModel

    data = dumps([NoGradModel(None), ModelSpy(None), ModelSpy(None)])
    assert b"$model" in data[0] and not data[1]                             # no weights, no pickled object
    built = []
    back = loads(*data, models={"model_fn": lambda: built.append("fn") or "fn",
                                "spy": lambda: built.append("spy") or object()})
    assert built == ["fn", "spy", "spy"] and back[1] is not back[2]         # one fresh spy per occurrence
    # the parent reads the child's outputs without factories: a returned "model" is an opaque stand-in
    assert type(loads(*data)[0]).__name__ == "model_fn" and loads(*data)[0] != "fn"


def test_a_function_out_of_memory_or_time_is_not_called_again(tmp_path):
    """One infinite loop or memory bomb costs one limit, not one per case and step."""
    from autograde import protocol as wire
    from autograde.grader.worker import run_step

    calls = []

    def hog(x):
        calls.append(x)
        raise MemoryError

    (tmp_path / "out").mkdir()
    wire.write(tmp_path / "cases.json", [((i,), {}) for i in range(3)])
    step = {"function": "hog", "cases": "cases.json", "forbidden": []}
    spent = {}
    for index in (0, 1):                                    # a visible and a hidden step of the same function
        run_step(tmp_path, index, step, {"hog": hog}, 0, None, spent)
        out = wire.read(tmp_path / "out" / f"step_{index}.json")["cases"]
        assert [o["err"][1]["error"] for o in out] == ["MemoryError"] * 3
    assert calls == [0]


def test_two_grading_runs_never_share_a_sandbox_uid(tmp_path):
    """Each `course grade` process has its own pool; the lock files keep their uids apart."""
    from autograde.grader.sandbox import _UidPool

    first, second = _UidPool(tmp_path), _UidPool(tmp_path)      # as if in two processes
    a, b = first.take(), second.take()
    assert a != b
    first.give(a)
    assert second.take() == a                                    # free again once given back


# ----------------------------------------------------------------------------
# course check


@needs_reference
def test_check_json_is_a_gradescope_superset(tmp_path):
    path = tmp_path / f"{ASSIGNMENT}.ipynb"
    path.write_text(json.dumps(make_submission("partial")), encoding="utf-8")
    done = course("check", str(path), "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    for key in ("score", "max_score", "tests", "grader_version", "seeds", "submission_sha256", "tamper"):
        assert key in result
    assert result["submission_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert any(k.endswith(":hidden") for k in result["seeds"])
    tests = {t["name"]: t for t in result["tests"]}
    for t in tests.values():
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed")
    assert tests["check_causal_mask"]["status"] == "failed" and tests["check_causal_mask"]["score"] == 0
    assert "off by one" in tests["check_causal_mask"]["output"]
    assert tests["check_softmax"]["status"] == "passed"
    assert result["score"] == sum(t["score"] for t in result["tests"])


@needs_reference
def test_check_table_in_korean_under_lang_c(tmp_path):
    """The notebook's language picks the messages; LANG=C in the caller changes nothing."""
    nb = make_submission("blank", lang="ko")
    solution = _cells_by_id(json.loads((REPO / "solutions/ko" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()))
    _cells_by_id(nb)["softmax"]["source"] = "# 한국어 주석\n인사 = '안녕'\nprint(인사)\n" + \
        "".join(solution["softmax"]["source"])
    path = tmp_path / "내_과제.ipynb"
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    done = course("check", str(path), env=env_with_venv(LANG="C", LC_ALL="C", COURSE_GRADE_TIMEOUT="60"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "check_softmax" in done.stdout and "통과" in done.stdout and "아직 구현되지 않았습니다" in done.stdout


@needs_reference
def test_check_exit_status_follows_the_items(tmp_path):
    path = REPO / "solutions" / "en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    done = course("check", str(path), "--json")
    result = json.loads(done.stdout)
    all_pass = all(t["status"] == "passed" for t in result["tests"])
    assert done.returncode == (0 if all_pass else 1)


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    (b"{oops", "invalid JSON"),
    (json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": []}).encode(), "format 3"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"course": {"assignment": "99_nothing"}},
                 "cells": []}).encode(), "unknown assignment"),
])
def test_check_bad_input_is_one_clear_line(tmp_path, content, fragment):
    path = tmp_path / "submission.ipynb"
    if content is not None:
        path.write_bytes(content)
    done = course("check", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and fragment in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_grade_bad_input_is_one_clear_line(tmp_path):
    done = course("grade", "99_nothing", "--root", str(tmp_path))
    assert done.returncode == 2 and "unknown assignment" in done.stderr and "Traceback" not in done.stderr
    done = course("grade", ASSIGNMENT, "--root", str(tmp_path))
    assert done.returncode == 2 and "submitted" in done.stderr and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------
# course grade: resumable


def grade_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("""
            SELECT student.id, grade_cell.name, grade.auto_score FROM grade
            JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id
            JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
            JOIN student ON submitted_assignment.student_id = student.id
            JOIN base_cell AS grade_cell ON grade.cell_id = grade_cell.id
            ORDER BY 1, 2""").fetchall()


@needs_reference
def test_grade_resumes_after_a_kill(tmp_path, monkeypatch):
    write_submissions(tmp_path, {"ana": "full", "ben": "partial", "cho": "blank"})
    assert grade_assignment(ASSIGNMENT, workers=2, root=tmp_path, limits=FAST, quiet=True) == 0
    rows = grade_rows(tmp_path / "gradebook.db")
    state_path = tmp_path / STATE_DIR / f"{ASSIGNMENT}.json"
    state = json.loads(state_path.read_text())
    assert set(state["done"]) == {"ana", "ben", "cho"}
    totals = {s: e["score"] for s, e in state["done"].items()}
    assert totals["ana"] > totals["ben"] > totals["cho"] == 0

    # a run killed after ben's gradebook commit but before its state entry: only ben is graded again
    del state["done"]["ben"]
    state_path.write_text(json.dumps(state))
    graded = []
    real = grade_mod.grade_notebook
    monkeypatch.setattr(grade_mod, "grade_notebook", lambda path, *a, **k: graded.append(path) or real(path, *a, **k))
    assert grade_assignment(ASSIGNMENT, workers=2, root=tmp_path, limits=FAST, quiet=True) == 0
    assert [p.parts[-3] for p in graded] == ["ben"]
    assert grade_rows(tmp_path / "gradebook.db") == rows                   # same rows, no duplicates
    assert json.loads(state_path.read_text())["done"]["ben"]["score"] == totals["ben"]

    # nothing left: a third run grades nothing; a changed submission is graded again
    graded.clear()
    grade_assignment(ASSIGNMENT, workers=1, root=tmp_path, limits=FAST, quiet=True)
    assert graded == []
    write_submissions(tmp_path, {"cho": "full"})
    grade_assignment(ASSIGNMENT, workers=1, root=tmp_path, limits=FAST, quiet=True)
    assert [p.parts[-3] for p in graded] == ["cho"]
    assert json.loads(state_path.read_text())["done"]["cho"]["score"] == totals["ana"]


# ----------------------------------------------------------------------------
# notebook 5: the cases pass the reference model into the sandbox

NO_CACHE_REUSE = """
@torch.no_grad()
def generate_with_cache(model, prompt_ids, max_new_tokens, generator=None, temperature=1.0,
                        top_k=None, top_p=None, progress=False):
    cache, ids, new_ids = KVCache(model.cfg.n_layer), list(prompt_ids), []
    for _ in range(max_new_tokens):
        cache = KVCache(model.cfg.n_layer)       # a new cache every step: the whole text again
        logits = model(torch.tensor([ids]), cache=cache)[:, -1, :]
        token = int(greedy(logits)[0]) if generator is None else \
            int(sample_next(logits, generator, temperature, top_k, top_p)[0])
        ids.append(token)
        new_ids.append(token)
    return new_ids
"""
CALLS_THE_REFERENCE = """
def generate(model_fn, prompt_ids, max_new_tokens, generator=None, **kwargs):
    # not a name the static pass refuses for this step: the sandbox's import block must stop it
    from autograde.reference.sampling import sample_next as reference_sample_next
    ids = list(prompt_ids)
    for _ in range(max_new_tokens):
        ids.append(int(reference_sample_next(model_fn(torch.tensor([ids]))[:, -1], generator)))
    return ids
"""


@needs_reference
@pytest.mark.slow
def test_sampling_notebook_is_graded_with_the_reference_model_in_the_sandbox(tmp_path):
    from autograde.grader.pipeline import grade_notebook

    full = make_submission("full", assignment="05_sampling")
    mixed = make_submission("full", assignment="05_sampling")
    _cells_by_id(mixed)["generate_with_cache"]["source"] = NO_CACHE_REUSE
    _cells_by_id(mixed)["generate"]["source"] = CALLS_THE_REFERENCE
    results = {}
    for name, nb in (("full", full), ("mixed", mixed)):
        path = tmp_path / name / "05_sampling.ipynb"
        path.parent.mkdir()
        path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
        results[name] = grade_notebook(path, Limits(timeout=240, call_timeout=60))
    full, mixed = ({t["name"]: t for t in results[k]["tests"]} for k in ("full", "mixed"))
    assert results["full"]["score"] == results["full"]["max_score"] == 10, results["full"]["output"]
    assert results["full"]["cell_errors"] == []
    assert mixed["check_top_p"]["status"] == "passed"
    # the tokens are right, but the model read the whole text at every call
    assert mixed["check_generate_with_cache"]["status"] == "failed"
    assert mixed["check_generate_with_cache"]["steps"][0]["key"] == "mistake_cache_not_used"
    # the reference's own generate cannot be imported inside the sandbox
    assert mixed["check_generate"]["status"] == "failed"
    assert "not available while grading" in mixed["check_generate"]["output"]


@needs_reference
@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("kind, lang", [("full", "ko"), ("blank", "en")])
def test_every_notebook_in_the_sandbox(tmp_path, assignment, kind, lang):
    """The solution earns every point the manifest gives (what its solution cells need from the locked
    cells is there when the grader runs them); the untouched exercise earns 0, each of its steps failing
    with one clear line, never a traceback."""
    from autograde import manifest
    from autograde.grader.pipeline import grade_notebook

    path = tmp_path / f"{assignment}.ipynb"
    path.write_text(json.dumps(make_submission(kind, lang, assignment), ensure_ascii=False), encoding="utf-8")
    result = grade_notebook(path, Limits(timeout=240, call_timeout=60))
    cells = manifest.test_cells(assignment)
    assert result["cell_errors"] == []
    assert sorted(t["name"] for t in result["tests"]) == sorted(c.id for c in cells)
    if kind == "full":
        failed = [(t["name"], t["output"]) for t in result["tests"] if t["status"] != "passed"]
        assert result["score"] == result["max_score"] == sum(s.points for c in cells for s in c.steps), failed
        assert not failed, failed
    else:
        assert result["score"] == 0
        for test in result["tests"]:
            assert test["status"] != "passed" and "Traceback" not in test["output"], test
            lines = test["output"].strip().splitlines()
            same = {message("hidden_same_failure", lang) for lang in ("en", "ko")}   # hidden: said once, short
            checks = [line for line in lines if line not in same]
            assert checks and all(line.startswith("❌") and "NotImplementedError" in line for line in checks), test
            assert len(lines) - len(checks) <= 1, test


BLOCK_THROUGH_AN_ALIAS = """
BLOCK_FORWARD = ref.Block.forward          # saved before the grader swaps ref.Block.forward


def transformer_block(x, weights, cfg, cos, sin):
    block = ref.Block(ref.ModelConfig.from_dict(cfg))
    block.load_state_dict(weights)
    T = x.shape[1]
    with torch.no_grad():
        return BLOCK_FORWARD(block, x, ref.causal_mask(T, T, x.device)[None, None], (cos[:, 0], sin[:, 0]))
"""


@needs_reference
@pytest.mark.slow
def test_a_forbidden_reference_function_is_caught_through_an_alias(tmp_path):
    """Notebook 4's setup imports the reference model, so its functions are reachable in the sandbox:
    calling a forbidden one, even through a saved alias, fails the step."""
    from autograde.grader.pipeline import grade_notebook

    nb = make_submission("full", assignment="04_ffn_block")
    _cells_by_id(nb)["transformer_block"]["source"] = BLOCK_THROUGH_AN_ALIAS
    path = tmp_path / "04_ffn_block.ipynb"
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    tests = {t["name"]: t for t in grade_notebook(path, Limits(timeout=240, call_timeout=60))["tests"]}
    block = tests["check_transformer_block"]
    # the parent's static pass sees the name; the worker's profiler would catch the alias too
    assert block["status"] == "failed" and block["steps"][0]["key"] in ("forbidden_reference", "forbidden_call"), block
    assert "autograde.reference.model.Block.forward" in block["output"]
    assert tests["check_rms_norm"]["status"] == "passed"


# ----------------------------------------------------------------------------
# nbgrader end to end, the same gradebook


def nbgrader(root: Path, *args):
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=root,
                          capture_output=True, text=True, env=env_with_venv(), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def read_scores(path: Path) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)
                if row["assignment"] == ASSIGNMENT}


def export_scores(root: Path, name: str) -> dict[str, float]:
    done = course("export-grades", "-o", str(root / name), "--root", str(root))
    assert done.returncode == 0 and not done.stderr, done.stderr
    return read_scores(root / name)


HANGUL = re.compile(r"[\uac00-\ud7a3]")
MIXED_CLASS = {"ana": ("full", "en"), "bora": ("partial", "ko"), "cho": ("blank", "en")}


@needs_reference
@pytest.mark.slow
def test_a_mixed_class_as_the_guide_runs_it(tmp_path):
    """instructors.md's path for a class mixing Korean and English: `course release`, a correct English,
    a buggy Korean and an empty English submission, `course grade`, `course feedback` (each in its
    student's language), `course export-grades`: no warning, no committed notebook changed. Plain
    `nbgrader autograde` on the same gradebook gives the same scores, and does what the guide says it
    does: a checksum warning per cell with hidden tests, and the Korean notebook run with the English
    locked cells."""
    committed = {p: p.read_bytes() for kind in ("solutions", "exercises")
                 for p in sorted((REPO / kind).glob(f"*/{ASSIGNMENT}/*.ipynb"))}
    done = course("release", ASSIGNMENT, "--root", str(tmp_path))
    assert done.returncode == 0 and not done.stderr and "already current" in done.stdout, done.stderr
    for student, (kind, lang) in MIXED_CLASS.items():
        path = tmp_path / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(make_submission(kind, lang), ensure_ascii=False), encoding="utf-8")

    # plain nbgrader first (course grade replaces its autograded/ and its scores afterwards)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.ExecutePreprocessor.timeout = 300\n")
    log = nbgrader(tmp_path, "autograde", ASSIGNMENT, "--force", *classroom._root_args(tmp_path, REPO)).stderr
    solution = json.loads((REPO / "solutions/en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(encoding="utf-8"))
    hidden = sum(1 for c in solution["cells"] if "### BEGIN HIDDEN TESTS" in "".join(c["source"]))
    assert log.count("Attribute 'checksum' for cell check_") == hidden * len(MIXED_CLASS)
    assert log.count("Attribute 'checksum' for cell setup has changed") == 1             # bora's, in Korean
    setup = _cells_by_id(json.loads((tmp_path / "autograded/bora" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
                                    .read_text(encoding="utf-8")))["setup"]
    assert 'COURSE_LANG = "en"' in "".join(setup["source"])                              # English feedback
    by_nbgrader = export_scores(tmp_path, "nbgrader.csv")

    done = course("grade", ASSIGNMENT, "--root", str(tmp_path), "--workers", "2")
    assert done.returncode == 0 and "warning" not in done.stderr.lower(), done.stderr
    assert f"gradebook.db, graded notebooks under {tmp_path.resolve() / 'autograded'}; next: course feedback " \
        f"{ASSIGNMENT}, then course export-grades" in " ".join(done.stdout.split()), done.stdout[-500:]
    done = course("feedback", ASSIGNMENT, "--root", str(tmp_path))
    assert done.returncode == 0 and not done.stderr, done.stderr
    by_course = export_scores(tmp_path, "grades.csv")
    assert by_course == by_nbgrader                                      # hidden tests included in both
    assert by_course == {"ana": 9, "bora": 6, "cho": 0}
    for student, (_, lang) in MIXED_CLASS.items():
        html = (tmp_path / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text(encoding="utf-8")
        failed = [line for line in re.findall(r"❌[^<\n]*", html) if "attention." in line]
        assert "check_causal_mask" in html and (failed or student == "ana"), student
        assert all(bool(HANGUL.search(line)) == (lang == "ko") for line in failed), (student, failed[:2])
    assert {p: p.read_bytes() for p in committed} == committed


# ----------------------------------------------------------------------------
# submission times and late penalties, as nbgrader's autograder records them

DUE = "2026-12-01 23:59:00 UTC"
ON_TIME, LATE = "2026-12-01 20:00:00.000000 UTC", "2026-12-02 09:30:00.000000 UTC"


def submission_rows(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as con:
        return {row[0]: row[1:] for row in con.execute("""
            SELECT student.id, submitted_assignment.timestamp, submitted_notebook.late_submission_penalty
            FROM submitted_notebook
            JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
            JOIN student ON submitted_assignment.student_id = student.id""")}


@needs_reference
@pytest.mark.slow
def test_submission_times_and_late_penalties_reach_the_gradebook_and_the_csv(tmp_path):
    """nbgrader collect leaves timestamp.txt beside each notebook; `course grade` records it (the
    CSV's timestamp column) and applies the course's late rule (here nbgrader's 'zero') against the
    due date set as the guide says, like `nbgrader autograde`. A time that cannot be read leaves that
    one submission ungraded, named, until it is fixed; a new time or due date is applied to every
    submission at the next run, without grading it again."""
    write_submissions(tmp_path, {"ana": "full", "ben": "full", "dan": "full", "eve": "full"})
    stamps = {"ana": ON_TIME, "ben": LATE, "dan": "the day before yesterday"}
    for student, text in stamps.items():
        (tmp_path / "submitted" / student / ASSIGNMENT / "timestamp.txt").write_text(text + "\n")
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    nbgrader(tmp_path, "db", "assignment", "add", ASSIGNMENT, f"--duedate={DUE}")

    done = course("grade", ASSIGNMENT, "--root", str(tmp_path), "--workers", "2")
    assert done.returncode == 3, done.stderr                               # dan: not graded, said why
    assert "dan" in done.stderr and "the day before yesterday" in done.stderr and "Traceback" not in done.stderr
    assert "late: -9" in done.stdout                                       # ben's row in the summary
    assert "due date: 2026-12-01 23:59:00 UTC (the gradebook's); late rule: LateSubmissionPlugin, " \
        "penalty_method = 'zero'" in done.stdout
    rows = submission_rows(tmp_path / "gradebook.db")
    assert set(rows) == {"ana", "ben", "eve"}
    assert rows["ana"] == ("2026-12-01 20:00:00.000000", None)
    assert rows["ben"] == ("2026-12-02 09:30:00.000000", 9.0)             # 'zero': the penalty is the score
    assert rows["eve"] == (None, None)                                     # no timestamp.txt: never late
    with open(export(tmp_path), newline="", encoding="utf-8") as f:
        csv_rows = {r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == ASSIGNMENT}
    assert (csv_rows["ben"]["raw_score"], csv_rows["ben"]["late_submission_penalty"], csv_rows["ben"]["score"]) \
        == ("9.0", "9.0", "0.0")
    assert csv_rows["ana"]["timestamp"].startswith("2026-12-01 20:00:00") and csv_rows["ana"]["score"] == "9.0"
    assert csv_rows["ben"]["duedate"].startswith("2026-12-01 23:59:00")
    assert course("feedback", ASSIGNMENT, "--root", str(tmp_path)).returncode == 0    # what ben reads
    feedback = {s: (tmp_path / "feedback" / s / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text(encoding="utf-8")
                for s in ("ana", "ben")}
    assert "Late submission penalty (Score: -9.0)" in feedback["ben"] and "Late submission" not in feedback["ana"]

    # dan's time fixed: dan is graded. A later due date (ben is on time now) and a new, later time for
    # ana's same notebook: nobody else is graded again, but every time and penalty is written anew
    (tmp_path / "submitted" / "dan" / ASSIGNMENT / "timestamp.txt").write_text(LATE)
    (tmp_path / "submitted" / "ana" / ASSIGNMENT / "timestamp.txt").write_text("2026-12-04 08:00:00.000000 UTC")
    nbgrader(tmp_path, "db", "assignment", "add", ASSIGNMENT, "--duedate=2026-12-03 00:00:00 UTC")
    done = course("grade", ASSIGNMENT, "--root", str(tmp_path), "--workers", "2")
    assert done.returncode == 0 and "1 graded now, 3 already done" in done.stdout, done.stdout[-800:]
    assert submission_rows(tmp_path / "gradebook.db") == {
        "ana": ("2026-12-04 08:00:00.000000", 9.0), "ben": ("2026-12-02 09:30:00.000000", None),
        "dan": ("2026-12-02 09:30:00.000000", None), "eve": (None, None)}


def export(root: Path) -> Path:
    done = course("export-grades", "-o", str(root / "grades.csv"), "--root", str(root))
    assert done.returncode == 0 and not done.stderr, done.stderr
    return root / "grades.csv"


def test_the_late_rule_is_the_course_config_s_own_plugin(tmp_path):
    """A late-penalty plugin of the instructor's own, beside nbgrader_config.py, is the one applied
    (as nbgrader documents it); a config that fails to load is one clear error, not a traceback."""
    from autograde.errors import CourseError
    from autograde.grader.gradebook import LatePolicy

    assert LatePolicy(tmp_path).plugin.late_submission_penalty("ana", 8.0, 3600) is None      # nbgrader's default
    (tmp_path / "half_off.py").write_text(
        "from nbgrader.plugins import LateSubmissionPlugin\n"
        "class HalfOff(LateSubmissionPlugin):\n"
        "    def late_submission_penalty(self, student_id, score, total_seconds_late):\n"
        "        return score / 2\n")
    (tmp_path / "nbgrader_config.py").write_text(
        'c = get_config()\nc.AssignLatePenalties.plugin_class = "half_off.HalfOff"\n')
    assert LatePolicy(tmp_path).plugin.late_submission_penalty("ana", 8.0, 3600) == 4.0
    assert str(tmp_path) not in sys.path
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.AssignLatePenalties.plugin_class = "nowhere.X"\n')
    with pytest.raises(CourseError, match="late-submission plugin"):
        LatePolicy(tmp_path)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config(\n")
    with pytest.raises(CourseError, match="nbgrader_config.py could not be read"):
        LatePolicy(tmp_path)


# ----------------------------------------------------------------------------
# the course out of the sandbox's reach, wherever it lives


def course_root_outside_tmp() -> Path:
    """A fresh folder where instructors keep a course: /srv (else /var/lib, /opt, the home folder)."""
    for parent in ("/srv", "/var/lib", "/opt", str(Path.home())):
        if os.access(parent, os.W_OK) and not Path(parent).resolve().is_relative_to(tempfile.gettempdir()):
            return Path(tempfile.mkdtemp(prefix="course-test-", dir=parent))
    pytest.skip("no writable folder outside the temporary folder")


@needs_reference
@pytest.mark.slow
def test_course_grade_keeps_a_course_outside_tmp_out_of_the_sandbox():
    """`course grade --root DIR` with DIR in /srv: a submission that reads the instructor's notebook,
    grades.csv, nbgrader_config.py, .course-secret, the gradebook and another student's submission
    gets an error for each (full marks, as the solution), and none of their markers reaches the
    state file, the gradebook, the autograded notebooks or the command's output."""
    from hostile.corpus import plant_course_files, reader_case

    if sandbox_mode() != "namespaces":
        pytest.skip("plain mode shows the file system as it is (see the instructor guide)")
    root = course_root_outside_tmp()
    try:
        targets, markers = plant_course_files(root, ASSIGNMENT, victim="ana")
        reader = root / "submitted" / "ben" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        reader.parent.mkdir(parents=True)
        reader.write_text(json.dumps(reader_case(targets)[0]), encoding="utf-8")
        done = course("grade", ASSIGNMENT, "--root", str(root), "--workers", "2")
        assert done.returncode == 0, done.stderr[-2000:]
        state = json.loads((root / STATE_DIR / f"{ASSIGNMENT}.json").read_text())["done"]
        assert state["ana"]["score"] == state["ana"]["max_score"] > 0
        assert state["ben"]["tests"] == state["ana"]["tests"]
        written = {"output": (done.stdout + done.stderr).encode(),
                   "state": (root / STATE_DIR / f"{ASSIGNMENT}.json").read_bytes(),
                   "gradebook": (root / "gradebook.db").read_bytes(),
                   "autograded": (root / "autograded" / "ben" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()}
        for name, data in written.items():
            for marker in markers:
                if not (marker == "SQLite format 3" and name == "gradebook"):
                    assert marker.encode() not in data, (marker, name)
    finally:
        shutil.rmtree(root, ignore_errors=True)
