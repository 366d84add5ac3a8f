"""autograde/steps.toml is the one source of each step's function, signature, points and need of
the reference model: the notebooks' test cells, the grader's plan and the check classes agree
with it, and the solutions define exactly the functions it names."""
import ast
import json
from pathlib import Path

import jupytext
import pytest

from autograde import manifest
from autograde.checks.registry import all_checks
from autograde.grader.pipeline import planned_checks
from autograde.grader.rebuild import SOLUTIONS, pristine_cells
from autograde.notebooks import ASSIGNMENTS

SRC = SOLUTIONS / "src"


def _def_line(source: str, name: str) -> str:
    """`name(args) -> result` of `def name(...)...:` in source, white space folded."""
    head = source[source.index(f"def {name}(") + len("def "):]
    depth = 0
    for i, ch in enumerate(head):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == ":" and depth == 0:
            return " ".join(head[:i].split())
    raise AssertionError(f"no end of the def line of {name}")


def _signatures(assignment: str) -> dict[str, str]:
    """function name -> its def line, for the functions the solution cells define."""
    out = {}
    for cell in jupytext.read(SRC / f"{assignment}.py").cells:
        if cell.metadata.get("kind") == "solution":
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    out[node.name] = _def_line(cell.source, node.name)
    return out


def test_every_step_has_a_check_and_every_check_a_step():
    checks = all_checks()
    assert set(checks) == set(manifest.steps())
    for step_id, entry in manifest.steps().items():
        check = checks[step_id]
        assert (check.function, check.points, check.needs_reference) == (entry.function, entry.points,
                                                                          entry.needs_model), step_id


def test_no_check_class_repeats_what_the_manifest_says():
    """One source of truth: the classes get function, points and needs_reference from steps.toml
    (the registry refuses a contradiction; this keeps even an agreeing copy out)."""
    import autograde.checks.steps as steps_package

    for path in sorted(Path(steps_package.__path__[0]).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    targets = item.targets if isinstance(item, ast.Assign) else []
                    names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
                    assert not names & {"function", "points", "needs_reference"}, (path.name, node.name, names)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_solutions_define_each_step_with_its_manifest_signature(assignment):
    signatures = _signatures(assignment)
    for step in manifest.steps().values():
        if step.assignment == assignment:
            assert signatures.get(step.function) == step.signature, step.id


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_test_cells_come_from_the_manifest(assignment):
    source_cells = {c.metadata["id"]: c for c in jupytext.read(SRC / f"{assignment}.py").cells
                    if c.metadata.get("kind") == "test"}
    manifest_cells = {c.id: c for c in manifest.test_cells(assignment)}
    assert set(source_cells) == set(manifest_cells)
    assert all(not c.source.strip() for c in source_cells.values()), "test cells are empty in the source"
    for lang in ("en", "ko"):
        pristine = {c.grade_id: c for c in pristine_cells(SOLUTIONS / lang / assignment / f"{assignment}.ipynb")
                    if c.kind == "test"}
        assert set(pristine) == set(manifest_cells)
        for cell_id, cell in manifest_cells.items():
            assert pristine[cell_id].source == cell.source()
            assert pristine[cell_id].points == cell.points
        planned = planned_checks(assignment, list(pristine.values()))
        assert {(s.id, hidden) for _, s, hidden in planned} == \
            {(s.id, h) for s in manifest.steps().values() if s.assignment == assignment for h in (False, True)}


def test_a_malformed_manifest_is_refused_with_the_entry_named(tmp_path, monkeypatch):
    bad = tmp_path / "steps.toml"
    bad.write_text('[[step]]\nid = "x.y"\nassignment = "01"\ncell = "c"\nfunction = "f"\n'
                   'signature = "g(a)"\npoints = 1\nneeds_model = false\n', encoding="utf-8")
    monkeypatch.setattr(manifest, "MANIFEST", bad)
    manifest.steps.cache_clear()
    try:
        with pytest.raises(ValueError, match="does not start with its function"):
            manifest.steps()
        bad.write_text('[[step]]\nid = "x.y"\npoints = "one"\n', encoding="utf-8")
        manifest.steps.cache_clear()
        with pytest.raises(ValueError, match="step entry 1"):
            manifest.steps()
    finally:
        monkeypatch.undo()
        manifest.steps.cache_clear()
    assert json.dumps(sorted(manifest.steps()))       # the real one loads again


# ---------------------------------------------------------------------------
# Names before December 2026 (chapter n has notebook n since): a class that has them is still graded
# ---------------------------------------------------------------------------

def test_every_old_name_maps_to_a_current_notebook_and_none_is_a_current_name():
    current = set(manifest.assignments())
    assert set(manifest.FORMER_NAMES.values()) <= current
    assert not set(manifest.FORMER_NAMES) & current
    for old, new in manifest.FORMER_NAMES.items():
        assert old.split("_", 1)[1] == new.split("_", 1)[1]                  # the same notebook, renumbered
        assert manifest.test_cells(old) == manifest.test_cells(new) != []
    assert manifest.current("01_tokenizer") == "01_tokenizer" and manifest.renamed_note("01_tokenizer") is None


def test_an_old_name_finds_the_renamed_notebook_and_another_notebook_is_still_refused():
    from autograde.grader.rebuild import SubmissionError, identify, pristine_path

    assert pristine_path("02_attention", "ko") == pristine_path("03_attention", "ko")
    nb = lambda name: {"metadata": {"course": {"assignment": name, "lang": "ko"}}, "cells": []}
    assert identify(nb("02_attention"), Path("x.ipynb"), expected="03_attention") == ("03_attention", "ko")
    assert identify(nb("03_attention"), Path("x.ipynb"), expected="02_attention") == ("02_attention", "ko")
    with pytest.raises(SubmissionError, match="01_tokenizer"):
        identify(nb("01_tokenizer"), Path("x.ipynb"), expected="02_attention")
    with pytest.raises(SubmissionError):        # 02_embeddings is not the old 02_attention
        identify(nb("02_embeddings"), Path("x.ipynb"), expected="02_attention")


def test_release_refuses_an_old_name_and_names_the_new_one(tmp_path):
    from autograde.classroom import release
    from autograde.errors import CourseError

    with pytest.raises(CourseError, match="now called 04_ffn_block.*course grade 03_ffn_block"):
        release("03_ffn_block", root=tmp_path)
    assert not any(tmp_path.iterdir())                                      # nothing was written
