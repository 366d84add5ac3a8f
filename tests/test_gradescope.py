"""The Gradescope autograder (`course export-gradescope`): the exported run_autograder, run in a
temporary AUTOGRADER_ROOT with this project's environment, grades the solution to full marks, the
exercise to zero, and answers bad and hostile submissions with a valid results.json."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograde.grader.gradescope import export, unpack, validate_results
from hostile.corpus import CELL_CASES, with_cell
from test_grader import course_root, make_submission, needs_reference

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_attention"


@pytest.fixture(scope="module")
def archive():
    with course_root("gradescope") as course:          # the course where instructors keep it, not /tmp
        yield export(ASSIGNMENT, course / "autograder.zip", ("en", "ko"), secret_root=course), course


def run_autograder(archive_path: Path, tmp_path: Path, files: dict[str, bytes | dict | Path], **env_extra) -> dict:
    """Unpack like Gradescope, put `files` into submission/ (a Path: a symbolic link to it), run
    run_autograder; the results.json."""
    root = unpack(archive_path, tmp_path / "autograder")
    (root / "submission").mkdir()
    for name, content in files.items():
        target = root / "submission" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            target.symlink_to(content)
        else:
            target.write_bytes(content if isinstance(content, bytes) else
                               json.dumps(content, ensure_ascii=False).encode())
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"id": 42, "email": "s@example.com"}]}))
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_PYTHON": sys.executable,
           "COURSE_GRADE_TIMEOUT": "120", "COURSE_GRADE_CALL_TIMEOUT": "30", **env_extra}
    done = subprocess.run(["bash", str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert validate_results(doc) == [], validate_results(doc)
    return doc


def test_setup_sh_installs_what_a_gradescope_image_needs(archive):
    """apt's lists before apt-get install (a fresh image has none), torch's CPU build from PyTorch's CPU
    index at the project's pin (never the default CUDA wheel), every other dependency at the version
    this environment runs."""
    import shlex
    from importlib import metadata

    from autograde.grader.gradescope import TORCH

    path, _ = archive
    with zipfile.ZipFile(path) as z:
        lines = [shlex.split(line) for line in z.read("setup.sh").decode().splitlines()
                 if line.strip() and not line.startswith("#")]
        pins = dict(line.split("==") for line in z.read("constraints.txt").decode().split())
    apt = [i for i, words in enumerate(lines) if words[:1] == ["apt-get"]]
    assert [lines[i][1] for i in apt] == ["update", "install"]
    torch_line = next(words for words in lines if TORCH in words)
    assert torch_line[:3] == ["/autograder/venv/bin/pip", "install", "--quiet"]
    assert torch_line[torch_line.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert torch_line[-1] == TORCH and lines.index(torch_line) > apt[-1]
    project = next(words for words in lines if words[-2:] == ["-e", "/autograder/source"])
    assert "--index-url" not in project and "/autograder/source/constraints.txt" in project
    assert lines.index(project) > lines.index(torch_line)
    assert "torch" not in pins and pins["numpy"] == metadata.version("numpy") and len(pins) >= 10


def test_the_archive_has_gradescope_layout_and_the_course_secret(archive):
    path, course = archive
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "gradescope.json", ".course-secret", "pyproject.toml"} <= names
        assert f"solutions/en/{ASSIGNMENT}/{ASSIGNMENT}.ipynb" in names
        assert f"solutions/ko/{ASSIGNMENT}/{ASSIGNMENT}.ipynb" in names
        assert not any(n.startswith(("tests/", "exercises/")) or "__pycache__" in n for n in names)
        assert z.read(".course-secret").decode().strip() == (course / ".course-secret").read_text().strip()
        assert z.getinfo("run_autograder").external_attr >> 16 & 0o111
        assert "pip install" in z.read("setup.sh").decode()
    assert oct(path.stat().st_mode & 0o777) == "0o600"            # it holds the secret
    with zipfile.ZipFile(path) as z:                                # and so does its copy of the key
        assert z.getinfo(".course-secret").external_attr >> 16 & 0o777 == 0o600


def test_the_unpacked_key_and_solutions_are_the_graders_alone(archive):
    with course_root("gradescope-unpack") as tmp:
        root = unpack(archive[0], tmp / "autograder")
        key = root / "source" / ".course-secret"
        assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_uid == os.geteuid()
        for path in [root / "source" / "solutions", *(root / "source" / "solutions").rglob("*")]:
            assert path.stat().st_mode & 0o077 == 0, path                 # nothing for group or others


def test_the_secret_stays_out_of_git_and_the_student_release():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".course-secret"], cwd=REPO)
    assert ignored.returncode == 0
    assert not list((REPO / "exercises").rglob(".course-secret"))


def test_bad_arguments_are_one_clear_error(tmp_path):
    from autograde.errors import CourseError

    with pytest.raises(CourseError, match="unknown assignment"):
        export("99_nothing", tmp_path / "a.zip", ("en",), secret_root=tmp_path)
    with pytest.raises(CourseError, match="is a directory"):
        export(ASSIGNMENT, tmp_path, ("en",), secret_root=tmp_path)
    done = subprocess.run([sys.executable, "-m", "autograde.cli", "export-gradescope", ASSIGNMENT, "-o",
                           str(tmp_path / "missing" / "a.zip"), "--root", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error:") and "Traceback" not in done.stderr


@needs_reference
@pytest.mark.slow
def test_the_solution_earns_full_marks_and_hidden_checks_are_published_later(archive, tmp_path):
    doc = run_autograder(archive[0], tmp_path, {f"{ASSIGNMENT}.ipynb": make_submission("full", "ko")})
    assert doc["score"] == sum(t["max_score"] for t in doc["tests"]) == 9
    assert all(t["status"] == "passed" for t in doc["tests"])
    hidden = [t for t in doc["tests"] if t["visibility"] == "after_published"]
    assert hidden and all(t["max_score"] == 0 for t in hidden)
    assert "통과" in doc["tests"][0]["output"]                    # feedback in the notebook's language
    assert doc["extra_data"]["seeds"]


@needs_reference
@pytest.mark.slow
def test_the_unmodified_exercise_scores_zero(archive, tmp_path):
    doc = run_autograder(archive[0], tmp_path, {f"{ASSIGNMENT}.ipynb": make_submission("blank")})
    assert doc["score"] == 0 and doc["tests"] and all(t["score"] == 0 for t in doc["tests"])
    assert "NotImplementedError" in doc["tests"][0]["output"]


BAD = {
    "no notebook": ({"notes.txt": b"hello"}, "No notebook"),
    "two notebooks": ({"a.ipynb": b"{}", "b/03_attention.ipynb": b"{}"}, "several notebooks"),
    "another assignment": ({"01_tokenizer.ipynb": "tokenizer"}, "belongs to assignment 01_tokenizer"),
    "invalid JSON": ({f"{ASSIGNMENT}.ipynb": b"{not json"}, "invalid JSON"),
    "nbformat 3": ({f"{ASSIGNMENT}.ipynb": (REPO / "tests/hostile/nbformat3.ipynb").read_bytes()}, "format 3"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_submission_that_cannot_be_graded_gets_zero_and_a_message_in_both_languages(archive, tmp_path, case):
    files, fragment = BAD[case]
    files = {name: make_submission("full", assignment="01_tokenizer") if content == "tokenizer" else content
             for name, content in files.items()}
    doc = run_autograder(archive[0], tmp_path, files)
    assert doc["score"] == 0 and doc["tests"] == []
    assert fragment in doc["output"], doc["output"]
    assert any("\uac00" <= ch <= "\ud7a3" for ch in doc["output"])        # the Korean half is there too
    assert doc["extra_data"]["sandbox"] == {"mode": None, "ran": False}   # every result says how it ran


def test_a_linked_notebook_is_refused_and_not_read(archive):
    """An uploaded archive may hold symbolic links: here one to the course key, named as the notebook,
    and one to a folder that holds a notebook. Neither is followed (the folder's notebook would make
    two); the student is told why."""
    with course_root("gradescope-link") as tmp:
        key = (archive[1] / ".course-secret").read_text().strip()
        source = tmp / "autograder" / "source"
        doc = run_autograder(archive[0], tmp, {f"{ASSIGNMENT}.ipynb": source / ".course-secret",
                                               "linked": source / "solutions" / "en" / ASSIGNMENT})
        assert doc["score"] == 0 and "symbolic link" in doc["output"] and "심볼릭 링크" in doc["output"]
        assert "several notebooks" not in doc["output"] and key[:10] not in json.dumps(doc)


READS_THE_KEY = """import os
seen = []
for p in [{key!r}] + [os.path.join(d, f) for d, _, files in os.walk({solutions!r}) for f in files]:
    try:
        seen.append(open(p, encoding='latin-1').read(80))
    except OSError as exc:
        seen.append(type(exc).__name__)
def softmax(x, dim=-1):
    raise ValueError('LEAK' + repr(seen))
"""


@needs_reference
@pytest.mark.slow
def test_in_plain_mode_the_students_code_cannot_read_the_key_or_the_solutions(archive):
    """No namespaces (COURSE_SANDBOX=plain, as on a host that refuses them): the result says so, and
    the student's code, which puts whatever it read into its own feedback, reads neither the key nor
    the solutions (here even where the sandbox user keeps CAP_DAC_READ_SEARCH for an interpreter
    behind /root: they are off the disk while it runs). Both are back, the grader's alone, after."""
    with course_root("gradescope-plain") as tmp:
        source = tmp / "autograder" / "source"
        key_text = (archive[1] / ".course-secret").read_text().strip()
        nb = make_submission("full")
        for cell in nb["cells"]:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax":
                cell["source"] = READS_THE_KEY.format(key=str(source / ".course-secret"),
                                                      solutions=str(source / "solutions"))
        doc = run_autograder(archive[0], tmp, {f"{ASSIGNMENT}.ipynb": nb}, COURSE_SANDBOX="plain")
        assert doc["extra_data"]["sandbox"] == {"mode": "plain", "ran": True}
        softmax = next(t for t in doc["tests"] if t["name"] == "check_softmax")
        assert "LEAK" in softmax["output"] and softmax["score"] == 0       # its code ran, and read nothing:
        text = json.dumps(doc, ensure_ascii=False)
        assert key_text[:10] not in text and "\"cells\"" not in softmax["output"] and "cells" not in doc["output"]
        assert doc["score"] > 0                                            # the other answers were graded
        key = source / ".course-secret"
        assert key.read_text().strip() == key_text and key.stat().st_mode & 0o777 == 0o600
        assert (source / "solutions" / "en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()


@needs_reference
@pytest.mark.slow
def test_hostile_submissions_earn_nothing_they_did_not_earn(archive, tmp_path):
    for name in ("torch_sdpa_alias", "import_reference", "patch_checks"):
        grade_id, source, spec = CELL_CASES[name]
        doc = run_autograder(archive[0], tmp_path / name, {f"{ASSIGNMENT}.ipynb": with_cell(grade_id, source)})
        scores = {t["name"]: t["score"] for t in doc["tests"]}
        for cell in spec["zero"]:
            assert scores[cell] == 0, (name, cell)
        assert doc["score"] < 9, name


def test_an_autograder_failure_is_reported_not_hidden(archive, tmp_path):
    """A broken installation (here: the config missing) writes a results.json saying it is not the
    student's doing, and exits non-zero so that Gradescope shows the instructor."""
    root = unpack(archive[0], tmp_path / "autograder")
    (root / "source" / "gradescope.json").unlink()
    (root / "submission").mkdir()
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    doc = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert validate_results(doc) == [] and "not your doing" in doc["output"]


def test_the_validator_catches_what_gradescope_rejects():
    assert validate_results({"score": 1, "tests": [{"score": 1, "max_score": 1, "visibility": "sometimes"}]})
    assert validate_results({"tests": [{"name": "x"}]})                     # no score anywhere
    assert validate_results({"score": 1, "colour": "red"})
    assert validate_results({"score": 1.0, "tests": [{"score": 1, "max_score": 2, "status": "passed"}]}) == []


def docker_works() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("COURSE_TEST_DOCKER") != "1" or not docker_works(),
                    reason="opt-in (COURSE_TEST_DOCKER=1) and needs a running Docker daemon and the network")
def test_the_archive_builds_in_an_ubuntu_container(archive, tmp_path):
    root = tmp_path / "ctx"
    root.mkdir()
    shutil.copyfile(archive[0], root / "autograder.zip")
    (root / "Dockerfile").write_text("FROM ubuntu:22.04\nRUN apt-get update && apt-get install -y unzip\n"
                                     "COPY autograder.zip /tmp/\nRUN mkdir -p /autograder/source && cd "
                                     "/autograder/source && unzip /tmp/autograder.zip && bash setup.sh\n")
    done = subprocess.run(["docker", "build", "-q", str(root)], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-2000:]
