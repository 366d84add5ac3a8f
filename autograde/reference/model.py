"""A decoder-only transformer in one file.

The same code builds a GPT-2-style model (learned positions, LayerNorm, GELU,
biases) and a Llama-style model (RoPE, RMSNorm, SwiGLU, grouped-query
attention). Weights are stored the way the equations are written: Q = X @ W_q
with W_q of shape (d_model, n_head * head_dim), so every matrix multiplies from
the right.

Shape letters used in comments:
    B batch, T tokens in this call, S tokens in the cache plus this call,
    C d_model, H query heads, G key/value heads, D head_dim, F d_ff, V vocab.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograde.errors import CourseError


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

    def __post_init__(self):
        checks = [
            (self.d_model % self.n_head == 0, f"d_model={self.d_model} is not divisible by n_head={self.n_head}"),
            (self.n_head % self.n_kv_head == 0, f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}"),
            (self.position in ("learned", "sinusoidal", "rope", "none"), f"unknown position {self.position!r}"),
            (self.norm in ("layernorm", "rmsnorm"), f"unknown norm {self.norm!r}"),
            (self.ffn in ("relu", "gelu", "swiglu"), f"unknown ffn {self.ffn!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CourseError(f"invalid model config: {message}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

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


# ----------------------------------------------------------------------------
# Attention


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


def attention_weights(q, k, mask=None):
    """softmax(Q K^T / sqrt(d_k)): how much each query looks at each key.

    q: (..., T, D), k: (..., S, D), mask: broadcastable to (..., T, S),
    True = may attend. Returns (..., T, S); each row sums to 1.
    """
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T, S)
    if mask is not None:
        # -inf before the softmax, so masked keys get exactly zero weight
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)                    # (..., T, S)
    # a padding query that may attend to nothing gets all-zero weights, not NaN
    return weights.nan_to_num(0.0)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V: a weighted mix of the values.

    q: (..., T, D), k and v: (..., S, D). Returns (..., T, D).
    """
    return attention_weights(q, k, mask) @ v             # (..., T, D)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float):
    """cos and sin tables for rotary embeddings, shape (B, T, D).

    Dimension pair (i, i + D/2) rotates at frequency theta^(-2i/D): the first
    dimensions spin fast (local order), the last ones slowly (long range).
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)  # (D/2,)
    angles = positions.float()[..., None] * inv_freq  # (B, T, D/2)
    angles = torch.cat([angles, angles], dim=-1)       # (B, T, D)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+D/2}) pair by its position's angle. x: (B, H, T, D)."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D): same rotation for every head
    return x * cos + rotate_half(x) * sin


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, n_heads * D) -> (B, n_heads, T, D)."""
    B, T, _ = x.shape
    return x.view(B, T, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (B, T, H * D), the inverse of split_heads."""
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


def _weight(rows: int, cols: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(rows, cols))


def _bias(size: int, enabled: bool):
    return nn.Parameter(torch.zeros(size)) if enabled else None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ W (+ b), with W stored (in, out) like the equations."""
    y = x @ weight
    return y if bias is None else y + bias


class KVCache:
    """Keys and values of every past token, one (k, v) pair per layer.

    Prefill fills it with the prompt; each decode step appends one position.
    Stored before the GQA repeat, so it holds only n_kv_head heads.
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


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, H, G, D = cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.W_q, self.b_q = _weight(C, H * D), _bias(H * D, cfg.bias)
        self.W_k, self.b_k = _weight(C, G * D), _bias(G * D, cfg.bias)
        self.W_v, self.b_v = _weight(C, G * D), _bias(G * D, cfg.bias)
        self.W_o, self.b_o = _weight(H * D, C), _bias(C, cfg.bias)
        # set keep_weights = True to look inside: the last forward's attention
        # weights (B, H, T, S) are then kept in last_weights (figures, notebooks)
        self.keep_weights = False
        self.last_weights: torch.Tensor | None = None

    def forward(self, x, mask, rope=None, cache: KVCache | None = None, layer: int = 0):
        cfg = self.cfg
        q = split_heads(linear(x, self.W_q, self.b_q), cfg.n_head)     # (B, H, T, D)
        k = split_heads(linear(x, self.W_k, self.b_k), cfg.n_kv_head)  # (B, G, T, D)
        v = split_heads(linear(x, self.W_v, self.b_v), cfg.n_kv_head)  # (B, G, T, D)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)                           # (B, G, S, D)
        # grouped-query attention: each key/value head serves n_head/n_kv_head
        # consecutive query heads
        group = cfg.n_head // cfg.n_kv_head
        k = k.repeat_interleave(group, dim=1)                          # (B, H, S, D)
        v = v.repeat_interleave(group, dim=1)                          # (B, H, S, D)
        out = scaled_dot_product_attention(q, k, v, mask)              # (B, H, T, D)
        if self.keep_weights:
            self.last_weights = attention_weights(q, k, mask).detach()  # (B, H, T, S)
        return linear(merge_heads(out), self.W_o, self.b_o)            # (B, T, C)


# ----------------------------------------------------------------------------
# Feed-forward network and normalisation


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (the one GPT-2 uses)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class FeedForward(nn.Module):
    """relu / gelu: act(x W_1 + b_1) W_2 + b_2.
    swiglu: (silu(x W_gate) * (x W_up)) W_down."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.ffn
        C, Fd = cfg.d_model, cfg.d_ff
        if cfg.ffn == "swiglu":
            self.W_gate, self.W_up, self.W_down = _weight(C, Fd), _weight(C, Fd), _weight(Fd, C)
        else:
            self.W_1, self.b_1 = _weight(C, Fd), _bias(Fd, cfg.bias)
            self.W_2, self.b_2 = _weight(Fd, C), _bias(C, cfg.bias)

    def forward(self, x):                                               # x: (B, T, C)
        if self.kind == "swiglu":
            hidden = F.silu(x @ self.W_gate) * (x @ self.W_up)          # (B, T, F)
            return hidden @ self.W_down                                 # (B, T, C)
        pre = linear(x, self.W_1, self.b_1)                             # (B, T, F)
        hidden = torch.relu(pre) if self.kind == "relu" else gelu(pre)  # (B, T, F)
        return linear(hidden, self.W_2, self.b_2)                       # (B, T, C)


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias, over the last dimension."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring or bias."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x / rms * self.weight


def make_norm(cfg: ModelConfig) -> nn.Module:
    return LayerNorm(cfg.d_model, cfg.norm_eps) if cfg.norm == "layernorm" else RMSNorm(cfg.d_model, cfg.norm_eps)


class Block(nn.Module):
    """Pre-norm residual block: each sublayer reads a normalised copy of the
    residual stream and adds its output (a delta) back onto it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.attn = make_norm(cfg), MultiHeadAttention(cfg)
        self.norm2, self.ffn = make_norm(cfg), FeedForward(cfg)

    def forward(self, x, mask, rope=None, cache=None, layer=0):
        x = x + self.attn(self.norm1(x), mask, rope, cache, layer)  # (B, T, C)
        x = x + self.ffn(self.norm2(x))                              # (B, T, C)
        return x


# ----------------------------------------------------------------------------
# Positions


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(same). (P, C)"""
    pos = torch.arange(n_positions).float()[:, None]             # (P, 1)
    freq = 10000.0 ** (-torch.arange(0, dim, 2).float() / dim)   # (C/2,)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


# ----------------------------------------------------------------------------
# The model


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))  # W_E: (V, C)
        if cfg.position == "learned":
            self.pos_emb = nn.Parameter(torch.empty(cfg.max_seq_len, cfg.d_model))  # (P, C)
        elif cfg.position == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(cfg.max_seq_len, cfg.d_model), persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg)
        if not cfg.tie_embeddings:
            self.W_u = nn.Parameter(torch.empty(cfg.d_model, cfg.vocab_size))  # W_U: (C, V)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            if name.endswith("weight") and ("norm" in name):
                nn.init.ones_(p)
            elif p.dim() == 1:
                nn.init.zeros_(p)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * self.cfg.init_std)

    @property
    def unembedding(self) -> torch.Tensor:
        """W_U: (C, V). Tied models reuse the embedding table, transposed."""
        return self.tok_emb.t() if self.cfg.tie_embeddings else self.W_u

    def forward(self, idx, attention_mask=None, position_ids=None, cache: KVCache | None = None):
        """idx: (B, T) token ids -> logits (B, T, V).

        attention_mask: (B, S) with 1 for real tokens and 0 for padding, S
        covering the cached tokens plus this call's. position_ids: (B, T);
        defaults to the positions after whatever the cache holds.
        """
        cfg = self.cfg
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        S = past + T
        if position_ids is None:
            position_ids = torch.arange(past, S, device=idx.device).expand(B, T)  # (B, T)
        if int(position_ids.max()) >= cfg.max_seq_len and cfg.position == "learned":
            raise CourseError(f"position {int(position_ids.max())} is past the context length {cfg.max_seq_len}")

        x = self.tok_emb[idx]                                  # (B, T, C)
        if cfg.position == "learned":
            x = x + self.pos_emb[position_ids]                 # (B, T, C)
        elif cfg.position == "sinusoidal":
            x = x + self.pos_table[position_ids]
        rope = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta) if cfg.position == "rope" else None

        mask = causal_mask(T, S, idx.device)[None, None]       # (1, 1, T, S)
        if attention_mask is not None:
            keep_key = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
            mask = mask & keep_key                              # (B, 1, T, S)

        for layer, block in enumerate(self.blocks):
            x = block(x, mask, rope, cache, layer)             # (B, T, C)
        x = self.norm_f(x)
        return x @ self.unembedding                             # (B, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- weights --------------------------------------------------------------
    def load_weights(self, state: dict[str, torch.Tensor]):
        """Load a state dict, naming any missing, unexpected or mis-shaped tensor."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CourseError(f"weights do not fit this model: missing {missing}, unexpected {unexpected}")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise CourseError(
                    f"weight {name!r} has shape {tuple(tensor.shape)}, but the model expects {tuple(own[name].shape)}")
        self.load_state_dict(state)
