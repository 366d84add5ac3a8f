"""A decoder-only transformer: modules that hold the weights, over functional.py.

The same code builds a GPT-2-style model (learned positions, LayerNorm, GELU,
biases), a Llama-style model (RoPE, RMSNorm, SwiGLU, grouped-query attention)
and the real checkpoints of that family (Llama 3 with its RoPE scaling, Qwen2
with QKV biases, Qwen3 with QK-norm; hf_load.py reads them). The math itself
lives once in functional.py; every module's forward calls it with its own
weights. Weights are stored the way the equations are written: Q = X @ W_q
with W_q of shape (d_model, n_head * head_dim), so every matrix multiplies
from the right.

Shape letters used in comments:
    B batch, T tokens in this call, S tokens in the cache plus this call,
    C d_model, H query heads, G key/value heads, D head_dim, F d_ff, V vocab.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from autograde.errors import CourseError
from autograde.reference import functional as fn
# the math, re-exported under the names the checks, figures and notebooks use (the same objects)
from autograde.reference.functional import (  # noqa: F401
    KVCache, ModelConfig, apply_rope, attention_weights, causal_mask, gelu, linear, merge_heads, rope_cos_sin,
    rotate_half, scaled_dot_product_attention, sinusoidal_table, softmax, split_heads)


def _weight(rows: int, cols: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(rows, cols))


def _bias(size: int, enabled: bool):
    return nn.Parameter(torch.zeros(size)) if enabled else None


def _own(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's weights by their names inside it ("W_q", "q_norm.weight", ...)."""
    return dict(module.named_parameters())


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, H, G, D = cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim
        qkv_bias = cfg.bias or cfg.qkv_bias
        self.W_q, self.b_q = _weight(C, H * D), _bias(H * D, qkv_bias)
        self.W_k, self.b_k = _weight(C, G * D), _bias(G * D, qkv_bias)
        self.W_v, self.b_v = _weight(C, G * D), _bias(G * D, qkv_bias)
        self.W_o, self.b_o = _weight(H * D, C), _bias(C, cfg.bias)
        if cfg.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(D, cfg.norm_eps), RMSNorm(D, cfg.norm_eps)
        # set keep_weights = True to look inside: the last forward's attention
        # weights (B, H, T, S) are then kept in last_weights (figures, notebooks)
        self.keep_weights = False
        self.last_weights: torch.Tensor | None = None

    def forward(self, x, mask, rope=None, cache: KVCache | None = None, layer: int = 0):
        record = {} if self.keep_weights else None
        out = fn.attention(x, _own(self), self.cfg, mask, rope, cache, layer, record)
        if record is not None:
            self.last_weights = record[layer]                           # (B, H, T, S)
        return out                                                      # (B, T, C)


class FeedForward(nn.Module):
    """relu / gelu: act(x W_1 + b_1) W_2 + b_2.
    swiglu: (silu(x W_gate) * (x W_up)) W_down."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.ffn
        C, Fd = cfg.d_model, cfg.d_ff
        if cfg.ffn == "swiglu":
            self.W_gate, self.W_up, self.W_down = _weight(C, Fd), _weight(C, Fd), _weight(Fd, C)
        else:
            self.W_1, self.b_1 = _weight(C, Fd), _bias(Fd, cfg.bias)
            self.W_2, self.b_2 = _weight(Fd, C), _bias(C, cfg.bias)

    def forward(self, x):                                               # x: (B, T, C)
        return fn.feed_forward(x, _own(self), self.cfg)                # (B, T, C)


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias, over the last dimension."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return fn.layer_norm(x, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring or bias."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return fn.rms_norm(x, self.weight, self.eps)


def make_norm(cfg: ModelConfig) -> nn.Module:
    return LayerNorm(cfg.d_model, cfg.norm_eps) if cfg.norm == "layernorm" else RMSNorm(cfg.d_model, cfg.norm_eps)


class Block(nn.Module):
    """Pre-norm residual block: each sublayer reads a normalised copy of the
    residual stream and adds its output (a delta) back onto it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.norm1, self.attn = make_norm(cfg), MultiHeadAttention(cfg)
        self.norm2, self.ffn = make_norm(cfg), FeedForward(cfg)

    def forward(self, x, mask, rope=None, cache=None, layer=0):
        record = {} if self.attn.keep_weights else None
        x = fn.block(x, _own(self), self.cfg, mask, rope, cache, layer, record=record)   # (B, T, C)
        if record is not None:
            self.attn.last_weights = record[layer]
        return x


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
        if not self.tok_emb.is_meta:       # built on the meta device, a loader assigns the weights
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

    def weights(self) -> dict[str, torch.Tensor]:
        """Every weight by its state-dict name (plus the sinusoidal table), for functional.forward."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def forward(self, idx, attention_mask=None, position_ids=None, cache: KVCache | None = None):
        """idx: (B, T) token ids -> logits (B, T, V).

        attention_mask: (B, S) with 1 for real tokens and 0 for padding, S
        covering the cached tokens plus this call's. position_ids: (B, T);
        defaults to the positions after whatever the cache holds.
        """
        keep = [i for i, b in enumerate(self.blocks) if b.attn.keep_weights]
        record = {} if keep else None
        logits = fn.forward(idx, self.weights(), self.cfg, attention_mask, position_ids, cache, record=record)
        for i in keep:
            self.blocks[i].attn.last_weights = record[i]
        return logits                                                   # (B, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- weights --------------------------------------------------------------
    def load_weights(self, state: dict[str, torch.Tensor], assign: bool = False):
        """Load a state dict, naming any missing, unexpected or mis-shaped tensor.

        assign=True takes the given tensors themselves (no copy: their dtype, device and
        layout stay), which is how a model built on the meta device gets its weights."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CourseError(f"weights do not fit this model: missing {missing}, unexpected {unexpected}")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise CourseError(
                    f"weight {name!r} has shape {tuple(tensor.shape)}, but the model expects {tuple(own[name].shape)}")
        self.load_state_dict(state, assign=assign)
