"""Checks for notebook 4: the FFN (ReLU, GELU, SwiGLU), RMSNorm, the pre-norm block, the full forward pass.

Fixed inputs come from the trained reference model: the weights of its layers
and the real residual stream of a Korean and an English sentence flowing
through it. Hidden cases draw random shapes, values and (for the block and
the forward pass) whole random model configurations from a seed chosen at
grading time, so only a general implementation passes.

The student's functions receive weights as a plain dict of tensors named as
in the reference `Transformer.state_dict()` ("blocks.0.attn.W_q", ...; a
block sees the names of one layer without the "blocks.i." prefix) and the
configuration as a plain dict (`ModelConfig.to_dict()`).

Hidden cases always include the extremes besides the random draws: a batch
whose rows differ (B >= 2), T=1, the reference model's whole context
(max_seq_len) for the block and the forward pass, float64 and a strided
(non-contiguous) input. Case labels are short and written as code or numbers,
because they appear inside feedback sentences in both languages.

Mistakes named (-> message key; each has a mutant or an explanation of the
exception it raises, and a student-style test in tests/test_mistakes_ffn.py):
  relu_ffn
    - b_1, b_2 or both left out  -> mistake_ffn_no_bias_1 / mistake_ffn_no_bias_2 / mistake_ffn_no_bias
    - b_1 added after the ReLU                     -> mistake_ffn_bias_after_relu
    - a ReLU on the output too                     -> mistake_ffn_relu_output
    - GELU or SiLU instead of ReLU                 -> mistake_ffn_wrong_activation
    - only the first sequence of the batch         -> mistake_batch_first_row
  gelu
    - the exact erf GELU instead of the tanh form  -> mistake_gelu_erf
    - the leading 0.5 left out                     -> mistake_gelu_half
    - the 0.044715 x^3 term left out               -> mistake_gelu_cubic
    - x^2 instead of x^3                           -> mistake_gelu_power
    - 2/pi without the square root                 -> mistake_gelu_sqrt
    - sqrt(2/pi) turned over (sqrt(pi/2)), 0.044715 off by a factor of ten -> mistake_gelu_constant
    - the sigmoid approximation x * sigmoid(1.702 x) -> mistake_gelu_sigmoid
    - tanh written with exp(), overflowing          -> mistake_gelu_tanh_overflow
  swiglu_ffn
    - SiLU on the up branch instead of the gate    -> mistake_swiglu_swapped
    - sigmoid instead of SiLU                      -> mistake_swiglu_sigmoid
    - no activation                                -> mistake_swiglu_no_activation
    - GELU or ReLU instead of SiLU                 -> mistake_swiglu_wrong_activation
    - SiLU applied after the product               -> mistake_swiglu_silu_after_product
    - only the first sequence of the batch         -> mistake_batch_first_row
  rms_norm
    - no eps / eps outside the square root         -> mistake_rmsnorm_no_eps / mistake_rmsnorm_eps_outside
    - the mean subtracted (LayerNorm)              -> mistake_rmsnorm_mean
    - the gain `weight` not applied                -> mistake_rmsnorm_no_weight
    - the mean of squares over the wrong axis      -> mistake_rmsnorm_axis
    - divided by the mean square (no square root)  -> mistake_rmsnorm_no_sqrt
    - divided by the length ||x|| instead of the RMS -> mistake_rmsnorm_norm
    - only the first sequence of the batch         -> mistake_batch_first_row
  transformer_block
    - post-norm                                    -> mistake_block_post_norm
    - a residual connection missing                -> mistake_block_no_residual
    - the residual added to the normalized x       -> mistake_block_residual_from_norm
    - a norm left out                              -> mistake_block_no_norm
    - the FFN reading the block's input (parallel) -> mistake_block_parallel
    - norm1 and norm2 swapped                      -> mistake_block_norms_swapped
    - only the first sequence of the batch         -> mistake_batch_first_row
  forward
    - no final norm                                -> mistake_forward_no_final_norm
    - no RoPE                                      -> mistake_forward_no_rope
    - probabilities instead of logits              -> mistake_forward_probabilities
    - embeddings multiplied by sqrt(d_model)       -> mistake_forward_scaled_embedding
    - layers skipped, repeated or run with one layer's weights -> mistake_forward_layers
    - logits of the last position only             -> mistake_forward_last_position
    - x @ tok_emb without the transpose (raises)   -> mistake_forward_unembedding
    - only the first sequence of the batch         -> mistake_batch_first_row
    - RoPE tables or a mask of a fixed size (raise at max_seq_len) -> mistake_fixed_buffer
    - .view on strided ids (ids.view(-1))          -> mistake_view_noncontiguous
    - wrong tokens in greedy generation            -> mistake_forward_greedy
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

import torch
import torch.nn.functional as F

from autograde.checks.core import Case, Check, Verdict, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.checks.steps.attention import first_row_only, raised_mistake, strided
from autograde.checks.tolerance import Tolerance, close, tolerance_for
from autograde.reference import functional as fn
from autograde.reference import model as ref

SENTENCES = ("애, 겨울 배가 맛있단다!", "The model reads tokens, not letters.")
GREEDY_TOKENS = 8            # tokens written by greedy decoding with the student's forward
NEAR_TIE = 1e-4              # reference logits closer than this: either token is a right pick

register_messages({
    "mistake_forward_greedy": {
        "en": "greedy generation with your forward picked token {got} as new token {position}; the reference "
              "model picks {expected}",
        "ko": "여러분의 forward로 탐욕적 디코딩을 하면 {position}번째 새 토큰으로 {got}번 토큰을 고릅니다. 참고 모델은 "
              "{expected}번 토큰을 고릅니다"},
    "mistake_ffn_no_bias_1": {
        "en": "a missing FFN bias: b_1 was not added; the hidden layer is max(0, x W_1 + b_1)",
        "ko": "FFN 편향이 빠졌습니다: b_1을 더하지 않았습니다. 은닉층은 max(0, x W_1 + b_1)입니다"},
    "mistake_ffn_no_bias_2": {
        "en": "a missing FFN bias: b_2 was not added; the output is h W_2 + b_2",
        "ko": "FFN 편향이 빠졌습니다: b_2를 더하지 않았습니다. 출력은 h W_2 + b_2입니다"},
    "mistake_ffn_no_bias": {
        "en": "a missing FFN bias: neither b_1 nor b_2 was added; FFN(x) = max(0, x W_1 + b_1) W_2 + b_2",
        "ko": "FFN 편향이 빠졌습니다: b_1도 b_2도 더하지 않았습니다. FFN(x) = max(0, x W_1 + b_1) W_2 + b_2입니다"},
    "mistake_ffn_bias_after_relu": {
        "en": "b_1 was added after the ReLU: add it to x W_1 first, then take max(0, ...)",
        "ko": "b_1을 ReLU 뒤에 더했습니다: x W_1에 먼저 더한 다음 max(0, ...)를 취하세요"},
    "mistake_ffn_relu_output": {
        "en": "the ReLU was applied to the output as well: only the hidden layer goes through max(0, ...), h W_2 + b_2 stays linear",
        "ko": "출력에도 ReLU를 적용했습니다: max(0, ...)는 은닉층에만 쓰고, h W_2 + b_2는 선형 그대로 둡니다"},
    "mistake_gelu_erf": {
        "en": "this is the exact GELU with erf; the course (like GPT-2) uses the tanh approximation "
              "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
        "ko": "erf로 계산한 정확한 GELU입니다. 이 강좌는 GPT-2처럼 tanh 근사식을 씁니다: "
              "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"},
    "mistake_gelu_half": {
        "en": "the factor 0.5 in front is missing: GELU(x) = 0.5 x (1 + tanh(...))",
        "ko": "앞의 0.5가 빠졌습니다: GELU(x) = 0.5 x (1 + tanh(...))입니다"},
    "mistake_gelu_cubic": {
        "en": "the 0.044715 x^3 term inside the tanh is missing: tanh(sqrt(2/pi) (x + 0.044715 x^3))",
        "ko": "tanh 안의 0.044715 x^3 항이 빠졌습니다: tanh(sqrt(2/pi) (x + 0.044715 x^3))입니다"},
    "mistake_swiglu_swapped": {
        "en": "the SiLU went on the wrong branch: SiLU(x W_gate) * (x W_up), the up branch has no activation",
        "ko": "SiLU를 엉뚱한 갈래에 적용했습니다: SiLU(x W_gate) * (x W_up)이고, up 갈래에는 활성화 함수가 없습니다"},
    "mistake_swiglu_sigmoid": {
        "en": "you used the sigmoid itself; SiLU(z) = z * sigmoid(z)",
        "ko": "시그모이드를 그대로 썼습니다. SiLU(z) = z * sigmoid(z)입니다"},
    "mistake_swiglu_no_activation": {
        "en": "the SiLU is missing: the gate branch x W_gate goes through SiLU before the product",
        "ko": "SiLU가 빠졌습니다: 게이트 갈래 x W_gate는 곱하기 전에 SiLU를 거칩니다"},
    "mistake_rmsnorm_no_eps": {
        "en": "RMSNorm without eps: add eps to the mean of the squares inside the square root, "
              "or a (near-)zero vector is blown up to huge values or NaN",
        "ko": "RMSNorm에 eps가 없습니다: 제곱평균에 eps를 더한 뒤 제곱근을 취하세요. "
              "그러지 않으면 0에 (가까운) 벡터가 엄청나게 커지거나 NaN이 됩니다"},
    "mistake_rmsnorm_eps_outside": {
        "en": "eps was added outside the square root: divide by sqrt(mean(x^2) + eps)",
        "ko": "eps를 제곱근 밖에서 더했습니다: sqrt(mean(x^2) + eps)로 나누세요"},
    "mistake_rmsnorm_mean": {
        "en": "RMSNorm with the mean subtracted: that is LayerNorm; RMSNorm divides x itself by its root mean square, without centring",
        "ko": "RMSNorm에서 평균을 뺐습니다. 그러면 LayerNorm이 됩니다. RMSNorm은 평균을 빼지 않고 x를 그대로 RMS(제곱평균제곱근)로 나눕니다"},
    "mistake_rmsnorm_no_weight": {
        "en": "the learned gain `weight` was not applied: multiply the normalized vector by it",
        "ko": "학습된 스케일 `weight`를 곱하지 않았습니다: 정규화한 벡터에 곱하세요"},
    "mistake_block_post_norm": {
        "en": "this is a post-norm block, Norm(x + Sublayer(x)); the reference is pre-norm: "
              "x + Attn(Norm(x)), then x + FFN(Norm(x))",
        "ko": "사후 정규화(post-norm) 블록, 즉 Norm(x + Sublayer(x))입니다. 참고 모델은 사전 정규화(pre-norm) "
              "블록입니다: 먼저 x + Attn(Norm(x)), 이어서 x + FFN(Norm(x))"},
    "mistake_block_no_residual": {
        "en": "a residual connection is missing: add each sublayer's output to x (x = x + ...) instead of replacing x",
        "ko": "잔차 연결이 빠졌습니다: 어텐션이나 FFN의 출력으로 x를 바꾸지 말고 x에 더하세요 (x = x + ...)"},
    "mistake_block_parallel": {
        "en": "the FFN read the block's input: its norm must be taken of x after the attention was added",
        "ko": "FFN이 블록의 입력을 읽었습니다: FFN 앞의 정규화는 어텐션 출력을 더한 뒤의 x에 적용해야 합니다"},
    "mistake_block_norms_swapped": {
        "en": "the two norms are swapped: norm1.weight goes before the attention, norm2.weight before the FFN",
        "ko": "두 정규화가 뒤바뀌었습니다: norm1.weight는 어텐션 앞, norm2.weight는 FFN 앞에 씁니다"},
    "mistake_forward_no_final_norm": {
        "en": "the final RMSNorm (norm_f.weight) before the unembedding is missing",
        "ko": "로짓을 계산하기 직전의 마지막 RMSNorm(norm_f.weight)이 빠졌습니다"},
    "mistake_forward_no_rope": {
        "en": "the positions are missing: build the RoPE cos/sin tables for positions 0..T-1 and pass them to every block",
        "ko": "위치 정보가 빠졌습니다: 0..T-1 위치의 RoPE cos/sin 표를 만들어 모든 블록에 넘기세요"},
    "mistake_forward_probabilities": {
        "en": "these are probabilities, not logits: return x @ W_E^T without a softmax",
        "ko": "로짓이 아니라 확률입니다: 소프트맥스 없이 x @ W_E^T를 돌려주세요"},
    "mistake_ffn_wrong_activation": {
        "en": "the hidden layer used another activation (GELU or SiLU); this FFN uses ReLU, max(0, x W_1 + b_1)",
        "ko": "은닉층에 다른 활성화 함수(GELU나 SiLU)를 썼습니다. 이 FFN은 ReLU, 즉 max(0, x W_1 + b_1)을 씁니다"},
    "mistake_gelu_power": {
        "en": "the term inside the tanh must be cubed: 0.044715 x^3, not x^2",
        "ko": "tanh 안의 항은 x의 제곱이 아니라 세제곱, 즉 0.044715 x^3입니다"},
    "mistake_gelu_constant": {
        "en": "a constant of the formula is off: the factor is sqrt(2/pi), about 0.7979 (not its inverse sqrt(pi/2), "
              "about 1.2533), and the cubic term's weight is 0.044715",
        "ko": "공식의 상수가 틀렸습니다: 계수는 약 0.7979인 sqrt(2/pi)이고(그 역수 sqrt(pi/2), 약 1.2533이 아닙니다), "
              "세제곱 항의 가중치는 0.044715입니다"},
    "mistake_gelu_sqrt": {
        "en": "the factor inside the tanh is the square root sqrt(2/pi) (about 0.798), not 2/pi",
        "ko": "tanh 안의 계수는 2/pi가 아니라 그 제곱근 sqrt(2/pi)(약 0.798)입니다"},
    "mistake_gelu_sigmoid": {
        "en": "this is the sigmoid approximation x * sigmoid(1.702 x); the course uses the tanh form "
              "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
        "ko": "시그모이드 근사 x * sigmoid(1.702 x)입니다. 이 강좌는 tanh 근사식을 씁니다: "
              "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"},
    "mistake_gelu_tanh_overflow": {
        "en": "tanh written with exp() overflows for large inputs (inf / inf = NaN): use torch.tanh",
        "ko": "exp()로 직접 쓴 tanh는 입력이 크면 넘쳐서 inf / inf = NaN이 됩니다. torch.tanh를 쓰세요"},
    "mistake_swiglu_wrong_activation": {
        "en": "the gate used another activation (GELU or ReLU); SwiGLU uses SiLU(z) = z * sigmoid(z)",
        "ko": "게이트에 다른 활성화 함수(GELU나 ReLU)를 썼습니다. SwiGLU는 SiLU를 씁니다: SiLU(z) = z * sigmoid(z)"},
    "mistake_swiglu_silu_after_product": {
        "en": "the SiLU was applied after the product; apply it to the gate alone: SiLU(x W_gate) * (x W_up)",
        "ko": "곱한 다음에 SiLU를 적용했습니다. 게이트에만 적용하세요: SiLU(x W_gate) * (x W_up)"},
    "mistake_rmsnorm_axis": {
        "en": "the mean of the squares was taken over the wrong axis: each token vector is normalized on its own, "
              "x.pow(2).mean(dim=-1, keepdim=True)",
        "ko": "제곱평균을 엉뚱한 축으로 구했습니다. 토큰 벡터마다 따로 정규화하므로 "
              "x.pow(2).mean(dim=-1, keepdim=True)를 쓰세요"},
    "mistake_rmsnorm_no_sqrt": {
        "en": "the square root is missing: divide by sqrt(mean(x^2) + eps), not by the mean square itself",
        "ko": "제곱근이 빠졌습니다: 제곱평균 자체가 아니라 sqrt(mean(x^2) + eps)로 나누세요"},
    "mistake_rmsnorm_norm": {
        "en": "you divided by the vector's length ||x||; RMSNorm divides by the root mean square, "
              "||x|| / sqrt(C): use the mean of the squares, not their sum",
        "ko": "벡터의 길이 ||x||로 나눴습니다. RMSNorm은 제곱평균제곱근, 즉 ||x|| / sqrt(C)로 나눕니다. "
              "제곱의 합이 아니라 평균을 쓰세요"},
    "mistake_block_residual_from_norm": {
        "en": "the residual was added to the normalized x: keep the stream as it is, "
              "x = x + Attn(Norm(x)), not Norm(x) + Attn(Norm(x))",
        "ko": "정규화한 x에 잔차를 더했습니다. 잔차 스트림은 그대로 두고 "
              "Norm(x) + Attn(Norm(x))가 아니라 x = x + Attn(Norm(x))로 쓰세요"},
    "mistake_block_no_norm": {
        "en": "a norm is missing: the attention reads rms_norm(x, norm1.weight), the FFN reads rms_norm(x, norm2.weight)",
        "ko": "정규화가 빠졌습니다: 어텐션은 rms_norm(x, norm1.weight)를, FFN은 rms_norm(x, norm2.weight)를 입력으로 받습니다"},
    "mistake_forward_scaled_embedding": {
        "en": "the embeddings were multiplied by sqrt(d_model); this model uses the rows of tok_emb as they are",
        "ko": "임베딩에 sqrt(d_model)을 곱했습니다. 이 모델은 tok_emb의 행을 그대로 씁니다"},
    "mistake_forward_layers": {
        "en": "the layers did not each run once, in order, with their own weights: block i uses the tensors "
              "named blocks.i.*, for i = 0 .. n_layer-1",
        "ko": "층마다 자기 가중치로 차례대로 한 번씩 실행되지 않았습니다. i번 블록은 blocks.i.*라는 이름의 텐서를 씁니다 "
              "(i = 0 .. n_layer-1)"},
    "mistake_forward_unembedding": {
        "en": "the unembedding needs the embedding table transposed: logits = x @ tok_emb.T, (C, V)",
        "ko": "로짓을 구할 때는 임베딩 표를 전치해서 곱합니다: logits = x @ tok_emb.T, 모양은 (C, V)"},
    "mistake_forward_last_position": {
        "en": "only the last position's logits were returned: return logits for every position, (B, T, V)",
        "ko": "마지막 위치의 로짓만 돌려주었습니다: 모든 위치의 로짓 (B, T, V)를 돌려주세요"},
})


def _pick(g: torch.Generator, options):
    return options[int(torch.randint(len(options), (1,), generator=g))]


# ----------------------------------------------------------------------------
# the trained reference model and its residual stream


@lru_cache(maxsize=1)
def reference_model():
    from autograde.reference.checkpoint import load_reference

    return load_reference().model


def model_weights() -> dict[str, torch.Tensor]:
    """The reference weights as a plain dict of fresh tensors."""
    return {name: t.detach().clone() for name, t in reference_model().state_dict().items()}


def model_config() -> dict:
    return reference_model().cfg.to_dict()


def layer_weights(weights: dict, layer: int) -> dict[str, torch.Tensor]:
    prefix = f"blocks.{layer}."
    return {name[len(prefix):]: t for name, t in weights.items() if name.startswith(prefix)}


def sentence_ids(index: int) -> torch.Tensor:
    from autograde.reference.checkpoint import load_reference

    return torch.tensor([load_reference().tokenizer.encode(SENTENCES[index])])   # (1, T)


def rope_tables(T: int, head_dim: int, theta: float, device=None):
    """cos, sin for positions 0..T-1 as (1, 1, T, D): broadcastable to (B, H, T, D)."""
    cos, sin = ref.rope_cos_sin(torch.arange(T, device=device)[None], head_dim, theta)   # (1, T, D)
    return cos[:, None], sin[:, None]


@lru_cache(maxsize=None)
def residual_stream(index: int) -> dict[str, list[torch.Tensor]]:
    """The reference model on SENTENCES[index]: 'block_in' (input of every block, then the
    final stream, n_layer + 1 tensors) and 'mid' (the stream after each block's attention)."""
    model = reference_model()
    ids = sentence_ids(index)
    T = ids.shape[1]
    rope = ref.rope_cos_sin(torch.arange(T)[None], model.cfg.head_dim, model.cfg.rope_theta)
    mask = ref.causal_mask(T, T)[None, None]
    block_in, mid = [], []
    with torch.no_grad():
        x = model.tok_emb[ids]                                      # (1, T, C)
        for block in model.blocks:
            block_in.append(x)
            x = x + block.attn(block.norm1(x), mask, rope)
            mid.append(x)
            x = x + block.ffn(block.norm2(x))
        block_in.append(x)
    return {"block_in": block_in, "mid": mid}


def ffn_input(index: int, layer: int) -> torch.Tensor:
    """What the FFN of `layer` reads on sentence `index`: norm2(stream after attention). (1, T, C)"""
    block = reference_model().blocks[layer]
    with torch.no_grad():
        return block.norm2(residual_stream(index)["mid"][layer]).clone()


def both(part) -> torch.Tensor:
    """One tensor per sentence from `part(index)`, (1, T, ...) each, stacked as a batch of two."""
    parts = [part(i) for i in range(len(SENTENCES))]
    t = min(p.shape[1] for p in parts)
    return torch.cat([p[:, :t] for p in parts]).clone()


# ----------------------------------------------------------------------------
# 1. ReLU FFN


def _relu_ffn(x, W_1, b_1, W_2, b_2, *, use_b1=True, use_b2=True, b1_after=False, relu_out=False, act=torch.relu):
    pre = x @ W_1                                                   # (..., F)
    if use_b1 and not b1_after:
        pre = pre + b_1
    hidden = act(pre)
    if use_b1 and b1_after:
        hidden = hidden + b_1
    out = hidden @ W_2                                              # (..., C)
    if use_b2:
        out = out + b_2
    return torch.relu(out) if relu_out else out


def _ffn_cases(g: torch.Generator, make_weights, ffn_label: str) -> list[Case]:
    """Hidden cases shared by the FFNs: random (B, T, C), T=1, one vector (C,), float64, strided x."""
    B, T, C, Fd = (int(s) for s in torch.randint(2, 9, (4,), generator=g))
    C, Fd = 4 * C, 4 * Fd
    w = make_weights(C, Fd, torch.float32)
    w64 = make_weights(C, Fd, torch.float64)
    x = torch.randn(B, T, C, generator=g)
    return [Case(f"x {(B, T, C)}, {ffn_label}={Fd}", (x, *w)),
            Case(f"x {(B, 1, C)}, {ffn_label}={Fd}", (torch.randn(B, 1, C, generator=g), *w)),
            Case(f"x {(C,)}, {ffn_label}={Fd}", (x[0, 0].clone(), *w)),
            Case(f"x {(B, T, C)}, float64", (torch.randn(B, T, C, generator=g, dtype=torch.float64), *w64)),
            Case(f"x {(B, T, C)} = y.transpose(0, 1)", (strided(torch.randn(B, T, C, generator=g), 0, 1), *w))]


class FfnCheck(Check):
    """Names the exceptions of a .view on a strided tensor and (from `long_from` on) of a fixed-size buffer."""
    long_from = 64

    def seq_len(self, case: Case) -> int | None:
        return None

    def explain_raised(self, case, error, text):
        t = self.seq_len(case)
        return raised_mistake(text, t if t is not None and t >= self.long_from else None)




@register
class ReluFFN(FfnCheck):
    step = "ffn.relu_ffn"
    mutants = {
        "mistake_ffn_no_bias": lambda *a: _relu_ffn(*a, use_b1=False, use_b2=False),
        "mistake_ffn_no_bias_1": lambda *a: _relu_ffn(*a, use_b1=False),
        "mistake_ffn_no_bias_2": lambda *a: _relu_ffn(*a, use_b2=False),
        "mistake_ffn_bias_after_relu": lambda *a: _relu_ffn(*a, b1_after=True),
        "mistake_ffn_relu_output": lambda *a: _relu_ffn(*a, relu_out=True),
        "mistake_ffn_wrong_activation": [lambda *a, f=f: _relu_ffn(*a, act=f) for f in (ref.gelu, F.gelu, F.silu)],
        "mistake_batch_first_row": first_row_only(_relu_ffn),
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            def weights(C, Fd, dtype):
                return (torch.randn(C, Fd, generator=g, dtype=dtype) / math.sqrt(C),
                        torch.randn(Fd, generator=g, dtype=dtype) * 0.5,
                        torch.randn(Fd, C, generator=g, dtype=dtype) / math.sqrt(Fd),
                        torch.randn(C, generator=g, dtype=dtype) * 0.5)
            return _ffn_cases(g, weights, "d_ff")
        # The reference model is a SwiGLU model without biases: its layer-0 gate and down
        # matrices serve as W_1 and W_2, with small fixed biases.
        w = layer_weights(model_weights(), 0)
        W_1, W_2 = w["ffn.W_gate"], w["ffn.W_down"]
        b_1 = torch.randn(W_1.shape[1], generator=g) * 0.1
        b_2 = torch.randn(W_2.shape[1], generator=g) * 0.1
        x = both(lambda i: ffn_input(i, 0))
        return [Case(f"x {tuple(x.shape)}, W_1 = blocks.0.ffn.W_gate, W_2 = blocks.0.ffn.W_down",
                     (x, W_1, b_1, W_2, b_2)),
                Case(f"x {tuple(x.shape[2:])}, W_1 = blocks.0.ffn.W_gate", (x[0, 3].clone(), W_1, b_1, W_2, b_2))]

    def reference(self, x, W_1, b_1, W_2, b_2):
        return _relu_ffn(x, W_1, b_1, W_2, b_2)


# ----------------------------------------------------------------------------
# 2. GELU and SwiGLU


def _gelu(x, *, half=True, cubic=True, power=3, root=True, tanh=torch.tanh, factor=2.0 / math.pi, weight=0.044715):
    inner = (math.sqrt(factor) if root else factor) * (x + (weight * x ** power if cubic else 0.0))
    return (0.5 if half else 1.0) * x * (1.0 + tanh(inner))


def _tanh_exp2(u):
    e = torch.exp(2 * u)
    return (e - 1) / (e + 1)


def _tanh_exp(u):
    return (torch.exp(u) - torch.exp(-u)) / (torch.exp(u) + torch.exp(-u))


@register
class Gelu(FfnCheck):
    step = "ffn.gelu"
    forbidden = ("torch.nn.functional.gelu", "torch.nn.GELU", "autograde.reference.model.gelu")
    mutants = {
        "mistake_gelu_erf": lambda x: F.gelu(x),
        "mistake_gelu_half": lambda x: _gelu(x, half=False),
        "mistake_gelu_cubic": lambda x: _gelu(x, cubic=False),
        "mistake_gelu_power": lambda x: _gelu(x, power=2),
        "mistake_gelu_sqrt": lambda x: _gelu(x, root=False),
        "mistake_gelu_constant": [lambda x: _gelu(x, factor=math.pi / 2), lambda x: _gelu(x, root=False, factor=math.pi / 2),
                                  lambda x: _gelu(x, weight=0.44715), lambda x: _gelu(x, weight=0.0044715)],
        "mistake_gelu_sigmoid": lambda x: x * torch.sigmoid(1.702 * x),
        "mistake_gelu_tanh_overflow": [lambda x: _gelu(x, tanh=_tanh_exp2), lambda x: _gelu(x, tanh=_tanh_exp)],
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            shape = tuple(int(s) for s in torch.randint(2, 9, (3,), generator=g))
            return [Case(f"z {shape}", (torch.randn(shape, generator=g) * 3,)),
                    Case("z (64,) ∈ [-5, 5]", (torch.rand(64, generator=g) * 10 - 5,)),
                    Case(f"z {shape} × 40", (torch.randn(shape, generator=g) * 40,)),
                    Case(f"z {shape}, float64", (torch.randn(shape, generator=g, dtype=torch.float64) * 3,)),
                    Case(f"z {shape} = y.transpose(0, 2)", (strided(torch.randn(shape, generator=g) * 3, 0, 2),))]
        w = layer_weights(model_weights(), 0)
        x = both(lambda i: ffn_input(i, 0))
        return [Case("z = linspace(-5, 5, 41)", (torch.linspace(-5.0, 5.0, 41),)),
                Case(f"z = x @ blocks.0.ffn.W_gate {tuple(x.shape[:2]) + (w['ffn.W_gate'].shape[1],)}",
                     (x @ w["ffn.W_gate"],)),
                Case("z = linspace(-100, 100, 41)", (torch.linspace(-100.0, 100.0, 41),))]

    def reference(self, x):
        return ref.gelu(x)


def _swiglu(x, W_gate, W_up, W_down, *, variant="ok"):
    gate, up = x @ W_gate, x @ W_up                                 # (..., F) each
    if variant == "after":
        return F.silu(gate * up) @ W_down
    if variant == "swapped":
        gate, up = up, gate
    act = {"ok": F.silu, "swapped": F.silu, "sigmoid": torch.sigmoid, "none": lambda z: z, "gelu": ref.gelu,
           "gelu_erf": F.gelu, "relu": torch.relu}[variant]
    return (act(gate) * up) @ W_down                                # (..., C)


@register
class SwiGLU(FfnCheck):
    step = "ffn.swiglu"
    mutants = {
        "mistake_swiglu_swapped": lambda *a: _swiglu(*a, variant="swapped"),
        "mistake_swiglu_sigmoid": lambda *a: _swiglu(*a, variant="sigmoid"),
        "mistake_swiglu_no_activation": lambda *a: _swiglu(*a, variant="none"),
        "mistake_swiglu_wrong_activation": [lambda *a, v=v: _swiglu(*a, variant=v) for v in ("gelu", "gelu_erf", "relu")],
        "mistake_swiglu_silu_after_product": lambda *a: _swiglu(*a, variant="after"),
        "mistake_batch_first_row": first_row_only(_swiglu),
    }

    def cases(self, seed, hidden):
        weights = model_weights()
        if hidden:
            g = gen(seed)

            def mats(C, Fd, dtype):
                return (torch.randn(C, Fd, generator=g, dtype=dtype) / math.sqrt(C),
                        torch.randn(C, Fd, generator=g, dtype=dtype) / math.sqrt(C),
                        torch.randn(Fd, C, generator=g, dtype=dtype) / math.sqrt(Fd))
            cases = _ffn_cases(g, mats, "d_ff")
            layer = int(torch.randint(reference_model().cfg.n_layer, (1,), generator=g))
            w = layer_weights(weights, layer)
            t = int(torch.randint(2, 20, (1,), generator=g))
            x_real = torch.randn(2, t, w["ffn.W_gate"].shape[0], generator=g)
            return cases + [Case(f"x {tuple(x_real.shape)}, blocks.{layer}.ffn",
                                 (x_real, w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"]))]
        cases = []
        for layer in (0, reference_model().cfg.n_layer - 1):
            w = layer_weights(weights, layer)
            x = both(lambda i: ffn_input(i, layer))
            cases.append(Case(f"x {tuple(x.shape)}, blocks.{layer}.ffn",
                              (x, w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])))
        return cases

    def reference(self, x, W_gate, W_up, W_down):
        return _swiglu(x, W_gate, W_up, W_down)


# ----------------------------------------------------------------------------
# 3. RMSNorm


def _rms_norm(x, weight, eps, *, use_eps=True, eps_outside=False, center=False, use_weight=True, axis=-1,
              root=True, mean=True):
    if center:
        x = x - x.mean(-1, keepdim=True)
    squares = x.pow(2)
    if axis is None:
        mean_sq = squares.mean() if mean else squares.sum()
    else:
        mean_sq = squares.mean(axis, keepdim=True) if mean else squares.sum(axis, keepdim=True)   # (..., 1)
    if eps_outside:
        rms = mean_sq.sqrt() + eps
    elif not root:
        rms = mean_sq + eps
    else:
        rms = torch.sqrt(mean_sq + eps) if use_eps else mean_sq.sqrt()
    out = x / rms
    return out * weight if use_weight else out


def _with_tiny_rows(x: torch.Tensor) -> torch.Tensor:
    """x (..., C) flattened to rows, plus a row scaled down by 1e-4 and a row of zeros. (N + 2, C)"""
    rows = x.reshape(-1, x.shape[-1])
    return torch.cat([rows, rows[:1] * 1e-4, torch.zeros_like(rows[:1])])


@register
class RMSNorm(FfnCheck):
    step = "ffn.rms_norm"
    forbidden = ("torch.nn.functional.rms_norm", "torch.rms_norm", "torch.nn.RMSNorm",
                 "autograde.reference.model.RMSNorm.forward")
    mutants = {
        "mistake_rmsnorm_no_eps": lambda x, w, eps: _rms_norm(x, w, eps, use_eps=False),
        "mistake_rmsnorm_mean": lambda x, w, eps: _rms_norm(x, w, eps, center=True),
        "mistake_rmsnorm_eps_outside": lambda x, w, eps: _rms_norm(x, w, eps, eps_outside=True),
        "mistake_rmsnorm_no_weight": lambda x, w, eps: _rms_norm(x, w, eps, use_weight=False),
        "mistake_rmsnorm_axis": [lambda x, w, eps, a=a: _rms_norm(x, w, eps, axis=a) for a in (None, 0, -2)],
        "mistake_rmsnorm_no_sqrt": lambda x, w, eps: _rms_norm(x, w, eps, root=False),
        "mistake_rmsnorm_norm": [lambda x, w, eps: _rms_norm(x, w, eps, mean=False),
                                 lambda x, w, eps: _rms_norm(x, w, eps, mean=False, eps_outside=True)],
        "mistake_batch_first_row": first_row_only(_rms_norm),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, T, C = (int(s) for s in torch.randint(2, 9, (3,), generator=g))
            C = 4 * C
            x = torch.randn(B, T, C, generator=g) * float(torch.rand(1, generator=g) * 5 + 0.5)
            x[0, 0] *= 1e-4                                         # a near-zero token vector
            weight = 1.0 + 0.3 * torch.randn(C, generator=g)
            eps = _pick(g, (1e-5, 1e-6, 1e-4))
            return [Case(f"x {tuple(x.shape)}, eps={eps:g}", (x, weight, eps)),
                    Case(f"x {(x.shape[1] + 2, C)}, x[-1] = 0, eps={eps:g}", (_with_tiny_rows(x[1]), weight, eps)),
                    Case(f"x {(B, 1, C)}, eps={eps:g}", (torch.randn(B, 1, C, generator=g) * 3, weight, eps)),
                    Case(f"x {tuple(x.shape)}, float64, eps={eps:g}", (x.double(), weight.double(), eps)),
                    Case(f"x {tuple(x.shape)} = y.transpose(0, 1), eps={eps:g}", (strided(x, 0, 1), weight, eps))]
        model, cfg = reference_model(), model_config()
        eps = cfg["norm_eps"]
        stream_ko = residual_stream(0)["block_in"]
        norm1_2 = model.blocks[2].norm1.weight.detach().clone()
        norm_f = model.norm_f.weight.detach().clone()
        before2 = both(lambda i: residual_stream(i)["block_in"][2])
        last = both(lambda i: residual_stream(i)["block_in"][-1])
        rows = _with_tiny_rows(stream_ko[1][0])
        return [
            Case(f"x {tuple(before2.shape)}, blocks.2.norm1.weight, eps={eps:g}", (before2, norm1_2, eps)),
            Case(f"x {tuple(last.shape)}, norm_f.weight, eps={eps:g}", (last, norm_f, eps)),
            Case(f"x {tuple(rows.shape)}, x[-1] = 0, eps=1e-06", (rows, norm1_2, 1e-6)),
            Case(f"x {tuple(rows.shape)}, x[-1] = 0, eps=1e-05", (rows.clone(), norm1_2, 1e-5)),
        ]

    def reference(self, x, weight, eps):
        return _rms_norm(x, weight, eps)


# ----------------------------------------------------------------------------
# 4. the pre-norm block


def _attention(x, w, cfg, cos, sin):
    """Multi-head attention with grouped-query heads from the reference pieces. cos, sin: (1, 1, T, D)."""
    n_head, n_kv = cfg["n_head"], cfg["n_kv_head"]
    q = ref.split_heads(x @ w["attn.W_q"], n_head)                  # (B, H, T, D)
    k = ref.split_heads(x @ w["attn.W_k"], n_kv)                    # (B, G, T, D)
    v = ref.split_heads(x @ w["attn.W_v"], n_kv)
    q = q * cos + ref.rotate_half(q) * sin
    k = k * cos + ref.rotate_half(k) * sin
    T = x.shape[1]
    out = fn.grouped_query_attention(q, k, v, fn.causal_mask(T, T, x.device))   # (B, H, T, D)
    return ref.merge_heads(out) @ w["attn.W_o"]                     # (B, T, C)


def _block(x, w, cfg, cos, sin, *, variant="pre"):
    eps = cfg["norm_eps"]
    n1, n2 = w["norm1.weight"], w["norm2.weight"]
    if variant == "swapped":
        n1, n2 = n2, n1

    def attn(h):
        return _attention(h, w, cfg, cos, sin)

    def ffn(h):
        return _swiglu(h, w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])

    def norm1(h):
        return h if variant in ("no_norm", "no_norm1") else _rms_norm(h, n1, eps)

    def norm2(h):
        return h if variant in ("no_norm", "no_norm2") else _rms_norm(h, n2, eps)

    if variant == "post":
        x = _rms_norm(x + attn(x), n1, eps)
        return _rms_norm(x + ffn(x), n2, eps)
    if variant == "parallel":
        return x + attn(_rms_norm(x, n1, eps)) + ffn(_rms_norm(x, n2, eps))
    if variant in ("no_residual", "no_residual_attn", "no_residual_ffn"):
        a = attn(_rms_norm(x, n1, eps))
        x = a if variant != "no_residual_ffn" else x + a
        f = ffn(_rms_norm(x, n2, eps))
        return f if variant != "no_residual_attn" else x + f
    if variant in ("from_norm", "from_norm1", "from_norm2"):
        h = _rms_norm(x, n1, eps)
        x = (h if variant != "from_norm2" else x) + attn(h)
        h = _rms_norm(x, n2, eps)
        return (h if variant != "from_norm1" else x) + ffn(h)
    x = x + attn(norm1(x))                                          # (B, T, C)
    return x + ffn(norm2(x))                                        # (B, T, C)


def random_config(g: torch.Generator, vocab_size: int = 97) -> dict:
    """A small random Llama-style configuration (tied embeddings), as a plain dict."""
    n_kv = _pick(g, (1, 2))
    n_head = n_kv * _pick(g, (1, 2, 3))
    head_dim = _pick(g, (4, 8))
    return ref.ModelConfig.llama_style(
        vocab_size=vocab_size, d_model=n_head * head_dim, n_layer=_pick(g, (1, 2, 3)), n_head=n_head,
        n_kv_head=n_kv, d_ff=_pick(g, (16, 24, 40)), max_seq_len=64, tie_embeddings=True,
        norm_eps=_pick(g, (1e-5, 1e-6)), rope_theta=_pick(g, (10000.0, 500000.0))).to_dict()


def random_weights(cfg: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights for every tensor of a Transformer(cfg): gains near 1, matrices scaled by 1/sqrt(fan-in)."""
    shapes = {name: tuple(t.shape) for name, t in ref.Transformer(ref.ModelConfig.from_dict(cfg)).state_dict().items()}
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            out[name] = 1.0 + 0.3 * torch.randn(shape, generator=g)
        elif name == "tok_emb":
            out[name] = torch.randn(shape, generator=g)
        else:
            out[name] = torch.randn(shape, generator=g) / math.sqrt(shape[0])
    return out


@register
class Block(FfnCheck):
    """The reference model's Block on the real residual stream."""
    step = "ffn.block"
    forbidden = ("autograde.reference.model.Block.forward",)
    depends = ("ffn.rms_norm", "ffn.swiglu")
    mutants = {
        "mistake_block_post_norm": lambda *a: _block(*a, variant="post"),
        "mistake_block_no_residual": [lambda *a, v=v: _block(*a, variant=v)
                                      for v in ("no_residual", "no_residual_attn", "no_residual_ffn")],
        "mistake_block_residual_from_norm": [lambda *a, v=v: _block(*a, variant=v)
                                             for v in ("from_norm", "from_norm1", "from_norm2")],
        "mistake_block_no_norm": [lambda *a, v=v: _block(*a, variant=v) for v in ("no_norm", "no_norm1", "no_norm2")],
        "mistake_block_parallel": lambda *a: _block(*a, variant="parallel"),
        "mistake_block_norms_swapped": lambda *a: _block(*a, variant="swapped"),
        "mistake_batch_first_row": first_row_only(_block),
    }

    def seq_len(self, case):
        return case.args[0].shape[1]

    def cases(self, seed, hidden):
        cfg = model_config()
        head_dim = cfg["d_model"] // cfg["n_head"]

        def case(label, x, w, c=cfg):
            cos, sin = rope_tables(x.shape[1], c["d_model"] // c["n_head"], c["rope_theta"])
            return Case(label, (x, w, c, cos.to(x.dtype), sin.to(x.dtype)))

        if hidden:
            g = gen(seed)
            layer = int(torch.randint(cfg["n_layer"], (1,), generator=g))
            w = layer_weights(model_weights(), layer)
            T = int(torch.randint(2, 24, (1,), generator=g))
            C, L = cfg["d_model"], cfg["max_seq_len"]
            small = random_config(g)
            T2 = int(torch.randint(2, 16, (1,), generator=g))
            x2 = torch.randn(3, T2, small["d_model"], generator=g)
            own = f"blocks.{layer}"
            return [case(f"x {(2, T, C)}, {own}", torch.randn(2, T, C, generator=g) * 2, w),
                    case(f"x {(3, T2, small['d_model'])}, n_head={small['n_head']}, n_kv_head={small['n_kv_head']}",
                         x2, layer_weights(random_weights(small, g), 0), small),
                    case(f"x {(2, 1, C)}, {own}", torch.randn(2, 1, C, generator=g) * 2, w),
                    case(f"x {(2, L, C)}, {own}", torch.randn(2, L, C, generator=g) * 2, w),
                    case(f"x {(2, T, C)}, {own}, float64", torch.randn(2, T, C, generator=g, dtype=torch.float64) * 2,
                         {k: v.double() for k, v in w.items()}),
                    case(f"x {(2, T, C)} = y.transpose(0, 1), {own}", strided(torch.randn(2, T, C, generator=g) * 2, 0, 1),
                         w)]
        weights = model_weights()
        cases = []
        for layer in (0, 2):
            x = both(lambda i: residual_stream(i)["block_in"][layer])
            cases.append(case(f"x {tuple(x.shape)}, blocks.{layer}", x, layer_weights(weights, layer)))
        x = residual_stream(0)["block_in"][1].clone()
        cases.append(case(f"x {tuple(x.shape)}, blocks.1", x, layer_weights(weights, 1)))
        return cases

    def reference(self, x, weights, cfg, cos, sin):
        """The reference model's own Block, loaded with these weights."""
        block = ref.Block(ref.ModelConfig.from_dict(cfg)).to(x.device, x.dtype)
        block.load_state_dict(weights)
        T = x.shape[1]
        with torch.no_grad():
            return block(x, ref.causal_mask(T, T, x.device)[None, None], (cos[:, 0], sin[:, 0]))


# ----------------------------------------------------------------------------
# 5. the whole forward pass


_MATMUL = re.compile(r"\((\d+)x(\d+) and (\d+)x(\d+)\)")


def _forward(ids, weights, cfg, *, final_norm=True, rope=True, probabilities=False, emb_scale=False,
             layers="all", last_only=None):
    T = ids.shape[1]
    head_dim = cfg["d_model"] // cfg["n_head"]
    x = weights["tok_emb"][ids]                                     # (B, T, C)
    if emb_scale:
        x = x * math.sqrt(cfg["d_model"])
    if rope:
        cos, sin = rope_tables(T, head_dim, cfg["rope_theta"], ids.device)
    else:
        cos = torch.ones(1, 1, T, head_dim, device=ids.device)
        sin = torch.zeros(1, 1, T, head_dim, device=ids.device)
    order = {"all": range(cfg["n_layer"]), "first": [0], "same": [0] * cfg["n_layer"],
             "same_last": [cfg["n_layer"] - 1] * cfg["n_layer"], "reversed": range(cfg["n_layer"] - 1, -1, -1)}[layers]
    for layer in order:
        x = _block(x, layer_weights(weights, layer), cfg, cos, sin)
    if final_norm:
        x = _rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])
    logits = x @ weights["tok_emb"].T                               # (B, T, V)
    if last_only == "keep":
        logits = logits[:, -1:]
    elif last_only == "drop":
        logits = logits[:, -1]
    return logits.softmax(-1) if probabilities else logits


@register
class Forward(FfnCheck):
    """Logits of the student's stack against the reference Transformer."""
    step = "ffn.forward"
    forbidden = ("autograde.reference.model.Transformer.forward", "autograde.reference.model.Block.forward")
    depends = ("ffn.block", "ffn.rms_norm")
    mutants = {
        "mistake_forward_no_final_norm": lambda *a: _forward(*a, final_norm=False),
        "mistake_forward_no_rope": lambda *a: _forward(*a, rope=False),
        "mistake_forward_probabilities": lambda *a: _forward(*a, probabilities=True),
        "mistake_forward_scaled_embedding": lambda *a: _forward(*a, emb_scale=True),
        "mistake_forward_layers": [lambda *a, v=v: _forward(*a, layers=v)
                                   for v in ("same", "first", "same_last", "reversed")],
        "mistake_forward_last_position": [lambda *a: _forward(*a, last_only="keep"),
                                          lambda *a: _forward(*a, last_only="drop")],
        "mistake_batch_first_row": first_row_only(_forward),
    }

    def seq_len(self, case):
        return case.args[0].shape[1]

    def explain_raised(self, case, error, text):
        cfg = case.args[2]
        found = _MATMUL.search(text)                  # "(20x128 and 2048x128)": x @ tok_emb, not tok_emb.T
        if found and (int(found[2]), int(found[3]), int(found[4])) == (cfg["d_model"], cfg["vocab_size"],
                                                                       cfg["d_model"]):
            return "mistake_forward_unembedding"
        return super().explain_raised(case, error, text)

    def cases(self, seed, hidden):
        cfg = model_config()
        if hidden:
            g = gen(seed)
            V, L = cfg["vocab_size"], cfg["max_seq_len"]
            T = int(torch.randint(2, 30, (1,), generator=g))
            ids = torch.randint(V, (2, T), generator=g)
            small = random_config(g)
            ids2 = torch.randint(small["vocab_size"], (3, int(torch.randint(2, 16, (1,), generator=g))), generator=g)
            prompt = ids[:1, :int(torch.randint(2, 8, (1,), generator=g))]
            return [Case(f"ids {tuple(ids.shape)}", (ids, model_weights(), cfg)),
                    Case(f"ids {tuple(ids2.shape)}, n_layer={small['n_layer']}, d_model={small['d_model']}",
                         (ids2, random_weights(small, g), small)),
                    Case(f"ids {(3, 1)}", (torch.randint(V, (3, 1), generator=g), model_weights(), cfg)),
                    Case(f"ids {(2, L)}, T = max_seq_len", (torch.randint(V, (2, L), generator=g), model_weights(), cfg)),
                    Case(f"ids {(2, T)} = y.T", (torch.randint(V, (T, 2), generator=g).T, model_weights(), cfg)),
                    Case(f"greedy generation, {GREEDY_TOKENS} tokens after random ids {tuple(prompt.shape)}",
                         (prompt, model_weights(), cfg), drive=f"greedy:{GREEDY_TOKENS}")]
        pair = both(sentence_ids)
        cases = [Case(f"ids {tuple(pair.shape)}", (pair, model_weights(), cfg)),
                 Case(f"“{SENTENCES[0]}”", (sentence_ids(0), model_weights(), cfg))]
        return cases + [Case(f"greedy generation, {GREEDY_TOKENS} tokens after “{text}”",
                             (sentence_ids(i), model_weights(), cfg), drive=f"greedy:{GREEDY_TOKENS}")
                        for i, text in enumerate(SENTENCES)]

    def reference(self, ids, weights, cfg):
        model = ref.Transformer(ref.ModelConfig.from_dict(cfg))
        model.load_weights({k: v.detach().cpu() for k, v in weights.items()})
        model = model.to(ids.device).eval()
        with torch.no_grad():
            return model(ids)

    def judge(self, case, output):
        """Logits within float32 noise of the logits' scale pass: cos/sin tables computed another way
        (in float64, theta ** -x instead of 1 / theta ** x) move the logits at position ~100 by ~1e-5,
        more than the absolute tolerance for a logit near 0; every named mistake moves them by far more."""
        if case.drive is not None:
            return judge_greedy(case, output, lambda ids: self.reference(ids, *case.args[1:]))
        if isinstance(output, torch.Tensor) and output.dtype.is_floating_point:
            expected = self.reference(*case.args, **case.kwargs)
            tol = tolerance_for(expected.dtype, output.device)
            scaled = Tolerance(tol.rtol, tol.atol + tol.rtol * float(expected.abs().max()))
            if not torch.isnan(output).any() and close(output, expected, scaled):
                return Verdict(True, case=case.label)
        return super().judge(case, output)


def judge_greedy(case, output, reference_forward) -> Verdict:
    """The student's greedy tokens against the reference's. Where the reference's two best logits
    are closer than NEAR_TIE, either pick is right: the comparison stops there."""
    ids, expected, margins = case.args[0], [], []
    for _ in range(int(case.drive.partition(":")[2])):
        logits = reference_forward(ids)[0, -1]                            # (V,)
        top2 = logits.topk(2).values
        expected.append(int(logits.argmax()))
        margins.append(float(top2[0] - top2[1]))
        ids = torch.cat([ids, torch.tensor([[expected[-1]]], dtype=ids.dtype, device=ids.device)], dim=1)
    if not (isinstance(output, list) and len(output) == len(expected) and all(type(t) is int for t in output)):
        return Verdict(False, "wrong_type", {"expected": f"list of {len(expected)} ints", "got": _describe(output)},
                       case.label)
    for position, (mine, theirs, margin) in enumerate(zip(output, expected, margins)):
        if margin < NEAR_TIE:
            break
        if mine != theirs:
            return Verdict(False, "mistake_forward_greedy", {"position": position + 1, "got": mine,
                                                             "expected": theirs}, case.label)
    return Verdict(True, "ok", {}, case.label)


def _describe(value) -> str:
    return type(value).__name__ if not isinstance(value, list) else f"list of {len(value)}"
