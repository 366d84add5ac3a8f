"""Checks for notebook 3: the FFN (ReLU, GELU, SwiGLU), RMSNorm, the pre-norm block, the full forward pass.

Fixed inputs come from the trained reference model: the weights of its layers
and the real residual stream of a Korean and an English sentence flowing
through it. Hidden cases draw random shapes, values and (for the block and
the forward pass) whole random model configurations from a seed chosen at
grading time, so only a general implementation passes.

The student's functions receive weights as a plain dict of tensors named as
in the reference `Transformer.state_dict()` ("blocks.0.attn.W_q", ...; a
block sees the names of one layer without the "blocks.i." prefix) and the
configuration as a plain dict (`ModelConfig.to_dict()`).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from autograde.checks.core import Case, Check, Verdict, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
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
        "ko": "erf로 계산한 정확한 GELU입니다. 이 강의는 GPT-2처럼 tanh 근사 "
              "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))를 씁니다"},
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
        "ko": "RMSNorm에서 평균을 뺐습니다: 그것은 층 정규화입니다. RMSNorm은 평균을 빼지 않고 x를 그대로 제곱평균제곱근으로 나눕니다"},
    "mistake_rmsnorm_no_weight": {
        "en": "the learned gain `weight` was not applied: multiply the normalized vector by it",
        "ko": "학습된 이득 `weight`를 곱하지 않았습니다: 정규화한 벡터에 곱하세요"},
    "mistake_block_post_norm": {
        "en": "this is a post-norm block, Norm(x + Sublayer(x)); the reference is pre-norm: "
              "x + Attn(Norm(x)), then x + FFN(Norm(x))",
        "ko": "포스트놈 블록 Norm(x + Sublayer(x))입니다. 참고 모델은 프리놈입니다: "
              "x + Attn(Norm(x)), 이어서 x + FFN(Norm(x))"},
    "mistake_block_no_residual": {
        "en": "a residual connection is missing: add each sublayer's output to x (x = x + ...) instead of replacing x",
        "ko": "잔차 연결이 빠졌습니다: 부층의 출력으로 x를 바꾸지 말고 x에 더하세요 (x = x + ...)"},
    "mistake_block_parallel": {
        "en": "the FFN read the block's input: its norm must be taken of x after the attention was added",
        "ko": "FFN이 블록의 입력을 읽었습니다: FFN 앞의 정규화는 어텐션 출력을 더한 뒤의 x에 적용해야 합니다"},
    "mistake_block_norms_swapped": {
        "en": "the two norms are swapped: norm1.weight goes before the attention, norm2.weight before the FFN",
        "ko": "두 정규화가 뒤바뀌었습니다: norm1.weight는 어텐션 앞, norm2.weight는 FFN 앞에 씁니다"},
    "mistake_forward_no_final_norm": {
        "en": "the final RMSNorm (norm_f.weight) before the unembedding is missing",
        "ko": "언임베딩 직전의 최종 RMSNorm(norm_f.weight)이 빠졌습니다"},
    "mistake_forward_no_rope": {
        "en": "the positions are missing: build the RoPE cos/sin tables for positions 0..T-1 and pass them to every block",
        "ko": "위치 정보가 빠졌습니다: 0..T-1 위치의 RoPE cos/sin 표를 만들어 모든 블록에 넘기세요"},
    "mistake_forward_probabilities": {
        "en": "these are probabilities, not logits: return x @ W_E^T without a softmax",
        "ko": "로짓이 아니라 확률입니다: 소프트맥스 없이 x @ W_E^T를 돌려주세요"},
})


def _pick(g: torch.Generator, options):
    return options[int(torch.randint(len(options), (1,), generator=g))]


class VariantCheck(Check):
    """A check whose mutants may be a list of callables for one mistake (b_1 or b_2 dropped, ...);
    Check.diagnose tries every variant."""


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


# ----------------------------------------------------------------------------
# 1. ReLU FFN


def _relu_ffn(x, W_1, b_1, W_2, b_2, *, use_b1=True, use_b2=True, b1_after=False, relu_out=False):
    pre = x @ W_1                                                   # (..., F)
    if use_b1 and not b1_after:
        pre = pre + b_1
    hidden = torch.relu(pre)
    if use_b1 and b1_after:
        hidden = hidden + b_1
    out = hidden @ W_2                                              # (..., C)
    if use_b2:
        out = out + b_2
    return torch.relu(out) if relu_out else out


@register
class ReluFFN(VariantCheck):
    step, function, points = "ffn.relu_ffn", "relu_ffn", 1
    mutants = {
        "mistake_ffn_no_bias": lambda *a: _relu_ffn(*a, use_b1=False, use_b2=False),
        "mistake_ffn_no_bias_1": lambda *a: _relu_ffn(*a, use_b1=False),
        "mistake_ffn_no_bias_2": lambda *a: _relu_ffn(*a, use_b2=False),
        "mistake_ffn_bias_after_relu": lambda *a: _relu_ffn(*a, b1_after=True),
        "mistake_ffn_relu_output": lambda *a: _relu_ffn(*a, relu_out=True),
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            B, T, C, Fd = (int(s) for s in torch.randint(1, 9, (4,), generator=g))
            C, Fd = 4 * C, 4 * Fd
            x = torch.randn(B, T, C, generator=g)
            W_1, W_2 = torch.randn(C, Fd, generator=g) / math.sqrt(C), torch.randn(Fd, C, generator=g) / math.sqrt(Fd)
            b_1, b_2 = torch.randn(Fd, generator=g) * 0.5, torch.randn(C, generator=g) * 0.5
            return [Case(f"random x {tuple(x.shape)}, d_ff={Fd}", (x, W_1, b_1, W_2, b_2)),
                    Case("one token vector (C,)", (x[0, 0].clone(), W_1, b_1, W_2, b_2))]
        # The reference model is a SwiGLU model without biases: its layer-0 gate and down
        # matrices serve as W_1 and W_2, with small fixed biases.
        w = layer_weights(model_weights(), 0)
        W_1, W_2 = w["ffn.W_gate"], w["ffn.W_down"]
        b_1 = torch.randn(W_1.shape[1], generator=g) * 0.1
        b_2 = torch.randn(W_2.shape[1], generator=g) * 0.1
        return [Case(f"{SENTENCES[i]}, layer-0 matrices as W_1, W_2", (ffn_input(i, 0), W_1, b_1, W_2, b_2))
                for i in range(len(SENTENCES))]

    def reference(self, x, W_1, b_1, W_2, b_2):
        return _relu_ffn(x, W_1, b_1, W_2, b_2)


# ----------------------------------------------------------------------------
# 2. GELU and SwiGLU


def _gelu(x, *, half=True, cubic=True):
    inner = math.sqrt(2.0 / math.pi) * (x + (0.044715 * x ** 3 if cubic else 0.0))
    return (0.5 if half else 1.0) * x * (1.0 + torch.tanh(inner))


@register
class Gelu(Check):
    step, function, points = "ffn.gelu", "gelu", 1
    forbidden = ("torch.nn.functional.gelu", "torch.nn.GELU", "autograde.reference.model.gelu")
    mutants = {
        "mistake_gelu_erf": lambda x: F.gelu(x),
        "mistake_gelu_half": lambda x: _gelu(x, half=False),
        "mistake_gelu_cubic": lambda x: _gelu(x, cubic=False),
    }

    def cases(self, seed, hidden):
        g = gen(seed)
        if hidden:
            shape = tuple(int(s) for s in torch.randint(2, 9, (3,), generator=g))
            return [Case(f"random {shape}", (torch.randn(shape, generator=g) * 3,)),
                    Case("random values in [-5, 5]", (torch.rand(64, generator=g) * 10 - 5,))]
        w = layer_weights(model_weights(), 0)
        return [Case("z from -5 to 5", (torch.linspace(-5.0, 5.0, 41),)),
                Case(f"{SENTENCES[0]}, x W_gate of layer 0", (ffn_input(0, 0) @ w["ffn.W_gate"],))]

    def reference(self, x):
        return ref.gelu(x)


def _swiglu(x, W_gate, W_up, W_down, *, variant="ok"):
    gate, up = x @ W_gate, x @ W_up                                 # (..., F) each
    if variant == "swapped":
        gate, up = up, gate
    act = {"ok": F.silu, "swapped": F.silu, "sigmoid": torch.sigmoid, "none": lambda z: z}[variant]
    return (act(gate) * up) @ W_down                                # (..., C)


@register
class SwiGLU(Check):
    step, function, points = "ffn.swiglu", "swiglu_ffn", 1
    mutants = {
        "mistake_swiglu_swapped": lambda *a: _swiglu(*a, variant="swapped"),
        "mistake_swiglu_sigmoid": lambda *a: _swiglu(*a, variant="sigmoid"),
        "mistake_swiglu_no_activation": lambda *a: _swiglu(*a, variant="none"),
    }

    def cases(self, seed, hidden):
        weights = model_weights()
        if hidden:
            g = gen(seed)
            B, T, C, Fd = (int(s) for s in torch.randint(1, 9, (4,), generator=g))
            C, Fd = 4 * C, 4 * Fd
            x = torch.randn(B, T, C, generator=g)
            mats = (torch.randn(C, Fd, generator=g) / math.sqrt(C), torch.randn(C, Fd, generator=g) / math.sqrt(C),
                    torch.randn(Fd, C, generator=g) / math.sqrt(Fd))
            layer = int(torch.randint(reference_model().cfg.n_layer, (1,), generator=g))
            w = layer_weights(weights, layer)
            t = int(torch.randint(2, 20, (1,), generator=g))
            x_real = torch.randn(2, t, w["ffn.W_gate"].shape[0], generator=g)
            return [Case(f"random x {tuple(x.shape)}, d_ff={Fd}", (x, *mats)),
                    Case(f"random x, layer-{layer} weights", (x_real, w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"]))]
        cases = []
        for layer in (0, reference_model().cfg.n_layer - 1):
            w = layer_weights(weights, layer)
            for i, text in enumerate(SENTENCES):
                cases.append(Case(f"{text}, FFN of layer {layer}",
                                  (ffn_input(i, layer), w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])))
        return cases

    def reference(self, x, W_gate, W_up, W_down):
        return _swiglu(x, W_gate, W_up, W_down)


# ----------------------------------------------------------------------------
# 3. RMSNorm


def _rms_norm(x, weight, eps, *, use_eps=True, eps_outside=False, center=False, use_weight=True):
    if center:
        x = x - x.mean(-1, keepdim=True)
    mean_sq = x.pow(2).mean(-1, keepdim=True)                       # (..., 1)
    if eps_outside:
        rms = mean_sq.sqrt() + eps
    else:
        rms = torch.sqrt(mean_sq + eps) if use_eps else mean_sq.sqrt()
    out = x / rms
    return out * weight if use_weight else out


def _with_tiny_rows(x: torch.Tensor) -> torch.Tensor:
    """x (..., C) flattened to rows, plus a row scaled down by 1e-4 and a row of zeros. (N + 2, C)"""
    rows = x.reshape(-1, x.shape[-1])
    return torch.cat([rows, rows[:1] * 1e-4, torch.zeros_like(rows[:1])])


@register
class RMSNorm(Check):
    step, function, points = "ffn.rms_norm", "rms_norm", 1
    forbidden = ("torch.nn.functional.rms_norm", "torch.rms_norm", "torch.nn.RMSNorm",
                 "autograde.reference.model.RMSNorm.forward")
    mutants = {
        "mistake_rmsnorm_no_eps": lambda x, w, eps: _rms_norm(x, w, eps, use_eps=False),
        "mistake_rmsnorm_mean": lambda x, w, eps: _rms_norm(x, w, eps, center=True),
        "mistake_rmsnorm_eps_outside": lambda x, w, eps: _rms_norm(x, w, eps, eps_outside=True),
        "mistake_rmsnorm_no_weight": lambda x, w, eps: _rms_norm(x, w, eps, use_weight=False),
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
            return [Case(f"random {tuple(x.shape)}, eps={eps:g}", (x, weight, eps)),
                    Case(f"rows with a zero row, eps={eps:g}", (_with_tiny_rows(x[1]), weight, eps))]
        model, cfg = reference_model(), model_config()
        stream_ko, stream_en = residual_stream(0)["block_in"], residual_stream(1)["block_in"]
        norm1_2 = model.blocks[2].norm1.weight.detach().clone()
        norm_f = model.norm_f.weight.detach().clone()
        return [
            Case(f"{SENTENCES[0]}, stream before block 2, its norm1", (stream_ko[2].clone(), norm1_2, cfg["norm_eps"])),
            Case(f"{SENTENCES[1]}, stream after the last block, norm_f", (stream_en[-1].clone(), norm_f, cfg["norm_eps"])),
            Case("real rows + a row scaled by 1e-4 + a zero row", (_with_tiny_rows(stream_ko[1][0]), norm1_2, 1e-6)),
            Case("the same rows with eps=1e-5", (_with_tiny_rows(stream_ko[1][0]), norm1_2, 1e-5)),
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
    k, v = k.repeat_interleave(n_head // n_kv, dim=1), v.repeat_interleave(n_head // n_kv, dim=1)
    T = x.shape[1]
    out = ref.scaled_dot_product_attention(q, k, v, ref.causal_mask(T, T, x.device))
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
    x = x + attn(_rms_norm(x, n1, eps))                             # (B, T, C)
    return x + ffn(_rms_norm(x, n2, eps))                           # (B, T, C)


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
class Block(VariantCheck):
    """The reference model's Block on the real residual stream."""
    step, function, points = "ffn.block", "transformer_block", 2
    forbidden = ("autograde.reference.model.Block.forward",)
    mutants = {
        "mistake_block_post_norm": lambda *a: _block(*a, variant="post"),
        "mistake_block_no_residual": [lambda *a, v=v: _block(*a, variant=v)
                                      for v in ("no_residual", "no_residual_attn", "no_residual_ffn")],
        "mistake_block_parallel": lambda *a: _block(*a, variant="parallel"),
        "mistake_block_norms_swapped": lambda *a: _block(*a, variant="swapped"),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            cfg = model_config()
            layer = int(torch.randint(cfg["n_layer"], (1,), generator=g))
            T = int(torch.randint(2, 24, (1,), generator=g))
            x = torch.randn(2, T, cfg["d_model"], generator=g) * 2
            head_dim = cfg["d_model"] // cfg["n_head"]
            small = random_config(g)
            T2 = int(torch.randint(2, 16, (1,), generator=g))
            x2 = torch.randn(3, T2, small["d_model"], generator=g)
            return [Case(f"random x {tuple(x.shape)}, weights of layer {layer}",
                         (x, layer_weights(model_weights(), layer), cfg,
                          *rope_tables(T, head_dim, cfg["rope_theta"]))),
                    Case(f"random model n_head={small['n_head']}, n_kv_head={small['n_kv_head']}, "
                         f"d_model={small['d_model']}",
                         (x2, layer_weights(random_weights(small, g), 0), small,
                          *rope_tables(T2, small["d_model"] // small["n_head"], small["rope_theta"])))]
        cfg, weights = model_config(), model_weights()
        head_dim = cfg["d_model"] // cfg["n_head"]
        cases = []
        for i, text in enumerate(SENTENCES):
            for layer in (0, 2):
                x = residual_stream(i)["block_in"][layer].clone()
                cases.append(Case(f"{text}, block {layer}",
                                  (x, layer_weights(weights, layer), cfg,
                                   *rope_tables(x.shape[1], head_dim, cfg["rope_theta"]))))
        return cases

    def reference(self, x, weights, cfg, cos, sin):
        """The reference model's own Block, loaded with these weights."""
        block = ref.Block(ref.ModelConfig.from_dict(cfg)).to(x.device)
        block.load_state_dict(weights)
        T = x.shape[1]
        with torch.no_grad():
            return block(x, ref.causal_mask(T, T, x.device)[None, None], (cos[:, 0], sin[:, 0]))


# ----------------------------------------------------------------------------
# 5. the whole forward pass


def _forward(ids, weights, cfg, *, final_norm=True, rope=True, probabilities=False):
    T = ids.shape[1]
    head_dim = cfg["d_model"] // cfg["n_head"]
    x = weights["tok_emb"][ids]                                     # (B, T, C)
    if rope:
        cos, sin = rope_tables(T, head_dim, cfg["rope_theta"], ids.device)
    else:
        cos = torch.ones(1, 1, T, head_dim, device=ids.device)
        sin = torch.zeros(1, 1, T, head_dim, device=ids.device)
    for layer in range(cfg["n_layer"]):
        x = _block(x, layer_weights(weights, layer), cfg, cos, sin)
    if final_norm:
        x = _rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])
    logits = x @ weights["tok_emb"].T                               # (B, T, V)
    return logits.softmax(-1) if probabilities else logits


@register
class Forward(VariantCheck):
    """Logits of the student's stack against the reference Transformer."""
    step, function, points = "ffn.forward", "forward", 2
    forbidden = ("autograde.reference.model.Transformer.forward", "autograde.reference.model.Block.forward")
    mutants = {
        "mistake_forward_no_final_norm": lambda *a: _forward(*a, final_norm=False),
        "mistake_forward_no_rope": lambda *a: _forward(*a, rope=False),
        "mistake_forward_probabilities": lambda *a: _forward(*a, probabilities=True),
    }

    def cases(self, seed, hidden):
        cfg = model_config()
        if hidden:
            g = gen(seed)
            T = int(torch.randint(2, 30, (1,), generator=g))
            ids = torch.randint(cfg["vocab_size"], (2, T), generator=g)
            small = random_config(g)
            ids2 = torch.randint(small["vocab_size"], (3, int(torch.randint(2, 16, (1,), generator=g))), generator=g)
            prompt = ids[:1, :int(torch.randint(2, 8, (1,), generator=g))]
            return [Case(f"random ids {tuple(ids.shape)}, reference weights", (ids, model_weights(), cfg)),
                    Case(f"random model with {small['n_layer']} layer(s), d_model={small['d_model']}",
                         (ids2, random_weights(small, g), small)),
                    Case(f"greedy generation, {GREEDY_TOKENS} tokens after random ids {tuple(prompt.shape)}",
                         (prompt, model_weights(), cfg), drive=f"greedy:{GREEDY_TOKENS}")]
        cases = [Case(text, (sentence_ids(i), model_weights(), cfg)) for i, text in enumerate(SENTENCES)]
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
        if case.drive is None:
            return super().judge(case, output)
        return judge_greedy(case, output, lambda ids: self.reference(ids, *case.args[1:]))


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
