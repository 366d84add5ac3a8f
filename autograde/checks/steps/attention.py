"""Checks for notebook 2: softmax, attention, the causal mask, heads, RoPE, multi-head attention.

Fixed inputs come from the trained reference model: the real activations of
layer 0 on a Korean and an English sentence. Hidden cases draw random shapes
and values from a seed chosen at grading time.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from autograde.checks.core import Case, Check, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.reference import model as ref

SENTENCES = ("애, 겨울 배가 맛있단다!", "The model reads tokens, not letters.")

register_messages({
    "mistake_softmax_no_max": {
        "en": "exp() overflowed: subtract the maximum of each row before exp (it cancels out, but keeps the numbers small)",
        "ko": "exp()가 넘쳤습니다(overflow): exp 전에 각 행의 최댓값을 빼세요 (결과는 같고 숫자만 작아집니다)"},
    "mistake_softmax_axis": {
        "en": "the softmax was taken over the wrong axis: each row along `dim` must sum to 1",
        "ko": "소프트맥스를 엉뚱한 축으로 계산했습니다: `dim` 방향의 각 줄이 합해서 1이 되어야 합니다"},
    "mistake_attention_no_scale": {
        "en": "the scores were not divided by sqrt(d_k): use (Q @ K^T) / sqrt(d_k) before the softmax",
        "ko": "점수를 sqrt(d_k)로 나누지 않았습니다: 소프트맥스 전에 (Q @ K^T) / sqrt(d_k)를 쓰세요"},
    "mistake_attention_axis": {
        "en": "the softmax ran over the queries (dim=-2) instead of the keys (dim=-1)",
        "ko": "소프트맥스를 키 방향(dim=-1)이 아니라 쿼리 방향(dim=-2)으로 계산했습니다"},
    "mistake_mask_after_softmax": {
        "en": "the mask was applied after the softmax: set masked scores to -inf before the softmax, so the rest still sum to 1",
        "ko": "마스크를 소프트맥스 뒤에 적용했습니다: 소프트맥스 전에 가릴 점수를 -inf로 바꿔야 나머지의 합이 1이 됩니다"},
    "mistake_mask_off_by_one": {
        "en": "the causal mask is off by one: position i may see positions 0..i, itself included, and nothing later",
        "ko": "인과 마스크가 한 칸 어긋났습니다: i번 위치는 자기 자신을 포함해 0..i만 보고, 그 뒤는 보면 안 됩니다"},
    "mistake_mask_future": {
        "en": "the mask lets tokens see the future (it is transposed): keep the lower triangle, j <= i",
        "ko": "마스크가 미래를 보게 합니다(전치됨): 아래 삼각형, 즉 j <= i인 칸만 남기세요"},
    "mistake_heads_order": {
        "en": "the heads were split in the wrong order: reshape to (B, T, H, D) first, then transpose to (B, H, T, D)",
        "ko": "헤드를 잘못된 순서로 나눴습니다: 먼저 (B, T, H, D)로 바꾼 뒤 (B, H, T, D)로 전치하세요"},
    "mistake_merge_order": {
        "en": "the heads were merged in the wrong order: transpose (B, H, T, D) back to (B, T, H, D) before reshaping to (B, T, C)",
        "ko": "헤드를 잘못된 순서로 합쳤습니다: (B, T, C)로 바꾸기 전에 (B, H, T, D)를 (B, T, H, D)로 되돌려 전치하세요"},
    "mistake_rope_sign": {
        "en": "the rotation goes the wrong way: rotate_half(x) is (-x2, x1), and the result is x*cos + rotate_half(x)*sin",
        "ko": "회전 방향이 반대입니다: rotate_half(x)는 (-x2, x1)이고 결과는 x*cos + rotate_half(x)*sin입니다"},
    "mistake_gqa_repeat": {
        "en": "key/value heads were repeated in the wrong pattern: each kv head serves consecutive query heads (repeat_interleave)",
        "ko": "키·값 헤드를 잘못된 방식으로 복제했습니다: kv 헤드 하나가 연속한 쿼리 헤드들을 맡습니다 (repeat_interleave)"},
})


@lru_cache(maxsize=1)
def layer0_inputs():
    """Normalized layer-0 inputs of the reference model, per sentence: list of (x (1,T,C), attn module)."""
    from autograde.reference.checkpoint import load_reference

    reference = load_reference()
    out = []
    for text in SENTENCES:
        ids = torch.tensor([reference.tokenizer.encode(text)])
        with torch.no_grad():
            x = reference.model.blocks[0].norm1(reference.model.tok_emb[ids])   # (1, T, C)
        out.append(x)
    return reference.model, out


def real_qkv(index: int):
    """Real q, k, v heads of layer 0 (before RoPE), (1, H, T, D) each, k/v repeated for GQA."""
    model, xs = layer0_inputs()
    attn, cfg = model.blocks[0].attn, model.cfg
    x = xs[index]
    with torch.no_grad():
        q = ref.split_heads(x @ attn.W_q, cfg.n_head)
        k = ref.split_heads(x @ attn.W_k, cfg.n_kv_head).repeat_interleave(cfg.n_head // cfg.n_kv_head, dim=1)
        v = ref.split_heads(x @ attn.W_v, cfg.n_kv_head).repeat_interleave(cfg.n_head // cfg.n_kv_head, dim=1)
    return q, k, v


# ----------------------------------------------------------------------------


def naive_softmax(x, dim=-1):
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)


@register
class Softmax(Check):
    step, function, points = "attention.softmax", "softmax", 1
    forbidden = ("torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.special.softmax",
                 "autograde.reference.model.softmax")
    mutants = {
        "mistake_softmax_no_max": naive_softmax,
        "mistake_softmax_axis": lambda x, dim=-1: ref.softmax(x, dim=0 if dim in (-1, x.dim() - 1) else -1),
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            shape = tuple(int(s) for s in torch.randint(2, 7, (3,), generator=g))
            return [Case("random", (torch.randn(shape, generator=g) * 5,)),
                    Case("large values", (torch.randn(shape, generator=g) * 50 + 900,)),
                    Case("dim=1", (torch.randn(shape, generator=g),), {"dim": 1})]
        return [Case("three scores", (torch.tensor([[2.0, 1.0, 0.1]]),)),
                Case("large scores [1000, 999]", (torch.tensor([[1000.0, 999.0], [3.0, -3.0]]),)),
                Case("attention scores of a real sentence", (real_qkv(0)[0][0, 0] @ real_qkv(0)[1][0, 0].T,)),
                Case("dim=0", (torch.randn(4, 3, generator=g),), {"dim": 0})]

    def reference(self, x, dim=-1):
        return ref.softmax(x, dim=dim)


def _attn(q, k, v, mask=None, *, scale=True, axis=-1, mask_after=False):
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    if mask is not None and not mask_after:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=axis)
    if mask is not None and mask_after:
        weights = weights.masked_fill(~mask, 0.0)
    return weights.nan_to_num(0.0) @ v


@register
class Attention(Check):
    step, function, points = "attention.sdpa", "scaled_dot_product_attention", 2
    forbidden = ("torch.nn.functional.scaled_dot_product_attention",
                 "autograde.reference.model.scaled_dot_product_attention",
                 "autograde.reference.model.attention_weights")
    mutants = {
        "mistake_attention_no_scale": lambda q, k, v, mask=None: _attn(q, k, v, mask, scale=False),
        "mistake_attention_axis": lambda q, k, v, mask=None: _attn(q, k, v, mask, axis=-2),
        "mistake_mask_after_softmax": lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_after=True),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            b, h, t, d = (int(s) for s in torch.randint(1, 6, (4,), generator=g))
            t, d = t + 2, d * 4
            q, k, v = (torch.randn(b, h, t, d, generator=g) for _ in range(3))
            return [Case("random, no mask", (q, k, v)),
                    Case("random, causal mask", (q, k, v, ref.causal_mask(t, t)))]
        cases = []
        for i, name in enumerate(("Korean sentence", "English sentence")):
            q, k, v = real_qkv(i)
            t = q.shape[2]
            cases.append(Case(f"{name}, no mask", (q, k, v)))
            cases.append(Case(f"{name}, causal mask", (q, k, v, ref.causal_mask(t, t))))
        return cases

    def reference(self, q, k, v, mask=None):
        return ref.scaled_dot_product_attention(q, k, v, mask)


@register
class CausalMask(Check):
    step, function, points = "attention.causal_mask", "causal_mask", 1
    forbidden = ("autograde.reference.model.causal_mask",)
    mutants = {
        "mistake_mask_off_by_one": lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1),
        "mistake_mask_future": lambda t: torch.ones(t, t, dtype=torch.bool).triu(),
    }

    def cases(self, seed, hidden):
        sizes = [int(s) for s in torch.randint(2, 40, (3,), generator=gen(seed))] if hidden else [1, 4, 9]
        return [Case(f"T={t}", (t,)) for t in sizes]

    def reference(self, t):
        return ref.causal_mask(t, t)


@register
class SplitHeads(Check):
    step, function, points = "attention.split_heads", "split_heads", 1
    forbidden = ("autograde.reference.model.split_heads",)
    mutants = {"mistake_heads_order": lambda x, n: x.reshape(x.shape[0], n, x.shape[1], x.shape[2] // n)}

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            b, t, h, d = (int(s) for s in torch.randint(2, 6, (4,), generator=g))
            return [Case("random", (torch.randn(b, t, h * d, generator=g), h))]
        return [Case("(2, 3, 8) into 4 heads", (torch.arange(48.0).reshape(2, 3, 8), 4)),
                Case("real activations, 4 heads", (layer0_inputs()[1][0], 4))]

    def reference(self, x, n_heads):
        return ref.split_heads(x, n_heads)


@register
class MergeHeads(Check):
    step, function, points = "attention.merge_heads", "merge_heads", 1
    forbidden = ("autograde.reference.model.merge_heads",)
    mutants = {"mistake_merge_order": lambda x: x.reshape(x.shape[0], x.shape[2], -1)}

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            b, h, t, d = (int(s) for s in torch.randint(2, 6, (4,), generator=g))
            return [Case("random", (torch.randn(b, h, t, d, generator=g),))]
        return [Case("(2, 4, 3, 2)", (torch.arange(48.0).reshape(2, 4, 3, 2),))]

    def reference(self, x):
        return ref.merge_heads(x)


def _rope(x, cos, sin):
    """RoPE with cos/sin already broadcastable to x (the notebook's signature;
    the reference model's apply_rope adds the head axis itself)."""
    return x * cos + ref.rotate_half(x) * sin


def _rope_wrong_sign(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, -x1), dim=-1) * sin


@register
class Rope(Check):
    step, function, points = "attention.rope", "apply_rope", 1
    forbidden = ("autograde.reference.model.apply_rope", "autograde.reference.model.rotate_half")
    mutants = {"mistake_rope_sign": _rope_wrong_sign}

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            t, d = int(torch.randint(2, 20, (1,), generator=g)), 2 * int(torch.randint(2, 9, (1,), generator=g))
            x = torch.randn(2, 3, t, d, generator=g)
        else:
            x = real_qkv(0)[0]                                       # (1, H, T, D)
            t, d = x.shape[2], x.shape[3]
        cos, sin = ref.rope_cos_sin(torch.arange(t)[None], d, 10000.0)  # (1, T, D)
        return [Case("rotary embedding", (x, cos[:, None], sin[:, None]))]

    def reference(self, x, cos, sin):
        return _rope(x, cos, sin)


def _mha(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin, *, interleave=True):
    q = ref.split_heads(x @ W_q, n_head)
    k = ref.split_heads(x @ W_k, n_kv_head)
    v = ref.split_heads(x @ W_v, n_kv_head)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    group = n_head // n_kv_head
    if interleave:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    else:
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    t = x.shape[1]
    out = ref.scaled_dot_product_attention(q, k, v, ref.causal_mask(t, t))
    return ref.merge_heads(out) @ W_o


@register
class MultiHead(Check):
    """The reference model's layer-0 attention, on its real inputs."""
    step, function, points = "attention.multi_head", "multi_head_attention", 2
    forbidden = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention")
    mutants = {"mistake_gqa_repeat": lambda *a: _mha(*a, interleave=False)}

    def cases(self, seed, hidden):
        model, xs = layer0_inputs()
        cfg = model.cfg
        layer = model.blocks[1 if hidden else 0].attn
        weights = tuple(w.detach() for w in (layer.W_q, layer.W_k, layer.W_v, layer.W_o))
        cases = []
        for i, x in enumerate(xs):
            if hidden:   # random activations of the same width and a random length
                t = int(torch.randint(3, 30, (1,), generator=gen(seed + i)))
                x = torch.randn(1, t, cfg.d_model, generator=gen(seed + 100 + i))
            t = x.shape[1]
            cos, sin = ref.rope_cos_sin(torch.arange(t)[None], cfg.head_dim, cfg.rope_theta)
            cases.append(Case(SENTENCES[i] if not hidden else f"random T={t}",
                              (x, *weights, cfg.n_head, cfg.n_kv_head, cos[:, None], sin[:, None])))
        return cases

    def reference(self, *args):
        return _mha(*args)
