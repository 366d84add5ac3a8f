"""The grader's static pass (autograde.grader.static): the parent's own reading of the student's
cells refuses every route to the worker and names forbidden functions within a step's reach,
while the solutions and ordinary student code pass untouched."""
import json

import pytest

from autograde.checks.registry import get_check
from autograde.grader.pipeline import planned_checks
from autograde.grader.rebuild import SOLUTIONS, pristine_cells
from autograde.grader.static import analyse
from autograde.notebooks import ASSIGNMENTS

SETUP = [("setup", "import math\nimport torch\nimport torch.nn.functional as F\nfrom autograde.notebook import setup, check\n"
                   "from autograde.reference import model as ref\n")]
SDPA = ("attention.sdpa", "scaled_dot_product_attention",
        ("torch.nn.functional.scaled_dot_product_attention", "autograde.reference.model.scaled_dot_product_attention"))
SOFTMAX = ("attention.softmax", "softmax", ("torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax"))


def report(source: str, steps=(SDPA, SOFTMAX)):
    return analyse([("cell", source)], SETUP, list(steps))


# Every class of attack on the worker, each as a student would write it.
ESCAPES = {
    "rebind through __main__": "import __main__\n__main__.call_case = lambda *a, **k: {'out': None}\n",
    "rebind through sys.modules": "import sys\nsys.modules['autograde.checks.runner'].forbid = None\n",
    "gc walk": "import gc\nfor obj in gc.get_objects():\n    pass\n",
    "gc from import": "from gc import get_referrers\n",
    "frame globals": "import sys\ndef f():\n    return sys._getframe(1).f_globals\n",
    "frame through a traceback": "try:\n    1 / 0\nexcept Exception as e:\n    g = e.__traceback__.tb_frame.f_back\n",
    "profiler off": "import sys\nsys.setprofile(None)\n",
    "profiler off, threads": "import threading\nthreading.setprofile(None)\n",
    "tracer": "import sys\nsys.settrace(lambda *a: None)\n",
    "builtins swapped": "import builtins\nbuiltins.isinstance = lambda *a: True\n",
    "builtins by name": "__builtins__['len'] = lambda x: 0\n",
    "function globals": "def f():\n    pass\nf.__globals__['x'] = 1\n",
    "class walk": "subs = object.__subclasses__()\n",
    "base walk": "b = ().__class__.__base__\n",
    "module dict": "d = torch.__dict__\n",
    "vars": "v = vars(torch)\n",
    "globals()": "g = globals()\n",
    "eval": "f = eval('F.scaled_dot_' + 'product_attention')\n",
    "exec": "exec('x = 1')\n",
    "compile": "c = compile('1', 'x', 'eval')\n",
    "__import__": "m = __import__('gc')\n",
    "importlib": "import importlib\nm = importlib.import_module('gc')\n",
    "getattr computed": "name = 'scaled_dot_' + 'product_attention'\nf = getattr(F, name)\n",
    "getattr as a value": "g = getattr\n",
    "getattr dunder": "g = getattr(F, '__dict__')\n",
    "attrgetter": "from operator import attrgetter\nf = attrgetter('x')\n",
    "dunder in a string": "key = '__globals__'\n",
    "ctypes": "import ctypes\nctypes.memmove(0, 0, 0)\n",
    "pickle": "import pickle\n",
    "torch.ops": "y = torch.ops.aten.softmax(torch.zeros(2), 0, False)\n",
    "torch._C": "y = torch._C._nn.scaled_dot_product_attention\n",
    "private torch": "y = torch._softmax(torch.zeros(2), 0, False)\n",
    "monkeypatch torch": "torch.equal = lambda *a: True\n",
    "monkeypatch through an alias": "T = torch.Tensor\nT.clone = lambda self: self\n",
    "setattr on torch": "setattr(torch, 'allclose', lambda *a, **k: True)\n",
    "the grader's modules": "from autograde.grader import pipeline\n",
    "the protocol": "from autograde import protocol\n",
    "the checks": "import autograde.checks.core as core\n",
    "thread": "import threading\nthreading.Thread(target=print).start()\n",
    "fork": "import os\npid = os.fork()\n",
    "subprocess": "import subprocess\nsubprocess.run(['true'])\n",
    "signal": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n",
    "finalizer": "class Later:\n    def __del__(self):\n        pass\n",
    "torch override": "class T(torch.Tensor):\n    @classmethod\n    def __torch_function__(cls, *a, **k):\n        pass\n",
    "weakref": "import weakref\n",
    "atexit": "import atexit\n",
    "/proc": "f = open('/proc/self/mem', 'rb')\n",
    "relative import": "from . import x\n",
    # attribute access by a computed string (issue 17: Formatter.get_field switched the call monitor off)
    "Formatter.get_field": "import string, sys\noff = string.Formatter().get_field('0.set' + 'profile', (sys,), {})[0]\n",
    "Formatter imported": "from string import Formatter\n",
    "Formatter through an alias": "import string as s\nv = [s][0].Formatter().vformat('{0.x}', (1,), {})\n",
    "Formatter subclass": "import string\nclass Grab(string.Formatter):\n    def format_field(self, value, spec):\n"
                          "        return value\n",
    "format_field on any object": "def grab(f, value):\n    return f.format_field(value, '')\n",
    "format with an attribute field": "import sys\ntext = '{0.__dict__}'.format(sys)\n",
    "_string": "import _string\n",
    "attrgetter of setprofile": "import operator, sys\noff = operator.attrgetter('set' + 'profile')(sys)\n",
    "methodcaller": "import operator\nm = operator.methodcaller('x')\n",
    "vars(sys)": "import sys\noff = vars(sys)['setprofile']\n",
    "sys.__dict__": "import sys\noff = sys.__dict__['set' + 'profile']\n",
    "__getattribute__": "import sys\noff = sys.__getattribute__('set' + 'profile')\n",
    "object.__getattribute__": "import sys\noff = object.__getattribute__(sys, 'set' + 'profile')\n",
    "type.__getattribute__": "m = type.__getattribute__(int, 'mro')\n",
    "inspect.getattr_static": "import inspect, sys\noff = inspect.getattr_static(sys, 'set' + 'profile')\n",
    "getmembers from another module": "import torch\nm = torch.overrides.inspect.getmembers(torch)\n",
    "gc.get_referents": "import gc\nr = gc.get_referents(1)\n",
    "gc as another module's attribute": "import torch\nr = torch.serialization.gc\n",
    "sys.modules lookup": "import sys\nm = sys.modules['__main__']\n",
    "sys.modules through a list": "import sys\nm = [sys][0].modules['__main__']\n",
    "importlib as an attribute": "import torch\nm = [torch][0].importlib.import_module('gc')\n",
    "builtins by subscript": "b = __builtins__['getattr']\n",
    "typing evaluates a string": "import typing\ndef f(x: 'sys.setprofile'):\n    pass\nh = typing.get_type_hints(f)\n",
    "pydoc.locate": "import pydoc\noff = pydoc.locate('sys.setprofile')\n",
    "timeit runs a string": "import timeit\ntimeit.timeit('x = 1', number=1)\n",
    "unittest.mock": "from unittest import mock\np = mock.patch('sys.setprofile')\n",
    "torch.load": "import io\nm = torch.load(io.BytesIO(b''))\n",
    "a pickle reader by keyword": "import io\nm = [torch][0].load(io.BytesIO(b''), weights_only=False)\n",
    "numpy pickles": "import numpy as np\na = [np][0].load('x.npy', allow_pickle=True)\n",
    "torch.load's pickle switch": "import os\nos.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'\n",
    "pickle as another module's attribute": "p = torch.serialization.pickle\n",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_every_route_to_the_worker_is_refused(name):
    found = report(ESCAPES[name]).escapes
    assert found, name
    assert found[0].cell == "cell" and found[0].line >= 1


FINE = {
    "softmax by hand": "def softmax(x, dim=-1):\n    e = (x - x.amax(dim=dim, keepdim=True)).exp()\n"
                       "    return e / e.sum(dim=dim, keepdim=True)\n",
    "a class with __init__": "class Cache:\n    def __init__(self):\n        super().__init__()\n"
                             "        self.keys = []\n    def __len__(self):\n        return len(self.keys)\n",
    "main guard": "if __name__ == '__main__':\n    print(type(3).__name__)\n",
    "constant getattr": "d = getattr(torch, 'float32')\nok = hasattr(F, 'gelu')\n",
    "sys for printing": "import sys\nprint('x', file=sys.stderr)\nsys.stdout.flush()\n",
    "os for paths": "import os\np = os.path.join('a', 'b')\n",
    "own attributes": "class A:\n    pass\na = A()\na.weight = torch.ones(2)\n",
    "math": "import math\nscale = 1 / math.sqrt(64)\n",
    "regex": "import regex\nPAT = regex.compile(r'\\p{L}+')\n",
    "tensor methods": "x = torch.ones(2, 3)\ny = x.transpose(0, 1).contiguous().view(-1).softmax(0)\n",
    "a model's modules()": "class M(torch.nn.Module):\n    pass\nn = len(list(M().modules()))\n",
    "string formatting": "msg = '{0} {1:.3f}'.format('a', 1.0)\nline = f'{msg!r:>10}'\nrow = '%s' % msg\n",
    "string constants": "import string\nletters = string.ascii_letters + string.digits\n",
    "type hints": "from typing import Optional\ndef f(x: Optional[int] = None) -> 'int':\n    return x or 0\n",
    "keywords with safe values": "import numpy as np\ndef load(path):\n    return np.asarray([1])\n"
                                 "a = load('x', allow_pickle=False) if False else None\n",
}


@pytest.mark.parametrize("name", sorted(FINE))
def test_ordinary_student_code_is_not_refused(name):
    assert report(FINE[name]).escapes == []


def test_a_forbidden_function_is_found_wherever_the_step_can_reach_it():
    direct = "def scaled_dot_product_attention(q, k, v, mask=None):\n    return F.scaled_dot_product_attention(q, k, v)\n"
    alias = "fast = F.scaled_dot_product_attention\n" \
            "def scaled_dot_product_attention(q, k, v, mask=None):\n    return fast(q, k, v)\n"
    helper = "G = torch.nn.functional\ndef helper(q, k, v):\n    return G.scaled_dot_product_attention(q, k, v)\n" \
             "def scaled_dot_product_attention(q, k, v, mask=None):\n    return helper(q, k, v)\n"
    imported = "from torch.nn.functional import scaled_dot_product_attention as sdpa\n" \
               "def scaled_dot_product_attention(q, k, v, mask=None):\n    return sdpa(q, k, v)\n"
    hidden = "def scaled_dot_product_attention(q, k, v, mask=None):\n" \
             "    return [F][0].scaled_dot_product_attention(q, k, v)\n"
    by_name = "def scaled_dot_product_attention(q, k, v, mask=None):\n" \
              "    return getattr(F, 'scaled_dot_product_attention')(q, k, v)\n"
    reference = "def scaled_dot_product_attention(q, k, v, mask=None):\n" \
                "    return ref.scaled_dot_product_attention(q, k, v, mask)\n"
    functional = "def scaled_dot_product_attention(q, k, v, mask=None):\n" \
                 "    return ref.fn.scaled_dot_product_attention(q, k, v, mask)\n"
    functional_import = "from autograde.reference.functional import scaled_dot_product_attention as s\n" \
                        "def scaled_dot_product_attention(q, k, v, mask=None):\n    return s(q, k, v, mask)\n"
    for source in (direct, alias, helper, imported, hidden, by_name, reference, functional, functional_import):
        found = report(source).forbidden
        assert set(found) == {"attention.sdpa"}, source
        assert found["attention.sdpa"].what.endswith("scaled_dot_product_attention")
    # a tensor method is matched on any object; the softmax step forbids it, sdpa does not
    uses_method = "def softmax(x, dim=-1):\n    return x.softmax(dim)\n" \
                  "def scaled_dot_product_attention(q, k, v, mask=None):\n    return (q @ k.transpose(-2, -1)).softmax(-1) @ v\n"
    assert set(report(uses_method).forbidden) == {"attention.softmax"}


def test_a_forbidden_name_outside_the_steps_reach_is_not_blamed():
    source = "def demo(q):\n    return F.scaled_dot_product_attention(q, q, q)\n" \
             "def softmax(x, dim=-1):\n    e = x.exp()\n    return e / e.sum(dim, keepdim=True)\n" \
             "def scaled_dot_product_attention(q, k, v, mask=None):\n    return softmax(q @ k.mT, -1) @ v\n"
    assert report(source).forbidden == {}


def test_setup_cells_are_trusted_and_a_cell_with_a_plain_syntax_error_is_skipped():
    """A syntax error cannot run in the worker either: its error shows there like any broken cell's."""
    setup = [("setup", "import importlib.util, subprocess, sys\nsys.path.insert(0, '.')\n")]
    assert analyse([("cell", "def f(:\n")], setup, [SDPA]).escapes == []
    assert analyse([("cell", "x = 1\x00\n")], setup, [SDPA]).escapes == []


def deep_cell(terms: int = 10_000) -> str:
    """A cell whose tree is too deep for ast.parse: a sum of many terms is one level of the tree per term."""
    return "import sys\noff = sys.setprofile\nx = " + " + ".join(["1"] * terms) + "\n"


def test_a_cell_too_deep_to_parse_is_a_finding_not_a_clean_pass():
    """Issue 17: ast.parse gave up on a deep cell, which compile() in the worker accepts (an earlier cell
    can raise the recursion limit that compile's depth depends on), and the static pass skipped it,
    whatever it held. Now "cannot analyse" is an escape: nothing runs, and the feedback says why."""
    import ast
    import sys

    source = deep_cell()
    with pytest.raises((RecursionError, MemoryError)):
        ast.parse(source)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)           # as `sys.setrecursionlimit(100_000)` in the notebook's first cell
    try:
        compile(source, "<cell>", "exec")    # the worker would run it
    finally:
        sys.setrecursionlimit(limit)
    found = report(source).escapes
    assert [(f.kind, f.cell) for f in found] == [("unreadable", "cell")] and "RecursionError" in found[0].what
    # the tokenizer's own limit (too many nested parentheses) is no mistake of the student's code either
    nested = "x = " + "(" * 250 + "1" + ")" * 250 + "\n"
    found = report(nested).escapes
    assert [f.kind for f in found] == ["unreadable"] and "nested" in found[0].what


def test_the_unreadable_cell_is_named_in_both_languages():
    from autograde.checks.messages import korean_problems, message
    from autograde.grader.pipeline import Planned, static_verdict

    verdict = static_verdict(Planned("check_softmax", SOFTMAX[0], "softmax", False, 0, []),
                             analyse([("softmax", deep_cell())], SETUP, [SOFTMAX]))
    assert verdict.key == "grader_unanalysable" and verdict.params["cell"] == "softmax"
    en, ko = (message(verdict.key, lang, **verdict.params) for lang in ("en", "ko"))
    assert "softmax" in en and "could not be analysed" in en and "RecursionError" in en
    assert "softmax 셀을 분석할 수 없습니다" in ko and korean_problems(ko) == []


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_solutions_pass_the_static_pass(assignment, lang):
    """All eight notebooks' solutions, with the steps' forbidden names as the grader passes them."""
    cells = pristine_cells(SOLUTIONS / lang / assignment / f"{assignment}.ipynb")
    steps = [(step.id, step.function, (*get_check(step.id).forbidden, *get_check(step.id).forbidden_names))
             for _, step, _ in planned_checks(assignment, [c for c in cells if c.kind == "test"])]
    found = analyse([(c.grade_id, c.source) for c in cells if c.kind == "solution"],
                    [(c.grade_id, c.source) for c in cells if c.kind == "setup"], steps)
    assert steps and found.escapes == [] and found.forbidden == {}, json.dumps(found.to_json())


def test_parallel_graders_parse_one_at_a_time():
    """CPython 3.11/3.12 keep ast.parse's recursion bookkeeping per interpreter: when a thread switch
    lands inside a parse (here forced by a gc callback that sleeps), a second `course grade` worker's
    parse fails with "AST constructor recursion depth mismatch", and a submission went ungraded in CI.
    The static pass's parses are serialised: none fails."""
    import gc
    import threading
    import time

    from autograde.grader.static import _parse

    source = "\n".join(f"def f{i}(x):\n    return [[(x + {i}) * 2 for _ in range(3)] for _ in range(2)]"
                       for i in range(200))
    errors, threshold = [], gc.get_threshold()

    def switch(phase, info):
        time.sleep(0.0005)                       # give the GIL away in the middle of a parse

    def parse_many():
        for _ in range(6):
            try:
                assert _parse("cell", source).tree is not None
            except SystemError as exc:
                errors.append(exc)

    gc.callbacks.append(switch)
    gc.set_threshold(50)
    try:
        threads = [threading.Thread(target=parse_many) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gc.callbacks.remove(switch)
        gc.set_threshold(*threshold)
    assert errors == []
