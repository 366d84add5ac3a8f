"""Gradescope: `course export-gradescope ASSIGNMENT -o autograder.zip` and the autograder it ships.

The archive follows Gradescope's autograder contract:

    setup.sh            run once when Gradescope builds the image: apt-get update and install, a
                        virtual environment in /autograder/venv with the pinned CPU torch (PyTorch's
                        CPU index) and this project, its dependencies held by constraints.txt
    constraints.txt     the versions of the project's dependencies in the exporting environment
    run_autograder      run for every submission: `python -m autograde.grader.gradescope run`
    autograde/, solutions/LANG/ASSIGNMENT/, pyproject.toml, README.md
                        this project: the package and the assignment's pristine notebooks
    gradescope.json     the assignment, languages and torch pin
    .course-secret      the course's key, which seeds the hidden cases (never in the student release)

Gradescope unpacks the archive into /autograder/source and copies run_autograder to /autograder.

run_autograder grades /autograder/submission/*.ipynb with exactly the sandboxed checks of
`course check` and writes /autograder/results/results.json. The root is AUTOGRADER_ROOT
(default /autograder), so the tests run it in a temporary directory; COURSE_PYTHON chooses the
interpreter (default /autograder/venv/bin/python).

A submission that cannot be graded (no notebook, two notebooks, another assignment's notebook, a
notebook that is a symbolic link (never followed), invalid JSON, nbformat 3 ...) still gets a
results.json: score 0 and a message in both languages.

The key is shipped 0600 and, like solutions/, made the grader's alone (root-owned, 0600/0700) when
unpacked and again before each run. Every results.json says how the student's code ran
(extra_data.sandbox: {"mode": "namespaces" | "plain" | null, "ran": ...}). Where namespaces are
unavailable (plain mode) the student's code runs as an unprivileged user, and the key and the
solutions are taken off the disk while it runs (off_the_disk): file modes alone do not stop a
sandbox user that keeps CAP_DAC_READ_SEARCH, nor one that is the grader's own user.
A failure of the autograder itself also writes a results.json (score 0, saying it is not the
student's doing) and exits non-zero, so that Gradescope shows the instructor the failure.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from autograde.checks.messages import message, register_messages
from autograde.checks.runner import describe
from autograde.errors import CourseError
from autograde.grader.secret import SECRET_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = "gradescope.json"
TORCH = "torch==2.13.0"                    # the pin of tasks.py (COURSE_TORCH overrides both)

# Gradescope's documented results.json fields (autograder specifications, "Output format")
VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")
RESULT_FIELDS = {"score": (int, float), "execution_time": (int, float), "output": str, "output_format": str,
                 "test_output_format": str, "test_name_format": str, "visibility": str,
                 "stdout_visibility": str, "extra_data": dict, "tests": list, "leaderboard": list}
TEST_FIELDS = {"score": (int, float), "max_score": (int, float), "status": str, "name": str, "name_format": str,
               "number": str, "output": str, "output_format": str, "tags": list, "visibility": str,
               "extra_data": dict}
FORMATS = ("text", "html", "simple_format", "md", "ansi")

register_messages({
    "gs_no_notebook": {"en": "No notebook (.ipynb) was found in your submission: upload {assignment}.ipynb.",
                       "ko": "제출물에서 노트북(.ipynb)을 찾지 못했습니다. {assignment}.ipynb 파일을 올려 주세요."},
    "gs_two_notebooks": {"en": "Your submission has several notebooks ({names}): upload only {assignment}.ipynb.",
                         "ko": "제출물에 노트북이 여러 개 있습니다({names}). {assignment}.ipynb 하나만 올려 주세요."},
    "gs_wrong_assignment": {
        "en": "This notebook belongs to assignment {found}, but this autograder grades {assignment}: upload the "
              "{assignment} notebook.",
        "ko": "이 노트북은 {found} 과제의 것인데, 이 자동 채점기는 {assignment} 과제를 채점합니다. {assignment} 노트북을 "
              "올려 주세요."},
    "gs_unreadable": {"en": "Your notebook could not be graded: {reason}",
                      "ko": "노트북을 채점할 수 없습니다: {reason}"},
    "gs_internal": {"en": "The autograder itself failed ({reason}). This is not your doing: please tell the "
                          "instructor, and submit again later.",
                    "ko": "자동 채점기 자체에 문제가 생겼습니다({reason}). 여러분 잘못이 아닙니다. 강사에게 알리고 "
                          "나중에 다시 제출해 주세요."},
    "gs_hidden_failed": {"en": "a hidden check failed; its details are shown when grades are published",
                         "ko": "숨은 검사가 실패했습니다. 자세한 내용은 성적이 공개될 때 보입니다"},
    "gs_hidden_name": {"en": "{name} (hidden checks)", "ko": "{name} (숨은 검사)"},
})


# ----------------------------------------------------------------------------
# results.json


def validate_results(doc) -> list[str]:
    """Every way `doc` departs from Gradescope's documented results.json fields ([] when valid)."""
    problems = []
    if not isinstance(doc, dict):
        return ["results.json is not a JSON object"]
    for key, value in doc.items():
        if key not in RESULT_FIELDS:
            problems.append(f"unknown top-level field {key!r}")
        elif not isinstance(value, RESULT_FIELDS[key]) or isinstance(value, bool):
            problems.append(f"{key!r} has the wrong type")
    if "score" not in doc and not (doc.get("tests") and all("score" in t for t in doc["tests"])):
        problems.append("'score' is missing and not every test has a score")
    for key in ("visibility", "stdout_visibility"):
        if key in doc and doc[key] not in VISIBILITY:
            problems.append(f"{key!r} must be one of {VISIBILITY}")
    for key in ("output_format", "test_output_format"):
        if key in doc and doc[key] not in FORMATS:
            problems.append(f"{key!r} must be one of {FORMATS}")
    for i, test in enumerate(doc.get("tests", []) if isinstance(doc.get("tests"), list) else []):
        if not isinstance(test, dict):
            problems.append(f"tests[{i}] is not an object")
            continue
        for key, value in test.items():
            if key not in TEST_FIELDS:
                problems.append(f"tests[{i}]: unknown field {key!r}")
            elif not isinstance(value, TEST_FIELDS[key]) or isinstance(value, bool):
                problems.append(f"tests[{i}]: {key!r} has the wrong type")
        if test.get("status", "passed") not in ("passed", "failed"):
            problems.append(f"tests[{i}]: 'status' must be 'passed' or 'failed'")
        if test.get("visibility", "visible") not in VISIBILITY:
            problems.append(f"tests[{i}]: 'visibility' must be one of {VISIBILITY}")
        if "score" in test and "max_score" in test and test["score"] > test["max_score"] > 0:
            problems.append(f"tests[{i}]: score above max_score")
    return problems


def _both(key: str, **params) -> str:
    """A message in both languages: the notebook's language is not known when it cannot be read."""
    return message(key, "ko", **params) + "\n\n" + message(key, "en", **params)


def error_results(text: str, seconds: float) -> dict:
    return {"score": 0.0, "execution_time": round(seconds, 2), "output": text, "visibility": "visible",
            "stdout_visibility": "hidden", "tests": []}


def to_results(result: dict, seconds: float) -> dict:
    """A `course check --json` result -> Gradescope's results.json: one test per graded cell (its
    visible checks' feedback), and for each cell with hidden checks a second, zero-point test whose
    feedback Gradescope shows only once grades are published."""
    lang = result.get("lang", "en")
    tests = []
    for cell in result["tests"]:
        steps = cell.get("steps", [])
        visible = [s for s in steps if not s["hidden"]]
        hidden = [s for s in steps if s["hidden"]]
        lines = [describe(s, lang) for s in visible if not s["passed"]] or \
            [describe(s, lang) for s in visible]
        if cell["status"] == "failed" and all(s["passed"] for s in visible):
            lines.append("❌ " + message("gs_hidden_failed", lang))
        tests.append({"name": cell["name"], "score": float(cell["score"]), "max_score": float(cell["max_score"]),
                      "status": cell["status"], "output": "\n".join(lines) or cell.get("output", ""),
                      "visibility": "visible"})
        if hidden:
            failed = [s for s in hidden if not s["passed"]]
            tests.append({"name": message("gs_hidden_name", lang, name=cell["name"]), "score": 0.0,
                          "max_score": 0.0, "status": "failed" if failed else "passed",
                          "output": "\n".join(describe(s, lang) for s in (failed or hidden)),
                          "visibility": "after_published"})
    return {"score": float(result["score"]), "execution_time": round(seconds, 2),
            "output": result.get("output", ""), "visibility": "visible", "stdout_visibility": "hidden",
            "tests": tests, "extra_data": {"grader_version": result.get("grader_version"),
                                           "seeds": result.get("seeds", {}), "tamper": result.get("tamper", []),
                                           "static": result.get("static", {}),
                                           "submission_sha256": result.get("submission_sha256", "")}}


# ----------------------------------------------------------------------------
# run_autograder


def find_notebook(submission: Path, assignment: str) -> tuple[Path | None, str | None]:
    """(the notebook to grade, None) or (None, the message for the student). No symbolic link is
    followed (an uploaded archive may hold links): a linked folder is not searched, and a notebook
    that is a link is found as it is and refused when read (rebuild.open_submission)."""
    found = []
    if submission.is_dir() and not submission.is_symlink():
        for folder, dirs, files in os.walk(submission, followlinks=False):
            dirs[:] = [d for d in dirs if d not in (".ipynb_checkpoints", "__MACOSX")]
            found += [Path(folder) / f for f in files if f.endswith(".ipynb")]
    found.sort()
    if not found:
        return None, _both("gs_no_notebook", assignment=assignment)
    if len(found) == 1:
        return found[0], None
    names = ", ".join(p.name for p in found[:5])
    return None, _both("gs_two_notebooks", names=names, assignment=assignment)


def _identity(root: Path) -> str:
    """The submitters (Gradescope's user ids, sorted): the same group always gets the same cases."""
    try:
        meta = json.loads((root / "submission_metadata.json").read_text(encoding="utf-8"))
        users = meta.get("users") or []
        return ",".join(sorted(str(u.get("id") or u.get("email") or "") for u in users if isinstance(u, dict)))
    except (OSError, ValueError, AttributeError):
        return ""


def run(root: Path) -> int:
    """Grade root/submission into root/results/results.json. 0 unless the autograder itself failed."""
    from autograde.grader.pipeline import grade_notebook
    from autograde.grader.rebuild import SubmissionError, identify, load_submission
    from autograde.grader.sandbox import Limits, sandbox_mode
    from autograde.grader.secret import read_secret

    start = time.monotonic()
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    status = 0
    try:
        config = json.loads((root / "source" / CONFIG).read_text(encoding="utf-8"))
        assignment = config["assignment"]
        notebook, problem = find_notebook(root / "submission", assignment)
        if notebook is not None:
            try:
                nb, _ = load_submission(notebook, root / "submission")
                found, _ = identify(nb, notebook)
            except SubmissionError as exc:
                found, problem = assignment, _both("gs_unreadable", reason=str(exc))
            if problem is None and found != assignment:
                problem = _both("gs_wrong_assignment", found=found, assignment=assignment)
        if problem is not None:
            doc = error_results(problem, time.monotonic() - start)
        else:
            secret, solutions = root / "source" / ".course-secret", root / "source" / "solutions"
            lock_down([secret, solutions])
            mode = sandbox_mode()
            print(f"sandbox: {mode}" + ("" if mode == "namespaces" else " (no namespaces here: the student's code runs "
                                        "as an unprivileged user, with the course key and the solutions taken off "
                                        "the disk while it runs)"))
            result = grade_notebook(notebook, Limits.from_env(), extra_hidden=[secret, root / "results"],
                                    key=read_secret(secret), identity=_identity(root), assignment=assignment,
                                    inside=root / "submission",
                                    sealed=(lambda: off_the_disk([secret, solutions])) if mode != "namespaces" else None)
            if result.get("error"):
                doc = error_results(_both("gs_unreadable", reason=result["error"]), time.monotonic() - start)
            else:
                doc = to_results(result, time.monotonic() - start)
            doc.setdefault("extra_data", {})["sandbox"] = {"mode": mode, "ran": not result.get("error")}
    except Exception as exc:          # the autograder's own failure: say so, never a silent zero
        doc = error_results(_both("gs_internal", reason=f"{type(exc).__name__}: {str(exc)[:200]}"),
                            time.monotonic() - start)
        status = 1
    doc.setdefault("extra_data", {}).setdefault("sandbox", {"mode": None, "ran": False})   # nothing of theirs ran
    results_path.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"score {doc['score']:g}; results in {results_path}")
    return status


# ----------------------------------------------------------------------------
# the course key and the solutions, out of the student's reach


def lock_down(paths: list[Path]) -> None:
    """The course key and the solutions readable by their owner alone (files 0600, folders 0700),
    owned by root when the autograder runs as root: the sandbox's unprivileged user cannot read them."""
    for top in paths:
        if not top.exists() or top.is_symlink():
            continue
        for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
            if path.is_symlink():
                continue
            if os.geteuid() == 0:
                os.chown(path, 0, 0)
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


@contextlib.contextmanager
def off_the_disk(paths: list[Path]):
    """While the student's code runs in plain mode, the course key and the solutions are not on the
    disk at all: read into memory, removed, and written back (0600/0700) afterwards. File modes alone
    do not hold where the sandbox keeps CAP_DAC_READ_SEARCH (an interpreter behind /root) or runs as
    the grader's own user (no root). The grader has read what it needs before (the key, the pristine
    notebook); a Gradescope container grades one submission and is thrown away, so a kill in between
    loses nothing."""
    kept: list[tuple[Path, bytes | None]] = []
    for top in paths:
        if not top.exists() or top.is_symlink():
            continue
        for path in sorted([top, *(top.rglob("*") if top.is_dir() else [])]):
            kept.append((path, None if path.is_dir() else path.read_bytes()))
        shutil.rmtree(top) if top.is_dir() else top.unlink()
    try:
        yield
    finally:
        for path, data in kept:                       # parents come first (sorted)
            if data is None:
                path.mkdir(mode=0o700, exist_ok=True)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
        lock_down([path for path, _ in kept])


# ----------------------------------------------------------------------------
# export


# Gradescope's image is a bare Ubuntu without a GPU: the package lists first (an image's apt cache is
# empty, so a plain install finds nothing), then the CPU build of torch from PyTorch's CPU index (the
# default wheel is the multi-gigabyte CUDA build), then the project with every other dependency held
# to the version the instructor's environment runs (constraints.txt, written at export time).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip util-linux >/dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --upgrade pip
/autograder/venv/bin/pip install --quiet --index-url {index} {torch_args}
/autograder/venv/bin/pip install --quiet -c /autograder/source/constraints.txt -e /autograder/source
/autograder/venv/bin/python -c "import torch, autograde.grader.pipeline"
"""


def constraints() -> str:
    """name==version for each runtime dependency of the project, as installed here (torch apart: it
    comes from the CPU index at its own pin). A dependency not installed here keeps its range."""
    import re
    import tomllib
    from importlib import metadata

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = []
    for requirement in project["dependencies"]:        # the extras (site, tests) are not needed to grade
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        if name.lower() == "torch":
            continue
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(requirement.replace(" ", ""))
    return "".join(line + "\n" for line in sorted(lines, key=str.lower))


RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT and COURSE_PYTHON exist for testing.
export AUTOGRADER_ROOT="${AUTOGRADER_ROOT:-/autograder}"
exec "${COURSE_PYTHON:-/autograder/venv/bin/python}" -m autograde.grader.gradescope run
"""

# what the exported project needs: the package (without caches) and the pristine notebooks
PACKAGE_SKIP = ("__pycache__", ".pyc", ".ipynb_checkpoints")


def _add_tree(archive: zipfile.ZipFile, src: Path, arcname: str) -> None:
    for path in sorted(src.rglob("*")):
        if path.is_file() and not any(part in PACKAGE_SKIP or part.endswith(".pyc") for part in path.parts):
            archive.write(path, f"{arcname}/{path.relative_to(src).as_posix()}")


def _add_text(archive: zipfile.ZipFile, name: str, text: str, executable: bool = False, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = ((0o755 if executable else mode) | stat.S_IFREG) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)


def export(assignment: str, out: Path, langs: tuple[str, ...], secret_root: Path = Path("."),
           torch_spec: str | None = None) -> Path:
    """Write the autograder archive for `assignment` to `out`; CourseError for bad arguments."""
    from autograde import manifest
    from autograde.grader.secret import course_secret

    if assignment not in manifest.assignments():
        raise CourseError(f"unknown assignment {assignment!r} (known: {', '.join(manifest.assignments())})")
    out = Path(out)
    if out.is_dir():
        raise CourseError(f"{out} is a directory; give the archive's file name, e.g. autograder.zip")
    if not out.parent.is_dir():
        raise CourseError(f"the folder {out.parent} does not exist")
    key = course_secret(secret_root)
    torch_spec = torch_spec or os.environ.get("COURSE_TORCH", TORCH)
    config = {"assignment": assignment, "langs": list(langs), "torch": torch_spec}
    tmp = Path(tempfile.mkstemp(prefix=".autograder-", suffix=".zip", dir=out.parent)[1])
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            _add_text(archive, "setup.sh", SETUP_SH.format(index=TORCH_CPU_INDEX, torch_args=torch_spec),
                      executable=True)
            _add_text(archive, "constraints.txt", constraints())
            _add_text(archive, "run_autograder", RUN_AUTOGRADER, executable=True)
            _add_tree(archive, REPO_ROOT / "autograde", "autograde")
            for lang in langs:
                _add_tree(archive, REPO_ROOT / "solutions" / lang / assignment, f"solutions/{lang}/{assignment}")
            for name in ("pyproject.toml", "README.md"):
                archive.write(REPO_ROOT / name, name)
            _add_text(archive, CONFIG, json.dumps(config, indent=1) + "\n")
            _add_text(archive, SECRET_NAME, key.hex() + "\n", mode=0o600)      # unzip keeps the mode
        os.replace(tmp, out)
    except OSError as exc:
        raise CourseError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def unpack(archive: Path, root: Path) -> Path:
    """Lay an archive out as Gradescope does: ROOT/source (the archive), ROOT/run_autograder."""
    source = root / "source"
    with zipfile.ZipFile(archive) as z:
        z.extractall(source)
    lock_down([source / SECRET_NAME, source / "solutions"])     # extractall keeps no permissions
    shutil.copyfile(source / "run_autograder", root / "run_autograder")
    os.chmod(root / "run_autograder", 0o755)                # extractall keeps no permissions
    return root


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return run(Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    print("usage: python -m autograde.grader.gradescope run   (inside the autograder)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
