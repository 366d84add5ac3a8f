"""Notebooks 3 and 4: correct implementations written differently from the
solutions (einsum instead of matmul, loops instead of vectorized code, float64
inside, another valid order of operations) pass every check, visible and
hidden. A check that failed one of these would be a false failure."""
import math

import pytest
import torch

from autograde.checks.runner import run_check


# ----------------------------------------------------------------------------
# attention, written differently


def softmax_logsumexp(x, dim=-1):
    return (x - torch.logsumexp(x, dim=dim, keepdim=True)).exp()


def attention_einsum(q, k, v, mask=None):
    scores = torch.einsum("...td,...sd->...ts", q / math.sqrt(q.shape[-1]), k)   # scale q first
    if mask is not None:
        scores = torch.where(mask, scores, torch.full_like(scores, -math.inf))
    return torch.einsum("...ts,...sd->...td", softmax_logsumexp(scores), v)


def causal_mask_loops(T):
    mask = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(i + 1):
            mask[i, j] = True
    return mask


def split_heads_permute(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)


def merge_heads_loop(x):
    return torch.cat([x[:, h] for h in range(x.shape[1])], dim=-1)        # (B, T, H*D)


def rope_pairs(x, cos, sin):
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    c1, c2, s1, s2 = cos[..., :half], cos[..., half:], sin[..., :half], sin[..., half:]
    return torch.cat([first * c1 - second * s1, second * c2 + first * s2], dim=-1)


def multi_head_per_head(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):
    """One head at a time; the key/value head of query head h is h // (n_head // n_kv_head)."""
    B, T, C = x.shape
    D = C // n_head
    q = split_heads_permute(x @ W_q, n_head)
    k = split_heads_permute(torch.einsum("btc,cf->btf", x, W_k), n_kv_head)
    v = split_heads_permute(x @ W_v, n_kv_head)
    outs = []
    for h in range(n_head):
        g = h // (n_head // n_kv_head)
        qh = rope_pairs(q[:, h:h + 1], cos, sin)
        kh = rope_pairs(k[:, g:g + 1], cos, sin)
        outs.append(attention_einsum(qh, kh, v[:, g:g + 1], causal_mask_loops(T)))
    return merge_heads_loop(torch.cat(outs, dim=1)) @ W_o.reshape(n_head * D, C)


# ----------------------------------------------------------------------------
# FFN and the block, written differently


def relu_ffn_linear(x, W_1, b_1, W_2, b_2):
    hidden = torch.nn.functional.linear(x, W_1.T, b_1).clamp(min=0)
    return torch.einsum("...f,fc->...c", hidden, W_2) + b_2


def gelu_float64(z):
    z64 = z.double()
    inner = math.sqrt(2.0 / math.pi) * (z64 + 0.044715 * z64 * z64 * z64)
    return (z64 * (1.0 + torch.tanh(inner)) / 2).to(z.dtype)


def swiglu_sigmoid(x, W_gate, W_up, W_down):
    a, b = x @ W_gate, x @ W_up
    return (a * torch.sigmoid(a) * b) @ W_down


def rms_norm_rsqrt(x, weight, eps):
    return weight * (x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps))


def block_written_out(x, weights, cfg, cos, sin):
    h = rms_norm_rsqrt(x, weights["norm1.weight"], cfg["norm_eps"])
    attended = multi_head_per_head(h, weights["attn.W_q"], weights["attn.W_k"], weights["attn.W_v"],
                                   weights["attn.W_o"], cfg["n_head"], cfg["n_kv_head"], cos, sin)
    x = attended + x
    h = rms_norm_rsqrt(x, weights["norm2.weight"], cfg["norm_eps"])
    return swiglu_sigmoid(h, weights["ffn.W_gate"], weights["ffn.W_up"], weights["ffn.W_down"]) + x


def rope_tables(T, head_dim, theta):
    """cos, sin (1, 1, T, D) computed in float64: frequency theta^(-2i/D) for the pair (i, i + D/2)."""
    exponents = torch.arange(head_dim // 2, dtype=torch.float64) * 2 / head_dim
    angles = torch.outer(torch.arange(T, dtype=torch.float64), theta ** -exponents)   # (T, D/2)
    angles = angles.repeat(1, 2)                                                       # (T, D)
    return angles.cos().float()[None, None], angles.sin().float()[None, None]


def forward_written_out(ids, weights, cfg):
    T = ids.shape[1]
    x = torch.nn.functional.embedding(ids, weights["tok_emb"])
    cos, sin = rope_tables(T, cfg["d_model"] // cfg["n_head"], cfg["rope_theta"])
    for layer in range(cfg["n_layer"]):
        prefix = f"blocks.{layer}."
        mine = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        x = block_written_out(x, mine, cfg, cos, sin)
    x = rms_norm_rsqrt(x, weights["norm_f.weight"], cfg["norm_eps"])
    return torch.einsum("btc,vc->btv", x, weights["tok_emb"])


VARIANTS = {
    "attention.softmax": softmax_logsumexp,
    "attention.sdpa": attention_einsum,
    "attention.causal_mask": causal_mask_loops,
    "attention.split_heads": split_heads_permute,
    "attention.merge_heads": merge_heads_loop,
    "attention.rope": rope_pairs,
    "attention.multi_head": multi_head_per_head,
    "ffn.relu_ffn": relu_ffn_linear,
    "ffn.gelu": gelu_float64,
    "ffn.swiglu": swiglu_sigmoid,
    "ffn.rms_norm": rms_norm_rsqrt,
    "ffn.block": block_written_out,
    "ffn.forward": forward_written_out,
}


@pytest.mark.parametrize("step", sorted(VARIANTS))
@pytest.mark.parametrize("hidden", [False, True])
def test_correct_implementations_written_differently_pass(step, hidden):
    result = run_check(step, VARIANTS[step], hidden=hidden, seed=4321 if hidden else None)
    assert result["passed"], result
