"""What a notebook imports: setup, one-line checks, and the student's own module.

    from autograde.notebook import setup, check, save_piece
    device = setup("en")                     # language of the feedback, device banner
    check("attention.softmax", softmax)      # prints ✅/❌ and the hint

A failing check raises CheckFailed, so that nbgrader marks the test cell as
failed; IPython shows only the one-line message, not a traceback.

Every function that passes its check is saved (its source code) into
`my_llm/<notebook>.py` next to the notebook, a small module the student owns;
the last notebook assembles the model from it and falls back, saying so, to
the reference version of any piece that is missing or failing.
"""
from __future__ import annotations

import inspect
import json
import sys
import textwrap
import types
from pathlib import Path

import torch

from autograde.checks.core import get_language, set_language
from autograde.checks.messages import message
from autograde.checks.runner import describe, run_check
from autograde.checks.tolerance import disable_tf32

MY_DIR = Path("my_llm")
_device = torch.device("cpu")


class CheckFailed(AssertionError):
    """A check did not pass. Shown by IPython as its message only."""

    def _render_traceback_(self):
        return [str(self)]


def setup(lang: str = "en", seed: int = 0) -> torch.device:
    """Choose the feedback language and the device (CUDA, then Apple MPS, then CPU)."""
    from autograde.reference.checkpoint import pick_device

    global _device
    set_language(lang)
    disable_tf32()
    torch.manual_seed(seed)
    _device = pick_device()
    name = torch.cuda.get_device_name(0) if _device.type == "cuda" else _device.type
    print(message("device", lang, device=f"{_device.type} ({name})" if _device.type == "cuda" else name))
    return _device


def device() -> torch.device:
    return _device


def check(step: str, fn=None, *, hidden: bool = False, save: bool = True) -> dict:
    """Check one step now; print the result in the notebook's language."""
    result = run_check(step, fn, hidden=hidden, remember=True)
    print(describe(result, get_language()))
    if result["passed"] and save and not hidden and fn is not None:
        save_piece(step, fn)
    if not result["passed"]:
        raise CheckFailed(describe(result, get_language()))
    return CheckResult(result)


class CheckResult(dict):
    """check()'s result, a plain dict that IPython does not echo when it ends a cell
    (the ✅ line is the feedback)."""

    def _ipython_display_(self):
        pass


# ----------------------------------------------------------------------------
# the student's own module


def save_piece(step: str, fn) -> Path | None:
    """Append/replace the source of a passing function in my_llm/<notebook>.py."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    notebook = step.split(".")[0]
    MY_DIR.mkdir(exist_ok=True)
    index_path = MY_DIR / "pieces.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index[step] = {"module": notebook, "function": fn.__name__, "source": source, "imports": _imports_of(fn)}
    index_path.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    pieces = [v for v in index.values() if v["module"] == notebook]
    imports = sorted({line for v in pieces for line in v.get("imports", [])} - set(BASE_IMPORTS))
    header = f'"""Your own {notebook} pieces, saved when they passed their checks."""\n' \
             + "\n".join(BASE_IMPORTS + imports) + "\n\n\n"
    (MY_DIR / f"{notebook}.py").write_text(header + "\n\n".join(v["source"] for v in pieces))
    return MY_DIR / f"{notebook}.py"


BASE_IMPORTS = ["import math", "import torch", "import torch.nn.functional as F"]


def _imports_of(fn) -> list[str]:
    """Import lines for the globals `fn` uses that come from installed modules (tqdm, KVCache, ...),
    so that the saved module runs on its own. Names defined in the notebook itself are left out."""
    code_objects, names = [fn.__code__], set()
    while code_objects:
        code = code_objects.pop()
        names |= set(code.co_names)
        code_objects += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    lines = []
    for name in sorted(names):
        value = fn.__globals__.get(name)
        if _is_constant(value):   # e.g. a split pattern defined in a setup cell
            lines.append(f"{name} = {value!r}")
            continue
        if isinstance(value, types.ModuleType):
            module = value.__name__
            lines.append(f"import {module}" if module == name else f"import {module} as {name}")
            continue
        module, own_name = getattr(value, "__module__", None), getattr(value, "__name__", None)
        if not isinstance(module, str) or not isinstance(own_name, str) or module in ("__main__", "builtins"):
            continue
        if getattr(sys.modules.get(module), own_name, None) is value:
            lines.append(f"from {module} import {own_name}" + ("" if own_name == name else f" as {name}"))
    return lines


def _is_constant(value) -> bool:
    """Plain values whose repr() rebuilds them exactly."""
    if isinstance(value, (str, bytes, int, float, bool)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_is_constant(v) for v in value)
    return False


def load_piece(step: str, reference):
    """The student's saved function for `step` if it still passes, else the reference (with a note)."""
    lang = get_language()
    index_path = MY_DIR / "pieces.json"
    entry = json.loads(index_path.read_text()).get(step) if index_path.exists() else None
    if entry:
        namespace: dict = {}
        try:
            exec(compile(MY_DIR.joinpath(f"{entry['module']}.py").read_text(), f"my_llm/{entry['module']}.py",
                         "exec"), namespace)
            fn = namespace[entry["function"]]
            if run_check(step, fn, seed=0)["passed"]:
                print(message("using_yours", lang, piece=step))
                return fn
        except Exception:
            pass
    print(message("fallback", lang, piece=step))
    return reference
