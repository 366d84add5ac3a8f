"""Fault injection against the sandbox (autograde/grader/sandbox.py): a grader killed at a random
moment, two graders with different TMPDIRs, memory and fork bombs spread over processes, a notebook
that blocks SIGALRM, writes to the host's scratch places, a daemon in plain mode, a notebook
directly in /tmp. Each test names the fault it injects; none asserts how long anything took.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from autograde.grader import sandbox
from autograde.grader.sandbox import Limits, run_worker, sandbox_mode
from test_grader import REFERENCE, make_submission

REPO = Path(__file__).resolve().parent.parent
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox uids, cgroups and namespaces need root")
namespaces_only = pytest.mark.skipif(os.geteuid() != 0 or sandbox_mode() != "namespaces",
                                     reason="the namespaces sandbox is not available here (needs root, util-linux)")
cgroups_only = pytest.mark.skipif(not sandbox.cgroup_parents()[0],
                                  reason="no writable cgroup (v2 memory+pids or v1 memory, pids) here")
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="the reference model is not trained yet")


def make_job(cells: list[str], call_timeout: float = 0) -> Path:
    """A sandbox directory as the pipeline makes it (mkdtemp in TMPDIR) with a job of plain cells."""
    directory = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
    (directory / "out").mkdir()
    job = {"cells": [{"id": f"c{i}", "kind": "solution", "source": s} for i, s in enumerate(cells)],
           "steps": [], "skip_cells": [], "skip_steps": [], "start_step": 0, "call_timeout": call_timeout,
           "reference": False}
    (directory / "job.json").write_text(json.dumps(job), encoding="utf-8")
    return directory


def run_job(cells: list[str], limits: Limits) -> tuple[sandbox.RunResult, list[dict]]:
    """Run the cells in a sandbox: its result and the worker's progress events."""
    directory = make_job(cells, limits.call_timeout)
    try:
        result = run_worker(directory, ["out/progress.jsonl"], limits)
        events = [json.loads(line) for line in (directory / "out" / "progress.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result, events


def processes_with(token: str) -> list[int]:
    """Live (not zombie) processes whose command line contains token."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until(condition, seconds: float = 20.0) -> bool:
    """Poll a condition (not a timing assertion: a bound so that a failure ends)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def spawner(token: str) -> str:
    """A cell that leaves a child and a double-forked daemon (both `sleep TOKEN`), then sleeps."""
    return ("import os, subprocess, time\n"
            f"subprocess.Popen(['sleep', '{token}'])\n"
            "if os.fork() == 0:\n    os.setsid()\n"
            f"    subprocess.Popen(['sleep', '{token}'])\n    os._exit(0)\n"
            "print('UID', os.getuid(), flush=True)\n"
            "time.sleep(120)\n")


# ----------------------------------------------------------------------------
# lifetime: a killed grader, stop_all


DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from autograde.grader.sandbox import Limits, run_worker
print("ready", flush=True)
run_worker(Path({directory!r}), ["out/progress.jsonl"], Limits(timeout=100, call_timeout=0))
"""


@pytest.mark.parametrize("mode,cgroups", [("namespaces", "on"), ("plain", "on"), ("plain", "off")])
@root_only
def test_a_grader_killed_by_sigkill_leaves_no_process_and_no_directory(mode, cgroups):
    if mode == "namespaces" and sandbox_mode() != "namespaces":
        pytest.skip("the namespaces sandbox is not available here")
    token = f"{random.randint(4000, 8999)}.{random.randint(10**6, 10**7)}"
    directory = make_job([spawner(token)])
    env = dict(os.environ, **({"COURSE_SANDBOX": "plain"} if mode == "plain" else {}),
               **({"COURSE_SANDBOX_CGROUPS": "off"} if cgroups == "off" else {}))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(tests=str(REPO / "tests"),
                                                                   directory=str(directory))], env=env)
    progress = directory / "out" / "progress.jsonl"
    assert wait_until(lambda: progress.exists() and b'"cell": 0, "phase": "start"' in progress.read_bytes()
                      and len(processes_with(token)) == 2, 60)
    mode_bits = directory.stat().st_mode
    assert mode_bits & 0o007 == 0, oct(mode_bits)              # nobody else may read the inputs
    time.sleep(random.uniform(0, 1.0))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    if mode == "namespaces":                                  # dies with the grader, daemon included
        assert wait_until(lambda: not processes_with(token)), processes_with(token)
    assert directory.exists()
    # the next start removes what the dead grader left (its directory; in plain mode its daemon too)
    done = subprocess.run([sys.executable, "-c", "from autograde.grader.sandbox import clean_stale; "
                           "print(clean_stale())"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not directory.exists()
    assert wait_until(lambda: not processes_with(token)), processes_with(token)


@root_only
def test_stop_all_kills_the_running_sandboxes():
    token = f"{random.randint(4000, 8999)}.{random.randint(10**6, 10**7)}"
    results = []
    directory = make_job([spawner(token)])
    thread = threading.Thread(target=lambda: results.append(
        run_worker(directory, ["out/progress.jsonl"], Limits(timeout=100, call_timeout=0))))
    thread.start()
    assert wait_until(lambda: len(processes_with(token)) == 2, 60)
    try:
        assert sandbox.stop_all() == 1
        thread.join(30)
        assert not thread.is_alive() and results[0].returncode != 0 and not results[0].timed_out
        assert not processes_with(token)
        # a restart (the pipeline's, after a killed run) starts nothing while the grader stops
        again = run_worker(directory, ["out/progress.jsonl"], Limits(timeout=100, call_timeout=0))
        assert again.limit == "stopped" and not processes_with(token)
        assert sandbox.stop_all() == 0
    finally:
        sandbox.allow_new()
        shutil.rmtree(directory)


# ----------------------------------------------------------------------------
# two graders at once


TAKE_A_UID = ("import sys, time; from autograde.grader.sandbox import UIDS; print(UIDS.take(), flush=True); "
              "sys.stdin.read()")


@root_only
def test_graders_with_different_tmpdirs_never_share_a_uid(tmp_path):
    holders = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        holders.append(subprocess.Popen([sys.executable, "-c", TAKE_A_UID], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True,
                                        env=dict(os.environ, TMPDIR=str(tmp_path / name))))
    uids = [int(h.stdout.readline()) for h in holders]
    for h in holders:
        h.communicate("")
    assert uids[0] != uids[1]


@needs_reference
@root_only
def test_two_concurrent_checks_with_different_tmpdirs_both_score_full(tmp_path):
    checks = []
    for name in ("a", "b"):
        (tmp_path / name / "tmp").mkdir(parents=True)
        path = tmp_path / name / "03_attention.ipynb"
        path.write_text(json.dumps(make_submission("full")), encoding="utf-8")
        checks.append(subprocess.Popen([sys.executable, "-m", "autograde.cli", "check", str(path), "--json"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=dict(os.environ, TMPDIR=str(tmp_path / name / "tmp"))))
    for check in checks:
        out, err = check.communicate(timeout=300)
        result = json.loads(out)
        assert result["score"] == result["max_score"] > 0, (result["output"], err[-2000:])


# ----------------------------------------------------------------------------
# limits for the whole sandbox


MEMORY_BOMB = """
import os, time
children = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(300 * 2**20)
        for j in range(0, len(block), 4096):
            block[j] = 1
        time.sleep(2)
        os._exit(0)
    children.append(pid)
print("STATUS", [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in children], flush=True)
"""


@cgroups_only
def test_memory_spread_over_six_children_is_limited_for_the_whole_sandbox():
    """6 x 300 MB in a sandbox of 1200 MB: each child fits the per-process limit, together they do not."""
    result, events = run_job([MEMORY_BOMB], Limits(timeout=60, call_timeout=0, memory=1200 * 2**20))
    statuses = [line for line in result.output.splitlines() if line.startswith("STATUS")]
    # either the OOM killer took some children (-9), or the worker itself
    assert not statuses or -signal.SIGKILL in json.loads(statuses[0][len("STATUS "):]), result.output
    assert statuses or result.limit == "memory", (result.output, result.limit)


FORK_BOMB = """
import os, time
n = 0
for i in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    n += 1
print("FORKED", n, flush=True)
"""


@pytest.mark.parametrize("mode", ["namespaces", "plain"])
@root_only
def test_a_fork_bomb_stops_at_the_sandbox_process_limit(mode, monkeypatch):
    if mode == "namespaces" and sandbox_mode() != "namespaces":
        pytest.skip("the namespaces sandbox is not available here")
    monkeypatch.setattr(sandbox, "sandbox_mode", lambda: mode)
    result, _ = run_job([FORK_BOMB], Limits(timeout=60, call_timeout=0, processes=40))
    forked = [int(line.split()[1]) for line in result.output.splitlines() if line.startswith("FORKED")]
    assert forked and forked[0] < 40, result.output


# ----------------------------------------------------------------------------
# two sandboxes at once: no shared IPC, no CPU taken from a neighbour


IPC = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
mq_open = getattr(libc, 'mq_open', None) or ctypes.CDLL('librt.so.1', use_errno=True).mq_open
KEY, NAME = {key}, b'/{name}'
"""
# creates a SysV segment (keyed, and a private one of a size of its own), queue and semaphore set and
# a POSIX queue, says so in its progress file (the one file of the host it may write), then spins
HOG = IPC + """
import json, time
made = [libc.shmget(KEY, 1 << 20, 0o1600), libc.shmget(0, {size}, 0o1600), libc.msgget(KEY, 0o1600),
        libc.semget(KEY, 1, 0o1600), mq_open(NAME, os.O_CREAT | os.O_RDWR, 0o600, None)]
print('MADE', made, flush=True)
with open('../out/progress.jsonl', 'a') as f:
    f.write(json.dumps({{'ipc_ready': min(made) >= 0}}) + '\\n')
for _ in range({spinners}):
    if os.fork() == 0:
        while True:
            pass
time.sleep(120)
"""
# looks for them, then computes for one second of its own CPU time within a call limit of 2 s
PROBE_IPC = IPC + """
import json, time
found = {{'shm': libc.shmget(KEY, 0, 0), 'msg': libc.msgget(KEY, 0), 'sem': libc.semget(KEY, 0, 0),
         'mq': mq_open(NAME, os.O_RDONLY, 0, None), 'mqueue': os.listdir('/dev/mqueue'),
         'sysvipc': [len(open('/proc/sysvipc/' + k).read().splitlines()) - 1 for k in ('shm', 'msg', 'sem')]}}
print('FOUND', json.dumps(found), flush=True)
start = time.process_time()
while time.process_time() - start < 1.0:
    pass
print('COMPUTED', flush=True)
"""


def host_ipc() -> dict:
    """The host's SysV objects (key and size of each segment, keys of queues and semaphore sets)."""
    found = {}
    for kind in ("shm", "msg", "sem"):
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        found[kind] = [tuple(int(x) for x in line.split()[:4]) for line in lines]
    return found


def host_has_mq(name: str) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    mq_open = getattr(libc, "mq_open", None) or ctypes.CDLL("librt.so.1", use_errno=True).mq_open
    fd = mq_open(f"/{name}".encode(), os.O_RDONLY, 0, None)
    if fd >= 0:
        os.close(fd)
    return fd >= 0


@cgroups_only
@namespaces_only
def test_two_sandboxes_share_no_ipc_and_a_spinning_neighbour_costs_the_other_nothing():
    """One sandbox makes SysV and POSIX IPC objects and spins 40 processes; the other, started beside
    it, sees none of them and finishes its computation inside its call limit (its own CPU time is
    what counts, and the spinner gets no more than its CPU share); the host never sees the objects."""
    key, name, size = random.randint(10**6, 10**9), f"course-test-{random.randint(10**6, 10**9)}", 4096 * 777
    before = host_ipc()           # what other programs (or an earlier run without namespaces) left there
    hog_dir = make_job([HOG.format(key=key, name=name, size=size, spinners=40)])
    results = {}
    hog = threading.Thread(target=lambda: results.setdefault("hog", run_worker(
        hog_dir, ["out/progress.jsonl"], Limits(timeout=60, call_timeout=0))))
    hog.start()
    try:
        progress = hog_dir / "out" / "progress.jsonl"
        assert wait_until(lambda: progress.exists() and '"ipc_ready": true' in progress.read_text(), 120)
        during = host_ipc()
        results["probe"], _ = run_job([PROBE_IPC.format(key=key, name=name)], Limits(timeout=60, call_timeout=2))
    finally:
        sandbox.stop_all()
        hog.join()
        sandbox.allow_new()
        shutil.rmtree(hog_dir)
    assert "MADE" in results["hog"].output, results["hog"].output
    probe = results["probe"]
    assert not probe.timed_out and "COMPUTED" in probe.output, (probe.output, probe.limit)
    found = json.loads(next(line for line in probe.output.splitlines() if line.startswith("FOUND "))[6:])
    assert found == {"shm": -1, "msg": -1, "sem": -1, "mq": -1, "mqueue": [], "sysvipc": [0, 0, 0]}, found
    for seen in (during, host_ipc()):
        new = {kind: [e for e in entries if e not in before[kind]] for kind, entries in seen.items()}
        assert not any(entry[0] == key for entries in new.values() for entry in entries), new
        assert not any(entry[3] == size for entry in new["shm"]), new["shm"]
    assert not host_has_mq(name)


def test_the_call_limit_counts_cpu_time_and_wall_time_is_a_backstop():
    """A cell that sleeps past its limit of 1 s (but computes nothing) is not stopped; one that
    sleeps on ends at WALL_FACTOR times the limit, as a time limit."""
    from autograde.grader import WALL_FACTOR

    result, events = run_job(["import time\ntime.sleep(1.5)\nprint('WOKE', flush=True)\n",
                              "import time\ntime.sleep(600)\n"], Limits(timeout=120, call_timeout=1))
    ends = {e["cell"]: e for e in events if e.get("phase") == "end"}
    assert "WOKE" in result.output and ends[0]["error"] is None, (result.output, events)
    assert ends[1]["error"].startswith("CallTimeout"), events
    assert WALL_FACTOR * 1 < 600


@cgroups_only
def test_the_sandbox_cgroup_caps_its_cpu_and_counts_its_cpu_time():
    cgroup = sandbox._Cgroup.create(None, Limits(cpus=0.5))
    assert cgroup is not None
    try:
        if cgroup.version == "v2":
            quota = (cgroup.dirs[0] / "cpu.max").read_text().split()
            assert quota == ["50000", "100000"]
        else:
            assert "cpu" in cgroup.by_controller, "no cpu controller to cap the sandbox with"
            assert (cgroup.by_controller["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert cgroup.cpu_seconds() == 0.0
    finally:
        cgroup.remove()


# ----------------------------------------------------------------------------
# time limits from outside


# the worker's own timers: SIGPROF (CPU time) and SIGALRM (the wall-time backstop)
BLOCK_ALARM = ("import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM, signal.SIGPROF])\n"
               "while True:\n    pass\n")
IGNORE_ALARM = ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass\n")


@pytest.mark.parametrize("cell", [BLOCK_ALARM, IGNORE_ALARM], ids=["blocked", "ignored"])
def test_a_cell_that_defeats_sigalrm_is_stopped_by_the_parent(cell):
    result, events = run_job([cell], Limits(timeout=120, call_timeout=2))
    assert result.timed_out and result.limit == "call" and result.limit_seconds == 2
    assert {"cell": 0, "phase": "start"}.items() <= events[-1].items()


@needs_reference
def test_a_function_that_blocks_sigalrm_fails_its_step_with_a_timeout(tmp_path):
    from autograde.grader.pipeline import grade_notebook

    nb = make_submission("full")
    cell = next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "causal_mask")
    cell["source"] = ("import signal\ndef causal_mask(T):\n"
                      "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM, signal.SIGPROF])\n"
                      "    while True:\n        pass\n")
    path = tmp_path / "03_attention.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    # the static pass refuses `import signal` before anything runs: turned off here, to show the sandbox alone
    result = grade_notebook(path, Limits(timeout=120, call_timeout=3), refuse_escapes=False)
    tests = {t["name"]: t for t in result["tests"]}
    assert tests["check_causal_mask"]["score"] == 0
    # the mask's steps, and multi_head's that calls the mask (said as "its dependency failed"), are
    # timeouts (not crashes); the rest pass
    keys = {s["params"].get("detail_key") if s["key"] == "dependency_failed" else s["key"]
            for t in tests.values() for s in t["steps"] if not s["passed"]}
    assert keys == {"timeout"}, keys
    assert all(tests[name]["status"] == "passed" for name in ("check_softmax", "check_sdpa", "check_rope"))


# ----------------------------------------------------------------------------
# the file system


@needs_reference
@namespaces_only
def test_a_notebook_directly_in_tmp_grades_normally():
    from autograde.grader.pipeline import grade_notebook

    fd, name = tempfile.mkstemp(suffix=".ipynb", dir="/tmp")
    try:
        os.write(fd, json.dumps(make_submission("full")).encode())
        os.close(fd)
        result = grade_notebook(Path(name), Limits(timeout=60, call_timeout=10))
    finally:
        os.unlink(name)
    assert result["score"] == result["max_score"] > 0, result["output"]


SCRATCH_WRITER = """
import os
token = {token!r}
for place in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/run/shm"):
    try:
        with open(os.path.join(place, token), "w") as f:
            f.write("x")
        print("WROTE", place, flush=True)
    except OSError as exc:
        print("REFUSED", place, type(exc).__name__, flush=True)
written = 0
try:
    for place in ("/tmp", "/dev/shm", "/var/tmp", "."):
        for i in range(8):
            with open(os.path.join(place, f"{{token}}-{{i}}"), "wb") as f:
                f.write(b"y" * (48 * 2**20))
            written += 48
except OSError as exc:
    print("FULL", type(exc).__name__, exc.errno, flush=True)
print("WRITTEN_MB", written, flush=True)
"""


@namespaces_only
def test_writes_to_the_hosts_scratch_places_stay_in_the_sandbox_and_share_one_quota():
    token = f"course-fault-{random.randint(10**8, 10**9)}"
    limits = Limits(timeout=60, call_timeout=0, disk=200 * 2**20)
    result, _ = run_job([SCRATCH_WRITER.format(token=token)], limits)
    assert "WROTE /tmp" in result.output and "WROTE /run/lock" in result.output, result.output
    for place in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        assert not any(p.name.startswith(token) for p in Path(place).iterdir()), place
    written = [int(line.split()[1]) for line in result.output.splitlines() if line.startswith("WRITTEN_MB")]
    assert "FULL" in result.output and written and written[0] <= 200, result.output


def test_a_project_under_tmp_stays_visible_while_tmp_is_a_scratch_part(tmp_path, monkeypatch):
    """/tmp in the sandbox is its own scratch part; a venv, the package and the sandbox directory
    under /tmp are bound into it afterwards (parents first), the rest of the project is not there."""
    needed = [tmp_path / "proj" / ".venv", tmp_path / "proj" / "autograde", tmp_path / "course-sandbox-x"]
    for path in needed:
        path.mkdir(parents=True)
    (tmp_path / "proj" / "solutions").mkdir()
    monkeypatch.setattr(sandbox, "_needed", lambda directory: needed)
    plan = sandbox.mount_plan(needed[2], [tmp_path / "proj"])
    kinds = {path: kind for kind, path, _ in plan}
    order = [path for _, path, _ in plan]
    tmp = Path("/tmp").resolve()
    assert kinds[tmp] == "scratch" and kinds[needed[0]] == kinds[needed[1]] == "ro" and kinds[needed[2]] == "rw"
    assert all(order.index(tmp) < order.index(p) for p in needed)
    assert not any(p == tmp_path / "proj" or tmp_path / "proj" / "solutions" in (p, *p.parents) for p in kinds)
    for place in ("/var/tmp", "/dev/shm"):
        assert kinds[Path(place).resolve()] == "scratch"


def test_the_sandbox_root_is_an_allow_list():
    """Nothing of the machine is in the plan but the system folders, a few files of /etc and /dev, the
    interpreter's folders, the package and the job; the checkout itself (on sys.path through an
    editable install) gives only the package, and a folder that a .pth file chains to is there."""
    directory = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
    try:
        plan = sandbox.mount_plan(directory, [])
    finally:
        shutil.rmtree(directory)
    shown = [path for kind, path, _ in plan if kind in ("ro", "rw", "copy", "scratch")]
    assert REPO not in shown and (REPO / "autograde").resolve() in shown
    allowed = {Path(p).resolve() for p in (*sandbox.SYSTEM_DIRS, *sandbox.SYSTEM_SYS, "/etc", "/dev", "/tmp",
                                           "/var/tmp", "/run/lock", sys.prefix, sys.base_prefix)}
    allowed |= {Path(p) for p in sandbox.shown_paths()} | {directory.resolve()}
    assert all(any(a == p or a in p.parents for a in allowed) for p in shown), shown
    chained = [Path(p).resolve() for p in sandbox._interpreter_path()[0] if Path(p).is_dir()]
    assert all(any(s == c or s in c.parents for s in shown) or c == REPO.resolve() for c in chained)
    hidden = {path for kind, path, _ in plan if kind == "hide"}
    assert (REPO / "autograde" / "checks" / "steps").resolve() in hidden


# the checkout's own files, and places outside what the sandbox shows
OUTSIDE = ["README.md", "tasks.py", "nbgrader_config.py", "pyproject.toml", "solutions", "tests", ".git"]
LOOK_AROUND = """
import json, os
def seen(path):
    try:
        return sorted(os.listdir(path)) if os.path.isdir(path) else len(open(path, 'rb').read(10))
    except OSError as exc:
        return type(exc).__name__
print("SEEN", json.dumps({p: seen(p) for p in PATHS}), flush=True)
"""


@namespaces_only
def test_the_checkout_and_the_machine_are_not_in_the_sandbox():
    paths = [str(REPO / name) for name in OUTSIDE] + ["/", "/home", "/root", "/etc/shadow", "/var/log", "/opt"]
    result, _ = run_job([LOOK_AROUND.replace("PATHS", repr(paths))], Limits(timeout=60, call_timeout=0))
    seen = json.loads(next(line for line in result.output.splitlines() if line.startswith("SEEN "))[5:])
    for name in OUTSIDE + ["/home", "/etc/shadow", "/var/log", "/opt"]:
        assert seen[str(REPO / name) if not name.startswith("/") else name] == "FileNotFoundError", (name, seen)
    assert set(seen["/"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "sys",
                              "tmp", "usr", "var", *(Path(p).parts[1] for p in sandbox.shown_paths())}, seen["/"]
    root_home = {Path(p).parts[2] for p in sandbox.shown_paths() if Path(p).parts[1:2] == ("root",)}
    assert seen["/root"] == "FileNotFoundError" or set(seen["/root"]) <= root_home, seen["/root"]


# ----------------------------------------------------------------------------
# plain mode


@root_only
def test_plain_mode_as_root_runs_as_a_sandbox_uid_and_leaves_no_daemon(monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_mode", lambda: "plain")
    token = f"{random.randint(4000, 8999)}.{random.randint(10**6, 10**7)}"
    cell = spawner(token).replace("time.sleep(120)\n", "")
    result, _ = run_job([cell], Limits(timeout=60, call_timeout=0))
    uid = [int(line.split()[1]) for line in result.output.splitlines() if line.startswith("UID")]
    assert uid and uid[0] >= sandbox.FIRST_UID, result.output
    assert wait_until(lambda: not processes_with(token)), processes_with(token)
