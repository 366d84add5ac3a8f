"""Figures come from code: every name the chapters use is produced, in both
languages, the same bytes on every run, with measured numbers in the tables."""
import hashlib
import re
from pathlib import Path

import pytest

from autograde import figures

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    runs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name)
        runs.append({p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in figures.make_all(out)})
        runs[-1]["dir"] = out
    return runs


def referenced_figures() -> set[str]:
    names = set()
    for page in (ROOT / "course").glob("*/**/*.md"):
        text = page.read_text(encoding="utf-8")
        names |= set(re.findall(r"figures/([\w-]+\.(?:png|md))", text))
    return names


def test_every_referenced_figure_is_generated_in_both_languages(two_runs):
    made = {str(p) for p in two_runs[0] if p != "dir"}
    for name in referenced_figures():
        for lang in ("en", "ko"):
            assert f"{lang}/figures/{name}" in made, name


def test_figures_are_deterministic(two_runs):
    a, b = ({k: v for k, v in run.items() if k != "dir"} for run in two_runs)
    assert a == b


def test_token_table_holds_measured_numbers(two_runs):
    table = (two_runs[0]["dir"] / "ko" / "figures" / "token-stats.md").read_text(encoding="utf-8")
    assert "한국어" in table and "영어" in table
    from autograde.reference.checkpoint import load_reference

    tok = load_reference().tokenizer
    ko_text = " ".join(ko for _, ko in figures.PARALLEL)
    assert f"{len(tok.encode(ko_text)):,}" in table


def test_korean_labels_use_a_hangul_font():
    plt = figures._pyplot()
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=plt.rcParams["font.family"]))
    assert "Nanum" in path


def test_the_figure_modules_import_no_circle():
    """figures (the site's figures) and figures_training (the loss curve) share their drawing rules through
    figure_style; figure_style imports neither, and figures_training does not import figures."""
    import ast

    def imported(name):
        tree = ast.parse((ROOT / "autograde" / f"{name}.py").read_text(encoding="utf-8"))
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | \
            {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert not {"autograde.figures", "autograde.figures_training"} & imported("figure_style")
    assert "autograde.figures" not in imported("figures_training")
