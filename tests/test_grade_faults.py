"""The grader's own trouble is never a grade, one submission never stops the class,
and Ctrl-C stops the queue at once while keeping what finished.

* A full disk, or a sandbox that cannot start, leaves the submission "not graded":
  no gradebook row, not marked done, exit status 3 with the command to run again;
  the next run grades it. `course check` says so in one `error:` line.
* A submission that is a directory, a symbolic link (never followed), unreadable, a pipe,
  not UTF-8 or holds a lone surrogate is the student's doing: 0 with a message that names the
  problem, and everyone else is graded.
* SIGINT: nothing queued is started, the running sandbox is stopped, the finished
  submissions are recorded, exit 130 with the command to resume.
"""
import json
import re
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograde.grader.grade import EXIT_INTERRUPTED, EXIT_NOT_GRADED, STATE_DIR, grade_assignment
from autograde.grader.rebuild import load_submission, rebuild, tamper_counts
from autograde.grader.sandbox import Limits
from test_grader import (ASSIGNMENT, FAST, _cells_by_id, env_with_venv, grade_rows, make_submission,
                         needs_reference, write_submissions)

pytestmark = needs_reference


def state_done(root: Path) -> dict:
    path = root / STATE_DIR / f"{ASSIGNMENT}.json"
    return json.loads(path.read_text())["done"] if path.exists() else {}


def gradebook_rows(root: Path) -> list:
    db = root / "gradebook.db"
    return grade_rows(db) if db.exists() else []


def course(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "autograde.cli", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=timeout)


# ----------------------------------------------------------------------------
# the grader's trouble: not graded, retry


@pytest.fixture
def full_tmpdir(tmp_path):
    """A TMPDIR with almost no space left: a 1 MB tmpfs filled but for two pages (a full one would
    not do: Python's tempfile checks that TMPDIR takes a small write and else falls back to /tmp)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs as a nearly full TMPDIR")
    target = tmp_path / "tmp"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "course-test-full", str(target)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        filler = os.open(target / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(filler, b"\0" * 4096)
        except OSError:
            os.ftruncate(filler, os.fstat(filler).st_size - 2 * 4096)
        finally:
            os.close(filler)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_full_disk_is_never_a_grade_and_a_rerun_grades(tmp_path, full_tmpdir):
    root = tmp_path / "class"
    write_submissions(root, {"ana": "full", "cho": "blank"})
    env = env_with_venv(TMPDIR=str(full_tmpdir), COURSE_GRADE_TIMEOUT="60")

    done = course("grade", ASSIGNMENT, "--root", str(root), "--workers", "1", env=env)
    assert done.returncode == EXIT_NOT_GRADED, done.stderr
    assert "Traceback" not in done.stderr
    assert "not graded" in done.stderr and "ana" in done.stderr and "cho" in done.stderr
    assert f"course grade {ASSIGNMENT} --root {root}" in done.stderr          # the command to run again
    assert state_done(root) == {}                                            # nothing marked done
    assert gradebook_rows(root) == []                                        # no score written

    done = course("grade", ASSIGNMENT, "--root", str(root), "--workers", "1",
                  env=env_with_venv(COURSE_GRADE_TIMEOUT="60"))
    assert done.returncode == 0, done.stderr
    state = state_done(root)
    assert set(state) == {"ana", "cho"}
    assert state["ana"]["score"] == state["ana"]["max_score"] > 0 and state["cho"]["score"] == 0
    assert "2 graded now" in done.stdout


def test_check_on_a_full_disk_is_one_error_line(full_tmpdir):
    notebook = Path(__file__).resolve().parent.parent / "solutions" / "en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    done = course("check", str(notebook), env=env_with_venv(TMPDIR=str(full_tmpdir)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "nothing was graded" in done.stderr and "Traceback" not in done.stderr


def test_a_sandbox_that_cannot_start_is_not_graded(tmp_path):
    """A memory limit too small to import torch: the worker dies before any student code runs."""
    write_submissions(tmp_path, {"ana": "full", "ben": "partial"})
    starved = Limits(timeout=30, call_timeout=5, memory=48 * 2**20)
    assert grade_assignment(ASSIGNMENT, workers=2, root=tmp_path, limits=starved, quiet=True) == EXIT_NOT_GRADED
    assert state_done(tmp_path) == {} and gradebook_rows(tmp_path) == []

    assert grade_assignment(ASSIGNMENT, workers=2, root=tmp_path, limits=FAST, quiet=True) == 0
    state = state_done(tmp_path)
    assert state["ana"]["score"] > state["ben"]["score"] > 0


# ----------------------------------------------------------------------------
# the student's doing: 0 with the reason, the class goes on


def unreadable_target(tmp_path: Path) -> Path:
    """A file whose read really fails: mode 000 for a normal user; as root (who may read anything
    of mode 000) a write-only kernel file, which refuses reads even to root."""
    if os.geteuid() != 0:
        path = tmp_path / "secret.ipynb"
        path.write_text("{}")
        path.chmod(0)
        return path
    for candidate in ("/proc/sys/vm/compact_memory", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"):
        try:
            open(candidate, "rb").read(1)
        except PermissionError:
            return Path(candidate)
        except OSError:
            continue
    pytest.skip("no file here refuses reads to root")


def test_unreadable_submissions_score_zero_with_the_reason_and_the_class_goes_on(tmp_path):
    root = tmp_path / "class"
    write_submissions(root, {"ana": "full"})
    folder = lambda student: (root / "submitted" / student / ASSIGNMENT).mkdir(parents=True) or \
        root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    folder("dir").mkdir()                                                   # a directory named .ipynb
    loop = folder("loop")
    loop.symlink_to(loop)                                                   # a symlink to itself
    locked = folder("locked")
    if os.geteuid() != 0:
        locked.write_text("{}")
        locked.chmod(0)
    else:                                   # root reads a mode-000 file: a link to what root cannot read
        locked.symlink_to(unreadable_target(tmp_path))
    os.mkfifo(folder("pipe"))                                               # reading it would block forever
    latin1 = make_submission("full")
    latin1["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "LATIN1_HERE"})
    folder("latin1").write_bytes(json.dumps(latin1).encode().replace(b"LATIN1_HERE", "café".encode("latin-1")))
    surrogate = make_submission("full")
    _cells_by_id(surrogate)["causal_mask"]["source"] = "x = '\ud800'\n"
    folder("surrogate").write_text(json.dumps(surrogate), encoding="ascii")   # \ud800 as a JSON escape

    assert grade_assignment(ASSIGNMENT, workers=2, root=root, limits=FAST, quiet=True) == 0
    state = state_done(root)
    assert set(state) == {"ana", "dir", "loop", "locked", "pipe", "latin1", "surrogate"}
    assert state["ana"]["score"] == state["ana"]["max_score"] > 0
    expected = {"dir": "is a directory", "loop": "is a symbolic link",
                "locked": "permission denied" if os.geteuid() != 0 else "is a symbolic link",
                "pipe": "not a regular file", "latin1": "not UTF-8", "surrogate": "lone surrogate"}
    for student, fragment in expected.items():
        entry = state[student]
        assert entry["score"] == 0 and entry["max_score"] == state["ana"]["max_score"], student
        assert fragment in entry["error"], (student, entry["error"])
    # recorded in the gradebook as 0 (the student's doing), and a re-run leaves them alone
    students = {row[0] for row in gradebook_rows(root)}
    assert students == set(state)
    assert grade_assignment(ASSIGNMENT, workers=1, root=root, limits=FAST, quiet=True) == 0
    assert state_done(root) == state


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.symlink_to(p), "is a symbolic link"),
    (lambda p: p.write_bytes(b'{"nbformat": 4, "cells": [], "x": "\xe9"}'), "not UTF-8"),
    (lambda p: p.write_text('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": '
                            '[{"cell_type": "code", "source": "\\ud800", "metadata": {}}]}'), "lone surrogate"),
])
def test_check_names_an_unreadable_notebook_in_one_line(tmp_path, make, fragment):
    path = tmp_path / f"{ASSIGNMENT}.ipynb"
    make(path)
    done = course("check", str(path), env=env_with_venv())
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert fragment in done.stderr and "Traceback" not in done.stderr


def test_ten_thousand_duplicated_cells_are_one_short_report(tmp_path):
    nb = make_submission("full")
    solution = next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    nb["cells"] += [json.loads(json.dumps(solution)) for _ in range(10_000)]
    path = tmp_path / f"{ASSIGNMENT}.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")

    loaded, raw = load_submission(path)
    tamper = rebuild(loaded, raw, path).tamper
    assert len(tamper) <= 4
    assert tamper_counts(tamper) == {"duplicated_cell": 10_000}

    done = course("check", str(path), env=env_with_venv(COURSE_GRADE_TIMEOUT="60"))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) < 20_000 and "(+9997 more)" in done.stdout
    assert done.stdout.count("duplicated_cell") == 1


# ----------------------------------------------------------------------------
# Ctrl-C


SLEEPER = "import time\ntime.sleep(3600)\n"


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default action. A suite started as a background job
    of a non-interactive shell (`bash .ci/run &`, a CI runner) has SIGINT ignored, every process it
    starts inherits that, and a Python started with SIGINT ignored keeps ignoring it: Ctrl-C would
    never reach `course grade` (this test hung for 120 s in 2 of 3 such runs on 2026-12-07)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_stops_the_queue_records_what_finished_and_resumes(tmp_path, stop):
    """Ctrl-C, and SIGTERM (`kill`, `timeout`, a CI job's end) the same way."""
    root = tmp_path / "class"
    write_submissions(root, {"a_first": "full", "b_sleeper": "full", "c_queued": "partial", "d_queued": "blank"})
    sleeper = root / "submitted" / "b_sleeper" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = json.loads(sleeper.read_text())
    original = "".join(_cells_by_id(nb)["causal_mask"]["source"])
    _cells_by_id(nb)["causal_mask"]["source"] = SLEEPER + original
    sleeper.write_text(json.dumps(nb))
    sandbox_tmp = tmp_path / "sandboxes"
    sandbox_tmp.mkdir()
    env = env_with_venv(COURSE_GRADE_TIMEOUT="3000", COURSE_GRADE_CALL_TIMEOUT="3000", TMPDIR=str(sandbox_tmp),
                        PYTHONFAULTHANDLER="1")      # a hang below dumps every thread's stack (SIGABRT)
    proc = subprocess.Popen([sys.executable, "-m", "autograde.cli", "grade", ASSIGNMENT, "--root", str(root),
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 300                # a_first graded: b_sleeper is running now
        while "a_first" not in state_done(root):
            assert proc.poll() is None and time.monotonic() < deadline, "a_first was never graded"
            time.sleep(0.5)
        proc.send_signal(stop)
        # the sleeper's sandbox would run for an hour, and two more wait in the queue: only
        # stopping them ends the process (the guard is far above a few seconds, far below an hour)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"course grade did not exit within 120 s of {stop.name}; its threads:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert "1 submission(s) graded and recorded" in err
    assert f"resume with: course grade {ASSIGNMENT} --root {root} --workers 1" in err
    first = state_done(root)
    assert set(first) == {"a_first"}
    assert {row[0] for row in gradebook_rows(root)} == {"a_first"}
    assert not _processes_mentioning(str(sandbox_tmp)), "a sandbox outlived the interrupted run"
    if stop == signal.SIGTERM:          # the resume below is the same after either signal
        return

    _cells_by_id(nb)["causal_mask"]["source"] = original
    sleeper.write_text(json.dumps(nb))
    done = course("grade", ASSIGNMENT, "--root", str(root), "--workers", "2", env=env_with_venv(COURSE_GRADE_TIMEOUT="60"))
    assert done.returncode == 0, done.stderr
    state = state_done(root)
    assert set(state) == {"a_first", "b_sleeper", "c_queued", "d_queued"}
    assert state["a_first"] == first["a_first"]                              # not graded twice
    assert state["b_sleeper"]["score"] == state["a_first"]["score"] > state["c_queued"]["score"] > 0
    assert "3 graded now, 1 already done" in done.stdout


def _processes_mentioning(text: str, wait_s: float = 10.0) -> list[str]:
    """Command lines of live processes that name `text` (killed ones may take a moment to vanish)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if text in cmdline and state != "Z":
                found.append(cmdline)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_summarys_error_column_is_english_and_names_failed_cells():
    """The instructor's table (English) shows the English half of a message given in both languages,
    the answer cells that failed when the submission itself was readable, and cuts long text visibly."""
    from autograde.checks.messages import both
    from autograde.grader.grade import _error_column

    import autograde.grader.grade  # noqa: F401  (registers the grader's messages)

    bilingual = both("submission_folder_not_utf8", name="b'\\xff'")
    assert re.search(r"[\uac00-\ud7a3]", bilingual)
    column = _error_column({"error": bilingual})
    assert column and not re.search(r"[\uac00-\ud7a3]", column), column
    cells = _error_column({"error": None, "cell_errors": [{"cell": "greedy", "error": "SyntaxError: expected ':'"}]})
    assert cells == "cell greedy: SyntaxError: expected ':'"
    long = _error_column({"error": "x" * 500})
    assert len(long) == 100 and long.endswith("…")
    assert _error_column({"error": None}) == ""


def test_the_summary_prints_names_and_errors_as_they_are(capsys):
    """A folder name or a student's exception text that looks like rich markup ("[/]" once crashed the
    table after every grade was recorded) is printed as it is; the title is a line of its own."""
    from autograde.grader.grade import Outcome, _print_summary

    outcome = Outcome()
    outcome.results = {"[/]": {}, "[bold]x": {}}
    state = {"done": {"[/]": {"score": 3, "max_score": 9, "cell_errors": [{"cell": "causal_mask",
                                                                         "error": "ValueError: [/red] [link=x]"}]},
                      "[bold]x": {"score": 9, "max_score": 9, "late_penalty": 9.0}}}
    _print_summary("03_attention", {"[/]": None, "[bold]x": None}, {"[/]": None, "[bold]x": None}, outcome, state,
                   "namespaces")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "03_attention: 2 graded now, 0 already done (sandbox: namespaces)"
    for text in ("[/]", "[bold]x", "[/red]", "[link=x]", "9 / 9 (late: -9)"):
        assert text in " ".join(out.split()), (text, out)


def test_sigterm_before_grading_starts_is_an_interruption_too(tmp_path):
    """SIGTERM while `course grade` still starts (imports, the gradebook) ends it as Ctrl-C would:
    one line, exit 130, no traceback (it used to die with -15 before its handler was set)."""
    root = tmp_path / "class"
    write_submissions(root, {"a_first": "full"})
    proc = subprocess.Popen([sys.executable, "-m", "autograde.cli", "grade", ASSIGNMENT, "--root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_venv())
    deadline = time.monotonic() + 60
    while not _catches(proc.pid, signal.SIGTERM):        # its handler is set: main() has begun
        assert proc.poll() is None and time.monotonic() < deadline, "course grade never set a SIGTERM handler"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, (proc.returncode, err[-500:])
    assert "Traceback" not in err and "interrupted" in err


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process `pid` has a handler for `sig` (the SigCgt mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_release_and_grade_never_overlap_and_say_who_holds_the_course(tmp_path):
    """`course release` replaces the gradebook with a new file: grades written meanwhile would be
    lost, so it never runs beside `course grade`; nor do two runs of the same assignment. The one
    that comes second stops at once, changes nothing, and says what holds the course."""
    from autograde import courselock

    root = tmp_path / "class"
    write_submissions(root, {"ana": "full"})
    before = sorted(p.relative_to(root) for p in root.rglob("*"))

    with courselock.grading(root, ASSIGNMENT):           # as `course grade` holds them while it runs
        release = course("release", ASSIGNMENT, "--root", str(root))
        again = course("grade", ASSIGNMENT, "--root", str(root))
        with courselock.grading(root, "04_ffn"):         # another assignment may be graded beside it
            pass
    assert release.returncode == 2 and "a `course grade` (or another `course release`) is working on the course" \
        in release.stderr and "Traceback" not in release.stderr, release.stderr
    assert again.returncode == 2, again.stderr
    assert f"`course grade {ASSIGNMENT}` is already running on the course at {root} (pid {os.getpid()}: course " \
           f"grade {ASSIGNMENT})" in again.stderr, again.stderr

    with courselock.releasing(root):
        grade = course("grade", ASSIGNMENT, "--root", str(root))
    assert grade.returncode == 2 and "`course release` is changing the course" in grade.stderr, grade.stderr

    locks = {Path(courselock.COURSE_LOCK), Path(STATE_DIR), Path(STATE_DIR) / f"{ASSIGNMENT}.lock",
             Path(STATE_DIR) / "04_ffn.lock"}
    assert sorted(p.relative_to(root) for p in root.rglob("*") if p.relative_to(root) not in locks) == before
    assert not (root / "gradebook.db").exists()

    with courselock.grading(root, ASSIGNMENT):           # a lock is free again once its holder ended
        pass
