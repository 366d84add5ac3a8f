"""UNTRUSTED SIDE. Runs inside the sandbox: `python -I -m autograde.grader.worker DIR`, or, with the
warm start (autograde/grader/warm.py), run(DIR) in a fork of a zygote that imported this module.

Reads DIR/job.json (the cells to run, the steps to call) and DIR/cases_N.json
(+ .safetensors: the inputs, in the wire format), then

1. blocks the network and imports of the grader (autograde.reference*,
   autograde.checks*) for everything that follows;
   When the job needs the reference model (job["reference"]: a step passes it,
   or a setup cell imports it), the model is loaded first and the notebook may
   import autograde.reference.model and .checkpoint, nothing else of it;
2. runs the locked setup cells and the student's solution cells, each in
   try/except (SystemExit included), with `autograde.notebook` replaced by a
   stub so that `check(...)` does nothing here;
3. for each step, calls the student's function on every case under
   runner.forbid plus a profiler that catches forbidden functions called
   through an alias, and writes DIR/out/step_N.json (+ .safetensors).

Progress lines go to DIR/out/progress.jsonl so that after a timeout the parent
knows which cell or step was running. Nothing here decides a score: the parent
judges the outputs itself and trusts nothing in these files but their values,
and the rule reports (forbidden_call, mutated_input, tampered, monitor).

Known limit: the output files belong to the sandbox's user, whom the student's code runs as, so a
later step's code can overwrite an earlier step's report (a file with the right values but no
forbidden_call). Closing it needs a channel the process cannot write after the fact (a key the
worker receives on a pipe before any student code and uses to sign each report, checked by the
parent): that is the sandbox's (sandbox.py, warm.py), not done yet.
"""
from __future__ import annotations

import time

BOOT = time.time()                   # before torch is imported: the parent times the start-up with it

import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

TORCH_LOADED = time.time()           # the notebook's own `import torch` would cost the same

from autograde.checks.runner import ForbiddenCall, _resolve, call, changed_argument, forbid, snapshot  # noqa: E402
from autograde import protocol as wire  # noqa: E402  (the wire format and the spy)
from autograde.grader import WALL_FACTOR  # noqa: E402

# What the notebook may import from the reference when the job provides the model. Calls of
# forbidden functions are caught by identity (AliasWatch), however the student reaches them.
REFERENCE_MODULES = ("autograde.reference.model", "autograde.reference.checkpoint")
BLOCKED_IMPORTS = ("autograde.reference", "autograde.checks", "autograde.grader", "autograde.protocol")


# ----------------------------------------------------------------------------
# protections installed before any student code


class _BlockGrader:
    """A meta path finder that refuses the grader's own modules."""

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED_IMPORTS):
            raise ImportError(f"{name} is not available while grading")
        return None


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled while grading")


def block_network() -> None:
    import _socket
    import socket

    for module in (socket, _socket):
        for name in ("socket", "create_connection", "socketpair", "fromfd", "create_server", "getaddrinfo"):
            if hasattr(module, name):
                setattr(module, name, _no_network)


def notebook_stub() -> types.ModuleType:
    """What `from autograde.notebook import setup, check` gives inside the sandbox."""
    stub = types.ModuleType("autograde.notebook")
    stub.setup = lambda lang="en", seed=0: (torch.manual_seed(seed), torch.device("cpu"))[1]
    stub.device = lambda: torch.device("cpu")
    stub.check = lambda *args, **kwargs: {"passed": None}
    stub.save_piece = lambda *args, **kwargs: None
    stub.load_piece = lambda step, reference: reference
    stub.CheckFailed = AssertionError
    return stub


# ----------------------------------------------------------------------------
# the reference model, for steps whose cases pass it ($model on the wire)


SandboxSpy = wire.RecordingSpy      # the reference model behind a call recorder (autograde.protocol)


def private_reference_model():
    """The cases' own copy of the reference model, made before any student code runs (the
    notebook's load_reference() returns the loaded original, which its cells may change)."""
    from autograde.reference.checkpoint import load_reference

    return copy.deepcopy(load_reference().model).requires_grad_(False)


def expose_reference_modules(real: dict[str, types.ModuleType]) -> None:
    """Make REFERENCE_MODULES importable again (after every grader module was made unreachable),
    under a bare `autograde.reference` package that has no other submodule."""
    import autograde

    package = types.ModuleType("autograde.reference")
    package.__path__ = []
    sys.modules["autograde.reference"] = package
    autograde.reference = package
    for name, module in real.items():
        sys.modules[name] = module
        setattr(package, name.rsplit(".", 1)[1], module)


# ----------------------------------------------------------------------------
# libraries left as they were


class LibraryWatch:
    """Identity snapshots of the namespaces the grader's own code relies on (builtins, torch,
    Tensor, torch.nn.functional, ...), taken before any student code runs. changed() names every
    entry that was rebound or deleted since (additions are harmless and ignored). The static pass
    refuses the direct ways to monkeypatch a library; this catches the indirect ones."""

    OWNERS = ("builtins", "torch", "torch.Tensor", "torch.nn", "torch.nn.functional", "torch.nn.Module",
              "torch.linalg", "torch.special", "torch.fft", "math", "json", "safetensors.torch")

    def __init__(self):
        import builtins
        import math  # noqa: F401  (imported so that it can be watched)

        self.saved = []
        for dotted in self.OWNERS:
            owner = builtins if dotted == "builtins" else _lookup(dotted)
            if owner is not None:
                self.saved.append((dotted, owner, dict(vars(owner))))

    def changed(self) -> list[str]:
        missing = object()
        out = []
        for dotted, owner, before in self.saved:
            now = vars(owner)
            out += [f"{dotted}.{k}" for k, v in before.items()
                    if now.get(k, missing) is not v and not _library_rewrap(f"{dotted}.{k}", now.get(k, missing), v)]
        return out[:20]


TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
REWRAPPED_BY_TORCH = ("torch.manual_seed",)       # torch._dynamo's import wraps it (torch/_compile.py)


def _library_rewrap(name: str, new, old) -> bool:
    """torch wraps some of its own functions when one of its subsystems is first imported (the first
    op on a meta tensor, or torch.compile, imports torch._dynamo, which rebinds torch.manual_seed to a
    wrapper of itself). Such a rebinding is not the student's: the new function wraps the old one and
    its code lives in torch's own files, which student code cannot create (compile, types and code
    attributes are refused by the static pass). Only the names listed in REWRAPPED_BY_TORCH: any other
    library function rebound, even to a wrapper made of torch's own code, is still a change."""
    code = getattr(new, "__code__", None)
    return (name in REWRAPPED_BY_TORCH and getattr(new, "__wrapped__", None) is old and code is not None
            and os.path.abspath(code.co_filename).startswith(TORCH_DIR))


def _lookup(dotted: str):
    module, _, attribute = dotted.rpartition(".")
    try:
        found = sys.modules.get(dotted) or getattr(sys.modules[module], attribute)
    except (KeyError, AttributeError):
        return None
    return found


# ----------------------------------------------------------------------------
# forbidden calls through aliases


def resolve_all(names) -> dict[str, tuple | None]:
    """dotted name -> (owner, attribute), resolved once, before the grader's modules are blocked
    (so that a forbidden reference function is found even where the notebook cannot import it)."""
    return {name: _resolve(name) for name in names}


class MonitorGuard:
    """Keeps the call monitor (AliasWatch's profiler) switched on: an audit hook, installed before
    any student code runs, that no Python code can remove (PEP 578). Every sys.setprofile and
    sys.settrace, however the function was reached (a computed attribute the static pass missed,
    a C extension calling PyEval_SetProfile), raises the audit event the hook sees first. Only the
    worker's own switches, made through set_profile() below, go through; any other is refused
    (RuntimeError: the monitor stays on) and recorded. The same for sys.monitoring's callbacks
    (3.12+) and for adding another audit hook (which could refuse the worker's own switch).

    The record lives in the hook's closure, not on any object student code is given, and the
    worker reports it with every step (`tampered`), so that the parent fails the step. The hook
    refuses before the monitor is ever switched off: the parent's verdict does not depend on a
    profiler that the student's code could have replaced."""

    WATCHED = ("sys.setprofile", "sys.settrace", "sys.addaudithook", "sys.monitoring")
    NAME = "sys.setprofile (the grader's call monitor)"

    def __init__(self):
        allowed, armed, refused, watched = [False], [None], [], self.WATCHED
        bootstrap = threading.Thread._bootstrap_inner.__code__

        def hook(event, args):
            if allowed[0] or not event.startswith(watched):
                return
            if event == "sys.setprofile" and armed[0] is not None and threading._profile_hook is armed[0] \
                    and sys._getframe(1).f_code is bootstrap:
                return      # a thread that a library starts during a call takes the worker's own profiler
            refused.append(event)
            raise RuntimeError(f"{event} is not allowed while grading")

        def set_profile(function):
            allowed[0] = True
            try:
                sys.setprofile(function)
                armed[0] = function
            finally:
                allowed[0] = False

        sys.addaudithook(hook)
        self.set_profile = set_profile
        self.refused = lambda: list(dict.fromkeys(refused))
        self.tools = _monitoring_tools()

    def tampered(self) -> list[str]:
        """What the student's code tried to switch (empty: the monitor was never touched); on 3.12+,
        also a sys.monitoring tool registered since (the static pass refuses the name, this the deed)."""
        events = self.refused() + (["sys.monitoring"] if _monitoring_tools() != self.tools else [])
        return [f"{event} (the grader's call monitor)" for event in events]


def _monitoring_tools() -> tuple:
    """The names of sys.monitoring's six tool slots (Python 3.12+; empty before)."""
    monitoring = getattr(sys, "monitoring", None)
    return tuple(monitoring.get_tool(i) for i in range(6)) if monitoring is not None else ()


_GUARD: MonitorGuard | None = None          # installed by main(), once per process


class AliasWatch:
    """A profiler that notices calls to forbidden functions however they are reached
    (`f = F.scaled_dot_product_attention` saved before forbid() swapped the attribute, a reference
    function found through some object's __globals__): C functions by identity, Python functions
    by their code object.

    What is installed is a closure over read-only tables (sys.getprofile() hands the student's
    code that function, never this object): its state is reachable only through dunder attributes,
    which the static pass refuses. With a MonitorGuard, nothing but this class can switch it."""

    def __init__(self, names, targets: dict | None = None, guard: MonitorGuard | None = None):
        originals, codes, tensor_methods = {}, {}, set()
        for dotted in names:
            if dotted.startswith("torch.Tensor."):
                tensor_methods.add(dotted.rsplit(".", 1)[1])
            found = targets.get(dotted) if targets is not None else _resolve(dotted)
            if found is not None:
                function = getattr(*found)
                originals[id(function)] = dotted
                if hasattr(function, "__code__"):
                    codes[id(function.__code__)] = dotted
        self.guard = guard
        self.hits: list[str] = []
        self.profile = _profiler(types.MappingProxyType(originals), types.MappingProxyType(codes),
                                 frozenset(tensor_methods), self.hits)

    @property
    def hit(self) -> str | None:
        return self.hits[0] if self.hits else None

    def _set(self, function) -> None:
        if self.guard is not None:
            self.guard.set_profile(function)
        else:
            sys.setprofile(function)

    def __enter__(self):
        threading.setprofile(self.profile)     # for threads started during the call (before the guard's check)
        self._set(self.profile)
        return self

    def __exit__(self, *exc):
        tampered = sys.getprofile() is not self.profile
        threading.setprofile(None)
        self._set(None)
        if tampered and not self.hits:
            self.hits.append(MonitorGuard.NAME)


def _profiler(originals, codes, tensor_methods, hits: list):
    def profile(frame, event, arg):
        if hits:
            return
        if event == "call" and codes:
            name = codes.get(id(frame.f_code))
            if name:
                hits.append(name)
        elif event == "c_call":
            name = originals.get(id(arg))
            if name is None and getattr(arg, "__name__", None) in tensor_methods \
                    and isinstance(getattr(arg, "__self__", None), torch.Tensor):
                name = f"torch.Tensor.{arg.__name__}"
            if name:
                hits.append(name)
    return profile


# ----------------------------------------------------------------------------
# running


class CallTimeout(BaseException):
    """Raised by SIGPROF or SIGALRM inside a cell or a call that runs too long (BaseException: a
    bare `except Exception` in the student's code does not swallow it; the parent's clock catches
    whatever does)."""


class alarm:
    """A per-cell / per-call time limit (seconds; 0 = none) in CPU time, as the parent counts it
    (SIGPROF), with WALL_FACTOR times as much wall time for a cell or call that sleeps (SIGALRM)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        if self.seconds:
            signal.signal(signal.SIGPROF, self._fire)
            signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_PROF, self.seconds)
            signal.setitimer(signal.ITIMER_REAL, WALL_FACTOR * self.seconds)

    def __exit__(self, *exc):
        if self.seconds:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _fire(self, signum, frame):
        raise CallTimeout(f"took longer than {self.seconds:g} s")


class Progress:
    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8")

    def log(self, **event) -> None:
        event["t"] = time.time()
        self.file.write(json.dumps(event, ensure_ascii=True) + "\n")
        self.file.flush()


def run_cells(job: dict, ns: dict, progress: Progress) -> None:
    """Each cell in its own try: a broken cell costs only what depends on it."""
    for i, cell in enumerate(job["cells"]):
        if i in job.get("skip_cells", ()):
            continue
        progress.log(cell=i, phase="start")
        error = None
        try:
            with alarm(job.get("call_timeout", 0)):
                exec(compile(cell["source"], f"<cell {cell['id']}>", "exec"), ns)
        except BaseException as exc:   # SystemExit and KeyboardInterrupt too: the notebook goes on
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        progress.log(cell=i, phase="end", error=error)


def call_case(fn, args, kwargs, forbidden, seconds: float = 0, drive: str | None = None,
              targets: dict | None = None) -> dict:
    """One call of the student's function (or one drive: many calls) -> {"out": value} or {"err": [key, params]}.

    targets: the forbidden names resolved before the grader's modules were blocked (resolve_all).
    The inputs are snapshotted first: a call that changes one of them in place is reported."""
    before = tuple(snapshot(a) for a in args), {k: snapshot(v) for k, v in kwargs.items()}
    try:
        with alarm(seconds), AliasWatch(forbidden, targets, _GUARD) as watch, \
                forbid(tuple(forbidden), targets) as tripped:
            out = call(fn, args, kwargs, drive)
        if tripped:                    # a tripwire fired, and the student's code caught its error
            raise ForbiddenCall(tripped[0])
    except CallTimeout:
        return wire.case_err("timeout", seconds=f"{seconds:g}")
    except NotImplementedError:
        return wire.case_err("not_implemented", function=getattr(fn, "__name__", "?"))
    except ForbiddenCall as exc:
        return wire.case_err("forbidden_call", name=str(exc))
    except BaseException as exc:       # the student's bug (or an expected error), SystemExit included
        mro = [c.__name__ for c in type(exc).__mro__][:20]
        return wire.case_err("raised", error=type(exc).__name__, text=str(exc)[:300], mro=mro)
    if watch.hit:
        return wire.case_err("forbidden_call", name=watch.hit)
    where = changed_argument(before[0], args, before[1], kwargs)
    if where is not None:
        return wire.case_err("mutated_input", argument=where)
    return wire.case_out(out)


def call_and_record(fn, args, kwargs, forbidden, seconds: float, drive: str | None = None,
                    targets: dict | None = None) -> dict:
    """call_case, plus the spy's record of model calls when the case passes one."""
    result = call_case(fn, args, kwargs, forbidden, seconds, drive, targets)
    spies = [a for a in (*args, *kwargs.values()) if isinstance(a, SandboxSpy)]
    if spies and "out" in result:
        result = wire.case_out(result["out"], spies[0].record())
    return result


def exhausted(result: dict) -> bool:
    """A call that ran out of time or memory: calling the function again would only cost as much."""
    err = result.get("err")
    return bool(err) and (err[0] == "timeout" or (err[0] == "raised" and err[1].get("error") == "MemoryError"))


def run_step(directory: Path, index: int, step: dict, ns: dict, seconds: float, models: dict | None,
             spent: dict[str, dict], targets: dict | None = None, watch: LibraryWatch | None = None) -> None:
    """Call the function on every case. Once a call of a function has run out of time or memory
    (`spent`: function name -> that result), its later cases, here and in later steps, get the
    same result without another call: the step fails either way, and an infinite loop costs one
    time limit instead of one per case."""
    fn = ns.get(step["function"])
    cases = wire.read(directory / step["cases"], models=models)
    if not callable(fn):
        results = {"missing": True}
    else:
        outcomes = []
        drives = step.get("drives") or [None] * len(cases)
        # case events: the parent's own per-call clock (a notebook may block SIGALRM) starts at each call
        progress = Progress(directory / "out" / "progress.jsonl")
        try:
            for k, ((args, kwargs), drive) in enumerate(zip(cases, drives)):
                if step["function"] in spent:
                    outcomes.append(spent[step["function"]])
                    continue
                progress.log(case=k, phase="start")
                outcomes.append(call_and_record(fn, args, kwargs, step["forbidden"], seconds,
                                                drive if isinstance(drive, str) else None, targets))
                progress.log(case=k, phase="end")
                if exhausted(outcomes[-1]):
                    spent[step["function"]] = outcomes[-1]
        finally:
            progress.file.close()
        results = {"cases": outcomes}
    # what the parent needs besides the values: library entries changed, and the call monitor's state
    # (a report without "monitor" is taken by the parent as a monitor that was not there)
    extra = {"monitor": wire.MONITOR_GUARDED if _GUARD else "unguarded"}
    tampered = (watch.changed() if watch else []) + (_GUARD.tampered() if _GUARD else [])
    if tampered:
        extra["tampered"] = tampered
    try:
        wire.write(directory / "out" / f"step_{index}.json", {**results, **extra})
    except Exception as exc:           # the student's output could not be serialized
        wire.write(directory / "out" / f"step_{index}.json",
                   {"unwritable": f"{type(exc).__name__}: {exc}"[:300], **extra})


def main(directory: str) -> int:
    directory = Path(directory)
    job = json.loads((directory / "job.json").read_text(encoding="utf-8"))
    progress = Progress(directory / "out" / "progress.jsonl")
    torch.set_num_threads(1)
    models = {"window_probe": wire.WindowProbe}
    if job.get("reference") is True:
        private = private_reference_model()
        real = {name: sys.modules[name] for name in REFERENCE_MODULES}
        models.update({"model_fn": lambda: wire.NoGradModel(private), "spy": lambda: SandboxSpy(private)})
    targets = resolve_all({name for step in job["steps"] for name in step["forbidden"]})
    watch = LibraryWatch()
    global _GUARD
    _GUARD = _GUARD or MonitorGuard()  # before any student code: from here on, no one else switches the monitor
    sys.meta_path.insert(0, _BlockGrader())
    for name in [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED_IMPORTS)]:
        sys.modules[name] = None       # already loaded by the worker itself: unreachable by import
    import autograde
    for attribute in ("reference", "checks", "grader", "protocol"):   # nor as attributes of the package
        autograde.__dict__.pop(attribute, None)
    if job.get("reference") is True:
        expose_reference_modules(real)
    block_network()
    sys.modules["autograde.notebook"] = notebook_stub()
    ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    progress.log(boot=BOOT, torch=TORCH_LOADED, ready=True)
    run_cells(job, ns, progress)
    spent: dict[str, dict] = {}
    for i, step in enumerate(job["steps"]):
        if i < job.get("start_step", 0) or i in job.get("skip_steps", ()):
            continue
        progress.log(step=i, phase="start")
        run_step(directory, i, step, ns, job.get("call_timeout", 0), models, spent, targets, watch)
        progress.log(step=i, phase="end")
    progress.log(done=True)
    progress.file.close()
    return 0


def run(directory: str, boot: float | None = None) -> int:
    """The entry point, in a fresh interpreter (`python -I -m autograde.grader.worker DIR`) or in a
    fork of the warm start's zygote (autograde.grader.warm), which imported this module before any
    job existed: boot is then the moment of the fork (torch was already there). main() makes the
    grader's modules unreachable by import either way, whatever sys.modules already held."""
    global BOOT, TORCH_LOADED
    if boot is not None:
        BOOT = TORCH_LOADED = boot
    try:
        status = main(directory)
    except BaseException:              # the worker's own failure: reported as the interpreter would
        import traceback

        traceback.print_exc()
        status = 1
    # Skip the interpreter's teardown (torch's takes up to a second): every output file is
    # written and closed; flush what the notebook printed and leave.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:      # the notebook may have replaced or closed them
            pass
    return status


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -I -m autograde.grader.worker DIR", file=sys.stderr)
        sys.exit(2)
    os._exit(run(sys.argv[1]))
