# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 5: sampling, and your model writes
#
# [Open in Colab]({{colab_url}}) · companion of chapter 5, *Sampling: choosing the next token*
# (and of chapter 7 for the KV cache)
#
# A forward pass ends with one score per vocabulary entry and nothing more.
# This notebook writes the code that turns those scores into text:
#
# 1. temperature;
# 2. greedy decoding;
# 3. the top-k filter, exactly $k$ survivors even on ties;
# 4. the top-p (nucleus) filter, with the token that crosses $p$;
# 5. `sample_next`, the whole pipeline ending in a seeded draw;
# 6. `generate`, the autoregressive loop;
# 7. `generate_with_cache`, the same loop with a KV cache, timed against the plain one.
#
# The last cell assembles one text generator from your own work: your
# tokenizer (notebook 1), your attention (notebook 3), your RMSNorm and SwiGLU
# (notebook 4) and your sampler (this notebook), with the trained weights of the
# reference model. It writes Korean and English.
#
# Logits come as a `(B, V)` tensor: `B` rows, one per sequence, and `V` scores
# per row. The reference model is small, so it runs on the CPU here, where
# seeded draws are exactly those of the checks.

# %% [markdown] lang="ko"
# # 노트북 5: 샘플링, 그리고 글을 쓰는 모델
#
# [Colab에서 열기]({{colab_url}}) · 5장 *샘플링: 다음 토큰 고르기*와 함께 보는 노트북
# (KV 캐시는 7장)
#
# 순전파는 어휘 집합의 항목마다 점수 하나를 내놓고 끝납니다. 이 노트북에서는 그
# 점수를 글로 바꾸는 코드를 직접 씁니다.
#
# 1. 온도
# 2. 탐욕적 디코딩
# 3. 동점이 있어도 정확히 $k$개만 남기는 top-k 필터
# 4. $p$를 넘기는 토큰까지 남기는 top-p(뉴클리어스) 필터
# 5. 시드를 준 뽑기로 끝나는 전체 파이프라인 `sample_next`
# 6. 자기회귀 반복문 `generate`
# 7. KV 캐시를 쓰는 같은 반복문 `generate_with_cache`와, 캐시 없는 반복문과의 시간 비교
#
# 마지막 셀에서는 여러분이 만든 부품으로 글 생성기 하나를 조립합니다. 노트북 1의
# 토크나이저, 노트북 3의 어텐션, 노트북 4의 RMSNorm과 SwiGLU, 그리고 이 노트북의
# 샘플러에 참고 모델의 학습된 가중치를 얹으면 한국어와 영어로 글을 씁니다.
#
# 로짓은 `(B, V)` 모양의 텐서로 들어옵니다. 시퀀스마다 한 행씩 `B`개 행이 있고, 행마다
# 점수가 `V`개입니다. 참고 모델은 작아서 여기서는 CPU에서 돌립니다. CPU에서는 시드를
# 준 뽑기 결과가 검사에서 쓰는 값과 정확히 같습니다.

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import time
import torch
from tqdm.auto import tqdm
from autograde.notebook import setup, check
from autograde.reference.checkpoint import load_reference
from autograde.reference.model import KVCache
device = setup(COURSE_LANG)

reference = load_reference()                    # the trained reference model, on the CPU
model, tokenizer = reference.model.requires_grad_(False), reference.tokenizer

# %% [markdown] lang="en"
# ## 0. What the model hands over
#
# Feed a prompt, keep the last row of the logits: that row scores every token
# as the continuation. Here are the eight best candidates after "언어 모델은"
# ("language models ..."), with their probabilities at temperature 1.

# %% [markdown] lang="ko"
# ## 0. 모델이 넘겨주는 것
#
# 프롬프트를 넣고 로짓의 마지막 행만 남깁니다. 이 행이 어휘 집합의 모든 토큰에
# 다음 토큰으로서의 점수를 매깁니다. "언어 모델은" 다음에 올 후보 가운데 상위 여덟
# 개와, 온도 1에서의 확률을 봅시다.

# %%
import matplotlib.pyplot as plt
import koreanize_matplotlib                                       # a Hangul font (NanumGothic) for the labels
from autograde.figures import token_label

plt.rcParams["font.family"] = ["NanumGothic", "DejaVu Sans"]       # DejaVu draws ␣ (space) and ↵ (newline)
TEXT = {"en": {"probability": "probability", "all": "no filter", "top_k": "top-k, k={k}",
               "top_p": "top-p, p={p}", "kept": "{n} tokens kept", "before": "before the filter",
               "after": "after, renormalized", "temperature": "T = {t}", "title": "next token after “{p}”"},
        "ko": {"probability": "확률", "all": "필터 없음", "top_k": "top-k, k={k}",
               "top_p": "top-p, p={p}", "kept": "{n}개 남음", "before": "필터 전",
               "after": "필터 뒤 (재정규화)", "temperature": "T = {t}", "title": "“{p}” 다음 토큰"}}[COURSE_LANG]

prompt_ko = tokenizer.encode("언어 모델은")
logits = model(torch.tensor([prompt_ko]))[:, -1, :]               # (1, V): the next token's scores
probs = torch.softmax(logits[0], dim=-1)                           # (V,)
best = torch.sort(probs, descending=True, stable=True).indices[:8]
for i in best.tolist():
    print(f"{i:5d}  {token_label(tokenizer, i):12s} logit {float(logits[0, i]):6.2f}   p = {float(probs[i]):.3f}")

# %% [markdown] lang="en"
# ## 1. Temperature
#
# The temperature $T > 0$ divides every logit before the softmax:
#
# $$
# p_i = \frac{\exp(z_i / T)}{\sum_{j=1}^{V} \exp(z_j / T)}
# $$
#
# $T < 1$ stretches the gaps between logits and sharpens the distribution,
# $T > 1$ squeezes them and flattens it. `apply_temperature` returns the
# divided **logits**, not probabilities: the filters of steps 3 and 4 work on
# logits, and the softmax comes at the very end. Dividing probabilities by $T$
# instead would do nothing at all once they are renormalized.

# %% [markdown] lang="ko"
# ## 1. 온도
#
# 온도 $T > 0$은 소프트맥스 전에 모든 로짓을 나눕니다.
#
# $$
# p_i = \frac{\exp(z_i / T)}{\sum_{j=1}^{V} \exp(z_j / T)}
# $$
#
# $T < 1$이면 로짓 사이 간격이 벌어져 분포가 뾰족해지고, $T > 1$이면 간격이 좁아져
# 평평해집니다. `apply_temperature`는 확률이 아니라 나눈 **로짓**을 돌려줍니다. 3, 4단계의
# 필터가 로짓을 다루고, 소프트맥스는 맨 마지막에 오기 때문입니다. 반대로 확률을 $T$로
# 나누면 다시 정규화하는 순간 아무 효과도 남지 않습니다.

# %% kind="solution" id="temperature"
def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits: (B, V) float, temperature > 0 -> (B, V) float, logits / temperature; the input is not changed"""
    ### BEGIN SOLUTION
    return logits / temperature
    ### END SOLUTION

# %% kind="test" id="check_temperature"


# %% [markdown] lang="en"
# The same ten candidates at three temperatures, computed with your function.
# At $T = 0.5$ the favourite takes most of the mass; at $T = 2$ the others
# catch up.

# %% [markdown] lang="ko"
# 같은 후보 열 개를 온도 세 가지에서 여러분의 함수로 계산했습니다. $T = 0.5$에서는
# 1등 후보가 확률 대부분을 가져가고, $T = 2$에서는 나머지가 따라붙습니다.

# %%
shown = torch.sort(probs, descending=True, stable=True).indices[:10]       # (10,) most likely ids
labels = [token_label(tokenizer, i) for i in shown.tolist()]
fig, ax = plt.subplots(figsize=(9, 3.4))
for j, t in enumerate((0.5, 1.0, 2.0)):
    p_t = torch.softmax(apply_temperature(logits, t), dim=-1)[0]           # (V,)
    ax.bar(torch.arange(10) + (j - 1) * 0.27, p_t[shown], width=0.27, label=TEXT["temperature"].format(t=t))
ax.set_xticks(range(10), labels, rotation=45)
ax.set_ylabel(TEXT["probability"])
ax.set_title(TEXT["title"].format(p="언어 모델은"))
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 2. Greedy decoding
#
# The simplest rule draws nothing: take the largest logit of every row,
#
# $$
# x_{t+1} = \arg\max_i \, z_i ,
# $$
#
# and on a tie the lowest id, which is what `torch.argmax` already does.
# `greedy` maps `(B, V)` logits to `(B,)` ids.

# %% [markdown] lang="ko"
# ## 2. 탐욕적 디코딩
#
# 가장 단순한 규칙은 아무것도 뽑지 않습니다. 행마다 가장 큰 로짓을 고르고,
#
# $$
# x_{t+1} = \arg\max_i \, z_i ,
# $$
#
# 동점이면 id가 가장 작은 토큰을 고릅니다. `torch.argmax`가 원래 그렇게 동작합니다.
# `greedy`는 `(B, V)` 로짓을 `(B,)` id로 바꿉니다.

# %% kind="solution" id="greedy"
def greedy(logits: torch.Tensor) -> torch.Tensor:
    """logits: (B, V) float -> (B,) torch.long, the id of each row's largest logit"""
    ### BEGIN SOLUTION
    return logits.argmax(dim=-1)
    ### END SOLUTION

# %% kind="test" id="check_greedy"


# %% [markdown] lang="en"
# ## 3. Top-k
#
# Keep the $k$ largest logits of each row and set all the others to
# $-\infty$, so that the softmax gives them probability exactly 0. The edge
# case is a tie at place $k$: with `[3, 1, 1, 0]` and $k = 2$, ids 1 and 2
# share second place. Keep **exactly** $k$ tokens and let the lower id win:
# sort each row in descending order with `stable=True` (equal values keep
# their index order), keep the first $k$ positions of that order, and fill
# the rest with `float("-inf")`. The answer here is `[3, 1, -inf, -inf]`. A
# $k$ larger than $V$ keeps everything.

# %% [markdown] lang="ko"
# ## 3. top-k
#
# 행마다 가장 큰 로짓 $k$개만 남기고 나머지는 $-\infty$로 바꿉니다. 그러면
# 소프트맥스를 지난 뒤 그 토큰들의 확률은 정확히 0입니다. 까다로운 곳은 $k$번째
# 자리의 동점입니다. `[3, 1, 1, 0]`에서 $k = 2$이면 1번과 2번이 공동 2등입니다.
# 그래도 **정확히** $k$개만 남기고 id가 작은 쪽을 살리세요. 각 행을 `stable=True`로
# 내림차순 정렬하면 값이 같은 원소는 인덱스 순서를 지킵니다. 정렬된 순서의 앞
# $k$자리만 남기고 나머지는 `float("-inf")`로 채우면 됩니다. 이 예의 답은
# `[3, 1, -inf, -inf]`입니다. $k$가 $V$보다 크면 모두 남깁니다.

# %% kind="solution" id="top_k"
def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits: (B, V) float, 1 <= k -> (B, V) float, all but the k largest of each row set to -inf
    (k >= V keeps everything); the input is not changed"""
    ### BEGIN SOLUTION
    k = min(k, logits.shape[-1])
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices   # (B, V) ids, best first
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, order[..., :k], True)                                    # (B, V) True for the top k
    return logits.masked_fill(~keep, float("-inf"))
    ### END SOLUTION

# %% kind="test" id="check_top_k"


# %% [markdown] lang="en"
# ## 4. Top-p (nucleus)
#
# Top-p keeps the smallest set of most likely tokens whose probability
# reaches $p$. Sort the probabilities in descending order and keep the token
# of rank $r$ while everything ranked before it is still short of $p$:
#
# $$
# r \in \mathcal{N}_p \iff \sum_{j=1}^{r-1} p_{(j)} < p
# $$
#
# So the token that makes the running sum cross $p$ is **kept**, and the top
# token always is. With the sorted probabilities, that mass before each token
# is `cumsum - sorted_probs`. The decision is made in sorted order, so map it
# back to the token ids (`scatter` with the sort indices) before setting the
# removed logits to $-\infty$. Ties in probability are ranked by id, as in
# top-k.

# %% [markdown] lang="ko"
# ## 4. top-p(뉴클리어스)
#
# top-p는 확률이 높은 토큰부터 모아 합이 $p$에 이르는 가장 작은 집합을 남깁니다.
# 확률을 내림차순으로 정렬하고, 순위 $r$인 토큰은 앞선 토큰들의 합이 아직 $p$에 못
# 미칠 때 남깁니다.
#
# $$
# r \in \mathcal{N}_p \iff \sum_{j=1}^{r-1} p_{(j)} < p
# $$
#
# 그러니 누적합이 $p$를 넘어서게 만드는 토큰은 **남고**, 1등 토큰은 언제나 남습니다.
# 정렬된 확률에서 각 토큰 앞의 확률 합은 `cumsum - sorted_probs`입니다. 남길지는
# 정렬된 순서에서 정해지므로, 지울 로짓을 $-\infty$로 바꾸기 전에 정렬 인덱스로
# `scatter`해서 원래 토큰 id 자리로 되돌려 놓으세요. 확률이 같으면 top-k처럼 id 순으로
# 순위를 매깁니다.

# %% kind="solution" id="top_p"
def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits: (B, V) float, 0 < p <= 1 -> (B, V) float, tokens outside the nucleus set to -inf
    (the most likely token always stays); the input is not changed"""
    ### BEGIN SOLUTION
    probs = torch.softmax(logits, dim=-1)                                              # (B, V)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)     # (B, V) each
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs                          # sum ranked ahead
    keep_sorted = mass_before < p                                                     # crossing token kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)             # back to token ids
    return logits.masked_fill(~keep, float("-inf"))
    ### END SOLUTION

# %% kind="test" id="check_top_p"


# %% [markdown] lang="en"
# What the two filters leave of the real distribution after "언어 모델은",
# shown on its twelve most likely tokens: grey bars are the probabilities
# before the filter, green bars what is left after it, renormalized over the
# survivors; each title counts them. Top-k always keeps $k$ tokens, top-p as
# many as it takes to reach $p$. The model spreads its bets widely after this
# prompt, so a small $p$ is enough to keep a handful.

# %% [markdown] lang="ko"
# "언어 모델은" 다음 토큰의 실제 분포에서 두 필터가 무엇을 남기는지, 가장 그럴듯한
# 토큰 열두 개로 봅시다. 회색 막대는 필터 전의 확률이고, 초록 막대는 필터를 지나고
# 남은 토큰끼리 다시 정규화한 확률이며, 제목에 남은 개수를 적었습니다. top-k는 언제나
# $k$개를 남기고, top-p는 $p$에 닿을 때까지 필요한 만큼 남깁니다. 이 프롬프트 다음에는
# 모델이 여러 후보에 확률을 넓게 나눠 걸기 때문에, $p$가 작아도 여러 개가 남습니다.

# %%
k, p = 5, 0.3
shown = torch.sort(probs, descending=True, stable=True).indices[:12]       # (12,)
labels = [token_label(tokenizer, i) for i in shown.tolist()]
panels = [(TEXT["all"], logits),
          (TEXT["top_k"].format(k=k), top_k_filter(logits, k)),
          (TEXT["top_p"].format(p=p), top_p_filter(logits, p))]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, (title, filtered) in zip(axes, panels):
    kept = torch.softmax(filtered, dim=-1)[0]                               # (V,) renormalized
    ax.bar(range(12), probs[shown], color="lightgray", label=TEXT["before"])
    ax.bar(range(12), kept[shown], width=0.5, color="tab:green", label=TEXT["after"])
    ax.set_xticks(range(12), labels, rotation=90)
    ax.set_title(f"{title}: " + TEXT["kept"].format(n=int((kept > 0).sum())))
axes[0].set_ylabel(TEXT["probability"])
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 5. Drawing the next token
#
# `sample_next` runs the whole pipeline on `(B, V)` logits and returns
# `(B,)` ids:
#
# 1. `apply_temperature`;
# 2. `top_k_filter` when `top_k` is given;
# 3. `top_p_filter` when `top_p` is given, on what top-k left;
# 4. softmax, then one draw per row with
#    `torch.multinomial(probs, 1, generator=generator)`.
#
# The generator is a `torch.Generator` seeded by the caller, so the same seed
# gives the same tokens. The check draws with the same call from a generator
# seeded the same way and compares your draws one by one. When they differ it
# counts 20,000 of your draws and tells you whether the distribution is off or
# only the way of drawing.

# %% [markdown] lang="ko"
# ## 5. 다음 토큰 뽑기
#
# `sample_next`는 `(B, V)` 로짓에 파이프라인 전체를 적용하고 `(B,)` id를 돌려줍니다.
#
# 1. `apply_temperature`
# 2. `top_k`가 주어졌으면 `top_k_filter`
# 3. `top_p`가 주어졌으면 top-k가 남긴 로짓에 `top_p_filter`
# 4. 소프트맥스를 취한 뒤 `torch.multinomial(probs, 1, generator=generator)`로 행마다
#    하나씩 뽑기
#
# `generator`는 호출하는 쪽이 시드를 준 `torch.Generator`라서, 시드가 같으면 같은
# 토큰이 나옵니다. 검사는 같은 시드의 생성기로 같은 호출을 해서 여러분이 뽑은 값과
# 하나하나 비교합니다. 값이 다르면 여러분의 함수로 20,000번 뽑아 세어 보고, 분포가
# 틀렸는지 아니면 뽑는 방법만 다른지 알려 줍니다.

# %% kind="solution" id="sample_next"
def sample_next(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """logits: (B, V) float; generator: a torch.Generator on the logits' device -> (B,) torch.long drawn ids"""
    ### BEGIN SOLUTION
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)                                   # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)     # (B,)
    ### END SOLUTION

# %% kind="test" id="check_sample_next"


# %% [markdown] lang="en"
# Eight draws for the token after "언어 모델은" at $T = 1$ with top-p 0.9, three
# times: twice from seed 0, once from seed 1. The same seed repeats itself.

# %% [markdown] lang="ko"
# "언어 모델은" 다음 토큰을 $T = 1$, top-p 0.9로 여덟 번 뽑는 일을 세 번 해 봅니다.
# 두 번은 시드 0, 한 번은 시드 1입니다. 시드가 같으면 결과도 되풀이됩니다.

# %%
eight = logits.expand(8, -1)                                                # (8, V): the same row 8 times
for seed in (0, 0, 1):
    ids = sample_next(eight, torch.Generator().manual_seed(seed), top_p=0.9)
    print(f"seed {seed}:", " | ".join(token_label(tokenizer, i) for i in ids.tolist()))

# %% [markdown] lang="en"
# ## 6. The autoregressive loop
#
# `generate` repeats one step: run the model on the ids so far, read the
# last row of the logits, pick a token, append it, go again. Its arguments:
#
# - `model_fn(ids)` takes a `(1, T)` tensor of ids and returns `(1, T, V)` logits;
# - without a `generator` the pick is `greedy` (no randomness at all), with
#   one it is `sample_next` with `temperature`, `top_k` and `top_p`;
# - when the picked token is `stop_id`, append it and stop;
# - `context_length`, when given, is the model's window, and the model reads
#   `ids[start:]`: a longer prompt keeps its last `context_length` ids, and
#   when the text outgrows the window the oldest half is dropped, so that the
#   model goes on from the newest `context_length // 2` ids (the rule of
#   chapter 7, which a cached loop can follow with one new prefill every half
#   window);
# - `progress=True` shows a progress bar (`tqdm(range(n), disable=not progress)`).
#
# A worked example of the window rule, with a window of only
# `context_length = 4` and a prompt of 6 ids (positions 0 to 5). Keep a
# variable `start`: the model reads `ids[start:]`. Before the loop,
# `start = max(0, len(ids) - context_length)`. At the top of every step, if
# `len(ids) - start > context_length`, move it to
# `start = len(ids) - context_length // 2`.
#
# | step | `len(ids)` before the step | `start` | the model reads |
# | --- | --- | --- | --- |
# | 1 | 6 | 2 | `ids[2:6]` |
# | 2 | 7 | 5 | `ids[5:7]` |
# | 3 | 8 | 5 | `ids[5:8]` |
# | 4 | 9 | 5 | `ids[5:9]` |
# | 5 | 10 | 8 | `ids[8:10]` |
#
# Step 1 only keeps the last four ids of the long prompt. At step 2 the text
# no longer fits (7 − 2 = 5 ids), so the model goes on from the newest two; the
# window then fills up again until step 5 shifts it once more.
#
# Return only the new ids, as a list of ints. The check runs your loop on the
# trained reference model and compares it with the course's
# `autograde.reference.sampling.generate`, greedy and seeded. One case hands
# it `window_probe` instead, a stand-in model with a window of 8 whose next
# token is always the number of tokens it was fed: the ids it returns are the
# lengths of your windows, so you can read off the step where yours was cut.

# %% [markdown] lang="ko"
# ## 6. 자기회귀 반복문
#
# `generate`는 한 단계를 되풀이합니다. 지금까지의 id로 모델을 돌리고, 로짓의 마지막
# 행을 읽어 토큰 하나를 고르고, 그 토큰을 뒤에 붙이고, 다시 처음으로 돌아갑니다.
# 인자는 다음과 같습니다.
#
# - `model_fn(ids)`는 `(1, T)` 모양의 id 텐서를 받아 `(1, T, V)` 로짓을 돌려줍니다.
# - `generator`가 없으면 `greedy`로 고르고(무작위성이 전혀 없습니다), 있으면
#   `temperature`, `top_k`, `top_p`를 넣어 `sample_next`로 뽑습니다.
# - 고른 토큰이 `stop_id`이면 그 토큰까지 붙이고 멈춥니다.
# - `context_length`가 주어지면 그것이 모델의 창이고, 모델은 `ids[start:]`를 읽습니다.
#   프롬프트가 더 길면 마지막 `context_length`개만 남기고, 글이 창보다 길어지면
#   오래된 절반을 버려 가장 최근 `context_length // 2`개에서 이어 갑니다. 7장의
#   규칙으로, 캐시를 쓰는 반복문도 창의 절반마다 프리필을 한 번 새로 하면 똑같이
#   따를 수 있습니다.
# - `progress=True`이면 진행 막대를 보여 줍니다(`tqdm(range(n), disable=not progress)`).
#
# 창 규칙을 작은 예로 따라가 봅시다. 창은 `context_length = 4`뿐이고, 프롬프트는
# id 6개(위치 0~5)입니다. 변수 `start`를 하나 두면 모델이 읽는 것은 `ids[start:]`입니다.
# 반복문에 들어가기 전에 `start = max(0, len(ids) - context_length)`로 정하고, 단계마다
# 맨 처음에 `len(ids) - start > context_length`이면
# `start = len(ids) - context_length // 2`로 옮깁니다.
#
# | 단계 | 단계 전 `len(ids)` | `start` | 모델이 읽는 것 |
# | --- | --- | --- | --- |
# | 1 | 6 | 2 | `ids[2:6]` |
# | 2 | 7 | 5 | `ids[5:7]` |
# | 3 | 8 | 5 | `ids[5:8]` |
# | 4 | 9 | 5 | `ids[5:9]` |
# | 5 | 10 | 8 | `ids[8:10]` |
#
# 1단계에서는 긴 프롬프트의 마지막 네 개만 남깁니다. 2단계에서는 글이 창을 넘으므로
# (7 − 2 = 5개) 가장 최근 두 개에서 이어 갑니다. 그 뒤로 창이 다시 차오르다가
# 5단계에서 한 번 더 밀립니다.
#
# 새로 만든 id만 정수 리스트로 돌려주세요. 검사는 학습된 참고 모델로 여러분의
# 반복문을 돌려서, 강좌의 `autograde.reference.sampling.generate`와 탐욕적 디코딩,
# 시드를 준 샘플링 두 가지로 비교합니다. 한 경우에는 참고 모델 대신
# `window_probe`를 넘깁니다. 창이 8인 대역 모델로, 다음 토큰으로 늘 자기가 받은
# 토큰의 개수를 내놓습니다. 그래서 돌려받은 id가 곧 여러분이 넘긴 창의 길이이고,
# 창을 어느 단계에서 잘랐는지 그대로 읽을 수 있습니다.

# %% kind="solution" id="generate"
def generate(model_fn, prompt_ids: list[int], max_new_tokens: int, generator: torch.Generator | None = None,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             stop_id: int | None = None, context_length: int | None = None, progress: bool = False) -> list[int]:
    """Continue prompt_ids by up to max_new_tokens tokens; returns the new ids only."""
    ### BEGIN SOLUTION
    ids = list(prompt_ids)
    new_ids = []
    start = max(0, len(ids) - context_length) if context_length else 0      # the model reads ids[start:]
    for _ in tqdm(range(max_new_tokens), disable=not progress):
        if context_length and len(ids) - start > context_length:           # window full: keep the newest half
            start = len(ids) - context_length // 2
        logits = model_fn(torch.tensor([ids[start:]]))[:, -1, :]            # (1, V): the last position
        if generator is None:
            token = int(greedy(logits)[0])
        else:
            token = int(sample_next(logits, generator, temperature, top_k, top_p)[0])
        ids.append(token)
        new_ids.append(token)
        if token == stop_id:
            break
    return new_ids
    ### END SOLUTION

# %% kind="test" id="check_generate"


# %% [markdown] lang="en"
# The reference model continues a Korean prompt greedily and an English one
# with $T = 0.8$ and top-p 0.9. Greedy text from a model this small soon
# starts repeating itself; sampling wanders more. `<|endoftext|>` ends a text.
# When the last token stops in the middle of a Hangul syllable, the decoder
# prints � for the incomplete bytes, as in notebook 1.

# %% [markdown] lang="ko"
# 참고 모델이 한국어 프롬프트는 탐욕적 디코딩으로, 영어 프롬프트는 $T = 0.8$,
# top-p 0.9로 이어 씁니다. 이렇게 작은 모델은 탐욕적으로 쓰면 금세 같은 말을
# 되풀이하고, 샘플링하면 더 이리저리 돌아다닙니다. `<|endoftext|>`가 나오면 글이 끝납니다.
# 마지막 토큰이 한글 음절 중간에서 끝나면, 노트북 1에서 본 것처럼 디코더가 덜 끝난
# 바이트를 �로 보여 줍니다.

# %%
def model_fn(ids: torch.Tensor) -> torch.Tensor:
    """(1, T) ids -> (1, T, V) logits of the reference model"""
    return model(ids)


eot = tokenizer.special_tokens["<|endoftext|>"]
prompt_en = tokenizer.encode("The model reads")
new_ko = generate(model_fn, prompt_ko, 40, stop_id=eot, progress=True)
new_en = generate(model_fn, prompt_en, 40, torch.Generator().manual_seed(0), temperature=0.8, top_p=0.9,
                  stop_id=eot, progress=True)
print(tokenizer.decode(prompt_ko + new_ko))
print(tokenizer.decode(prompt_en + new_en))

# %% [markdown] lang="en"
# ## 7. The KV cache
#
# The loop above runs the model over the whole text at every step, although
# the keys and values of the earlier tokens never change (chapter 7). The
# reference model can keep them: pass `cache=KVCache(model.cfg.n_layer)` and
# every call appends its keys and values to the cache and attends over all
# of them. Generation then has two phases:
#
# - **prefill**: one call on the whole prompt, `(1, T)`, fills the cache;
# - **decode**: each later call feeds only the newest token, `(1, 1)`.
#
# Both phases give logits whose last row predicts the next token, so the pick
# is the same as in `generate`. Create the cache once, before the prefill.
# (This version assumes that the prompt and the new tokens fit in the model's
# window of `model.cfg.max_seq_len` tokens.) The check compares your tokens
# with the reference's and also watches how you call the model.

# %% [markdown] lang="ko"
# ## 7. KV 캐시
#
# 위의 반복문은 단계마다 지금까지의 글 전체를 모델에 통과시킵니다. 앞선 토큰들의 키와
# 값은 바뀌지 않는데도 말이죠(7장). 참고 모델은 이것을 보관해 둘 수 있습니다.
# `cache=KVCache(model.cfg.n_layer)`를 넘기면 호출할 때마다 그 호출의 키와 값을 캐시에
# 덧붙이고, 쌓인 키와 값 전체에 어텐션을 합니다. 그러면 생성은 두 단계로 나뉩니다.
#
# - **프리필**: 프롬프트 전체 `(1, T)`로 한 번 호출해 캐시를 채웁니다.
# - **디코드**: 그 뒤의 호출은 가장 최근 토큰 하나 `(1, 1)`만 넣습니다.
#
# 어느 단계든 로짓의 마지막 행이 다음 토큰을 예측하므로, 고르는 방법은 `generate`와
# 같습니다. 캐시는 프리필 전에 한 번만 만드세요. (이 버전은 프롬프트와 새 토큰을 합쳐
# 모델의 창 `model.cfg.max_seq_len`개 안에 들어간다고 가정합니다.) 검사는 여러분의
# 토큰을 참고 구현과 비교하고, 모델을 어떻게 부르는지도 지켜봅니다.

# %% kind="solution" id="generate_with_cache"
@torch.no_grad()
def generate_with_cache(model, prompt_ids: list[int], max_new_tokens: int,
                        generator: torch.Generator | None = None, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None, progress: bool = False) -> list[int]:
    """generate() with a KV cache: one prefill, then one token per call; returns the new ids only."""
    ### BEGIN SOLUTION
    cache = KVCache(model.cfg.n_layer)
    step_input = torch.tensor([list(prompt_ids)])                          # prefill: (1, T)
    new_ids = []
    for _ in tqdm(range(max_new_tokens), disable=not progress):
        logits = model(step_input, cache=cache)[:, -1, :]                  # (1, V)
        if generator is None:
            token = int(greedy(logits)[0])
        else:
            token = int(sample_next(logits, generator, temperature, top_k, top_p)[0])
        new_ids.append(token)
        step_input = torch.tensor([[token]])                               # decode: (1, 1)
    return new_ids
    ### END SOLUTION

# %% kind="test" id="check_generate_with_cache"


# %% [markdown] lang="en"
# How much does the cache save? Both loops write the same 100 greedy tokens
# after a short prompt; the timer runs around each. Without the cache a step
# costs time in proportion to the whole text so far, with it a step costs one
# token's worth. The reference model is tiny and its window short, so a good
# part of every call is fixed overhead and the gap stays modest here; it grows
# with longer texts and bigger models.

# %% [markdown] lang="ko"
# 캐시로 얼마나 아낄까요? 두 반복문이 짧은 프롬프트 뒤에 똑같은 토큰 100개를 탐욕적으로
# 쓰는 시간을 각각 잽니다. 캐시가 없으면 한 단계에 드는 시간이 지금까지 쓴 글 전체의
# 길이에 비례하고, 캐시가 있으면 토큰 하나만큼만 듭니다. 다만 참고 모델은 아주 작고
# 창도 짧아서 호출할 때마다 드는 고정 비용이 큰 몫을 차지하므로, 여기서는 차이가
# 그리 크지 않습니다. 글이 길어지고 모델이 커질수록 차이는 벌어집니다.

# %%
prompt = tokenizer.encode("The model reads tokens, not letters.")
n_new = 100
generate(model_fn, prompt, 3)                                              # warm-up
start = time.perf_counter()
plain = generate(model_fn, prompt, n_new, progress=True)
seconds_plain = time.perf_counter() - start
start = time.perf_counter()
cached = generate_with_cache(model, prompt, n_new, progress=True)
seconds_cached = time.perf_counter() - start
print("same tokens:", plain == cached)
print(f"without cache {seconds_plain:.2f} s, with cache {seconds_cached:.2f} s: "
      f"{seconds_plain / seconds_cached:.1f}x faster")

# %% [markdown] lang="en"
# ## 8. Your model writes
#
# Every function that passed its check was saved to `my_llm/` next to the
# notebook. `build_generator()` puts them together: your `encode` and
# `decode` (notebook 1, with the merges of the reference tokenizer), your
# `multi_head_attention` (notebook 3), your `rms_norm` and `swiglu_ffn`
# (notebook 4), stacked the way the reference model stacks its blocks, and
# your `generate` (this notebook). The weights are the trained reference
# model's. Each piece is checked once more as it is loaded; one that is
# missing or no longer passes is replaced by the reference version, and the
# cell says which.
#
# In Colab every notebook gets its own runtime, so `my_llm/` holds only this
# notebook's pieces unless you upload the folder from the others; locally,
# run the notebooks in one folder.

# %% [markdown] lang="ko"
# ## 8. 여러분의 모델이 글을 씁니다
#
# 검사를 통과한 함수는 모두 노트북 옆의 `my_llm/`에 저장되어 있습니다.
# `build_generator()`는 이것들을 조립합니다. 노트북 1의 `encode`와 `decode`(참고
# 토크나이저의 병합 목록과 함께), 노트북 3의 `multi_head_attention`, 노트북 4의
# `rms_norm`과 `swiglu_ffn`을 참고 모델과 같은 방식으로 블록에 쌓고, 이 노트북의
# `generate`로 글을 씁니다. 가중치는 학습된 참고 모델의 것입니다. 부품마다 불러올 때
# 검사를 한 번 더 거치고, 없거나 더는 통과하지 못하는 부품은 참고 구현으로 바꾼 뒤
# 어느 부품을 바꿨는지 알려 줍니다.
#
# Colab에서는 노트북마다 런타임이 따로라서, 다른 노트북의 `my_llm/` 폴더를 올려 두지
# 않으면 이 노트북의 부품만 들어 있습니다. 내 컴퓨터에서는 노트북들을 한 폴더에서
# 실행하세요.

# %%
from autograde.assemble import build_generator

write = build_generator()
for text in ("언어 모델은", "The model reads"):
    print(write(text, max_new_tokens=60, temperature=0.8, top_p=0.9, seed=0))
    print()
