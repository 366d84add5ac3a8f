"""The hostile corpus (tests/hostile/corpus.py), graded as one class in parallel.

None of these submissions may crash the batch, hang it, or earn points it did
not earn. They are graded together with an untouched solution notebook (the
baseline) under short time limits, two sandboxes at a time.
"""
import json
import os
from pathlib import Path

import pytest

from autograde.grader.grade import STATE_DIR, grade_assignment
from autograde.grader.sandbox import Limits, sandbox_mode
from hostile.corpus import REPO, all_cases, plant_course_files, solution_notebook
from test_grader import course_root

pytestmark = pytest.mark.slow
ASSIGNMENT = "03_attention"
REFERENCE = REPO / "autograde" / "data" / "reference" / "model.safetensors"


def nproc_applies() -> bool:
    """A fork bomb is only safe to run where RLIMIT_NPROC binds: an unprivileged sandbox user."""
    return sandbox_mode() == "namespaces" or os.geteuid() != 0


@pytest.fixture(scope="module")
def graded():
    """The corpus graded as one class, in a course root inside the checkout (not under /tmp: the
    sandbox must keep the course out of reach wherever it lives), beside the course's own files."""
    if not REFERENCE.exists():
        pytest.skip("the reference model (autograde/data/reference) is not trained yet")
    with course_root("hostile") as root:                # in the checkout (git-ignored), removed after
        targets, markers = plant_course_files(root, ASSIGNMENT, victim="victim")
        paths = {"steps": str(REPO / "autograde/checks/steps/attention.py"), "weights": str(REFERENCE),
                 "solution": str(REPO / "solutions/en/03_attention/03_attention.ipynb"), "course_files": targets}
        cases = all_cases(paths)
        if not nproc_applies():
            cases = {k: v for k, v in cases.items() if not v[1].get("needs_nproc")}
        cases["baseline"] = (solution_notebook(), {"same": True})
        for name, (nb, _) in cases.items():
            target = root / "submitted" / name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            target.parent.mkdir(parents=True)
            target.write_bytes(nb if isinstance(nb, bytes) else json.dumps(nb, ensure_ascii=False).encode())
        cases["victim"] = (None, {"same": True})            # planted with a marker of its own
        # short limits, but with room for a loaded machine: a normal submission needs ~5 s
        limits = Limits(timeout=20, call_timeout=3, memory=4 * 2**30)
        assert grade_assignment(ASSIGNMENT, workers=2, root=root, limits=limits, quiet=True) == 0
        state = json.loads((root / STATE_DIR / f"{ASSIGNMENT}.json").read_text())["done"]
        written = [root / STATE_DIR / f"{ASSIGNMENT}.json", root / "gradebook.db",
                   *(p for p in (root / "autograded").rglob("*") if p.is_file() and "victim" not in p.parts)]
        yield cases, state, {str(p): p.read_bytes() for p in written}, markers


def test_no_case_crashes_hangs_or_earns_points_it_did_not_earn(graded):
    """One test (not several) so that pytest-xdist grades the corpus once.

    The course's files beside it (its instructor notebook, grades.csv, nbgrader_config.py,
    .course-secret, the gradebook, another student's submission) are out of the sandbox's reach:
    the reading case scores as the baseline, and none of their markers is in the state file, the
    gradebook or an autograded notebook (the victim's own excepted)."""
    cases, state, written, markers = graded
    assert set(state) == set(cases)                      # every submission was graded
    base = state["baseline"]["tests"]
    assert base and any(base.values())
    for name, (_, spec) in cases.items():
        got = state[name]
        if spec.get("error"):
            assert got["score"] == 0 and got["error"], name
            continue
        for cell, score in got["tests"].items():
            assert score <= base[cell], (name, cell, score)
        for cell in spec.get("zero", []):
            assert got["tests"][cell] == 0, (name, cell)
        if spec.get("same") or (spec.get("same_if_isolated") and sandbox_mode() == "namespaces"):
            assert got["tests"] == base, name
        for event in spec.get("tamper", []):
            assert event in got["tamper"], (name, got["tamper"])
        if spec.get("says"):
            feedback = next(data for path, data in written.items() if f"/autograded/{name}/" in path)
            assert spec["says"].encode() in feedback, name
    for name, fragment in {"invalid_json": "invalid JSON", "nbformat3": "format 3", "no_cells": "no list of cells",
                           "another_assignment": "belongs to assignment 01_tokenizer"}.items():
        assert fragment in state[name]["error"] and "Traceback" not in state[name]["error"]
    if sandbox_mode() == "namespaces":                  # plain mode shows the file system as it is
        for path, data in written.items():
            for marker in markers:
                if not (marker == "SQLite format 3" and path.endswith(".db")):
                    assert marker.encode() not in data, (marker, path)
