# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 8: a model that needs tokens to think
#
# [Open in Colab]({{colab_url}}) · companion of chapter 8, *Models need tokens to think*
#
# Chapter 8 argues that a model does a fixed amount of work per token, so
# a problem that needs many dependent steps can only be solved if the steps
# are written out as tokens. Here you run that argument as an experiment.
# The same tiny transformer learns the same problems written three ways:
# *answer at once*, *think first* (intermediate results, then the answer) and
# *answer first, then explain*. You write the pieces that make the experiment:
#
# 1. `format_completion`, the three formats;
# 2. `loss_mask`, which scores the completion and not the prompt;
# 3. `greedy_decode`, batched greedy decoding until an end marker, bounded;
# 4. `extract_answer`, the answer inside a completion;
# 5. `exact_match`, the accuracy.
#
# Then you train one model per format on two tasks (the parity of 12 bits and
# the last digit of a sum of 8 digits), watch their accuracy during training
# and measure it by problem size.
#
# Budget: the six training runs took 180 s of CPU time in all on the course's
# two-core test machine (one thread; the training cell prints each run's wall
# and CPU time); the other cells take seconds.

# %% [markdown] lang="ko"
# # 노트북 8: 생각하려면 토큰이 필요한 모델
#
# [Colab에서 열기]({{colab_url}}) · 8장 *모델은 토큰으로 생각한다*와 함께 보는 노트북
#
# 8장의 주장은 이렇습니다. 모델은 토큰 하나에 정해진 양의 일만 하므로, 서로 의존하는
# 단계가 많은 문제는 그 단계를 토큰으로 적어야만 풀 수 있습니다. 이 노트북에서는 그
# 주장을 실험으로 확인합니다. 같은 작은 트랜스포머가 같은 문제를 세 가지 형식으로
# 배웁니다. *바로 답하기*, *먼저 생각하기*(중간 결과를 쓰고 나서 답), *답 먼저, 설명은
# 나중*입니다. 실험에 필요한 조각은 여러분이 직접 씁니다.
#
# 1. 세 형식을 만드는 `format_completion`
# 2. 프롬프트는 빼고 완성만 세는 `loss_mask`
# 3. 끝 표시가 나올 때까지(길이 한도 안에서) 배치 단위로 하는 탐욕적 디코딩 `greedy_decode`
# 4. 완성에서 답을 꺼내는 `extract_answer`
# 5. 정확도를 재는 `exact_match`
#
# 그다음 두 과제(12비트의 홀짝, 숫자 8개 합의 끝자리)에서 형식마다 모델을 하나씩
# 학습시키고, 학습 중 정확도와 문제 크기별 정확도를 봅니다.
#
# 시간: 이 강좌의 코어 두 개짜리 시험용 컴퓨터에서 학습 여섯 번에 CPU 시간으로 모두
# 180초가 걸렸습니다(스레드 하나로 돌렸고, 학습 셀이 실행마다 경과 시간과 CPU 시간을
# 출력합니다). 나머지 셀은 몇 초면 끝납니다.

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import os
import random
import time
import torch
from autograde.notebook import setup, check
device = setup(COURSE_LANG)
if device.type == "cpu":
    torch.set_num_threads(1)     # as in the recorded run: the same sums in the same order, the same numbers

END, ANSWER, EXPLAIN = ".", "=", ";"     # ends a completion, opens the answer, ends an answer before its explanation

# %% [markdown] lang="en"
# ## 0. The problems
#
# Every example is a prompt and a completion, one character per token. The
# prompt is the input in a field of blanks as wide as the largest problem,
# then `:`. Two tasks:
#
# - **parity**: bits; the answer is `1` when the number of ones is odd. The
#   intermediate results ("thoughts") are the running parity: after the
#   $k$-th bit, the parity of the first $k$ bits.
# - **digits**: digits to add up, keeping only the last digit of the sum
#   (`3527`: 3 + 5 + 2 + 7 = 17, answer `7`). The thoughts are the running
#   last digit, `3807`.
#
# `lab.make_problem(task, values, largest)` writes one; a problem has a
# `prompt`, its `thoughts` and its `answer`.

# %% [markdown] lang="ko"
# ## 0. 문제
#
# 예시는 모두 프롬프트와 완성으로 이루어지고, 글자 하나가 토큰 하나입니다.
# 프롬프트는 가장 큰 문제의 폭만큼 비워 둔 칸에 입력을 쓰고 `:`를 붙인 것입니다.
# 과제는 두 가지입니다.
#
# - **홀짝(parity)**: 비트열에서 1의 개수가 홀수이면 답은 `1`입니다. 중간 결과("생각")는
#   누적 홀짝입니다. $k$번째 비트까지 읽었을 때 앞의 $k$비트의 홀짝입니다.
# - **끝자리(digits)**: 숫자들을 더한 합의 끝자리만 남깁니다(`3527`이면 3 + 5 + 2 + 7 = 17,
#   답은 `7`). 생각은 합의 누적 끝자리, `3807`입니다.
#
# `lab.make_problem(task, values, largest)`가 문제 하나를 만듭니다. 문제에는 `prompt`,
# `thoughts`, `answer`가 있습니다.

# %%
from autograde.reference import thinking as lab     # the tasks, the model and the trainer

for p in (lab.make_problem("parity", [1, 0, 1, 1, 0], largest=12), lab.make_problem("digits", [3, 5, 2, 7], 8)):
    print(f"prompt {p.prompt!r}  thoughts {p.thoughts!r}  answer {p.answer!r}")
print("vocabulary:", repr(lab.VOCAB))

# %% [markdown] lang="en"
# ## 1. Three formats
#
# `format_completion(thoughts, answer, fmt)` returns what the model learns to
# write after the prompt. `=` opens the answer, `;` separates an answer from
# the explanation after it, `.` ends the completion:
#
# | `fmt` | completion for thoughts `11011`, answer `1` |
# | --- | --- |
# | `"at_once"` | `=1.` |
# | `"think"` | `11011=1.` |
# | `"answer_first"` | `=1;11011.` |
#
# Any other `fmt` raises `ValueError`, naming it.

# %% [markdown] lang="ko"
# ## 1. 세 가지 형식
#
# `format_completion(thoughts, answer, fmt)`는 모델이 프롬프트 뒤에 쓰도록 배울 완성을
# 돌려줍니다. `=`는 답의 시작, `;`는 답과 그 뒤 설명의 구분, `.`는 완성의 끝입니다.
#
# | `fmt` | 생각이 `11011`, 답이 `1`일 때의 완성 |
# | --- | --- |
# | `"at_once"` | `=1.` |
# | `"think"` | `11011=1.` |
# | `"answer_first"` | `=1;11011.` |
#
# 그 밖의 `fmt`가 오면 그 값을 메시지에 밝혀 `ValueError`를 일으키세요.

# %% kind="solution" id="format_completion"
def format_completion(thoughts: str, answer: str, fmt: str) -> str:
    """The completion in one of the three formats: at_once, think, answer_first."""
    ### BEGIN SOLUTION
    if fmt == "at_once":
        return ANSWER + answer + END
    if fmt == "think":
        return thoughts + ANSWER + answer + END
    if fmt == "answer_first":
        return ANSWER + answer + EXPLAIN + thoughts + END
    raise ValueError(f"unknown format {fmt!r}")
    ### END SOLUTION

# %% kind="test" id="check_format_completion"


# %% [markdown] lang="en"
# The same problem in the three formats, side by side:

# %% [markdown] lang="ko"
# 같은 문제를 세 형식으로 나란히 놓아 봅시다.

# %%
p = lab.make_problem("parity", [1, 0, 1, 1, 0], largest=6)
for fmt in lab.FORMATS:
    print(f"{fmt:>12}   {p.prompt}{format_completion(p.thoughts, p.answer, fmt)}")

# %% [markdown] lang="en"
# ## 2. The loss mask
#
# A training sequence is the prompt and the completion, `total_len` tokens,
# padded to `width + 1`. The inputs are its first `width` tokens, and the
# target at position $t$ is token $t + 1$. The prompt's bits are random, so
# asking the model to predict them only adds noise; the padding holds no real
# token at all. `loss_mask(prompt_len, total_len, width)` returns a float
# tensor of shape `(width,)` that is `1.0` at the positions whose target is a
# completion token (the first is the target at position `prompt_len - 1`,
# the last is the end marker, at position `total_len - 2`) and `0.0`
# everywhere else. The loss is then the mean cross-entropy over the 1s.

# %% [markdown] lang="ko"
# ## 2. 손실 마스크
#
# 학습 시퀀스는 프롬프트와 완성을 이은 토큰 `total_len`개이고, 길이가 `width + 1`이
# 되도록 패딩을 붙입니다. 입력은 앞의 `width`개 토큰이고, 위치 $t$의 정답은 토큰 $t + 1$입니다.
# 프롬프트의 비트는 무작위이니 그 비트를 예측하게 하면 잡음만 더해지고, 패딩에는 진짜
# 토큰이 아예 없습니다. `loss_mask(prompt_len, total_len, width)`는 모양이 `(width,)`인
# float 텐서를 돌려줍니다. 정답이 완성의 토큰인 위치(첫 위치는 `prompt_len - 1`, 마지막은
# 끝 표시의 위치인 `total_len - 2`)에서 `1.0`, 나머지에서는 `0.0`입니다. 손실은 마스크가
# 1인 위치에서 낸 교차 엔트로피의 평균입니다.

# %% kind="solution" id="loss_mask"
def loss_mask(prompt_len: int, total_len: int, width: int) -> torch.Tensor:
    """(width,) float: 1.0 where the target is a completion token, 0.0 on the prompt and the padding."""
    ### BEGIN SOLUTION
    mask = torch.zeros(width)
    mask[prompt_len - 1:total_len - 1] = 1.0
    return mask
    ### END SOLUTION

# %% kind="test" id="check_loss_mask"


# %% [markdown] lang="en"
# One small batch in the *think first* format: for each row, the inputs, the
# targets, and under them the mask (`^` where the loss counts).

# %% [markdown] lang="ko"
# *먼저 생각하기* 형식의 작은 배치입니다. 행마다 입력과 정답을 적고, 그 아래에 마스크를
# 표시했습니다(손실을 세는 위치에 `^`).

# %%
mine = lab.guarded_pieces(format_completion, loss_mask, lab.greedy_decode, lab.exact_match)
shown = [lab.make_problem("parity", [1, 0, 1], 6), lab.make_problem("parity", [0, 1, 1, 1, 0, 1], 6)]
x, y, mask = lab.make_batch(shown, "think", mine)
for row in range(len(shown)):
    print("x    ", lab.decode(x[row]).replace(" ", "·"))
    print("y    ", lab.decode(y[row]).replace(" ", "·"))
    print("mask ", "".join("^" if m else " " for m in mask[row].tolist()))

# %% [markdown] lang="en"
# ## 3. Greedy decoding to an end marker
#
# `greedy_decode(model, prompt_ids, max_new, end_id)` continues a batch of
# prompts of one length, `prompt_ids` of shape `(B, T)`. At each step, call
# `model(ids)` (logits of shape `(B, T', V)`), take every row's most likely
# next token at the **last** position, and append it. A row that has written
# `end_id` is finished: from then on it gets `end_id` again. Stop when every
# row is finished, or after `max_new` steps, whichever comes first: a model
# that never writes the end marker must not loop forever. Return only the new
# tokens, shape `(B, n)` with `n <= max_new`.

# %% [markdown] lang="ko"
# ## 3. 끝 표시까지 탐욕적 디코딩
#
# `greedy_decode(model, prompt_ids, max_new, end_id)`는 길이가 같은 프롬프트 배치,
# 모양 `(B, T)`의 `prompt_ids`를 이어 씁니다. 스텝마다 `model(ids)`를 부르고(로짓의 모양은
# `(B, T', V)`), 행마다 **마지막** 위치에서 가장 그럴듯한 다음 토큰을 골라 뒤에 붙입니다.
# `end_id`를 쓴 행은 끝난 것이니 그 뒤로는 계속 `end_id`를 받습니다. 모든 행이 끝나거나
# `max_new` 스텝이 지나면, 둘 중 먼저 일어나는 쪽에서 멈추세요. 끝 표시를 끝내 쓰지 않는
# 모델 때문에 반복문이 영원히 돌면 안 됩니다. 새 토큰만, 모양 `(B, n)`(`n <= max_new`)으로
# 돌려주세요.

# %% kind="solution" id="greedy_decode"
@torch.no_grad()
def greedy_decode(model, prompt_ids: torch.Tensor, max_new: int, end_id: int) -> torch.Tensor:
    """(B, T) prompts -> (B, n) new tokens, n <= max_new; finished rows are filled with end_id."""
    ### BEGIN SOLUTION
    ids = prompt_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new = []
    for _ in range(max_new):
        nxt = model(ids)[:, -1].argmax(-1)                                 # (B,)
        nxt = torch.where(done, torch.full_like(nxt, end_id), nxt)
        new.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == end_id
        if bool(done.all()):
            break
    return torch.stack(new, dim=1)
    ### END SOLUTION

# %% kind="test" id="check_greedy_decode"


# %% [markdown] lang="en"
# ## 4. Reading the answer
#
# `extract_answer(text)` returns the text after the **first** `=`, up to the
# first `;` or `.` after it (or to the end when neither comes), and `None`
# when the text has no `=` at all. `"11011=1."` gives `"1"`, `"=1;11011."`
# gives `"1"`, `"1101"` gives `None`.

# %% [markdown] lang="ko"
# ## 4. 답 읽어 내기
#
# `extract_answer(text)`는 **첫 번째** `=` 뒤의 글을, 그 뒤에 처음 나오는 `;`나 `.`
# 앞까지(둘 다 없으면 끝까지) 돌려주고, 글에 `=`가 아예 없으면 `None`을 돌려줍니다.
# `"11011=1."`이면 `"1"`, `"=1;11011."`이면 `"1"`, `"1101"`이면 `None`입니다.

# %% kind="solution" id="extract_answer"
def extract_answer(text: str) -> str | None:
    """The answer after the first '=', up to ';' or '.'; None without '='."""
    ### BEGIN SOLUTION
    if ANSWER not in text:
        return None
    rest = text.split(ANSWER, 1)[1]
    for stop in (EXPLAIN, END):
        rest = rest.split(stop, 1)[0]
    return rest
    ### END SOLUTION

# %% kind="test" id="check_extract_answer"


# %% [markdown] lang="en"
# ## 5. Exact-match accuracy
#
# `exact_match(completions, answers)` is the fraction of completions whose
# extracted answer equals the right answer exactly, a float from 0 to 1. A
# completion without an answer is wrong.

# %% [markdown] lang="ko"
# ## 5. 정확히 일치하는 비율
#
# `exact_match(completions, answers)`는 완성에서 꺼낸 답이 정답과 정확히 같은 비율을
# 0부터 1까지의 float로 돌려줍니다. 답이 없는 완성은 틀린 것입니다.

# %% kind="solution" id="exact_match"
def exact_match(completions: list[str], answers: list[str]) -> float:
    """The fraction of completions whose extracted answer equals the answer."""
    ### BEGIN SOLUTION
    right = sum(extract_answer(c) == a for c, a in zip(completions, answers))
    return right / len(answers)
    ### END SOLUTION

# %% kind="test" id="check_exact_match"


# %% [markdown] lang="en"
# ## 6. Train one model per format
#
# Your five pieces now run the experiment. The training loop is the one of
# notebook 6, written once in the course's reference code
# (`autograde/reference/thinking.py`, `train_format`): AdamW with warmup and
# a cosine schedule, gradient clipping, one thread on a CPU. It uses your
# `format_completion` and `loss_mask` to build every batch and your
# `greedy_decode` and `exact_match` to measure accuracy on held-out problems.
# Every format starts from the same weights and sees the same problems in the
# same order, so the three models differ only in the order of the tokens they
# learn to write. The model is the course's Llama-style transformer shrunk to
# two layers of width 64.
#
# With no setting changed, the cell runs the recorded experiment of chapter 8
# (seed 0) and prints the same accuracies as the chapter's table. The test
# suite sets `COURSE_THINKING_STEPS` to run a few steps only.

# %% [markdown] lang="ko"
# ## 6. 형식마다 모델 하나씩 학습시키기
#
# 이제 여러분이 쓴 조각 다섯 개로 실험을 돌립니다. 학습 반복문은 노트북 6과 같으며,
# 이 강좌의 참고 코드(`autograde/reference/thinking.py`의 `train_format`)에 한 번만 써
# 두었습니다. 예열과 코사인 일정을 쓰는 AdamW, 기울기 클리핑, CPU에서는 스레드
# 하나입니다. 배치를 만들 때는 여러분의 `format_completion`과 `loss_mask`를, 처음 보는
# 문제로 정확도를 잴 때는 여러분의 `greedy_decode`와 `exact_match`를 씁니다. 형식마다
# 같은 가중치에서 출발하고 같은 문제를 같은 순서로 보니, 세 모델은 배우는 토큰의
# 순서만 다릅니다. 모델은 이 강좌의 Llama 계열 트랜스포머를 층 두 개, 폭 64로 줄인
# 것입니다.
#
# 설정을 바꾸지 않으면 이 셀은 8장에 기록된 실험(시드 0)을 그대로 돌리고, 8장의 표와
# 같은 정확도를 출력합니다. 테스트에서는 `COURSE_THINKING_STEPS`로 몇 스텝만 돌립니다.

# %%
from autograde.figures_thinking import load_run, percent, thinking_curves

TEXT = {"en": {"run": "{task}: {fmt:<12} accuracy {acc:>6}  (wall {wall:.0f} s, CPU {cpu:.0f} s)",
               "same": "same as chapter 8's table (seed 0): {same}",
               "gpu": "(on a GPU the sums run in another order, so the numbers may differ a little)"},
        "ko": {"run": "{task}: {fmt:<12} 정확도 {acc:>6}  (경과 {wall:.0f}초, CPU {cpu:.0f}초)",
               "same": "8장 표(시드 0)와 같은가: {same}",
               "gpu": "(GPU에서는 덧셈 순서가 달라 숫자가 조금 다를 수 있습니다)"}}[COURSE_LANG]
STEPS = os.environ.get("COURSE_THINKING_STEPS")
mine = lab.guarded_pieces(format_completion, loss_mask, greedy_decode, exact_match)
results = {}
for task in lab.TASKS:
    settings = lab.notebook_settings(task, int(STEPS) if STEPS else None)
    results[task] = lab.run_experiment(settings, device=device, pieces=mine)
    for fmt, r in results[task]["formats"].items():
        print(TEXT["run"].format(task=task, fmt=fmt, acc=percent(r["accuracy"]), wall=r["wall_seconds"],
                                 cpu=r["cpu_seconds"]))

# %% [markdown] lang="en"
# ## 7. Accuracy during training, and by problem size
#
# Top: accuracy on held-out problems of the largest size during training,
# the three formats on one figure, with the chance level dotted. Bottom: the
# trained models on every problem size.

# %% [markdown] lang="ko"
# ## 7. 학습 중 정확도와 문제 크기별 정확도
#
# 위: 학습하는 동안 가장 큰 크기의 처음 보는 문제로 잰 정확도입니다. 세 형식을 한
# 그림에 그렸고, 점선은 찍어서 맞힐 확률입니다. 아래: 학습을 마친 모델을 문제 크기마다
# 잰 정확도입니다.

# %%
for task in lab.TASKS:
    thinking_curves(results[task], task, COURSE_LANG)
if not STEPS:                                    # the full run: compare with the recorded one
    recorded = load_run()["full"]
    same = all(results[t]["formats"][f]["accuracy"] == recorded[t]["seeds"]["0"]["formats"][f]["accuracy"]
               and results[t]["formats"][f]["by_size"] == recorded[t]["seeds"]["0"]["formats"][f]["by_size"]
               for t in lab.TASKS for f in lab.FORMATS)
    print(TEXT["same"].format(same=same), "" if device.type == "cpu" else TEXT["gpu"])

# %% [markdown] lang="en"
# ## 8. What to try
#
# - Give *answer at once* more layers (`settings.n_layer = 4`) or more steps.
#   Does it learn the small sizes? The large ones?
# - Replace the thoughts with something useless of the same length, for
#   example a row of `0`s. Does *think first* still win? What does that say
#   about where its advantage comes from?
# - Make the steps bigger: write only every second running result. How big
#   can a step get before one pass cannot do it?

# %% [markdown] lang="ko"
# ## 8. 더 해 볼 것
#
# - *바로 답하기*에 층을 더 주거나(`settings.n_layer = 4`) 스텝을 늘려 보세요. 작은
#   크기는 배울까요? 큰 크기는 어떨까요?
# - 생각을 길이만 같고 쓸모는 없는 것, 예를 들어 `0`을 늘어놓은 것으로 바꿔 보세요.
#   그래도 *먼저 생각하기*가 이길까요? 그 결과로 이 형식의 이점이 어디서 오는지 무엇을
#   알 수 있을까요?
# - 단계를 크게 만들어 보세요. 누적 결과를 하나 건너 하나씩만 적는 식입니다. 단계가
#   얼마나 커지면 순전파 한 번으로 감당하지 못할까요?
