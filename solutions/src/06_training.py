# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 6: training, and your model learns
#
# [Open in Colab]({{colab_url}}) · companion of chapter 6, *How a model learns*
#
# Notebooks 1 to 5 used weights that somebody else had learned. Here you
# write every piece of the training that produced them, then run it and
# train a model of your own on the course's corpus:
#
# 1. `cross_entropy`, the next-token loss, with a stable log-sum-exp and an ignore index;
# 2. `perplexity`, the loss as a number of equally likely choices;
# 3. `get_batch`, random windows of the token stream, with their targets;
# 4. `lr_schedule`, linear warmup then cosine decay;
# 5. `clip_grad_norm`, clipping by the global norm;
# 6. `adamw_step`, one AdamW update written from scratch;
# 7. `train_model`, the loop that puts them together.
#
# Then you train, measure the validation loss against the reference run at
# the same step, save the weights with safetensors and load them back.
#
# Budget: every cell but the training run takes well under two minutes on
# two CPU cores. The training run of the default 400 steps took 274 s (about
# four and a half minutes) on the course's two-core test machine while it was
# busy with other work; the training cell prints how long yours took
# (`TRAIN_STEPS` below sets how many steps).

# %% [markdown] lang="ko"
# # 노트북 6: 학습, 그리고 스스로 배우는 모델
#
# [Colab에서 열기]({{colab_url}}) · 6장 *모델은 어떻게 배우는가*와 함께 보는 노트북
#
# 노트북 1~5에서는 누군가 이미 학습해 둔 가중치를 썼습니다. 이번에는 그 가중치를
# 만들어 낸 학습 과정을 한 조각씩 직접 쓰고, 마지막에는 이 강좌의 말뭉치로 여러분의
# 모델을 직접 학습시킵니다.
#
# 1. 다음 토큰 손실 `cross_entropy`: 안정적인 로그-합-지수와 무시할 인덱스까지
# 2. 손실을 "고르게 헷갈리는 후보 수"로 바꾼 `perplexity`
# 3. 토큰 흐름에서 무작위 창과 그 정답을 잘라 내는 `get_batch`
# 4. 직선 예열 뒤 코사인으로 줄어드는 `lr_schedule`
# 5. 전역 노름으로 자르는 `clip_grad_norm`
# 6. 처음부터 직접 쓰는 AdamW 업데이트 한 번, `adamw_step`
# 7. 이 모두를 엮는 반복문 `train_model`
#
# 그다음 실제로 학습을 돌리고, 같은 스텝에서 참고 모델의 학습 기록과 검증 손실을
# 비교하고, 가중치를 safetensors로 저장했다가 다시 불러옵니다.
#
# 시간: 학습을 돌리는 셀을 빼면 CPU 코어 두 개에서 모든 셀이 2분 안에 끝납니다.
# 기본값인 400스텝 학습은 다른 작업으로 바쁜, 이 강좌의 코어 두 개짜리 시험용
# 컴퓨터에서 274초(4분 반쯤) 걸렸습니다. 여러분의 학습에 걸린 시간은 학습 셀이
# 출력합니다(몇 스텝을 돌릴지는 아래 `TRAIN_STEPS`가 정합니다).

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import math
import time
import torch
from tqdm.auto import tqdm
from autograde.notebook import setup, check
from autograde.reference.model import ModelConfig, Transformer
device = setup(COURSE_LANG)

# %% [markdown] lang="en"
# ## 0. The data
#
# The reference model learned from the course's own corpus: the chapters
# and some extra text, in English and Korean. The reference tokenizer turns
# each language into one long stream of token ids, documents separated by
# `<|endoftext|>`; the last tenth of each stream is held out for validation,
# exactly as in the reference run.

# %% [markdown] lang="ko"
# ## 0. 데이터
#
# 참고 모델은 강좌 자체의 말뭉치, 곧 각 장의 본문과 몇 가지 덧붙인 글을 영어와
# 한국어로 읽고 배웠습니다. 참고 토크나이저가 언어마다 말뭉치를 토큰 id 하나의 긴
# 흐름으로 바꾸고, 문서 사이에는 `<|endoftext|>`를 넣습니다. 참고 모델을 학습할 때와
# 똑같이, 흐름마다 마지막 10분의 1은 검증용으로 떼어 둡니다.

# %%
import json
from autograde.reference.checkpoint import REFERENCE_DIR, load_reference
from autograde.reference.corpus import load_corpus
from autograde.reference.train import TrainSettings, reference_config, split_streams

tokenizer = load_reference().tokenizer
REF = TrainSettings()                                            # the reference run's settings
TEXT = {"en": {"step": "step", "lr": "learning rate", "loss": "loss", "train": "your training loss",
               "ref_train": "reference, training", "ref_val": "reference, validation", "you_val": "your validation",
               "tokens": "{lang}: {train:,} training tokens, {valid:,} validation tokens",
               "log_v": "log V", "untrained": "untrained model", "trained": "trained reference",
               "adam": "step {t}: largest difference {d:.2e}",
               "timing": "{n} steps in {s:.0f} s ({per:.2f} s per step)",
               "first_last": "training loss: first step {first:.3f}, last step {last:.3f}",
               "compare": "step {n}: your validation loss {val:.3f}, the reference's {ref:.3f}, gap {gap:.3f} ({verdict})",
               "within": "within {m}", "outside": "outside {m}",
               "no_ref": "step {n}: your validation loss {val:.3f} (the reference logged steps {steps})",
               "same": "same validation loss after loading: {same}"},
        "ko": {"step": "스텝", "lr": "학습률", "loss": "손실", "train": "여러분의 학습 손실",
               "ref_train": "참고 모델, 학습", "ref_val": "참고 모델, 검증", "you_val": "여러분의 검증",
               "tokens": "{lang}: 학습용 토큰 {train:,}개, 검증용 토큰 {valid:,}개",
               "log_v": "log V", "untrained": "학습하지 않은 모델", "trained": "학습된 참고 모델",
               "adam": "{t}번째 스텝: 가장 큰 차이 {d:.2e}",
               "timing": "{n}스텝, {s:.0f}초 (스텝당 {per:.2f}초)",
               "first_last": "학습 손실: 첫 스텝 {first:.3f}, 마지막 스텝 {last:.3f}",
               "compare": "{n}스텝: 여러분의 검증 손실 {val:.3f}, 참고 모델 {ref:.3f}, 차이 {gap:.3f} ({verdict})",
               "within": "허용 범위 {m} 안", "outside": "허용 범위 {m} 밖",
               "no_ref": "{n}스텝: 여러분의 검증 손실 {val:.3f} (참고 모델이 기록한 스텝: {steps})",
               "same": "불러온 뒤에도 검증 손실이 같은가: {same}"}}[COURSE_LANG]
train_streams, valid_streams, stats = split_streams(tokenizer, load_corpus(), REF.validation_fraction)
for lang in train_streams:
    print(TEXT["tokens"].format(lang=lang, train=len(train_streams[lang]), valid=len(valid_streams[lang])))
print(tokenizer.decode(train_streams["ko"][:30].tolist()))

# %% [markdown] lang="en"
# ## 1. Cross-entropy
#
# At every position the model gives logits $z \in \mathbb{R}^V$ for the next
# token, and the text says which token $y$ actually came. The loss is minus
# the log-probability the model gave to $y$, averaged over the $N$ positions
# that count:
#
# $$
# \mathcal{L} = -\frac{1}{N} \sum_{n=1}^{N} \log \frac{\exp(z_{n, y_n})}{\sum_{j=1}^{V} \exp(z_{n, j})}
# = \frac{1}{N} \sum_{n=1}^{N} \Big( \operatorname{lse}(z_n) - z_{n, y_n} \Big)
# $$
#
# with $\operatorname{lse}(z) = \log \sum_j \exp(z_j)$. Computed as written,
# $\exp(1000)$ is `inf` in float32. Subtract the row's maximum $m$ first,
#
# $$
# \operatorname{lse}(z) = m + \log \sum_{j=1}^{V} \exp(z_j - m),
# $$
#
# so that the largest term is $\exp(0) = 1$ and nothing overflows.
#
# `logits` has shape `(..., V)` and `targets` the same shape without the
# last axis. Positions whose target equals `ignore_index` (padding, or the
# prompt of a chat example) do not count: leave them out of the sum **and**
# out of $N$. Their value (-100 by default) is not a token id, so do not use
# it as an index. Return a 0-d tensor, and do not use
# `torch.nn.functional.cross_entropy`, `log_softmax` or `torch.logsumexp`:
# this is the place to write them yourself. Keep it differentiable (no
# `.item()`), since the training loop calls `backward()` on it.

# %% [markdown] lang="ko"
# ## 1. 교차 엔트로피
#
# 모델은 위치마다 다음 토큰의 로짓 $z \in \mathbb{R}^V$를 내놓고, 글에는 실제로 온
# 토큰 $y$가 적혀 있습니다. 손실은 모델이 $y$에 준 로그 확률에 마이너스를 붙인 값을,
# 셈에 넣는 $N$개 위치에 걸쳐 평균 낸 것입니다.
#
# $$
# \mathcal{L} = -\frac{1}{N} \sum_{n=1}^{N} \log \frac{\exp(z_{n, y_n})}{\sum_{j=1}^{V} \exp(z_{n, j})}
# = \frac{1}{N} \sum_{n=1}^{N} \Big( \operatorname{lse}(z_n) - z_{n, y_n} \Big)
# $$
#
# 여기서 $\operatorname{lse}(z) = \log \sum_j \exp(z_j)$입니다. 식 그대로 계산하면
# float32에서 $\exp(1000)$이 `inf`가 됩니다. 그래서 행의 최댓값 $m$을 먼저 뺍니다.
#
# $$
# \operatorname{lse}(z) = m + \log \sum_{j=1}^{V} \exp(z_j - m),
# $$
#
# 이렇게 하면 가장 큰 항이 $\exp(0) = 1$이 되어 넘칠 일이 없습니다.
#
# `logits`의 모양은 `(..., V)`이고, `targets`는 마지막 축만 뺀 같은 모양입니다.
# 정답이 `ignore_index`와 같은 위치(패딩이나 대화 예시의 프롬프트 부분)는 셈에 넣지
# 않습니다. 합에서도 빼고 $N$에서도 빼세요. 그 값(기본값 -100)은 토큰 id가 아니니
# 인덱스로 쓰면 안 됩니다. 0차원 텐서를 돌려주고,
# `torch.nn.functional.cross_entropy`, `log_softmax`, `torch.logsumexp`는 쓰지 마세요.
# 바로 그것들을 직접 쓰는 단계입니다. 학습 반복문이 결과에 `backward()`를 부르므로
# 미분할 수 있게 두세요(`.item()` 금지).

# %% kind="solution" id="cross_entropy"
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(..., V) logits, (...) target ids -> mean loss over the targets that are not ignore_index"""
    ### BEGIN SOLUTION
    z = logits.reshape(-1, logits.shape[-1])                                # (N, V)
    y = targets.reshape(-1)                                                 # (N,)
    keep = y != ignore_index                                                # (N,) positions that count
    m = z.max(dim=-1, keepdim=True).values                                  # (N, 1)
    lse = m[:, 0] + (z - m).exp().sum(dim=-1).log()                         # (N,) log-sum-exp
    picked = z.gather(1, torch.where(keep, y, 0)[:, None])[:, 0]            # (N,) logit of the right token
    return ((lse - picked) * keep).sum() / keep.sum()
    ### END SOLUTION

# %% kind="test" id="check_cross_entropy"


# %% [markdown] lang="en"
# A model that knows nothing spreads its bets evenly, and its loss is
# $\log V$. Here is an untrained model of the reference's shape on one batch
# of text, next to the trained reference model on the same batch.

# %% [markdown] lang="ko"
# 아무것도 모르는 모델은 모든 후보에 고르게 걸고, 그 손실은 $\log V$입니다. 참고
# 모델과 모양이 같지만 학습하지 않은 모델과 학습된 참고 모델을 같은 배치의 글에
# 돌려 비교해 봅시다.

# %%
cfg = reference_config(tokenizer.vocab_size, REF.seq_len).to_dict()
fresh_model = Transformer(ModelConfig.from_dict(cfg))
fresh_model.reset_parameters(seed=REF.seed)
ids = valid_streams["en"][:REF.seq_len + 1]
x, y = ids[None, :-1], ids[None, 1:]
with torch.no_grad():
    print(f"{TEXT['log_v']:20s}  {math.log(tokenizer.vocab_size):.3f}")
    print(f"{TEXT['untrained']:20s}  {float(cross_entropy(fresh_model(x), y)):.3f}")
    print(f"{TEXT['trained']:20s}  {float(cross_entropy(load_reference().model(x), y)):.3f}")

# %% [markdown] lang="en"
# ## 2. Perplexity
#
# The exponential of the mean loss,
#
# $$
# \operatorname{PPL} = \exp(\mathcal{L}),
# $$
#
# reads as the number of tokens the model hesitates between, as if it chose
# uniformly: a model that knows nothing has perplexity $V$. Use your
# `cross_entropy` (the loss is in nats, so the base is $e$) and return a
# Python float.

# %% [markdown] lang="ko"
# ## 2. 퍼플렉서티
#
# 평균 손실에 지수를 취한 값,
#
# $$
# \operatorname{PPL} = \exp(\mathcal{L}),
# $$
#
# 은 모델이 고르게 헷갈리는 후보가 몇 개인지로 읽을 수 있습니다. 아무것도 모르는
# 모델의 퍼플렉서티는 $V$입니다. 여러분의 `cross_entropy`를 쓰고(손실은 자연로그
# 단위라 밑은 $e$입니다), 파이썬 float를 돌려주세요.

# %% kind="solution" id="perplexity"
def perplexity(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> float:
    """exp of the mean cross-entropy, as a float"""
    ### BEGIN SOLUTION
    return math.exp(float(cross_entropy(logits.double(), targets, ignore_index)))
    ### END SOLUTION

# %% kind="test" id="check_perplexity"


# %% [markdown] lang="en"
# ## 3. Batches
#
# One training example is a window of `seq_len` tokens $x$ and the same
# window shifted by one, $y$: at every position the target is the token
# that comes next. `get_batch` draws `batch_size` window starts at once,
# with `torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=generator)`
# (one call, so that the same generator state always gives the same batch),
# and returns `x` and `y`, both `(batch_size, seq_len)`, with `x[b] = ids[s : s + seq_len]` and
# `y[b] = ids[s + 1 : s + seq_len + 1]`. This is how the reference run drew its batches.

# %% [markdown] lang="ko"
# ## 3. 배치
#
# 학습 예시 하나는 `seq_len`개 토큰의 창 $x$와, 그 창을 한 토큰 민 $y$입니다. 위치마다
# 정답은 바로 다음에 오는 토큰입니다. `get_batch`는 창의 시작 위치 `batch_size`개를
# `torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=generator)`로 한꺼번에
# 뽑고(한 번에 뽑아야 생성기 상태가 같을 때 늘 같은 배치가 나옵니다), `x[b] = ids[s : s + seq_len]`,
# `y[b] = ids[s + 1 : s + seq_len + 1]`인 `x`와 `y`를 돌려줍니다. 둘 다 모양은
# `(batch_size, seq_len)`입니다. 참고 모델도 이렇게 배치를 뽑았습니다.

# %% kind="solution" id="get_batch"
def get_batch(ids: torch.Tensor, batch_size: int, seq_len: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) token ids -> x, y of shape (batch_size, seq_len); y is x shifted by one"""
    ### BEGIN SOLUTION
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=generator)   # (B,)
    offsets = torch.arange(seq_len)                                                        # (T,)
    index = starts[:, None] + offsets[None, :]                                             # (B, T)
    return ids[index], ids[index + 1]
    ### END SOLUTION

# %% kind="test" id="check_get_batch"


# %% [markdown] lang="en"
# ## 4. The learning-rate schedule
#
# Early updates are noisy (the optimizer's running averages of section 6
# have seen almost nothing yet), so the rate rises linearly over `warmup` steps, then
# falls along half a cosine from `max_lr` to `min_lr` at `total_steps`, and
# stays there. With $s$ counting steps from 0:
#
# $$
# \eta(s) = \begin{cases}
# \eta_{\max} \, \dfrac{s + 1}{W} & s < W \\[1ex]
# \eta_{\min} + (\eta_{\max} - \eta_{\min}) \, \dfrac{1 + \cos(\pi \, p)}{2},
# \quad p = \min\!\Big(1, \dfrac{s - W}{S - W}\Big) & s \ge W
# \end{cases}
# $$
#
# where $W$ is `warmup` and $S$ is `total_steps`. Return a float.

# %% [markdown] lang="ko"
# ## 4. 학습률 일정
#
# 초반의 업데이트는 잡음이 큽니다(6절에서 다룰 옵티마이저의 이동 평균이 아직 거의 아무것도
# 보지 못했습니다). 그래서 학습률을 `warmup` 스텝 동안 직선으로 올리고, 그 뒤에는
# 코사인 반 주기를 따라 `max_lr`에서 `total_steps`의 `min_lr`까지 내린 다음 그대로
# 둡니다. 스텝 $s$를 0부터 세면 다음과 같습니다.
#
# $$
# \eta(s) = \begin{cases}
# \eta_{\max} \, \dfrac{s + 1}{W} & s < W \\[1ex]
# \eta_{\min} + (\eta_{\max} - \eta_{\min}) \, \dfrac{1 + \cos(\pi \, p)}{2},
# \quad p = \min\!\Big(1, \dfrac{s - W}{S - W}\Big) & s \ge W
# \end{cases}
# $$
#
# $W$는 `warmup`, $S$는 `total_steps`입니다. float를 돌려주세요.

# %% kind="solution" id="lr_schedule"
def lr_schedule(step: int, max_lr: float, min_lr: float, warmup: int, total_steps: int) -> float:
    """The learning rate at `step` (counted from 0): linear warmup, then cosine down to min_lr"""
    ### BEGIN SOLUTION
    if step < warmup:
        return max_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    ### END SOLUTION

# %% kind="test" id="check_lr_schedule"


# %% [markdown] lang="en"
# The schedule of the reference run: 100 steps of warmup to $3 \times 10^{-3}$,
# then down to a tenth of that at step 900.

# %% [markdown] lang="ko"
# 참고 모델을 학습할 때의 일정입니다. 100스텝 동안 $3 \times 10^{-3}$까지 예열하고,
# 900번째 스텝에서 그 10분의 1까지 내려갑니다.

# %%
import matplotlib.pyplot as plt
import koreanize_matplotlib                                       # a Hangul font (NanumGothic) for the labels

plt.rcParams["font.family"] = ["NanumGothic", "DejaVu Sans"]

min_lr = REF.lr / 10
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.plot([lr_schedule(s, REF.lr, min_lr, REF.warmup, REF.steps) for s in range(REF.steps)])
ax.set_xlabel(TEXT["step"])
ax.set_ylabel(TEXT["lr"])
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 5. Clipping by the global norm
#
# Now and then one batch gives a huge gradient, and one update would throw
# the weights far away. Clipping looks at all the gradients as one long
# vector $g$ and shrinks it when its norm passes `max_norm`:
#
# $$
# \lVert g \rVert = \sqrt{\sum_i \lVert g_i \rVert^2}, \qquad
# g_i \leftarrow g_i \cdot \min\!\Big(1, \frac{c}{\lVert g \rVert + 10^{-6}}\Big)
# $$
#
# The direction does not change, only the length, and every tensor is
# scaled by the **same** factor. Return the clipped gradients as a list of new
# tensors (leave the inputs alone) and the norm measured **before** clipping, as a
# float: the training loop logs it. `torch.nn.utils.clip_grad_norm_` is off limits here.

# %% [markdown] lang="ko"
# ## 5. 전역 노름으로 자르기
#
# 가끔 어떤 배치가 유난히 큰 기울기를 내면, 업데이트 한 번에 가중치가 멀리 튕겨 나갑니다.
# 클리핑은 모든 기울기를 하나의 긴 벡터 $g$로 보고, 그 노름이 `max_norm`을 넘으면
# 줄입니다.
#
# $$
# \lVert g \rVert = \sqrt{\sum_i \lVert g_i \rVert^2}, \qquad
# g_i \leftarrow g_i \cdot \min\!\Big(1, \frac{c}{\lVert g \rVert + 10^{-6}}\Big)
# $$
#
# 방향은 그대로 두고 길이만 바꾸며, 모든 텐서에 **같은** 배율을 곱합니다. 자른 기울기는
# 새 텐서의 리스트로 돌려주고(입력은 건드리지 마세요), 자르기 **전**에 잰 노름도 float로
# 함께 돌려주세요. 학습 반복문이 그 값을 기록합니다. 여기서는
# `torch.nn.utils.clip_grad_norm_`을 쓸 수 없습니다.

# %% kind="solution" id="clip_grad_norm"
def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], float]:
    """Scale all gradients by one factor so that their global norm is at most max_norm."""
    ### BEGIN SOLUTION
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    factor = min(1.0, max_norm / (total + 1e-6))
    return [g * factor for g in grads], total
    ### END SOLUTION

# %% kind="test" id="check_clip_grad_norm"


# %% [markdown] lang="en"
# ## 6. One AdamW step
#
# AdamW keeps two running averages per parameter: $m$ of the gradient and
# $v$ of its square. With $t$ the number of this update (1 for the first),
#
# $$
# \begin{aligned}
# \theta &\leftarrow \theta \, (1 - \eta \lambda) \\
# m &\leftarrow \beta_1 m + (1 - \beta_1) \, g \\
# v &\leftarrow \beta_2 v + (1 - \beta_2) \, g^2 \\
# \hat m &= \frac{m}{1 - \beta_1^t}, \qquad \hat v = \frac{v}{1 - \beta_2^t} \\
# \theta &\leftarrow \theta - \eta \, \frac{\hat m}{\sqrt{\hat v} + \epsilon}
# \end{aligned}
# $$
#
# Both averages start at zero, so early on they are too small; dividing by
# $1 - \beta^t$ (the **bias correction**) undoes that. The weight decay
# $\lambda$ pulls the weights towards zero by itself, apart from the
# gradient: that is the "W", **decoupled** weight decay. Adding $\lambda \theta$
# to the gradient instead (L2, what plain Adam does) would let $\hat v$
# shrink the decay of the parameters with large gradients.
#
# Return the new `(param, exp_avg, exp_avg_sq)` as new tensors; do not change
# the inputs. `torch.optim.AdamW` and `torch.optim.Adam` are off limits; the check
# compares you with them.

# %% [markdown] lang="ko"
# ## 6. AdamW 한 스텝
#
# AdamW는 파라미터마다 이동 평균 두 개를 둡니다. 기울기의 평균 $m$과 기울기 제곱의
# 평균 $v$입니다. 이번 업데이트의 번호를 $t$라 하면(첫 업데이트가 1),
#
# $$
# \begin{aligned}
# \theta &\leftarrow \theta \, (1 - \eta \lambda) \\
# m &\leftarrow \beta_1 m + (1 - \beta_1) \, g \\
# v &\leftarrow \beta_2 v + (1 - \beta_2) \, g^2 \\
# \hat m &= \frac{m}{1 - \beta_1^t}, \qquad \hat v = \frac{v}{1 - \beta_2^t} \\
# \theta &\leftarrow \theta - \eta \, \frac{\hat m}{\sqrt{\hat v} + \epsilon}
# \end{aligned}
# $$
#
# 두 평균은 0에서 출발하므로 초반에는 너무 작습니다. $1 - \beta^t$로 나누는 **편향
# 보정**이 이를 바로잡습니다. 가중치 감쇠 $\lambda$는 기울기와 따로, 가중치를 스스로
# 0 쪽으로 당깁니다. 이것이 이름의 "W", **분리된** 가중치 감쇠입니다. 대신 기울기에
# $\lambda \theta$를 더하면(보통 Adam의 L2 방식) 기울기가 큰 파라미터일수록 $\hat v$
# 때문에 감쇠가 약해집니다.
#
# 새 `(param, exp_avg, exp_avg_sq)`를 새 텐서로 돌려주고 입력은 바꾸지 마세요.
# `torch.optim.AdamW`와 `torch.optim.Adam`은 쓸 수 없습니다. 검사가 바로 그것들과
# 여러분의 결과를 비교합니다.

# %% kind="solution" id="adamw_step"
def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
               step: int, lr: float, betas: tuple[float, float], eps: float,
               weight_decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One AdamW update; returns new (param, exp_avg, exp_avg_sq)."""
    ### BEGIN SOLUTION
    beta1, beta2 = betas
    decayed = param * (1 - lr * weight_decay)                      # decoupled weight decay
    m = exp_avg * beta1 + grad * (1 - beta1)
    v = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
    m_hat = m / (1 - beta1 ** step)                                # bias correction
    v_hat = v / (1 - beta2 ** step)
    return decayed - lr * m_hat / (v_hat.sqrt() + eps), m, v
    ### END SOLUTION

# %% kind="test" id="check_adamw_step"


# %% [markdown] lang="en"
# Five steps of your AdamW next to five steps of `torch.optim.AdamW` on the
# same parameter and the same gradients: the largest difference stays at
# the level of float32 rounding.

# %% [markdown] lang="ko"
# 같은 파라미터와 같은 기울기로 여러분의 AdamW와 `torch.optim.AdamW`를 다섯 스텝씩
# 돌려 비교합니다. 가장 큰 차이도 float32 반올림 수준에 머뭅니다.

# %%
g = torch.Generator().manual_seed(0)
mine = torch.randn(4, 3, generator=g)
theirs = torch.nn.Parameter(mine.clone())
opt = torch.optim.AdamW([theirs], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
m, v = torch.zeros_like(mine), torch.zeros_like(mine)
for t in range(1, 6):
    grad = torch.randn(4, 3, generator=g)
    mine, m, v = adamw_step(mine, grad, m, v, t, 1e-2, (0.9, 0.95), 1e-8, 0.1)
    theirs.grad = grad.clone()
    opt.step()
    print(TEXT["adam"].format(t=t, d=float((mine - theirs.detach()).abs().max())))

# %% [markdown] lang="en"
# ## 7. The training loop
#
# `train_model(cfg, streams, settings)` trains a fresh model and returns its
# `state_dict()` and the list of training losses, one float per step. Do it
# in the reference run's order, so that with the same seed you get the same
# losses:
#
# 1. `model = Transformer(ModelConfig.from_dict(cfg))`, then
#    `model.reset_parameters(seed=settings["seed"])` and `model.train()`;
#    one generator, `torch.Generator().manual_seed(settings["seed"])`, for all batches;
#    for each parameter, moments `exp_avg` and `exp_avg_sq` that start at zero;
# 2. at each step `s` (from 0 to `settings["steps"] - 1`):
#    - `lr = lr_schedule(s, settings["lr"], settings["min_lr"], settings["warmup"], settings["total_steps"])`;
#    - for each stream in the order of `streams` (English, then Korean),
#      `get_batch(stream, settings["batch_size"] // len(streams), settings["seq_len"], generator)`;
#      concatenate the `x` parts, and the `y` parts;
#    - `loss = cross_entropy(model(x), y)`; clear the old gradients
#      (`model.zero_grad(set_to_none=True)`), then `loss.backward()`;
#    - `clip_grad_norm` over every parameter's gradient with `settings["clip"]`;
#    - under `torch.no_grad()`, an `adamw_step` for each parameter with step number `s + 1`,
#      `settings["betas"]`, `settings["eps"]`, and `settings["weight_decay"]` for matrices
#      (`p.dim() >= 2`) but 0 for the norms' 1-d weights; copy the new values
#      into the parameter (`p.copy_(...)`) and keep the new moments;
#    - append `loss.item()`.
#
# `progress=True` shows a progress bar. The check trains a small model for a
# few steps with your loop and with the reference loop (written with
# PyTorch's own loss, AdamW and clipping) and compares the losses step by
# step.

# %% [markdown] lang="ko"
# ## 7. 학습 반복문
#
# `train_model(cfg, streams, settings)`은 새 모델을 학습시키고, 그 모델의
# `state_dict()`와 학습 손실의 리스트(스텝마다 float 하나)를 돌려줍니다. 참고 모델을
# 학습할 때와 같은 순서로 하세요. 그래야 시드가 같을 때 손실도 같습니다.
#
# 1. `model = Transformer(ModelConfig.from_dict(cfg))`를 만들고
#    `model.reset_parameters(seed=settings["seed"])`, `model.train()`을 부릅니다.
#    배치는 모두 생성기 하나, `torch.Generator().manual_seed(settings["seed"])`로 뽑습니다.
#    파라미터마다 0에서 출발하는 모멘트 `exp_avg`와 `exp_avg_sq`를 둡니다.
# 2. 스텝 `s`마다(0부터 `settings["steps"] - 1`까지):
#    - `lr = lr_schedule(s, settings["lr"], settings["min_lr"], settings["warmup"], settings["total_steps"])`
#    - `streams`의 순서대로(영어 다음 한국어) 흐름마다
#      `get_batch(stream, settings["batch_size"] // len(streams), settings["seq_len"], generator)`를
#      부르고, `x` 조각끼리, `y` 조각끼리 이어 붙입니다.
#    - `loss = cross_entropy(model(x), y)`를 구하고, 이전 기울기를 지운 뒤
#      (`model.zero_grad(set_to_none=True)`) `loss.backward()`를 부릅니다.
#    - 모든 파라미터의 기울기에 `settings["clip"]`으로 `clip_grad_norm`을 적용합니다.
#    - `torch.no_grad()` 안에서 파라미터마다 스텝 번호 `s + 1`, `settings["betas"]`,
#      `settings["eps"]`로 `adamw_step`을 부릅니다. 가중치 감쇠는 행렬(`p.dim() >= 2`)에는
#      `settings["weight_decay"]`, 정규화 층의 1차원 가중치에는 0입니다. 새 값을
#      파라미터에 복사하고(`p.copy_(...)`) 새 모멘트를 간직합니다.
#    - `loss.item()`을 리스트에 붙입니다.
#
# `progress=True`이면 진행 막대를 보여 줍니다. 검사는 작은 모델을 여러분의 반복문과
# 참고 반복문(PyTorch의 손실, AdamW, 클리핑으로 쓴 것)으로 몇 스텝씩 학습시키고
# 손실을 스텝마다 비교합니다.

# %% kind="solution" id="train_model"
def train_model(cfg: dict, streams: dict[str, torch.Tensor], settings: dict,
                progress: bool = False) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train a fresh model; returns (state_dict, training loss of every step)."""
    ### BEGIN SOLUTION
    s = settings
    model = Transformer(ModelConfig.from_dict(cfg))
    model.reset_parameters(seed=s["seed"])
    model.train()
    generator = torch.Generator().manual_seed(s["seed"])
    params = list(model.parameters())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    per_stream = s["batch_size"] // len(streams)
    losses = []
    for step in tqdm(range(s["steps"]), disable=not progress):
        lr = lr_schedule(step, s["lr"], s["min_lr"], s["warmup"], s["total_steps"])
        parts = [get_batch(ids, per_stream, s["seq_len"], generator) for ids in streams.values()]
        x = torch.cat([part[0] for part in parts])                               # (B, T)
        y = torch.cat([part[1] for part in parts])                               # (B, T)
        loss = cross_entropy(model(x), y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        grads, _ = clip_grad_norm([p.grad for p in params], s["clip"])
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads)):
                decay = s["weight_decay"] if p.dim() >= 2 else 0.0
                new_p, m, v = adamw_step(p, g, *moments[i], step + 1, lr, s["betas"], s["eps"], decay)
                p.copy_(new_p)
                moments[i] = (m, v)
        losses.append(loss.item())
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses
    ### END SOLUTION

# %% kind="test" id="check_train_model"


# %% [markdown] lang="en"
# ## 8. Train your model
#
# The settings below are the reference run's: the same model, batch of 24
# windows of 128 tokens (3,072 tokens per step), peak rate $3 \times 10^{-3}$,
# 100 warmup steps, a cosine planned over 900 steps, seed 1234. With the same
# seed, the same data order and the same updates, your run retraces the
# reference's from its first step. Like the reference run, the loop uses one
# thread, so that even the order of the float sums is the same. The default
# runs the first `TRAIN_STEPS = 400` of those 900 steps. Set
# `TRAIN_STEPS = 900` to go the whole way, ending at a validation loss of
# 4.601 where the reference logged 4.606. Any multiple of 50 is compared below
# with the reference's loss at that step. The cell prints how long your run
# took. For scale, two runs on the course's two-core test machine: one, while
# the machine was busy with other work, took 119 s for 200 steps and 274 s for
# 400; a later one took 447 s for all 900. The time per step (0.69 s in the
# first, 0.50 s in the second) depends mostly on how busy the machine is.

# %% [markdown] lang="ko"
# ## 8. 여러분의 모델 학습시키기
#
# 아래 설정은 참고 모델을 학습할 때와 같습니다. 모델이 같고, 배치는 128토큰짜리 창
# 24개(스텝마다 3,072토큰), 최대 학습률은 $3 \times 10^{-3}$, 예열은 100스텝, 코사인은
# 900스텝에 걸쳐 계획하고, 시드는 1234입니다. 시드와 데이터 순서와 업데이트가 같으니
# 여러분의 학습은 첫 스텝부터 참고 모델의 학습을 그대로 되밟습니다. 반복문은 참고
# 모델처럼 스레드 하나로 돌립니다. 그래야 부동소수점 덧셈의 순서까지 같아집니다.
# 기본값 `TRAIN_STEPS = 400`은 900스텝 가운데 앞의 400스텝을 돌립니다. 끝까지
# 가려면 `TRAIN_STEPS = 900`으로 바꾸세요. 그러면 검증 손실이 4.601로 끝나, 참고
# 모델이 기록한 4.606과 거의 같아집니다. 50의 배수라면 아래에서 그 스텝의 참고
# 손실과 비교합니다. 학습에 걸린 시간은 셀이 출력합니다. 참고로 이 강좌의 코어 두
# 개짜리 시험용 컴퓨터에서 두 번 돌려 보았습니다. 다른 작업으로 바쁠 때 돌린 첫
# 번째는 200스텝에 119초, 400스텝에 274초가 걸렸고, 나중에 돌린 두 번째는 900스텝
# 전체에 447초가 걸렸습니다. 스텝당 시간(첫 번째 0.69초, 두 번째 0.50초)은 주로
# 컴퓨터가 얼마나 바쁜지에 따라 달라집니다.

# %%
import os

TRAIN_STEPS = int(os.environ.get("COURSE_TRAIN_STEPS", 400))    # longer training: set 900 here
settings = {"steps": TRAIN_STEPS, "total_steps": REF.steps, "batch_size": REF.batch_size, "seq_len": REF.seq_len,
            "lr": REF.lr, "min_lr": REF.lr / 10, "warmup": REF.warmup, "weight_decay": REF.weight_decay,
            "betas": (0.9, 0.95), "eps": 1e-8, "clip": 1.0, "seed": REF.seed}
streams = {lang: train_streams[lang] for lang in ("en", "ko")}
torch.set_num_threads(REF.threads)                               # one thread, as in the reference run
start = time.perf_counter()
state, losses = train_model(cfg, streams, settings, progress=True)
seconds = time.perf_counter() - start
print(TEXT["timing"].format(n=TRAIN_STEPS, s=seconds, per=seconds / TRAIN_STEPS))
print(TEXT["first_last"].format(first=losses[0], last=losses[-1]))

# %% [markdown] lang="en"
# ## 9. Validation
#
# The training loss is measured on the batch the model is about to learn
# from. The held-out tenth tells whether it learned the language or only
# the training text. The reference run evaluated 64 windows per language,
# drawn with seed 1235; do the same with your model and your
# `cross_entropy`, then compare with the reference's validation loss at
# the same step. Same seed, same data, same updates: the two runs differ
# only by float rounding, so the gap should stay below `MARGIN = 0.1` nats.
# (Measured with this notebook's solution: 5.0490 against 5.0491 at step 200,
# 4.503 against 4.506 at step 400.)

# %% [markdown] lang="ko"
# ## 9. 검증
#
# 학습 손실은 모델이 곧 배울 배치에서 잰 값입니다. 떼어 둔 10분의 1로 재어 봐야
# 모델이 언어를 배웠는지 학습 글만 외웠는지 알 수 있습니다. 참고 모델은 언어마다
# 시드 1235로 뽑은 창 64개로 검증했습니다. 여러분의 모델과 `cross_entropy`로 똑같이
# 재고, 같은 스텝의 참고 검증 손실과 비교하세요. 시드와 데이터와 업데이트가 같으니
# 두 학습은 부동소수점 반올림만큼만 다릅니다. 그래서 차이는 0.1nat(`MARGIN`)보다
# 작아야 합니다. (이 노트북의 풀이로 재 보니 200스텝에서 5.0490과 5.0491, 400스텝에서
# 4.503과 4.506이었습니다.)

# %%
def validation_loss(model: Transformer) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(REF.seed + 1)         # the reference's evaluation windows
    losses = []
    with torch.no_grad():
        for lang in ("en", "ko"):
            x, y = get_batch(valid_streams[lang], REF.eval_batches * 8, REF.seq_len, generator)
            losses.append(float(cross_entropy(model(x), y)))
    return sum(losses) / len(losses)


mine = Transformer(ModelConfig.from_dict(cfg))
mine.load_state_dict(state)
val = validation_loss(mine)
log = json.loads((REFERENCE_DIR / "train_log.json").read_text())
ref_points = {h["step"]: h for h in log["history"]}
MARGIN = 0.1
if TRAIN_STEPS in ref_points:
    ref_val = ref_points[TRAIN_STEPS]["val_loss"]
    gap = abs(val - ref_val)
    verdict = TEXT["within" if gap < MARGIN else "outside"].format(m=MARGIN)
    print(TEXT["compare"].format(n=TRAIN_STEPS, val=val, ref=ref_val, gap=gap, verdict=verdict))
else:
    print(TEXT["no_ref"].format(n=TRAIN_STEPS, val=val, steps=sorted(ref_points)))

fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(range(1, len(losses) + 1), losses, color="tab:blue", alpha=0.6, label=TEXT["train"])
ax.plot([h["step"] for h in log["history"]], [h["train_loss"] for h in log["history"]], "o", color="tab:gray",
        ms=3, label=TEXT["ref_train"])
ax.plot([h["step"] for h in log["history"]], [h["val_loss"] for h in log["history"]], "-", color="tab:orange",
        label=TEXT["ref_val"])
ax.plot([TRAIN_STEPS], [val], "*", color="tab:red", ms=12, label=TEXT["you_val"])
ax.set_xlabel(TEXT["step"])
ax.set_ylabel(TEXT["loss"])
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 10. Checkpoints with safetensors
#
# A checkpoint is the weights plus what it takes to rebuild the model. The
# safetensors format stores named tensors and a small text header, and
# reading it runs no code (unlike a pickle, which can run anything). Save
# the weights with the configuration in the header, load them into a new
# model, and check that nothing changed: the same validation loss, to the
# last bit, and a few words written by your own model.

# %% [markdown] lang="ko"
# ## 10. safetensors로 체크포인트 저장하기
#
# 체크포인트는 가중치에, 모델을 다시 만드는 데 필요한 정보를 더한 것입니다.
# safetensors 형식은 이름 붙은 텐서와 작은 텍스트 헤더를 저장하며, 읽을 때 아무
# 코드도 실행하지 않습니다(무엇이든 실행할 수 있는 pickle과 다른 점입니다). 설정을
# 헤더에 넣어 가중치를 저장하고, 새 모델에 불러온 뒤, 바뀐 것이 없는지 확인합니다.
# 검증 손실이 마지막 비트까지 같아야 하고, 여러분의 모델이 몇 마디 써 봅니다.

# %%
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from autograde.reference.sampling import generate

save_file({k: v.contiguous() for k, v in state.items()}, "my_model.safetensors",
          metadata={"config": json.dumps(cfg), "steps": str(TRAIN_STEPS)})
with safe_open("my_model.safetensors", framework="pt") as f:
    loaded_cfg = json.loads(f.metadata()["config"])
again = Transformer(ModelConfig.from_dict(loaded_cfg))
again.load_state_dict(load_file("my_model.safetensors"))
print(TEXT["same"].format(same=validation_loss(again) == val))
for prompt in ("The model reads", "언어 모델은"):
    new = generate(again, tokenizer.encode(prompt), 30, greedy=True)
    print(repr(tokenizer.decode(tokenizer.encode(prompt) + new)))

# %% [markdown] lang="en"
# ## 11. The whole run of the reference model
#
# The reference run went on to step 900. Its training loss kept falling,
# but its validation loss stopped improving near step 550 and then rose
# again: the small corpus was being memorized. The course kept the weights
# of its best validation step (early stopping); they are the weights you
# used in notebooks 3 to 5.

# %% [markdown] lang="ko"
# ## 11. 참고 모델의 전체 학습
#
# 참고 모델은 900스텝까지 학습했습니다. 학습 손실은 끝까지 내려갔지만, 검증 손실은
# 550스텝 무렵부터 더 좋아지지 않고 다시 올라갔습니다. 작은 말뭉치를 외우기 시작한
# 것입니다. 그래서 이 강좌는 검증 손실이 가장 낮았던 스텝의 가중치를 남겼습니다(조기
# 종료). 노트북 3~5에서 쓴 가중치가 바로 그것입니다.

# %%
from autograde.figures_training import loss_curve

loss_curve(log, COURSE_LANG)
plt.show()
