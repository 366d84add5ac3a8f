"""Trusted: a static pass over the student's solution cells, in the parent, before anything runs.

The worker enforces its rules inside the student's process (a tripwire on each forbidden
function, a profiler that catches aliases, a record of the model's calls, a snapshot of the
inputs). Code in that process could undo any of them if it could reach the worker: rebind its
functions through `__main__` or `sys.modules`, find them through `gc` or a frame's globals,
replace the profiler, write its memory through `ctypes`, build such code at run time with
`eval`. This pass, run by the parent on the source text, refuses every such route, so that what
the worker reports can be believed; and it decides the forbidden-function rule on its own where
the source names a forbidden function.

Two kinds of findings:

    escape(cell, line, what)           anywhere in the solution cells: every step of the notebook
                                       fails ("grader_escape"), because nothing measured in that
                                       process can be trusted any more
    forbidden(step, name, cell, line)  a forbidden function named in code that the step's function
                                       can reach (its own body, and the notebook's functions,
                                       classes and globals it uses, transitively): that step fails

What is refused (see ESCAPE_* below): imports of the introspection and code-loading modules
(gc, inspect, ctypes, importlib, builtins, pickle, marshal, types, traceback, __main__, the
grader's own packages ...); of everything that runs code later or beside the worker, which
could rewrite what the worker reported (threading, multiprocessing, subprocess, signal, atexit,
weakref, os.fork/system/exec*/spawn*/kill, and __del__, __torch_function__ and
__torch_dispatch__ methods); changing an attribute of a module (monkeypatching torch or any
other library: `torch.equal = ...`, `setattr(torch, ...)`); the builtins eval, exec, compile, __import__, globals, locals, vars,
breakpoint; getattr/setattr/delattr/hasattr with a name that is not a constant string; dunder
attributes other than a few harmless ones (__init__, __name__, __class__ ...), which closes
__globals__, __code__, __dict__, __subclasses__, __builtins__ and the like; frame, traceback
and code-object attributes (f_back, f_globals, tb_frame, gi_frame, co_code ...); sys.modules,
sys._getframe, sys.setprofile/settrace/monitoring, the import hooks, threading.setprofile/
settrace; torch.ops, torch._C, torch.library (raw kernels under other names); string constants
that mention /proc.

Known limit (documented in the instructor guide): a process can still change its own memory
through a path to /proc built at run time from pieces; such code can at most evade the
forbidden-function rule or the in-place rule, never fake a correct output, which the parent
computes and compares itself.
"""
from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass, field

DUNDER = re.compile(r"__[A-Za-z0-9_]+__")

# Modules whose import alone is an escape route (matched on the dotted name and its parents).
ESCAPE_MODULES = frozenset({
    "__main__", "gc", "inspect", "ctypes", "_ctypes", "cffi", "importlib", "imp", "zipimport", "pkgutil",
    "runpy", "builtins", "__builtin__", "marshal", "pickle", "_pickle", "cPickle", "dill", "cloudpickle",
    "copyreg", "shelve", "types", "code", "codeop", "traceback", "_thread", "_signal", "sysconfig",
    "faulthandler", "tracemalloc", "bdb", "pdb", "trace", "cProfile", "profile", "dis", "_testcapi",
    "autograde.grader", "autograde.checks", "autograde.protocol", "torch._C", "torch.ops", "torch._ops", "torch.library",
    "torch.utils.cpp_extension", "torch._dynamo", "torch._inductor",
    # code that runs later or beside the worker (it could rewrite what the worker reported)
    "threading", "multiprocessing", "concurrent", "subprocess", "asyncio", "signal", "atexit", "weakref",
    "sched", "pty", "selectors",
})
# Methods whose definition lets student code run inside the worker's own steps, later or hidden
# (a finalizer after the output was written, a torch override while it is encoded).
ESCAPE_DEFINITIONS = frozenset({"__del__", "__torch_function__", "__torch_dispatch__"})
ESCAPE_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                             "__builtins__", "__loader__", "__spec__"})
REFLECTION = frozenset({"getattr", "setattr", "delattr", "hasattr"})
# Attributes that reach frames, code objects, the interpreter's machinery or torch's raw kernels,
# refused on any object (the object's type cannot be known from the source).
ESCAPE_ATTRIBUTES = frozenset({
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "f_lasti", "tb_frame", "tb_next",
    "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "co_code", "co_consts", "co_names",
    "func_globals", "func_code", "_getframe", "setprofile", "settrace", "getprofile", "gettrace",
    "setprofile_all_threads", "settrace_all_threads", "meta_path", "path_hooks", "path_importer_cache",
    "addaudithook", "_current_frames", "_current_exceptions", "call_tracing", "monitoring", "sys", "_C",
    "_ops", "ops", "library", "attrgetter", "methodcaller",
})
# Dotted names (resolved through the notebook's imports) that are escape routes.
ESCAPE_DOTTED = frozenset({
    "sys.modules", "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.setprofile",
    "sys.settrace", "sys.getprofile", "sys.gettrace", "sys.monitoring", "sys.meta_path", "sys.path_hooks",
    "sys.path_importer_cache", "sys.addaudithook", "sys.call_tracing",
    "sys.last_traceback", "sys.last_exc", "sys.activate_stack_trampoline", "sys.remote_exec",
    "operator.attrgetter", "operator.methodcaller",
    "threading.setprofile", "threading.settrace", "threading.setprofile_all_threads",
    "threading.settrace_all_threads", "threading._profile_hook", "threading._trace_hook",
    "torch._C", "torch.ops", "torch._ops", "torch.library", "torch.utils.cpp_extension", "torch._dynamo",
    "os.system", "os.execv", "os.execve", "os.execl", "os.execle", "os.execlp", "os.execlpe", "os.execvp",
    "os.execvpe", "os.posix_spawn", "os.posix_spawnp", "os.fork", "os.forkpty", "os.spawnl", "os.spawnle",
    "os.spawnlp", "os.spawnlpe", "os.spawnv", "os.spawnve", "os.spawnvp", "os.spawnvpe", "os.popen",
    "os.register_at_fork", "os.kill", "os.killpg", "os.pidfd_open",
})
# Dunder attributes that student code legitimately uses; every other __x__ attribute is refused.
SAFE_DUNDERS = frozenset({
    "__init__", "__call__", "__name__", "__qualname__", "__class__", "__doc__", "__module__", "__version__",
    "__len__", "__getitem__", "__setitem__", "__contains__", "__iter__", "__next__", "__repr__", "__str__",
    "__enter__", "__exit__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
    "__bool__", "__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__matmul__", "__neg__",
    "__post_init__", "__new__", "__annotations__",
})


@dataclass(frozen=True)
class Finding:
    kind: str            # "escape" or "forbidden"
    what: str            # what was found, e.g. "import gc", "sys.modules", "torch.nn.functional.softmax"
    cell: str            # grade_id of the solution cell
    line: int            # line in that cell (1-based)
    step: str = ""       # for "forbidden": the step whose rule it breaks


@dataclass
class Report:
    escapes: list[Finding] = field(default_factory=list)
    forbidden: dict[str, Finding] = field(default_factory=dict)   # step -> its first finding

    def to_json(self) -> dict:
        return {"escapes": [f.__dict__ for f in self.escapes],
                "forbidden": {step: f.__dict__ for step, f in self.forbidden.items()}}


# ----------------------------------------------------------------------------
# parsing


@dataclass
class _Cell:
    grade_id: str
    tree: ast.Module | None


# CPython 3.11 and 3.12 keep ast.parse's recursion bookkeeping per interpreter, not per thread: two
# `course grade` workers parsing at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (a grader fault, never a grade, but a submission left ungraded). One parse at a time.
_PARSING = threading.Lock()


def _parse(grade_id: str, source: str) -> _Cell:
    try:
        with _PARSING:
            return _Cell(grade_id, ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _Cell(grade_id, None)      # the cell cannot run either: its error shows in the sandbox


def _module_aliases(cells: list[_Cell]) -> dict[str, set[str]]:
    """Local name -> the dotted names it may stand for (`import torch.nn.functional as F` ->
    F: {torch.nn.functional}; `from torch import softmax as s` -> s: {torch.softmax})."""
    aliases: dict[str, set[str]] = {}
    for cell in cells:
        if cell.tree is None:
            continue
        for node in ast.walk(cell.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases.setdefault(alias.asname, set()).add(alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        aliases.setdefault(top, set()).add(top)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    aliases.setdefault(alias.asname or alias.name, set()).add(f"{node.module}.{alias.name}")
    # plain assignments of a module or one of its functions: G = torch.nn.functional, sm = F.softmax
    # (twice, for an alias of an alias)
    for _ in range(2):
        for cell in cells:
            if cell.tree is None:
                continue
            for node in ast.walk(cell.tree):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value else []
                values = _dotted(node.value, aliases) if targets else set()
                for target in targets:
                    if isinstance(target, ast.Name) and values:
                        aliases.setdefault(target.id, set()).update(values)
    return aliases


def _chain(node: ast.AST) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _dotted(node: ast.AST, aliases: dict[str, set[str]]) -> set[str]:
    """The dotted names an attribute chain or a name may denote, through the notebook's imports."""
    parts = _chain(node)
    if not parts:
        return set()
    return {".".join([base, *parts[1:]]) for base in aliases.get(parts[0], ())}


def _covers(prefix: str, dotted: str) -> bool:
    return dotted == prefix or dotted.startswith(prefix + ".")


# ----------------------------------------------------------------------------
# escape routes


def _escape_in(node: ast.AST, aliases: dict[str, set[str]], called: set[int]) -> str | None:
    """What makes this one node an escape route, or None. called: ids of the Name nodes that are
    the function of a call (getattr(x, "a") is allowed, g = getattr is not)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if any(_covers(m, alias.name) for m in ESCAPE_MODULES):
                return f"import {alias.name}"
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            return "a relative import"
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if any(_covers(m, module) or _covers(m, full) for m in ESCAPE_MODULES) or full in ESCAPE_DOTTED \
                    or alias.name in ESCAPE_BUILTINS:
                return f"from {module} import {alias.name}"
            if alias.name == "*":
                return f"from {module} import *"
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in ESCAPE_BUILTINS:
        return node.id
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ESCAPE_DEFINITIONS:
        return f"a {node.name} method"
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in ESCAPE_DEFINITIONS:
        return f"a {node.id} method"
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in REFLECTION \
            and id(node) not in called:
        return f"{node.id} used as a value"
    if isinstance(node, ast.Attribute):
        if node.attr in ESCAPE_ATTRIBUTES:
            return f".{node.attr}"
        if node.attr.startswith("__") and node.attr.endswith("__") and node.attr not in SAFE_DUNDERS:
            return f".{node.attr}"
        if isinstance(node.ctx, (ast.Store, ast.Del)) and _dotted(node.value, aliases):
            return f"changing {sorted(_dotted(node, aliases))[0]}"      # monkeypatching a library
        for dotted in _dotted(node, aliases):
            if any(_covers(e, dotted) for e in ESCAPE_DOTTED):
                return dotted
            parts = dotted.split(".")
            if parts[0] == "torch" and any(p.startswith("_") for p in parts[1:]):
                return f"{dotted} (a private torch function)"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in REFLECTION:
        name = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            return f"{node.func.id}() with a name computed at run time"
        if name.value.startswith("__") or name.value in ESCAPE_ATTRIBUTES:
            return f"{node.func.id}(..., {name.value!r})"
        if node.func.id in ("setattr", "delattr") and node.args and _dotted(node.args[0], aliases):
            return f"{node.func.id}() on {sorted(_dotted(node.args[0], aliases))[0]}"
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
        if "/proc" in text:
            return "a path under /proc"
        for name in DUNDER.findall(text):
            if name not in SAFE_DUNDERS and text != "__main__":      # if __name__ == "__main__": is fine
                return f"a string naming {name}"
    return None


def escapes(cells: list[_Cell], aliases: dict[str, set[str]]) -> list[Finding]:
    found = []
    for cell in cells:
        if cell.tree is None:
            continue
        called = {id(n.func) for n in ast.walk(cell.tree) if isinstance(n, ast.Call)}
        for node in ast.walk(cell.tree):
            what = _escape_in(node, aliases, called)
            if what:
                found.append(Finding("escape", what, cell.grade_id, getattr(node, "lineno", 0)))
    return sorted(set(found), key=lambda f: (f.cell, f.line, f.what))


# ----------------------------------------------------------------------------
# forbidden functions, per step


def _bound_names(stmt: ast.stmt) -> set[str]:
    """Global names a top-level statement binds."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    names = set()
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for alias in stmt.names:
            names.add(alias.asname or alias.name.split(".")[0])
        return names
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not stmt:
            names.add(node.name)      # a def inside an if/try at the top level
    return names


def _definitions(cells: list[_Cell]) -> dict[str, list[tuple[str, ast.stmt]]]:
    """Global name -> the top-level statements (with their cell) that bind it."""
    defs: dict[str, list[tuple[str, ast.stmt]]] = {}
    for cell in cells:
        if cell.tree is None:
            continue
        for stmt in cell.tree.body:
            for name in _bound_names(stmt):
                defs.setdefault(name, []).append((cell.grade_id, stmt))
    return defs


def _reachable(function: str, defs: dict[str, list[tuple[str, ast.stmt]]]) -> list[tuple[str, ast.stmt]]:
    """The top-level statements that the step's function can reach through global names."""
    seen: set[int] = set()
    out = []
    todo = [function]
    names_done: set[str] = set()
    while todo:
        name = todo.pop()
        if name in names_done:
            continue
        names_done.add(name)
        for cell, stmt in defs.get(name, ()):
            if id(stmt) in seen:
                continue
            seen.add(id(stmt))
            out.append((cell, stmt))
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and node.id in defs and node.id not in names_done:
                    todo.append(node.id)
    return out


# The reference model's math lives in autograde.reference.functional; autograde.reference.model
# re-exports it (the same objects) and holds the module itself as `fn`. A forbidden reference
# function is listed under .model: these spellings name the same function.
SAME_MODULE = (("autograde.reference.model.fn.", "autograde.reference.model."),
               ("autograde.reference.functional.", "autograde.reference.model."))


def _canonical(dotted: str) -> str:
    for prefix, same in SAME_MODULE:
        if dotted.startswith(prefix):
            return same + dotted[len(prefix):]
    return dotted


def _refers_to(node: ast.AST, forbidden: tuple[str, ...], aliases: dict[str, set[str]]) -> str | None:
    """The forbidden dotted name this node denotes, if any."""
    if isinstance(node, (ast.Attribute, ast.Name)):
        for dotted in _dotted(node, aliases):
            for name in forbidden:
                if _canonical(dotted) == name:
                    return name
        if isinstance(node, ast.Attribute):
            # a torch function reached through an object the source does not name: x.softmax(...),
            # [F][0].scaled_dot_product_attention(...) (the reference's own names are too common
            # to match this way, and cannot be imported in the sandbox anyway)
            for name in forbidden:
                if name.startswith("torch.") and node.attr == name.rsplit(".", 1)[1]:
                    return name
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
        target = node.args[0]
        for dotted in _dotted(target, aliases):
            full = f"{dotted}.{node.args[1].value}"
            if full in forbidden:
                return full
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for alias in node.names:
            if _canonical(f"{node.module}.{alias.name}") in forbidden:
                return _canonical(f"{node.module}.{alias.name}")
    return None


def forbidden_uses(function: str, forbidden: tuple[str, ...], cells: list[_Cell],
                   aliases: dict[str, set[str]], defs=None) -> Finding | None:
    """The first forbidden name in code that `function` can reach, or None."""
    if not forbidden:
        return None
    defs = defs if defs is not None else _definitions(cells)
    for cell, stmt in _reachable(function, defs):
        for node in ast.walk(stmt):
            name = _refers_to(node, forbidden, aliases)
            if name:
                return Finding("forbidden", name, cell, getattr(node, "lineno", 0))
    return None


# ----------------------------------------------------------------------------


def analyse(solution_cells: list[tuple[str, str]], setup_cells: list[tuple[str, str]],
            steps: list[tuple[str, str, tuple[str, ...]]]) -> Report:
    """solution_cells, setup_cells: (grade_id, source); steps: (step id, function name, forbidden).

    Setup cells are the instructor's (locked, taken from the pristine notebook): their imports
    count for resolving names, nothing in them is refused, and the functions they define are not
    followed (they may use the reference legitimately)."""
    students = [_parse(gid, src) for gid, src in solution_cells]
    setups = [_parse(gid, src) for gid, src in setup_cells]
    aliases = _module_aliases(setups + students)
    report = Report(escapes=escapes(students, aliases))
    defs = _definitions(students)
    for step, function, forbidden in steps:
        if step in report.forbidden:
            continue
        finding = forbidden_uses(function, forbidden, students, aliases, defs)
        if finding:
            report.forbidden[step] = Finding("forbidden", finding.what, finding.cell, finding.line, step)
    return report
