"""The warm start (autograde/grader/warm.py): a sandbox forked from a zygote that imported torch
is isolated exactly like one started cold, grades the same, and leaves nothing of one job to the
next. Each test compares with the cold start (COURSE_SANDBOX_WARM=off) where a comparison applies;
none asserts how long anything took.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograde.grader import sandbox, warm
from autograde.grader.sandbox import Limits, run_worker, sandbox_mode
from test_grader import REFERENCE, make_submission
from test_sandbox_faults import make_job, processes_with, run_job, wait_until

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or sandbox_mode() != "namespaces",
                                reason="the warm start serves the namespaces sandbox (needs root, util-linux)")

# Everything a sandbox can learn about its own isolation, printed as one JSON line.
PROBE = r"""
import json, os, resource, socket as _s
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
def readable(path):
    try:
        return sorted(os.listdir(path))[:3] if os.path.isdir(path) else len(open(path, 'rb').read(10))
    except OSError as exc:
        return type(exc).__name__
def network():
    import _socket
    try:
        sock = _socket.socket(_s.AF_INET, _s.SOCK_STREAM)
        sock.settimeout(1)
        sock.connect(('1.1.1.1', 53))
        return 'connected'
    except Exception as exc:
        return type(exc).__name__
facts = {
    'uid': os.getresuid(), 'gid': os.getresgid(), 'groups': os.getgroups(), 'pid': os.getpid(),
    'caps': {k: status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')},
    'no_new_privs': status['NoNewPrivs'].strip(), 'seccomp': status.get('Seccomp', '').strip(),
    'processes': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    'interfaces': sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]), 'network': network(),
    'hidden': {h: readable(h) for h in HIDDEN},
    'tmp_quota': os.statvfs('/tmp').f_blocks * os.statvfs('/tmp').f_frsize,
    'same_quota': os.stat('/tmp').st_dev == os.stat('.').st_dev,
    'cgroup': open('/proc/self/cgroup').read().count('course-sandbox-'),
    'rlimits': {n: resource.getrlimit(getattr(resource, n)) for n in
                ('RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE', 'RLIMIT_NPROC', 'RLIMIT_CORE')},
    'env': sorted(os.environ), 'cwd_is_work': os.getcwd().endswith('/work'),
    'umask': os.umask(0o22), 'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')),
    'sid_is_outside': os.getsid(0) == 0, 'parent': os.getppid(),
    'main': __import__('__main__').__name__,
    'proc_owner': os.stat('/proc/self/fd').st_uid == os.getuid(),
}
print('FACTS', json.dumps(facts, sort_keys=True), flush=True)
"""


def probe_cell() -> str:
    hidden = [str(REPO / h) for h in ("solutions", "autograde/reference", "autograde/checks/steps", "tests")]
    return PROBE.replace("HIDDEN", repr(hidden))


def facts(result) -> dict:
    line = next(x for x in result.output.splitlines() if x.startswith("FACTS "))
    return json.loads(line[len("FACTS "):])


@pytest.fixture
def cold(monkeypatch):
    """Switch the warm start off for the block: `with cold(): ...`."""
    import contextlib

    @contextlib.contextmanager
    def switch():
        monkeypatch.setenv(warm.ENV_SWITCH, "off")
        try:
            yield
        finally:
            monkeypatch.delenv(warm.ENV_SWITCH)
    return switch


def zygote() -> warm.Client:
    client = sandbox._warm_client()
    assert client is not None, "the zygote did not start"
    return client


# ----------------------------------------------------------------------------
# isolation: the same as the cold start


def test_a_warm_sandbox_is_isolated_exactly_like_a_cold_one(cold):
    limits = Limits(timeout=60, call_timeout=0)
    warm_run, _ = run_job([probe_cell()], limits)
    with cold():
        cold_run, _ = run_job([probe_cell()], limits)
    assert warm_run.extra.get("start") == "warm" and cold_run.extra.get("start") != "warm"
    hot, ref = facts(warm_run), facts(cold_run)
    assert hot == ref
    # and what that isolation is
    pool = range(sandbox.FIRST_UID, sandbox.FIRST_UID + sandbox._UidPool.SIZE)
    assert all(u in pool for u in hot["uid"] + hot["gid"]) and hot["groups"] == []
    assert set(hot["caps"].values()) == {"0000000000000000"} and hot["no_new_privs"] == "1"
    assert hot["pid"] == 1 and hot["processes"] == [1] and hot["parent"] == 0
    assert hot["interfaces"] == ["lo"] and hot["network"] != "connected"
    assert all(isinstance(v, str) or v == [] for v in hot["hidden"].values()), hot["hidden"]
    assert hot["tmp_quota"] == limits.disk and hot["same_quota"] and hot["cwd_is_work"]
    assert hot["cgroup"] == len(sandbox.cgroup_parents()[1])           # v2: one, v1: memory and pids
    assert hot["rlimits"]["RLIMIT_AS"] == [limits.memory] * 2
    assert hot["rlimits"]["RLIMIT_NPROC"] == [limits.processes] * 2
    assert hot["env"] == sorted(sandbox.child_env(Path("/w"))) and hot["fds"][:3] == [0, 1, 2]
    assert hot["main"] == "__main__" and hot["proc_owner"]


def test_the_zygote_has_one_thread_and_nothing_from_a_hidden_path():
    pid = zygote().proc.pid
    assert len(os.listdir(f"/proc/{pid}/task")) == 1             # no torch thread pool before a fork
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libtorch" in maps                                     # torch is imported ...
    hidden = [str(p) for p in sandbox.hidden_paths()]
    assert not [line for line in maps.splitlines() if any(h in line for h in hidden)]
    opened = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [o for o in opened if any(o.startswith(h) for h in hidden)]


def test_the_zygote_refuses_to_read_outside_the_interpreter_and_the_package(tmp_path):
    guard = warm._ReadGuard(warm._allowed_roots(), [str(REPO / "solutions")])
    secret = tmp_path / "secret"
    for path in (secret, REPO / "solutions" / "src", REPO / "README.md"):
        with pytest.raises(PermissionError):
            guard("open", (str(path), "r", 0))
    guard("open", (str(REPO / "autograde" / "protocol.py"), "r", 0))      # the package: allowed
    guard("open", (sys.executable, "rb", 0))
    guard.armed = False                                                    # a fork disarms it
    guard("open", (str(secret), "r", 0))


def _anonymous_memory(pid: int) -> bytes:
    """The zygote's writable private memory (heap and anonymous maps: where any data it had would be)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if fields[1].startswith("rw") and (len(fields) < 6 or fields[5] in ("[heap]", "[stack]")):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                try:
                    mem.seek(start)
                    chunks.append(mem.read(end - start))
                except OSError:
                    continue
    return b"".join(chunks)


def test_a_second_job_sees_nothing_of_the_first():
    marker = "course-warm-marker-" + os.urandom(6).hex()
    first, _ = run_job([f"secret = {marker!r} * 3\nopen('/tmp/left', 'w').write(secret)\n"
                        f"import os\nos.environ['LEFT'] = secret\nprint('ok', flush=True)"], Limits(call_timeout=0))
    assert first.extra.get("start") == "warm" and "ok" in first.output
    second, _ = run_job(["import gc, os, sys\n"
                         "prefix = 'course-warm-marker-'\n"
                         "seen = [o for o in gc.get_objects() if isinstance(o, str) and o.startswith(prefix)\n"
                         "        and o != prefix]\n"
                         "print('SEEN', len(seen), os.path.exists('/tmp/left'), 'LEFT' in os.environ, flush=True)"],
                        Limits(call_timeout=0))
    assert "SEEN 0 False False" in second.output
    assert marker.encode() not in _anonymous_memory(zygote().proc.pid)   # the zygote never read a job


def test_the_grader_modules_stay_unreachable_by_import_in_a_warm_sandbox():
    run, _ = run_job(["import sys\nfound = []\n"
                      "for name in ('autograde.grader', 'autograde.grader.warm', 'autograde.grader.worker',\n"
                      "             'autograde.checks', 'autograde.checks.runner', 'autograde.protocol'):\n"
                      "    try:\n        __import__(name)\n        found.append(name)\n"
                      "    except ImportError:\n        pass\n"
                      "import autograde, __main__\n"
                      "print('FOUND', found, [a for a in ('grader', 'checks', 'protocol') if hasattr(autograde, a)],\n"
                      "      hasattr(__main__, 'Zygote'), flush=True)"], Limits(call_timeout=0))
    assert run.extra.get("start") == "warm"
    assert "FOUND [] [] False" in run.output, run.output


# ----------------------------------------------------------------------------
# lifetime and fallback


DRIVER = """
import sys
from pathlib import Path
from autograde.grader import sandbox
from autograde.grader.sandbox import Limits, run_worker
print("zygote", sandbox._warm_client().proc.pid, flush=True)
run_worker(Path({directory!r}), ["out/progress.jsonl"], Limits(timeout=100, call_timeout=0))
"""


def test_the_zygote_and_its_sandboxes_die_when_the_grader_is_killed():
    token = str(4000 + int.from_bytes(os.urandom(2), "big") % 1000) + ".25"
    directory = make_job([f"import subprocess, time\nsubprocess.Popen(['sleep', '{token}'])\n"
                          "print('started', flush=True)\ntime.sleep(120)"])
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(directory=str(directory))],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        zygote_pid = int(driver.stdout.readline().split()[1])
        assert wait_until(lambda: processes_with(f"sleep {token}"), 60)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert wait_until(lambda: not processes_with(f"sleep {token}") and not os.path.exists(f"/proc/{zygote_pid}"))
    finally:
        driver.kill()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_dead_zygote_makes_the_next_sandbox_start_cold_with_one_note(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_ZYGOTE", [])
    monkeypatch.setattr(sandbox, "_WARM_NOTED", [])
    os.kill(zygote().proc.pid, signal.SIGKILL)
    zygote().proc.wait()
    runs = [run_job(["print('alive', flush=True)"], Limits(call_timeout=0))[0] for _ in range(2)]
    assert all(r.returncode == 0 and "alive" in r.output and r.extra.get("start") != "warm" for r in runs)
    assert capsys.readouterr().err.count("sandboxes start cold") == 1


def test_a_zygote_that_cannot_start_leaves_the_cold_start(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_ZYGOTE", [])
    monkeypatch.setattr(sandbox, "_WARM_NOTED", [])
    monkeypatch.setattr(sandbox, "hidden_paths", lambda *a, **k: [Path(sys.prefix)])   # torch is "hidden"
    run, _ = run_job(["print('alive', flush=True)"], Limits(call_timeout=0))
    assert run.returncode == 0 and "alive" in run.output and run.extra.get("start") != "warm"
    assert "sandboxes start cold" in capsys.readouterr().err


def test_limits_and_kills_hold_in_a_warm_sandbox():
    run, _ = run_job(["import time\ntime.sleep(30)"], Limits(timeout=2, call_timeout=0))
    assert run.extra.get("start") == "warm" and run.timed_out and run.limit == "wall"
    run, _ = run_job(["print('x' * 200000, flush=True)\nraise SystemExit(3)"], Limits(call_timeout=0, output_limit=1000))
    assert run.returncode == 0 and len(run.output) == 1000 and run.output_bytes > 200000
    run, _ = run_job(["import os\nos._exit(7)"], Limits(call_timeout=0))
    assert run.returncode == 7                            # the worker's status, through A, as unshare passes it


# ----------------------------------------------------------------------------
# grades: warm and cold agree


def _assignments() -> list[str]:
    from autograde.notebooks import ASSIGNMENTS

    return [a for a in ASSIGNMENTS if (REPO / "exercises" / "en" / a / f"{a}.ipynb").exists()]


@pytest.mark.parametrize("assignment", _assignments())
def test_warm_and_cold_give_identical_grades(assignment, cold, tmp_path):
    from autograde.grader.pipeline import grade_notebook

    if assignment in ("04_ffn_block", "05_sampling") and not REFERENCE.exists():
        pytest.skip("the reference model is not trained yet")
    scores = {}
    for kind in ("full", "blank"):
        path = tmp_path / kind / f"{assignment}.ipynb"
        path.parent.mkdir()
        path.write_text(json.dumps(make_submission(kind, assignment=assignment)), encoding="utf-8")
        for start in ("warm", "cold"):
            if start == "cold":
                with cold():
                    result = grade_notebook(path, Limits(timeout=60, call_timeout=10), [])
            else:
                result = grade_notebook(path, Limits(timeout=60, call_timeout=10), [])
            scores[kind, start] = [(t["name"], t["score"], t["status"], re.sub(r"\d+\.\d+ s", "", t["output"]))
                                   for t in result["tests"]]
    assert scores["full", "warm"] == scores["full", "cold"]
    assert scores["blank", "warm"] == scores["blank", "cold"]
    assert sum(s for _, s, _, _ in scores["full", "warm"]) > sum(s for _, s, _, _ in scores["blank", "warm"])


def test_a_job_whose_zygote_dies_midway_is_run_again_cold(monkeypatch, capsys):
    import threading

    monkeypatch.setattr(sandbox, "_ZYGOTE", [])
    monkeypatch.setattr(sandbox, "_WARM_NOTED", [])
    pid = zygote().proc.pid
    done = {}
    job = threading.Thread(target=lambda: done.update(
        run=run_job(["import time\ntime.sleep(3)\nprint('finished', flush=True)"], Limits(call_timeout=0))[0]))
    job.start()
    assert wait_until(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().strip() != "")
    os.kill(pid, signal.SIGKILL)
    job.join(120)
    run = done["run"]
    assert run.returncode == 0 and "finished" in run.output and run.extra.get("start") != "warm"
    assert "the zygote ended during a job" in capsys.readouterr().err
