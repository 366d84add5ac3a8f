"""Where the course's notebooks live on GitHub: the one setting behind every Colab link, every
download link and the install cell of every notebook.

    mkdocs.yml   extra.repository: OWNER/NAME      extra.default_branch: BRANCH

When extra.repository is empty, the checkout's git remote `origin` (a github.com URL) gives it.
The shipped value is the original project's (PLACEHOLDER): an instructor's own copy sets its own,
and `course build` says so loudly until then.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from autograde.errors import CourseError

PLACEHOLDER = "llm-from-tokens/llm-course"
SLUG = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
GITHUB_REMOTE = re.compile(r"github\.com[:/]+([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class Repository:
    slug: str            # OWNER/NAME on GitHub
    branch: str
    origin: str          # where the slug came from: "mkdocs.yml" or "git remote origin"

    @property
    def placeholder(self) -> bool:
        return self.slug == PLACEHOLDER

    @property
    def pages_path(self) -> str:
        """Where GitHub Pages serves the site: /NAME/, or / for a OWNER.github.io repository."""
        name = self.slug.split("/")[1]
        return "/" if name.lower().endswith(".github.io") else f"/{name}/"


def _setting(text: str, key: str) -> str | None:
    """extra.KEY from mkdocs.yml's text (a plain scalar; None when the line is absent)."""
    match = re.search(rf"^[ \t]+{key}:[ \t]*(.*?)[ \t]*(?:#.*)?$", text, re.M)
    return match.group(1).strip("\"'") if match else None


def git_remote(root: Path) -> str | None:
    """OWNER/NAME of the checkout's `origin` when it is on GitHub, else None."""
    try:
        done = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = GITHUB_REMOTE.search(done.stdout.strip()) if done.returncode == 0 else None
    return match.group(1) if match else None


def settings(root: Path) -> Repository:
    """The repository and branch of this checkout (mkdocs.yml, else the git remote)."""
    text = (Path(root) / "mkdocs.yml").read_text(encoding="utf-8")
    slug, branch = _setting(text, "repository"), _setting(text, "default_branch")
    if not branch:
        raise CourseError("mkdocs.yml must set extra.default_branch (the branch students' notebooks come from)")
    if slug:
        if not SLUG.fullmatch(slug):
            raise CourseError(f"mkdocs.yml: extra.repository must be OWNER/NAME on GitHub (got {slug!r})")
        return Repository(slug, branch, "mkdocs.yml")
    remote = git_remote(Path(root))
    if remote is None:
        raise CourseError("mkdocs.yml's extra.repository is empty and this checkout has no GitHub remote "
                          "`origin`: set extra.repository to OWNER/NAME of your copy on GitHub")
    return Repository(remote, branch, "git remote origin")


def placeholder_warning(repo: Repository) -> str | None:
    """The loud note `course build` prints while the links point to the original project."""
    if not repo.placeholder:
        return None
    bar = "!" * 78
    return (f"{bar}\nWARNING: mkdocs.yml's extra.repository is still {PLACEHOLDER}, the original project.\n"
            "Every Colab button, every notebook's install cell and every Colab link inside the notebooks\n"
            "points there, not to your copy. Set extra.repository to OWNER/NAME of your fork (or empty it to\n"
            "use this checkout's git remote), build again and commit the regenerated notebooks:\n"
            "see 'Use your own copy and publish it' in the instructors' guide.\n"
            f"{bar}")
