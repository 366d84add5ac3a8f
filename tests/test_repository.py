"""The instructor's own copy: one repository setting (mkdocs.yml, else the git remote) behind every
Colab link and install cell, a loud `course build` while it is the original project's, and a change
of it after the release that costs no submission anything.

(The site's Colab and download buttons from the same setting: tests/test_site.py.)"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from autograde import build as build_mod
from autograde.errors import CourseError
from autograde.grader.rebuild import load_submission, rebuild
from autograde.notebooks import LANGS, render, repository_settings
from autograde.repository import PLACEHOLDER, placeholder_warning, settings

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "solutions" / "src").glob("*.py"))
INSTALL = re.compile(r"git\+https://github\.com/([^@\s\"'\\]+)@([^\s\"'\\]+)")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/([^)\s\"\\]+)")


def a_copy(tmp_path: Path, repository: str, branch: str = "dev") -> Path:
    """mkdocs.yml with another extra.repository / default_branch, and the notebook sources."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    text = re.sub(r"^(\s+repository:).*$", rf"\1 {repository}", text, count=1, flags=re.M)
    text = re.sub(r"^(\s+default_branch:).*$", rf"\1 {branch}", text, count=1, flags=re.M)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "mkdocs.yml").write_text(text, encoding="utf-8")
    shutil.copytree(ROOT / "solutions" / "src", tmp_path / "solutions" / "src", dirs_exist_ok=True)
    return tmp_path


def links(nb) -> tuple[set, set]:
    text = json.dumps(nb, ensure_ascii=False)
    return set(INSTALL.findall(text)), set(COLAB.findall(text))


def test_the_setting_flows_to_every_colab_link_and_install_cell(tmp_path):
    fork = a_copy(tmp_path, "someone/fork")
    for source in SOURCES:
        for lang in LANGS:
            nb = render(source, lang, fork)
            installs, colabs = links(nb)
            name = source.stem
            assert installs == {("someone/fork", "dev")}, (name, lang, installs)
            assert colabs == {f"someone/fork/blob/dev/exercises/{lang}/{name}/{name}.ipynb"}, (name, lang)
            assert PLACEHOLDER not in json.dumps(nb)


def test_the_committed_notebooks_follow_the_setting():
    repo, branch = repository_settings(ROOT)
    for kind in ("solutions", "exercises"):
        for source in SOURCES:
            for lang in LANGS:
                name = source.stem
                nb = json.loads((ROOT / kind / lang / name / f"{name}.ipynb").read_text(encoding="utf-8"))
                assert links(nb) == ({(repo, branch)}, {f"{repo}/blob/{branch}/exercises/{lang}/{name}/{name}.ipynb"})


def test_an_empty_setting_takes_the_checkouts_github_remote(tmp_path):
    copy = a_copy(tmp_path, "")
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    with pytest.raises(CourseError, match="no GitHub remote"):
        settings(copy)
    for url in ("git@github.com:someone/fork.git", "https://github.com/someone/fork", "ssh://git@github.com/someone/fork.git/"):
        subprocess.run(["git", "-C", str(copy), "remote", "remove", "origin"], capture_output=True)
        subprocess.run(["git", "-C", str(copy), "remote", "add", "origin", url], check=True)
        found = settings(copy)
        assert (found.slug, found.branch, found.origin) == ("someone/fork", "dev", "git remote origin"), url
    assert links(render(SOURCES[0], "ko", copy))[0] == {("someone/fork", "dev")}
    a_copy(tmp_path / "bad", "not a slug")
    with pytest.raises(CourseError, match="OWNER/NAME"):
        settings(tmp_path / "bad")


def test_course_build_warns_loudly_while_the_setting_is_the_placeholder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build_mod, "build_language", lambda root, lang, out: out.mkdir(parents=True))
    monkeypatch.setattr("autograde.figures.make_all", lambda course: [])
    monkeypatch.setattr("autograde.site.notebook_pages.write_pages", lambda root: None)
    build_mod.build(ROOT, skip_notebooks=True, site_dir=tmp_path / "site")
    err = capsys.readouterr().err
    if settings(ROOT).placeholder:
        assert err.count(f"WARNING: mkdocs.yml's extra.repository is still {PLACEHOLDER}") == 2
    else:
        assert "WARNING" not in err
    assert placeholder_warning(settings(a_copy(tmp_path, "someone/fork"))) is None


def test_a_submission_handed_out_before_the_setting_changed_is_not_flagged(tmp_path):
    """The setup cell's install line names the repository: the grader compares it without."""
    name = "03_attention"
    exercise = json.loads((ROOT / "exercises" / "en" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
    setup = next(c for c in exercise["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup")
    source = "".join(setup["source"])
    assert INSTALL.search(source)
    events = {}
    for case, text in (("old setting", INSTALL.sub("git+https://github.com/teacher/old-copy@spring", source)),
                       ("edited", source.replace("import math", "import math, os"))):
        setup["source"] = text
        path = tmp_path / f"{name}.ipynb"
        path.write_text(json.dumps(exercise, ensure_ascii=False), encoding="utf-8")
        events[case] = [e["event"] for e in rebuild(*load_submission(path), path).tamper]
    assert events == {"old setting": [], "edited": ["edited_locked_cell"]}


def test_the_pages_path_is_where_github_pages_serves_the_site():
    from autograde.repository import Repository

    assert Repository("ada/llm-course", "main", "mkdocs.yml").pages_path == "/llm-course/"
    assert Repository("ada/ada.github.io", "main", "mkdocs.yml").pages_path == "/"
    assert Repository("ada/Ada.GitHub.io", "main", "mkdocs.yml").pages_path == "/"
