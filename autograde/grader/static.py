"""Trusted: a static pass over the student's solution cells, in the parent, before anything runs.

The worker enforces its rules inside the student's process (a tripwire on each forbidden
function, a profiler that catches aliases, a record of the model's calls, a snapshot of the
inputs). Code in that process could undo any of them if it could reach the worker: rebind its
functions through `__main__` or `sys.modules`, find them through `gc` or a frame's globals,
replace the profiler, write its memory through `ctypes`, build such code at run time with
`eval`. This pass, run by the parent on the source text, refuses every such route, so that what
the worker reports can be believed; and it decides the forbidden-function rule on its own where
the source names a forbidden function.

Three kinds of findings:

    escape(cell, line, what)           anywhere in the solution cells: every step of the notebook
                                       fails ("grader_escape"), because nothing measured in that
                                       process can be trusted any more
    unreadable(cell, what)             a cell that ast.parse gives up on (nested too deeply, too
                                       large) is an escape too ("grader_unanalysable"): compile()
                                       in the worker may accept it (its limits differ, and an
                                       earlier cell can raise the recursion limit they depend on),
                                       and a cell this pass cannot read may hold anything. "Cannot
                                       analyse" is a finding, never a clean pass; only a plain
                                       syntax error, which cannot run either, is left to the sandbox
    forbidden(step, name, cell, line)  a forbidden function named in code that the step's function
                                       can reach (its own body, and the notebook's functions,
                                       classes and globals it uses, transitively): that step fails

The policy: refuse by name. The source cannot tell which object an expression denotes, so the
pass refuses the *names* of every route to the worker, wherever they appear (an attribute of
any object, an import, an alias); routes a solution to these notebooks never needs. What is
refused (see ESCAPE_* below):

  - imports of the introspection and code-loading modules (gc, inspect, ctypes, importlib,
    builtins, pickle, marshal, types, traceback, __main__, the grader's own packages ...), and
    the same modules reached as another module's attribute (torch.serialization.pickle);
  - everything that runs code later or beside the worker, which could rewrite what the worker
    reported (threading, multiprocessing, subprocess, signal, atexit, weakref, os.fork/system/
    exec*/spawn*/kill, and __del__, __torch_function__ and __torch_dispatch__ methods);
  - changing an attribute of a module (monkeypatching torch or any other library:
    `torch.equal = ...`, `setattr(torch, ...)`);
  - attribute access by a computed string, every getattr-like route: getattr/setattr/delattr/
    hasattr with a name that is not a constant string (and getattr as a value); vars, globals,
    locals; dunder attributes other than a few harmless ones (__init__, __name__, __class__ ...),
    which closes __dict__, __getattribute__ (object's and type's), __globals__, __code__,
    __subclasses__, __builtins__ and the like, and string constants that name one (a format
    field "{0.__dict__}"); string.Formatter and its get_field/get_value/vformat/format_field
    (Formatter().get_field("0.set" + "profile", (sys,), {}) returned sys.setprofile with no
    refused name in the source), _string; operator.attrgetter/methodcaller; inspect's and gc's
    walks (getattr_static, getmembers, get_referents, get_objects) under any owner; sys.modules
    (as `.modules` not called on the spot: nn.Module.modules() stays allowed);
  - a string turned into code or into the object it names: eval, exec, compile, __import__,
    importlib.import_module, pkgutil.resolve_name, pydoc.locate, typing.get_type_hints and
    ForwardRef (they evaluate annotations), timeit, doctest, unittest (mock.patch("a.b")),
    logging.config, and every pickle reader (pickle, torch.load, numpy.load, torch.serialization,
    the keywords weights_only=/allow_pickle= with an unsafe value, the TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    switch);
  - frame, traceback and code-object attributes (f_back, f_globals, tb_frame, gi_frame, co_code
    ...); sys._getframe, sys.setprofile/settrace/getprofile/monitoring, sys.addaudithook, the
    import hooks, threading.setprofile/settrace; torch.ops, torch._C, torch.library (raw kernels
    under other names); string constants that mention /proc.

Check.forbidden (a step's forbidden functions: a tripwire and the profiler in the worker, and
this pass by name) and Check.forbidden_names (this pass only) are per step; everything above
holds for every step of every notebook.

A name list cannot be complete: a library function not listed that resolves a string to an
object would slip through. The worker does not rely on this pass alone for its call monitor:
an audit hook that no Python code can remove (worker.MonitorGuard) refuses and reports every
sys.setprofile/settrace that is not the worker's own, however the function was reached, and the
parent fails the step on that report, or on a step report that does not say the monitor was
guarded.

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
    # a string turned into code or into the object it names (an attribute chain computed at run time)
    "_string", "_operator", "timeit", "doctest", "pydoc", "unittest", "logging.config", "numpy.ctypeslib",
    "torch.serialization", "torch.package", "torch.hub", "torch.multiprocessing",
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
    # attribute access by a computed string: Formatter().get_field("0.set" + "profile", (sys,), {}) returns
    # sys.setprofile, a Formatter subclass's format_field receives each object a format string reaches;
    # typing's evaluation of string annotations; inspect's and gc's walks
    "Formatter", "get_field", "get_value", "format_field", "convert_field", "vformat",
    "formatter_field_name_split", "formatter_parser", "get_type_hints", "ForwardRef", "_eval_type", "_evaluate",
    "getattr_static", "getmembers", "get_referents", "get_referrers", "get_objects", "import_module",
    "resolve_name", "locate",
    # the refused modules reached as another module's attribute (torch.serialization.pickle, numpy.ctypeslib)
    "gc", "inspect", "importlib", "builtins", "ctypes", "ctypeslib", "pickle", "marshal", "_pickle",
})
# Attributes refused unless they are called on the spot: nn.Module.modules() is the model's API,
# sys.modules (reached as [sys][0].modules, which no import names) is the table of every module.
CALL_ONLY_ATTRIBUTES = frozenset({"modules"})
# Keyword arguments that turn a loader into a pickle reader (which builds any object a string names).
UNSAFE_KEYWORDS = {"weights_only": True, "allow_pickle": False}
# Dotted names (resolved through the notebook's imports) that are escape routes.
ESCAPE_DOTTED = frozenset({
    "sys.modules", "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.setprofile",
    "sys.settrace", "sys.getprofile", "sys.gettrace", "sys.monitoring", "sys.meta_path", "sys.path_hooks",
    "sys.path_importer_cache", "sys.addaudithook", "sys.call_tracing",
    "sys.last_traceback", "sys.last_exc", "sys.activate_stack_trampoline", "sys.remote_exec",
    "operator.attrgetter", "operator.methodcaller", "string.Formatter", "typing.get_type_hints",
    "typing.ForwardRef", "typing._eval_type", "torch.load", "numpy.load", "pandas.read_pickle",
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
    kind: str            # "escape", "unreadable" (an escape: a cell the parser gave up on) or "forbidden"
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
    unreadable: str = ""     # why the parser gave up on source that may still compile and run




# CPython 3.11 and 3.12 keep ast.parse's recursion bookkeeping per interpreter, not per thread: two
# `course grade` workers parsing at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (a grader fault, never a grade, but a submission left ungraded). One parse at a time.
_PARSING = threading.Lock()


# A SyntaxError about nesting or size is a limit of the parser, not a mistake in the code: the worker's
# compile() has limits of its own (they depend on the recursion limit, which an earlier cell can raise).
PARSER_LIMIT = re.compile(r"too many nested|too complex|nested too deeply|recursion|stack overflow", re.I)


def _parse(grade_id: str, source: str) -> _Cell:
    """The cell's tree; or no tree and, when the source may still run, why it cannot be analysed.

    A cell that ast.parse gives up on (RecursionError, MemoryError, "too many nested parentheses")
    may compile in the worker, whose limits differ: such a cell is not clean, it is unreadable,
    and analyse() reports it as an escape. A plain syntax error cannot run either: skipped here,
    its error shows in the sandbox like any broken cell's."""
    try:
        with _PARSING:
            return _Cell(grade_id, ast.parse(source))
    except (RecursionError, MemoryError) as exc:
        return _Cell(grade_id, None, type(exc).__name__)
    except SyntaxError as exc:
        if PARSER_LIMIT.search(str(exc.msg)):
            return _Cell(grade_id, None, f"SyntaxError: {str(exc.msg)[:60]}")
        return _Cell(grade_id, None)
    except ValueError:                    # null bytes: compile() refuses them too
        return _Cell(grade_id, None)


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
        if node.attr in ESCAPE_ATTRIBUTES or (node.attr in CALL_ONLY_ATTRIBUTES and id(node) not in called):
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
    if isinstance(node, ast.keyword) and node.arg in UNSAFE_KEYWORDS \
            and not (isinstance(node.value, ast.Constant) and node.value.value is UNSAFE_KEYWORDS[node.arg]):
        return f"{node.arg}={ast.unparse(node.value)[:20]} (a pickle reader)"
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
        if "/proc" in text:
            return "a path under /proc"
        if "WEIGHTS_ONLY" in text.upper():           # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD makes torch.load unpickle
            return "a string naming torch.load's pickle switch"
        for name in DUNDER.findall(text):
            if name not in SAFE_DUNDERS and text != "__main__":      # if __name__ == "__main__": is fine
                return f"a string naming {name}"
    return None


def unreadable(cells: list[_Cell]) -> list[Finding]:
    """A cell the parser cannot read is a finding, never a clean pass: it may hide anything."""
    return [Finding("unreadable", cell.unreadable, cell.grade_id, 1) for cell in cells if cell.unreadable]


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
    report = Report(escapes=unreadable(students) + escapes(students, aliases))
    defs = _definitions(students)
    for step, function, forbidden in steps:
        if step in report.forbidden:
            continue
        finding = forbidden_uses(function, forbidden, students, aliases, defs)
        if finding:
            report.forbidden[step] = Finding("forbidden", finding.what, finding.cell, finding.line, step)
    return report
