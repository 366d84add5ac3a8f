# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 9: reasoning, votes and rewards
#
# [Open in Colab]({{colab_url}}) · companion of chapter 9, *Reasoning models*
# (and of chapter 8, *Models need tokens to think*)
#
# A reasoning model writes a long chain of thought and then an answer. Around
# that one act sits a good deal of plain code: something has to read the
# answer out of the text, count votes when several chains disagree, measure
# how often a model solves a problem when it may try $k$ times, and turn a
# finished chain into the reward that reinforcement learning climbs. You write
# each of these pieces here:
#
# 1. `extract_answer`, the number a completion commits to (or `None`);
# 2. `majority_vote`, self-consistency over many chains;
# 3. `pass_at_k`, the unbiased estimate of "solved within $k$ tries";
# 4. `reward`, a rule-based reward for format and correctness;
# 5. `group_advantages`, the group-relative advantages of GRPO;
# 6. then GRPO itself, on a tiny model of the course that adds two-digit
#    numbers: `token_logprobs`, `completion_mask`, `grpo_loss` and
#    `sample_group`, and a run of reinforcement learning that lifts its
#    pass@1 from 25% to about 80% on your CPU.
#
# The first five pieces need no model. A small simulated solver, seeded so
# that every run prints the same numbers, stands in for one and shows what
# voting and pass@k do as the number of samples grows. The last section is
# optional: where a real chat model such as Qwen3-0.6B is already on your
# disk, it compares thinking with answering at once; anywhere else it says so
# in one line and does nothing.
#
# Budget: the graded part runs in seconds; the GRPO run of section 7 takes
# about 1.5 minutes of CPU time (less with `COURSE_GRPO_STEPS`).

# %% [markdown] lang="ko"
# # 노트북 9: 추론, 투표, 보상
#
# [Colab에서 열기]({{colab_url}}) · 9장 *추론 모델*과 함께 보는 노트북
# (8장 *모델은 토큰으로 생각한다*와도 이어집니다)
#
# 추론 모델은 긴 사고의 사슬을 쓴 다음 답을 씁니다. 이 일 하나를 둘러싸고 평범한
# 코드가 꽤 많이 필요합니다. 글에서 답을 읽어 내야 하고, 사슬 여러 개가 서로 다른
# 답을 내면 표를 세야 하고, $k$번 시도할 수 있을 때 모델이 문제를 얼마나 자주 푸는지
# 재야 하고, 다 쓴 사슬을 강화학습이 끌어올릴 보상으로 바꿔야 합니다. 이 노트북에서
# 그 조각을 하나씩 직접 씁니다.
#
# 1. 풀이가 내놓은 숫자 답(없으면 `None`)을 읽는 `extract_answer`
# 2. 여러 사슬의 답으로 다수결을 내는 자기 일관성, `majority_vote`
# 3. "$k$번 안에 풀었다"의 편향 없는 추정값, `pass_at_k`
# 4. 형식과 정답 여부를 따지는 규칙 기반 보상, `reward`
# 5. GRPO의 그룹 상대 이점, `group_advantages`
# 6. 그다음 GRPO 자체: 두 자리 덧셈을 하는 이 강좌의 작은 모델을 두고 `token_logprobs`,
#    `completion_mask`, `grpo_loss`, `sample_group`을 쓰고, 강화학습을 직접 돌려 여러분의
#    CPU에서 pass@1을 25%에서 80%쯤까지 끌어올립니다.
#
# 처음 다섯 조각에는 모델이 필요 없습니다. 시드를 고정해 실행할 때마다 같은 숫자를
# 내는 작은 모의 풀이기가 모델 대신 답을 쓰고, 샘플 수가 늘 때 투표와 pass@k가 어떻게
# 움직이는지 보여 줍니다. 마지막 절은 선택 사항입니다. Qwen3-0.6B 같은 실제 대화
# 모델을 이미 내려받아 두었다면 생각하고 답할 때와 곧바로 답할 때를 비교하고,
# 그렇지 않으면 한 줄로 알리고 아무것도 하지 않습니다.
#
# 시간: 채점하는 부분은 몇 초면 끝나고, 7절의 GRPO 실행은 CPU 시간으로 1분 30초쯤
# 걸립니다(`COURSE_GRPO_STEPS`로 줄일 수 있습니다).

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import math
import re
from collections import Counter
import torch
from autograde.notebook import setup, check
device = setup(COURSE_LANG)

FORMAT_REWARD = 0.1          # the reward of a completion in the format whose answer is wrong

# %% [markdown] lang="en"
# ## 0. A simulated solver
#
# Real chains of thought are slow to produce on a CPU, so most of this
# notebook uses made-up ones. `simulated_completion(target, p_correct, g)`
# writes one completion for a question whose answer is `target`. It is right
# with probability `p_correct`. When it is wrong, half the time it falls into
# the same trap (an answer 10 too large, the kind of slip a whole class makes
# on the same problem) and otherwise misses by a few units in a random
# direction. One completion in ten is cut off before it gives any answer. The
# wording changes from one completion to the next, in English and Korean, the
# way real models vary theirs.

# %% [markdown] lang="ko"
# ## 0. 모의 풀이기
#
# 실제 사고의 사슬은 CPU에서 만들려면 오래 걸리므로, 이 노트북은 대부분 지어낸
# 풀이를 씁니다. `simulated_completion(target, p_correct, g)`는 답이 `target`인 문제의
# 풀이를 하나 씁니다. 확률 `p_correct`로 맞히고, 틀릴 때는 절반은 늘 같은 함정(정답보다
# 10 큰 답으로, 한 반 학생들이 같은 문제에서 똑같이 저지르는 실수와 비슷합니다)에 빠지고,
# 나머지 절반은 무작위로 정답보다 몇 크거나 작은 답을 냅니다. 열 개 중 하나는 답을
# 쓰기 전에 잘립니다. 실제 모델이 그렇듯 말투는 풀이마다 바뀌고, 영어로도 한국어로도
# 나옵니다.

# %%
TEXT = {"en": {"samples": "chains per question (m)", "accuracy": "accuracy of the majority answer",
               "single": "p = {p} (one chain)", "vote": "vote, p = {p}", "k": "k",
               "pass": "pass@k (mean over questions)", "truth": "true pass@k",
               "unbiased": "unbiased estimator", "plugin": "1 - (1 - c/n)^k",
               "vote_title": "Self-consistency with a common trap",
               "pass_title": "pass@k from n = {n} samples per question",
               "reward_row": "{r:.1f}  {text}", "adv_row": "reward {r:.1f}  advantage {a:+.3f}",
               "rounding": "all rewards {v} in a group of {g}: (r - mean) / (std + eps) gives {naive:.4f}, "
                           "group_advantages gives {mine}",
               "no_model": "optional section skipped: {name} is not in the local Hugging Face cache "
                           "(nothing is downloaded here)",
               "off": "optional section skipped: COURSE_REAL_MODEL is off",
               "header": "{mode:>8}  {ok:>5}  {tokens:>6}  question", "direct": "direct",
               "thinking": "thinking", "tokens": "tokens", "row": "{mode:>8}  {ok:>5}  {tokens:>6}  {q}"},
        "ko": {"samples": "문제마다 뽑은 사슬 수 (m)", "accuracy": "다수결 답의 정확도",
               "single": "p = {p} (사슬 하나)", "vote": "투표, p = {p}", "k": "k",
               "pass": "pass@k (문제 평균)", "truth": "실제 pass@k",
               "unbiased": "편향 없는 추정량", "plugin": "1 - (1 - c/n)^k",
               "vote_title": "흔한 함정이 있을 때의 자기 일관성",
               "pass_title": "문제마다 샘플 n = {n}개로 잰 pass@k",
               "reward_row": "{r:.1f}  {text}", "adv_row": "보상 {r:.1f}  이점 {a:+.3f}",
               "rounding": "그룹 {g}개의 보상이 모두 {v}일 때: (r - mean) / (std + eps)는 {naive:.4f}, "
                           "group_advantages는 {mine}",
               "no_model": "선택 절을 건너뜁니다: {name} 모델이 로컬 Hugging Face 캐시에 없습니다 "
                           "(여기서는 아무것도 내려받지 않습니다)",
               "off": "선택 절을 건너뜁니다: COURSE_REAL_MODEL이 off입니다",
               "header": "{mode:>8}  {ok:>5}  {tokens:>6}  문제", "direct": "바로 답",
               "thinking": "생각 후", "tokens": "토큰 수", "row": "{mode:>8}  {ok:>5}  {tokens:>6}  {q}"}}[COURSE_LANG]

TRAP = 10                     # the wrong answer many chains share: target + TRAP


def simulated_completion(target: int, p_correct: float, g: torch.Generator) -> str:
    """One made-up completion for a question whose answer is `target`."""
    roll = float(torch.rand(1, generator=g))
    if roll < p_correct:
        said = target
    elif roll < p_correct + (1 - p_correct) / 2:
        said = target + TRAP                                             # the common trap
    else:
        miss = int(torch.randint(1, 6, (1,), generator=g))
        said = target + (miss if bool(torch.randint(0, 2, (1,), generator=g)) else -miss)
    a = int(torch.randint(2, 50, (1,), generator=g))
    work = f"{target - a} + {a} = {said}, checking: {said} - {a} = {said - a}"
    style = int(torch.randint(0, 10, (1,), generator=g))
    if style == 0:
        return f"<think>{work}, and then"                               # cut off: no answer
    endings = (f"Answer: {said:,}", f"\\boxed{{{said:,}}}", f"정답: {said:,}개", f"So the answer: {said}.")
    return f"<think>{work}</think>\n{endings[style % 4]}"


g = torch.Generator().manual_seed(0)
for _ in range(4):
    print(repr(simulated_completion(1234, 0.5, g)))

# %% [markdown] lang="en"
# ## 1. Reading the answer
#
# A grader cannot ask the model what it meant; it reads the text. Models are
# taught to mark their final answer, and this notebook accepts two marks:
#
# - a LaTeX box, `\boxed{...}`: when the completion has one or more, the
#   answer is the **first number inside the last box**;
# - otherwise a marker, `Answer:` (in any letter case, spaces allowed before
#   the colon) or the Korean `답:` (which also covers `정답:`): the answer is
#   the **first number after the last marker**. A model may correct itself,
#   so the last marker counts; the numbers after the answer are explanation,
#   so the first one after it counts.
#
# With neither a box nor a marker, or with no number where the answer should
# be, return `None`: a number somewhere in the text is not an answer.
#
# A number may start with a sign, `-`, `+` or the typographic minus `−`
# (U+2212, what typesetting and many models write); may group its thousands
# with commas, `1,234,567`; and may have a decimal part, `3.75`. Return it as
# a `float` (`-1234.5`). The text around it may be English, Korean, LaTeX or
# anything else.
#
# A regular expression for the number is the natural tool. Two details of
# Python's `re` help: in an alternation `A|B` the first alternative that
# leads to a match is taken, so put the comma form before plain digits; and
# `re.IGNORECASE` makes `answer` match `Answer` and `ANSWER`.

# %% [markdown] lang="ko"
# ## 1. 답 읽어 내기
#
# 채점기는 모델에게 무슨 뜻이었는지 물어볼 수 없고 글만 읽습니다. 모델은 최종 답에
# 표시를 하도록 배우며, 이 노트북은 두 가지 표시를 받아들입니다.
#
# - LaTeX 상자 `\boxed{...}`: 풀이에 상자가 하나라도 있으면 **마지막 상자 안의 첫
#   숫자**가 답입니다.
# - 상자가 없으면 표지: `Answer:`(대소문자를 가리지 않고, 쌍점 앞에 빈칸이 있어도 됩니다)나
#   한국어 `답:`(`정답:`도 여기에 들어갑니다)입니다. 답은 **마지막 표지 뒤의 첫
#   숫자**입니다. 모델은 스스로 답을 고칠 수 있으니 마지막 표지를 따르고, 답 뒤에 오는
#   숫자는 설명이니 표지 뒤의 첫 숫자를 씁니다.
#
# 상자도 표지도 없거나, 답이 있어야 할 자리에 숫자가 없으면 `None`을 돌려주세요.
# 글 어딘가에 있는 숫자는 답이 아닙니다.
#
# 숫자는 부호 `-`, `+`, 또는 인쇄용 빼기 기호 `−`(U+2212, 조판에서 쓰고 많은 모델도
# 쓰는 기호)로 시작할 수 있고, `1,234,567`처럼 천 단위를 쉼표로 묶을 수 있으며,
# `3.75`처럼 소수 부분이 있을 수 있습니다. `float`로 돌려주세요(`-1234.5`). 숫자
# 앞뒤의 글은 영어든 한국어든 LaTeX든 무엇이든 될 수 있습니다.
#
# 숫자를 찾는 데는 정규식이 제격입니다. 파이썬 `re`의 두 가지 성질이 도움이 됩니다.
# `A|B` 같은 선택에서는 일치에 이르는 대안 가운데 첫 번째가 쓰이니, 쉼표가 있는 꼴을
# 쉼표 없는 숫자보다 앞에 두세요. `re.IGNORECASE`를 주면 `answer`가 `Answer`, `ANSWER`와도
# 일치합니다.

# %% kind="solution" id="extract_answer"
def extract_answer(completion: str) -> float | None:
    """The first number in the last \\boxed{...}, else after the last 'Answer:' / '답:'; else None."""
    ### BEGIN SOLUTION
    number = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")     # -1,234.5  +7  −3
    boxes = re.findall(r"\\boxed\{([^{}]*)\}", completion)
    if boxes:
        region = boxes[-1]
    else:
        markers = list(re.finditer(r"(?:answer|답)\s*:", completion, re.IGNORECASE))
        if not markers:
            return None
        region = completion[markers[-1].end():]
    found = number.search(region)
    if found is None:
        return None
    return float(found.group().replace(",", "").replace("\u2212", "-"))
    ### END SOLUTION

# %% kind="test" id="check_extract_answer"


# %% [markdown] lang="en"
# Your function on the simulated solver's four styles, and on the cut-off
# completion:

# %% [markdown] lang="ko"
# 모의 풀이기의 네 가지 말투와 잘린 풀이에 여러분의 함수를 써 봅시다.

# %%
g = torch.Generator().manual_seed(3)
for _ in range(6):
    text = simulated_completion(1234, 0.5, g)
    print(f"{str(extract_answer(text)):>8}  <-  {text!r}")

# %% [markdown] lang="en"
# ## 2. Self-consistency: the majority vote
#
# Sample $m$ chains, read each one's answer $a_i$, and keep the most frequent:
#
# $$
# \hat{a} = \arg\max_{a} \sum_{i=1}^{m} \mathbb{1}\left[a_i = a\right]
# $$
#
# `majority_vote(answers)` takes the extracted answers, floats and `None`s.
# A `None` is a chain that gave no answer: it does not vote. When no answer
# is left, return `None`. Two answers can tie; the rule here is the one that
# needs no randomness: among the answers with the most votes, return the one
# that appears **first** in the list. (`collections.Counter` remembers the
# order in which it first met each key, and its `most_common` keeps that
# order among equal counts.)

# %% [markdown] lang="ko"
# ## 2. 자기 일관성: 다수결
#
# 사슬 $m$개를 뽑아 각 사슬의 답 $a_i$를 읽고, 가장 많이 나온 답을 고릅니다.
#
# $$
# \hat{a} = \arg\max_{a} \sum_{i=1}^{m} \mathbb{1}\left[a_i = a\right]
# $$
#
# `majority_vote(answers)`는 읽어 낸 답들, 곧 float와 `None`이 섞인 리스트를 받습니다.
# `None`은 답을 내지 못한 사슬이라 투표하지 않습니다. 남은 답이 하나도 없으면 `None`을
# 돌려주세요. 두 답이 동점일 수도 있습니다. 여기서는 무작위가 필요 없는 규칙을
# 씁니다. 표가 가장 많은 답들 가운데 목록에서 **먼저** 나온 답을 돌려주세요.
# (`collections.Counter`는 키를 처음 만난 순서를 기억하고, `most_common`은 개수가
# 같은 키끼리 그 순서를 지킵니다.)

# %% kind="solution" id="majority_vote"
def majority_vote(answers: list[float | None]) -> float | None:
    """The most frequent answer (None does not vote); ties go to the answer seen first."""
    ### BEGIN SOLUTION
    votes = Counter(a for a in answers if a is not None)        # keys in the order first seen
    if not votes:
        return None
    return votes.most_common(1)[0][0]
    ### END SOLUTION

# %% kind="test" id="check_majority_vote"


# %% [markdown] lang="en"
# How much does voting help? Below, 400 questions, each answered by up to 25
# simulated chains, for three levels of single-chain accuracy $p$. Half of
# the wrong chains share the trap, so the trap gets $(1 - p)/2$ of the votes
# on average. When $p$ is above that share, more chains push the majority
# towards the right answer; when it is below, more chains make the vote
# settle on the trap with more and more confidence. Voting amplifies
# whatever answer is most likely; it cannot create a right answer the model
# rarely gives.

# %% [markdown] lang="ko"
# 투표는 얼마나 도움이 될까요? 아래에서는 문제 400개에서 문제마다 모의 사슬을 최대
# 25개까지 뽑아, 사슬 하나의 정확도 $p$를 세 가지로 바꿔 가며 봅니다. 틀린 사슬의 절반이 같은
# 함정에 빠지므로 함정은 평균 $(1 - p)/2$만큼 표를 얻습니다. $p$가 그 몫보다 크면
# 사슬이 늘수록 다수결이 정답 쪽으로 기울고, 작으면 사슬이 늘수록 투표가 점점 더
# 확신에 차서 함정으로 모입니다. 투표는 가장 그럴 법한 답을 키울 뿐, 모델이 좀처럼
# 내지 않는 정답을 만들어 내지는 못합니다.

# %%
import matplotlib.pyplot as plt
import koreanize_matplotlib                                       # a Hangul font (NanumGothic) for the labels

plt.rcParams["font.family"] = ["NanumGothic", "DejaVu Sans"]

N_QUESTIONS, MAX_CHAINS = 400, 25
g = torch.Generator().manual_seed(8)
targets = torch.randint(10, 2000, (N_QUESTIONS,), generator=g).tolist()
fig, ax = plt.subplots(figsize=(8, 3.4))
for p, color in ((0.2, "tab:red"), (0.4, "tab:orange"), (0.6, "tab:green")):
    answers = [[extract_answer(simulated_completion(t, p, g)) for _ in range(MAX_CHAINS)] for t in targets]
    accuracy = [sum(majority_vote(a[:m]) == t for a, t in zip(answers, targets)) / N_QUESTIONS
                for m in range(1, MAX_CHAINS + 1)]
    ax.plot(range(1, MAX_CHAINS + 1), accuracy, color=color, label=TEXT["vote"].format(p=p))
    ax.axhline(p * 0.9, color=color, ls=":", lw=1,                  # one chain (10 % give no answer)
               label=TEXT["single"].format(p=p))
print(majority_vote([7.0, 5.0, 7.0, 12.0, 7.0]))                    # chapter 9, self-check 1
ax.set_xlabel(TEXT["samples"])
ax.set_ylabel(TEXT["accuracy"])
ax.set_title(TEXT["vote_title"])
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 3. pass@k
#
# Voting needs agreement. A benchmark often asks something weaker: is *any*
# of $k$ attempts right (a unit test passes, a proof checks)? Call that
# probability pass@k. Estimating it from exactly $k$ samples per question is
# noisy, so one draws $n \ge k$ samples, counts the $c$ correct ones, and
# asks how often a random choice of $k$ of the $n$ holds at least one correct
# sample (Chen et al., 2021, with the Codex model):
#
# $$
# \mathrm{pass@}k = 1 - \frac{\binom{n-c}{k}}{\binom{n}{k}}
# $$
#
# Averaged over questions, this is an unbiased estimate of the true pass@k.
# The binomial coefficients grow astronomically ($\binom{3000}{1000}$ has
# over 800 digits), so compute the ratio as a product of numbers between 0
# and 1:
#
# $$
# \frac{\binom{n-c}{k}}{\binom{n}{k}} = \prod_{i=n-c+1}^{n} \left(1 - \frac{k}{i}\right)
# $$
#
# Three edges: with $c = 0$ the answer is 0; when $n - c < k$ every choice of
# $k$ includes a correct sample and the answer is exactly 1; $k = n$ is
# allowed. $k > n$ is not: raise a `ValueError` whose message says why.
# Return a `float`.

# %% [markdown] lang="ko"
# ## 3. pass@k
#
# 투표는 답이 모여야 통합니다. 벤치마크는 흔히 그보다 약한 것을 묻습니다. $k$번
# 시도 가운데 *하나라도* 맞았는가(단위 테스트를 통과하는가, 증명이 검증되는가)
# 하는 것입니다. 이 확률을 pass@k라 합니다. 문제마다 샘플을 딱 $k$개만 뽑아 재면
# 잡음이 크므로, $n \ge k$개를 뽑아 맞은 것 $c$개를 세고, $n$개 가운데 $k$개를
# 무작위로 골랐을 때 맞는 샘플이 하나라도 들어 있을 확률을 구합니다(Codex 모델을
# 다룬 Chen 외, 2021).
#
# $$
# \mathrm{pass@}k = 1 - \frac{\binom{n-c}{k}}{\binom{n}{k}}
# $$
#
# 문제들에 걸쳐 평균 내면 실제 pass@k의 편향 없는 추정값이 됩니다. 이항 계수는
# 어마어마하게 커지므로($\binom{3000}{1000}$은 800자리가 넘습니다), 비율을 0과 1
# 사이의 수들의 곱으로 계산하세요.
#
# $$
# \frac{\binom{n-c}{k}}{\binom{n}{k}} = \prod_{i=n-c+1}^{n} \left(1 - \frac{k}{i}\right)
# $$
#
# 경계 사례는 세 가지입니다. $c = 0$이면 답은 0입니다. $n - c < k$이면 어떻게 $k$개를
# 골라도 맞는 샘플이 들어가므로 답은 정확히 1입니다. $k = n$은 허용됩니다. $k > n$은
# 허용되지 않습니다. 이유를 밝히는 메시지와 함께 `ValueError`를 일으키세요. `float`를
# 돌려주세요.

# %% kind="solution" id="pass_at_k"
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    ### BEGIN SOLUTION
    if k > n:
        raise ValueError(f"pass@k needs k <= n: {k} samples cannot be chosen from {n}")
    if n - c < k:
        return 1.0                                      # every choice of k holds a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    ### END SOLUTION

# %% kind="test" id="check_pass_at_k"


# %% [markdown] lang="en"
# Why not simply $1 - (1 - c/n)^k$, the chance that at least one of $k$
# independent tries succeeds when each succeeds with probability $c/n$? Plugging an estimate
# into a curved function biases it. Below, 2,000 simulated questions of mixed
# difficulty get $n = 20$ samples each; the true pass@k is known because the
# simulator knows each question's $p$. The unbiased estimator follows the
# truth; the plug-in formula stays below it. Curves like these are the
# evidence in chapter 9's open question about what RL adds: Yue et al.
# compare base and RL-trained models by their pass@k at large $k$.

# %% [markdown] lang="ko"
# 그냥 $1 - (1 - c/n)^k$, 곧 한 번에 $c/n$의 확률로 성공하는 독립 시도를 $k$번 할 때
# 하나라도 성공할 확률을 쓰면 안 될까요? 추정값을 비선형 함수에 그대로 넣으면 편향이
# 생깁니다. 아래에서는 난이도가 제각각인 모의 문제 2,000개에 샘플을 $n = 20$개씩
# 뽑습니다. 모의 풀이기는 문제마다 $p$를 알고 있으니 실제 pass@k도 압니다. 편향 없는
# 추정량은 실제 값을 따라가고, 대입한 공식은 그보다 낮게 머뭅니다. 9장의 열린 질문,
# 곧 강화학습이 무엇을 더하는가를 다룰 때 근거가 되는 것이 바로 이런 곡선입니다.
# Yue 외 연구진은 기반 모델과 강화학습 모델을 큰 $k$에서의 pass@k로 비교합니다.

# %%
n = 20
g = torch.Generator().manual_seed(20)
p_true = (torch.rand(2000, generator=g) ** 3).tolist()                  # many hard questions, a few easy
correct = [int((torch.rand(n, generator=g) < p).sum()) for p in p_true]
ks = range(1, n + 1)
truth = [sum(1 - (1 - p) ** k for p in p_true) / len(p_true) for k in ks]
unbiased = [sum(pass_at_k(n, c, k) for c in correct) / len(correct) for k in ks]
plugin = [sum(1 - (1 - c / n) ** k for c in correct) / len(correct) for k in ks]
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(ks, truth, color="black", lw=3, alpha=0.3, label=TEXT["truth"])
ax.plot(ks, unbiased, "o-", color="tab:blue", ms=3, label=TEXT["unbiased"])
ax.plot(ks, plugin, "s--", color="tab:red", ms=3, label=TEXT["plugin"])
ax.set_xlabel(TEXT["k"])
ax.set_ylabel(TEXT["pass"])
ax.set_title(TEXT["pass_title"].format(n=n))
ax.legend()
plt.tight_layout()
plt.show()
print(f"k=10: {truth[9]:.3f} {unbiased[9]:.3f} {plugin[9]:.3f}")

# %% [markdown] lang="en"
# ## 4. A rule-based reward
#
# DeepSeek-R1-Zero learned from two rule-based rewards: one for a correct
# answer, one for the format (thinking inside `<think>` tags, then the
# answer). Yours combines them into one number. A completion is **in the
# format** when
#
# - after leading whitespace it starts with `<think>`,
# - it holds exactly one `<think>` and exactly one `</think>`, and
# - the text after `</think>` gives an answer (`extract_answer` is not `None`).
#
# The answer is read from the text after `</think>` only: whatever the
# model tried inside its thinking does not count. Then
#
# $$
# r = \begin{cases}
# 1 & F \wedge |a - a^{*}| \le 10^{-6} \\
# 0.1 & F \wedge |a - a^{*}| > 10^{-6} \\
# 0 & \neg F
# \end{cases}
# $$
#
# where $F$ says that the completion is in the format, $a$ is the extracted
# answer and $a^{*}$ the `target`. A correct
# number outside the format earns nothing: the format is what lets the
# grader find the answer at all. Use `FORMAT_REWARD` (0.1, set in the first
# cell) and your `extract_answer`; return a `float`.

# %% [markdown] lang="ko"
# ## 4. 규칙 기반 보상
#
# DeepSeek-R1-Zero는 규칙 기반 보상 두 가지로 배웠습니다. 하나는 정답에 주는 보상,
# 하나는 형식(생각은 `<think>` 태그 안에, 그다음 답)에 주는 보상입니다. 여러분의
# 보상은 둘을 숫자 하나로 합칩니다. 다음을 모두 만족하면 풀이가 **형식을 지킨**
# 것입니다.
#
# - 앞의 빈칸을 빼면 `<think>`로 시작합니다.
# - `<think>`와 `</think>`를 정확히 하나씩 담고 있습니다.
# - `</think>` 뒤의 글에 답이 있습니다(`extract_answer`가 `None`이 아닙니다).
#
# 답은 `</think>` 뒤의 글에서만 읽습니다. 모델이 생각하는 동안 이것저것 시도한 것은
# 셈에 넣지 않습니다. 그러면 보상은 다음과 같습니다.
#
# $$
# r = \begin{cases}
# 1 & F \wedge |a - a^{*}| \le 10^{-6} \\
# 0.1 & F \wedge |a - a^{*}| > 10^{-6} \\
# 0 & \neg F
# \end{cases}
# $$
#
# 여기서 $F$는 풀이가 형식을 지켰다는 뜻이고, $a$는 읽어 낸 답, $a^{*}$는
# `target`입니다. 형식을 지키지 않은 정답은 아무 보상도 받지 못합니다. 채점기가 답을
# 찾을 수 있는 것부터가 형식 덕분이기 때문입니다.
# `FORMAT_REWARD`(첫 셀에서 정한 0.1)와 여러분의 `extract_answer`를 쓰고, `float`를
# 돌려주세요.

# %% kind="solution" id="reward"
def reward(completion: str, target: float) -> float:
    """1.0 for a correct answer in the format, FORMAT_REWARD for a wrong one in the format, else 0.0."""
    ### BEGIN SOLUTION
    text = completion.strip()
    if not text.startswith("<think>") or text.count("<think>") != 1 or text.count("</think>") != 1:
        return 0.0
    answer = extract_answer(text.split("</think>")[1])                  # the answer part only
    if answer is None:
        return 0.0
    return 1.0 if abs(answer - target) <= 1e-6 else FORMAT_REWARD
    ### END SOLUTION

# %% kind="test" id="check_reward"


# %% [markdown] lang="en"
# A reward checker is itself a target: the model will find whatever it lets
# through. Here are a few completions for the apple problem of chapter 8
# (answer 7), including two that try their luck.

# %% [markdown] lang="ko"
# 보상 검사기 자체도 공략 대상입니다. 모델은 검사기가 흘려보내는 틈을 어떻게든
# 찾아냅니다. 8장에 나온 사과 문제(답 7)의 풀이 몇 개를 봅시다. 요행을 바라는 풀이도
# 두 개 섞여 있습니다.

# %%
apples = ["<think>177 × 4 = 708, 869 − 708 = 161, 161 / 23 = 7</think> Answer: 7",
          "<think>869 / 177 is about 5</think> Answer: 5",
          "Answer: 7",
          "<think>\\boxed{7}? \\boxed{5}? \\boxed{12}?</think> Answer: 5, 7 or 12",
          "<think>708 + 161 = 869</think><think>again</think> Answer: 7"]
for text in apples:
    print(TEXT["reward_row"].format(r=reward(text, 7.0), text=text))

# %% [markdown] lang="en"
# ## 5. Group-relative advantages (GRPO)
#
# GRPO samples a group of $G$ completions for each prompt, scores them, and
# judges each one against its own group. For prompt $p$ with rewards
# $r_{p,1}, \dots, r_{p,G}$:
#
# $$
# A_{p,i} = \frac{r_{p,i} - \mu_p}{\sigma_p + \epsilon}, \qquad
# \mu_p = \frac{1}{G} \sum_{j=1}^{G} r_{p,j}, \qquad
# \sigma_p = \sqrt{\frac{1}{G} \sum_{j=1}^{G} \left(r_{p,j} - \mu_p\right)^2}
# $$
#
# `rewards` has shape `(P, G)`: one row per prompt, one group per row.
# Return the advantages in the same shape. Two rules to follow exactly:
#
# - $\sigma_p$ is the **population** standard deviation (divide by $G$), so
#   `std(..., unbiased=False)`. `torch.std`'s default divides by $G - 1$ (the
#   sample standard deviation), which some implementations use; here it is
#   a mistake the check names. The $\epsilon$ (`eps`) is added to
#   $\sigma_p$, outside the square root.
# - A group whose rewards are **all equal** has nothing to teach and gets
#   exactly 0 for every completion. Test for it with `==` on the rewards, not
#   with $\sigma_p = 0$: float rounding can leave $r - \mu$ and $\sigma$ a
#   hair away from zero, and dividing one hair by another hair plus $\epsilon$
#   gives noise (the cell after the check shows it).
#
# Do not change `rewards` in place.

# %% [markdown] lang="ko"
# ## 5. 그룹 상대 이점(GRPO)
#
# GRPO는 프롬프트마다 풀이 $G$개를 한 그룹으로 뽑아 채점하고, 각 풀이를 그 그룹
# 안에서 평가합니다. 프롬프트 $p$의 보상이 $r_{p,1}, \dots, r_{p,G}$이면 이점은
# 다음과 같습니다.
#
# $$
# A_{p,i} = \frac{r_{p,i} - \mu_p}{\sigma_p + \epsilon}, \qquad
# \mu_p = \frac{1}{G} \sum_{j=1}^{G} r_{p,j}, \qquad
# \sigma_p = \sqrt{\frac{1}{G} \sum_{j=1}^{G} \left(r_{p,j} - \mu_p\right)^2}
# $$
#
# `rewards`의 모양은 `(P, G)`입니다. 프롬프트마다 한 행이고, 행 하나가 그룹
# 하나입니다. 같은 모양으로 이점을 돌려주세요. 꼭 지킬 규칙이 두 가지 있습니다.
#
# - $\sigma_p$는 **모표준편차**($G$로 나누기), 곧 `std(..., unbiased=False)`입니다.
#   `torch.std`의 기본값은 $G - 1$로 나누는 표본 표준편차이고 그렇게 구현한 곳도
#   있지만, 여기서는 검사가 짚어 내는 실수입니다. $\epsilon$(`eps`)은 제곱근 밖에서
#   $\sigma_p$에 더합니다.
# - 보상이 **모두 같은** 그룹에서는 배울 것이 없으니 모든 풀이가 정확히 0을 받습니다.
#   이런 그룹은 $\sigma_p = 0$으로 가리지 말고 보상끼리 `==`로 비교해 찾으세요.
#   부동소수점 반올림 때문에 $r - \mu$와 $\sigma$가 0에서 아주 조금 어긋날 수 있고,
#   그 작은 값을 또 다른 작은 값에 $\epsilon$을 더한 것으로 나누면 잡음이
#   나옵니다(검사 셀 바로 다음 셀에서 보여 줍니다).
#
# `rewards`를 제자리에서 바꾸지 마세요.

# %% kind="solution" id="group_advantages"
def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(P, G) rewards, one group per row -> (P, G) advantages (r - mean) / (std + eps), 0 for equal groups."""
    ### BEGIN SOLUTION
    mean = rewards.mean(dim=-1, keepdim=True)                              # (P, 1)
    std = rewards.std(dim=-1, unbiased=False, keepdim=True)                # (P, 1) population std
    advantages = (rewards - mean) / (std + eps)                            # (P, G)
    equal = (rewards == rewards[:, :1]).all(dim=-1, keepdim=True)          # (P, 1) nothing to learn
    return torch.where(equal, torch.zeros_like(advantages), advantages)
    ### END SOLUTION

# %% kind="test" id="check_group_advantages"


# %% [markdown] lang="en"
# One GRPO group of eight simulated completions for one question, their
# rewards and their advantages: right answers are pushed up, wrong ones down,
# and a completion with no answer most of all. Then the rounding trap: eight
# rewards of 0.1 (eight wrong answers in the right format).

# %% [markdown] lang="ko"
# 한 문제의 모의 풀이 여덟 개로 이루어진 GRPO 그룹 하나와 그 보상, 이점입니다.
# 맞는 답은 위로, 틀린 답은 아래로 밀리고, 답이 없는 풀이가 가장 세게 아래로 밀립니다.
# 그다음은 반올림 함정입니다. 보상 0.1이 여덟 개(형식은 지켰지만 모두 틀린 답)인
# 그룹입니다.

# %%
g = torch.Generator().manual_seed(2)
group = [simulated_completion(1234, 0.4, g) for _ in range(8)]
rewards = torch.tensor([[reward(text, 1234.0) for text in group]])     # (1, 8)
for r, a in zip(rewards[0].tolist(), group_advantages(rewards)[0].tolist()):
    print(TEXT["adv_row"].format(r=r, a=a))
tenth = torch.full((1, 8), FORMAT_REWARD)
naive = (tenth - tenth.mean(-1, keepdim=True)) / (tenth.std(-1, unbiased=False, keepdim=True) + 1e-6)
print(TEXT["rounding"].format(v=FORMAT_REWARD, g=8, naive=float(naive.abs().max()),
                              mine=group_advantages(tenth)[0].tolist()))

# %% [markdown] lang="en"
# ## 6. Learning from the reward: GRPO on a tiny model
#
# So far the rewards and advantages were computed for a simulated solver;
# nothing learned from them. Now a real model does. It is the course's own
# model at its smallest (2 layers, 64 wide, about 100,000 parameters),
# trained by supervised learning, briefly and on purpose, on sums of two
# two-digit numbers: `23+45=` followed by `68` and an end marker. It solves
# about a quarter of the problems it never saw, and GRPO will lift that with
# nothing but the rule-based reward: 1 for the right number followed by the end
# marker, 0 for anything else. `course grpo-start` builds it in about ten
# seconds; the course ships its weights, so the cell below only loads them.
#
# Each character is one token: `0`–`9`, `+`, `=`, `<end>` and `<pad>`. Every
# prompt is six tokens long, so a batch needs no padding on the left.

# %% [markdown] lang="ko"
# ## 6. 보상으로 배우기: 작은 모델에 GRPO
#
# 지금까지는 모의 풀이기로 보상과 이점을 계산하기만 했을 뿐, 그 값으로 배운 모델은
# 없었습니다. 이제 실제 모델이 배웁니다. 이 강좌의 모델을 가장 작게 줄인 것(2층, 폭 64, 파라미터 약
# 10만 개)으로, 두 자리 수 두 개의 덧셈을 지도 학습으로 일부러 짧게만 배웠습니다.
# `23+45=` 다음에 `68`과 끝 표시가 오는 식입니다. 처음 보는 문제의 4분의 1쯤을 풀고,
# GRPO는 규칙 기반 보상 하나만으로 이 비율을 끌어올립니다. 맞는 숫자 뒤에 끝 표시가 오면
# 1, 그 밖에는 모두 0입니다. 이 모델은 `course grpo-start`로 10초쯤이면 만들 수 있고,
# 가중치가 강좌에 들어 있으니 아래 셀은 불러오기만 합니다.
#
# 글자 하나가 토큰 하나입니다. `0`–`9`, `+`, `=`, `<end>`, `<pad>`가 전부입니다.
# 프롬프트는 모두 여섯 토큰이라 배치를 만들 때 왼쪽을 채울 필요가 없습니다.

# %%
import copy
import os
import time
from autograde.reference import grpo as G
from autograde import notebook_grpo as guard

GRPO_TEXT = {"en": {"start": "starting model: greedy pass@1 {p:.1%} on {n} held-out problems",
                    "row": "{a}+{b}= {said:<4} (right: {right})", "never": "never ends",
                    "before": "before", "after": "after", "never_solved": "never solved: {c} / {n}"},
             "ko": {"start": "시작 모델: 보류 문제 {n}개에서 탐욕적 디코딩 pass@1 {p:.1%}",
                    "row": "{a}+{b}= {said:<4} (정답: {right})", "never": "끝나지 않음",
                    "before": "전", "after": "후", "never_solved": "한 번도 못 푼 문제: {c} / {n}"}}[COURSE_LANG]

start = G.load_start_model(device=device)
train_problems, held_out = G.split_problems(G.SFTSettings().seed, G.GRPOSettings().held_out)
greedy = G.sample_group(start, G.prompt_batch(held_out[:8]).to(device), 1, greedy=True)
for (a, b), row in zip(held_out[:8], greedy[:, G.PROMPT_LEN:].tolist()):
    said = G.decode(row) if G.END_ID in row else GRPO_TEXT["never"]
    print(GRPO_TEXT["row"].format(a=a, b=b, said=said, right=a + b))
print(GRPO_TEXT["start"].format(p=G.pass_at_1_greedy(start, held_out), n=len(held_out)))

# %% [markdown] lang="en"
# ### 6.1 The log-probability of each sampled token
#
# GRPO changes the probability of the tokens the model wrote. For sequences
# `ids` of shape `(B, T)`, the model's `logits` have shape `(B, T, V)`, and
# the logits at position $j$ predict token $j + 1$. Return, for every
# position $j = 0, \dots, T - 2$, the log-probability the model gave to the
# token that actually came next:
#
# $$
# \ell_{b,j} = \log \mathrm{softmax}\left(z_{b,j}\right)_{x_{b,j+1}}
# $$
#
# a tensor of shape `(B, T - 1)`. Use `torch.log_softmax` over the last axis
# and `gather` at `ids[:, 1:]`. Computing `torch.log(torch.softmax(...))`
# instead gives `-inf` for very unlikely tokens. Positions in the prompt are
# computed too; the mask of the next step removes them.

# %% [markdown] lang="ko"
# ### 6.1 샘플링한 토큰 하나하나의 로그 확률
#
# GRPO는 모델이 쓴 토큰의 확률을 바꿉니다. 모양이 `(B, T)`인 시퀀스 `ids`를 넣으면
# 모델의 `logits`는 `(B, T, V)` 모양이고, $j$번 위치의 로짓은 $j + 1$번째 토큰을
# 예측합니다. 모든 위치 $j = 0, \dots, T - 2$에서 실제로 다음에 온 토큰에 모델이 준
# 로그 확률을 돌려주세요.
#
# $$
# \ell_{b,j} = \log \mathrm{softmax}\left(z_{b,j}\right)_{x_{b,j+1}}
# $$
#
# 결과의 모양은 `(B, T - 1)`입니다. 마지막 축에 `torch.log_softmax`를 쓰고
# `ids[:, 1:]` 자리를 `gather`하세요. `torch.log(torch.softmax(...))`로 계산하면
# 확률이 아주 낮은 토큰에서 `-inf`가 나옵니다. 프롬프트 위치도 계산되지만, 다음
# 단계의 마스크가 지워 줍니다.

# %% kind="solution" id="token_logprobs"
def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) ids -> (B, T - 1): log-prob of ids[:, j + 1] given the tokens up to j."""
    ### BEGIN SOLUTION
    logp = torch.log_softmax(logits[:, :-1], dim=-1)                       # (B, T-1, V)
    return logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)           # (B, T-1)
    ### END SOLUTION

# %% kind="test" id="check_token_logprobs"


# %% [markdown] lang="en"
# ### 6.2 Which tokens count: the completion mask
#
# Only what the model wrote is learned: not the prompt, which was given, and
# not the padding after the end marker. `completion_mask(ids, prompt_len,
# end_id)` returns a float mask of shape `(B, T - 1)`, aligned with
# `token_logprobs`: position $j$ is about token $j + 1$. It is 1 for the
# completion's tokens **up to and including the first end marker** (the
# choice to stop is learned too) and 0 for the prompt and everything after
# that end. The first completion token, `ids[:, prompt_len]`, is at position
# `prompt_len - 1`. Look for the end marker only in the completion, and
# remember that a completion may never end (all 1 then).

# %% [markdown] lang="ko"
# ### 6.2 어떤 토큰을 셀까: 풀이 마스크
#
# 배우는 것은 모델이 쓴 토큰뿐입니다. 주어진 프롬프트도, 끝 표시 뒤의 채움 토큰도
# 아닙니다. `completion_mask(ids, prompt_len, end_id)`는 `token_logprobs`와 줄이 맞는
# `(B, T - 1)` 모양의 float 마스크를 돌려줍니다. $j$번 위치는 $j + 1$번째 토큰을
# 가리킵니다. 풀이의 토큰 가운데 **첫 끝 표시까지(끝 표시 포함)**는 1이고(멈추기로 한
# 선택도 배웁니다), 프롬프트와 그 끝 표시 뒤는 모두 0입니다. 풀이의 첫 토큰
# `ids[:, prompt_len]`은 `prompt_len - 1`번 위치에 있습니다. 끝 표시는 풀이에서만
# 찾고, 끝나지 않는 풀이도 있다는 것(그때는 전부 1)을 잊지 마세요.

# %% kind="solution" id="completion_mask"
def completion_mask(ids: torch.Tensor, prompt_len: int, end_id: int) -> torch.Tensor:
    """(B, T) ids -> (B, T - 1) float mask: 1 on completion tokens up to and including the first end_id."""
    ### BEGIN SOLUTION
    is_end = (ids[:, prompt_len:] == end_id).long()                        # (B, L)
    ended_before = is_end.cumsum(dim=1) - is_end                           # end markers strictly before
    keep = (ended_before == 0).float()                                     # (B, L)
    prompt = torch.zeros(ids.shape[0], prompt_len - 1, device=ids.device)  # (B, prompt_len - 1)
    return torch.cat([prompt, keep], dim=1)                                # (B, T-1)
    ### END SOLUTION

# %% kind="test" id="check_completion_mask"


# %% [markdown] lang="en"
# ### 6.3 The GRPO loss
#
# DeepSeekMath writes GRPO's objective for one prompt $q$ and its group of
# completions $o_1, \dots, o_G$, sampled by the policy $\pi_{\theta_\text{old}}$
# as it was before this update:
#
# $$
# \mathcal{J}(\theta) = \frac{1}{G}\sum_{i=1}^{G}\frac{1}{|o_i|}\sum_{t=1}^{|o_i|}
# \Big[\min\big(\rho_{i,t} A_i,\ \mathrm{clip}(\rho_{i,t}, 1-\varepsilon, 1+\varepsilon) A_i\big)
# - \beta\, \mathbb{D}_{i,t}\Big],
# \qquad \rho_{i,t} = \frac{\pi_\theta(o_{i,t} \mid q, o_{i,<t})}{\pi_{\theta_\text{old}}(o_{i,t} \mid q, o_{i,<t})}
# $$
#
# with $A_i$ the group-relative advantage of section 5 (the same for every
# token of $o_i$) and the KL penalty to the frozen starting model
# $\pi_\text{ref}$ estimated per token with what is called the k3 estimator:
#
# $$
# \mathbb{D}_{i,t} = \frac{\pi_\text{ref}}{\pi_\theta} - \log\frac{\pi_\text{ref}}{\pi_\theta} - 1
# = e^{\,\ell^\text{ref}_{i,t} - \ell_{i,t}} - \left(\ell^\text{ref}_{i,t} - \ell_{i,t}\right) - 1
# $$
#
# It is never negative and its mean over tokens sampled from $\pi_\theta$ is
# $\mathrm{KL}(\pi_\theta \,\|\, \pi_\text{ref})$. The ratio $\rho$ comes from
# PPO: the clip keeps one batch from moving the policy too far. The loss is
# $-\mathcal{J}$.
#
# `grpo_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps, beta,
# normalization)` takes log-probs of shape `(B, T - 1)` (the policy's, the
# sampling policy's, the starting model's), one advantage per sequence
# `(B,)` and the mask. Rules:
#
# - `old_logp` is a fixed number, not something to differentiate: use
#   `old_logp.detach()` in the ratio. On the first gradient step of a batch
#   `old_logp` *is* the policy's log-prob, the ratio is exactly 1, and
#   without the detach its gradient vanishes.
# - `normalization="sequence"` is the paper's average: over each sequence's
#   masked tokens, then over sequences. `normalization="token"` divides the
#   sum over every masked token of the batch by their number (DAPO's
#   token-level average): a long completion then weighs more than a short
#   one. Anything else: raise `ValueError`.
# - Positions outside the mask may hold anything; they must not count.
#
# Return a scalar tensor.

# %% [markdown] lang="ko"
# ### 6.3 GRPO 손실
#
# 프롬프트 $q$ 하나와, 이번 갱신 전의 정책 $\pi_{\theta_\text{old}}$가 뽑은 풀이 그룹
# $o_1, \dots, o_G$가 있을 때, DeepSeekMath는 GRPO의 목적 함수를 이렇게 씁니다.
#
# $$
# \mathcal{J}(\theta) = \frac{1}{G}\sum_{i=1}^{G}\frac{1}{|o_i|}\sum_{t=1}^{|o_i|}
# \Big[\min\big(\rho_{i,t} A_i,\ \mathrm{clip}(\rho_{i,t}, 1-\varepsilon, 1+\varepsilon) A_i\big)
# - \beta\, \mathbb{D}_{i,t}\Big],
# \qquad \rho_{i,t} = \frac{\pi_\theta(o_{i,t} \mid q, o_{i,<t})}{\pi_{\theta_\text{old}}(o_{i,t} \mid q, o_{i,<t})}
# $$
#
# $A_i$는 5절의 그룹 상대 이점이고($o_i$의 모든 토큰에 같은 값), 고정해 둔 시작 모델
# $\pi_\text{ref}$와의 KL 벌점은 흔히 k3 추정량이라 부르는 식으로 토큰마다 추정합니다.
#
# $$
# \mathbb{D}_{i,t} = \frac{\pi_\text{ref}}{\pi_\theta} - \log\frac{\pi_\text{ref}}{\pi_\theta} - 1
# = e^{\,\ell^\text{ref}_{i,t} - \ell_{i,t}} - \left(\ell^\text{ref}_{i,t} - \ell_{i,t}\right) - 1
# $$
#
# 이 값은 음수가 되지 않고, $\pi_\theta$에서 뽑은 토큰으로 평균 내면
# $\mathrm{KL}(\pi_\theta \,\|\, \pi_\text{ref})$가 됩니다. 비율 $\rho$는 PPO에서 온
# 것으로, 잘라 내기(clip) 덕분에 배치 하나가 정책을 너무 멀리 옮기지 못합니다. 손실은
# $-\mathcal{J}$입니다.
#
# `grpo_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps, beta,
# normalization)`는 `(B, T - 1)` 모양의 로그 확률 셋(지금 정책, 샘플링한 정책, 시작
# 모델)과 시퀀스마다 하나씩인 이점 `(B,)`, 그리고 마스크를 받습니다. 규칙은 이렇습니다.
#
# - `old_logp`는 미분할 대상이 아니라 고정된 수입니다. 비율에는 `old_logp.detach()`를
#   쓰세요. 배치로 처음 갱신할 때는 `old_logp`가 곧 정책의 로그 확률이라 비율이
#   정확히 1이고, detach하지 않으면 그 기울기가 사라집니다.
# - `normalization="sequence"`는 논문의 평균입니다. 시퀀스마다 마스크된 토큰으로 평균을
#   내고, 다시 시퀀스끼리 평균합니다. `normalization="token"`은 배치의 마스크된 토큰
#   전체에 걸친 합을 그 개수로 나눕니다(DAPO의 토큰 단위 평균). 이때는 긴 풀이가 짧은
#   풀이보다 무게가 큽니다. 그 밖의 값이면 `ValueError`를 일으키세요.
# - 마스크 밖의 위치에는 어떤 값이든 들어 있을 수 있고, 셈에 넣으면 안 됩니다.
#
# 스칼라 텐서를 돌려주세요.

# %% kind="solution" id="grpo_loss"
def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04,
              normalization: str = "sequence") -> torch.Tensor:
    """Minus GRPO's objective: clipped surrogate with the ratio to the sampling policy, minus beta * k3 KL."""
    ### BEGIN SOLUTION
    if normalization not in ("sequence", "token"):
        raise ValueError(f"normalization must be 'sequence' or 'token', not {normalization!r}")
    ratio = torch.exp(logp - old_logp.detach())                            # (B, T-1)
    adv = advantages[:, None]                                              # (B, 1): one per sequence
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    log_ratio = ref_logp - logp
    kl = torch.exp(log_ratio) - log_ratio - 1                              # k3, per token
    per_token = -(surrogate - beta * kl)
    if normalization == "sequence":
        return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    return (per_token * mask).sum() / mask.sum()
    ### END SOLUTION

# %% kind="test" id="check_grpo_loss"


# %% [markdown] lang="en"
# ### 6.4 Sampling a group
#
# `sample_group(model, prompts, group_size, temperature, max_new_tokens,
# end_id, pad_id, generator)` writes $G$ completions for each of the $P$
# prompts `(P, Tp)` and returns the whole sequences, shape
# `(P * G, Tp + L)`, rows $pG, \dots, pG + G - 1$ for prompt $p$
# (`repeat_interleave`). Then, for each new token:
#
# 1. run `model(ids)` on all rows and keep the last position's logits;
# 2. draw the next token of every row at once, the way the course's sampler
#    of chapter 5 does without top-k or top-p: divide the logits by the
#    temperature, `softmax`, then **one** call of
#    `torch.multinomial(probs, 1, generator=generator)` for all rows (the
#    same draws as the reference, so that the check can compare them);
# 3. a row that has already written `end_id` gets `pad_id` instead;
# 4. append the column; stop when every row has written `end_id`, or after
#    `max_new_tokens` tokens: a completion that never ends stops there.
#
# A group of one has no one to compare with: raise `ValueError` when
# `group_size < 2`.

# %% [markdown] lang="ko"
# ### 6.4 그룹 샘플링
#
# `sample_group(model, prompts, group_size, temperature, max_new_tokens, end_id,
# pad_id, generator)`는 프롬프트 $P$개 `(P, Tp)` 각각에 풀이 $G$개를 쓰고, 시퀀스
# 전체를 `(P * G, Tp + L)` 모양으로 돌려줍니다. 프롬프트 $p$의 풀이는 $pG$번부터
# $pG + G - 1$번 행입니다(`repeat_interleave`). 새 토큰마다 이렇게 합니다.
#
# 1. 모든 행에 `model(ids)`를 돌려 마지막 위치의 로짓을 얻습니다.
# 2. 모든 행의 다음 토큰을 한꺼번에 뽑습니다. 5장의 샘플러가 top-k나 top-p 없이
#    하는 방식 그대로, 로짓을 온도로 나누고 `softmax`를 한 뒤 모든 행의
#    확률을 한꺼번에 넣어 `torch.multinomial(probs, 1, generator=generator)`를 **한 번** 부릅니다(그래야
#    참고 구현과 같은 값을 뽑아 검사가 비교할 수 있습니다).
# 3. 이미 `end_id`를 쓴 행은 그 대신 `pad_id`를 받습니다.
# 4. 새로 뽑은 열을 이어 붙입니다. 모든 행이 `end_id`를 썼거나 `max_new_tokens`개를 썼으면
#    멈춥니다. 끝나지 않는 풀이는 거기서 멈춥니다.
#
# 풀이가 하나뿐인 그룹은 비교할 상대가 없습니다. `group_size < 2`이면
# `ValueError`를 일으키세요.

# %% kind="solution" id="sample_group"
@torch.no_grad()
def sample_group(model, prompts: torch.Tensor, group_size: int, temperature: float, max_new_tokens: int,
                 end_id: int, pad_id: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(P, Tp) prompts -> (P * G, Tp + L) sequences, G sampled completions per prompt, grouped by prompt."""
    ### BEGIN SOLUTION
    if group_size < 2:
        raise ValueError(f"a group needs at least 2 completions to compare (got group_size={group_size})")
    ids = prompts.repeat_interleave(group_size, dim=0)                     # (P*G, Tp)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        probs = torch.softmax(model(ids)[:, -1, :].float() / temperature, dim=-1)     # (P*G, V)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)          # (P*G,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        done |= token == end_id
        if bool(done.all()):
            break
    return ids
    ### END SOLUTION

# %% kind="test" id="check_sample_group"


# %% [markdown] lang="en"
# ## 7. The run
#
# One GRPO step: draw 32 training problems; sample a group of 8 completions
# for each at temperature 1; reward each (1 or 0); turn the rewards into
# advantages with your `group_advantages`; compute the log-probs of the
# sampled tokens under the policy (`old_logp`, before any update), under the
# frozen starting model (`ref_logp`), and once more with gradients; then one
# gradient step on your `grpo_loss`. With one gradient step per batch the
# ratio is exactly 1 when the gradient is taken, so the clip never acts and
# the update is the plain policy gradient with the group baseline
# (DeepSeekMath trains this way too); `updates_per_batch = 2` would let it act.
#
# Two things stop the run with a message instead of quietly doing harm: a
# group of size 1 or rewards of the wrong shape, and a NaN or inf in the
# log-probs or the loss (the message says which). A step in which every
# group's rewards are equal changes nothing but the KL pull (all advantages
# are 0): it is reported once. A completion that never writes `<end>` stops
# after 6 tokens and gets reward 0.
#
# The full run is 600 steps and takes about 1.5 minutes of CPU time on one
# thread (on a shared or slow machine the wall time is longer); with the
# default settings it prints exactly the numbers of chapter 9. Set the
# environment variable `COURSE_GRPO_STEPS` for a shorter run. A GPU is used
# when the course's device choice finds one; the numbers may then differ in
# the last digits.

# %% [markdown] lang="ko"
# ## 7. 학습 실행
#
# GRPO 한 스텝은 이렇습니다. 학습용 문제 32개를 뽑고, 문제마다 온도 1로 풀이 8개를
# 한 그룹으로 샘플링합니다. 풀이마다 보상(1 또는 0)을 매기고, 여러분의
# `group_advantages`로 보상을 이점으로 바꿉니다. 샘플링한 토큰의 로그 확률을 정책으로
# (`old_logp`, 갱신하기 전), 고정한 시작 모델로(`ref_logp`), 그리고 기울기를 켜고 한 번
# 더 계산한 뒤, 여러분의 `grpo_loss`로 가중치를 한 번 갱신합니다. 배치마다 한 번만
# 갱신하면 기울기를 구하는 순간 비율이 정확히 1이라 잘라 내기가 작동하지 않고, 갱신은
# 그룹 기준값을 쓴 평범한 정책 경사가 됩니다(DeepSeekMath도 이렇게
# 학습합니다). `updates_per_batch = 2`로 하면 잘라 내기가 작동합니다.
#
# 두 가지 경우에는 조용히 해를 끼치는 대신 메시지를 내고 멈춥니다. 그룹 크기가 1이거나
# 보상의 모양이 틀렸을 때, 그리고 로그 확률이나 손실에 NaN이나 inf가 생겼을 때(어느
# 값인지 알려 줍니다)입니다. 모든 그룹의 보상이 같은 스텝은 이점이 전부 0이라 KL이
# 당기는 것 말고는 아무것도 바꾸지 못합니다. 이런 스텝은 한 번 알려 줍니다. `<end>`를
# 끝내 쓰지 않는 풀이는 6토큰에서 멈추고 보상 0을 받습니다.
#
# 전체 실행은 600스텝이고, 스레드 하나로 CPU 시간 1분 30초쯤 걸립니다(다른 일과 함께
# 쓰는 컴퓨터나 느린 컴퓨터에서는 실제 시간이 더 깁니다). 기본 설정으로 돌리면 9장의
# 숫자를 그대로 출력합니다. 더 짧게 돌리려면 환경 변수 `COURSE_GRPO_STEPS`를 정하세요.
# 강좌의 장치 선택이 GPU를 찾으면 GPU를 쓰며, 그때는 숫자의 끝자리가 다를 수 있습니다.

# %%
from tqdm.auto import tqdm
from autograde.figures_grpo import grpo_curves

s = G.GRPOSettings(steps=int(os.environ.get("COURSE_GRPO_STEPS", G.GRPOSettings().steps)))
RUN_TEXT = {"en": {"done": "pass@1 on {n} held-out problems: {a:.1%} -> {b:.1%} after {steps} steps "
                           "({wall:.0f} s wall, {cpu:.0f} s CPU)"},
            "ko": {"done": "보류 문제 {n}개의 pass@1: {a:.1%} -> {b:.1%} ({steps}스텝 뒤, 실제 시간 {wall:.0f}초, "
                           "CPU {cpu:.0f}초)"}}[COURSE_LANG]


def grpo_step(policy, reference, optimizer, problems, gen, step):
    """Sample, reward, advantages, then s.updates_per_batch gradient steps on grpo_loss."""
    prompts = G.prompt_batch(problems).to(device)                          # (P, 6)
    ids = sample_group(policy, prompts, s.group_size, s.temperature, G.MAX_NEW_TOKENS, G.END_ID, G.PAD_ID,
                       gen)                                                # (P*G, T)
    guard.check_lengths(ids, G.PROMPT_LEN, G.MAX_NEW_TOKENS)
    rewards = G.rewards_of(ids[:, G.PROMPT_LEN:].cpu(), problems, s.group_size)   # (P, G)
    guard.check_group(rewards, len(problems), s.group_size)
    advantages = group_advantages(rewards).flatten().to(device)            # (P*G,)
    mask = completion_mask(ids, G.PROMPT_LEN, G.END_ID)                    # (P*G, T-1)
    with torch.no_grad():
        old_logp = token_logprobs(policy(ids), ids)
        ref_logp = token_logprobs(reference(ids), ids)
    policy.train()
    for _ in range(s.updates_per_batch):
        logp = token_logprobs(policy(ids), ids)
        loss = grpo_loss(logp, old_logp, ref_logp, advantages, mask, s.clip_eps, s.beta, s.normalization)
        guard.check_finite(step, loss, logp=logp, old_logp=old_logp, ref_logp=ref_logp, advantages=advantages)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
    policy.eval()
    kl = (G.kl_k3(logp.detach(), ref_logp) * mask).sum() / mask.sum()
    row = {"reward": rewards.mean().item(), "kl": kl.item(), "loss": loss.item(), "length": mask.sum(-1).mean().item()}
    return row, guard.equal_groups(rewards, step)


if device.type == "cpu":
    torch.set_num_threads(s.threads)                                       # the reference run's bits
torch.manual_seed(s.seed)
policy, reference = copy.deepcopy(start), copy.deepcopy(start).eval()
for p in reference.parameters():
    p.requires_grad_(False)
optimizer = torch.optim.AdamW(policy.parameters(), lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
gen = torch.Generator(device=device).manual_seed(s.seed)
pick = torch.Generator().manual_seed(s.seed + 1)
started, cpu_started = time.perf_counter(), time.process_time()
history, told = [{"step": 0, "pass_at_1": G.pass_at_1_greedy(policy, held_out)}], False
bar = tqdm(range(1, s.steps + 1), desc="GRPO", unit="step")
for step in bar:
    idx = torch.randint(0, len(train_problems), (s.prompts_per_step,), generator=pick).tolist()
    row, note = grpo_step(policy, reference, optimizer, [train_problems[i] for i in idx], gen, step)
    if note and not told:
        print(note)
        told = True
    if step % s.eval_every == 0 or step == s.steps:
        row["pass_at_1"] = G.pass_at_1_greedy(policy, held_out)
    history.append({"step": step, **row})
    bar.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{row['kl']:.3f}")
run = {"history": history, "pass_at_1_before": history[0]["pass_at_1"], "pass_at_1_after": history[-1]["pass_at_1"]}
print(RUN_TEXT["done"].format(n=len(held_out), a=run["pass_at_1_before"], b=run["pass_at_1_after"], steps=s.steps,
                              wall=time.perf_counter() - started, cpu=time.process_time() - cpu_started))
grpo_curves(run, COURSE_LANG)
plt.show()

# %% [markdown] lang="en"
# Read the four panels together. The reward of the sampled groups and the
# greedy pass@1 on held-out problems climb; the KL to the starting model
# rises and then stays at a few tenths of a nat per token, held there by the
# $\beta$ term; and the completions stay 3 to 4 tokens long, because a sum of
# two two-digit numbers has no use for a longer answer. Nothing here makes
# answers longer: in DeepSeek-R1 the length grew because longer chains of
# thought earned more reward, and this task has no room for one.

# %% [markdown] lang="ko"
# 네 그래프를 함께 읽어 보세요. 샘플링한 그룹의 보상과 보류 문제에서 잰 탐욕적
# 디코딩 pass@1이 오릅니다. 시작 모델과의 KL은 오르다가 $\beta$ 항에 붙들려 토큰당
# 십분의 몇 nat에 머뭅니다. 풀이 길이는 3~4토큰 그대로입니다. 두 자리 수 두 개의 합에는
# 더 긴 답이 쓸모없기 때문입니다. 여기서는 답을 길게 만드는 힘이 없습니다.
# DeepSeek-R1에서 길이가 늘어난 것은 긴 사고의 사슬이 보상을 더 받았기 때문이고, 이
# 과제에는 그런 사슬이 들어설 자리가 없습니다.

# %% [markdown] lang="en"
# ## 8. pass@k before and after
#
# Does RL teach the model new sums, or does it make the right answer it
# could already sample come out first? Compare pass@k, estimated with your
# `pass_at_k` from $n = 16$ samples at temperature 1 for each of 200
# held-out problems, before and after the run. Studies of large models
# (Yue et al., 2025) find that RL raises pass@1 a lot while pass@k at large
# $k$ changes little or even drops: the base model already had the answers
# somewhere in its samples. Look at what this run shows before you read the
# chapter's account of it.

# %% [markdown] lang="ko"
# ## 8. 강화학습 전후의 pass@k
#
# 강화학습은 모델에게 새로운 덧셈을 가르칠까요, 아니면 이미 샘플로는 낼 수 있던 정답이
# 먼저 나오게 만들 뿐일까요? 보류 문제 200개에서 문제마다 온도 1로 샘플 $n = 16$개를 뽑고,
# 여러분의 `pass_at_k`로 강화학습 전후의 pass@k를 추정해 비교합니다. 큰 모델을 다룬
# 연구(Yue 외, 2025)에서는 강화학습이 pass@1을 크게 올리지만 큰 $k$에서의 pass@k는
# 거의 그대로이거나 오히려 떨어집니다. 기반 모델도 정답을 이미 샘플 어딘가에 갖고
# 있었다는 뜻입니다. 9장의 설명을 읽기 전에 이번 실행이 무엇을 보여 주는지 먼저
# 살펴보세요.

# %%
from autograde.figures_grpo import pass_at_k_figure

KS = list(range(1, s.pass_k_n + 1))
probe = held_out[:s.pass_k_problems]
for name, model in (("before", start), ("after", policy)):
    counts = G.correct_counts(model, probe, s.pass_k_n, s.pass_k_temperature, s.seed + 2)
    run[f"pass_at_k_{name}"] = [sum(pass_at_k(s.pass_k_n, c, k) for c in counts) / len(counts) for k in KS]
    run[f"never_solved_{name}"] = sum(c == 0 for c in counts)
    print(f"{GRPO_TEXT[name]:>6}: " + " ".join(f"{v:.2f}" for v in run[f"pass_at_k_{name}"]),
          "| " + GRPO_TEXT["never_solved"].format(c=run[f"never_solved_{name}"], n=len(probe)))
pass_at_k_figure(run, COURSE_LANG)
plt.show()

# %% [markdown] lang="en"
# ## 9. Optional: a real model, thinking or not
#
# **Optional, ungraded, and offline.** This cell runs only when a real chat
# model is already in your local Hugging Face cache; it never downloads
# anything. By default it looks for `Qwen/Qwen3-0.6B` (fetch it once, where
# there is network, with `hf download Qwen/Qwen3-0.6B`); set the environment
# variable `COURSE_REAL_MODEL` to another hub id or to a checkpoint
# directory to try that one, or to `off` to skip the cell. The course's own code runs the model (chapter 7's KV
# cache included), greedily.
#
# Each of three arithmetic questions in the style of chapter 8 is asked twice:
# once with thinking switched off and the instruction to reply with the
# number only, once with thinking on. Your `extract_answer` reads the answer
# after `</think>` and the table shows whether it is right and how many
# tokens the reply took. Replies are capped at 2,048 tokens on a GPU and 768
# on a CPU (`budget`, or `COURSE_REAL_MODEL_TOKENS`), so the cell can take
# several minutes. A model this
# small can still be wrong after thinking; the two rows of each question show
# where thinking made the difference.

# %% [markdown] lang="ko"
# ## 9. 선택: 실제 모델, 생각할 때와 하지 않을 때
#
# **선택 사항이며, 채점하지 않고, 오프라인으로 돕니다.** 이 셀은 실제 대화 모델이
# 이미 로컬 Hugging Face 캐시에 있을 때만 돌고, 아무것도 내려받지 않습니다. 기본으로
# `Qwen/Qwen3-0.6B`를 찾습니다(네트워크가 되는 곳에서 `hf download Qwen/Qwen3-0.6B`로
# 한 번 받아 두세요). 다른 모델을 써 보려면 환경 변수 `COURSE_REAL_MODEL`에 그 허브
# id나 체크포인트 디렉터리를 넣고, 이 셀을 건너뛰려면 `off`를 넣으세요. 모델은 이
# 강좌의 코드로(7장의 KV 캐시까지 써서) 탐욕적 디코딩을 합니다.
#
# 8장에 나온 것 같은 산수 문제 세 개를 두 번씩 묻습니다. 한 번은 생각을 끄고 숫자만
# 답하라고 하고, 한 번은 생각을 켭니다. `</think>` 뒤의 답은 여러분의 `extract_answer`가
# 읽고, 표는 답이 맞았는지와 답하는 데 토큰을 몇 개 썼는지 보여 줍니다. 답의 길이는
# GPU에서 2,048토큰, CPU에서 768토큰까지로 제한하므로(`budget`, 또는
# `COURSE_REAL_MODEL_TOKENS`) 이 셀은 몇 분이 걸릴 수 있습니다. 이만큼 작은 모델은
# 생각한 뒤에도 틀릴 수 있습니다. 문제마다 두 줄을 견주어 보면 생각이 어디서 차이를
# 만들었는지 보입니다.

# %%
import os

REAL_MODEL = os.environ.get("COURSE_REAL_MODEL", "Qwen/Qwen3-0.6B")
QUESTIONS = [("Emily buys 23 apples and 177 oranges. Each orange costs $4. The total cost is $869. "
              "What is the cost of one apple in dollars?", 7.0),
             ("What is 47 × 38 - 129?", 1657.0),
             ("A train leaves at 9:40 and arrives at 13:15. How many minutes is the trip?", 215.0)]


def cached_checkpoint(name: str):
    """A checkpoint directory on this machine: `name` itself, or the hub id's copy in the Hugging Face
    cache; None when there is none. Never downloads."""
    if os.path.isdir(name):
        return name
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name, local_files_only=True)
    except Exception:                      # not installed, not cached, not a hub id: skip
        return None


path = None if REAL_MODEL.lower() == "off" else cached_checkpoint(REAL_MODEL)
if REAL_MODEL.lower() == "off":
    print(TEXT["off"])
elif path is None:
    print(TEXT["no_model"].format(name=REAL_MODEL))
else:
    from autograde.reference.hf_load import chat_reply, load_model

    loaded = load_model(path)
    budget = int(os.environ.get("COURSE_REAL_MODEL_TOKENS", 2048 if device.type == "cuda" else 768))
    print(TEXT["header"].format(mode="", ok="", tokens=TEXT["tokens"]))
    for question, target in QUESTIONS:
        for thinking in (False, True):
            ask = question + (" End with a line 'Answer: <number>'." if thinking else
                              " Reply with only 'Answer: <number>'.")
            reply = chat_reply(loaded, [{"role": "user", "content": ask}], max_new_tokens=budget,
                               thinking=thinking, greedy=True)
            answer = extract_answer(reply.split("</think>")[-1])
            ok = answer is not None and abs(answer - target) <= 1e-6
            print(TEXT["row"].format(mode=TEXT["thinking" if thinking else "direct"], ok=str(ok),
                                     tokens=len(loaded.tokenizer.encode(reply, add_special_tokens=False)),
                                     q=question[:48]))
