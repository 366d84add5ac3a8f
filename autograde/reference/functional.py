"""The transformer's math, written once: pure functions of tensors and weights.

Everything that computes something lives here: normalisation, rotary
positions (with Llama 3's frequency scaling), grouped-query attention with an
optional KV cache, the feed-forward networks, one pre-norm block and the whole
forward pass. The course's Transformer (model.py) is a set of nn.Modules that
only hold weights and call these functions; the Hugging Face loader
(hf_load.py) puts a real checkpoint's weights into that same Transformer; the
checks and the assembly of the students' pieces can call forward() with a
plain dict of tensors and, through `ops`, their own versions of the pieces.

Weights are stored the way the equations are written: Q = X @ W_q with W_q of
shape (d_model, n_head * head_dim), so every matrix multiplies from the right.
A weights dict uses the names of Transformer.state_dict():

    tok_emb (V, C), pos_emb (P, C) (learned positions only), norm_f.weight/.bias,
    W_u (C, V) (untied only), and per layer i under "blocks.{i}.":
    norm1.weight/.bias, norm2.weight/.bias,
    attn.W_q (C, H*D), attn.W_k, attn.W_v (C, G*D), attn.W_o (H*D, C),
    attn.b_q, attn.b_k, attn.b_v, attn.b_o (when there are biases),
    attn.q_norm.weight, attn.k_norm.weight (D,) (QK-norm, Qwen3),
    ffn.W_gate, ffn.W_up (C, F), ffn.W_down (F, C) (SwiGLU) or ffn.W_1, ffn.b_1, ffn.W_2, ffn.b_2.

Shape letters: B batch, T tokens in this call, S tokens in the cache plus this
call, C d_model, H query heads, G key/value heads, D head_dim, F d_ff, V vocab.

Precision: norms, the softmax and the rotary tables are computed in at least
float32 and cast back, so a bfloat16 model rounds where transformers rounds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from autograde.errors import CourseError

ROPE_TYPES = ("default", "linear", "llama3")


@dataclass
class ModelConfig:
    vocab_size: int = 2048
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4           # < n_head gives grouped-query attention
    d_ff: int = 512
    max_seq_len: int = 256
    position: str = "learned"    # "learned" | "sinusoidal" | "rope" | "none"
    norm: str = "layernorm"      # "layernorm" | "rmsnorm"
    ffn: str = "gelu"            # "relu" | "gelu" | "swiglu"
    bias: bool = True            # biases in the linear maps
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = True  # unembedding W_U = W_E^T
    init_std: float = 0.02
    extra: dict = field(default_factory=dict)  # free-form notes (corpus hash, ...)
    # what real checkpoints add (the defaults keep the course's own models as they were)
    d_head: int | None = None    # head_dim when it is not d_model / n_head (Qwen3)
    qkv_bias: bool = False       # biases on W_q, W_k, W_v only (Qwen2)
    qk_norm: bool = False        # RMSNorm on every query and key head before RoPE (Qwen3)
    rope_scaling: dict | None = None  # {"rope_type": "llama3" | "linear", "factor": ..., ...}

    def __post_init__(self):
        checks = [
            (self.d_head is not None or self.d_model % self.n_head == 0,
             f"d_model={self.d_model} is not divisible by n_head={self.n_head}"),
            (self.d_head is None or (isinstance(self.d_head, int) and self.d_head > 0 and self.d_head % 2 == 0),
             f"d_head must be a positive even number (got {self.d_head})"),
            (self.n_head % self.n_kv_head == 0, f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}"),
            (self.position in ("learned", "sinusoidal", "rope", "none"), f"unknown position {self.position!r}"),
            (self.norm in ("layernorm", "rmsnorm"), f"unknown norm {self.norm!r}"),
            (self.ffn in ("relu", "gelu", "swiglu"), f"unknown ffn {self.ffn!r}"),
            (self.rope_scaling is None or self.rope_scaling.get("rope_type") in ROPE_TYPES,
             f"unknown rope scaling {self.rope_scaling!r}; supported: {', '.join(ROPE_TYPES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CourseError(f"invalid model config: {message}")

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_head

    @classmethod
    def gpt2_style(cls, **overrides) -> "ModelConfig":
        base = dict(position="learned", norm="layernorm", ffn="gelu", bias=True, tie_embeddings=True)
        return cls(**{**base, **overrides})

    @classmethod
    def llama_style(cls, **overrides) -> "ModelConfig":
        base = dict(position="rope", norm="rmsnorm", ffn="swiglu", bias=False, tie_embeddings=False, norm_eps=1e-6)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise CourseError(f"invalid model config: unknown field(s) {sorted(unknown)}")
        return cls(**data)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half precisions, the tensor's own dtype when it is float32 or float64."""
    return torch.promote_types(x.dtype, torch.float32)


# ----------------------------------------------------------------------------
# attention


def softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax: subtracting the max changes nothing
    mathematically (it cancels in the ratio) but keeps exp() from overflowing."""
    shifted = scores - scores.amax(dim=dim, keepdim=True)
    exps = shifted.exp()
    return exps / exps.sum(dim=dim, keepdim=True)


def causal_mask(t_query: int, t_key: int, device=None) -> torch.Tensor:
    """(T, S) boolean mask, True where query i may look at key j.

    Queries are the last t_query positions of t_key, so with a KV cache query
    i sits at absolute position (t_key - t_query + i) and may see keys up to it.
    """
    offset = t_key - t_query
    q_pos = torch.arange(t_query, device=device)[:, None] + offset  # (T, 1)
    k_pos = torch.arange(t_key, device=device)[None, :]             # (1, S)
    return k_pos <= q_pos                                            # (T, S)


def attention_scores(q, k):
    """Q K^T / sqrt(d_k): how well each query matches each key, before the softmax.

    q: (..., T, D), k: (..., S, D). Returns (..., T, S). Dividing by sqrt(d_k) keeps
    the scores' spread near 1 whatever the head size, so the softmax does not saturate.
    """
    d_k = q.shape[-1]
    return q @ k.transpose(-2, -1) / math.sqrt(d_k)      # (..., T, S)


def attention_weights(q, k, mask=None):
    """softmax(Q K^T / sqrt(d_k)): how much each query looks at each key.

    q: (..., T, D), k: (..., S, D), mask: broadcastable to (..., T, S),
    True = may attend. Returns (..., T, S) in q's dtype; each row sums to 1.
    """
    scores = attention_scores(q, k)                      # (..., T, S)
    if mask is not None:
        # -inf before the softmax, so masked keys get exactly zero weight
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores.to(_compute_dtype(scores)), dim=-1).to(q.dtype)  # (..., T, S)
    # a padding query that may attend to nothing gets all-zero weights, not NaN
    return weights.nan_to_num(0.0)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V: a weighted mix of the values.

    q: (..., T, D), k and v: (..., S, D). Returns (..., T, D).
    """
    return attention_weights(q, k, mask) @ v             # (..., T, D)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Grouped-query attention's sharing: (B, G, S, D) -> (B, G * n_rep, S, D).

    Each key/value head serves n_rep consecutive query heads, so head g is
    repeated in place (k0, k0, k1, k1), not tiled (k0, k1, k0, k1)."""
    return x.repeat_interleave(n_rep, dim=1)                  # (B, G * n_rep, S, D)


def grouped_query_attention(q, k, v, mask=None, record: dict | None = None, layer: int = 0):
    """Attention over heads where the keys and values may have fewer heads than the queries.

    q: (B, H, T, D), k and v: (B, G, S, D) with H a multiple of G, mask broadcastable
    to (B, H, T, S). Returns (B, H, T, D); record[layer] receives the weights (B, H, T, S).
    """
    group = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, group), repeat_kv(v, group)           # (B, H, S, D)
    weights = attention_weights(q, k, mask)                   # (B, H, T, S)
    if record is not None:
        record[layer] = weights.detach()
    return weights @ v                                        # (B, H, T, D)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, n_heads * D) -> (B, n_heads, T, D)."""
    B, T, _ = x.shape
    return x.view(B, T, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (B, T, H * D), the inverse of split_heads."""
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ W (+ b), with W stored (in, out) like the equations."""
    y = x @ weight
    return y if bias is None else y + bias


# ----------------------------------------------------------------------------
# rotary positions


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None, device=None) -> torch.Tensor:
    """The rotation speed of each dimension pair, (D/2,): theta^(-2i/D).

    Llama 3 stretches the slow pairs for a longer context: wavelengths longer
    than original_max_position_embeddings / low_freq_factor turn `factor` times
    slower, those shorter than original / high_freq_factor stay, and the ones
    in between blend the two smoothly. "linear" slows every pair by `factor`.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)  # (D/2,)
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        context = float(scaling["original_max_position_embeddings"])
        wavelength = 2 * math.pi / inv_freq                                       # (D/2,)
        slow = wavelength > context / low          # long wavelengths: fully stretched
        fast = wavelength < context / high         # short wavelengths: untouched
        blend = (context / wavelength - low) / (high - low)                       # 0 at slow end, 1 at fast end
        mixed = (1 - blend) * inv_freq / factor + blend * inv_freq
        return torch.where(slow, inv_freq / factor, torch.where(fast, inv_freq, mixed))
    raise CourseError(f"unknown rope scaling {kind!r}; supported: {', '.join(ROPE_TYPES)}")


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, scaling: dict | None = None):
    """cos and sin tables for rotary embeddings, shape (B, T, D), float32.

    Dimension pair (i, i + D/2) rotates at frequency theta^(-2i/D): the first
    dimensions spin fast (local order), the last ones slowly (long range).
    """
    inv_freq = rope_inv_freq(head_dim, theta, scaling, positions.device)  # (D/2,)
    angles = positions.float()[..., None] * inv_freq  # (B, T, D/2)
    angles = torch.cat([angles, angles], dim=-1)       # (B, T, D)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+D/2}) pair by its position's angle. x: (B, H, T, D)."""
    cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)  # (B, 1, T, D): same rotation for every head
    return x * cos + rotate_half(x) * sin


# ----------------------------------------------------------------------------
# normalisation and feed-forward networks


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring or bias."""
    h = x.to(_compute_dtype(x))
    h = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias, over the last dimension."""
    h = x.to(_compute_dtype(x))
    mean = h.mean(-1, keepdim=True)
    var = h.var(-1, keepdim=True, unbiased=False)
    return ((h - mean) / torch.sqrt(var + eps)).to(x.dtype) * weight + bias


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (the one GPT-2 uses)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def swiglu(x: torch.Tensor, W_gate: torch.Tensor, W_up: torch.Tensor, W_down: torch.Tensor) -> torch.Tensor:
    """(silu(x W_gate) * (x W_up)) W_down: the gate decides how much of each hidden unit passes."""
    return (F.silu(x @ W_gate) * (x @ W_up)) @ W_down                 # (B, T, C)


def mlp(x, W_1, b_1, W_2, b_2, activation: str = "gelu") -> torch.Tensor:
    """act(x W_1 + b_1) W_2 + b_2 with act = relu or gelu."""
    pre = linear(x, W_1, b_1)                                          # (B, T, F)
    hidden = torch.relu(pre) if activation == "relu" else gelu(pre)    # (B, T, F)
    return linear(hidden, W_2, b_2)                                    # (B, T, C)


# ----------------------------------------------------------------------------
# the KV cache


class KVCache:
    """Keys and values of every past token, one (k, v) pair per layer.

    Prefill fills it with the prompt; each decode step appends one position.
    Stored after RoPE and before the GQA repeat, so it holds only n_kv_head heads.
    """

    def __init__(self, n_layer: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer

    @property
    def length(self) -> int:
        first = self.layers[0]
        return 0 if first is None else first[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append this call's k, v (B, G, T, D); return all of them (B, G, S, D)."""
        past = self.layers[layer]
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    def nbytes(self) -> int:
        """Memory the cached keys and values take."""
        return sum(t.numel() * t.element_size() for kv in self.layers if kv is not None for t in kv)


# ----------------------------------------------------------------------------
# one layer, the block, the model


class Prefixed(Mapping):
    """The weights of one part, seen without their prefix: Prefixed(w, "blocks.0.")["attn.W_q"]."""

    def __init__(self, weights: Mapping, prefix: str):
        self.weights, self.prefix = weights, prefix

    def __getitem__(self, name):
        return self.weights[self.prefix + name]

    def __iter__(self):
        n = len(self.prefix)
        return (name[n:] for name in self.weights if name.startswith(self.prefix))

    def __len__(self):
        return sum(1 for _ in self)

    def __contains__(self, name):
        return (self.prefix + name) in self.weights


def norm(x: torch.Tensor, w: Mapping, name: str, cfg: ModelConfig, ops: Mapping | None = None) -> torch.Tensor:
    """The configured norm with the weights w[name + ".weight"] (and ".bias" for LayerNorm)."""
    if cfg.norm == "rmsnorm":
        return (ops or {}).get("rms_norm", rms_norm)(x, w[name + ".weight"], cfg.norm_eps)
    return layer_norm(x, w[name + ".weight"], w[name + ".bias"], cfg.norm_eps)


def attention(x: torch.Tensor, w: Mapping, cfg: ModelConfig, mask=None, rope=None, cache: KVCache | None = None,
              layer: int = 0, record: dict | None = None) -> torch.Tensor:
    """Grouped-query self-attention of one layer. x: (B, T, C) -> (B, T, C).

    w: this layer's attention weights without prefix ("W_q", "b_q", "q_norm.weight", ...).
    mask: broadcastable to (B, H, T, S); rope: (cos, sin), each (B, T, D); record: when
    given, record[layer] receives the attention weights (B, H, T, S).
    """
    q = split_heads(linear(x, w["W_q"], w.get("b_q")), cfg.n_head)     # (B, H, T, D)
    k = split_heads(linear(x, w["W_k"], w.get("b_k")), cfg.n_kv_head)  # (B, G, T, D)
    v = split_heads(linear(x, w["W_v"], w.get("b_v")), cfg.n_kv_head)  # (B, G, T, D)
    if cfg.qk_norm:                       # Qwen3: each head's query and key normalised on their own
        q = rms_norm(q, w["q_norm.weight"], cfg.norm_eps)
        k = rms_norm(k, w["k_norm.weight"], cfg.norm_eps)
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    if cache is not None:
        k, v = cache.update(layer, k, v)                               # (B, G, S, D)
    out = grouped_query_attention(q, k, v, mask, record, layer)       # (B, H, T, D)
    return linear(merge_heads(out), w["W_o"], w.get("b_o"))           # (B, T, C)


def feed_forward(x: torch.Tensor, w: Mapping, cfg: ModelConfig, ops: Mapping | None = None) -> torch.Tensor:
    """The configured FFN with this layer's weights w ("W_gate", ... or "W_1", ...). (B, T, C) -> (B, T, C)."""
    if cfg.ffn == "swiglu":
        return (ops or {}).get("swiglu", swiglu)(x, w["W_gate"], w["W_up"], w["W_down"])
    return mlp(x, w["W_1"], w.get("b_1"), w["W_2"], w.get("b_2"), cfg.ffn)


def block(x: torch.Tensor, w: Mapping, cfg: ModelConfig, mask=None, rope=None, cache: KVCache | None = None,
          layer: int = 0, ops: Mapping | None = None, record: dict | None = None) -> torch.Tensor:
    """Pre-norm residual block: each sublayer reads a normalised copy of the residual
    stream and adds its output back onto it. w: one layer's weights ("norm1.weight", "attn.W_q", ...).

    ops may replace "rms_norm" (x, weight, eps), "attention" (x, w, cfg, mask, rope, cache, layer)
    and "swiglu" (x, W_gate, W_up, W_down) by other implementations of the same signature.
    """
    attend = (ops or {}).get("attention")
    h = norm(x, w, "norm1", cfg, ops)
    if attend is None:
        a = attention(h, Prefixed(w, "attn."), cfg, mask, rope, cache, layer, record)
    else:
        a = attend(h, Prefixed(w, "attn."), cfg, mask, rope, cache, layer)
    x = x + a                                                          # (B, T, C)
    return x + feed_forward(norm(x, w, "norm2", cfg, ops), Prefixed(w, "ffn."), cfg, ops)


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(same). (P, C)"""
    if dim % 2:
        raise ValueError(f"the sinusoidal table pairs a sine with a cosine: dim must be even, not {dim}")
    pos = torch.arange(n_positions).float()[:, None]             # (P, 1)
    freq = 10000.0 ** (-torch.arange(0, dim, 2).float() / dim)   # (C/2,)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def unembedding(weights: Mapping, cfg: ModelConfig) -> torch.Tensor:
    """W_U: (C, V). Tied models reuse the embedding table, transposed."""
    return weights["tok_emb"].t() if cfg.tie_embeddings else weights["W_u"]


def forward(idx: torch.Tensor, weights: Mapping, cfg: ModelConfig, attention_mask=None, position_ids=None,
            cache: KVCache | None = None, ops: Mapping | None = None, record: dict | None = None) -> torch.Tensor:
    """idx: (B, T) token ids -> logits (B, T, V).

    attention_mask: (B, S) with 1 for real tokens and 0 for padding, S covering the
    cached tokens plus this call's. position_ids: (B, T); by default the positions
    after whatever the cache holds. ops: see block(). record: see attention().
    """
    B, T = idx.shape
    past = cache.length if cache is not None else 0
    S = past + T
    if position_ids is None:
        position_ids = torch.arange(past, S, device=idx.device).expand(B, T)  # (B, T)
    if cfg.position == "learned" and int(position_ids.max()) >= cfg.max_seq_len:
        raise CourseError(f"position {int(position_ids.max())} is past the context length {cfg.max_seq_len}")

    x = weights["tok_emb"][idx]                                          # (B, T, C)
    if cfg.position == "learned":
        x = x + weights["pos_emb"][position_ids]                         # (B, T, C)
    elif cfg.position == "sinusoidal":
        table = weights.get("pos_table")
        if table is None:
            table = sinusoidal_table(cfg.max_seq_len, cfg.d_model).to(x.device, x.dtype)
        x = x + table[position_ids]
    rope = (rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
            if cfg.position == "rope" else None)

    mask = causal_mask(T, S, idx.device)[None, None]                     # (1, 1, T, S)
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, None, :]           # (B, 1, T, S)

    for layer in range(cfg.n_layer):
        x = block(x, Prefixed(weights, f"blocks.{layer}."), cfg, mask, rope, cache, layer, ops, record)
    x = norm(x, weights, "norm_f", cfg, ops)
    return x @ unembedding(weights, cfg)                                 # (B, T, V)
