"""What a notebook imports: setup, one-line checks, and the student's own module.

    from autograde.notebook import setup, check, save_piece
    device = setup("en")                     # language of the feedback, device banner
    check("attention.softmax", softmax)      # prints ✅/❌ and the hint

A failing check raises CheckFailed, so that nbgrader marks the test cell as
failed; IPython shows its message once (not printed first, then raised again),
without a traceback, followed by a line saying that "Run all" stops there. In a
cell that uses a step not written yet (NotImplementedError) or a name a skipped
cell would have defined (NameError), IPython's error is followed by one line
that says which, in the notebook's language.

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
from autograde.checks.messages import message, register_messages
from autograde.checks.runner import describe, run_check
from autograde.checks.tolerance import disable_tf32

MY_DIR = Path("my_llm")
_device = torch.device("cpu")

register_messages({
    "run_all_stops": {
        "en": "⏸ \"Run all\" stops at this cell: the cells below have not run. Finish this step, run this cell "
              "again, then the cells below it.",
        "ko": "⏸ \"모두 실행\"은 이 셀에서 멈춥니다. 아래 셀들은 아직 실행되지 않았습니다. 이 단계를 마치고 이 셀을 "
              "다시 실행한 뒤, 아래 셀들을 이어서 실행하세요."},
    "needs_unfinished_step": {
        "en": "💡 This cell uses a function that is not written yet (it still raises NotImplementedError): finish the "
              "step above (its YOUR CODE HERE cell) and run its check first.",
        "ko": "💡 이 셀은 아직 작성하지 않은 함수를 씁니다(여전히 NotImplementedError를 냅니다). 위 단계의 "
              "YOUR CODE HERE 셀을 먼저 채우고 그 검사를 실행하세요."},
    "needs_earlier_cell": {
        "en": "💡 {name!r} is not defined yet: a cell above that defines it has not run (\"Run all\" stops at the "
              "first unfinished check) or has failed. Run the cells above in order, then this one.",
        "ko": "💡 {name!r}이(가) 아직 정의되지 않았습니다. 이것을 정의하는 위쪽 셀이 실행되지 않았거나(\"모두 실행\"은 "
              "처음으로 통과하지 못한 검사에서 멈춥니다) 실패했습니다. 위 셀들을 차례로 실행한 뒤 이 셀을 실행하세요."},
})


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
    _explain_errors()
    return _device


def _explain_errors() -> None:
    """In IPython (Jupyter, Colab): after a NotImplementedError or NameError, IPython's own error, then
    one line that says what it means here. The cell still fails, as before."""
    try:
        shell = get_ipython()  # noqa: F821  (defined by IPython, absent elsewhere)
    except NameError:
        return
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return

    def explain(shell, etype, value, tb, tb_offset=None):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        hint = _hint(etype, value, get_language())
        if hint:
            print(hint)

    shell.set_custom_exc((NotImplementedError, NameError), explain)


def _hint(etype, value, lang: str) -> str | None:
    if issubclass(etype, NotImplementedError):
        return message("needs_unfinished_step", lang)
    if issubclass(etype, NameError) and getattr(value, "name", None):
        return message("needs_earlier_cell", lang, name=value.name)
    return None


def device() -> torch.device:
    return _device


def check(step: str, fn=None, *, hidden: bool = False, save: bool = True) -> dict:
    """Check one step now; print the result in the notebook's language."""
    result = run_check(step, fn, hidden=hidden, remember=True)
    lang = get_language()
    if not result["passed"]:            # shown once, as the error, with what it means for "Run all"
        raise CheckFailed(describe(result, lang) + "\n" + message("run_all_stops", lang))
    print(describe(result, lang))
    if save and not hidden and fn is not None:
        save_piece(step, fn)
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
