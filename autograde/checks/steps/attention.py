"""Checks for notebook 3: softmax, attention, the causal mask, heads, RoPE, multi-head attention.

Visible cases use the trained reference model: the real activations of layer 0
on a Korean and an English sentence, stacked as a batch of two (B=2, rows that
differ). Hidden cases draw from the seed, and always include the extremes: a
batch whose rows differ, T=1, a long T (LONG_T, above the reference model's
context and above common precomputed buffers), float64 and a strided
(non-contiguous) input where the contract allows them. `cases(seed, hidden)` is
a pure function of its arguments.

Case labels appear inside feedback sentences in both languages, so they are
short and written as code or numbers ("x (2, 3, 8)", "T=1", "float64").

Mistakes named (-> message key; every one has a mutant or an explanation of
the exception it raises, and a student-style test in tests/test_mistakes_attention.py):
  softmax
    - exp() without subtracting the maximum: overflow        -> mistake_softmax_no_max
    - the maximum of the whole tensor, not of each row       -> mistake_softmax_global_max
    - max or sum without keepdim (broadcast the wrong way)   -> mistake_softmax_keepdim
    - the `dim` argument ignored (always the last axis)      -> mistake_softmax_ignores_dim
    - normalized over another axis                           -> mistake_softmax_axis
  scaled_dot_product_attention
    - no 1/sqrt(d_k)                                         -> mistake_attention_no_scale
    - divided by d_k instead of sqrt(d_k)                    -> mistake_attention_scale_dk
    - sqrt of the sequence length (shape[-2]) as d_k         -> mistake_attention_scale_len
    - softmax over the queries (dim=-2)                      -> mistake_attention_axis
    - mask applied after the softmax                         -> mistake_mask_after_softmax
    - masked scores set to 0 (or multiplied by the mask)     -> mistake_mask_zero
    - the mask's meaning inverted (fills where it is True)   -> mistake_mask_inverted
    - mask built by multiplying with -inf (0 * inf = NaN)    -> mistake_mask_inf_times
    - the mask ignored (or masked_fill's result dropped)     -> mistake_attention_mask_ignored
    - exp() without the maximum, inside attention            -> mistake_softmax_no_max
    - only the first sequence of the batch                   -> mistake_batch_first_row
  causal_mask
    - off by one (the diagonal hidden)                       -> mistake_mask_off_by_one
    - transposed (the future visible)                        -> mistake_mask_future
    - True where hidden (the opposite convention)            -> mistake_mask_convention
    - numbers instead of booleans (0/1, 0/-inf)              -> mistake_mask_not_bool
    - sliced from a fixed-size precomputed buffer            -> mistake_fixed_buffer
  split_heads / merge_heads
    - reshaped straight to (B, H, T, D) / (B, T, C)          -> mistake_heads_order / mistake_merge_order
    - heads taken as interleaved channels (h, h+H, ...)      -> mistake_heads_interleaved / mistake_merge_interleaved
    - .view on a transposed (non-contiguous) tensor          -> mistake_view_noncontiguous
    - only the first sequence of the batch                   -> mistake_batch_first_row
  apply_rope
    - the rotation's sign flipped, (x2, -x1)                 -> mistake_rope_sign
    - rotate_half without the minus, (x2, x1)                -> mistake_rope_rotate_half
    - interleaved pairs (2i, 2i+1) instead of (i, i + D/2)   -> mistake_rope_interleaved
    - cos and sin swapped                                    -> mistake_rope_cos_sin_swapped
    - halves taken along the wrong axis (heads or time)      -> mistake_rope_wrong_axis
    - own tables for positions 0..T-1 instead of cos, sin    -> mistake_rope_own_tables
    - only the first row of the batch (x or per-row cos/sin) -> mistake_batch_first_row
  multi_head_attention
    - GQA heads tiled (repeat) instead of repeat_interleave   -> mistake_gqa_repeat
    - scores scaled by sqrt(d_model) instead of sqrt(d_k)    -> mistake_attention_scale_dmodel
    - no scaling                                             -> mistake_attention_no_scale
    - no causal mask                                         -> mistake_mha_no_mask
    - no RoPE                                                -> mistake_mha_no_rope
    - RoPE on q only, on k only, or on v as well             -> mistake_mha_rope_which
    - heads split / merged in the wrong order                -> mistake_heads_order / mistake_merge_order
    - no output projection W_o                               -> mistake_mha_no_output_projection
    - only the first sequence of the batch                   -> mistake_batch_first_row
    - a batch of one hard-coded, .view(1, T, ...) (raises)    -> mistake_batch_first_row
    - a mask sliced from a fixed-size buffer (raises at LONG_T) -> mistake_fixed_buffer
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

import torch

from autograde.checks.core import Case, Check, Verdict, compare_outputs, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.reference import functional as fn
from autograde.reference import model as ref

SENTENCES = ("애, 겨울 배가 맛있단다!", "The model reads tokens, not letters.")
LONG_T = 300            # hidden: above the reference model's context (128) and a 256 buffer
LONG_MASK_T = 1030      # hidden causal_mask: above a 1024 buffer (booleans only, cheap)

register_messages({
    "mistake_softmax_no_max": {
        "en": "exp() overflowed: subtract the maximum of each row before exp (it cancels out, but keeps the numbers small)",
        "ko": "exp()가 넘쳤습니다(overflow): exp 전에 각 행의 최댓값을 빼세요 (결과는 같고 숫자만 작아집니다)"},
    "mistake_softmax_global_max": {
        "en": "you subtracted the maximum of the whole tensor; subtract each row's own maximum "
              "(x.amax(dim=dim, keepdim=True)), or rows far below it underflow to 0/0",
        "ko": "텐서 전체의 최댓값을 뺐습니다. 각 행에서 그 행의 최댓값(x.amax(dim=dim, keepdim=True))을 빼야 합니다. "
              "그러지 않으면 값이 훨씬 작은 행은 exp가 모두 0이 되어 0/0이 됩니다"},
    "mistake_softmax_keepdim": {
        "en": "the max or the sum lost its axis (keepdim=False), so it was broadcast along the wrong axis: "
              "use keepdim=True in both",
        "ko": "최댓값이나 합을 구하면서 축이 사라져(keepdim=False) 엉뚱한 축으로 브로드캐스트되었습니다. "
              "두 곳 모두 keepdim=True를 쓰세요"},
    "mistake_softmax_ignores_dim": {
        "en": "the `dim` argument was ignored: the softmax must run along the axis the caller asks for, not always the last one",
        "ko": "`dim` 인자를 무시했습니다: 소프트맥스는 항상 마지막 축이 아니라 호출한 쪽이 지정한 축을 따라 계산해야 합니다"},
    "mistake_softmax_axis": {
        "en": "the softmax was taken over the wrong axis: each row along `dim` must sum to 1",
        "ko": "소프트맥스를 엉뚱한 축으로 계산했습니다: `dim` 방향의 각 줄이 합해서 1이 되어야 합니다"},
    "mistake_attention_no_scale": {
        "en": "the scores were not divided by sqrt(d_k): use (Q @ K^T) / sqrt(d_k) before the softmax",
        "ko": "점수를 sqrt(d_k)로 나누지 않았습니다: 소프트맥스 전에 (Q @ K^T) / sqrt(d_k)를 쓰세요"},
    "mistake_attention_scale_dk": {
        "en": "the scores were divided by d_k itself; divide by its square root, sqrt(d_k)",
        "ko": "점수를 d_k 자체로 나눴습니다. d_k의 제곱근 sqrt(d_k)로 나눠야 합니다"},
    "mistake_attention_scale_len": {
        "en": "the scale used the sequence length (shape[-2]) as d_k; d_k is the width of one head, q.shape[-1]",
        "ko": "스케일에 시퀀스 길이(shape[-2])를 d_k로 썼습니다. d_k는 헤드 하나의 폭인 q.shape[-1]입니다"},
    "mistake_attention_scale_dmodel": {
        "en": "the scores were scaled by sqrt(d_model), the width of the whole model; "
              "scale by sqrt(d_k), the width of one head (d_model / n_head)",
        "ko": "점수를 모델 전체 폭의 제곱근 sqrt(d_model)로 나눴습니다. "
              "헤드 하나의 폭(d_model / n_head)인 d_k의 제곱근 sqrt(d_k)로 나눠야 합니다"},
    "mistake_attention_axis": {
        "en": "the softmax ran over the queries (dim=-2) instead of the keys (dim=-1)",
        "ko": "소프트맥스를 키 방향(dim=-1)이 아니라 쿼리 방향(dim=-2)으로 계산했습니다"},
    "mistake_mask_after_softmax": {
        "en": "the mask was applied after the softmax: set masked scores to -inf before the softmax, so the rest still sum to 1",
        "ko": "마스크를 소프트맥스 뒤에 적용했습니다: 소프트맥스 전에 가릴 점수를 -inf로 바꿔야 나머지의 합이 1이 됩니다"},
    "mistake_mask_zero": {
        "en": "masked scores were set to 0 (or multiplied by the mask); a score of 0 still gets weight after "
              "the softmax: set them to -inf (masked_fill(~mask, float('-inf')))",
        "ko": "가릴 점수를 0으로 만들었습니다(또는 마스크를 곱했습니다). 점수가 0이어도 소프트맥스 뒤에는 가중치가 남습니다. "
              "-inf로 바꾸세요 (masked_fill(~mask, float('-inf')))"},
    "mistake_mask_inverted": {
        "en": "the mask was used the other way round: True means 'may attend', so fill the scores where the mask "
              "is False (~mask)",
        "ko": "마스크를 반대로 썼습니다: True는 '볼 수 있음'이라는 뜻이므로 마스크가 False인 곳(~mask)의 점수를 -inf로 채워야 합니다"},
    "mistake_mask_inf_times": {
        "en": "the mask was applied by multiplying with -inf, and 0 * inf is NaN: use "
              "scores.masked_fill(~mask, float('-inf')) or torch.where",
        "ko": "마스크를 -inf와 곱해서 적용했는데, 0 * inf는 NaN입니다. "
              "scores.masked_fill(~mask, float('-inf'))나 torch.where를 쓰세요"},
    "mistake_attention_mask_ignored": {
        "en": "the `mask` argument had no effect: where it is False, the key must get zero weight "
              "(masked_fill returns a new tensor: scores = scores.masked_fill(...))",
        "ko": "`mask` 인자가 결과에 반영되지 않았습니다: 마스크가 False인 키는 가중치가 0이어야 합니다 "
              "(masked_fill은 새 텐서를 돌려주므로 scores = scores.masked_fill(...)처럼 다시 받아야 합니다)"},
    "mistake_batch_first_row": {
        "en": "only the first sequence of the batch was computed correctly (or its result was reused for every "
              "sequence): keep the batch axis B in every step",
        "ko": "배치의 첫 번째 시퀀스만 제대로 계산했습니다(또는 그 결과를 모든 시퀀스에 썼습니다). "
              "모든 단계에서 배치 축 B를 유지하세요"},
    "mistake_mask_off_by_one": {
        "en": "the causal mask is off by one: position i may see positions 0..i, itself included, and nothing later",
        "ko": "인과 마스크가 한 칸 어긋났습니다: i번 위치는 자기 자신을 포함해 0..i만 보고, 그 뒤는 보면 안 됩니다"},
    "mistake_mask_future": {
        "en": "the mask lets tokens see the future (it is transposed): keep the lower triangle, j <= i",
        "ko": "마스크가 미래를 보게 합니다(전치됨): 아래 삼각형, 즉 j <= i인 칸만 남기세요"},
    "mistake_mask_convention": {
        "en": "this mask is True where attention is blocked; in this course True means 'may attend': "
              "return the lower triangle, torch.ones(T, T, dtype=torch.bool).tril()",
        "ko": "가려야 할 곳이 True인 마스크입니다. 이 강좌에서 True는 '볼 수 있음'을 뜻하므로 아래 삼각형 "
              "torch.ones(T, T, dtype=torch.bool).tril()을 돌려주세요"},
    "mistake_mask_not_bool": {
        "en": "the mask must be a boolean tensor (True = may attend), not numbers such as 1/0 or 0/-inf",
        "ko": "마스크는 1/0이나 0/-inf 같은 숫자가 아니라 불리언 텐서(True = 볼 수 있음)여야 합니다"},
    "mistake_fixed_buffer": {
        "en": "it breaks only on a long sequence: something was precomputed for a fixed maximum length and sliced "
              "with [:T] (a mask or a table); build it for the length of the input",
        "ko": "긴 시퀀스에서만 틀립니다: 마스크나 표 같은 것을 고정된 최대 길이로 미리 만들어 [:T]로 잘라 썼습니다. "
              "입력의 실제 길이에 맞게 만드세요"},
    "mistake_view_noncontiguous": {
        "en": ".view() failed on a tensor that is not contiguous (after a transpose): use .reshape(), "
              "or .contiguous().view()",
        "ko": "메모리에 연속으로 놓여 있지 않은 텐서(전치한 텐서 등)에서는 .view()가 실패합니다. "
              ".reshape()나 .contiguous().view()를 쓰세요"},
    "mistake_heads_order": {
        "en": "the heads were split in the wrong order: reshape to (B, T, H, D) first, then transpose to (B, H, T, D)",
        "ko": "헤드를 잘못된 순서로 나눴습니다: 먼저 (B, T, H, D)로 바꾼 뒤 (B, H, T, D)로 전치하세요"},
    "mistake_heads_interleaved": {
        "en": "each head must take a contiguous block of D channels (head h: h*D .. h*D+D-1), "
              "not every H-th channel: reshape to (B, T, H, D), not (B, T, D, H)",
        "ko": "헤드마다 연속한 D개 채널(h번 헤드: h*D .. h*D+D-1)을 맡아야 하는데, H칸 간격으로 채널을 가져왔습니다. "
              "(B, T, D, H)가 아니라 (B, T, H, D)로 바꾸세요"},
    "mistake_merge_order": {
        "en": "the heads were merged in the wrong order: transpose (B, H, T, D) back to (B, T, H, D) before reshaping to (B, T, C)",
        "ko": "헤드를 잘못된 순서로 합쳤습니다: (B, T, C)로 바꾸기 전에 (B, H, T, D)를 (B, T, H, D)로 되돌려 전치하세요"},
    "mistake_merge_interleaved": {
        "en": "the heads' channels were interleaved: head h must end up in the contiguous block h*D .. h*D+D-1, "
              "so go through (B, T, H, D), not (B, T, D, H)",
        "ko": "헤드의 채널이 서로 엇갈려 섞였습니다. h번 헤드는 연속한 구간 h*D .. h*D+D-1에 들어가야 하므로 "
              "(B, T, D, H)가 아니라 (B, T, H, D)를 거쳐 합치세요"},
    "mistake_rope_sign": {
        "en": "the rotation goes the wrong way: rotate_half(x) is (-x2, x1), and the result is x*cos + rotate_half(x)*sin",
        "ko": "회전 방향이 반대입니다: rotate_half(x)는 (-x2, x1)이고 결과는 x*cos + rotate_half(x)*sin입니다"},
    "mistake_rope_rotate_half": {
        "en": "rotate_half lost its minus sign: it is (-x2, x1), not (x2, x1)",
        "ko": "rotate_half에서 마이너스 부호가 빠졌습니다: (x2, x1)이 아니라 (-x2, x1)입니다"},
    "mistake_rope_interleaved": {
        "en": "you rotated neighbouring pairs (x[2i], x[2i+1]); this course (like Llama in Hugging Face) pairs "
              "x[i] with x[i + D/2]: split the last axis into two halves (rotate_half)",
        "ko": "이웃한 쌍 (x[2i], x[2i+1])을 회전했습니다. 이 강좌는 Hugging Face의 Llama처럼 x[i]와 x[i + D/2]를 "
              "한 쌍으로 묶습니다: 마지막 축을 앞뒤 절반으로 나누세요 (rotate_half)"},
    "mistake_rope_cos_sin_swapped": {
        "en": "cos and sin were swapped: the result is x*cos + rotate_half(x)*sin",
        "ko": "cos와 sin이 뒤바뀌었습니다: 결과는 x*cos + rotate_half(x)*sin입니다"},
    "mistake_rope_wrong_axis": {
        "en": "the halves were taken along the wrong axis: rotate_half splits the last axis (the head width D), "
              "not the heads or the positions",
        "ko": "절반을 엉뚱한 축에서 나눴습니다: rotate_half는 헤드나 위치 축이 아니라 마지막 축(헤드 폭 D)을 나눕니다"},
    "mistake_rope_own_tables": {
        "en": "the rotation ignores the cos and sin it was given (tables for positions 0..T-1 were rebuilt "
              "inside): use the arguments, the positions may start anywhere",
        "ko": "인자로 받은 cos와 sin을 쓰지 않고 0..T-1 위치의 표를 안에서 새로 만들었습니다. "
              "위치는 어디서든 시작할 수 있으니 받은 인자를 쓰세요"},
    "mistake_gqa_repeat": {
        "en": "key/value heads were repeated in the wrong pattern: each kv head serves consecutive query heads (repeat_interleave)",
        "ko": "키·값 헤드를 잘못된 방식으로 복제했습니다: kv 헤드 하나가 연속한 쿼리 헤드들을 맡습니다 (repeat_interleave)"},
    "mistake_mha_no_mask": {
        "en": "there is no causal mask: every position must see only itself and the positions before it",
        "ko": "인과 마스크가 없습니다: 각 위치는 자기 자신과 그 앞 위치만 봐야 합니다"},
    "mistake_mha_no_rope": {
        "en": "RoPE is missing: rotate q and k with apply_rope(..., cos, sin) before the attention",
        "ko": "RoPE가 빠졌습니다: 어텐션 전에 q와 k를 apply_rope(..., cos, sin)에 넣어 회전하세요"},
    "mistake_mha_rope_which": {
        "en": "RoPE went on the wrong tensors: rotate both q and k, and not v",
        "ko": "RoPE를 엉뚱한 텐서에 적용했습니다: q와 k는 둘 다 회전하고, v는 회전하지 않습니다"},
    "mistake_mha_no_output_projection": {
        "en": "the output projection is missing: multiply the merged heads by W_o",
        "ko": "출력 투영이 빠졌습니다: 합친 헤드에 W_o를 곱하세요"},
})


# ----------------------------------------------------------------------------
# the reference model's activations


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


def stacked_inputs() -> torch.Tensor:
    """Both sentences' layer-0 inputs as one batch (2, T, C), cut to the shorter length."""
    _, xs = layer0_inputs()
    t = min(x.shape[1] for x in xs)
    return torch.cat([x[:, :t] for x in xs]).clone()


def real_qkv(index: int | None = None):
    """Real q, k, v heads of layer 0 (before RoPE), (B, H, T, D) each, k/v repeated for GQA.
    index: one sentence (B=1), or None for both stacked (B=2)."""
    model, xs = layer0_inputs()
    attn, cfg = model.blocks[0].attn, model.cfg
    x = stacked_inputs() if index is None else xs[index]
    with torch.no_grad():
        q = ref.split_heads(x @ attn.W_q, cfg.n_head)
        k = fn.repeat_kv(ref.split_heads(x @ attn.W_k, cfg.n_kv_head), cfg.n_head // cfg.n_kv_head)
        v = fn.repeat_kv(ref.split_heads(x @ attn.W_v, cfg.n_kv_head), cfg.n_head // cfg.n_kv_head)
    return q, k, v


def strided(t: torch.Tensor, dim0: int, dim1: int) -> torch.Tensor:
    """The same values as t, laid out transposed in memory: a non-contiguous view."""
    return t.transpose(dim0, dim1).contiguous().transpose(dim0, dim1)


# ----------------------------------------------------------------------------
# mistakes shared by several steps


def first_row_only(fn, batched=(0,)):
    """Variants of "only the first sequence of the batch" for a function whose arguments at the
    positions `batched` carry the batch axis first (a tensor whose first axis is 1 broadcasts and
    is left alone): the first row alone, (1, ...); that row repeated for every sequence; the batch
    axis dropped; the first row right and the other rows zero."""
    def row0(*args, **kwargs):
        sliced = [a[:1] if i in batched and isinstance(a, torch.Tensor) and a.dim() and a.shape[0] > 1 else a
                  for i, a in enumerate(args)]
        return fn(*sliced, **kwargs)

    def batch(args):
        return args[batched[0]].shape[0]

    def repeated(*args, **kwargs):
        out = row0(*args, **kwargs)
        return out.expand(batch(args), *out.shape[1:])

    def zeros_after(*args, **kwargs):
        out = row0(*args, **kwargs)
        return torch.cat([out, torch.zeros_like(out).expand(batch(args) - 1, *out.shape[1:])])

    return [row0, repeated, lambda *a, **k: row0(*a, **k)[0], zeros_after]


_SIZE_MISMATCH = re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")
_OUT_OF_BOUNDS = re.compile(r"out of bounds for dimension \d+ with size (\d+)")
_VIEW = "view size is not compatible with input tensor's size and stride"
_BATCH_ONE = re.compile(r"shape '\[1, [^']*\]' is invalid for input of size")


def raised_mistake(text: str, long_t: int | None = None) -> str | None:
    """A known mistake behind an exception's text. long_t: the sequence length of a case longer than
    every visible one (None otherwise): a size mismatch or an index out of bounds against a smaller
    size there is a fixed-size buffer."""
    if _VIEW in text:
        return "mistake_view_noncontiguous"
    if _BATCH_ONE.search(text):                        # .view(1, T, ...): a batch of one hard-coded
        return "mistake_batch_first_row"
    if long_t is not None:
        found = _SIZE_MISMATCH.search(text)
        if found and long_t in (int(found[1]), int(found[2])) and min(int(found[1]), int(found[2])) < long_t:
            return "mistake_fixed_buffer"
        found = _OUT_OF_BOUNDS.search(text)
        if found and int(found[1]) < long_t:
            return "mistake_fixed_buffer"
    return None


class AttentionCheck(Check):
    """A check that names the exceptions of a .view on a strided tensor and of a fixed-size buffer."""
    long_from = 64                       # a case with T at least this long is "long"

    def seq_len(self, case: Case) -> int | None:
        return None

    def explain_raised(self, case, error, text):
        t = self.seq_len(case)
        return raised_mistake(text, t if t is not None and t >= self.long_from else None)


# ----------------------------------------------------------------------------
# 1. softmax


def _softmax(x, dim=-1, *, shift="row", keep_max=True, keep_sum=True):
    if shift == "row":
        x = x - x.amax(dim=dim, keepdim=keep_max)
    elif shift == "global":
        x = x - x.max()
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=keep_sum)


def _other_axis(k):
    def wrong(x, dim=-1):
        others = [a for a in range(x.dim()) if a != dim % x.dim()]
        return ref.softmax(x, dim=others[k % len(others)]) if others else ref.softmax(x, dim=dim)
    return wrong


@register
class Softmax(AttentionCheck):
    step = "attention.softmax"
    forbidden = ("torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.special.softmax",
                 "autograde.reference.model.softmax")
    mutants = {
        "mistake_softmax_no_max": lambda x, dim=-1: _softmax(x, dim, shift="none"),
        "mistake_softmax_global_max": lambda x, dim=-1: _softmax(x, dim, shift="global"),
        "mistake_softmax_keepdim": [lambda x, dim=-1: _softmax(x, dim, keep_max=False),
                                    lambda x, dim=-1: _softmax(x, dim, keep_sum=False),
                                    lambda x, dim=-1: _softmax(x, dim, keep_max=False, keep_sum=False)],
        "mistake_softmax_ignores_dim": lambda x, dim=-1: ref.softmax(x, dim=-1),
        "mistake_softmax_axis": [_other_axis(k) for k in range(3)],
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if not hidden:
            q, k, _ = real_qkv()
            return [Case("[[2, 1, 0.1]]", (torch.tensor([[2.0, 1.0, 0.1]]),)),
                    Case("[[1000, 999], [3, -3]]", (torch.tensor([[1000.0, 999.0], [3.0, -3.0]]),)),
                    Case(f"q @ k.mT / √d {tuple(q.shape[:3]) + (k.shape[2],)}",
                         (fn.attention_scores(q, k),)),
                    Case("x (4, 3), dim=0", (torch.randn(4, 3, generator=g),), {"dim": 0})]
        shape = tuple(int(s) for s in torch.randint(2, 7, (3,), generator=g))
        n = int(torch.randint(3, 7, (1,), generator=g))
        mixed = torch.randn(shape, generator=g)
        mixed[0] += 1000.0                                            # one row far above the others
        masked = torch.randn(shape, generator=g) * 3
        masked[..., 1:] = masked[..., 1:].masked_fill(torch.rand(masked[..., 1:].shape, generator=g) < 0.4,
                                                       float("-inf"))
        wide = torch.randn(shape[1], shape[0], shape[2], generator=g) * 4
        square = torch.randn(n, n, generator=g) * 3
        return [Case(f"x ({n}, {n})", (square,)),          # first: a lost keepdim still runs on a square x
                Case(f"x {shape}", (torch.randn(shape, generator=g) * 5,)),
                Case(f"x {shape} + 900", (torch.randn(shape, generator=g) * 50 + 900,)),
                Case(f"x {shape} - 1000", (torch.randn(shape, generator=g) * 5 - 1000,)),
                Case(f"x {shape}, x[0] + 1000", (mixed,)),
                Case(f"x {shape}, dim=1", (torch.randn(shape, generator=g),), {"dim": 1}),
                Case(f"x {shape}, dim=0", (torch.randn(shape, generator=g) * 2,), {"dim": 0}),
                Case(f"x ({n}, 1)", (torch.randn(n, 1, generator=g),)),
                Case(f"x {shape}, -inf", (masked,)),
                Case(f"x {shape}, float64", (torch.randn(shape, generator=g, dtype=torch.float64) * 5,)),
                Case(f"x {shape} = y.transpose(0, 1)", (wide.transpose(0, 1),))]

    def reference(self, x, dim=-1):
        return ref.softmax(x, dim=dim)


# ----------------------------------------------------------------------------
# 2. scaled dot-product attention


def _attn(q, k, v, mask=None, *, scale="sqrt", axis=-1, mask_how="fill", softmax=None):
    d = q.shape[-1]
    divisor = {"sqrt": math.sqrt(d), "none": 1.0, "dk": float(d), "len_q": math.sqrt(q.shape[-2]),
               "len_k": math.sqrt(k.shape[-2])}[scale]
    scores = fn.attention_scores(q, k) * (math.sqrt(d) / divisor)     # the core's scores, rescaled
    if mask is not None:
        if mask_how == "fill":
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask_how == "zero":
            scores = scores.masked_fill(~mask, 0.0)
        elif mask_how == "times":
            scores = scores * mask
        elif mask_how == "inverted":
            scores = scores.masked_fill(mask, float("-inf"))
        elif mask_how == "inverted_big":
            scores = scores.masked_fill(mask, -1e9)
        elif mask_how == "inf_times":
            scores = scores + (~mask).to(scores.dtype) * float("-inf")
    weights = (softmax or torch.softmax)(scores, dim=axis)
    if mask is not None and mask_how == "after":
        weights = weights.masked_fill(~mask, 0.0)
    if mask_how == "fill" and softmax is None:        # a row with every key masked: zeros, as the reference
        weights = weights.nan_to_num(0.0)
    return weights @ v


def _sdpa_batch(q, k, v, mask=None):
    """Only the first sequence: q, k, v and a per-sequence mask sliced to their first row."""
    if mask is not None and mask.dim() == 4 and mask.shape[0] > 1:
        mask = mask[:1]
    return ref.scaled_dot_product_attention(q, k, v, mask)


@register
class Attention(AttentionCheck):
    step = "attention.sdpa"
    forbidden = ("torch.nn.functional.scaled_dot_product_attention",
                 "autograde.reference.model.scaled_dot_product_attention",
                 "autograde.reference.model.attention_weights")
    depends = ("attention.softmax",)
    mutants = {
        "mistake_attention_no_scale": lambda q, k, v, mask=None: _attn(q, k, v, mask, scale="none"),
        "mistake_attention_scale_dk": lambda q, k, v, mask=None: _attn(q, k, v, mask, scale="dk"),
        "mistake_attention_scale_len": [lambda q, k, v, mask=None: _attn(q, k, v, mask, scale="len_q"),
                                        lambda q, k, v, mask=None: _attn(q, k, v, mask, scale="len_k")],
        "mistake_attention_axis": lambda q, k, v, mask=None: _attn(q, k, v, mask, axis=-2),
        "mistake_mask_after_softmax": lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_how="after"),
        "mistake_mask_zero": [lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_how="zero"),
                              lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_how="times")],
        "mistake_mask_inverted": [lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_how="inverted"),
                                  lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_how="inverted_big")],
        "mistake_softmax_no_max": lambda q, k, v, mask=None: _attn(
            q, k, v, mask, softmax=lambda s, dim: _softmax(s, dim, shift="none")),
        "mistake_mask_inf_times": lambda q, k, v, mask=None: _attn(q, k, v, mask, mask_how="inf_times"),
        "mistake_attention_mask_ignored": lambda q, k, v, mask=None: _attn(q, k, v, None),
        "mistake_batch_first_row": first_row_only(_sdpa_batch, batched=(0, 1, 2)),
    }

    def seq_len(self, case):
        return case.args[1].shape[-2]

    def cases(self, seed, hidden):
        if not hidden:
            q, k, v = real_qkv()                                       # (2, H, T, D): both sentences
            t = q.shape[2]
            shape = tuple(q.shape)
            return [Case(f"q, k, v {shape}, mask=None", (q, k, v)),
                    Case(f"q, k, v {shape}, mask=causal_mask({t})", (q, k, v, ref.causal_mask(t, t))),
                    Case(f"T=1, S={t}", (q[:, :, -1:].clone(), k, v, ref.causal_mask(1, t))),
                    Case(f"q, k × 30, mask=causal_mask({t})", (q * 30, k * 30, v, ref.causal_mask(t, t)))]
        g = gen(seed)
        b, h = int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(2, 5, (1,), generator=g))
        d = 4 * int(torch.randint(1, 5, (1,), generator=g))
        t = int(torch.randint(3, 10, (1,), generator=g))
        t = t + 1 if t == d else t                                     # sqrt(T) must differ from sqrt(D)
        s = t + int(torch.randint(1, 5, (1,), generator=g))

        def qkv(*lengths, dtype=torch.float32, scale=1.0):
            return tuple(torch.randn(b, h, n, d, generator=g, dtype=dtype) * scale for n in lengths)

        q, k, v = qkv(t, t, t)
        q1, k1, v1 = qkv(1, s, s)
        qs, ks, vs = qkv(t, s, s)
        keep = torch.rand(b, 1, 1, s, generator=g) < 0.7
        keep[..., 0] = True                                            # every query keeps key 0
        row_mask = ref.causal_mask(t, s) & keep                        # (B, 1, T, S): differs per sequence
        ql, kl, vl = (torch.randn(2, 1, LONG_T, 8, generator=g) for _ in range(3))
        qb, kb, vb = qkv(t, t, t, scale=30.0)
        q64, k64, v64 = qkv(t, t, t, dtype=torch.float64)
        qn, kn, vn = (strided(x, 1, 2) for x in qkv(t, t, t))
        shape = (b, h, t, d)
        return [Case(f"q, k, v {shape}, mask=None", (q, k, v)),
                Case(f"q, k, v {shape}, mask=causal_mask({t})", (q, k, v, ref.causal_mask(t, t))),
                Case(f"T=1, S={s}, mask (1, {s})", (q1, k1, v1, ref.causal_mask(1, s))),
                Case(f"T={t}, S={s}, mask {tuple(row_mask.shape)}", (qs, ks, vs, row_mask)),
                Case(f"T={LONG_T}, mask=causal_mask({LONG_T})", (ql, kl, vl, ref.causal_mask(LONG_T, LONG_T))),
                Case(f"q, k, v {shape} × 30, mask=causal_mask({t})", (qb, kb, vb, ref.causal_mask(t, t))),
                Case(f"q, k, v {shape}, float64, mask=causal_mask({t})", (q64, k64, v64, ref.causal_mask(t, t))),
                Case(f"q, k, v {shape} = y.transpose(1, 2), mask=causal_mask({t})",
                     (qn, kn, vn, ref.causal_mask(t, t)))]

    def reference(self, q, k, v, mask=None):
        return ref.scaled_dot_product_attention(q, k, v, mask)


# ----------------------------------------------------------------------------
# 3. the causal mask


@register
class CausalMask(AttentionCheck):
    step = "attention.causal_mask"
    forbidden = ("autograde.reference.model.causal_mask",)
    mutants = {
        "mistake_mask_off_by_one": lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1),
        "mistake_mask_future": lambda t: torch.ones(t, t, dtype=torch.bool).triu(),
        "mistake_mask_convention": lambda t: torch.ones(t, t, dtype=torch.bool).triu(1),
        "mistake_mask_not_bool": [lambda t: torch.ones(t, t).tril(),
                                  lambda t: torch.zeros(t, t).masked_fill(~ref.causal_mask(t, t), float("-inf")),
                                  lambda t: torch.ones(t, t).triu(1),
                                  lambda t: torch.ones(t, t).triu(1) * float("-inf")],
    }

    def seq_len(self, case):
        return case.args[0]

    def cases(self, seed, hidden):
        if not hidden:
            sizes = [4, 9, 1]          # T=1 last: several mistakes agree on a 1x1 mask
        else:
            sizes = [int(s) for s in torch.randint(2, 40, (2,), generator=gen(seed))] + [1, LONG_MASK_T]
        return [Case(f"T={t}", (t,)) for t in sizes]

    def reference(self, t):
        return ref.causal_mask(t, t)

    def judge(self, case, output):
        verdict = super().judge(case, output)
        if verdict.passed and output.dtype != torch.bool:            # 0/1 integers compare equal to booleans
            return Verdict(False, "mistake_mask_not_bool", {"where": case.label}, case.label)
        if verdict.key == "wrong_shape" and output.dim() == 2 and output.shape[0] == output.shape[1] \
                and 0 < output.shape[0] < case.args[0]:
            n = output.shape[0]
            if compare_outputs(output, ref.causal_mask(n, n)).passed:  # a correct mask, but of a buffer's size
                return Verdict(False, "mistake_fixed_buffer", {"where": case.label}, case.label)
        return verdict


# ----------------------------------------------------------------------------
# 4. splitting and merging heads


def _split(x, n, how="ok"):
    B, T, C = x.shape
    if how == "order":
        return x.reshape(B, n, T, C // n)
    if how == "interleaved":
        return x.reshape(B, T, C // n, n).permute(0, 3, 1, 2)
    return ref.split_heads(x, n)


def _merge(x, how="ok"):
    B, H, T, D = x.shape
    if how == "order":
        return x.reshape(B, T, H * D)
    if how == "interleaved":
        return x.permute(0, 2, 3, 1).reshape(B, T, H * D)
    return ref.merge_heads(x)


@register
class SplitHeads(AttentionCheck):
    step = "attention.split_heads"
    forbidden = ("autograde.reference.model.split_heads",)
    mutants = {
        "mistake_heads_order": lambda x, n: _split(x, n, "order"),
        "mistake_heads_interleaved": lambda x, n: _split(x, n, "interleaved"),
        "mistake_batch_first_row": first_row_only(ref.split_heads),
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if not hidden:
            x = stacked_inputs()
            return [Case("x (2, 3, 8), n_heads=4", (torch.arange(48.0).reshape(2, 3, 8), 4)),
                    Case(f"x {tuple(x.shape)}, n_heads=4", (x, 4))]
        b, t, h, d = (int(s) for s in torch.randint(2, 6, (4,), generator=g))
        return [Case(f"x {(b, t, h * d)}, n_heads={h}", (torch.randn(b, t, h * d, generator=g), h)),
                Case(f"x {(b, 1, h * d)}, n_heads={h}", (torch.randn(b, 1, h * d, generator=g), h)),
                Case(f"x {(2, LONG_T, 8)}, n_heads=2", (torch.randn(2, LONG_T, 8, generator=g), 2)),
                Case(f"x {(b, t, h * d)}, n_heads={h}, float64",
                     (torch.randn(b, t, h * d, generator=g, dtype=torch.float64), h)),
                Case(f"x {(b, t, h * d)} = y.transpose(0, 1), n_heads={h}",
                     (strided(torch.randn(b, t, h * d, generator=g), 0, 1), h))]

    def reference(self, x, n_heads):
        return ref.split_heads(x, n_heads)


@register
class MergeHeads(AttentionCheck):
    step = "attention.merge_heads"
    forbidden = ("autograde.reference.model.merge_heads",)
    mutants = {
        "mistake_merge_order": lambda x: _merge(x, "order"),
        "mistake_merge_interleaved": lambda x: _merge(x, "interleaved"),
        "mistake_batch_first_row": first_row_only(ref.merge_heads),
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if not hidden:
            q = real_qkv()[0]
            return [Case("x (2, 4, 3, 2)", (torch.arange(48.0).reshape(2, 4, 3, 2),)),
                    Case(f"x {tuple(q.shape)} = split_heads(...)", (q,))]
        b, h, t, d = (int(s) for s in torch.randint(2, 6, (4,), generator=g))
        return [Case(f"x {(b, h, t, d)}", (torch.randn(b, h, t, d, generator=g),)),
                Case(f"x {(b, h, 1, d)}", (torch.randn(b, h, 1, d, generator=g),)),
                Case(f"x {(2, 2, LONG_T, 4)}", (torch.randn(2, 2, LONG_T, 4, generator=g),)),
                Case(f"x {(b, h, t, d)}, float64", (torch.randn(b, h, t, d, generator=g, dtype=torch.float64),)),
                Case(f"x {(b, h, t, d)} = y.transpose(1, 2)", (strided(torch.randn(b, h, t, d, generator=g), 1, 2),))]

    def reference(self, x):
        return ref.merge_heads(x)


# ----------------------------------------------------------------------------
# 5. RoPE


def _rope(x, cos, sin):
    """RoPE with cos/sin already broadcastable to x (the notebook's signature;
    the reference model's apply_rope adds the head axis itself)."""
    return x * cos + ref.rotate_half(x) * sin


def _rope_wrong_sign(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, -x1), dim=-1) * sin


def _rope_no_minus(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, x1), dim=-1) * sin


def _rope_pairs(x, cos, sin, angles="as_given"):
    """Rotating neighbouring pairs (x[2i], x[2i+1]), the interleaved convention."""
    even, odd = x[..., 0::2], x[..., 1::2]
    if angles == "as_given":                     # the given tables against the interleaved rotation
        rotated = torch.stack((-odd, even), dim=-1).flatten(-2)
        return x * cos + rotated * sin
    half = x.shape[-1] // 2
    c, s = (cos[..., :half], sin[..., :half]) if angles == "first_half" else (cos[..., 0::2], sin[..., 0::2])
    return torch.stack((even * c - odd * s, odd * c + even * s), dim=-1).flatten(-2)


def _rope_axis(dim):
    def wrong(x, cos, sin):
        x1, x2 = x.chunk(2, dim=dim)
        return x * cos + torch.cat((-x2, x1), dim=dim) * sin
    return wrong


def _rope_own_tables(x, cos, sin):
    cos, sin = ref.rope_cos_sin(torch.arange(x.shape[-2])[None], x.shape[-1], 10000.0)   # (1, T, D)
    return _rope(x, cos.to(x.dtype), sin.to(x.dtype))


def _rope_tables(positions: torch.Tensor, d: int, dtype=torch.float32):
    """cos, sin (B, 1, T, D) for positions (B, T)."""
    cos, sin = ref.rope_cos_sin(positions, d, 10000.0)
    return cos[:, None].to(dtype), sin[:, None].to(dtype)


@register
class Rope(AttentionCheck):
    step = "attention.rope"
    forbidden = ("autograde.reference.model.apply_rope", "autograde.reference.model.rotate_half")
    mutants = {
        "mistake_rope_sign": _rope_wrong_sign,
        "mistake_rope_rotate_half": _rope_no_minus,
        "mistake_rope_interleaved": [lambda x, c, s, a=a: _rope_pairs(x, c, s, a)
                                     for a in ("as_given", "first_half", "even")],
        "mistake_rope_cos_sin_swapped": lambda x, cos, sin: _rope(x, sin, cos),
        "mistake_rope_wrong_axis": [_rope_axis(1), _rope_axis(2)],
        "mistake_rope_own_tables": _rope_own_tables,
        "mistake_batch_first_row": first_row_only(_rope, batched=(0, 1, 2)) + [
            lambda x, cos, sin: _rope(x, cos[:1], sin[:1])],          # the first row's tables for every row
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if not hidden:
            x = real_qkv()[0]                                          # (2, H, T, D), from split_heads
            t, d = x.shape[2], x.shape[3]
            cos, sin = _rope_tables(torch.arange(t)[None], d)          # (1, 1, T, D)
            rows = torch.stack([torch.arange(3, t + 3), torch.arange(8, t + 8)])   # (2, T), rows at 3.. and 8..
            return [Case(f"q {tuple(x.shape)}, cos, sin {(1, 1, t, d)}", (x, cos, sin)),
                    Case(f"q {tuple(x.shape)}, cos, sin {(2, 1, t, d)}", (x, *_rope_tables(rows, d)))]
        b, h = int(torch.randint(2, 4, (1,), generator=g)), int(torch.randint(2, 5, (1,), generator=g))
        t, d = int(torch.randint(2, 20, (1,), generator=g)), 2 * int(torch.randint(2, 9, (1,), generator=g))
        start = torch.randint(1, 50, (b, 1), generator=g)            # not 0: tables for 0..T-1 must differ
        start[1] = start[0] + 1 + int(torch.randint(0, 20, (1,), generator=g))   # rows at different positions
        p = int(torch.randint(1, 100, (1,), generator=g))

        def x_(*shape, dtype=torch.float32):
            return torch.randn(*shape, generator=g, dtype=dtype)

        positions = torch.arange(t)[None]
        return [Case(f"x {(b, h, t, d)}, cos, sin {(1, 1, t, d)}", (x_(b, h, t, d), *_rope_tables(positions, d))),
                Case(f"x {(b, h, t, d)}, cos, sin {(b, 1, t, d)}",
                     (x_(b, h, t, d), *_rope_tables(start + positions, d))),
                Case(f"T=1, p={p}", (x_(b, h, 1, d), *_rope_tables(torch.tensor([[p]]), d))),
                Case(f"T={LONG_T}", (x_(2, 2, LONG_T, 8), *_rope_tables(torch.arange(LONG_T)[None], 8))),
                Case(f"x {(b, h, t, d)}, float64",
                     (x_(b, h, t, d, dtype=torch.float64), *_rope_tables(start + positions, d, torch.float64))),
                Case(f"x {(b, h, t, d)} = y.transpose(1, 2)",
                     (strided(x_(b, h, t, d), 1, 2), *_rope_tables(start + positions, d)))]

    def reference(self, x, cos, sin):
        return _rope(x, cos, sin)


# ----------------------------------------------------------------------------
# 6. multi-head attention


def _mha(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin, *, interleave=True, scale="head", mask=True,
         rope=("q", "k"), split="ok", merge="ok", project=True):
    q = _split(x @ W_q, n_head, split)
    k = _split(x @ W_k, n_kv_head, split)
    v = _split(x @ W_v, n_kv_head, split)
    q, k, v = (_rope(t, cos, sin) if name in rope else t for name, t in (("q", q), ("k", k), ("v", v)))
    t = x.shape[1]
    if not interleave:                                # (k0, k1, k0, k1): already one key/value head per query head
        k, v = k.repeat(1, n_head // n_kv_head, 1, 1), v.repeat(1, n_head // n_kv_head, 1, 1)
    d = {"head": q.shape[-1], "model": x.shape[-1], "none": 1}[scale]
    q = q * math.sqrt(q.shape[-1] / d)                # the core divides by sqrt(head_dim): this makes it sqrt(d)
    heads = fn.grouped_query_attention(q, k, v, fn.causal_mask(t, t, x.device) if mask else None)   # (B, H, T, D)
    out = _merge(heads, merge)
    return out @ W_o if project else out


def _mha_variant(**options):
    return lambda *args: _mha(*args, **options)


@register
class MultiHead(AttentionCheck):
    """The reference model's attention layers, on real and random inputs, and random GQA shapes."""
    step = "attention.multi_head"
    forbidden = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention")
    depends = ("attention.split_heads", "attention.merge_heads", "attention.rope", "attention.sdpa",
               "attention.causal_mask")
    mutants = {
        "mistake_gqa_repeat": _mha_variant(interleave=False),
        "mistake_attention_scale_dmodel": _mha_variant(scale="model"),
        "mistake_attention_no_scale": _mha_variant(scale="none"),
        "mistake_mha_no_mask": _mha_variant(mask=False),
        "mistake_mha_no_rope": _mha_variant(rope=()),
        "mistake_mha_rope_which": [_mha_variant(rope=("q",)), _mha_variant(rope=("k",)),
                                   _mha_variant(rope=("q", "k", "v"))],
        "mistake_heads_order": _mha_variant(split="order"),
        "mistake_merge_order": _mha_variant(merge="order"),
        "mistake_mha_no_output_projection": _mha_variant(project=False),
        "mistake_batch_first_row": first_row_only(_mha),
    }
    long_from = 129                      # longer than the reference model's context

    def seq_len(self, case):
        return case.args[0].shape[1]

    def cases(self, seed, hidden):
        model, _ = layer0_inputs()
        cfg = model.cfg

        def weights(layer, dtype=torch.float32):
            attn = model.blocks[layer].attn
            return tuple(w.detach().to(dtype) for w in (attn.W_q, attn.W_k, attn.W_v, attn.W_o))

        def case(label, x, ws, n_head, n_kv_head, start=0):
            t, d = x.shape[1], ws[0].shape[1] // n_head
            cos, sin = _rope_tables(torch.arange(start, start + t)[None], d, x.dtype)
            return Case(label, (x, *ws, n_head, n_kv_head, cos, sin))

        if not hidden:
            x = stacked_inputs()
            return [case(f"x {tuple(x.shape)}, blocks.0.attn", x, weights(0), cfg.n_head, cfg.n_kv_head),
                    case(f"x {tuple(x[1:].shape)}, blocks.0.attn", x[1:].clone(), weights(0), cfg.n_head,
                         cfg.n_kv_head)]
        g = gen(seed)
        layer = int(torch.randint(cfg.n_layer, (1,), generator=g))
        t = int(torch.randint(3, 30, (1,), generator=g))
        C = cfg.d_model

        def x_(*shape, dtype=torch.float32):
            return torch.randn(*shape, generator=g, dtype=dtype)

        n_head, n_kv = _choice(g, ((6, 2), (6, 3), (4, 4), (3, 1), (8, 2)))
        d = _choice(g, (4, 8))
        c = n_head * d
        small = (x_(c, c) / math.sqrt(c), x_(c, n_kv * d) / math.sqrt(c), x_(c, n_kv * d) / math.sqrt(c),
                 x_(c, c) / math.sqrt(c))
        own = f"blocks.{layer}.attn"
        return [case(f"x {(2, t, C)}, {own}", x_(2, t, C), weights(layer), cfg.n_head, cfg.n_kv_head),
                case(f"x {(3, 1, C)}, {own}", x_(3, 1, C), weights(layer), cfg.n_head, cfg.n_kv_head),
                case(f"x {(2, LONG_T, C)}, {own}", x_(2, LONG_T, C), weights(layer), cfg.n_head, cfg.n_kv_head),
                case(f"x {(2, t, c)}, n_head={n_head}, n_kv_head={n_kv}", x_(2, t, c), small, n_head, n_kv),
                case(f"x {(2, t, C)}, {own}, float64", x_(2, t, C, dtype=torch.float64),
                     weights(layer, torch.float64), cfg.n_head, cfg.n_kv_head),
                case(f"x {(2, t, C)} = y.transpose(0, 1), {own}", strided(x_(2, t, C), 0, 1), weights(layer),
                     cfg.n_head, cfg.n_kv_head)]

    def reference(self, *args):
        return _mha(*args)


def _choice(g: torch.Generator, options):
    return options[int(torch.randint(len(options), (1,), generator=g))]
