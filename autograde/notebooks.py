"""Generate the solution and student notebooks from one bilingual source each.

    solutions/src/NN_name.py            one jupytext "percent" file per assignment:
                                        code written once, prose in both languages
    solutions/<lang>/NN_name/NN_name.ipynb   instructor notebooks (nbgrader source)
    exercises/<lang>/NN_name/NN_name.ipynb   student notebooks, made by nbgrader's
                                        own generate_assignment (release)

Cell headers in the source (jupytext percent syntax, metadata as key=value):

    # %% [markdown] lang="en"              prose for one language
    # %% kind="setup" id="setup"           locked code, not graded
    # %% kind="solution" id="softmax"      the student's cell (### BEGIN/END SOLUTION inside)
    # %% kind="test" id="check_softmax"    graded check cell: left empty in the source; its
                                           check(...) lines and points come from autograde/steps.toml
    # %%                                   ordinary code (exploration)

Code cells are identical in both languages except the `COURSE_LANG = "..."`
line of the setup cell, which picks the feedback language.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from autograde.errors import CourseError

LANGS = ("en", "ko")
ASSIGNMENTS = ("01_tokenizer", "02_embeddings", "03_attention", "04_ffn_block", "05_sampling", "06_training",
               "07_real_model", "08_thinking", "09_reasoning")
LANG_LINE = re.compile(r'^COURSE_LANG = "(en|ko)"$', re.M)


def repository_settings(root: Path) -> tuple[str, str]:
    """OWNER/NAME and branch of the course on GitHub (autograde/repository.py: mkdocs.yml's
    extra.repository, else the checkout's git remote)."""
    from autograde.repository import settings

    repo = settings(root)
    return repo.slug, repo.branch


def colab_url(root: Path, lang: str, assignment: str) -> str:
    repo, branch = repository_settings(root)
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/exercises/{lang}/{assignment}/{assignment}.ipynb"


def _nbgrader_meta(kind: str, cell_id: str, points) -> dict:
    base = {"grade_id": cell_id, "schema_version": 3, "task": False}
    if kind == "solution":
        return {**base, "grade": False, "locked": False, "solution": True}
    if kind == "test":
        return {**base, "grade": True, "locked": True, "points": int(points), "solution": False}
    return {**base, "grade": False, "locked": True, "solution": False}      # setup / locked code


def _test_cell(assignment: str, cell_id: str | None, code: str) -> tuple[str, int]:
    """A test cell's code and points, from the manifest (the source's cell must be empty)."""
    from autograde import manifest

    cell = manifest.test_cell(assignment, cell_id or "")
    if cell is None:
        raise CourseError(f"{assignment}: test cell {cell_id!r} has no steps in {manifest.MANIFEST.name}")
    if code.strip():
        raise CourseError(f"{assignment}: test cell {cell_id!r} must be empty in the source; its checks come "
                          f"from {manifest.MANIFEST.name}")
    return cell.source(), cell.points


def render(source: Path, lang: str, root: Path) -> nbformat.NotebookNode:
    """One language's solution notebook from the bilingual source."""
    import jupytext

    assignment = source.stem
    src = jupytext.read(source)
    repo, branch = repository_settings(root)
    cells = []
    for index, cell in enumerate(src.cells):
        meta = dict(cell.metadata)
        if cell.cell_type == "markdown":
            if meta.get("lang", lang) != lang:
                continue
            text = cell.source.replace("{{colab_url}}", colab_url(root, lang, assignment))
            new = nbformat.v4.new_markdown_cell(text)
            new.id = f"md-{index}"
            cells.append(new)
            continue
        code = cell.source
        points = meta.get("points", 1)
        if meta.get("kind") == "test":
            code, points = _test_cell(assignment, meta.get("id"), code)
        if meta.get("kind") == "setup":
            code = LANG_LINE.sub(f'COURSE_LANG = "{lang}"', code)
            code = code.replace("{{repository}}", repo).replace("{{branch}}", branch)
        new = nbformat.v4.new_code_cell(code)
        kind = meta.get("kind")
        if kind:
            cell_id = meta.get("id") or f"{kind}-{index}"
            new.metadata["nbgrader"] = _nbgrader_meta(kind, cell_id, points)
            new.id = cell_id.replace("_", "-")
        else:
            new.id = f"code-{index}"
        cells.append(new)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "course": {"assignment": assignment, "lang": lang},
        "colab": {"provenance": []},
        "accelerator": "GPU",
    }
    nbformat.validate(nb)
    return nb


def write_solutions(root: Path, out_dir: Path | None = None) -> list[Path]:
    out_dir = out_dir or root / "solutions"
    written = []
    for source in sorted((root / "solutions" / "src").glob("*.py")):
        for lang in LANGS:
            path = out_dir / lang / source.stem / f"{source.stem}.ipynb"
            text = nbformat.writes(render(source, lang, root))
            install_bytes((text if text.endswith("\n") else text + "\n").encode("utf-8"), path)   # as nbformat.write
            written.append(path)
    return written


def tool_env() -> dict:
    """Environment for nbgrader subprocesses: it runs `alembic` by name, so the
    interpreter's bin directory (the venv's) must be on PATH. Nothing needs activating.

    nbgrader generate_feedback renders with nbconvert's templates, which Jupyter looks for under
    the interpreter's prefix (share/jupyter); where nbconvert was installed under another prefix (a
    venv that reuses another environment's packages), they are added from there, after any
    JUPYTER_PATH of the instructor's own."""
    import importlib.util
    import os

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    spec = importlib.util.find_spec("nbconvert")
    if spec and spec.origin:
        share = Path(spec.origin).resolve().parents[4] / "share" / "jupyter"
        if (share / "nbconvert" / "templates").is_dir() and share != Path(sys.prefix).resolve() / "share" / "jupyter":
            env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [env.get("JUPYTER_PATH"), str(share)]))
    return env


def nbgrader_generate(name: str, lang: str, solutions_dir: Path, staging: Path, db: Path) -> Path:
    """nbgrader generate_assignment for one language, entirely inside `staging` (its course root and
    release folder); `db` is the gradebook it records into. Returns the student notebook it made.

    nbgrader's --force first deletes the release folder and, failing later (no `alembic` on PATH),
    leaves a half-made gradebook: here both are staging's, never a committed file."""
    release = staging / "release" / lang
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
           f"--CourseDirectory.root={staging}", f"--CourseDirectory.source_directory={solutions_dir / lang}",
           f"--CourseDirectory.release_directory={release}", f"--CourseDirectory.db_url=sqlite:///{db}",
           "--log-level=WARN"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=staging)
    except OSError as exc:
        raise CourseError(f"cannot run nbgrader ({exc.strerror or exc}): is this the course's environment? "
                          "run `python3 tasks.py build`") from None
    made = release / name / f"{name}.ipynb"
    if done.returncode != 0 or not made.is_file():
        raise CourseError(f"nbgrader generate_assignment failed for {lang}/{name}; no committed notebook was "
                          f"changed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return made


def install_file(made: Path, target: Path) -> bool:
    """Put the file `made` at `target` in one step (install_bytes)."""
    return install_bytes(made.read_bytes(), target)


def install_bytes(data: bytes, target: Path) -> bool:
    """Put `data` at `target` in one step (a copy beside it, then a rename): a reader or a crash sees
    the old file or the new one, never half of one. False when the bytes are already there."""
    import os

    if target.is_file() and target.read_bytes() == data:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def generate_exercises(root: Path, solutions_dir: Path, exercises_dir: Path) -> list[Path]:
    """nbgrader generate_assignment per language (throwaway gradebooks). Every student notebook is
    made first, in a temporary folder; only when all succeeded are they installed, each atomically.

    All of them are made in one Python process (nbgrader_generate_many): starting nbgrader costs
    about 4 s of CPU, paid once instead of once per notebook."""
    assignments = sorted(p.stem for p in (root / "solutions" / "src").glob("*.py"))
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(name, lang) for lang in LANGS for name in assignments]
        made = nbgrader_generate_many(jobs, solutions_dir, Path(tmp))
        targets = [exercises_dir / lang / name / f"{name}.ipynb" for name, lang in jobs]
        for path, target in zip(made, targets):
            install_file(path, target)
    return targets


def nbgrader_generate_many(jobs: list[tuple[str, str]], solutions_dir: Path, staging: Path) -> list[Path]:
    """nbgrader_generate for each (name, lang), in one subprocess that imports nbgrader once; one
    throwaway gradebook per language in `staging`. CourseError naming the first notebook that failed."""
    import json

    spec = [{"name": name, "lang": lang, "root": str(staging), "source": str(solutions_dir / lang),
             "release": str(staging / "release" / lang), "db": str(staging / f"gen-{lang}.db")}
            for name, lang in jobs]
    cmd = [sys.executable, "-c", "from autograde.notebooks import _generate_batch; _generate_batch()"]
    try:
        done = subprocess.run(cmd, input=json.dumps(spec), capture_output=True, text=True, env=tool_env(),
                              cwd=staging)
    except OSError as exc:
        raise CourseError(f"cannot run nbgrader ({exc.strerror or exc}): is this the course's environment? "
                          "run `python3 tasks.py build`") from None
    made = [Path(job["release"]) / job["name"] / f"{job['name']}.ipynb" for job in spec]
    for (name, lang), path in zip(jobs, made):
        if done.returncode != 0 or not path.is_file():
            raise CourseError(f"nbgrader generate_assignment failed for {lang}/{name}; no committed notebook was "
                              f"changed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return made


def _generate_batch() -> None:
    """The subprocess of nbgrader_generate_many: the jobs as JSON on stdin; what
    `nbgrader generate_assignment NAME --force` with the same settings does, once per job."""
    import json
    import logging

    from nbgrader.converters import GenerateAssignment
    from nbgrader.converters.base import NbGraderException
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    logging.basicConfig(level=logging.WARNING)
    for job in json.loads(sys.stdin.read()):
        config = Config()
        config.CourseDirectory.root = job["root"]
        config.CourseDirectory.source_directory = job["source"]
        config.CourseDirectory.release_directory = job["release"]
        config.CourseDirectory.db_url = f"sqlite:///{job['db']}"
        config.CourseDirectory.assignment_id = job["name"]
        config.GenerateAssignment.force = True
        converter = GenerateAssignment(coursedir=CourseDirectory(config=config), config=config)
        try:
            converter.start()
        except NbGraderException:
            sys.exit(f"nbgrader generate_assignment failed for {job['lang']}/{job['name']}")


def build_all(root: Path, out_root: Path | None = None) -> list[Path]:
    """Solutions then exercises, for every assignment and both languages."""
    root = Path(root).resolve()
    out_root = Path(out_root or root).resolve()
    solutions = write_solutions(root, out_root / "solutions")
    exercises = generate_exercises(root, out_root / "solutions", out_root / "exercises")
    return solutions + exercises


def main() -> None:  # python -m autograde.notebooks
    for path in build_all(Path(__file__).resolve().parent.parent):
        print(path)


if __name__ == "__main__":
    main()
