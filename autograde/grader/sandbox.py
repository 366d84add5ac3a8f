"""Start the untrusted worker (autograde.grader.worker) in a sandbox and wait for it.

Trusted side. Two modes, chosen once per process by a probe:

"namespaces" (running as root with util-linux `unshare` and `setpriv`):
    unshare --net --mount --pid --fork --kill-child   no network (own, empty net
        namespace), own mount table, own pid namespace (when the worker ends,
        every process it forked dies with it)
    a shell prelude (as root, inside the namespaces) that mounts small tmpfs
        over /tmp, /var/tmp, /dev/shm, hides the grader's files (answers,
        reference model, check modules, other submissions) behind empty
        mode-000 tmpfs, and gives the worker a private 256 MB scratch tmpfs
    setpriv                                          an unprivileged uid (one per
        concurrent sandbox, so RLIMIT_NPROC counts each alone), no capabilities,
        no_new_privs
"plain" (anything else, e.g. an unprivileged CI user): the same worker with the
    same rlimits and timeouts, network blocked inside the worker only.

In both modes: rlimits (CPU, address space, file size, open files, processes,
no core dumps), a new session (the timeout kills the whole process group),
an empty environment except LANG=C.UTF-8 and a few knobs, stdout and stderr
read through a pipe of which only the first `output_limit` bytes are kept.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "autograde"
NOBODY_GID = 65534
FIRST_UID = 64100                 # sandbox uids: FIRST_UID + slot (no passwd entry needed)

# Files the child must not read, relative to the repository (hidden in "namespaces" mode).
HIDDEN = ("solutions", "autograde/reference", "autograde/data", "autograde/checks/steps", "tests", "submitted",
          "autograded", "feedback", "gradebook.db")
# A job that uses the reference model (notebook 3's locked cells build attention from its pieces,
# notebook 4's generation steps call it) needs the model's code, weights and tokenizer: those stay
# readable, the rest of the reference stays hidden.
SHOWN_FOR_REFERENCE = ("autograde/reference", "autograde/data")
HIDDEN_FOR_REFERENCE = ("autograde/reference/sampling.py", "autograde/reference/train.py",
                        "autograde/reference/hf.py", "autograde/reference/corpus.py", "autograde/data/corpus")


@dataclass
class Limits:
    timeout: float = 60.0             # wall clock seconds per attempt, enforced by the parent
    call_timeout: float = 10.0        # seconds per cell and per call of a function (SIGALRM in the worker)
    memory: int = 4 * 2**30           # RLIMIT_AS bytes
    file_size: int = 64 * 2**20       # RLIMIT_FSIZE bytes (every file the child writes)
    open_files: int = 256             # RLIMIT_NOFILE
    processes: int = 64               # RLIMIT_NPROC, for the sandbox's own uid
    output_limit: int = 64 * 1024     # bytes of stdout+stderr kept

    @classmethod
    def from_env(cls, **overrides) -> "Limits":
        """Defaults, then COURSE_GRADE_TIMEOUT (s) and COURSE_GRADE_MEMORY_MB, then overrides."""
        limits = cls()
        if os.environ.get("COURSE_GRADE_TIMEOUT"):
            limits.timeout = float(os.environ["COURSE_GRADE_TIMEOUT"])
        if os.environ.get("COURSE_GRADE_CALL_TIMEOUT"):
            limits.call_timeout = float(os.environ["COURSE_GRADE_CALL_TIMEOUT"])
        if os.environ.get("COURSE_GRADE_MEMORY_MB"):
            limits.memory = int(os.environ["COURSE_GRADE_MEMORY_MB"]) * 2**20
        for key, value in overrides.items():
            setattr(limits, key, value)
        return limits


@dataclass
class RunResult:
    returncode: int | None            # None: killed by the parent's timeout
    timed_out: bool
    output: str                       # the first output_limit bytes of stdout+stderr
    output_bytes: int                 # how much the child printed in all
    seconds: float
    mode: str
    started: float = 0.0              # time.time() just before the sandbox was started
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------
# which mode

# cheap (no torch import): can the sandbox user see the interpreter, torch and the worker?
PROBE = ("import importlib.util as u, safetensors; "
         "assert u.find_spec('torch') and u.find_spec('autograde.grader.worker')")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@functools.lru_cache(maxsize=1)
def sandbox_mode() -> str:
    """'namespaces' when the full sandbox works here (probed once), else 'plain'."""
    if os.environ.get("COURSE_SANDBOX") == "plain" or not _is_root():
        return "plain"
    if not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("mount")):
        return "plain"
    probe = Path(tempfile.mkdtemp(prefix="course-probe-"))
    uid = UIDS.take()
    try:
        _prepare_dir(probe, uid, [])
        cmd = _namespace_command(probe, uid, [], code=PROBE)
        done = subprocess.run(cmd, capture_output=True, timeout=120, preexec_fn=_limits_preexec(Limits()))
        return "namespaces" if done.returncode == 0 else "plain"
    except (OSError, subprocess.SubprocessError):
        return "plain"
    finally:
        UIDS.give(uid)
        shutil.rmtree(probe, ignore_errors=True)


class _UidPool:
    """One uid per concurrent sandbox (namespaces mode), also across processes: two `course grade`
    runs (or two test workers) on one machine must never share a uid, or one run's clean-up
    (_kill_uid) would kill the other's sandbox. A uid is held by an flock on its lock file."""

    SIZE = 256

    def __init__(self, lock_dir: Path | None = None):
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / "course-sandbox-uids"
        self._held: dict[int, int] = {}               # uid -> lock file descriptor
        self._lock = threading.Lock()

    def take(self) -> int:
        import fcntl

        self.lock_dir.mkdir(mode=0o700, exist_ok=True)
        while True:
            with self._lock:
                for uid in range(FIRST_UID, FIRST_UID + self.SIZE):
                    if uid in self._held:
                        continue
                    fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        os.close(fd)
                        continue
                    self._held[uid] = fd
                    return uid
            time.sleep(0.1)                            # every uid busy: wait for one

    def give(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)                               # closing releases the flock


UIDS = _UidPool()


# ----------------------------------------------------------------------------
# the child's environment


def child_env(work: Path) -> dict:
    """Nothing inherited: no HOME secrets, no tokens, no proxies."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(work),
            "TMPDIR": str(work), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def _limits_preexec(limits: Limits, nproc: int | None = None):
    """preexec_fn: rlimits, applied to the whole chain (unshare, the prelude, the worker)."""
    def apply():
        cpu = int(limits.timeout) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return apply


def _user_process_count() -> int:
    uid, n = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                n += len(list((entry / "task").iterdir()))     # threads count too
        except OSError:
            continue
    return n


# ----------------------------------------------------------------------------
# namespaces mode: the root prelude


PRELUDE = r"""
set -eu
dir=$1; uid=$2; gid=$3; shift 3
cd "$dir"
for item in "$@"; do
  case $item in
    scratch:*) p=${item#scratch:}; [ -d "$p" ] && mount -t tmpfs -o size=128m,mode=1777,nosuid,nodev course-tmp "$p" ;;
  esac
done
# the sandbox directory itself, which the /tmp tmpfs may have covered ('.' is still the old one)
mkdir -p "$dir"; mount -c --bind . "$dir"; cd /
for item in "$@"; do
  case $item in
    keep:*) rest=${item#keep:}; top=${rest%%:*}; child=${rest#*:}
            cd "$top/$child"; mount -t tmpfs -o mode=755,size=4k course-root "$top"
            mkdir -p "$top/$child"; mount -c --bind . "$top/$child"; cd / ;;
  esac
done
for item in "$@"; do
  case $item in
    hide:*) p=${item#hide:}; if [ -d "$p" ]; then mount -t tmpfs -o size=4k,mode=000,ro course-hidden "$p";
            elif [ -f "$p" ]; then mount -c --bind /dev/null "$p"; fi ;;
  esac
done
mount -t tmpfs -o "size=256m,mode=700,uid=$uid,gid=$gid,nosuid,nodev" course-work "$dir/work"
cd "$dir/work"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
  env -i ENVIRONMENT
"""


def _blocked_ancestors(paths) -> list[str]:
    """'keep:TOP:CHILD' for each path behind a directory others cannot enter (e.g. /root/.pyenv)."""
    items = []
    for path in paths:
        parts = Path(path).resolve().parts
        for i in range(1, len(parts) - 1):
            top = Path(*parts[:i + 1])
            if not os.stat(top).st_mode & 0o001:
                item = f"keep:{top}:{parts[i + 1]}"
                if item not in items:
                    items.append(item)
                break
    return items


def hidden_paths(extra_hidden=(), reference: bool = False) -> list[Path]:
    """What the child may not read: the grader's files, the class's submissions, extra_hidden."""
    hidden = [h for h in HIDDEN if not (reference and h in SHOWN_FOR_REFERENCE)]
    hidden += HIDDEN_FOR_REFERENCE if reference else ()
    return [REPO_ROOT / h for h in hidden] + [Path(p) for p in extra_hidden]


def _mount_items(extra_hidden, reference: bool = False) -> list[str]:
    needed = [sys.executable, sys.prefix, sys.base_prefix, str(PACKAGE)]
    items = []
    for scratch in ("/tmp", "/var/tmp", "/dev/shm"):
        if not any(str(Path(p).resolve()).startswith(scratch + "/") for p in needed):
            items.append(f"scratch:{scratch}")
    items += _blocked_ancestors(needed)
    items += [f"hide:{p.resolve()}" for p in hidden_paths(extra_hidden, reference) if p.exists()]
    return items


def _namespace_command(directory: Path, uid: int, extra_hidden, code: str | None = None,
                       reference: bool = False) -> list[str]:
    env = " ".join(f"{k}={_sh_quote(v)}" for k, v in child_env(directory / "work").items())
    run = f"{_sh_quote(sys.executable)} -I " + (f"-c {_sh_quote(code)}" if code else
                                                f"-m autograde.grader.worker {_sh_quote(str(directory))}")
    script = PRELUDE.replace("ENVIRONMENT", env + " " + run)
    return ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "--", "sh", "-c", script, "sandbox-prelude", str(directory), str(uid), str(NOBODY_GID),
            *_mount_items(extra_hidden, reference)]


def _sh_quote(text: str) -> str:
    return "'" + str(text).replace("'", "'\"'\"'") + "'"


def _prepare_dir(directory: Path, uid: int | None, writable: list[str]) -> None:
    """Inputs readable by the child; only the listed output files writable by it."""
    (directory / "work").mkdir(exist_ok=True)
    os.chmod(directory, 0o755)
    for name in writable:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        if uid is not None:
            os.chown(path, uid, NOBODY_GID)
        os.chmod(path, 0o600)
    for sub in {(directory / n).parent for n in writable} - {directory}:
        os.chmod(sub, 0o755)


# ----------------------------------------------------------------------------
# running


def _drain(stream, limit: int, keep: bytearray, counter: list) -> None:
    """Read everything, keep the first `limit` bytes: a 1 GB print costs no memory."""
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return
        counter[0] += len(chunk)
        if len(keep) < limit:
            keep.extend(chunk[: limit - len(keep)])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_worker(directory: Path, writable: list[str], limits: Limits, extra_hidden=(),
               reference: bool = False) -> RunResult:
    """Run `python -I -m autograde.grader.worker DIRECTORY` sandboxed; never raises for the child's sake.

    reference: the job's steps need the reference model, so its files stay readable."""
    mode = sandbox_mode()
    uid = UIDS.take() if mode == "namespaces" else None
    try:
        _prepare_dir(directory, uid, writable)
        if mode == "namespaces":
            cmd = _namespace_command(directory, uid, extra_hidden, reference=reference)
            preexec, env, cwd = _limits_preexec(limits, limits.processes), child_env(directory / "work"), "/"
        else:
            cmd = [sys.executable, "-I", "-m", "autograde.grader.worker", str(directory)]
            nproc = None if _is_root() else _user_process_count() + limits.processes
            preexec, env, cwd = _limits_preexec(limits, nproc), child_env(directory / "work"), directory / "work"
        return _run(cmd, preexec, env, cwd, limits, mode, uid)
    finally:
        if uid is not None:
            _kill_uid(uid)
            UIDS.give(uid)


# Every sandbox this process is running right now: Popen pid -> (Popen, sandbox uid or None).
_ACTIVE: dict[int, tuple] = {}


def stop_all() -> int:
    """Kill every sandbox this process is running right now; returns how many there were.

    For `course grade` on Ctrl-C (and any other early exit of the grader): each sandbox's process
    group, and every process of its sandbox uid, gets SIGKILL. Safe to call from the main thread while
    worker threads are still waiting on their sandboxes (they then return a killed RunResult); takes
    no lock, so it may also be called from a signal handler. Calling it twice does no harm."""
    running = list(_ACTIVE.values())
    for proc, uid in running:
        _kill_group(proc)
        if uid is not None:
            _kill_uid(uid)
    return len(running)


def _run(cmd, preexec, env, cwd, limits: Limits, mode: str, uid: int | None = None) -> RunResult:
    start, started = time.monotonic(), time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=cwd, env=env, preexec_fn=preexec, start_new_session=True)
    _ACTIVE[proc.pid] = (proc, uid)
    try:
        return _wait(proc, limits, mode, start, started)
    finally:
        _ACTIVE.pop(proc.pid, None)


def _wait(proc: subprocess.Popen, limits: Limits, mode: str, start: float, started: float) -> RunResult:
    keep, counter = bytearray(), [0]
    reader = threading.Thread(target=_drain, args=(proc.stdout, limits.output_limit, keep, counter), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(proc)                      # also any stragglers left in the group
    proc.wait()
    reader.join(timeout=5)
    return RunResult(None if timed_out else proc.returncode, timed_out,
                     bytes(keep).decode("utf-8", errors="replace"), counter[0],
                     round(time.monotonic() - start, 3), mode, started)


def _kill_uid(uid: int) -> None:
    """Kill whatever still runs as the sandbox uid (a process that left the group and the namespace)."""
    pid = os.fork()
    if pid == 0:                           # child: become the uid, kill(-1) reaches exactly its processes
        try:
            os.setgid(NOBODY_GID)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
