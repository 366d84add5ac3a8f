"""A warm start for the namespaces sandbox: a fork server ("zygote") that has imported torch.

Trusted side. `python -I -m autograde.grader.worker` spends most of its start-up on `import torch`;
forking a process that has already imported it costs milliseconds. The grader (root) starts one
zygote per run, `python -I -m autograde.grader.warm FD HIDDEN_JSON`, which imports the worker's
modules (torch, safetensors, autograde.protocol, the checks' runner) and then waits. It holds
nothing secret: no job, no course secret, no hidden file (an audit hook refuses, in the zygote,
every Python-level open outside the interpreter, the package and the system folders, and under
the hidden paths; it refuses to serve if a module came from one), and it never runs a torch
operation (no thread pool: it serves only while it has a single thread).

For each job the grader sends one request over a private socket (the cold path's own pieces:
the mount prelude without its final exec, the environment, the rlimits, the cgroup, the uid)
with the job's stdout pipe and a socket for the job's status. Then:

    zygote (root, pdeathsig: the grader)
      fork -> A (root): pdeathsig (the zygote), setsid, joins the job's cgroup, rlimits,
                        unshare(NEWNS | NEWNET | NEWPID | NEWIPC), / made private (what unshare --fork
                        --kill-child --mount-proc --propagation private does)
        fork -> B: pid 1 of the new pid namespace, pdeathsig (A), /proc mounted anew, the shell
                   prelude as the cold path runs it (quota tmpfs, masks), then the capability
                   bounding set dropped, groups cleared, the pool gid and uid, no_new_privs,
                   pdeathsig again, the cleaned environment, cwd the work dir, and the worker's
                   main in this interpreter. A waits for B and ends as B ended (status or signal).

The zygote reports A's pid, then A's wait status, on the job's socket; a "kill" on that socket
(stop_all, a time limit) kills A's process group while A is still unreaped (no pid reuse), and a
closed socket (the grader's thread gone) kills it too. A zygote that cannot start, or dies, makes
the grader fall back to the cold start (sandbox.py), with one line on stderr.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
CAP_VERSION_3 = 0x20080522
ENV_SWITCH = "COURSE_SANDBOX_WARM"          # "off": every sandbox starts cold
READY_SECONDS = 120.0                       # the zygote's imports, on a loaded machine
MAX_MESSAGE = 1 << 20

try:
    LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:                             # not Linux: the cold start only
    LIBC = None


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def set_pdeathsig() -> None:
    if LIBC is not None:
        _check(LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def apply_rlimits(rlimits) -> None:
    """[(resource number, value)]: soft = hard = value. The cold path's preexec applies the same list."""
    for number, value in rlimits:
        resource.setrlimit(number, (value, value))


def join_cgroup(paths) -> None:
    """Write this process's pid into each cgroup.procs: every later fork is counted."""
    for path in paths:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------
# the zygote (runs as `python -I -m autograde.grader.warm FD HIDDEN_JSON`)


class _ReadGuard:
    """Audit hook, armed in the zygote only: a Python-level open must stay inside `allowed` roots
    and outside `hidden` ones. Forks disarm it (it cannot be removed; it costs a comparison)."""

    def __init__(self, allowed: list[str], hidden: list[str]):
        self.allowed = [a.rstrip("/") + "/" for a in allowed]
        self.hidden = [h.rstrip("/") for h in hidden]
        self.armed = True

    def __call__(self, event, args):
        if not self.armed or event != "open":
            return
        path = args[0]
        if isinstance(path, int):
            return
        path = os.path.abspath(os.fsdecode(path))
        inside = any(path.startswith(a) or path + "/" == a for a in self.allowed)
        hidden = any(path == h or path.startswith(h + "/") for h in self.hidden)
        if hidden or not inside:
            raise PermissionError(f"the warm sandbox start may not read {path}")


def _allowed_roots(shown=()) -> list[str]:
    """The interpreter, the package, the system folders, and `shown`: what the sandbox shows of the
    machine (sandbox.shown_paths(), every sys.path entry of the interpreter included)."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1]
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             str(package), "/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc", "/proc", "/sys", "/dev", *shown}
    return sorted({os.path.realpath(r) for r in roots} | roots)


class Zygote:
    """The server side: imports, then forks one sandbox per request."""

    def __init__(self, control: socket.socket, hidden: list[str], shown=()):
        self.control, self.hidden = control, hidden
        self.jobs: dict[int, socket.socket] = {}          # A's pid -> the job's status socket
        self.pid = os.getpid()
        self.guard = _ReadGuard(_allowed_roots(shown), hidden)

    def load(self) -> None:
        """Import what the worker imports (torch first), with the read guard armed."""
        sys.addaudithook(self.guard)
        import copy  # noqa: F401
        import _socket  # noqa: F401
        import autograde.grader.worker  # noqa: F401  (torch, safetensors, protocol, checks.runner)

        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or ""
            if any(where == h or where.startswith(h + "/") for h in self.hidden):
                raise RuntimeError(f"module {name} was loaded from a hidden path")
        with open("/proc/sys/kernel/cap_last_cap") as f:
            self.last_cap = int(f.read())

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        _send(self.control, {"ready": True, "pid": self.pid})
        while True:
            socks = list(self.jobs.values())
            readable, _, _ = select.select([self.control, wake_r, *socks], [], [], 1.0)
            if self.control in readable and not self._request():
                return                                        # the grader closed its end: done
            if wake_r in readable:
                os.read(wake_r, 4096)
            for pid, sock in list(self.jobs.items()):
                if sock in readable:
                    try:
                        data = sock.recv(64)
                    except OSError:
                        data = b""
                    if data == b"kill" or not data:            # asked, or the grader's thread is gone
                        _kill_group(pid)
            self._reap()

    def _request(self) -> bool:
        try:
            message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
        except OSError:
            return False
        if not message:
            return False
        status_sock = socket.socket(fileno=fds[0]) if fds else None
        try:
            request = json.loads(message)
            if len(fds) != 2:
                raise ValueError("a request needs a status socket and an output pipe")
            if len(os.listdir("/proc/self/task")) != 1:
                raise RuntimeError("the zygote has started threads; a fork would not be safe")
            pid = os.fork()
            if pid == 0:
                status_sock.detach()                          # closed in the fork with the rest
                self._child(request, fds[1])                  # never returns
            os.close(fds[1])
            self.jobs[pid] = status_sock
            _send(status_sock, {"pid": pid})
        except Exception as exc:                              # this job starts cold instead
            for fd in fds[1:]:
                _close(fd)
            if status_sock is not None:
                try:
                    _send(status_sock, {"error": f"{type(exc).__name__}: {exc}"[:300]})
                finally:
                    status_sock.close()
        return True

    def _reap(self) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sock = self.jobs.pop(pid, None)
            if sock is not None:
                try:
                    _send(sock, {"status": status})
                except OSError:
                    pass
                sock.close()

    # -- in the fork (A, then B) -------------------------------------------------------------

    def _child(self, request: dict, output_fd: int) -> None:
        """A: root, outside the new pid namespace; waits for B and ends as it ended."""
        status = 126
        try:
            self.guard.armed = False
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
            set_pdeathsig()
            if os.getppid() != self.pid:                      # the zygote died before the line above
                os._exit(137)
            os.setsid()
            join_cgroup(request["cgroups"])
            apply_rlimits(request["rlimits"])
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            for sock in (self.control, *self.jobs.values()):  # the objects forget their descriptors,
                sock.detach()                                 # which closerange closes below
            self.jobs.clear()
            os.closerange(3, 1 << 16)
            _check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
            _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
            alive_r, alive_w = os.pipe()                      # B sees EOF here once A is gone
            pid = os.fork()
            if pid == 0:
                os.close(alive_w)
                self._sandbox(request, alive_r)               # never returns
            os.close(alive_r)
            while True:
                try:
                    _, wait_status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
            if os.WIFSIGNALED(wait_status):                   # as unshare --fork does: the same signal
                sig = os.WTERMSIG(wait_status)
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)
            status = os.waitstatus_to_exitcode(wait_status)
        except BaseException as exc:
            _say(f"the sandbox could not start: {type(exc).__name__}: {exc}")
        os._exit(status & 0xFF)

    def _sandbox(self, request: dict, alive_r: int) -> None:
        """B: pid 1 of the new namespaces; the same isolation as the cold path, then the worker."""
        status = 126
        try:
            set_pdeathsig()
            _exit_if_parent_gone(alive_r)
            _check(LIBC.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
            directory, uid, gid = request["directory"], request["uid"], request["gid"]
            prelude = subprocess.run(["sh", "-c", request["prelude"], "sandbox-prelude", directory, str(uid),
                                      str(gid), str(request["disk"])], stdin=subprocess.DEVNULL,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, close_fds=True)
            if prelude.returncode != 0:
                os._exit(prelude.returncode & 0xFF)
            os.chdir(request["cwd"])
            self._drop_privileges(uid, gid)
            set_pdeathsig()                                   # the uid change cleared it
            _exit_if_parent_gone(alive_r)
            os.close(alive_r)
            os.environ.clear()
            os.environ.update(request["env"])
            status = _run_worker(directory)
        except BaseException as exc:
            _say(f"the sandbox could not start: {type(exc).__name__}: {exc}")
        os._exit(status & 0xFF)

    def _drop_privileges(self, uid: int, gid: int) -> None:
        """setpriv --reuid --regid --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs."""
        for cap in range(self.last_cap + 1):
            _check(LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)                           # clears permitted, effective, ambient
        header = (ctypes.c_uint32 * 2)(CAP_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()                        # effective, permitted, inheritable: none
        _check(LIBC.capset(header, data), "capset")
        _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        # the uid change made the process non-dumpable; the cold start's exec of python makes it
        # dumpable again (its /proc/self/* then belongs to the sandbox uid): the same here
        _check(LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _run_worker(directory: str) -> int:
    """The worker's main in this interpreter, as `python -I -m autograde.grader.worker DIR` would."""
    import tempfile

    from autograde.grader import worker

    tempfile.tempdir = None                                   # TMPDIR is the job's now
    sys.argv = [worker.__file__, directory]
    sys.modules["__main__"] = worker                          # as `-m` makes it in the cold start
    worker.__name__ = "__main__"
    return worker.run(directory, boot=time.time())


def _exit_if_parent_gone(alive_r: int) -> None:
    readable, _, _ = select.select([alive_r], [], [], 0)
    if readable:
        os._exit(137)


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _say(line: str) -> None:
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode())


def _recv(sock: socket.socket) -> dict | None:
    """One message; None when the other side closed."""
    data = sock.recv(MAX_MESSAGE)
    return json.loads(data) if data else None


def serve_main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)              # Ctrl-C is the grader's to handle (stop_all)
    set_pdeathsig()
    if os.getppid() != int(argv[2]):                          # the grader died before the line above
        return 1
    zygote = Zygote(control, json.loads(argv[1]), json.loads(argv[3]) if len(argv) > 3 else ())
    try:
        zygote.load()
    except BaseException as exc:
        try:
            _send(control, {"error": f"{type(exc).__name__}: {exc}"[:300]})
        except OSError:
            pass
        return 1
    zygote.serve()
    return 0


# ----------------------------------------------------------------------------
# the grader's side


class WarmUnavailable(Exception):
    """The zygote could not start or take this job: start it cold."""


class WarmProcess:
    """A sandbox started by the zygote, shaped like the subprocess.Popen that sandbox._run expects."""

    def __init__(self, pid: int, status: socket.socket, stdout):
        self.pid, self.status, self.stdout = pid, status, stdout
        self.returncode: int | None = None
        self.lost = False                                     # the zygote died before A ended

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        self.status.settimeout(timeout)
        try:
            message = _recv(self.status)
        except socket.timeout:
            raise subprocess.TimeoutExpired("sandbox", timeout) from None
        except OSError:
            message = None
        if message is None or "status" not in message:
            self.lost, self.returncode = True, -signal.SIGKILL  # A and B died with the zygote
        else:
            self.returncode = os.waitstatus_to_exitcode(message["status"])
        self.status.close()
        return self.returncode

    def kill_group(self) -> None:
        """SIGKILL A's process group, by the zygote (which has not reaped A yet, so no pid reuse)."""
        if self.returncode is None:
            try:
                self.status.send(b"kill")
            except OSError:
                pass


class Client:
    """The grader's handle on its zygote; one per grader process."""

    def __init__(self, hidden: list[str], shown=()):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = _start_from_keeper([sys.executable, "-I", "-m", "autograde.grader.warm",
                                            str(theirs.fileno()), json.dumps(hidden), str(os.getpid()),
                                            json.dumps(list(shown))],
                                           theirs.fileno())
        finally:
            theirs.close()
        self.control, self.lock, self.ready, self.error = ours, threading.Lock(), False, ""

    def wait_ready(self) -> None:
        with self.lock:
            if self.ready:
                return
            if self.error:
                raise WarmUnavailable(self.error)
            self.control.settimeout(READY_SECONDS)
            try:
                message = _recv(self.control)
            except (OSError, ValueError) as exc:
                message = {"error": f"no answer ({type(exc).__name__})"}
            self.control.settimeout(None)
            if not message or not message.get("ready"):
                self.error = (message or {}).get("error") or "it ended before it was ready"
                self.close()
                raise WarmUnavailable(self.error)
            self.ready = True

    def spawn(self, request: dict) -> WarmProcess:
        """Start one sandbox; WarmUnavailable when the zygote cannot (then start it cold)."""
        self.wait_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        read_end, write_end = os.pipe()
        try:
            with self.lock:
                socket.send_fds(self.control, [json.dumps(request).encode()], [theirs.fileno(), write_end])
            ours.settimeout(30)
            reply = _recv(ours)
        except (OSError, ValueError) as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            theirs.close()
            os.close(write_end)
        if not reply or "pid" not in reply:
            ours.close()
            os.close(read_end)
            if self.proc.poll() is not None:
                self.error = "it ended"
            raise WarmUnavailable((reply or {}).get("error") or "the zygote ended")
        return WarmProcess(reply["pid"], ours, open(read_end, "rb"))

    def alive(self) -> bool:
        return not self.error and self.proc.poll() is None

    def close(self) -> None:
        """The zygote ends when its control socket closes (and with the grader in any case)."""
        try:
            self.control.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start_from_keeper(cmd: list[str], fd: int) -> subprocess.Popen:
    """Popen from a thread that lives as long as the grader: the parent-death signal fires when the
    *thread* that forked ends, and the first job may be started by a pool thread that ends early."""
    box: dict = {}
    started = threading.Event()

    def keeper():
        try:
            box["proc"] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, cwd="/", env=zygote_env(), pass_fds=(fd,),
                                           preexec_fn=set_pdeathsig)
        except BaseException as exc:
            box["error"] = exc
        started.set()
        if "proc" in box:
            threading.Event().wait()                          # never ends (a daemon thread)

    threading.Thread(target=keeper, name="course-zygote-parent", daemon=True).start()
    started.wait()
    if "error" in box:
        raise box["error"]
    return box["proc"]


def zygote_env() -> dict:
    """The sandbox's environment (torch reads its thread settings at import), no home, no TMPDIR."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/nonexistent",
            "TMPDIR": "/nonexistent", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").lower() not in ("off", "0", "no", "cold") and LIBC is not None


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
