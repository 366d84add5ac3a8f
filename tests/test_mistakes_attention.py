"""Notebook 3: each mistake listed in autograde/checks/steps/attention.py, written the way a student
would write it (not by calling the check's mutant), fails and is named by its own message key, on
the visible cases and on the hidden cases of several seeds."""
import math

import pytest
import torch

from autograde.checks.messages import CATALOG, message
from autograde.checks.runner import run_check
from autograde.checks.steps import attention

SEEDS = (1, 2, 3)


def assert_named(step, fn, key, visible=True, hidden=True):
    """run_check names `key` on the visible cases (visible=True) and on every seed's hidden cases;
    visible=False: the mistake does not show on the visible cases, which then pass."""
    result = run_check(step, fn)
    if visible:
        assert not result["passed"] and result["key"] == key, result
    else:
        assert result["passed"], result
    if hidden:
        for seed in SEEDS:
            result = run_check(step, fn, hidden=True, seed=seed)
            assert not result["passed"] and result["key"] == key, result
    assert message(key, "ko") != message(key, "en")


# ----------------------------------------------------------------------------
# correct pieces the buggy functions below are built from


def good_softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def good_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return good_softmax(scores) @ v


def good_split(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def good_merge(x):
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


def good_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# ----------------------------------------------------------------------------
# softmax


def softmax_no_max(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_global_max(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def softmax_no_keepdim(x, dim=-1):
    biggest = x.max(dim=dim).values
    e = torch.exp(x - biggest)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_last_axis_always(x, dim=-1):
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def softmax_first_axis(x, dim=-1):
    e = torch.exp(x - x.max(0, keepdim=True).values)
    return e / e.sum(0, keepdim=True)


# ----------------------------------------------------------------------------
# attention


def attention_with(scale="sqrt", softmax_dim=-1, mask_how="fill", softmax=torch.softmax):
    def attend(q, k, v, mask=None):
        d_k = q.size(-1)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if scale == "sqrt":
            scores = scores / math.sqrt(d_k)
        elif scale == "dk":
            scores = scores / d_k
        elif scale == "len":
            scores = scores / math.sqrt(q.size(-2))
        if mask is not None:
            if mask_how == "fill":
                scores = scores.masked_fill(mask == 0, float("-inf"))
            elif mask_how == "zero":
                scores = scores * mask
            elif mask_how == "inverted":
                scores = scores.masked_fill(mask, float("-inf"))
            elif mask_how == "dropped":
                scores.masked_fill(~mask, float("-inf"))              # the result is thrown away
            elif mask_how == "plus_inf":
                scores = scores + (1 - mask.float()) * float("-inf")
        weights = softmax(scores, dim=softmax_dim)
        if mask is not None and mask_how == "after":
            weights = weights * mask
        return weights @ v
    return attend


def softmax_by_hand(scores, dim=-1):
    e = scores.exp()
    return e / e.sum(dim, keepdim=True)


def attention_first_sequence(q, k, v, mask=None):
    B = q.shape[0]
    scores = q[0] @ k[0].transpose(-2, -1) / math.sqrt(q.shape[-1])     # "the" sequence
    if mask is not None:
        scores = scores.masked_fill(~(mask[0] if mask.dim() == 4 else mask), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v[0]
    return out.unsqueeze(0).repeat(B, 1, 1, 1)


# ----------------------------------------------------------------------------
# the causal mask


_BUFFER = torch.tril(torch.ones(256, 256, dtype=torch.bool))        # "the longest context we will need"
_BIG_BUFFER = torch.ones(1024, 1024, dtype=torch.bool).tril()


CASES = [
    ("attention.softmax", softmax_no_max, "mistake_softmax_no_max", True),
    ("attention.softmax", softmax_global_max, "mistake_softmax_global_max", True),
    ("attention.softmax", softmax_no_keepdim, "mistake_softmax_keepdim", True),
    ("attention.softmax", softmax_last_axis_always, "mistake_softmax_ignores_dim", True),
    ("attention.softmax", softmax_first_axis, "mistake_softmax_axis", True),

    ("attention.sdpa", attention_with(scale="none"), "mistake_attention_no_scale", True),
    ("attention.sdpa", attention_with(scale="dk"), "mistake_attention_scale_dk", True),
    ("attention.sdpa", attention_with(scale="len"), "mistake_attention_scale_len", True),
    ("attention.sdpa", attention_with(softmax_dim=-2), "mistake_attention_axis", True),
    ("attention.sdpa", attention_with(mask_how="after"), "mistake_mask_after_softmax", True),
    ("attention.sdpa", attention_with(mask_how="zero"), "mistake_mask_zero", True),
    ("attention.sdpa", attention_with(mask_how="inverted"), "mistake_mask_inverted", True),
    ("attention.sdpa", attention_with(mask_how="plus_inf"), "mistake_mask_inf_times", True),
    ("attention.sdpa", attention_with(mask_how="ignored"), "mistake_attention_mask_ignored", True),
    ("attention.sdpa", attention_with(mask_how="dropped"), "mistake_attention_mask_ignored", True),
    ("attention.sdpa", attention_with(softmax=softmax_by_hand), "mistake_softmax_no_max", True),
    ("attention.sdpa", attention_first_sequence, "mistake_batch_first_row", True),

    ("attention.causal_mask", lambda T: torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1),
     "mistake_mask_off_by_one", True),
    ("attention.causal_mask", lambda T: torch.triu(torch.ones(T, T, dtype=torch.bool)), "mistake_mask_future", True),
    ("attention.causal_mask", lambda T: torch.triu(torch.ones(T, T), diagonal=1).bool(), "mistake_mask_convention",
     True),
    ("attention.causal_mask", lambda T: torch.tril(torch.ones(T, T)), "mistake_mask_not_bool", True),
    ("attention.causal_mask", lambda T: torch.full((T, T), float("-inf")).triu(1), "mistake_mask_not_bool", True),
    ("attention.causal_mask", lambda T: torch.tril(torch.ones(T, T, dtype=torch.long)), "mistake_mask_not_bool", True),
    ("attention.causal_mask", lambda T: _BUFFER[:T, :T], "mistake_fixed_buffer", False),
    ("attention.causal_mask", lambda T: _BIG_BUFFER[:T, :T], "mistake_fixed_buffer", False),
]


# ----------------------------------------------------------------------------
# heads


def split_straight(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, n_heads, T, C // n_heads)


def split_interleaved(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, C // n_heads, n_heads).permute(0, 3, 1, 2)


def split_first_sequence(x, n_heads):
    T, C = x.shape[1:]
    return x[0].view(T, n_heads, C // n_heads).transpose(0, 1).unsqueeze(0)


def merge_straight(x):
    B, H, T, D = x.shape
    return x.reshape(B, T, H * D)


def merge_interleaved(x):
    B, H, T, D = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * D)


def merge_with_view(x):
    B, H, T, D = x.shape
    return x.transpose(1, 2).view(B, T, H * D)


def merge_first_sequence(x):
    B, H = x.shape[:2]
    one = torch.cat([x[0, h] for h in range(H)], dim=-1)              # (T, H*D)
    return one.unsqueeze(0).repeat(B, 1, 1)


CASES += [
    ("attention.split_heads", split_straight, "mistake_heads_order", True),
    ("attention.split_heads", split_interleaved, "mistake_heads_interleaved", True),
    ("attention.split_heads", split_first_sequence, "mistake_batch_first_row", True),
    ("attention.merge_heads", merge_straight, "mistake_merge_order", True),
    ("attention.merge_heads", merge_interleaved, "mistake_merge_interleaved", True),
    ("attention.merge_heads", merge_with_view, "mistake_view_noncontiguous", True),
    ("attention.merge_heads", merge_first_sequence, "mistake_batch_first_row", True),
]


# ----------------------------------------------------------------------------
# RoPE


def rope_sign(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, -x1), dim=-1) * sin


def rope_no_minus(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * sin


def rope_pairs_gptj(x, cos, sin):
    """Rotates (x[2i], x[2i+1]) by the angle of frequency i, as in the original Llama code."""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * c - odd * s, even * s + odd * c], dim=-1).flatten(-2)


def rope_complex(x, cos, sin):
    """The same pairing with complex numbers."""
    half = x.shape[-1] // 2
    angle = torch.atan2(sin[..., :half], cos[..., :half])
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], half, 2).contiguous())
    rotated = torch.view_as_real(z * torch.polar(torch.ones_like(angle).float(), angle.float()))
    return rotated.flatten(-2).to(x.dtype)


def rope_pairs_same_tables(x, cos, sin):
    rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).reshape(x.shape)
    return x * cos + rotated * sin


def rope_swapped(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * sin + torch.cat((-x2, x1), dim=-1) * cos


def rope_heads_axis(x, cos, sin):
    x1, x2 = x.chunk(2, dim=1)
    return x * cos + torch.cat((-x2, x1), dim=1) * sin


def rope_own_tables(x, cos, sin):
    T, D = x.shape[-2:]
    inv_freq = 1.0 / 10000 ** (torch.arange(0, D, 2).float() / D)
    angles = torch.arange(T).float()[:, None] * inv_freq               # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)
    return good_rope(x, angles.cos().to(x.dtype), angles.sin().to(x.dtype))


def rope_first_row_tables(x, cos, sin):
    cos, sin = cos[0], sin[0]                                          # "drop the batch axis"
    return good_rope(x, cos, sin)


CASES += [
    ("attention.rope", rope_sign, "mistake_rope_sign", True),
    ("attention.rope", rope_no_minus, "mistake_rope_rotate_half", True),
    ("attention.rope", rope_pairs_gptj, "mistake_rope_interleaved", True),
    ("attention.rope", rope_complex, "mistake_rope_interleaved", True),
    ("attention.rope", rope_pairs_same_tables, "mistake_rope_interleaved", True),
    ("attention.rope", rope_swapped, "mistake_rope_cos_sin_swapped", True),
    ("attention.rope", rope_heads_axis, "mistake_rope_wrong_axis", True),
    ("attention.rope", rope_own_tables, "mistake_rope_own_tables", True),
    ("attention.rope", rope_first_row_tables, "mistake_batch_first_row", True),
]


# ----------------------------------------------------------------------------
# multi-head attention


def mha_with(repeat="interleave", scale="head", mask=True, rope=("q", "k"), split=good_split, merge=good_merge,
             project=True, mask_from=None):
    def mha(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):
        B, T, C = x.shape
        q, k, v = split(x @ W_q, n_head), split(x @ W_k, n_kv_head), split(x @ W_v, n_kv_head)
        if "q" in rope:
            q = good_rope(q, cos, sin)
        if "k" in rope:
            k = good_rope(k, cos, sin)
        if "v" in rope:
            v = good_rope(v, cos, sin)
        group = n_head // n_kv_head
        if repeat == "interleave":
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        else:
            k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
        d = {"head": q.shape[-1], "model": C, "none": 1}[scale]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        if mask:
            causal = mask_from[:T, :T] if mask_from is not None else torch.ones(T, T, dtype=torch.bool).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        out = merge(torch.softmax(scores, dim=-1) @ v)
        return out @ W_o if project else out
    return mha


def mha_first_sequence(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):
    one = mha_with()(x[:1], W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin)
    return one.expand_as(x)


def mha_batch_of_one(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):
    T, C = x.shape[1:]

    def heads(t, n):
        return t.view(1, T, n, t.shape[-1] // n).transpose(1, 2)      # written for one sentence
    return mha_with(split=heads)(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin)


CASES += [
    ("attention.multi_head", mha_with(repeat="tile"), "mistake_gqa_repeat", True),
    ("attention.multi_head", mha_with(scale="model"), "mistake_attention_scale_dmodel", True),
    ("attention.multi_head", mha_with(scale="none"), "mistake_attention_no_scale", True),
    ("attention.multi_head", mha_with(mask=False), "mistake_mha_no_mask", True),
    ("attention.multi_head", mha_with(rope=()), "mistake_mha_no_rope", True),
    ("attention.multi_head", mha_with(rope=("q",)), "mistake_mha_rope_which", True),
    ("attention.multi_head", mha_with(rope=("q", "k", "v")), "mistake_mha_rope_which", True),
    ("attention.multi_head", mha_with(split=split_straight), "mistake_heads_order", True),
    ("attention.multi_head", mha_with(merge=merge_straight), "mistake_merge_order", True),
    ("attention.multi_head", mha_with(project=False), "mistake_mha_no_output_projection", True),
    ("attention.multi_head", mha_first_sequence, "mistake_batch_first_row", True),
    ("attention.multi_head", mha_batch_of_one, "mistake_batch_first_row", True),
    ("attention.multi_head", mha_with(mask_from=_BUFFER), "mistake_fixed_buffer", False),
]


@pytest.mark.parametrize("step, fn, key, visible", CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_student_mistake_is_named(step, fn, key, visible):
    assert_named(step, fn, key, visible=visible)


def test_every_listed_mistake_has_a_student_test():
    """The keys in the module docstring's list are exactly the keys these tests name."""
    listed = {word for line in attention.__doc__.split("Mistakes named")[1].splitlines()
              for word in line.replace("/", " ").split() if word.startswith("mistake_")}
    assert listed <= {key for _, _, key, _ in CASES}, listed - {key for _, _, key, _ in CASES}
    assert listed <= set(CATALOG)


def test_hidden_cases_include_the_extremes():
    """Every batched step has B >= 2 with rows that differ, T=1 and a long T, on every seed."""
    from autograde.checks.registry import get_check

    for seed in SEEDS:
        for step in ("attention.sdpa", "attention.split_heads", "attention.merge_heads", "attention.rope",
                     "attention.multi_head"):
            cases = get_check(step).cases(seed, True)
            first = [c.args[0] for c in cases]
            assert any(x.shape[0] >= 2 and not torch.equal(x[0], x[1]) for x in first), step
            seq = 1 if step in ("attention.split_heads", "attention.multi_head") else -2
            lengths = {x.shape[seq] for x in first}
            assert 1 in lengths, step
            assert max(lengths) >= attention.LONG_T, step
            assert any(x.dtype == torch.float64 for x in first), step
            assert any(not x.is_contiguous() for x in first), step
        sizes = [c.args[0] for c in get_check("attention.causal_mask").cases(seed, True)]
        assert 1 in sizes and max(sizes) > 1024


def test_cases_are_a_pure_function_of_the_seed():
    from autograde.checks.registry import get_check

    for step in ("attention.softmax", "attention.sdpa", "attention.rope", "attention.multi_head"):
        a, b = get_check(step).cases(5, True), get_check(step).cases(5, True)
        assert [c.label for c in a] == [c.label for c in b]
        for ca, cb in zip(a, b):
            for x, y in zip(ca.args, cb.args):
                assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
