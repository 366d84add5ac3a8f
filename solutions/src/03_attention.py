# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 3: attention, step by step
#
# [Open in Colab]({{colab_url}}) · companion of chapter 3, *Attention as a soft lookup*
#
# You will write the pieces of one attention layer and check each one at once
# against the course's trained reference model:
#
# 1. a numerically stable softmax;
# 2. scaled dot-product attention, $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$;
# 3. the causal mask;
# 4. splitting the model width into heads and merging them back;
# 5. rotary position embeddings (RoPE);
# 6. multi-head attention with grouped-query heads, loaded with layer 0 of the reference model.
#
# Then you look at what the trained model attends to in the Korean sentence
# "애, 겨울 배가 맛있단다!".
#
# Each step has a cell marked `YOUR CODE HERE`; the cell after it checks your
# function and prints ✅ or ❌ with a hint. Shapes are written in comments:
# `B` batch, `T` tokens, `C` model width, `H` heads, `D` width of one head.

# %% [markdown] lang="ko"
# # 노트북 3: 어텐션을 한 단계씩
#
# [Colab에서 열기]({{colab_url}}) · 3장 *어텐션: 부드러운 조회*와 함께 보는 노트북
#
# 어텐션 층 하나를 이루는 부품을 직접 만들고, 만들 때마다 강좌에서 학습시킨
# 참고 모델과 바로 비교해 봅니다.
#
# 1. 수치적으로 안정한 소프트맥스
# 2. 스케일드 내적 어텐션 $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$
# 3. 인과 마스크
# 4. 모델 폭을 헤드로 나누고 다시 합치기
# 5. 회전 위치 임베딩(RoPE)
# 6. 참고 모델 0번 층의 가중치를 넣은 그룹 쿼리 멀티헤드 어텐션
#
# 마지막으로 학습된 모델이 "애, 겨울 배가 맛있단다!"라는 문장에서 어디를
# 바라보는지 그림으로 확인합니다.
#
# 단계마다 `YOUR CODE HERE` 표시가 있는 셀을 채우면, 바로 다음 셀이 함수를
# 검사해 ✅ 또는 ❌와 힌트를 보여 줍니다. 텐서 모양은 주석에 적었습니다.
# `B`는 배치, `T`는 토큰 수, `C`는 모델 폭, `H`는 헤드 수, `D`는 헤드 하나의 폭입니다.

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import math
import torch
from autograde.notebook import setup, check
device = setup(COURSE_LANG)

# %% [markdown] lang="en"
# ## 1. A numerically stable softmax
#
# $\mathrm{softmax}(x)_i = e^{x_i} / \sum_j e^{x_j}$. With scores like 1000,
# `exp` overflows to `inf` and the ratio becomes `nan`. Subtracting the largest
# score first changes nothing mathematically and keeps every exponent $\le 0$.
# Write it without `torch.softmax`.

# %% [markdown] lang="ko"
# ## 1. 수치적으로 안정한 소프트맥스
#
# $\mathrm{softmax}(x)_i = e^{x_i} / \sum_j e^{x_j}$입니다. 점수가 1000쯤 되면
# `exp`가 `inf`로 넘치고 나눗셈 결과는 `nan`이 됩니다. 가장 큰 점수를 먼저 빼
# 두면 수학적으로는 같은 값이면서 모든 지수가 0 이하로 유지됩니다.
# `torch.softmax`를 쓰지 말고 직접 작성하세요.

# %% kind="solution" id="softmax"
def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """x: float tensor of any shape -> same shape and dtype; entries along `dim` are >= 0 and sum to 1"""
    ### BEGIN SOLUTION
    shifted = x - x.amax(dim=dim, keepdim=True)   # largest entry becomes 0
    exps = shifted.exp()
    return exps / exps.sum(dim=dim, keepdim=True)
    ### END SOLUTION

# %% kind="test" id="check_softmax"


# %% [markdown] lang="en"
# ## 2. Scaled dot-product attention
#
# Every query scores every key with a dot product, scaled by $1/\sqrt{d_k}$ so
# that the scores do not grow with the head width. A boolean `mask` (True =
# may attend) sets forbidden scores to $-\infty$ **before** the softmax.
#
# $$
# \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)V
# $$

# %% [markdown] lang="ko"
# ## 2. 스케일드 내적 어텐션
#
# 쿼리마다 모든 키와 내적을 계산해 점수를 매기고, 헤드 폭이 커져도 점수가 함께
# 커지지 않도록 $1/\sqrt{d_k}$를 곱합니다. 불리언 `mask`(True = 볼 수 있음)는
# 소프트맥스 **전에** 금지된 점수를 $-\infty$로 바꿉니다.
#
# $$
# \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)V
# $$

# %% kind="solution" id="sdpa"
def scaled_dot_product_attention(q, k, v, mask=None):
    """q: (..., T, D), k and v: (..., S, D) float; mask: bool, broadcastable to (..., T, S), True = may attend,
    or None -> (..., T, D) float"""
    ### BEGIN SOLUTION
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)      # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)                      # (..., T, S)
    return weights @ v                                     # (..., T, D)
    ### END SOLUTION

# %% kind="test" id="check_sdpa"


# %% [markdown] lang="en"
# ## 3. The causal mask
#
# A language model predicts the next token, so position $i$ may look at
# positions $0..i$ (itself included) and never later ones. Return a `(T, T)`
# boolean tensor, True where query $i$ may see key $j$, i.e. $j \le i$.

# %% [markdown] lang="ko"
# ## 3. 인과 마스크
#
# 언어 모델은 다음 토큰을 예측하므로 $i$번 위치는 자기 자신을 포함한 $0..i$만
# 보고 그 뒤는 볼 수 없습니다. 쿼리 $i$가 키 $j$를 볼 수 있는 칸, 즉
# $j \le i$인 칸이 True인 `(T, T)` 불리언 텐서를 돌려주세요.

# %% kind="solution" id="causal_mask"
def causal_mask(T: int) -> torch.Tensor:
    """T -> (T, T) torch.bool, True where key j <= query i (the diagonal included)"""
    ### BEGIN SOLUTION
    return torch.ones(T, T, dtype=torch.bool).tril()       # (T, T), lower triangle
    ### END SOLUTION

# %% kind="test" id="check_causal_mask"


# %% [markdown] lang="en"
# ## 4. Splitting into heads and merging back
#
# Multi-head attention runs $H$ small attentions side by side. The width
# $C = H \cdot D$ of a `(B, T, C)` tensor is cut into $H$ slices of width $D$,
# and the head axis moves in front of the token axis: `(B, H, T, D)`.
# Reshape to `(B, T, H, D)` **first**, then transpose; `merge_heads` undoes it.

# %% [markdown] lang="ko"
# ## 4. 헤드로 나누고 다시 합치기
#
# 멀티헤드 어텐션은 작은 어텐션 $H$개를 나란히 돌립니다. `(B, T, C)` 텐서의
# 폭 $C = H \cdot D$를 폭 $D$짜리 조각 $H$개로 자르고, 헤드 축을 토큰 축
# 앞으로 옮겨 `(B, H, T, D)`를 만듭니다. **먼저** `(B, T, H, D)`로 바꾼 다음
# 전치해야 합니다. `merge_heads`는 이 과정을 거꾸로 합니다.

# %% kind="solution" id="split_heads"
def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """x: (B, T, C) float, C = n_heads * D -> (B, H, T, D), H = n_heads"""
    ### BEGIN SOLUTION
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D) float -> (B, T, C), C = H * D (the inverse of split_heads)"""
    ### BEGIN SOLUTION
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)
    ### END SOLUTION

# %% kind="test" id="check_heads"


# %% [markdown] lang="en"
# ## 5. Rotary position embeddings
#
# RoPE turns each pair of coordinates of a query or key by an angle that grows
# with the position, so the score of $q_m$ and $k_n$ depends on $m - n$. The
# course follows the Llama convention: the pairs are $(x_i, x_{i+D/2})$.
#
# $$
# \mathrm{RoPE}(x) = x \odot \cos\theta + \mathrm{rotate\_half}(x) \odot \sin\theta,
# \qquad \mathrm{rotate\_half}(x_1, x_2) = (-x_2, x_1)
# $$

# %% [markdown] lang="ko"
# ## 5. 회전 위치 임베딩
#
# RoPE는 쿼리와 키의 좌표 쌍을 위치에 비례하는 각도만큼 돌립니다. 그래서
# $q_m$과 $k_n$의 점수는 $m - n$에만 달려 있게 됩니다. 이 강좌는 Llama의
# 방식을 따라 $(x_i, x_{i+D/2})$를 한 쌍으로 묶습니다.
#
# $$
# \mathrm{RoPE}(x) = x \odot \cos\theta + \mathrm{rotate\_half}(x) \odot \sin\theta,
# \qquad \mathrm{rotate\_half}(x_1, x_2) = (-x_2, x_1)
# $$

# %% kind="solution" id="rope"
def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D) float, D even; cos, sin: float, broadcastable to x (the checks pass (1, 1, T, D))
    -> (B, H, T, D); coordinate i is paired with i + D/2"""
    ### BEGIN SOLUTION
    x1, x2 = x.chunk(2, dim=-1)                          # (B, H, T, D/2) each
    rotated = torch.cat((-x2, x1), dim=-1)               # rotate_half(x)
    return x * cos + rotated * sin
    ### END SOLUTION

# %% kind="test" id="check_rope"


# %% [markdown] lang="en"
# ## 6. Multi-head attention with grouped-query heads
#
# Put the pieces together: project $x$ to $Q = xW_Q$, $K = xW_K$, $V = xW_V$,
# split into heads, rotate queries and keys, let each of the `n_kv_head`
# key/value heads serve `n_head / n_kv_head` consecutive query heads
# (`repeat_interleave`), attend with the causal mask, merge and project with
# $W_O$. The check feeds layer 0 of the trained reference model.
#
# Shapes, with the reference model's numbers ($C = 128$, $H = 4$ query heads,
# $G = 2$ key/value heads, $D = C/H = 32$), all tensors `float32`:
#
# | argument | shape | reference model |
# | --- | --- | --- |
# | `x` | `(B, T, C)` | `(1, T, 128)` |
# | `W_q` | `(C, H·D)` | `(128, 128)` |
# | `W_k`, `W_v` | `(C, G·D)` | `(128, 64)` |
# | `W_o` | `(H·D, C)` | `(128, 128)` |
# | `cos`, `sin` | `(1, 1, T, D)` | `(1, 1, T, 32)` |
# | result | `(B, T, C)` | `(1, T, 128)` |
#
# Every weight is stored **(in, out)**, as everywhere in the course: a
# projection is `x @ W`, never `x @ W.T`. Watch `W_q` and `W_o`: they are
# square, so `x @ W_q.T` runs without any error and silently gives wrong
# numbers. Only the check's values will tell you.

# %% [markdown] lang="ko"
# ## 6. 그룹 쿼리 멀티헤드 어텐션
#
# 부품을 모읍니다. $x$를 $Q = xW_Q$, $K = xW_K$, $V = xW_V$로 투영하고, 헤드로
# 나누고, 쿼리와 키를 회전시킵니다. 키·값 헤드 `n_kv_head`개가 각각 연속한
# 쿼리 헤드 `n_head / n_kv_head`개를 맡도록 `repeat_interleave`로 늘린 다음,
# 인과 마스크로 어텐션을 하고, 헤드를 합쳐 $W_O$로 투영합니다. 검사에는 학습된
# 참고 모델 0번 층의 가중치가 들어갑니다.
#
# 텐서 모양은 다음과 같고, 모두 `float32`입니다. 오른쪽 열은 참고 모델의 값입니다
# ($C = 128$, 쿼리 헤드 $H = 4$, 키·값 헤드 $G = 2$, $D = C/H = 32$).
#
# | 인자 | 모양 | 참고 모델 |
# | --- | --- | --- |
# | `x` | `(B, T, C)` | `(1, T, 128)` |
# | `W_q` | `(C, H·D)` | `(128, 128)` |
# | `W_k`, `W_v` | `(C, G·D)` | `(128, 64)` |
# | `W_o` | `(H·D, C)` | `(128, 128)` |
# | `cos`, `sin` | `(1, 1, T, D)` | `(1, 1, T, 32)` |
# | 반환값 | `(B, T, C)` | `(1, T, 128)` |
#
# 가중치는 강좌 어디에서나 그렇듯 **(입력, 출력)** 순서로 저장되어 있습니다. 투영은
# `x @ W`이지 `x @ W.T`가 아닙니다. 특히 `W_q`와 `W_o`를 조심하세요. 정사각 행렬이라
# `x @ W_q.T`라고 써도 오류 없이 돌아가고, 값만 조용히 틀립니다. 그런 실수는 검사 결과의
# 값으로만 드러납니다.

# %% kind="solution" id="multi_head"
def multi_head_attention(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):
    """x: (B, T, C) float32. Weights are (in, out), used as x @ W:
    W_q (C, H*D), W_k and W_v (C, G*D), W_o (H*D, C), with H = n_head, G = n_kv_head, D = C // H;
    cos, sin: (1, 1, T, D) float32 -> (B, T, C) float32"""
    ### BEGIN SOLUTION
    q = apply_rope(split_heads(x @ W_q, n_head), cos, sin)       # (B, H, T, D)
    k = apply_rope(split_heads(x @ W_k, n_kv_head), cos, sin)    # (B, G, T, D)
    v = split_heads(x @ W_v, n_kv_head)                          # (B, G, T, D)
    group = n_head // n_kv_head
    k = k.repeat_interleave(group, dim=1)                        # (B, H, T, D)
    v = v.repeat_interleave(group, dim=1)
    out = scaled_dot_product_attention(q, k, v, causal_mask(x.shape[1]))
    return merge_heads(out) @ W_o                                # (B, T, C)
    ### END SOLUTION

# %% kind="test" id="check_multi_head"


# %% [markdown] lang="en"
# ## 7. What does the trained model look at?
#
# The heat map shows, for every head of layer 1 of the reference model, how
# much each token (row) attends to each earlier token (column) in
# "애, 겨울 배가 맛있단다!". Rows sum to 1 and the upper triangle is empty: the
# causal mask at work.

# %% [markdown] lang="ko"
# ## 7. 학습된 모델은 어디를 볼까?
#
# 아래 히트맵은 참고 모델 1번 층의 헤드마다, "애, 겨울 배가 맛있단다!"에서 각
# 토큰(행)이 앞선 토큰(열)을 얼마나 바라보는지 보여 줍니다. 행의 합은 1이고
# 위쪽 삼각형은 비어 있습니다. 인과 마스크가 하는 일입니다.

# %%
from autograde.figures import _pyplot, attention_maps, token_label
from autograde.reference.checkpoint import load_reference

plt = _pyplot()
reference = load_reference()
ids = reference.tokenizer.encode("애, 겨울 배가 맛있단다!")
labels = [token_label(reference.tokenizer, i) for i in ids]
maps = attention_maps(reference.model, ids)[1]                  # (H, T, T)
fig, axes = plt.subplots(1, maps.shape[0], figsize=(14, 3.6))
for h, ax in enumerate(axes):
    ax.imshow(maps[h], cmap="Blues", vmin=0, vmax=1)
    ax.set_title(f"head {h}")
    ax.set_xticks(range(len(ids)), labels, rotation=90)
    ax.set_yticks(range(len(ids)), labels)
plt.tight_layout()
plt.show()
