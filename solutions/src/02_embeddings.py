# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 2: embeddings and positions
#
# [Open in Colab]({{colab_url}}) · companion of chapter 2, *Embeddings and positions*
#
# The first layer of the model is a table with one row per token. Here you
# measure what training put into the rows of the reference model's table,
# then build the position signal that the original Transformer added to them:
#
# 1. `cosine_similarity`, the angle between every row of one matrix and every row of another;
# 2. `nearest_neighbours`, the tokens whose rows point the most like a given token's;
# 3. `sinusoidal_encoding`, the fixed table of sines and cosines, one row per position;
# 4. `embed_with_positions`, a batch of ids turned into token vectors plus position vectors.
#
# On the way you look at the neighbours of a few Korean and English tokens
# and measure that the dot product of two position vectors depends only on
# how far apart they are. Every cell runs in a few seconds on one CPU core.
# Shapes are written in comments: `V` vocabulary, `C` model width, `P`
# positions, `B` batch, `T` tokens.

# %% [markdown] lang="ko"
# # 노트북 2: 임베딩과 위치
#
# [Colab에서 열기]({{colab_url}}) · 2장 *임베딩과 위치*와 함께 보는 노트북
#
# 모델의 첫 층은 토큰마다 한 행씩 가진 표입니다. 이 노트북에서는 학습이 참고
# 모델의 표 안에 무엇을 남겼는지 재 보고, 원조 트랜스포머가 그 행에 더했던 위치
# 신호를 직접 만듭니다.
#
# 1. 한 행렬의 모든 행과 다른 행렬의 모든 행 사이의 각도를 재는 `cosine_similarity`
# 2. 주어진 토큰의 행과 가장 비슷한 방향을 가리키는 토큰들을 찾는 `nearest_neighbours`
# 3. 위치마다 한 행씩, 사인과 코사인으로 채운 고정된 표 `sinusoidal_encoding`
# 4. id 배치를 토큰 벡터와 위치 벡터의 합으로 바꾸는 `embed_with_positions`
#
# 중간에 한국어와 영어 토큰 몇 개의 이웃을 살펴보고, 두 위치 벡터의 내적이 두 위치가
# 얼마나 떨어져 있는지에만 달려 있다는 것을 수치로 확인합니다. CPU 코어 하나로도
# 셀마다 몇 초면 끝납니다. 텐서 모양은 주석에 적었습니다. `V`는 어휘 집합 크기,
# `C`는 모델 폭, `P`는 위치 수, `B`는 배치, `T`는 토큰 수입니다.

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
# ## 1. Cosine similarity
#
# Two embeddings are compared by the angle between them, not by their
# lengths:
#
# $$
# \cos(\mathbf{a}, \mathbf{b}) = \frac{\mathbf{a} \cdot \mathbf{b}}{\lVert \mathbf{a} \rVert \, \lVert \mathbf{b} \rVert}
# $$
#
# `a` has shape `(N, C)` and `b` shape `(M, C)`: one vector per row. Return
# the `(N, M)` matrix whose entry `[n, m]` is the cosine of row `n` of `a`
# with row `m` of `b`. Divide each row by its length first, then one matrix
# product gives every pair.
#
# A row of zeros has no direction, and $0 / 0$ is NaN. Clamp each length to
# at least `eps` before dividing, $\mathbf{v} / \max(\lVert \mathbf{v} \rVert, \varepsilon)$:
# a zero row stays zero and its cosine with anything is 0, while a short
# but real vector (length $10^{-6}$, well above $\varepsilon = 10^{-8}$) is
# normalized as usual. Clamp each length on its own, not their product.
# Keep the inputs' dtype, and do not use `torch.nn.functional.cosine_similarity`
# or `normalize`: they are what you are writing.

# %% [markdown] lang="ko"
# ## 1. 코사인 유사도
#
# 두 임베딩은 길이가 아니라 둘 사이의 각도로 비교합니다.
#
# $$
# \cos(\mathbf{a}, \mathbf{b}) = \frac{\mathbf{a} \cdot \mathbf{b}}{\lVert \mathbf{a} \rVert \, \lVert \mathbf{b} \rVert}
# $$
#
# `a`의 모양은 `(N, C)`, `b`의 모양은 `(M, C)`이고 행 하나가 벡터 하나입니다.
# `[n, m]` 자리에 `a`의 `n`번 행과 `b`의 `m`번 행 사이의 코사인을 담은 `(N, M)`
# 행렬을 돌려주세요. 행마다 먼저 길이로 나눠 두면 행렬 곱 한 번으로 모든 쌍이
# 나옵니다.
#
# 값이 모두 0인 행에는 방향이 없고, $0 / 0$은 NaN입니다. 그래서 나누기 전에 길이가
# `eps`보다 작아지지 않게 잘라 $\mathbf{v} / \max(\lVert \mathbf{v} \rVert, \varepsilon)$로
# 나눕니다. 이렇게 하면 영벡터는 그대로 0이라서 어떤 벡터와도 코사인이 0이고, 짧아도
# 엄연한 벡터(길이 $10^{-6}$은 $\varepsilon = 10^{-8}$보다 훨씬 큽니다)는 평소처럼
# 정규화됩니다. 두 길이의 곱이 아니라 길이 하나하나를 자르세요. 입력의 dtype을
# 그대로 유지하고, `torch.nn.functional.cosine_similarity`나 `normalize`는 쓰지
# 마세요. 이 단계에서 직접 만드는 것이 바로 그 함수들입니다.

# %% kind="solution" id="cosine_similarity"
def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """a: (N, C), b: (M, C) float -> (N, M): the cosine of every row of a with every row of b (0 for a zero row)"""
    ### BEGIN SOLUTION
    a_unit = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)     # (N, C) rows of length 1 (or 0)
    b_unit = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)     # (M, C)
    return a_unit @ b_unit.T                                      # (N, M)
    ### END SOLUTION

# %% kind="test" id="check_cosine_similarity"


# %% [markdown] lang="en"
# The chapter's made-up table, with its three pairs:

# %% [markdown] lang="ko"
# 2장에 나온 가상의 표와 그 표의 세 쌍입니다.

# %%
toy_words = [" cat", " dog", " car", " apple"]
toy_table = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.2, 0.4], [-0.2, 0.9, 0.1], [0.1, -0.3, 0.9]])   # (4, 3)
toy_cos = cosine_similarity(toy_table, toy_table)                                                  # (4, 4)
for other in (1, 3, 2):
    print(f"{toy_words[0]!r:8} {toy_words[other]!r:9} dot {float(toy_table[0] @ toy_table[other]):5.2f}"
          f"   cosine {float(toy_cos[0, other]):5.2f}")

# %% [markdown] lang="en"
# ## 2. Nearest neighbours
#
# The reference model's table `W_E` has one row of $C = 128$ numbers for
# each of its $V = 2048$ tokens. Given a token id, find the `k` other tokens
# whose rows have the highest cosine with its row:
#
# - leave the token itself out (its cosine with itself is 1);
# - most similar first; tokens with exactly the same cosine go in id order,
#   the smaller id first (`torch.sort(..., descending=True, stable=True)`
#   keeps equal values in their original order; `topk` does not promise that);
# - `k` must be between 1 and $V - 1$: otherwise raise `ValueError`.
#
# Use your `cosine_similarity`, and return a list of Python ints.

# %% [markdown] lang="ko"
# ## 2. 가장 가까운 이웃
#
# 참고 모델의 표 `W_E`에는 $V = 2048$개 토큰마다 $C = 128$개 숫자로 된 행이
# 하나씩 있습니다. 토큰 id 하나가 주어지면, 그 행과 코사인이 가장 높은 다른 토큰
# `k`개를 찾으세요.
#
# - 토큰 자신은 뺍니다(자기 자신과의 코사인은 1입니다).
# - 가장 비슷한 것부터 늘어놓습니다. 코사인이 정확히 같은 토큰끼리는 id가 작은
#   쪽이 먼저입니다(`torch.sort(..., descending=True, stable=True)`는 값이 같은
#   원소의 원래 순서를 지키지만, `topk`는 그런 약속을 하지 않습니다).
# - `k`는 1 이상 $V - 1$ 이하여야 하고, 그 밖의 값이면 `ValueError`를 일으키세요.
#
# 직접 만든 `cosine_similarity`를 쓰고, 파이썬 int의 리스트를 돌려주세요.

# %% kind="solution" id="nearest_neighbours"
def nearest_neighbours(table: torch.Tensor, query_id: int, k: int) -> list[int]:
    """table: (V, C) float; query_id: a row; 1 <= k <= V - 1 -> the k other ids whose rows have the highest
    cosine with row query_id, highest first, ties by smaller id"""
    ### BEGIN SOLUTION
    V = table.shape[0]
    if not 1 <= k <= V - 1:
        raise ValueError(f"k must be between 1 and {V - 1}, got {k}")
    sims = cosine_similarity(table[query_id:query_id + 1], table)[0]      # (V,)
    order = torch.sort(sims, descending=True, stable=True).indices         # (V,) ties keep the smaller id first
    return [i for i in order.tolist() if i != query_id][:k]
    ### END SOLUTION

# %% kind="test" id="check_nearest_neighbours"


# %% [markdown] lang="en"
# Now the neighbours of a few tokens of the course's tokenizer, decoded for
# display. Nobody told the model that `' 모델'` and `' 코드'` are both nouns
# of this course, or that `'은'` and `'을'` are particles: the rows moved
# together because the tokens are used in similar contexts. A model this
# small, trained on one short corpus, also makes odd neighbours; the
# numbers next to them show how weak some of those links are.

# %% [markdown] lang="ko"
# 이제 이 강좌의 토크나이저에서 토큰 몇 개를 골라 어떤 이웃을 두었는지, 사람이 읽을
# 수 있게 디코딩해서 봅시다. `' 모델'`과 `' 코드'`가 둘 다 이 강좌에 나오는 명사라거나
# `'은'`과 `'을'`이 조사라는 것을 모델에게 알려 준 사람은 없습니다. 앞뒤에 비슷한 토큰이 오다
# 보니 행이 같은 쪽으로 움직였을 뿐입니다. 짧은 말뭉치 하나로 학습한 작은
# 모델이라 엉뚱한 이웃도 있는데, 옆에 적힌 값을 보면 그런 연결이 얼마나 약한지
# 알 수 있습니다.

# %%
from autograde.reference.checkpoint import load_reference

reference = load_reference()
tokenizer = reference.tokenizer
W_E = reference.model.tok_emb.detach()                                     # (V, C)
print(tuple(W_E.shape))
for word in (" model", " attention", " is", " 모델", " 토큰", "은"):
    token_id = tokenizer.encode(word)[0]
    found = nearest_neighbours(W_E, token_id, 5)
    sims = cosine_similarity(W_E[token_id:token_id + 1], W_E[found])[0]    # (5,)
    shown = ", ".join(f"{tokenizer.decode([i])!r} {float(s):.2f}" for i, s in zip(found, sims))
    print(f"{word!r:13} -> {shown}")

# %% [markdown] lang="en"
# Two random directions in 128 dimensions are almost perpendicular. The
# cosines of all pairs of rows show how far above that the neighbours sit:

# %% [markdown] lang="ko"
# 128차원에서 무작위로 고른 두 방향은 거의 수직입니다. 모든 행 쌍의 코사인을 보면
# 이웃들이 그보다 얼마나 높은 곳에 있는지 알 수 있습니다.

# %%
all_cos = cosine_similarity(W_E, W_E)                                     # (V, V)
off_diagonal = all_cos[~torch.eye(W_E.shape[0], dtype=torch.bool)]        # (V * (V - 1),)
random_rows = torch.randn(W_E.shape, generator=torch.Generator().manual_seed(0))
random_cos = cosine_similarity(random_rows, random_rows)[~torch.eye(W_E.shape[0], dtype=torch.bool)]
print(f"W_E:    mean cosine {float(off_diagonal.mean()):.3f}, std {float(off_diagonal.std()):.3f}")
print(f"random: mean cosine {float(random_cos.mean()):.3f}, std {float(random_cos.std()):.3f}")

# %% [markdown] lang="en"
# ## 3. The sinusoidal position table
#
# Pair $i$ of columns holds a sine and a cosine of one frequency,
# $\omega_i = 10000^{-2i/d}$:
#
# $$
# \begin{aligned}
# PE(pos, 2i) &= \sin\!\left(pos / 10000^{2i/d}\right) \\
# PE(pos, 2i+1) &= \cos\!\left(pos / 10000^{2i/d}\right)
# \end{aligned}
# $$
#
# Return the `(n_positions, dim)` float32 table, positions counted from 0.
# The sines and cosines are interleaved (columns 0, 2, 4, ... hold sines),
# not put in two halves as RoPE's code does. An odd `dim` has no place for
# the last cosine: raise `ValueError` with a message that says `dim` must be
# even.

# %% [markdown] lang="ko"
# ## 3. 사인파 위치 표
#
# 열 쌍 $i$에는 주파수 $\omega_i = 10000^{-2i/d}$ 하나로 만든 사인과 코사인이
# 들어갑니다.
#
# $$
# \begin{aligned}
# PE(pos, 2i) &= \sin\!\left(pos / 10000^{2i/d}\right) \\
# PE(pos, 2i+1) &= \cos\!\left(pos / 10000^{2i/d}\right)
# \end{aligned}
# $$
#
# 위치를 0부터 세어 `(n_positions, dim)` 모양의 float32 표를 돌려주세요. 사인과
# 코사인은 번갈아 놓입니다(0, 2, 4, ... 열이 사인). RoPE 코드처럼 두 덩어리로
# 나누지 않습니다. `dim`이 홀수이면 마지막 코사인이 들어갈 자리가 없으니, `dim`은
# 짝수여야 한다는 메시지와 함께 `ValueError`를 일으키세요.

# %% kind="solution" id="sinusoidal_encoding"
def sinusoidal_encoding(n_positions: int, dim: int) -> torch.Tensor:
    """-> (n_positions, dim) float32: sin in the even columns 2i, cos in the odd ones, frequency 10000 ** (-2i / dim)"""
    ### BEGIN SOLUTION
    if dim % 2:
        raise ValueError(f"dim must be even (sin and cos come in pairs), got {dim}")
    pos = torch.arange(n_positions).float()[:, None]                    # (P, 1)
    freq = 10000.0 ** (-torch.arange(0, dim, 2).float() / dim)          # (C/2,) one frequency per pair
    table = torch.zeros(n_positions, dim)                               # (P, C)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table
    ### END SOLUTION

# %% kind="test" id="check_sinusoidal_encoding"


# %% [markdown] lang="en"
# The chapter's table, for $d = 8$ and the first four positions, comes from
# this function; and it is the very table that the reference code adds to
# the embeddings when a model is configured with `position="sinusoidal"`.

# %% [markdown] lang="ko"
# 2장에 실린 $d = 8$, 처음 네 위치의 표는 이 함수로 만든 것입니다. 모델 설정이
# `position="sinusoidal"`일 때 참고 코드가 임베딩에 더하는 표도 바로 이 표입니다.

# %%
from autograde.reference.functional import sinusoidal_table

for pos, row in enumerate(sinusoidal_encoding(4, 8).tolist()):
    print(pos, "  ".join(f"{row[2 * i]:.3f}, {row[2 * i + 1]:.3f}" for i in range(4)))
print(torch.equal(sinusoidal_encoding(128, 128), sinusoidal_table(128, 128)))

# %% [markdown] lang="en"
# ## 4. Only the offset counts
#
# Moving $k$ positions forward turns every pair by the same angle
# $\omega_i k$, wherever it starts. So the dot product of two rows depends
# only on how far apart they are:
#
# $$
# PE(p) \cdot PE(p + k) = \sum_{i} \big(\sin \omega_i p \, \sin \omega_i (p + k) + \cos \omega_i p \, \cos \omega_i (p + k)\big) = \sum_{i} \cos \omega_i k
# $$
#
# In the heatmap of all dot products every diagonal (a fixed offset $k$) has
# one colour. The cell below also measures it: along each diagonal, how far
# the values stray from $\sum_i \cos \omega_i k$.

# %% [markdown] lang="ko"
# ## 4. 중요한 것은 위치 차이뿐
#
# $k$칸 앞으로 옮기면 어디서 출발하든 쌍마다 같은 각도 $\omega_i k$만큼 돕니다.
# 그래서 두 행의 내적은 두 위치가 얼마나 떨어져 있는지에만 달려 있습니다.
#
# $$
# PE(p) \cdot PE(p + k) = \sum_{i} \big(\sin \omega_i p \, \sin \omega_i (p + k) + \cos \omega_i p \, \cos \omega_i (p + k)\big) = \sum_{i} \cos \omega_i k
# $$
#
# 모든 내적을 그린 히트맵에서는 대각선(위치 차이 $k$가 같은 칸) 하나하나가 한
# 가지 색입니다. 아래 셀은 이것을 수치로도 잽니다. 대각선마다 값이
# $\sum_i \cos \omega_i k$에서 얼마나 벗어나는지 봅니다.

# %%
import matplotlib.pyplot as plt
import koreanize_matplotlib                                       # a Hangul font (NanumGothic) for the labels

plt.rcParams["font.family"] = ["NanumGothic", "DejaVu Sans"]
TEXT = {"en": {"pos": "position", "title": "PE(p) · PE(q), d = 64",
               "stray": "largest distance from the sum of cos(ω_i k), over offsets 0..{n}: {d:.1e}"},
        "ko": {"pos": "위치", "title": "PE(p) · PE(q), d = 64",
               "stray": "위치 차이 0..{n}에서 cos(ω_i k)의 합과의 가장 큰 차이: {d:.1e}"}}[COURSE_LANG]

P, d = 64, 64
pe = sinusoidal_encoding(P, d)                                    # (P, C)
dots = pe @ pe.T                                                  # (P, P)
omega = 10000.0 ** (-torch.arange(0, d, 2).float() / d)           # (C/2,)
stray = max(float((torch.diagonal(dots, k) - torch.cos(omega * k).sum()).abs().max()) for k in range(P))
print(TEXT["stray"].format(n=P - 1, d=stray))

fig, ax = plt.subplots(figsize=(5.2, 4.4))
image = ax.imshow(dots, cmap="viridis")
ax.set_xlabel(TEXT["pos"], fontsize=12)
ax.set_ylabel(TEXT["pos"], fontsize=12)
ax.set_title(TEXT["title"], fontsize=12)
ax.tick_params(labelsize=12)
fig.colorbar(image, ax=ax).ax.tick_params(labelsize=12)
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 5. Token vectors plus position vectors
#
# The model's input at position $pos$, for the token $t_{pos}$ there, is
#
# $$
# \mathbf{x}_{pos} = W_E[t_{pos},:] + PE(pos,:)
# $$
#
# `ids` has shape `(B, T)`, `tok_emb` is $W_E$ `(V, C)` and `pos_table` is
# `(P, C)`. The first token of `ids` sits at position `start`: 0 for a new
# text, and during generation with a KV cache the number of tokens the cache
# already holds. Return `(B, T, C)`: row `[b, t]` is token `ids[b, t]`'s
# vector plus the vector of position `start + t`. Every sequence of the
# batch uses the same positions. If the positions run past the table's
# last row, raise `ValueError`.

# %% [markdown] lang="ko"
# ## 5. 토큰 벡터와 위치 벡터의 합
#
# 위치 $pos$의 토큰이 $t_{pos}$일 때 모델이 받는 입력은 다음과 같습니다.
#
# $$
# \mathbf{x}_{pos} = W_E[t_{pos},:] + PE(pos,:)
# $$
#
# `ids`의 모양은 `(B, T)`, `tok_emb`은 $W_E$로 모양이 `(V, C)`, `pos_table`의 모양은
# `(P, C)`입니다. `ids`의 첫 토큰은 `start` 위치에 있습니다. 새로 시작하는 글이면
# 0이고, KV 캐시로 생성하는 중이라면 캐시에 이미 들어 있는 토큰의 수입니다. `(B, T, C)`
# 모양으로 돌려주세요. `[b, t]` 자리에는 `ids[b, t]` 토큰의 벡터에 `start + t`
# 위치의 벡터를 더한 값이 들어갑니다. 배치 안의 모든 시퀀스가 같은 위치를 씁니다.
# 위치가 표의 마지막 행을 넘어가면 `ValueError`를 일으키세요.

# %% kind="solution" id="embed_with_positions"
def embed_with_positions(ids: torch.Tensor, tok_emb: torch.Tensor, pos_table: torch.Tensor,
                         start: int = 0) -> torch.Tensor:
    """ids: (B, T) ints, tok_emb: (V, C), pos_table: (P, C) -> (B, T, C): token vector plus position start + t's"""
    ### BEGIN SOLUTION
    T = ids.shape[-1]
    if start + T > pos_table.shape[0]:
        raise ValueError(f"positions {start}..{start + T - 1} do not fit a table of {pos_table.shape[0]} rows")
    positions = torch.arange(start, start + T)                          # (T,)
    return tok_emb[ids] + pos_table[positions]                          # (B, T, C) + (T, C)
    ### END SOLUTION

# %% kind="test" id="check_embed_with_positions"


# %% [markdown] lang="en"
# Order now shows in the vectors. "안 먹고 잤다" and "먹고 안 잤다" are made
# of the same tokens (the first line below: their ids, and whether they are
# the same ids in another order). Without positions the two inputs hold the
# same set of rows; with positions they do not. The reference model itself
# uses RoPE and has no position table, so the cell borrows a sinusoidal one
# of its width.

# %% [markdown] lang="ko"
# 이제 벡터에 순서가 드러납니다. "안 먹고 잤다"와 "먹고 안 잤다"는 같은 토큰으로
# 이루어져 있습니다(아래 첫 줄이 두 문장의 id와, 순서만 다른 같은 id인지를
# 보여 줍니다). 위치가 없으면 두 입력은 같은 행들의 집합이지만, 위치를 더하면
# 달라집니다. 참고 모델은 RoPE를 쓰기 때문에 위치 표가 없어서, 이 셀에서는 모델
# 폭에 맞춘 사인파 표를 빌려 씁니다.

# %%
first, second = (tokenizer.encode(text) for text in (" 안 먹고 잤다", " 먹고 안 잤다"))
print(first, second, sorted(first) == sorted(second))
pos_table = sinusoidal_encoding(16, W_E.shape[1])                        # (16, C)
SAME = {"en": "{label}: the same set of input vectors? {same}",
        "ko": "{label}: 입력 벡터의 집합이 같은가? {same}"}[COURSE_LANG]
LABELS = {"en": ("no positions", "sinusoidal positions"), "ko": ("위치 없음", "사인파 위치")}[COURSE_LANG]
for label, table in zip(LABELS, (torch.zeros_like(pos_table), pos_table)):
    x1 = embed_with_positions(torch.tensor([first]), W_E, table)[0]      # (T, C)
    x2 = embed_with_positions(torch.tensor([second]), W_E, table)[0]     # (T, C)
    same = sorted(map(tuple, x1.tolist())) == sorted(map(tuple, x2.tolist()))
    print(SAME.format(label=label, same=same))
