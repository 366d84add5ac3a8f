"""Real Hugging Face checkpoints of the Llama family, run by the course's own code.

A checkpoint directory holds config.json, the weights as safetensors (one
model.safetensors, or shards listed in model.safetensors.index.json),
tokenizer.json and, for chat models, a chat template (in tokenizer_config.json,
chat_template.jinja or chat_template.json). Supported model types:

    llama   grouped-query attention, RoPE with or without Llama 3's frequency scaling
    qwen2   the same plus biases on W_q, W_k, W_v (Qwen2 and Qwen2.5)
    qwen3   RMSNorm on every query and key head before RoPE (QK-norm), head_dim of its own

load_checkpoint_dir() builds the course's Transformer (model.py, over
functional.py) on the meta device and hands it the checkpoint's tensors
themselves: torch.nn.Linear stores (out, in), the course stores (in, out), so
every matrix is a transposed view, never a copy. The tokenizer runs through the
`tokenizers` library; the chat template is rendered with jinja2 here, the way
transformers renders it (a sandboxed environment, trim_blocks, lstrip_blocks),
so transformers is needed only by the tests.

A hub id ("Qwen/Qwen3-0.6B") is fetched with huggingface_hub into its cache;
without network, one clear error says what to do instead.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from autograde.errors import CourseError
from autograde.reference.model import ModelConfig, Transformer

SUPPORTED = ("llama", "qwen2", "qwen3")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HUB_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
             "chat_template.json"]


# ----------------------------------------------------------------------------
# config.json -> ModelConfig


def _rope(data: dict) -> tuple[float, dict | None]:
    """theta and scaling from either config style: transformers 5 writes rope_parameters,
    checkpoints written before it have rope_theta and rope_scaling (with "rope_type" or "type")."""
    params = data.get("rope_parameters")
    if isinstance(params, dict) and "layer_types" not in params and "full_attention" in params:
        params = params["full_attention"]
    if isinstance(params, dict):
        theta = params.get("rope_theta", data.get("rope_theta", 10000.0))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta, scaling = data.get("rope_theta", 10000.0), dict(data.get("rope_scaling") or {})
    if float(scaling.pop("partial_rotary_factor", data.get("partial_rotary_factor") or 1.0)) != 1.0:
        raise CourseError("RoPE on part of each head (partial_rotary_factor) is not supported")
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    kind = scaling.get("rope_type", "default")
    if kind == "default":
        return float(theta), None
    if kind not in ("linear", "llama3"):
        raise CourseError(f"RoPE scaling {kind!r} is not supported (supported: default, linear, llama3)")
    return float(theta), scaling


def config_from_hf(data: dict, where: str = "config.json") -> ModelConfig:
    """The course's ModelConfig of a transformers config.json (llama, qwen2, qwen3)."""
    kind = data.get("model_type")
    if kind not in SUPPORTED:
        raise CourseError(f"{where}: model type {kind!r} is not supported (supported: {', '.join(SUPPORTED)})")
    if data.get("hidden_act", "silu") != "silu":
        raise CourseError(f"{where}: activation {data['hidden_act']!r} is not supported (only silu, as in SwiGLU)")
    if data.get("mlp_bias"):
        raise CourseError(f"{where}: biases in the feed-forward network (mlp_bias) are not supported")
    if data.get("use_sliding_window") or any(t != "full_attention" for t in data.get("layer_types") or []):
        raise CourseError(f"{where}: sliding-window attention (use_sliding_window) is not supported")
    try:
        n_head = int(data["num_attention_heads"])
        hidden = int(data["hidden_size"])
        head_dim = data.get("head_dim") or hidden // n_head
        theta, scaling = _rope(data)
        return ModelConfig.llama_style(
            vocab_size=int(data["vocab_size"]), d_model=hidden, n_layer=int(data["num_hidden_layers"]),
            n_head=n_head, n_kv_head=int(data.get("num_key_value_heads") or n_head),
            d_ff=int(data["intermediate_size"]), max_seq_len=int(data.get("max_position_embeddings", 2048)),
            norm_eps=float(data.get("rms_norm_eps", 1e-6)), rope_theta=theta, rope_scaling=scaling,
            tie_embeddings=bool(data.get("tie_word_embeddings", False)),
            d_head=None if head_dim * n_head == hidden else int(head_dim),
            bias=kind != "qwen2" and bool(data.get("attention_bias", False)),
            qkv_bias=kind == "qwen2", qk_norm=kind == "qwen3",
            extra={"model_type": kind})
    except KeyError as exc:
        raise CourseError(f"{where} has no {exc.args[0]!r}, which a {kind} model needs") from None
    except (TypeError, ValueError) as exc:
        raise CourseError(f"{where} has a field of the wrong type: {exc}") from None


# ----------------------------------------------------------------------------
# weights


_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")
_LAYER_NAMES = {
    "input_layernorm.weight": ("norm1.weight", False),
    "post_attention_layernorm.weight": ("norm2.weight", False),
    "self_attn.q_proj.weight": ("attn.W_q", True), "self_attn.k_proj.weight": ("attn.W_k", True),
    "self_attn.v_proj.weight": ("attn.W_v", True), "self_attn.o_proj.weight": ("attn.W_o", True),
    "self_attn.q_proj.bias": ("attn.b_q", False), "self_attn.k_proj.bias": ("attn.b_k", False),
    "self_attn.v_proj.bias": ("attn.b_v", False), "self_attn.o_proj.bias": ("attn.b_o", False),
    "self_attn.q_norm.weight": ("attn.q_norm.weight", False), "self_attn.k_norm.weight": ("attn.k_norm.weight", False),
    "mlp.gate_proj.weight": ("ffn.W_gate", True), "mlp.up_proj.weight": ("ffn.W_up", True),
    "mlp.down_proj.weight": ("ffn.W_down", True),
}


def state_from_hf(hf_state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """transformers' tensor names -> the course's, matrices as transposed views (no copy)."""
    ours: dict[str, torch.Tensor] = {}
    unknown = []
    for name, t in hf_state.items():
        if name.endswith("rotary_emb.inv_freq"):          # a buffer some old checkpoints saved
            continue
        if name == "model.embed_tokens.weight":
            ours["tok_emb"] = t
        elif name == "model.norm.weight":
            ours["norm_f.weight"] = t
        elif name == "lm_head.weight":
            if not cfg.tie_embeddings:                     # tied checkpoints may still carry a copy
                ours["W_u"] = t.t()
        elif (m := _LAYER.fullmatch(name)) and m.group(2) in _LAYER_NAMES:
            new, transpose = _LAYER_NAMES[m.group(2)]
            ours[f"blocks.{m.group(1)}.{new}"] = t.t() if transpose else t
        else:
            unknown.append(name)
    if unknown:
        raise CourseError(f"the checkpoint has tensors this model does not use: {sorted(unknown)[:5]}")
    return ours


def hf_name(ours: str) -> str:
    """The transformers name of one of our tensors (for messages): "blocks.0.attn.W_k" -> "model.layers.0...."."""
    fixed = {"tok_emb": "model.embed_tokens.weight", "norm_f.weight": "model.norm.weight", "W_u": "lm_head.weight"}
    if ours in fixed:
        return fixed[ours]
    layer, _, rest = ours.removeprefix("blocks.").partition(".")
    theirs = next((h for h, (o, _) in _LAYER_NAMES.items() if o == rest), rest)
    return f"model.layers.{layer}.{theirs}"


def check_fit(model: Transformer, ours: dict[str, torch.Tensor], where: str):
    """Every tensor present and of the shape config.json implies, named as the checkpoint names it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(ours))
    if missing:
        raise CourseError(f"{where}: the checkpoint lacks {[hf_name(n) for n in missing][:5]}")
    for name, t in sorted(ours.items()):
        transposed = _LAYER_NAMES.get(hf_name(name).split(".", 3)[-1], ("", False))[1] or name == "W_u"
        expected = tuple(own[name].shape)[::-1] if transposed else tuple(own[name].shape)
        shape = tuple(t.shape)[::-1] if transposed else tuple(t.shape)
        if shape != expected:
            raise CourseError(f"{where}: {hf_name(name)} has shape {shape}, but config.json implies {expected}")


def read_safetensors(directory: Path, device="cpu") -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors, or of the shards model.safetensors.index.json lists."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CourseError(f"{index} is not a valid safetensors index: {exc}") from None
        files = sorted(set(weight_map.values()))
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CourseError(f"{directory} has no model.safetensors and no model.safetensors.index.json")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        path = directory / name
        if not path.is_file():
            raise CourseError(f"{path} is missing (the index lists it)")
        try:
            state.update(load_file(str(path), device=str(device)))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CourseError(f"{path} is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
    return state


# ----------------------------------------------------------------------------
# the tokenizer and the chat template


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CourseError(f"{path} should hold a JSON object")
    return data


def _chat_template(directory: Path, tok_config: dict) -> str | None:
    if (directory / "chat_template.jinja").is_file():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    template = _read_json(directory / "chat_template.json").get("chat_template") or tok_config.get("chat_template")
    if isinstance(template, list):      # several named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


class HFTokenizer:
    """tokenizer.json through the `tokenizers` library, and the chat template."""

    def __init__(self, directory):
        directory = Path(directory)
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise CourseError("reading tokenizer.json needs the tokenizers package: pip install tokenizers") from None
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise CourseError(f"{path} is missing")
        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises its own Exception subclass
            raise CourseError(f"{path} is not a tokenizer the tokenizers library can read: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.config = _read_json(directory / "tokenizer_config.json")
        specials = _read_json(directory / "special_tokens_map.json")
        self.special = {name: _token_text(self.config.get(name, specials.get(name)))
                        for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
        self.chat_template = _chat_template(directory, self.config)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def token_id(self, text: str | None) -> int | None:
        return None if text is None else self.tok.token_to_id(text)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids; add_special_tokens adds what the tokenizer's post-processor adds (Llama 3: a BOS)."""
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True, **options) -> str:
        """The conversation as the model saw it in training, rendered by its own template."""
        if not self.chat_template:
            raise CourseError("this model has no chat template (tokenizer_config.json has no chat_template): "
                              "it is not a chat model; use `course generate`")
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                              sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            template = env.from_string(self.chat_template)
            return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                   **{k: v for k, v in self.special.items() if v is not None}, **options)
        except jinja2.exceptions.TemplateError as exc:
            raise CourseError(f"the chat template failed: {exc}") from None

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True, **options) -> list[int]:
        """The rendered conversation's ids: the template writes the special tokens itself."""
        return self.encode(self.render_chat(messages, add_generation_prompt, **options), add_special_tokens=False)


# ----------------------------------------------------------------------------
# devices, dtypes, directories


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CourseError("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise CourseError(f"unknown device {name!r} (auto, cpu or cuda)")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device, stored: str | None = None) -> torch.dtype:
    """auto: float32 on the CPU; on a GPU the checkpoint's half precision (bfloat16 where it runs)."""
    if name != "auto":
        if name not in DTYPES:
            raise CourseError(f"unknown dtype {name!r} (auto, {', '.join(DTYPES)})")
        return DTYPES[name]
    if device.type != "cuda":
        return torch.float32
    if stored == "float16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def is_hf_checkpoint(directory: Path) -> bool:
    """A transformers config.json names its model_type; the course's own config does not."""
    config = directory / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def resolve_model_dir(name: str) -> Path:
    """A local directory as it is; a hub id ("org/name") from the Hugging Face cache or the network."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CourseError(f"{name} is a file: give a model directory or a Hugging Face hub id (org/name)")
    if not _HUB_ID.fullmatch(name) or ".." in name:
        raise CourseError(f"{name}: no such model directory")
    return download(name)


def download(repo_id: str) -> Path:
    """The checkpoint files of repo_id (cached by huggingface_hub); one clear error without network."""
    hint = (f"download it where there is network (`hf download {repo_id} --local-dir DIR`) "
            "and pass --model DIR")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CourseError(f"{repo_id} is not a local directory, and fetching it needs huggingface_hub "
                          f"(pip install huggingface_hub); or {hint}") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=offline,
                                      etag_timeout=5))
    except Exception as exc:  # network, missing or gated repository, offline mode: all end the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "offline (HF_HUB_OFFLINE is set) and not in the local cache" if offline else \
            f"could not be fetched from the Hugging Face Hub ({type(exc).__name__}: {reason[:160]})"
        raise CourseError(f"model {repo_id} {where}; {hint}") from None


# ----------------------------------------------------------------------------
# loading


@dataclass
class Loaded:
    """A model ready to generate: the course's Transformer, a tokenizer, the ids that end a reply."""
    model: Transformer
    tokenizer: object                      # HFTokenizer, or the course's BPETokenizer
    directory: Path
    stop_ids: list[int] = field(default_factory=list)
    hf: bool = True


def _eos_ids(*values) -> list[int]:
    """The first of values that names end-of-sequence ids (an int or a list), as a list."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if isinstance(value, list) and value:
            return [int(v) for v in value]
    return []


def load_checkpoint_dir(directory, device="cpu", dtype="auto") -> Loaded:
    """A transformers checkpoint directory as the course's Transformer and an HFTokenizer."""
    directory = Path(directory)
    device = pick_device(device) if isinstance(device, str) else device
    data = _read_json(directory / "config.json")
    if not data:
        raise CourseError(f"{directory / 'config.json'} is missing or empty")
    cfg = config_from_hf(data, str(directory / "config.json"))
    dtype = pick_dtype(dtype, device, data.get("dtype") or data.get("torch_dtype")) if isinstance(dtype, str) else dtype
    tokenizer = HFTokenizer(directory)
    hf_state = {name: t.to(dtype) for name, t in read_safetensors(directory, device).items()}
    with torch.device("meta"):
        model = Transformer(cfg)
    ours = state_from_hf(hf_state, cfg)
    check_fit(model, ours, str(directory))
    model.load_weights(ours, assign=True)
    model.eval().requires_grad_(False)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CourseError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {cfg.vocab_size}")
    generation = _read_json(directory / "generation_config.json")
    stop = _eos_ids(generation.get("eos_token_id"), data.get("eos_token_id"))
    return Loaded(model, tokenizer, directory, stop)


def load_model(name: str | None, device="auto", dtype="auto") -> Loaded:
    """--model: the course's own checkpoint (default: the committed reference), a transformers
    checkpoint directory, or a hub id."""
    from autograde.reference.checkpoint import REFERENCE_DIR, load_checkpoint

    directory = resolve_model_dir(name) if name else REFERENCE_DIR
    dev = pick_device(device)
    if is_hf_checkpoint(directory):
        return load_checkpoint_dir(directory, dev, dtype)
    # the course's 1M-parameter model gains nothing from a GPU: auto keeps it on the CPU
    ref = load_checkpoint(directory, torch.device("cpu") if device == "auto" else dev)
    model = ref.model if dtype in ("auto", "float32") else ref.model.to(pick_dtype(dtype, dev))
    return Loaded(model, ref.tokenizer, directory, [], hf=False)


def chat_reply(loaded: Loaded, messages: list[dict], max_new_tokens: int = 256, thinking: bool = False,
               **sampling) -> str:
    """The model's answer to the conversation so far, generated by the course's own loop with its KV cache."""
    from autograde.reference.sampling import generate

    if not loaded.hf:
        raise CourseError("the course's own model is not a chat model; use `course generate`, "
                          "or give --model a chat-tuned checkpoint")
    tok = loaded.tokenizer
    ids = tok.encode_chat(messages, add_generation_prompt=True, enable_thinking=thinking)
    stop = set(loaded.stop_ids) | {i for i in [tok.token_id(tok.special["eos_token"])] if i is not None}
    new = generate(loaded.model, ids, max_new_tokens, stop_id=sorted(stop), **sampling)
    return tok.decode(new, skip_special_tokens=True).strip()
