"""What crosses between trusted and untrusted code: the only module both sides import.

    values     the wire format below: the cases the parent sends, the outputs the child returns
    reports    what the child may say about one step (parse_step_report checks it, strictly)
    the spy    RecordingSpy, the reference model behind a call recorder (the worker's side), and
               CacheSlot, how the parent sees the caches the record names

The notebook's own check() runs both sides in one process and needs none of this but the
model_fn wrapper (NoGradModel); the grader's parent (pipeline) and child (worker) use all of it.

Values cross the boundary as one JSON document plus one safetensors file:

    tensor           {"$tensor": "t3"}           the tensor named t3 in the .safetensors file
    permuted view    {"$view": ["t3", [0, 2, 1]]}  t3.permute(0, 2, 1): a transposed input stays
                                                 non-contiguous (other strided layouts are sent contiguous)
    bytes            {"$bytes": "00ff"}          hex
    tuple            {"$tuple": [...]}
    dict             {"$dict": [[key, value], ...]}   (keys: str, int, float, bool, None, tuple)
    float nan / inf  {"$float": "nan" | "inf" | "-inf"}
    torch.Generator  {"$generator": "t4"}        a CPU generator, its state as tensor t4
    reference model  {"$model": "model_fn"}      an object whose class sets __wire_model__: the
                                                 reader builds its own (the sandbox: the reference
                                                 model behind a callable or a call-recording spy,
                                                 or the weightless WindowProbe)
    anything else    {"$object": "ndarray"}      only the type's name: the judge reports a wrong type
    list, str, int, float, bool, None as themselves

Never pickle: reading a wire file executes nothing, and every read is bounded
(file sizes, nesting depth, item count) so that a hostile child cannot make
the parent allocate without limit. Both sides import this module; it imports
only json, torch and safetensors.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "course-wire/1"
MAX_JSON_BYTES = 16 * 2**20
MAX_TENSOR_BYTES = 256 * 2**20
MAX_DEPTH = 32
MAX_ITEMS = 200_000
MODEL_KINDS = ("model_fn", "spy", "window_probe")
MAX_SPY_CALLS = 10_000           # model calls a spy records and reports (the rest are not recorded)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,59}$")


class NoGradModel:
    """model_fn: ids (1, T) -> logits (1, T, V) of a model, without autograd. The checks pass one
    to the student's generation loop; on the wire it is {"$model": "model_fn"}, and the grader's
    worker wraps its own copy of the reference model in this same class."""

    __wire_model__ = "model_fn"

    def __init__(self, model):
        self.model = model

    def __call__(self, ids):
        with torch.no_grad():
            return self.model(ids)

    def __repr__(self):
        return "model_fn"


class WindowProbe(torch.nn.Module):
    """A stand-in model for generation loops whose greedy next id is the number of tokens it was fed:
    ids (1, T) -> logits (1, T, VOCAB), every row 0 but a 1 at id T. A loop's new ids are then the
    lengths of the windows it fed, so a window shifted one step early or late shows in the ids
    themselves (with the real model the two windows may well give the same tokens). Its context
    window is WINDOW tokens (cfg.max_seq_len, which autograde.reference.sampling.generate reads).
    On the wire {"$model": "window_probe"}; it holds no weights, so the worker builds it as is."""

    __wire_model__ = "window_probe"
    WINDOW, VOCAB = 8, 32

    def __init__(self):
        super().__init__()
        self.cfg = type("ProbeConfig", (), {"max_seq_len": self.WINDOW, "vocab_size": self.VOCAB, "n_layer": 1})()
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)   # for next(parameters())

    @property
    def model(self):                     # the checks' reference() reads model_fn.model
        return self

    def forward(self, ids, *args, **kwargs):
        T = ids.shape[-1]
        logits = torch.zeros(1, T, self.VOCAB)
        logits[0, -1, min(T, self.VOCAB - 1)] = 1.0
        return logits

    def __repr__(self):
        return "window_probe"


class WireError(ValueError):
    """A value that cannot be written, or a file that is not valid wire data."""


# ----------------------------------------------------------------------------
# encoding (used by the parent for cases and by the child for outputs)


class _Encoder:
    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self.items = 0

    def encode(self, value, depth: int = 0):
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise WireError("the value is nested too deeply or has too many items")
        # exact types first: a subclass (int with a strange __eq__, ...) is converted to its base type
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if type(value) is torch.Generator and value.device.type == "cpu":
            return {"$generator": self._tensor(value.get_state())["$tensor"]}
        kind = getattr(type(value), "__wire_model__", None)
        if kind in MODEL_KINDS:
            return {"$model": kind}
        if isinstance(value, int):
            return int.__index__(value) if type(value) is not int else value
        if isinstance(value, float):
            value = float.__float__(value)
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, (bytes, bytearray)):
            return {"$bytes": bytes(value).hex()}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, depth + 1) for v in tuple.__iter__(value)]}
        if isinstance(value, list):
            return [self.encode(v, depth + 1) for v in list.__iter__(value)]
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                              for k, v in dict.items(value)]}
        return {"$object": _type_name(value)}

    def _tensor(self, t: torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():          # no __torch_function__ of a subclass runs here
            return self._plain_tensor(torch.Tensor.as_subclass(t, torch.Tensor))   # drop the subclass

    def _plain_tensor(self, t: torch.Tensor):
        if t.device.type != "cpu":
            raise WireError(f"a tensor on device {t.device.type!r} (the grader runs on the CPU)")
        if t.layout != torch.strided:
            raise WireError(f"a {t.layout} tensor (only dense tensors are supported)")
        if t.is_complex():
            raise WireError("a complex tensor")
        name = f"t{len(self.tensors)}"
        order = _layout_order(t)
        if order is None:                   # contiguous, or a layout no permutation explains: sent contiguous
            self.tensors[name] = t.detach().clone().contiguous()
            return {"$tensor": name}
        # a permuted view (x.transpose(1, 2), x.mT): sent as the contiguous tensor it views, and
        # the permutation that gives the same layout back, so a case's non-contiguous input stays one
        self.tensors[name] = t.detach().permute(order).clone().contiguous()
        back = sorted(range(t.dim()), key=order.__getitem__)
        return {"$view": [name, back]}


def _layout_order(t: torch.Tensor) -> list[int] | None:
    """For a non-contiguous tensor whose memory is a permutation of its dimensions, that
    permutation (t.permute(order) is contiguous); else None."""
    if t.is_contiguous() or t.dim() < 2:
        return None
    order = sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.shape[d]))
    return order if t.permute(order).is_contiguous() and order != list(range(t.dim())) else None


def _type_name(value) -> str:
    name = getattr(type(value), "__name__", "object")
    return name if isinstance(name, str) and _NAME.match(name) else "object"


def dumps(value) -> tuple[bytes, bytes]:
    """(JSON bytes, safetensors bytes) for one value."""
    enc = _Encoder()
    doc = {"format": FORMAT, "value": enc.encode(value)}
    data = json.dumps(doc, ensure_ascii=True, allow_nan=False).encode()
    return data, st_save(enc.tensors) if enc.tensors else b""


def write(path: Path, value) -> None:
    """Write path (JSON) and path.with_suffix('.safetensors')."""
    data, tensors = dumps(value)
    Path(path).write_bytes(data)
    Path(path).with_suffix(".safetensors").write_bytes(tensors)


# ----------------------------------------------------------------------------
# decoding (bounded)


class _Opaque:
    """What an {"$object": name} becomes: compares equal to nothing."""


def _opaque(name: str):
    cls = type(name if _NAME.match(name) else "object", (_Opaque,), {})
    return cls()


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], models: dict | None = None):
        self.tensors = tensors
        self.models = models or {}       # kind -> factory; a reader without one gets an opaque object
        self.items = 0

    def decode(self, obj, depth: int = 0):
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise WireError("nested too deeply or too many items")
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if type(obj) is list:
            return [self.decode(v, depth + 1) for v in obj]
        if type(obj) is not dict or len(obj) != 1:
            raise WireError(f"unexpected JSON value of type {type(obj).__name__}")
        (tag, body), = obj.items()
        if tag == "$tensor" and type(body) is str and body in self.tensors:
            return self.tensors[body]
        if tag == "$view" and type(body) is list and len(body) == 2 and type(body[0]) is str \
                and body[0] in self.tensors and type(body[1]) is list \
                and sorted(body[1]) == list(range(self.tensors[body[0]].dim())) \
                and all(type(d) is int for d in body[1]):
            return self.tensors[body[0]].permute(body[1])
        if tag == "$generator" and type(body) is str and body in self.tensors:
            try:
                return torch.Generator().set_state(self.tensors[body])
            except (RuntimeError, TypeError):
                raise WireError("bad generator state") from None
        if tag == "$bytes" and type(body) is str:
            try:
                return bytes.fromhex(body)
            except ValueError:
                raise WireError("bad hex in $bytes") from None
        if tag == "$tuple" and type(body) is list:
            return tuple(self.decode(v, depth + 1) for v in body)
        if tag == "$dict" and type(body) is list:
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("bad $dict entry")
                key = self.decode(pair[0], depth + 1)
                try:
                    out[key] = self.decode(pair[1], depth + 1)
                except TypeError:
                    raise WireError("unhashable dict key") from None
            return out
        if tag == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$object" and type(body) is str:
            return _opaque(body)
        if tag == "$model" and body in MODEL_KINDS:
            return self.models[body]() if body in self.models else _opaque(body)
        raise WireError(f"unknown or malformed tag {tag!r}")


def _read_capped(path: Path, limit: int) -> bytes:
    try:
        size = os.stat(path).st_size
    except OSError:
        raise WireError(f"{path.name} is missing") from None
    if size > limit:
        raise WireError(f"{path.name} is too large ({size} bytes > {limit})")
    with open(path, "rb") as f:
        return f.read(limit + 1)[:limit]


def loads(data: bytes, tensor_bytes: bytes, models: dict | None = None):
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise WireError(f"not valid JSON: {str(exc)[:100]}") from None
    if type(doc) is not dict or doc.get("format") != FORMAT or "value" not in doc:
        raise WireError("not a course-wire document")
    try:
        tensors = st_load(tensor_bytes) if tensor_bytes else {}
    except Exception as exc:  # safetensors raises its own error types
        raise WireError(f"not a valid safetensors file: {str(exc)[:100]}") from None
    return _Decoder(tensors, models).decode(doc["value"])


def read(path: Path, max_json: int = MAX_JSON_BYTES, max_tensors: int = MAX_TENSOR_BYTES, models: dict | None = None):
    """The value written by write(path, value); WireError for anything malformed or too large.

    `models` maps each $model kind to a factory called once per occurrence (the worker passes
    them; the parent, reading the child's outputs, does not)."""
    path = Path(path)
    data = _read_capped(path, max_json)
    st_path = path.with_suffix(".safetensors")
    tensor_bytes = _read_capped(st_path, max_tensors) if st_path.exists() else b""
    return loads(data, tensor_bytes, models)


# ----------------------------------------------------------------------------
# the child's progress file: one JSON object a line (cell/step/case start and end, ready, done)


def progress_events(lines):
    """The lines that are JSON objects, as dicts; anything else the child wrote is skipped."""
    for line in lines:
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict):
            yield event


# ----------------------------------------------------------------------------
# the child's report on one step


CHILD_ERRORS = ("not_implemented", "forbidden_call", "raised", "timeout", "mutated_input")
# Every step report says that the worker's call monitor was guarded (autograde.grader.worker.MonitorGuard:
# an audit hook that refuses and records any other switch of the profiler); a report without it is
# treated as the monitor's absence, a tampering, and fails the step.
MONITOR_GUARDED = "guarded"
MONITOR_MISSING = "the grader's call monitor (its report is missing)"


@dataclass
class CaseReport:
    """One call of the student's function, as the child reports it: an output (with the spy's
    record of model calls when the case passes a spy), or an error key with its parameters."""
    out: object = None
    err: str | None = None
    params: dict = field(default_factory=dict)
    mro: list = field(default_factory=list)          # the exception's class names, for Case.raises
    calls: list | None = None                        # [[tokens, cache slot or -1], ...]


@dataclass
class StepReport:
    """A step as the child reports it. Exactly one of: cases, missing (no such function),
    unwritable (the output could not be encoded); `tampered` names library entries it changed, and the
    call monitor when the student's code tried to switch it or the report does not say it was guarded."""
    cases: list[CaseReport] | None = None
    missing: bool = False
    unwritable: str | None = None
    tampered: list[str] = field(default_factory=list)


class ReportError(ValueError):
    """A report that breaks the protocol (a hostile or broken child)."""


def case_out(value, calls: list | None = None) -> dict:
    return {"out": value} if calls is None else {"out": value, "calls": calls}


def case_err(key: str, **params) -> dict:
    return {"err": [key, params]}


def parse_step_report(value, n_cases: int) -> StepReport:
    """The decoded step file -> StepReport; ReportError for anything the protocol does not allow."""
    if not isinstance(value, dict):
        raise ReportError("not a result")
    tampered = value.get("tampered", [])
    if not (type(tampered) is list and all(type(t) is str for t in tampered)):
        raise ReportError("malformed tamper list")
    tampered = [t[:80] for t in tampered[:20]]
    if value.get("monitor") != MONITOR_GUARDED:        # the worker always says so: silence is tampering
        tampered.append(MONITOR_MISSING)
    if value.get("missing") is True:
        return StepReport(missing=True, tampered=tampered)
    if "unwritable" in value:
        return StepReport(unwritable=str(value["unwritable"])[:300], tampered=tampered)
    entries = value.get("cases")
    if not isinstance(entries, list) or len(entries) != n_cases:
        raise ReportError("wrong number of results")
    return StepReport(cases=[_case_report(e) for e in entries], tampered=tampered)


def _case_report(entry) -> CaseReport:
    if not isinstance(entry, dict) or set(entry) not in ({"out"}, {"err"}, {"out", "calls"}):
        raise ReportError("malformed result")
    if "err" in entry:
        err = entry["err"]
        if not (isinstance(err, list) and len(err) == 2 and err[0] in CHILD_ERRORS and isinstance(err[1], dict)):
            raise ReportError("malformed result")
        mro = err[1].get("mro") if isinstance(err[1].get("mro"), list) else []
        params = {str(k)[:40]: str(v)[:300] for k, v in list(err[1].items())[:5] if k != "mro"}
        return CaseReport(err=err[0], params=params, mro=[m for m in mro[:20] if isinstance(m, str)])
    calls = entry.get("calls")
    if calls is not None and not (type(calls) is list and len(calls) <= MAX_SPY_CALLS and all(
            type(c) is list and len(c) == 2 and all(type(x) is int for x in c) for c in calls)):
        raise ReportError("malformed call record")
    return CaseReport(out=entry["out"], calls=calls)


# ----------------------------------------------------------------------------
# the model spy


_SPIES: dict[int, dict] = {}      # id(spy) -> {"model", "calls", "caches"}: not on the object the student holds


class RecordingSpy:
    """The reference model, recording each call as (tokens read, which cache: -1 for none, else the
    index of that cache object among those seen). Built by the worker ({"$model": "spy"}).

    The record lives in this module (_SPIES), not on the object that the student's code is given,
    so that code cannot rewrite it; the static pass refuses every route to this module."""

    __slots__ = ()
    __wire_model__ = "spy"

    def __init__(self, model):
        _SPIES[id(self)] = {"model": model, "calls": [], "caches": []}

    def record(self) -> list[list[int]]:
        return [list(c) for c in _SPIES[id(self)]["calls"][:MAX_SPY_CALLS]]

    def __call__(self, ids, *args, cache=None, **kwargs):
        state = _SPIES[id(self)]
        if len(state["calls"]) < MAX_SPY_CALLS:
            tokens = ids.shape[-1] if isinstance(ids, torch.Tensor) and ids.dim() else -1
            state["calls"].append((int(tokens), _slot(state["caches"], cache)))
        with torch.no_grad():
            return state["model"](ids, *args, cache=cache, **kwargs)

    forward = __call__

    def __getattr__(self, name):                       # cfg, parameters(), ... come from the model
        return getattr(_SPIES[id(self)]["model"], name)

    def __repr__(self):
        return "model"


def _slot(caches: list, cache) -> int:
    if cache is None:
        return -1
    for i, seen in enumerate(caches):
        if seen is cache:
            return i
    caches.append(cache)
    return len(caches) - 1


class CacheSlot:
    """How the parent sees the n-th distinct cache object of a spy's record (identity is all that
    matters: the same slot is the same object)."""

    def __init__(self, n: int):
        self.n = n

    def __repr__(self):
        return f"cache #{self.n}"


def record_to_calls(record: list[list[int]]) -> list[tuple[int, CacheSlot | None]]:
    """[[tokens, slot], ...] -> [(tokens, CacheSlot or None), ...], one CacheSlot per slot number."""
    slots: dict[int, CacheSlot] = {}
    return [(tokens, None if slot < 0 else slots.setdefault(slot, CacheSlot(slot))) for tokens, slot in record]
