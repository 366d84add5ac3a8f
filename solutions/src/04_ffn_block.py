# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 4: the feed-forward network and the transformer block
#
# [Open in Colab]({{colab_url}}) · companion of chapter 4, *FFN, the residual stream and normalization*
#
# Notebook 3 built the sublayer that moves information between tokens. Here you
# build everything else a block needs, stack the blocks, and end up with the
# whole model:
#
# 1. the original feed-forward network with a ReLU;
# 2. GELU, the smooth activation of GPT-2;
# 3. SwiGLU, the gated FFN that the reference model actually uses;
# 4. RMSNorm;
# 5. the pre-norm transformer block;
# 6. the full forward pass from token ids to logits, compared with the
#    reference model on a Korean and an English sentence.
#
# Then your own forward pass predicts the next token of a Korean prompt, and a
# plot shows how the residual stream grows from one block to the next.
#
# The reference model hands you its weights as a plain dictionary of tensors.
# Every matrix is stored `(in, out)`, so it multiplies from the right: `x @ W`.
# Shapes are written in comments: `B` batch, `T` tokens, `C` model width,
# `F` FFN width, `V` vocabulary size.

# %% [markdown] lang="ko"
# # 노트북 4: 피드포워드 신경망과 트랜스포머 블록
#
# [Colab에서 열기]({{colab_url}}) · 4장 *FFN, 잔차 스트림, 정규화*와 함께 보는 노트북
#
# 노트북 3에서는 토큰 사이로 정보를 옮기는 하위 층을 만들었습니다. 이번에는 블록에
# 필요한 나머지 부품을 모두 만들고, 블록을 쌓아 모델 전체를 완성합니다.
#
# 1. ReLU를 쓰는 원래의 피드포워드 신경망
# 2. GPT-2가 쓰는 매끄러운 활성화 함수 GELU
# 3. 참고 모델이 실제로 쓰는 게이트형 FFN, SwiGLU
# 4. RMSNorm
# 5. 사전 정규화 트랜스포머 블록
# 6. 토큰 id에서 로짓까지 이어지는 순전파 전체. 한국어 문장과 영어 문장으로 참고
#    모델과 비교합니다.
#
# 다 만들고 나면 여러분의 순전파로 한국어 프롬프트의 다음 토큰을 예측해 보고,
# 블록을 하나씩 지날 때마다 잔차 스트림이 얼마나 커지는지 그림으로 확인합니다.
#
# 참고 모델의 가중치는 텐서를 담은 평범한 딕셔너리로 주어집니다. 행렬은 모두
# `(입력, 출력)` 모양으로 저장되어 있어서 오른쪽에서 곱합니다: `x @ W`. 텐서 모양은
# 주석에 적었습니다. `B`는 배치, `T`는 토큰 수, `C`는 모델 폭, `F`는 FFN 폭,
# `V`는 어휘 집합 크기입니다.

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import math
import torch
import torch.nn.functional as F
from autograde.notebook import setup, check, load_piece
device = setup(COURSE_LANG)

# %% [markdown] lang="en"
# ## 0. The reference model as a dictionary of tensors
#
# Every weight of the trained model has a name. `tok_emb` is the embedding
# table $W_E$ of shape `(V, C)`, the names of block $i$ start with `blocks.i.`,
# and `norm_f.weight` is the gain of the last normalization. The configuration
# is a plain dictionary as well. Look at the names and shapes of block 0: the
# FFN has three matrices and no biases, and there are two norms per block.

# %% [markdown] lang="ko"
# ## 0. 텐서 딕셔너리로 본 참고 모델
#
# 학습된 모델의 가중치에는 모두 이름이 있습니다. `tok_emb`는 `(V, C)` 모양의 임베딩
# 표 $W_E$이고, $i$번 블록의 가중치는 이름이 `blocks.i.`로 시작하며, `norm_f.weight`는
# 마지막 정규화의 배율입니다. 설정도 평범한 딕셔너리입니다. 0번 블록의 이름과 모양을
# 살펴보세요. FFN에는 행렬이 세 개 있고 편향은 없으며, 블록마다 정규화가 두 번
# 들어갑니다.

# %% kind="setup" id="reference_weights"
from autograde.reference.checkpoint import load_reference
from autograde.reference.model import rope_cos_sin

reference = load_reference()
weights = {name: w.detach() for name, w in reference.model.state_dict().items()}
cfg = reference.model.cfg.to_dict()
print({k: v for k, v in cfg.items() if k != "extra"})
for name, w in weights.items():
    if not name.startswith("blocks.") or name.startswith("blocks.0."):
        print(f"{name:24s} {tuple(w.shape)}")

# %% [markdown] lang="en"
# ## 1. The feed-forward network
#
# The FFN works on each token vector on its own. $W_1$ `(C, F)` lifts the
# vector into a wider space, the ReLU sets every negative coordinate to zero,
# and $W_2$ `(F, C)` brings it back to the model width:
#
# $$
# \mathrm{FFN}(x) = \max(0,\; x W_1 + b_1)\, W_2 + b_2
# $$
#
# The biases are vectors: $b_1$ has shape `(F,)`, $b_2$ shape `(C,)`. Your
# function must work for any number of leading axes, `(C,)` as well as
# `(B, T, C)`. The reference model itself is a SwiGLU model, so the check
# borrows two of its layer-0 matrices as $W_1$ and $W_2$ and adds small biases.

# %% [markdown] lang="ko"
# ## 1. 피드포워드 신경망
#
# FFN은 토큰 벡터 하나하나에 따로 작용합니다. `(C, F)` 모양의 $W_1$이 벡터를 더 넓은
# 공간으로 올리고, ReLU가 음수 좌표를 모두 0으로 만든 다음, `(F, C)` 모양의 $W_2$가
# 모델 폭으로 되돌립니다.
#
# $$
# \mathrm{FFN}(x) = \max(0,\; x W_1 + b_1)\, W_2 + b_2
# $$
#
# 편향은 벡터로, $b_1$은 `(F,)`, $b_2$는 `(C,)` 모양입니다. 앞쪽 축이 몇 개든
# 동작해야 하므로 `(C,)`에도 `(B, T, C)`에도 쓸 수 있게 작성하세요. 참고 모델은
# SwiGLU 모델이라 ReLU FFN이 없습니다. 그래서 검사에서는 0번 층의 행렬 두 개를
# $W_1$, $W_2$로 빌려 오고 작은 편향을 붙여 씁니다.

# %% kind="solution" id="relu_ffn"
def relu_ffn(x, W_1, b_1, W_2, b_2):
    """x: (..., C) float; weights (in, out), used as x @ W: W_1 (C, F), b_1 (F,), W_2 (F, C), b_2 (C,)
    -> (..., C), same dtype as x"""
    ### BEGIN SOLUTION
    hidden = torch.relu(x @ W_1 + b_1)      # (..., F), one score per stored pattern
    return hidden @ W_2 + b_2               # (..., C)
    ### END SOLUTION

# %% kind="test" id="check_relu_ffn"


# %% [markdown] lang="en"
# ## 2. GELU
#
# GELU multiplies its input by the probability that a standard normal variable
# is smaller, $z\,\Phi(z)$. GPT-2, and `gelu` in the reference code, compute
# $\Phi$ with a $\tanh$ approximation; write exactly this formula:
#
# $$
# \mathrm{GELU}(z) \approx \tfrac{1}{2}\, z \left(1 + \tanh\!\left(\sqrt{2/\pi}\,\big(z + 0.044715\, z^3\big)\right)\right)
# $$
#
# `F.gelu` is not allowed here. Its default is the exact version with `erf`,
# which differs from the approximation by up to about $5 \cdot 10^{-4}$, enough
# for the check to notice.

# %% [markdown] lang="ko"
# ## 2. GELU
#
# GELU는 입력 $z$에 표준정규분포를 따르는 변수가 $z$보다 작을 확률을 곱한 값,
# $z\,\Phi(z)$입니다. GPT-2와 참고 구현의 `gelu`는 $\Phi$를 $\tanh$로 근사해서
# 계산합니다. 아래 식을 그대로 옮겨 보세요.
#
# $$
# \mathrm{GELU}(z) \approx \tfrac{1}{2}\, z \left(1 + \tanh\!\left(\sqrt{2/\pi}\,\big(z + 0.044715\, z^3\big)\right)\right)
# $$
#
# 이 단계에서는 `F.gelu`를 쓸 수 없습니다. `F.gelu`는 기본값으로 `erf`를 쓰는 정확한
# 식을 계산하는데, 근사식과의 차이가 최대 $5 \cdot 10^{-4}$쯤 되어 검사에서 걸립니다.

# %% kind="solution" id="gelu"
def gelu(z: torch.Tensor) -> torch.Tensor:
    """z: float tensor of any shape -> same shape and dtype (the tanh approximation)"""
    ### BEGIN SOLUTION
    inner = math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)
    return 0.5 * z * (1.0 + torch.tanh(inner))
    ### END SOLUTION

# %% kind="test" id="check_gelu"


# %% [markdown] lang="en"
# Three activations side by side. ReLU has a hard corner at 0 and is exactly 0
# for every negative input. GELU and SiLU bend smoothly and dip a little below
# zero before they flatten out, so a slightly negative input still has a
# gradient.

# %% [markdown] lang="ko"
# 세 활성화 함수를 나란히 그려 봅니다. ReLU는 0에서 날카롭게 꺾이고 음수 입력에서는
# 정확히 0입니다. GELU와 SiLU는 매끄럽게 휘어지며, 평평해지기 전에 0보다 살짝 아래로
# 내려갑니다. 그래서 약간 음수인 입력에도 기울기가 남습니다.

# %%
from autograde.figures import _pyplot, token_label

plt = _pyplot()                                   # matplotlib with a Hangul font
TEXT = {"en": {"activation": "activation", "input": "input z", "stage": "where in the model",
               "embedding": "embedding", "block": "after block {i}", "norm": "length of the token vector ‖x‖",
               "mean": "mean over tokens", "attention": "attention", "share": "FFN share of the block",
               "probability": "probability", "next": "next token after “{p}”"},
        "ko": {"activation": "활성화 값", "input": "입력 z", "stage": "모델 안의 위치",
               "embedding": "임베딩", "block": "{i}번 블록 뒤", "norm": "토큰 벡터의 길이 ‖x‖",
               "mean": "토큰 평균", "attention": "어텐션", "share": "블록에서 FFN의 비중",
               "probability": "확률", "next": "“{p}” 다음 토큰"}}[COURSE_LANG]

z = torch.linspace(-4, 3, 281)
curves = {"ReLU": torch.relu(z), "GELU (tanh)": gelu(z)}
fig, ax = plt.subplots(figsize=(6.5, 4))
for name, values in curves.items():
    ax.plot(z, values, label=name, lw=2)
ax.plot(z, F.silu(z), label="SiLU = z·σ(z)", lw=2, ls="--")
ax.axhline(0, color="gray", lw=0.5)
ax.axvline(0, color="gray", lw=0.5)
ax.set_xlabel(TEXT["input"])
ax.set_ylabel(TEXT["activation"])
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 3. SwiGLU
#
# The reference model, like Llama, uses a gated FFN. Two matrices read the
# input side by side; the gate branch goes through SiLU, multiplies the up
# branch element by element, and a third matrix brings the result back to
# width $C$. There are no biases:
#
# $$
# \mathrm{SwiGLU}(x) = \big(\mathrm{SiLU}(x W_{\text{gate}}) \odot x W_{\text{up}}\big)\, W_{\text{down}}, \qquad \mathrm{SiLU}(z) = z\,\sigma(z)
# $$
#
# $W_{\text{gate}}$ and $W_{\text{up}}$ are `(C, F)`, $W_{\text{down}}$ is `(F, C)`.
# You may use `F.silu` or write $z\,\sigma(z)$ yourself. The check feeds the
# real FFN weights of layers 0 and 3 with the vectors these layers really read
# when the model processes a sentence.

# %% [markdown] lang="ko"
# ## 3. SwiGLU
#
# 참고 모델은 Llama처럼 게이트가 달린 FFN을 씁니다. 행렬 두 개가 입력을 나란히
# 읽고, 게이트 갈래는 SiLU를 거친 뒤 up 갈래와 원소별로 곱해지며, 세 번째 행렬이
# 결과를 폭 $C$로 되돌립니다. 편향은 없습니다.
#
# $$
# \mathrm{SwiGLU}(x) = \big(\mathrm{SiLU}(x W_{\text{gate}}) \odot x W_{\text{up}}\big)\, W_{\text{down}}, \qquad \mathrm{SiLU}(z) = z\,\sigma(z)
# $$
#
# $W_{\text{gate}}$와 $W_{\text{up}}$은 `(C, F)`, $W_{\text{down}}$은 `(F, C)`
# 모양입니다. `F.silu`를 써도 되고 $z\,\sigma(z)$를 직접 써도 됩니다. 검사에는 0번과
# 3번 층의 실제 FFN 가중치와, 모델이 문장을 처리할 때 그 층이 실제로 읽는 벡터가
# 들어갑니다.

# %% kind="solution" id="swiglu"
def swiglu_ffn(x, W_gate, W_up, W_down):
    """x: (..., C) float; weights (in, out), used as x @ W: W_gate and W_up (C, F), W_down (F, C)
    -> (..., C), same dtype as x"""
    ### BEGIN SOLUTION
    gate = F.silu(x @ W_gate)               # (..., F), how strongly each unit opens
    up = x @ W_up                           # (..., F), what each unit passes on
    return (gate * up) @ W_down             # (..., C)
    ### END SOLUTION

# %% kind="test" id="check_swiglu"


# %% [markdown] lang="en"
# Where do the parameters of one block live? Count them in the reference model:
# the three FFN matrices against the four attention matrices (grouped-query
# attention makes $W_K$ and $W_V$ narrower than $W_Q$).

# %% [markdown] lang="ko"
# 블록 하나의 파라미터는 어디에 몰려 있을까요? 참고 모델에서 FFN 행렬 세 개와 어텐션
# 행렬 네 개의 원소 수를 세어 봅니다. 그룹 쿼리 어텐션 때문에 $W_K$와 $W_V$는
# $W_Q$보다 폭이 좁습니다.

# %%
block0 = {name: w for name, w in weights.items() if name.startswith("blocks.0.")}
ffn_params = sum(w.numel() for name, w in block0.items() if ".ffn." in name)
attn_params = sum(w.numel() for name, w in block0.items() if ".attn." in name)
print(f"FFN        {ffn_params:7,d}")
print(f"{TEXT['attention']:10s} {attn_params:7,d}")
print(f"{TEXT['share']}: {ffn_params / (ffn_params + attn_params):.0%}")

# %% [markdown] lang="en"
# ## 4. RMSNorm
#
# Before each sublayer reads the residual stream, RMSNorm rescales every token
# vector to a standard size. It divides by the root mean square of the
# coordinates, without subtracting their mean, and multiplies by a learned
# gain $g$ (`weight`, shape `(C,)`):
#
# $$
# \mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\frac{1}{d}\sum_{i=1}^{d} x_i^2 + \varepsilon}} \odot g
# $$
#
# $\varepsilon$ goes **inside** the square root. It is what keeps a vector of
# zeros, or one very close to zero, from turning into NaN or huge numbers; the
# check includes such a vector. `F.rms_norm` is not allowed.

# %% [markdown] lang="ko"
# ## 4. RMSNorm
#
# 하위 층이 잔차 스트림을 읽기 전에, RMSNorm이 토큰 벡터마다 크기를 표준으로 맞춥니다.
# 평균은 빼지 않고 좌표들의 제곱평균제곱근으로 나눈 다음, 학습된 배율 $g$(`weight`,
# `(C,)` 모양)를 곱합니다.
#
# $$
# \mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\frac{1}{d}\sum_{i=1}^{d} x_i^2 + \varepsilon}} \odot g
# $$
#
# $\varepsilon$은 제곱근 **안에** 더합니다. 모든 좌표가 0이거나 0에 아주 가까운
# 벡터가 NaN이나 엄청나게 큰 수로 바뀌지 않게 막아 주는 것이 바로 이 값이고, 검사에도
# 그런 벡터가 들어 있습니다. `F.rms_norm`은 쓸 수 없습니다.

# %% kind="solution" id="rms_norm"
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: (..., C) float, weight: (C,) float (the learned gain), eps: float -> (..., C), same dtype as x"""
    ### BEGIN SOLUTION
    mean_square = x.pow(2).mean(dim=-1, keepdim=True)    # (..., 1)
    return x / torch.sqrt(mean_square + eps) * weight    # (..., C)
    ### END SOLUTION

# %% kind="test" id="check_rms_norm"


# %% [markdown] lang="en"
# The example of the chapter, $x = (1, 2, 3, 6)$, keeps its direction and gets
# length $\sqrt{4} = 2$. A vector of size $10^{-5}$ shows what $\varepsilon$ does:
# without it the tiny vector is blown up to the same length as any other, with
# it the output stays small.

# %% [markdown] lang="ko"
# 4장의 예 $x = (1, 2, 3, 6)$은 방향은 그대로이고 길이만 $\sqrt{4} = 2$가 됩니다.
# 크기가 $10^{-5}$인 벡터를 넣어 보면 $\varepsilon$이 하는 일이 보입니다. $\varepsilon$이
# 없으면 아주 작은 벡터도 다른 벡터와 같은 길이로 부풀려지고, 있으면 출력도 작게
# 남습니다.

# %%
ones = torch.ones(4)
x = torch.tensor([1.0, 2.0, 3.0, 6.0])
print("RMSNorm(1, 2, 3, 6)      =", rms_norm(x, ones, 1e-6), " length", float(rms_norm(x, ones, 1e-6).norm()))
tiny = x * 1e-5
print("tiny vector, eps = 1e-6  =", rms_norm(tiny, ones, 1e-6))
print("tiny vector, eps = 0     =", rms_norm(tiny, ones, 0.0))

# %% [markdown] lang="en"
# ## 5. The pre-norm block
#
# A block never replaces the token vector. Each sublayer reads a normalized
# copy of the residual stream and adds its output back:
#
# $$
# \begin{aligned}
# x &\leftarrow x + \mathrm{Attn}(\mathrm{RMSNorm}_1(x)) \\
# x &\leftarrow x + \mathrm{FFN}(\mathrm{RMSNorm}_2(x))
# \end{aligned}
# $$
#
# The attention is notebook 3's `multi_head_attention`. The first cell below
# builds it from the reference pieces (the grader always uses this version, so
# that the block is judged on its own); in the cell after it, set
# `USE_MY_ATTENTION = True` to use your own from notebook 3 instead (it is
# taken from `my_llm/` if it is there and still passes its check).
# `layer_weights` cuts the tensors of one block out of the big dictionary.

# %% [markdown] lang="ko"
# ## 5. 사전 정규화 블록
#
# 블록은 토큰 벡터를 갈아 치우지 않습니다. 하위 층마다 잔차 스트림을 정규화한 사본을
# 읽고, 자기 출력을 스트림에 더할 뿐입니다.
#
# $$
# \begin{aligned}
# x &\leftarrow x + \mathrm{Attn}(\mathrm{RMSNorm}_1(x)) \\
# x &\leftarrow x + \mathrm{FFN}(\mathrm{RMSNorm}_2(x))
# \end{aligned}
# $$
#
# 어텐션은 노트북 3의 `multi_head_attention`입니다. 아래 첫 셀은 참고 구현의 부품으로
# 이것을 만듭니다. 채점기는 블록만 따로 평가하려고 늘 이 버전을 씁니다. 노트북 3에서
# 직접 만든 함수를 쓰고 싶다면 그다음 셀에서 `USE_MY_ATTENTION = True`로 바꾸세요.
# `my_llm/`에 저장되어 있고 지금도 검사를 통과하면 그 함수를 가져옵니다.
# `layer_weights`는 큰 딕셔너리에서 블록 하나의 텐서만 잘라 냅니다.

# %% kind="setup" id="attention_and_layers"
from autograde.reference import model as ref


def reference_multi_head_attention(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):
    """Notebook 3's multi_head_attention from the reference pieces. x: (B, T, C) -> (B, T, C)"""
    def rope(t):                                                 # cos, sin: (1, 1, T, D)
        return t * cos + ref.rotate_half(t) * sin
    q = rope(ref.split_heads(x @ W_q, n_head))                   # (B, H, T, D)
    k = rope(ref.split_heads(x @ W_k, n_kv_head))                # (B, G, T, D)
    v = ref.split_heads(x @ W_v, n_kv_head)                      # (B, G, T, D)
    group = n_head // n_kv_head
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)   # (B, H, T, D)
    T = x.shape[1]
    out = ref.scaled_dot_product_attention(q, k, v, ref.causal_mask(T, T, x.device))
    return ref.merge_heads(out) @ W_o                            # (B, T, C)


def layer_weights(weights: dict, layer: int) -> dict:
    """The tensors of block `layer`, named without the 'blocks.{layer}.' prefix."""
    prefix = f"blocks.{layer}."
    return {name[len(prefix):]: w for name, w in weights.items() if name.startswith(prefix)}


multi_head_attention = reference_multi_head_attention

# %%
USE_MY_ATTENTION = False
if USE_MY_ATTENTION:
    multi_head_attention = load_piece("attention.multi_head", reference_multi_head_attention)


{name: tuple(w.shape) for name, w in layer_weights(weights, 0).items()}

# %% [markdown] lang="en"
# Write `transformer_block(x, weights, cfg, cos, sin)`. `weights` holds one
# block's tensors under the names printed above, `cfg` is the configuration
# dictionary (you need `n_head`, `n_kv_head` and `norm_eps`), and `cos`, `sin`
# are the RoPE tables of shape `(1, 1, T, D)`, ready to be passed on to
# `multi_head_attention`. Use your `rms_norm` and `swiglu_ffn`. The check runs
# the reference model's own `Block` on the real residual stream of two
# sentences and compares.

# %% [markdown] lang="ko"
# `transformer_block(x, weights, cfg, cos, sin)`을 작성하세요. `weights`에는 블록
# 하나의 텐서가 위에 출력된 이름으로 들어 있고, `cfg`는 설정 딕셔너리입니다(`n_head`,
# `n_kv_head`, `norm_eps`가 필요합니다). `cos`, `sin`은 `(1, 1, T, D)` 모양의 RoPE
# 표로, `multi_head_attention`에 그대로 넘기면 됩니다. 여러분의 `rms_norm`과
# `swiglu_ffn`을 쓰세요. 검사는 두 문장의 실제 잔차 스트림에 참고 모델의 `Block`을
# 돌린 결과와 비교합니다.

# %% kind="solution" id="transformer_block"
def transformer_block(x, weights, cfg, cos, sin):
    """x: (B, T, C) float32; weights: one block's tensors by name ("norm1.weight", "attn.W_q", ...,
    "ffn.W_down"), each (in, out); cfg: the config dict; cos, sin: (1, 1, T, D) -> (B, T, C) float32"""
    ### BEGIN SOLUTION
    h = rms_norm(x, weights["norm1.weight"], cfg["norm_eps"])                  # (B, T, C)
    x = x + multi_head_attention(h, weights["attn.W_q"], weights["attn.W_k"], weights["attn.W_v"],
                                 weights["attn.W_o"], cfg["n_head"], cfg["n_kv_head"], cos, sin)
    h = rms_norm(x, weights["norm2.weight"], cfg["norm_eps"])                  # (B, T, C)
    x = x + swiglu_ffn(h, weights["ffn.W_gate"], weights["ffn.W_up"], weights["ffn.W_down"])
    return x                                                                    # (B, T, C)
    ### END SOLUTION

# %% kind="test" id="check_transformer_block"


# %% [markdown] lang="en"
# ## 6. The whole forward pass
#
# Now stack the blocks. For token ids of shape `(B, T)`:
#
# 1. look up the embeddings, `weights["tok_emb"][ids]`, shape `(B, T, C)`;
# 2. build the RoPE tables for positions $0, \ldots, T-1$ with
#    `rope_cos_sin(positions, head_dim, cfg["rope_theta"])`, where `positions`
#    has shape `(1, T)` and `head_dim` is `d_model // n_head`; it returns
#    `(1, T, D)`, so add the head axis to get `(1, 1, T, D)`;
# 3. run the `cfg["n_layer"]` blocks in order;
# 4. apply the final RMSNorm with `norm_f.weight`;
# 5. unembed with the transposed embedding table (the reference model ties
#    the two), which gives one logit per vocabulary entry:
#
# $$
# \text{logits} = \mathrm{RMSNorm}_f(x_L)\, W_E^{\top}
# $$
#
# Return logits, not probabilities. The check compares them with what the
# reference model computes for a Korean and an English sentence, then lets
# your `forward` write eight tokens greedily after each sentence (always
# taking the highest logit) and compares those tokens with the reference
# model's. The hidden check also runs small random models of other shapes.

# %% [markdown] lang="ko"
# ## 6. 순전파 전체
#
# 이제 블록을 쌓습니다. `(B, T)` 모양의 토큰 id가 들어오면 다음 순서로 계산합니다.
#
# 1. 임베딩을 찾습니다. `weights["tok_emb"][ids]`, 모양은 `(B, T, C)`입니다.
# 2. 위치 $0, \ldots, T-1$에 대한 RoPE 표를
#    `rope_cos_sin(positions, head_dim, cfg["rope_theta"])`로 만듭니다. `positions`는
#    `(1, T)` 모양이고 `head_dim`은 `d_model // n_head`입니다. 결과가 `(1, T, D)`이므로
#    헤드 축을 끼워 넣어 `(1, 1, T, D)`로 만드세요.
# 3. 블록 `cfg["n_layer"]`개를 차례로 통과시킵니다.
# 4. `norm_f.weight`로 최종 RMSNorm을 적용합니다.
# 5. 임베딩 표를 전치해서 언임베딩합니다(참고 모델은 둘을 묶어 씁니다). 그러면 어휘
#    집합의 항목마다 로짓이 하나씩 나옵니다.
#
# $$
# \text{logits} = \mathrm{RMSNorm}_f(x_L)\, W_E^{\top}
# $$
#
# 확률이 아니라 로짓을 돌려주세요. 검사는 한국어 문장과 영어 문장에서 참고 모델이
# 계산한 로짓과 비교한 다음, 여러분의 `forward`로 각 문장 뒤에 토큰 여덟 개를 탐욕적
# 디코딩으로(매번 로짓이 가장 큰 토큰을 골라) 이어 쓰게 해서 참고 모델이 쓴 토큰과
# 맞춰 봅니다. 숨은 검사는 모양이 다른 작은 무작위 모델로도 돌려 봅니다.

# %% kind="solution" id="forward"
def forward(ids, weights, cfg):
    """ids: (B, T) torch.long token ids; weights: the model's tensors by name; cfg: the config dict
    -> logits (B, T, V) float32"""
    ### BEGIN SOLUTION
    B, T = ids.shape
    x = weights["tok_emb"][ids]                                      # (B, T, C)
    positions = torch.arange(T, device=ids.device)[None]             # (1, T)
    cos, sin = rope_cos_sin(positions, cfg["d_model"] // cfg["n_head"], cfg["rope_theta"])  # (1, T, D)
    cos, sin = cos[:, None], sin[:, None]                            # (1, 1, T, D)
    for layer in range(cfg["n_layer"]):
        x = transformer_block(x, layer_weights(weights, layer), cfg, cos, sin)
    x = rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])       # (B, T, C)
    return x @ weights["tok_emb"].T                                  # (B, T, V)
    ### END SOLUTION

# %% kind="test" id="check_forward"


# %% [markdown] lang="en"
# ## 7. Your model predicts the next token
#
# The logits at the last position score every token of the vocabulary as the
# continuation of the prompt. A softmax turns them into probabilities; here are
# the five most likely next tokens according to your own forward pass. The
# prompt is the Korean noun 학습률 ("learning rate"). A model that has picked up
# some Korean should expect a particle to come next, such as 이, 은 or 을,
# rather than another noun.

# %% [markdown] lang="ko"
# ## 7. 여러분의 모델이 다음 토큰을 예측합니다
#
# 마지막 위치의 로짓은 어휘 집합의 모든 토큰에, 프롬프트 다음에 올 토큰으로서의
# 점수를 매깁니다. 소프트맥스를 씌우면 확률이 됩니다. 여러분이 만든 순전파가 꼽은
# 다음 토큰 후보 다섯 개를 봅시다. 프롬프트는 명사 하나, "학습률"입니다. 한국어를
# 조금이라도 익힌 모델이라면 명사 바로 뒤에는 다른 명사보다 이, 은, 을 같은 조사가
# 올 것이라고 예상해야 합니다.

# %%
prompt = "학습률"
ids = torch.tensor([reference.tokenizer.encode(prompt)])             # (1, T)
with torch.no_grad():
    logits = forward(ids, weights, cfg)                              # (1, T, V)
probs = torch.softmax(logits[0, -1], dim=-1)                         # (V,)
top = torch.topk(probs, 5)
labels = [token_label(reference.tokenizer, int(i)) for i in top.indices]
for p, label in zip(top.values, labels):
    print(f"{float(p):6.1%}  {label}")

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(range(5)[::-1], top.values, color="tab:blue")
ax.set_yticks(range(5)[::-1], labels)
ax.set_xlabel(TEXT["probability"])
ax.set_title(TEXT["next"].format(p=prompt))
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 8. The residual stream grows
#
# Every sublayer adds its delta to the stream and nothing rescales the stream
# itself (only the copies the sublayers read are normalized), so the token
# vectors get longer from block to block. The plot follows the length of each
# token's vector through your blocks; thin lines are single tokens, the thick
# line their mean.

# %% [markdown] lang="ko"
# ## 8. 잔차 스트림은 점점 커집니다
#
# 하위 층마다 스트림에 변화량을 더하지만 스트림 자체의 크기를 되돌리는 곳은 없습니다.
# 정규화되는 것은 하위 층이 읽어 가는 사본뿐입니다. 그래서 블록을 지날수록 토큰 벡터가
# 길어집니다. 아래 그림은 여러분의 블록을 지나는 동안 토큰마다 벡터의 길이가 어떻게
# 변하는지 보여 줍니다. 가는 선은 토큰 하나, 굵은 선은 토큰들의 평균입니다.

# %%
def stream_lengths(text: str) -> torch.Tensor:
    """‖x‖ of every token after the embedding and after each block: (n_layer + 1, T)"""
    ids = torch.tensor([reference.tokenizer.encode(text)])           # (1, T)
    cos, sin = rope_cos_sin(torch.arange(ids.shape[1])[None], cfg["d_model"] // cfg["n_head"], cfg["rope_theta"])
    x = weights["tok_emb"][ids]                                      # (1, T, C)
    lengths = [x[0].norm(dim=-1)]
    with torch.no_grad():
        for layer in range(cfg["n_layer"]):
            x = transformer_block(x, layer_weights(weights, layer), cfg, cos[:, None], sin[:, None])
            lengths.append(x[0].norm(dim=-1))
    return torch.stack(lengths)


sentences = ["애, 겨울 배가 맛있단다!", "The model reads tokens, not letters."]
all_lengths = [stream_lengths(text) for text in sentences]          # (L + 1, T) each
stages = [TEXT["embedding"]] + [TEXT["block"].format(i=i) for i in range(cfg["n_layer"])]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, text, lengths in zip(axes, sentences, all_lengths):
    ax.plot(range(len(stages)), lengths, color="tab:blue", alpha=0.25, lw=1)
    ax.plot(range(len(stages)), lengths.mean(dim=1), color="tab:blue", lw=3, label=TEXT["mean"])
    ax.set_xticks(range(len(stages)), stages, rotation=20)
    ax.set_title(text)
    ax.legend()
axes[0].set_ylabel(TEXT["norm"])
plt.tight_layout()
plt.show()
