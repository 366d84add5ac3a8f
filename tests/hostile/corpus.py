"""The hostile corpus: submissions made from the attention solution notebook by
replacing one solution cell (or the notebook's structure), each with what the
grader must conclude.

Every case is graded against a baseline (the untouched solution notebook, in
the same batch): no case may score more than the baseline in any cell, the
cells in `zero` must score 0, `same=True` cases must score exactly the
baseline, and `tamper` / `error` name what the result must report.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOLUTION = REPO / "solutions" / "en" / "03_attention" / "03_attention.ipynb"
HERE = Path(__file__).resolve().parent
TEST_CELLS = ["check_softmax", "check_sdpa", "check_causal_mask", "check_heads", "check_rope", "check_multi_head"]

GOOD_SOFTMAX = '''def softmax(x, dim=-1):
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''
WRONG_SOFTMAX = '''def softmax(x, dim=-1):
    return x.exp() / x.exp().sum(dim=0, keepdim=True)
'''

# name -> (cell to replace, new source, spec)
CELL_CASES = {
    "infinite_loop_cell": ("softmax", "while True:\n    pass\n" + GOOD_SOFTMAX, {"zero": ["check_softmax"]}),
    "infinite_loop_call": ("causal_mask", "def causal_mask(T):\n    while True:\n        pass\n",
                           {"zero": ["check_causal_mask"]}),
    "loop_swallowing_alarm": ("causal_mask", "def causal_mask(T):\n    while True:\n        try:\n"
                              "            while True:\n                pass\n        except BaseException:\n"
                              "            pass\n", {"zero": ["check_causal_mask"]}),
    "print_1gb": ("softmax", "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
                  + GOOD_SOFTMAX, {"same": True}),
    "memory_bomb": ("softmax", "hog = bytearray(64 * 2**30)\n" + GOOD_SOFTMAX, {"zero": ["check_softmax"]}),
    "memory_bomb_in_call": ("causal_mask", "def causal_mask(T):\n    blocks = []\n    while True:\n"
                            "        blocks.append(bytearray(2**28))\n", {"zero": ["check_causal_mask"]}),
    "fork_bomb": ("causal_mask", "import os\ndef causal_mask(T):\n    while True:\n        try:\n"
                  "            os.fork()\n        except OSError:\n            pass\n",
                  {"zero": ["check_causal_mask"], "needs_nproc": True}),
    "sys_exit": ("softmax", GOOD_SOFTMAX + "import sys\nsys.exit(0)\n", {"same": True}),
    "os_exit": ("softmax", GOOD_SOFTMAX + "import os\nos._exit(0)\n", {"zero": ["check_softmax"]}),
    "os_exit_in_call": ("causal_mask", "import os\ndef causal_mask(T):\n    os._exit(0)\n",
                        {"zero": ["check_causal_mask"]}),
    "segfault": ("softmax", "import ctypes\nctypes.string_at(0)\n" + GOOD_SOFTMAX, {"zero": ["check_softmax"]}),
    "showtraceback": ("softmax", "from IPython.core.interactiveshell import InteractiveShell\n"
                      "InteractiveShell.showtraceback = lambda *a, **k: None\n" + WRONG_SOFTMAX,
                      {"zero": ["check_softmax"]}),
    "eq_always_true": ("causal_mask", "class Yes:\n    def __eq__(self, other):\n        return True\n"
                       "    __hash__ = object.__hash__\ndef causal_mask(T):\n    return Yes()\n",
                       {"zero": ["check_causal_mask"]}),
    "tensor_subclass_eq": ("causal_mask", "import torch\nclass Yes(torch.Tensor):\n"
                           "    def __eq__(self, other):\n        return True\n"
                           "def causal_mask(T):\n    return torch.zeros(T, T, dtype=torch.bool).as_subclass(Yes)\n",
                           {"zero": ["check_causal_mask"]}),
    "patch_allclose": ("softmax", "import torch\ntorch.allclose = lambda *a, **k: True\n"
                       "torch.equal = lambda *a, **k: True\n" + WRONG_SOFTMAX, {"zero": ["check_softmax"]}),
    "patch_checks": ("softmax", "try:\n    import autograde.checks.core as core\n"
                     "    core.compare_outputs = lambda *a, **k: core.Verdict(True)\nexcept ImportError:\n    pass\n"
                     "import autograde.notebook as nb\nnb.check = lambda *a, **k: None\n" + WRONG_SOFTMAX,
                     {"zero": ["check_softmax"]}),
    "patch_builtins": ("softmax", "import builtins\nbuiltins.isinstance = lambda *a: True\n"
                       "builtins.len = lambda *a: 0\n" + WRONG_SOFTMAX, {"zero": ["check_softmax"]}),
    "import_reference": ("sdpa", "from autograde.reference.model import scaled_dot_product_attention\n",
                         {"zero": ["check_sdpa"]}),
    "torch_sdpa": ("sdpa", "import torch.nn.functional as F\ndef scaled_dot_product_attention(q, k, v, mask=None):\n"
                   "    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)\n", {"zero": ["check_sdpa"]}),
    "torch_sdpa_alias": ("sdpa", "import torch\nfast = torch.nn.functional.scaled_dot_product_attention\n"
                         "def scaled_dot_product_attention(q, k, v, mask=None):\n"
                         "    return fast(q, k, v, attn_mask=mask)\n", {"zero": ["check_sdpa"]}),
    "read_grader_files": ("softmax", "stolen = []\nfor p in [{steps!r}, {weights!r}, {solution!r}]:\n    try:\n"
                          "        stolen.append(open(p, 'rb').read(10))\n    except OSError:\n        pass\n"
                          "if stolen:\n" + "\n".join("    " + l for l in WRONG_SOFTMAX.splitlines()) + "\nelse:\n"
                          + "\n".join("    " + l for l in GOOD_SOFTMAX.splitlines()) + "\n",
                          {"same_if_isolated": True}),
    "network": ("softmax", "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                "    online = True\nexcept OSError:\n    online = False\n"
                "if online:\n" + "\n".join("    " + l for l in WRONG_SOFTMAX.splitlines()) + "\nelse:\n"
                + "\n".join("    " + l for l in GOOD_SOFTMAX.splitlines()) + "\n", {"same": True}),
    "nan_output": ("softmax", "def softmax(x, dim=-1):\n    return x * float('nan')\n", {"zero": ["check_softmax"]}),
    "inf_output": ("softmax", "def softmax(x, dim=-1):\n    return x * float('inf')\n", {"zero": ["check_softmax"]}),
    "wrong_dtype": ("causal_mask", "import torch\ndef causal_mask(T):\n    return torch.ones(T, T).tril()\n",
                    {"zero": ["check_causal_mask"]}),
    "wrong_device": ("causal_mask", "import torch\ndef causal_mask(T):\n"
                     "    return torch.ones(T, T, dtype=torch.bool, device='meta').tril()\n",
                     {"zero": ["check_causal_mask"]}),
    "wrong_shape": ("causal_mask", "import torch\ndef causal_mask(T):\n"
                    "    return torch.ones(T, T + 1, dtype=torch.bool).tril()\n", {"zero": ["check_causal_mask"]}),
    "numpy_output": ("causal_mask", "import numpy as np\ndef causal_mask(T):\n"
                     "    return np.tril(np.ones((T, T), dtype=bool))\n", {"zero": ["check_causal_mask"]}),
    "korean_text": ("softmax", "# 한국어 주석: 소프트맥스\n인사 = '안녕하세요, 겨울 배가 맛있단다!'\nprint(인사)\n"
                    + GOOD_SOFTMAX, {"same": True}),
}

ALL_CHECKS = ["check_softmax", "check_sdpa", "check_causal_mask", "check_heads", "check_rope", "check_multi_head"]

# Issue 17: the call monitor switched off by a route that names no refused function, around torch's own
# softmax in the step that forbids it. Scored full marks before; each route is now refused by name.
MONITOR_OFF = '''{imports}
def _grab(owner, name):
    return {route}
_set = _grab(sys, "set" + "profile")
_get = _grab(sys, "get" + "profile")
_softmax = _grab(torch, "soft" + "max")
def softmax(x, dim=-1):
    watch = _get()
    _set(None)
    try:
        return _softmax(x, dim)
    finally:
        _set(watch)
'''
ROUTES = {   # name -> (imports, how _grab reaches owner.name)
    "formatter_get_field": ("import string, sys, torch", 'string.Formatter().get_field("0." + name, (owner,), {})[0]'),
    "attrgetter": ("import operator, sys, torch", "operator.attrgetter(name)(owner)"),
    "vars_dict": ("import sys, torch", "vars(owner)[name]"),
    "dunder_dict": ("import sys, torch", "owner.__dict__[name]"),
    "getattr_computed": ("import sys, torch", "getattr(owner, name)"),
    "inspect_getmembers": ("import inspect, sys, torch", "dict(inspect.getmembers(owner))[name]"),
}


def monitor_off(route: str) -> str:
    imports, reach = ROUTES[route]
    return MONITOR_OFF.format(imports=imports, route=reach)


def deep_cases() -> dict[str, tuple[dict, dict]]:
    """A cell too deep for ast.parse (a sum of 10 000 terms) that the worker compiles, because the
    notebook's first solution cell raised the recursion limit: the static pass skipped it, so the
    Formatter attack in it went unread. Now "cannot analyse" is an escape, named in the feedback."""
    nb = solution_notebook()
    _cell(nb, "softmax")["source"] = GOOD_SOFTMAX + "import sys\nsys.setrecursionlimit(100_000)\n"
    sdpa = _cell(nb, "sdpa")
    sdpa["source"] = "".join(sdpa["source"]) + "\n" + monitor_off("formatter_get_field") \
        + "_deep = " + " + ".join(["1"] * 10_000) + "\n"
    return {"deep_cell": (nb, {"zero": ALL_CHECKS, "says": "could not be analysed"})}


# Reads the course's files (the paths fill COURSE_FILES): anything read makes its softmax raise with
# the stolen bytes, so a leak lands in its own feedback and costs the cell; nothing read, full marks.
READ_COURSE_FILES = ("stolen = []\nfor p in COURSE_FILES:\n    try:\n        with open(p, 'rb') as f:\n"
                     "            stolen.append(f.read(300))\n    except OSError:\n        pass\n"
                     "if stolen:\n    def softmax(x, dim=-1):\n        raise RuntimeError(repr(stolen))\nelse:\n"
                     + "\n".join("    " + l for l in GOOD_SOFTMAX.splitlines()) + "\n")


def plant_course_files(root: Path, assignment: str, victim: str = "victim") -> tuple[list[str], list[str]]:
    """A course root as instructors keep one, each file with a marker of its own: the instructor's
    notebook (source/), grades.csv, nbgrader_config.py, .course-secret, another student's submission
    (`victim`: the solution with a marker comment), readable by anyone (0644, folders 0755), so that
    only the sandbox's view of the file system keeps them out. Returns (the paths a submission would
    try to read, the markers that must never appear in anything the grader writes)."""
    import secrets

    tag = secrets.token_hex(6)
    markers = {name: f"COURSE-MARKER-{name}-{tag}" for name in ("source", "grades", "config", "victim")}
    files = {
        root / "source" / assignment / f"{assignment}.ipynb": json.dumps({"cells": [], "marker": markers["source"]}),
        root / "grades.csv": f"student,score\n{markers['grades']},9\n",
        root / "nbgrader_config.py": f"# {markers['config']}\nc = get_config()\n",
    }
    secret = secrets.token_hex(32)
    files[root / ".course-secret"] = secret + "\n"
    nb = solution_notebook()
    _cell(nb, "softmax")["source"] = GOOD_SOFTMAX + f"# {markers['victim']}\n"
    files[root / "submitted" / victim / assignment / f"{assignment}.ipynb"] = json.dumps(nb, ensure_ascii=False)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder, _, names in os.walk(root):
        Path(folder).chmod(0o755)
        for name in names:
            (Path(folder) / name).chmod(0o644)
    targets = [str(p) for p in files] + [str(root / "gradebook.db"), str(SOLUTION)]
    return targets, list(markers.values()) + [secret, "SQLite format 3"]


def reader_case(targets: list[str]) -> tuple[dict, dict]:
    """The submission that tries to read `targets` (plant_course_files), with its spec."""
    return with_cell("softmax", f"COURSE_FILES = {targets!r}\n" + READ_COURSE_FILES), {"same_if_isolated": True}


def solution_notebook() -> dict:
    return json.loads(SOLUTION.read_text(encoding="utf-8"))


def _cell(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def with_cell(grade_id: str, source: str) -> dict:
    nb = solution_notebook()
    _cell(nb, grade_id)["source"] = source
    return nb


def structural_cases() -> dict[str, tuple[dict | bytes, dict]]:
    """Cases that change the notebook's structure rather than one cell's code."""
    out = {}
    nb = solution_notebook()
    nb["cells"] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "softmax"]
    out["deleted_cell"] = (nb, {"zero": ["check_softmax"], "tamper": ["deleted_cell"]})

    nb = solution_notebook()
    first = copy.deepcopy(_cell(nb, "softmax"))
    first["source"] = WRONG_SOFTMAX
    first["id"] = "softmax-copy"
    nb["cells"].insert(nb["cells"].index(_cell(nb, "softmax")), first)
    out["duplicated_cell"] = (nb, {"zero": ["check_softmax"], "tamper": ["duplicated_cell"]})

    nb = solution_notebook()
    a, b = _cell(nb, "softmax"), _cell(nb, "causal_mask")
    ia, ib = nb["cells"].index(a), nb["cells"].index(b)
    nb["cells"][ia], nb["cells"][ib] = b, a
    out["reordered_cells"] = (nb, {"same": True, "tamper": ["reordered_cells"]})

    nb = solution_notebook()
    _cell(nb, "check_softmax")["source"] = "pass  # no checks here\n"
    _cell(nb, "softmax")["source"] = WRONG_SOFTMAX
    out["edited_locked_cell"] = (nb, {"zero": ["check_softmax"], "tamper": ["edited_locked_cell"]})

    nb = solution_notebook()
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("nbgrader", None)
    # every answer unmarked: graded as missing (0), and the instructor's code never shown for them
    out["stripped_metadata"] = (nb, {"zero": TEST_CELLS, "tamper": ["deleted_cell"]})

    # a full marks notebook of another assignment (two share the id check_forward): refused, not cross-credited
    out["another_assignment"] = (json.loads((REPO / "solutions/en/01_tokenizer/01_tokenizer.ipynb").read_text(
        encoding="utf-8")), {"error": True})

    for name in ("invalid_json", "nbformat3", "no_cells"):
        out[name] = ((HERE / f"{name}.ipynb").read_bytes(), {"error": True})
    return out


def all_cases(grader_paths: dict) -> dict[str, tuple[dict | bytes, dict]]:
    """name -> (notebook dict or raw bytes, spec). grader_paths fills {steps}, {weights}, {solution};
    with "course_files" (plant_course_files' paths) the corpus also tries to read the course."""
    cases = {}
    for name, (grade_id, source, spec) in CELL_CASES.items():
        if name == "read_grader_files":
            source = source.replace("{steps!r}", repr(grader_paths["steps"])).replace(
                "{weights!r}", repr(grader_paths["weights"])).replace("{solution!r}", repr(grader_paths["solution"]))
        cases[name] = (with_cell(grade_id, source), spec)
    if grader_paths.get("course_files"):
        cases["read_course_files"] = reader_case(grader_paths["course_files"])
    for route in ROUTES:
        cases[f"monitor_off_{route}"] = (with_cell("softmax", monitor_off(route)),
                                         {"zero": ALL_CHECKS, "says": "is not allowed in graded code"})
    cases.update(deep_cases())
    cases.update(structural_cases())
    return cases
