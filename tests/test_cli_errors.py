"""Bad input to the `course` command ends in one line `error: ...` on stderr with exit
status 2, never a traceback, and never does something the user did not ask for
(a model written into the current directory, a config.json silently replaced)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograde.cli import MAX_NEW_TOKENS


def course(*args, cwd=None):
    """args may be bytes: arguments that are not UTF-8, as a shell passes them."""
    done = subprocess.run([sys.executable, "-m", "autograde.cli", *args], capture_output=True, cwd=cwd,
                          timeout=300)
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def assert_one_error_line(result, *fragments):
    rc, _, err = result
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("args, fragment", [
    (["--temperature", "1e-300"], "--temperature must be at least"),
    (["--temperature", "inf"], "finite"),
    (["--temperature", "nan"], "temperature must be > 0"),
    (["--seed", "1180591620717411303424"], "--seed must be between 0 and 2**64 - 1"),
    (["--seed", "-1"], "--seed must be between"),
    (["--max-new-tokens", "1000000000"], f"at most {MAX_NEW_TOKENS}"),
])
def test_generate_refuses_numbers_it_cannot_honour(args, fragment):
    assert_one_error_line(course("generate", "hello", *args), fragment)


def test_generate_help_states_the_limits():
    _, out, _ = course("generate", "--help")
    assert str(MAX_NEW_TOKENS) in out and "2**64" in out


def test_the_largest_seed_is_accepted():
    rc, out, err = course("generate", "hello", "--seed", str(2**64 - 1), "--max-new-tokens", "2")
    assert rc == 0, err
    assert out.startswith("hello")


@pytest.mark.parametrize("args", [
    [b"tokenize", b"caf\xe9 au lait"],
    [b"generate", b"\xff\xfe", b"--max-new-tokens", b"1"],
])
def test_arguments_that_are_not_utf8(args):
    assert_one_error_line(course(*args), "not valid UTF-8", "0x")


def test_tokenizer_option_given_a_directory_or_a_foreign_file(tmp_path):
    assert_one_error_line(course("tokenize", "abc", "--tokenizer", str(tmp_path)), "is a directory")
    foreign = tmp_path / "tokenizer.json"
    foreign.write_text(json.dumps({"model": {"type": "WordPiece"}}))
    assert_one_error_line(course("tokenize", "abc", "--tokenizer", str(foreign)))
    assert_one_error_line(course("tokenize", "abc", "--tokenizer", str(tmp_path)), "did you mean its tokenizer.json")
    assert_one_error_line(course("tokenize", "abc", "--tokenizer", str(tmp_path / "nope.json")), "does not exist")


def test_export_hf_refuses_an_empty_path_and_writes_nothing(tmp_path):
    assert_one_error_line(course("export-hf", "", cwd=tmp_path), "output directory is empty")
    assert_one_error_line(course("export-hf", "  ", cwd=tmp_path), "output directory is empty")
    assert list(tmp_path.iterdir()) == []


def test_export_hf_never_overwrites_without_force(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "own config"}')
    assert_one_error_line(course("export-hf", str(mine)), "not empty", "--force")
    assert json.loads((mine / "config.json").read_text()) == {"my": "own config"}

    rc, _, err = course("export-hf", str(mine), "--force")
    assert rc == 0, err
    config = json.loads((mine / "config.json").read_text())
    assert "my" not in config and config.get("vocab_size")


def test_export_hf_under_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert_one_error_line(course("export-hf", str(tmp_path / "file.txt" / "out")), "cannot write the model",
                          "is a file")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody can write into: a read-only tmpfs as root (root ignores mode bits), else mode 555."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "course-test-ro", str(target)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode(errors='replace').strip()}")
        yield target
        subprocess.run(["umount", str(target)], check=True)
    else:
        target.chmod(0o555)
        yield target
        target.chmod(0o755)


def test_export_hf_into_a_read_only_place(read_only_dir):
    assert_one_error_line(course("export-hf", str(read_only_dir)), "cannot write the model")
    assert_one_error_line(course("export-hf", str(read_only_dir / "sub" / "dir")), "cannot write the model")
    assert list(Path(read_only_dir).iterdir()) == []


def test_check_as_a_student_without_the_course_secret_is_refused():
    """`course check --student NAME` alone drew the public cases, the same for every student, and said
    nothing: an instructor reproducing a student's grade got other hidden cases than `course grade`."""
    notebook = Path(__file__).resolve().parent.parent / "exercises" / "en" / "05_sampling" / "05_sampling.ipynb"
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SECRET_FILE"}
    done = subprocess.run([sys.executable, "-m", "autograde.cli", "check", str(notebook), "--student", "dan"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert_one_error_line((done.returncode, done.stdout, done.stderr), "--student dan needs the course secret",
                          "--secret FILE")


def test_grading_an_assignment_nobody_handed_in_changes_nothing(tmp_path):
    """It used to print an empty table, exit 0 and record the assignment in the gradebook, so that
    every later `course export-grades` gave each student a 0 for it."""
    (tmp_path / "submitted" / "ana" / "03_attention").mkdir(parents=True)     # ana handed in notebook 3 only
    (tmp_path / "submitted" / "ana" / "03_attention" / "03_attention.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / "submitted" / "ben" / "05_sampling").mkdir(parents=True)      # ben made the folder, no notebook
    before = sorted(tmp_path.rglob("*"))
    result = course("grade", "05_sampling", "--root", str(tmp_path))
    assert_one_error_line(result, "nothing to grade for 05_sampling", "submitted/STUDENT/05_sampling/05_sampling.ipynb",
                          "the gradebook is unchanged")
    assert sorted(tmp_path.rglob("*")) == before


def test_grading_names_the_notebooks_it_leaves_aside(tmp_path, capsys):
    """One notebook per student is graded; the others in the folder are named, never silently skipped
    (said before the grading starts, by what `course grade` runs first)."""
    from autograde.cli import _something_to_grade

    folder = tmp_path / "submitted" / "yuki" / "05_sampling"
    folder.mkdir(parents=True)
    for name in ("a.ipynb", "b.ipynb", "notes.txt"):
        (folder / name).write_text("{}", encoding="utf-8")
    (tmp_path / "submitted" / "zoe" / "05_sampling").mkdir(parents=True)
    (tmp_path / "submitted" / "zoe" / "05_sampling" / "05_sampling.ipynb").write_text("{}", encoding="utf-8")
    _something_to_grade("05_sampling", tmp_path)
    err = capsys.readouterr().err
    assert err == f"note: yuki has 2 notebooks in {folder.resolve()}: grading a.ipynb, not b.ipynb " \
                  "(leave only the one to grade there)\n", err
