"""Start the untrusted worker (autograde.grader.worker) in a sandbox and wait for it.

Trusted side. Two modes, chosen once per process by a probe:

"namespaces" (running as root with util-linux `unshare`, `setpriv`, `mount` and `pivot_root`):
    unshare --net --mount --pid --ipc --fork --kill-child --mount-proc   no network (own,
        empty net namespace), own mount table, own pid namespace and /proc (it
        sees only its own processes; when its first process ends, every process
        it forked dies with it), own IPC namespace (SysV shared memory, message
        queues and semaphores, and POSIX message queues, are its own: another
        sandbox and the host never see them, and they vanish with it)
    a shell prelude (as root, inside the namespaces) that builds the sandbox's root
    file system from an ALLOW-LIST (mount_plan) and makes it the root (pivot_root;
    the machine's root is let go):
      - a small read-only tmpfs holding only: /usr (and /bin, /lib*, /sbin as on the
        machine), a few files of /etc (the loader's cache, passwd, group, hosts,
        localtime, python3*) and of /dev (null, zero, full, random, urandom)
        copied, /sys/devices/system/{cpu,node} read-only, a /proc of its own pid
        namespace, an mqueue of its own IPC namespace; then, read-only, the
        interpreter, its prefixes and every entry of its sys.path (a folder that a
        .pth file chains to included; the checkout, which an editable install puts
        on sys.path, gives the package alone), and the package; and the job's own
        directory, where only the output files made for it are writable;
      - inside those, the grader's files (HIDDEN: the check modules, the reference
        unless the job needs it) and extra_hidden (the course root, the secret,
        the submission's folder) masked with empty read-only tmpfs: wherever the
        course lives (a home folder, /srv, the checkout), nothing of it but the
        package is there;
      - ONE tmpfs of `Limits.disk` bytes (the total quota of everything the child
        may write) whose parts are the working directory, /tmp, /var/tmp, /dev/shm
        and /run/lock: nothing written there reaches the host or outlives the sandbox;
    setpriv                                          an unprivileged uid and gid of
        its own (one per concurrent sandbox, machine-wide), no capabilities,
        no_new_privs, parent-death signal SIGKILL
Warm start (namespaces mode, the default; warm.py): the same sandbox, but instead of a fresh
    interpreter paying ~1-2 s for `import torch`, a zygote (started once per grader, as root, holding
    nothing of any job, reading nothing but what the sandbox shows) forks; the fork unshares the same
    namespaces, becomes pid 1 of its pid namespace, remounts /proc, runs this prelude minus its final
    exec (the same script: one plan for both), joins the cgroup, sets the rlimits, drops to the pool
    uid exactly as setpriv does, and runs the worker's main. If the zygote cannot start or dies,
    sandboxes start cold (one note on stderr). Plain mode always starts cold: its root case needs
    setpriv's ambient capability where the interpreter sits behind /root.
"plain" (COURSE_SANDBOX=plain, or no root, or no util-linux tools): the same worker
    with the same limits and timeouts, network blocked inside the worker only, the
    file system as it is (no allow-list: the course is as readable as file
    permissions make it), the host's IPC. As root it still runs as a sandbox uid of
    its own, never as root.

Limits, and what holds where:
    per process (always): rlimits on CPU, address space (`memory`), file size, open
        files, no core dumps; RLIMIT_NPROC when the child has a uid of its own
        (root: always; no root: counted from the user's current processes).
    per sandbox (root and a writable cgroup v2 with memory+pids (+cpu), else v1 memory
        and pids (+cpu, cpuacct) controllers): one cgroup per sandbox, made before the
        start and removed after: `memory` for all its processes together (tmpfs pages
        included), `processes` as pids.max, `cpus` cores at most (cpu.max, v1
        cpu.cfs_quota_us), and its CPU time counted (cpu.stat usage_usec, v1
        cpuacct.usage). Without cgroups only the per-process limits hold (six children
        may each use `memory`), and the time limits count wall time.
    time, enforced by the parent, never by the child: `timeout` for the whole run,
        and `call_timeout` (+ grace) for one cell or one call, read from the
        worker's progress file (the child's own timers are only the fast path).
        Both count the sandbox's own CPU time (its cgroup's: all its processes),
        so that a neighbour spinning 60 processes, which gets no more than its
        share, cannot make a correct submission run out of time; WALL_FACTOR (3)
        times each limit in wall time is the backstop that ends a sandbox that
        sleeps. In the child: SIGPROF after `call_timeout` of its CPU time, SIGALRM
        after WALL_FACTOR times that in wall time.
    output: the first `output_limit` bytes of stdout+stderr are kept.
    disk (namespaces mode): `disk` bytes in all for the work dir, /tmp, /var/tmp,
        /dev/shm and /run/lock, plus the job's output files of at most `file_size`
        bytes each. Plain mode: `file_size` per file only.
    lifetime: each sandbox's first process has the parent-death signal SIGKILL
        (so do unshare's child and, in plain mode, the worker): if the grader dies,
        even by SIGKILL, its sandboxes die (in plain mode a process that
        daemonized survives until the next start kills its cgroup and uid).
        Sandbox directories are 0750 root:<sandbox gid>; what a dead grader left
        (directories, cgroups, processes) is removed at the next start.
    `stop_all()` kills every sandbox of this process at once (Ctrl-C in `course grade`).

Sandbox uids come from one machine-wide pool (FIRST_UID ...), held by flock on a file in
state_dir() (/run/course-sandbox, root only, 0700), so runs with different TMPDIRs never share one.

Knobs (environment): COURSE_SANDBOX=plain (no namespaces), COURSE_SANDBOX_CGROUPS=off (per-process
limits only, wall time), COURSE_GRADE_CPUS (cores per sandbox, default 1), COURSE_SANDBOX_STATE=DIR
(where the uid locks and the owner records live), COURSE_SANDBOX_WARM=off (every sandbox starts cold: a fresh `python -I -m autograde.grader.worker`).
"""
from __future__ import annotations

import ctypes
import functools
import json
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

from autograde.errors import CourseError
from autograde.grader import WALL_FACTOR, warm

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "autograde"
NOBODY_GID = 65534
# Sandbox uids (and gids): FIRST_UID + slot, no passwd entry needed. Not 64100 as before: graders of
# the earlier version kept their uid locks under TMPDIR, and one still running on the machine must not
# kill (by uid) the sandboxes of this one.
FIRST_UID = 62100
OWNER_FILE = ".course-owner"      # in a sandbox directory: the grader process that made it
GRACE = 2.0                       # seconds past call_timeout before the parent kills a cell or call

# Files the child must not read, relative to the repository (hidden in "namespaces" mode).
HIDDEN = ("solutions", "autograde/reference", "autograde/data", "autograde/checks/steps", "tests", "submitted",
          "autograded", "feedback", "gradebook.db")
# A job that uses the reference model (notebook 4's locked cells build attention from its pieces,
# notebook 5's generation steps call it) needs the model's code, weights and tokenizer: those stay
# readable, the rest of the reference stays hidden.
SHOWN_FOR_REFERENCE = ("autograde/reference", "autograde/data")
HIDDEN_FOR_REFERENCE = ("autograde/reference/sampling.py", "autograde/reference/train.py",
                        "autograde/reference/hf.py", "autograde/reference/corpus.py", "autograde/data/corpus")
# Places every process may write on a usual Linux: each becomes a part of the sandbox's quota tmpfs.
SCRATCH = {"/tmp": "tmp", "/var/tmp": "var-tmp", "/dev/shm": "shm", "/run/lock": "lock"}
# The machine's part of the sandbox's root (namespaces mode), all read-only: nothing else of it is there.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
              "nsswitch.conf", "hosts", "host.conf", "os-release", "mime.types", "alternatives")   # + python3*
SYSTEM_DEV = ("null", "zero", "full", "random", "urandom")
SYSTEM_SYS = ("/sys/devices/system/cpu", "/sys/devices/system/node")


@dataclass
class Limits:
    timeout: float = 60.0             # seconds of the sandbox's CPU time per attempt, enforced by the parent
    call_timeout: float = 10.0        # CPU seconds per cell and per call of a function (parent + the worker's timer)
    cpus: float = 1.0                 # cores the sandbox may use at once, all its processes together (cgroup)
    memory: int = 4 * 2**30           # bytes: RLIMIT_AS per process, and the sandbox's cgroup in all
    file_size: int = 64 * 2**20       # RLIMIT_FSIZE bytes (every file the child writes)
    open_files: int = 256             # RLIMIT_NOFILE
    processes: int = 64               # RLIMIT_NPROC for the sandbox's own uid, and the cgroup's pids.max
    output_limit: int = 64 * 1024     # bytes of stdout+stderr kept
    disk: int = 256 * 2**20           # bytes in all of work dir, /tmp, /var/tmp, /dev/shm, /run/lock

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
        if os.environ.get("COURSE_GRADE_CPUS"):
            limits.cpus = float(os.environ["COURSE_GRADE_CPUS"])
        for key, value in overrides.items():
            setattr(limits, key, value)
        return limits


@dataclass
class RunResult:
    returncode: int | None            # None: killed by the parent (a time limit, or stop_all)
    timed_out: bool                   # a time limit fired (see `limit`)
    output: str                       # the first output_limit bytes of stdout+stderr
    output_bytes: int                 # how much the child printed in all
    seconds: float
    mode: str
    started: float = 0.0              # time.time() just before the sandbox was started
    extra: dict = field(default_factory=dict)
    limit: str = ""                   # what ended it: "", "wall" (the whole run's time limit), "call" (one
    #                                   cell or call), "memory", "stopped"
    limit_seconds: float = 0.0        # the time limit that fired, in seconds
    cpu_seconds: float | None = None  # the sandbox's CPU time (None: no cgroup counted it)


# ----------------------------------------------------------------------------
# machine-wide state: the uid pool, who owns which directory and cgroup


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def state_dir() -> Path:
    """One place per machine (root: /run/course-sandbox, else /var/lib/course-sandbox; no root: a
    folder of this user's), never under TMPDIR: every grader on the machine sees the same locks."""
    if os.environ.get("COURSE_SANDBOX_STATE"):
        candidates = [Path(os.environ["COURSE_SANDBOX_STATE"])]
    elif _is_root():
        candidates = [Path("/run/course-sandbox"), Path("/var/lib/course-sandbox")]
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        candidates = ([Path(runtime) / "course-sandbox"] if runtime else []) + \
            [Path(tempfile.gettempdir()) / f"course-sandbox-state-{os.getuid()}"]
    for path in candidates:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(path)
            if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != os.geteuid():
                continue
            os.chmod(path, 0o700)
            return path
        except OSError:
            continue
    raise CourseError("the grader found no private folder for its sandbox state (tried "
                      + ", ".join(map(str, candidates)) + "); set COURSE_SANDBOX_STATE to a folder it may create")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (with the pid: a process identity that is never reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _pid_namespace() -> str:
    try:
        return "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        return "0"


def owner_token() -> str:
    """This process, as PID-STARTTIME-PIDNAMESPACE (names its directories and cgroups)."""
    return f"{os.getpid()}-{_start_time(os.getpid())}-{_pid_namespace()}"


def _token_alive(token: str) -> bool:
    """Whether the process a token names still runs. A token from another pid namespace (a grader in
    another container that shares the cgroup tree) counts as alive: it is not ours to judge."""
    parts = token.split("-")
    if len(parts) != 3 or not parts[0].isdigit():
        return False
    pid, start, namespace = parts
    return namespace != _pid_namespace() or _start_time(int(pid)) == start


class _UidPool:
    """One uid per concurrent sandbox, machine-wide: two `course grade` runs (or two test workers,
    whatever their TMPDIR) must never share a uid, or one run's clean-up would kill the other's
    sandbox. A uid is held by an flock on its file in one folder (state_dir()/uids); the kernel
    releases it when the holder dies, and whatever still runs as that uid is killed before reuse."""

    SIZE = 256

    def __init__(self, lock_dir: Path | None = None):
        self._lock_dir = lock_dir
        self._held: dict[int, int] = {}               # uid -> lock file descriptor
        self._lock = threading.Lock()

    @property
    def lock_dir(self) -> Path:
        if self._lock_dir is None:
            self._lock_dir = state_dir() / "uids"
        return self._lock_dir

    def take(self) -> int:
        import fcntl

        self.lock_dir.mkdir(mode=0o700, exist_ok=True)
        while True:
            with self._lock:
                for uid in range(FIRST_UID, FIRST_UID + self.SIZE):
                    if uid in self._held:
                        continue
                    fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        os.close(fd)
                        continue
                    self._held[uid] = fd
                    if _is_root():
                        _kill_uid(uid)                 # a dead grader's leftovers, if any
                    return uid
            time.sleep(0.1)                            # every uid busy: wait for one

    def is_free(self, uid: int) -> bool:
        """No grader holds the uid now (tested by taking its lock for a moment)."""
        import fcntl

        if uid in self._held:
            return False
        try:
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def give(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)                               # closing releases the flock


UIDS = _UidPool()
_registered: set[str] = set()


def _register_dir(directory: Path) -> None:
    """Mark the directory as this process's and note it machine-wide, for clean_stale()."""
    key = str(directory)
    if key in _registered:
        return
    marker = directory / OWNER_FILE
    marker.write_text(owner_token())
    os.chmod(marker, 0o600)
    try:
        with open(state_dir() / "owners" / owner_token(), "a", encoding="utf-8") as f:
            f.write(key + "\n")
        _registered.add(key)
    except OSError:
        pass


_cleaned = threading.Lock()
_cleaned_once: list[bool] = []


def clean_stale() -> int:
    """Remove what graders that are no longer running left behind (killed by SIGKILL, a power cut):
    their sandbox directories and cgroups, killing any process still in them. Once per process;
    returns how many things it removed."""
    with _cleaned:
        if _cleaned_once:
            return 0
        _cleaned_once.append(True)
    removed = 0
    try:
        owners = state_dir() / "owners"
        owners.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return 0
    for record in owners.iterdir():
        token = record.name
        if token == owner_token() or _token_alive(token):
            continue
        try:
            dirs = record.read_text(encoding="utf-8").splitlines()
        except OSError:
            dirs = []
        for d in dict.fromkeys(dirs):
            path = Path(d)
            try:
                if path.is_absolute() and (path / OWNER_FILE).read_text() == token:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
        record.unlink(missing_ok=True)
    for cg in _Cgroup.stale():
        cg.remove()
        removed += 1
    if _is_root():                 # processes of a sandbox uid no grader holds (no cgroups here, or
        orphans = {}               # a daemon of plain mode): kill them
        for pid, uid in _pool_processes().items():
            orphans.setdefault(uid, []).append(pid)
        for uid in orphans:
            if UIDS.is_free(uid):
                _kill_uid(uid)
                removed += 1
    return removed


# ----------------------------------------------------------------------------
# cgroups: memory and processes for the whole sandbox


def _own_cgroups() -> dict[str, str]:
    """controller (or '' for cgroup2) -> this process's cgroup path, from /proc/self/cgroup."""
    found = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                found[c] = path
    except (OSError, ValueError):
        pass
    return found


@functools.lru_cache(maxsize=1)
def cgroup_layout() -> tuple[str, dict[str, Path]]:
    """Where this process may make a sandbox's cgroup: ('v2', {'': parent}), or ('v1', {controller:
    parent}) for memory and pids (and cpu, cpuacct where this process may use them), or ('', {})
    where it may not (no root, a read-only /sys/fs/cgroup, ...)."""
    if not _is_root() or os.environ.get("COURSE_SANDBOX_CGROUPS") == "off":
        return "", {}
    root, own = Path("/sys/fs/cgroup"), _own_cgroups()
    if (root / "cgroup.controllers").exists() and "" in own:                     # unified hierarchy
        parent = root / own[""].lstrip("/")
        try:
            available = (parent / "cgroup.controllers").read_text().split()
            if {"memory", "pids"} <= set(available):
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if not {"memory", "pids"} <= set(enabled):
                    (parent / "cgroup.subtree_control").write_text("+memory +pids")
                if "cpu" in available and "cpu" not in enabled:
                    _write(parent / "cgroup.subtree_control", "+cpu", optional=True)
                if _writable_dir(parent):
                    return "v2", {"": parent}
        except OSError:
            pass
    parents = {c: root / c / own.get(c, "/").lstrip("/") for c in ("memory", "pids", "cpu", "cpuacct")}
    usable = {c: p for c, p in parents.items() if (p / "cgroup.procs").exists() and _writable_dir(p)}
    if {"memory", "pids"} <= set(usable):
        return "v1", usable
    return "", {}


def cgroup_parents() -> tuple[str, tuple[Path, ...]]:
    """('v2', (parent,)), ('v1', (memory parent, pids parent, ...)) or ('', ()): the folders, once each
    (cpu and cpuacct may be one hierarchy)."""
    version, parents = cgroup_layout()
    unique: dict[str, Path] = {}
    for path in parents.values():
        unique.setdefault(os.path.realpath(path), path)
    return version, tuple(unique.values())


def _writable_dir(path: Path) -> bool:
    probe = path / f"course-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


class _Cgroup:
    """One sandbox's cgroup(s): created before the start, the first process joins in its preexec.
    Its memory, its processes and its CPU (a share of `Limits.cpus` cores at most) are limited for
    all its processes together, and its CPU time is what the parent's time limits count."""

    PREFIX = "course-sandbox-"
    PERIOD = 100_000                       # microseconds: the CPU quota's period

    def __init__(self, dirs: dict[str, Path], version: str):
        self.by_controller, self.version = dirs, version
        self.dirs = list(dict.fromkeys(dirs.values()))

    @classmethod
    def create(cls, uid: int | None, limits: Limits) -> "_Cgroup | None":
        version, parents = cgroup_layout()
        if not version:
            return None
        name = f"{cls.PREFIX}{owner_token()}-{uid or 0}-{threading.get_ident()}"
        made = cls({c: p / name for c, p in parents.items()}, version)
        quota = max(1000, int(limits.cpus * cls.PERIOD)) if limits.cpus else None
        try:
            for d in made.dirs:
                d.mkdir(exist_ok=True)
            if version == "v2":
                d = made.dirs[0]
                _write(d / "memory.max", limits.memory)
                _write(d / "memory.swap.max", 0, optional=True)
                _write(d / "pids.max", limits.processes)
                if quota:
                    _write(d / "cpu.max", f"{quota} {cls.PERIOD}", optional=True)
            else:
                _write(made.by_controller["memory"] / "memory.limit_in_bytes", limits.memory)
                _write(made.by_controller["memory"] / "memory.memsw.limit_in_bytes", limits.memory, optional=True)
                _write(made.by_controller["pids"] / "pids.max", limits.processes)
                if quota and "cpu" in made.by_controller:
                    _write(made.by_controller["cpu"] / "cpu.cfs_period_us", cls.PERIOD, optional=True)
                    _write(made.by_controller["cpu"] / "cpu.cfs_quota_us", quota, optional=True)
        except OSError:
            made.remove()
            return None
        return made

    @classmethod
    def stale(cls) -> list["_Cgroup"]:
        """The cgroups of graders that no longer run."""
        version, parents = cgroup_layout()
        found: dict[str, dict[str, Path]] = {}
        for controller, parent in parents.items():
            try:
                for d in parent.iterdir():
                    if d.name.startswith(cls.PREFIX) and d.is_dir():
                        token = "-".join(d.name[len(cls.PREFIX):].split("-")[:3])
                        if not _token_alive(token):
                            found.setdefault(d.name, {})[controller] = d
            except OSError:
                continue
        return [cls(dirs, version) for dirs in found.values()]

    def join_paths(self) -> list[bytes]:
        return [bytes(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found = set()
        for d in self.dirs:
            try:
                found |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                pass
        return found

    def cpu_seconds(self) -> float | None:
        """The CPU time all its processes have used so far (None: this cgroup does not count it)."""
        try:
            if self.version == "v2":
                for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return None
            if "cpuacct" in self.by_controller:
                return int((self.by_controller["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            pass
        return None

    def kill(self) -> None:
        if self.version == "v2" and (self.dirs[0] / "cgroup.kill").exists():
            _write(self.dirs[0] / "cgroup.kill", 1, optional=True)
        for _ in range(50):                    # a fork between reading the list and the kill: again
            if not _kill_all(self.pids()):
                return
            time.sleep(0.01)

    def memory_events(self) -> int:
        """How often the memory limit was hit (OOM kills where the kernel says so)."""
        memory = self.dirs[0] if self.version == "v2" else self.by_controller.get("memory")
        try:
            if self.version == "v2":
                events = dict(line.split() for line in (memory / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", events.get("oom", 0)))
            control = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
            if "oom_kill" in control:
                return int(control["oom_kill"])
            return int((memory / "memory.failcnt").read_text())
        except (OSError, ValueError, TypeError):
            return 0

    def remove(self) -> None:
        self.kill()
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:                # processes still exiting
                    self.kill()
                    time.sleep(0.02)


def _write(path: Path, value, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        if not optional:
            raise


# ----------------------------------------------------------------------------
# which mode

# cheap (no torch import): can the sandbox user see the interpreter, torch and the worker?
PROBE = ("import importlib.util as u, safetensors; "
         "assert u.find_spec('torch') and u.find_spec('autograde.grader.worker')")


_MODE_LOCK = threading.Lock()


def sandbox_mode() -> str:
    """'namespaces' when the full sandbox works here (probed once, by whichever thread asks first:
    prestart() probes in the background), else 'plain'."""
    with _MODE_LOCK:
        return _probe_mode()


@functools.lru_cache(maxsize=1)
def _probe_mode() -> str:
    if os.environ.get("COURSE_SANDBOX") == "plain" or not _is_root():
        return "plain"
    if not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("mount")):
        return "plain"
    clean_stale()
    probe = Path(tempfile.mkdtemp(prefix="course-probe-"))
    uid = UIDS.take()
    try:
        _register_dir(probe)
        _prepare_dir(probe, uid, [])
        cmd = _namespace_command(probe, uid, [], Limits(), code=PROBE)
        done = subprocess.run(cmd, capture_output=True, timeout=120,
                              preexec_fn=_preexec(Limits(), None, None, os.getpid()))
        return "namespaces" if done.returncode == 0 else "plain"
    except (OSError, subprocess.SubprocessError):
        return "plain"
    finally:
        _kill_uid(uid)
        UIDS.give(uid)
        shutil.rmtree(probe, ignore_errors=True)


# ----------------------------------------------------------------------------
# the child's environment


def child_env(work: Path) -> dict:
    """Nothing inherited: no HOME secrets, no tokens, no proxies."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(work),
            "TMPDIR": str(work), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
PR_SET_PDEATHSIG = 1


def _preexec(limits: Limits, nproc: int | None, cgroup: "_Cgroup | None", parent: int,
             drop_to: int | None = None):
    """preexec_fn of the sandbox's first process: rlimits (inherited by the whole chain), the
    sandbox's cgroup, in plain mode as root the sandbox uid, then SIGKILL when the grader dies."""
    join = cgroup.join_paths() if cgroup else []
    rlimits = _rlimits(limits, nproc)

    def apply():
        warm.join_cgroup(join)                     # before anything else: every later fork is counted
        warm.apply_rlimits(rlimits)
        if drop_to is not None:                    # plain mode as root: never run the student as root
            os.setgroups([])
            os.setresgid(drop_to, drop_to, drop_to)
            os.setresuid(drop_to, drop_to, drop_to)
        if _PRCTL is not None:                     # after the uid change, which clears it
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:                 # the grader died before the line above
            os.kill(os.getpid(), signal.SIGKILL)
    return apply


def _rlimits(limits: Limits, nproc: int | None) -> list[tuple[int, int]]:
    """The sandbox's rlimits, as (resource, value): the same list for the cold and the warm start."""
    cpu = int(limits.timeout) + 5
    pairs = [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, limits.memory),
             (resource.RLIMIT_FSIZE, limits.file_size), (resource.RLIMIT_NOFILE, limits.open_files),
             (resource.RLIMIT_CORE, 0)]
    return pairs + ([(resource.RLIMIT_NPROC, nproc)] if nproc is not None else [])


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
# namespaces mode: the root prelude, which builds the sandbox's file system from an allow-list


def _sh_quote(text: str) -> str:
    return "'" + str(text).replace("'", "'\"'\"'") + "'"


def hidden_paths(extra_hidden=(), reference: bool = False) -> list[Path]:
    """What the child may not read even where it lies inside a folder the sandbox shows: the grader's
    files, the class's submissions, extra_hidden (the course root, the secret, a notebook's folder)."""
    hidden = [h for h in HIDDEN if not (reference and h in SHOWN_FOR_REFERENCE)]
    hidden += HIDDEN_FOR_REFERENCE if reference else ()
    return [REPO_ROOT / h for h in hidden] + [Path(p) for p in extra_hidden]


@functools.lru_cache(maxsize=1)
def _interpreter_path() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sys.path, site directories) of `python -I` as the worker starts it: every folder it imports
    from, those that a .pth file adds included (a thin virtualenv that chains to another one's
    site-packages). Asked of the interpreter itself, once: this process's own sys.path also holds
    what a script or pytest put there."""
    code = "import json, site, sys; print(json.dumps([sys.path, site.getsitepackages()]))"
    try:
        done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120,
                              env=child_env(Path("/nonexistent")), stdin=subprocess.DEVNULL, cwd="/")
        paths, sites = json.loads(done.stdout)
        return tuple(map(str, paths)), tuple(map(str, sites))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError):
        import site
        return tuple(p for p in sys.path if p), tuple(site.getsitepackages())


def _needed(directory: Path | None) -> list[Path]:
    """What the worker must see, as the paths it uses (unresolved): the interpreter, its prefixes and
    every sys.path entry, the package, its sandbox directory. An entry above the package that is not
    a site directory (the checkout, which an editable install puts on sys.path) gives the package
    alone: the course's files beside it stay out."""
    paths, sites = _interpreter_path()
    sites = {os.path.realpath(s) for s in sites}
    package = os.path.realpath(PACKAGE)
    found = [sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.realpath(sys.executable)]
    for entry in paths:
        real = os.path.realpath(entry)
        if not os.path.exists(real):
            continue
        above = package == real or package.startswith(real.rstrip("/") + "/")
        found.append(str(PACKAGE) if above and real not in sites else entry)
    found += [str(PACKAGE)] + ([str(directory)] if directory is not None else [])
    return [Path(os.path.abspath(p)) for p in dict.fromkeys(found)]


def shown_paths() -> list[str]:
    """What the sandbox shows of the interpreter and the package, resolved (the zygote, which imports
    before any sandbox exists, may read these and the system folders, nothing else)."""
    return sorted({os.path.realpath(p) for p in _needed(None)})


def _blocked_ancestors(needed: list[Path]) -> list[Path]:
    """For each needed path, its first ancestor that others cannot enter (e.g. /root of /root/.pyenv)."""
    found = []
    for path in needed:
        for top in reversed(path.parents[:-1]):         # from / downwards, / itself excluded
            try:
                if not os.stat(top).st_mode & 0o001:
                    found.append(top)
                    break
            except OSError:
                break
    return found


def _symlinks_to(path: Path, depth: int = 0) -> list[tuple[Path, str]]:
    """Every symbolic link met on the way to `path` (and on the way to their targets), as
    (where, its text): the sandbox's root gets the same links, so the path works there as here."""
    found: list[tuple[Path, str]] = []
    current = Path("/")
    for part in path.parts[1:]:
        step = current / part
        if step.is_symlink() and depth < 8:
            target = os.readlink(step)
            found.append((step, target))
            found += _symlinks_to(Path(os.path.abspath(os.path.join(current, target))), depth + 1)
            current = Path(os.path.realpath(step))
        else:
            current = step
    return found


def _system_entries() -> dict[Path, tuple[str, object]]:
    """The machine's part of the sandbox's root: /usr and its companions read-only, a few files of
    /etc and /dev copied, the CPU topology (which torch and libgomp read) read-only."""
    entries: dict[Path, tuple[str, object]] = {}
    for top in SYSTEM_DIRS:
        path = Path(top)
        if path.is_symlink():
            entries[path] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[path] = ("ro", None)
    etc = [Path("/etc") / name for name in SYSTEM_ETC] + sorted(Path("/etc").glob("python3*"))
    for path in etc + [Path("/dev") / name for name in SYSTEM_DEV]:
        if os.path.lexists(path):
            entries[path] = ("copy", None)
    for top in SYSTEM_SYS:
        if Path(top).is_dir():
            entries[Path(top)] = ("ro", None)
    return entries


def _nearest(path: Path, entries: dict) -> tuple[str, object] | None:
    """The entry of the deepest folder above `path` (None: only the new root is above it)."""
    for parent in path.parents:
        if parent in entries:
            return entries[parent]
    return None


def mount_plan(directory: Path, extra_hidden=(), reference: bool = False) -> list[tuple[str, Path, object]]:
    """The sandbox's root file system, [(kind, path, arg)] in the order the prelude builds it (parents
    first). Nothing of the machine is there unless it is listed:
      'link'    a symbolic link (arg: its text), as on the machine (/bin -> usr/bin, a venv's python);
      'copy'    a file of /etc or a device of /dev, copied;
      'ro'      a folder or file bound read-only: the system folders, the interpreter, its prefixes,
                every sys.path entry, the package;
      'rw'      the sandbox directory (the child may write only the output files made for it);
      'scratch' a part of the quota tmpfs (arg: which): /tmp, /var/tmp, /dev/shm, /run/lock;
      'hide'    an empty read-only folder (or /dev/null) over a hidden path inside a shown one (the
                reference, the check modules; arg: paths under it, relative, that are bound back).
    A path inside a folder bound already is not bound again."""
    entries = _system_entries()
    needed = _needed(Path(directory))
    for path in needed:
        for link, target in _symlinks_to(path):
            entries.setdefault(link, ("link", target))
    job = Path(os.path.realpath(directory))
    for path in needed:
        real = Path(os.path.realpath(path))
        if real != job and os.path.exists(real):
            entries[real] = ("ro", None)
    entries[job] = ("rw", None)
    for path, part in SCRATCH.items():
        real = Path(os.path.realpath(path))
        if real.is_dir():
            entries[real] = ("scratch", part)
    for path in hidden_paths(extra_hidden, reference):
        real = Path(os.path.realpath(path))
        if os.path.lexists(path) and real not in entries:
            entries[real] = ("hide", None)
    plan = []
    for path in sorted(entries, key=lambda p: (len(p.parts), str(p))):
        kind, arg = entries[path]
        above = _nearest(path, entries)
        shown = above is not None and above[0] in ("ro", "rw", "copy")
        if kind in ("ro", "link", "copy") and shown or kind == "link" and above and above[0] == "hide":
            continue                                      # already there, as it is on the machine
        if kind == "hide":
            if not shown:
                continue                                  # not in the sandbox anyway
            arg = [str(p.relative_to(path)) for p, (k, _) in entries.items()
                   if k in ("ro", "rw", "scratch") and path in p.parents]
        plan.append((kind, path, arg))
    return plan


# The prelude: arguments DIR UID GID QUOTA; runs as root inside the new namespaces.
PRELUDE_HEAD = r"""
set -eu
dir=$1; uid=$2; gid=$3; quota=$4
PATH=/usr/sbin:/usr/bin:/sbin:/bin
cd /
mount -t tmpfs -o "size=$quota,mode=755,nosuid,nodev" course-scratch "$dir/work"
mkdir -m 700 "$dir/work/home"; chown "$uid:$gid" "$dir/work/home"
for part in tmp var-tmp shm lock; do mkdir -m 1777 "$dir/work/$part"; done
root="$dir/.root"
mkdir -p -m 700 "$root"
mount -t tmpfs -o size=1m,mode=755,nosuid course-root "$root"
"""
# After the plan: a /proc of its own pid namespace, an mqueue of its own IPC namespace, the home part
# over the work dir, the root read-only; then the root replaces the machine's, which is let go.
PRELUDE_TAIL = r"""
mkdir -p "$root/proc" "$root/dev/mqueue"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t mqueue -o nosuid,nodev,noexec course-mqueue "$root/dev/mqueue"
ln -s /proc/self/fd "$root/dev/fd"; ln -s fd/0 "$root/dev/stdin"; ln -s fd/1 "$root/dev/stdout"; ln -s fd/2 "$root/dev/stderr"
mount --bind "$dir/work/home" "$root$dir/work"
mount -o remount,ro,nosuid "$root"
cd "$root"
pivot_root . .
umount -l .
cd "$dir/work"
"""
# The cold start's last line; the warm start (warm.py) does the same in the forked interpreter.
PRELUDE_EXEC = r"""
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
  --pdeathsig=KILL env -i ENVIRONMENT
"""


def _prelude(directory: Path, extra_hidden, reference: bool, final_exec: bool = True) -> str:
    """The shell script that builds the sandbox's root from mount_plan (the cold and the warm start
    run the same script; the warm start without its final exec)."""
    q = _sh_quote
    plan = mount_plan(directory, extra_hidden, reference)
    entries = {path: (kind, arg) for kind, path, arg in plan}
    at_top, copies = set(), {}             # folders made in the new root itself; files to copy, by folder
    for kind, path, arg in plan:
        if kind == "copy":
            copies.setdefault(path.parent, []).append(path)
        if _nearest(path, entries) is None:
            at_top.add(path.parent if kind in ("link", "copy") or path.is_file() else path)
    at_top.discard(Path("/"))
    lines = [PRELUDE_HEAD]
    if at_top:
        lines.append("mkdir -p " + " ".join(f'"$root"{q(p)}' for p in sorted(at_top)))
    for folder, paths in copies.items():
        lines.append("cp -a " + " ".join(q(p) for p in paths) + f' "$root"{q(folder)}/')
    for kind, path, arg in plan:
        target = f'"$root"{q(path)}'
        inside = _nearest(path, entries) is not None  # in a scratch part or a hidden folder: made there
        if kind == "link":
            lines.append(f"ln -s {q(arg)} {target}")
        elif kind in ("ro", "rw", "scratch"):
            source = f'"$dir/work/{arg}"' if kind == "scratch" else q(path)
            make = ""
            if path.is_file():
                make = f'mkdir -p "$root"{q(path.parent)}; : > {target}; ' if inside else f": > {target}; "
            elif inside:
                make = f"mkdir -p {target}; "
            bind = {"ro": "--rbind -o ro,nosuid,nodev", "rw": "--bind -o nosuid,nodev", "scratch": "--bind"}[kind]
            lines.append(f"{make}mount {bind} {source} {target}")
        elif kind == "hide" and path.is_file():
            lines.append(f"mount --bind /dev/null {target}")
        elif kind == "hide" and arg:                      # hide a folder, but for what is bound back below it
            lines.append(f"mount -t tmpfs -o size=64k,mode=711,nosuid,nodev course-pass {target}")
            for rel in arg:
                inner = path / rel
                lines.append(f'mkdir -p "$root"{q(inner.parent)}; : > "$root"{q(inner)}' if inner.is_file()
                             else f'mkdir -p "$root"{q(inner)}')
            lines.append(f"mount -o remount,ro {target}")
        elif kind == "hide":
            lines.append(f"mount -t tmpfs -o size=4k,mode=000,ro,nosuid,nodev course-hidden {target}")
    lines.append(PRELUDE_TAIL + (PRELUDE_EXEC if final_exec else ""))
    return "\n".join(lines)


def _namespace_command(directory: Path, uid: int, extra_hidden, limits: Limits, code: str | None = None,
                       reference: bool = False) -> list[str]:
    env = " ".join(f"{k}={_sh_quote(v)}" for k, v in child_env(directory / "work").items())
    run = f"{_sh_quote(sys.executable)} -I " + (f"-c {_sh_quote(code)}" if code else
                                                f"-m autograde.grader.worker {_sh_quote(str(directory))}")
    script = _prelude(directory, extra_hidden, reference).replace("ENVIRONMENT", env + " " + run)
    return ["unshare", "--net", "--mount", "--pid", "--ipc", "--fork", "--kill-child", "--mount-proc",
            "--propagation", "private",
            "--", "sh", "-c", script, "sandbox-prelude", str(directory), str(uid), str(uid), str(limits.disk)]


def _plain_setpriv(uid: int, directory: Path) -> list[str]:
    """Plain mode as root: the sandbox uid, no capabilities, the parent-death signal set again after
    the uid change. Where the interpreter sits behind a folder other users cannot enter (/root/.pyenv)
    it keeps CAP_DAC_READ_SEARCH alone: it may read what root may read (plain mode hides nothing
    anyway) but writes and signals only as its own uid."""
    caps = "-all,+dac_read_search" if _blocked_ancestors(_needed(directory)) else "-all"
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", f"--inh-caps={caps}",
            *([f"--ambient-caps={caps}"] if "+" in caps else []), f"--bounding-set={caps}",
            "--no-new-privs", "--pdeathsig=KILL"]


def _prepare_dir(directory: Path, uid: int | None, writable: list[str], fresh: bool = False) -> None:
    """Private to the sandbox: the folder root:<its gid> 0750 (root-only 0700 without a uid), the
    inputs readable by the child, only the listed output files writable by it."""
    gid = uid
    work = directory / "work"
    shutil.rmtree(work, ignore_errors=True)               # a fresh work dir for each attempt
    work.mkdir()
    for sub in {directory, *{(directory / n).parent for n in writable}}:
        sub.mkdir(parents=True, exist_ok=True)
        if gid is not None:
            os.chown(sub, 0 if _is_root() else -1, gid)
        os.chmod(sub, 0o750 if gid is not None else 0o700)
    if uid is not None:
        os.chown(work, uid, gid)
    os.chmod(work, 0o700)
    for name in writable:
        path = directory / name
        if fresh:
            path.unlink(missing_ok=True)       # what a failed warm start wrote
        path.touch()
        if uid is not None:
            os.chown(path, uid, gid)
        os.chmod(path, 0o600)


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


def _kill_group(proc) -> None:
    if isinstance(proc, warm.WarmProcess):
        proc.kill_group()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class _Sandbox:
    proc: subprocess.Popen
    uid: int | None
    cgroup: _Cgroup | None

    def kill(self) -> None:
        _kill_group(self.proc)
        if self.cgroup:
            self.cgroup.kill()
        if self.uid is not None:
            _kill_uid(self.uid)


# Every sandbox this process is running right now, by the pid of its first process.
_ACTIVE: dict[int, _Sandbox] = {}
_REFUSING = threading.Event()          # set by stop_all(): no new sandbox starts


def stop_all(refuse_new: bool = True) -> int:
    """Kill every sandbox this process is running right now; returns how many there were.

    For `course grade` on Ctrl-C (and any other early exit of the grader): each sandbox's process
    group, its cgroup and every process of its sandbox uid get SIGKILL. Safe to call from the main
    thread while worker threads are still waiting on their sandboxes (they then return a killed
    RunResult and clean up as usual); takes no lock, so it may also be called from a signal handler.
    Calling it twice does no harm.

    refuse_new: from now on run_worker starts nothing and returns at once (limit "stopped"), so the
    pipeline's restarts do not start new sandboxes while the grader exits; allow_new() undoes it.
    The results of notebooks that were being graded are not grades: do not record them."""
    if refuse_new:
        _REFUSING.set()
    running = list(_ACTIVE.values())
    for sandbox in running:
        sandbox.kill()
    return len(running)


def allow_new() -> None:
    """Undo stop_all(refuse_new=True): sandboxes may start again."""
    _REFUSING.clear()


# ----------------------------------------------------------------------------
# the warm start (warm.py): one zygote per grader process, in namespaces mode


_ZYGOTE: list = []                     # [warm.Client] once started; [None] once it failed
_ZYGOTE_LOCK = threading.Lock()


def prestart() -> None:
    """Start the zygote now, so that its `import torch` overlaps the grader's own work (course check
    calls it first). Does nothing where the warm start does not apply or was switched off."""
    import logging  # noqa: F401  (its fork hooks must exist before the probe thread forks while this
    #                              thread goes on importing: else a fork meets them half-registered)
    if os.environ.get("COURSE_SANDBOX") != "plain" and shutil.which("unshare"):
        _warm_client(wait=False)
    # not a daemon: an early exit (a bad notebook) waits for the probe instead of finalizing the
    # interpreter while that thread forks
    threading.Thread(target=sandbox_mode, name="course-sandbox-probe").start()


def _warm_client(wait: bool = True) -> "warm.Client | None":
    if not (warm.enabled() and _is_root()):
        return None
    with _ZYGOTE_LOCK:
        if not _ZYGOTE:
            try:
                hidden = [str(p.resolve()) for p in hidden_paths(_secret_paths())]
                _ZYGOTE.append(warm.Client(hidden, shown_paths()))
            except (OSError, subprocess.SubprocessError) as exc:
                _warm_failed(f"{type(exc).__name__}: {exc}")
        client = _ZYGOTE[0]
    if client is None or not wait or sandbox_mode() != "namespaces":
        return client if not wait else None
    try:
        client.wait_ready()
    except warm.WarmUnavailable as exc:
        _warm_failed(str(exc))
        return None
    return client


def _secret_paths() -> list[str]:
    """The course secret's file, when the environment names it (hidden from the zygote too)."""
    return [os.environ[name] for name in ("COURSE_SECRET_FILE",) if os.environ.get(name)]


def _warm_failed(why: str) -> None:
    """Cold from now on, said once on stderr."""
    with _WARM_NOTE:
        if _ZYGOTE and _ZYGOTE[0] is not None:
            _ZYGOTE[0].close()
        _ZYGOTE[:] = [None]
        if not _WARM_NOTED:
            _WARM_NOTED.append(why)
            print(f"note: the warm sandbox start is not available ({why}); sandboxes start cold",
                  file=sys.stderr, flush=True)


_WARM_NOTE = threading.RLock()
_WARM_NOTED: list[str] = []


def _run_warm(directory: Path, uid: int, extra_hidden, limits: Limits, reference: bool,
              cgroup: "_Cgroup | None", progress: Path | None) -> RunResult | None:
    """The namespaces sandbox forked from the zygote; None when it could not be (start it cold)."""
    client = _warm_client()
    if client is None:
        return None
    request = {"directory": str(directory), "uid": uid, "gid": uid, "disk": limits.disk,
               "prelude": _prelude(directory, extra_hidden, reference, final_exec=False),
               "cwd": str(directory / "work"), "env": child_env(directory / "work"),
               "cgroups": [os.fsdecode(p) for p in (cgroup.join_paths() if cgroup else [])],
               "rlimits": _rlimits(limits, limits.processes)}
    try:
        result = _run(None, None, None, None, limits, "namespaces", uid, cgroup, progress,
                      spawn=lambda: client.spawn(request))
    except warm.WarmUnavailable as exc:
        if not client.alive():
            _warm_failed(str(exc))
        return None
    if result.extra.get("lost") and not _REFUSING.is_set():
        _warm_failed("the zygote ended during a job")
        return None
    return result


def run_worker(directory: Path, writable: list[str], limits: Limits, extra_hidden=(),
               reference: bool = False) -> RunResult:
    """Run `python -I -m autograde.grader.worker DIRECTORY` sandboxed; never raises for the child's sake.

    reference: the job's steps need the reference model, so its files stay readable."""
    directory = Path(directory).resolve()
    mode = sandbox_mode()
    if _REFUSING.is_set():
        text = "not started: the grader is stopping"
        return RunResult(None, False, text, len(text), 0.0, mode, time.time(), limit="stopped")
    clean_stale()
    uid = UIDS.take() if _is_root() else None      # root: a uid of its own, in both modes
    cgroup = None
    try:
        _register_dir(directory)
        _prepare_dir(directory, uid, writable)
        cgroup = _Cgroup.create(uid, limits)
        progress = directory / "out" / "progress.jsonl" if "out/progress.jsonl" in writable else None
        if mode == "namespaces" and uid is not None and _warm_client() is not None:
            result = _run_warm(directory, uid, extra_hidden, limits, reference, cgroup, progress)
            if result is not None:
                return result
            _prepare_dir(directory, uid, writable, fresh=True)     # the zygote failed it: start cold
            if cgroup:
                cgroup.remove()
            cgroup = _Cgroup.create(uid, limits)
        if mode == "namespaces":
            cmd = _namespace_command(directory, uid, extra_hidden, limits, reference=reference)
            preexec = _preexec(limits, limits.processes, cgroup, os.getpid())
            cwd = "/"
        else:
            cmd = [sys.executable, "-I", "-m", "autograde.grader.worker", str(directory)]
            nproc = limits.processes if uid is not None else _user_process_count() + limits.processes
            drop_to = None
            if uid is not None:
                if shutil.which("setpriv"):
                    cmd = _plain_setpriv(uid, directory) + cmd
                else:
                    drop_to = uid
            preexec = _preexec(limits, nproc, cgroup, os.getpid(), drop_to=drop_to)
            cwd = directory / "work"
        return _run(cmd, preexec, child_env(directory / "work"), cwd, limits, mode, uid, cgroup, progress)
    finally:
        if cgroup:
            cgroup.remove()
        if uid is not None:
            _kill_uid(uid)
            UIDS.give(uid)


def _run(cmd, preexec, env, cwd, limits: Limits, mode: str, uid: int | None = None,
         cgroup: _Cgroup | None = None, progress: Path | None = None, spawn=None) -> RunResult:
    """spawn: start the sandbox some other way than Popen(cmd) (the warm start: it returns a
    warm.WarmProcess, or raises warm.WarmUnavailable, which reaches the caller)."""
    start, started = time.monotonic(), time.time()
    clock = _Clock(cgroup, start)
    try:
        proc = spawn() if spawn else subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, preexec_fn=preexec, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        text = f"the sandbox could not start: {exc}"
        return RunResult(126, False, text, len(text), round(time.monotonic() - start, 3), mode, started)
    sandbox = _Sandbox(proc, uid, cgroup)
    _ACTIVE[proc.pid] = sandbox
    if _REFUSING.is_set():                 # stop_all() ran while this one was starting and did not see it
        sandbox.kill()
    try:
        keep, counter = bytearray(), [0]
        reader = threading.Thread(target=_drain, args=(proc.stdout, limits.output_limit, keep, counter),
                                  daemon=True)
        reader.start()
        limit, seconds = _watch(proc, limits, progress, clock)
        sandbox.kill()                     # also any stragglers: the group, the cgroup, the uid
        proc.wait()
        reader.join(timeout=5)
        cpu = clock.cpu()
        if not limit and cgroup and cgroup.memory_events() and proc.returncode != 0:
            limit = "memory"
        return RunResult(None if limit in ("wall", "call") else proc.returncode, limit in ("wall", "call"),
                         bytes(keep).decode("utf-8", errors="replace"), counter[0],
                         round(time.monotonic() - start, 3), mode, started, limit=limit, limit_seconds=seconds,
                         cpu_seconds=None if cpu is None else round(cpu, 3),
                         extra={"start": "warm", "lost": True} if getattr(proc, "lost", False) and not limit
                         else {"start": "warm"} if spawn else {})
    finally:
        _ACTIVE.pop(proc.pid, None)


class _Clock:
    """What the time limits count: the sandbox's own CPU time, read from its cgroup (all its
    processes together, capped at Limits.cpus cores: a neighbour spinning many processes slows it
    no more than its share), or wall time where no cgroup counts it. Wall time is read too: the
    backstop (WALL_FACTOR times a limit) that ends a sandbox that sleeps instead of computing."""

    def __init__(self, cgroup: "_Cgroup | None", start: float):
        self.cgroup, self.start = cgroup, start
        self.base = cgroup.cpu_seconds() if cgroup else None

    def cpu(self) -> float | None:
        """CPU seconds since the start (None: no cgroup counts them)."""
        if self.base is None:
            return None
        now = self.cgroup.cpu_seconds()
        return None if now is None else max(0.0, now - self.base)

    def read(self) -> tuple[float, float]:
        """(counted seconds, wall seconds) since the start."""
        wall = time.monotonic() - self.start
        cpu = self.cpu()
        return (wall if cpu is None else cpu), wall


class _ProgressWatch:
    """Follows the worker's progress file: which cell or call runs now, and since when (the parent's
    clock: the child's timestamps are not trusted)."""

    def __init__(self, path: Path | None):
        self.path, self.offset, self.partial = path, 0, b""
        self.open: dict[str, tuple[float, float]] = {}    # "cell" / "case" -> the clock at its start

    def poll(self, now: tuple[float, float] = (0.0, 0.0)) -> None:
        """now: the clock's reading (counted, wall) that a start seen in this poll gets."""
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
        except OSError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-4096:]
        from autograde.protocol import progress_events   # (imports torch: not before a sandbox runs)

        for event in progress_events(lines):
            for kind in ("cell", "case", "step"):
                if isinstance(event.get(kind), int):
                    if event.get("phase") == "start":
                        self.open[kind] = now
                    else:
                        self.open.pop(kind, None)
                        if kind == "step":
                            self.open.pop("case", None)

    def running_since(self) -> tuple[float, float] | None:
        """The clock when the cell or the call now running began (None: neither runs)."""
        if "case" in self.open:
            return self.open["case"]
        return self.open.get("cell")


def _watch(proc: subprocess.Popen, limits: Limits, progress: Path | None, clock: _Clock) -> tuple[str, float]:
    """Wait for the child; ('wall', s) (the whole run) or ('call', s) (one cell or call) when the
    parent had to stop it, else ('', 0). Each limit counts the clock's seconds (the sandbox's CPU
    time), with WALL_FACTOR times as many seconds of wall time as the backstop."""
    watch = _ProgressWatch(progress if limits.call_timeout else None)
    per_call = limits.call_timeout + max(GRACE, 0.25 * limits.call_timeout)
    while True:
        try:
            proc.wait(timeout=0.2)
            return "", 0.0
        except subprocess.TimeoutExpired:
            pass
        used, wall = now = clock.read()
        if used >= limits.timeout or wall >= WALL_FACTOR * limits.timeout:
            return "wall", limits.timeout
        watch.poll(now)
        since = watch.running_since()
        if since is not None and (used - since[0] >= per_call or wall - since[1] >= WALL_FACTOR * per_call):
            return "call", limits.call_timeout


def _process_uids() -> dict[int, tuple[int, int]]:
    """pid -> (real, effective uid) of every live process (from /proc/PID/status, which, unlike the
    owner of /proc/PID, a process cannot change by making itself non-dumpable)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"State:") and line.split()[1:2] in ([b"Z"], [b"X"]):
                        break                                  # already dead, waiting to be reaped
                    if line.startswith(b"Uid:"):
                        real, effective = line.split()[1:3]
                        found[int(entry.name)] = (int(real), int(effective))
                        break
        except (OSError, ValueError):
            continue
    return found


def _uid_processes(uid: int) -> list[int]:
    """The live processes whose real or effective uid is `uid`."""
    return [pid for pid, uids in _process_uids().items() if uid in uids]


def _pool_processes() -> dict[int, int]:
    """pid -> sandbox uid, for every live process that runs as one of the pool's uids."""
    pool = range(FIRST_UID, FIRST_UID + _UidPool.SIZE)
    return {pid: next(u for u in uids if u in pool) for pid, uids in _process_uids().items()
            if any(u in pool for u in uids)}


def _kill_uid(uid: int) -> None:
    """Kill whatever still runs as the sandbox uid (a process that left the group, the namespace and
    the cgroup, or one that a dead grader left behind). Usually nothing does: a look at /proc is
    enough, and the parent (with torch loaded, slow to fork) forks only when something is found."""
    for attempt in range(3):
        if not _kill_all(_uid_processes(uid)):
            return
        time.sleep(0.02 * (attempt + 1))   # a killed process needs a moment to exit (longer under load)
    _kill_uid_by_fork(uid)                 # still some: a fork bomb that outruns the loop above


def _kill_all(pids) -> bool:
    """SIGKILL each pid (gone already: fine); whether there were any."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return bool(pids)


def _kill_uid_by_fork(uid: int) -> None:
    pid = os.fork()
    if pid == 0:                           # child: become the uid, kill(-1) reaches exactly its processes
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(20):
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    # the grader's other threads may hold locks at the fork that the child's at-fork handlers need:
    # never wait for the child for ever (a stuck child is killed; the uid is swept again next time)
    deadline = time.monotonic() + 5.0
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.01)
