"""Checks for notebook 9: reading the answer out of a completion, majority voting, pass@k, a
rule-based reward, and the group-relative advantages of GRPO.

Fixed cases hold the extremes (a box after a marker, a typographic minus, a tie between answers,
pass@k at c = 0, n - c < k and k = n, a group of equal rewards that float rounding would turn
into noise); hidden cases draw completions, answer lists, counts and reward groups from a seed
chosen at grading time.

Case labels are written as values and code (“Answer: -3.5”, [7, None, 5], n=10 c=3 k=5), the
same in both languages, because they appear inside the feedback sentence.

Mistakes named (message key, each with a mutant or a judge rule, and a test in
tests/test_reasoning_notebook.py that writes it the way a student would):
  extract_answer: the last number anywhere (last_number), the first marker (first_marker), a
    box ignored (ignores_box), an earlier box read when the last one holds no number (box_with_number), a fallback number without marker or box (fallback), commas
    (commas), signs (sign), the typographic minus (unicode_minus), decimals (decimals), the
    Korean or lower-case marker (markers), a string returned (string).
  majority_vote: None counted as an answer (counts_none), another tie rule (tie), the count
    returned (count), an error when no answer is left (empty, raised).
  pass_at_k: c / n whatever k (pass1), 1 - (1 - c/n)^k (with_replacement), all k correct
    (all_correct), 1.0 already at n - c = k (edge_equal), the product one factor off (off_by_one), a factorial that overflows
    (overflow, raised or inf/nan), n - c < k not handled (edge, raised), k > n not refused
    (k_above_n).
  reward: the answer read from the thinking (reads_thinking), no format required (no_format),
    no partial reward (no_partial), a partial reward without the format (partial_without_format),
    tags checked loosely (loose_tags), a partial reward with no answer (no_answer).
  group_advantages: the sample std (sample_std), one mean and std for the whole batch (global),
    the wrong axis (wrong_axis), no division (no_std), eps inside the square root (eps_inside),
    a group of equal rewards that is not exactly zero (equal_group), a group a hair apart zeroed as if
    equal (threshold: a judge rule).
"""
from __future__ import annotations

import math
import re
from collections import Counter

import torch

from autograde.checks.core import Case, Check, Verdict, compare_outputs, dtype_kept, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register

FORMAT_REWARD = 0.1          # a completion in the format whose answer is wrong
MATCH_TOL = 1e-6             # |answer - target| at most this counts as correct

register_messages({
    "mistake_extract_last_number": {
        "en": "this is the last number of the whole text: the answer is the first number after the last "
              "marker (or in the last \\boxed{...}); numbers written after it are explanation",
        "ko": "글 전체의 마지막 숫자를 골랐습니다: 답은 마지막 표지 뒤의(또는 마지막 \\boxed{...} 안의) "
              "첫 숫자입니다. 그 뒤에 나오는 숫자는 설명일 뿐입니다"},
    "mistake_extract_first_marker": {
        "en": "the answer was read after the first marker: a completion may correct itself, so read after "
              "the last 'Answer:' (or '답:')",
        "ko": "첫 번째 표지 뒤에서 답을 읽었습니다: 풀이는 도중에 스스로 고칠 수 있으니 마지막 'Answer:'(또는 "
              "'답:') 뒤에서 읽으세요"},
    "mistake_extract_ignores_box": {
        "en": "the \\boxed{...} was ignored: when the text has a box, the answer is the first number inside "
              "the last one, whatever the markers say",
        "ko": "\\boxed{...}를 무시했습니다: 상자가 있으면 표지와 상관없이 마지막 상자 안의 첫 숫자가 답입니다"},
    "mistake_extract_fallback": {
        "en": "there is no marker and no box here, so there is no answer: return None (a number elsewhere "
              "in the text is not an answer)",
        "ko": "표지도 상자도 없으니 답이 없습니다: None을 돌려주세요 (글 속 다른 숫자는 답이 아닙니다)"},
    "mistake_extract_box_with_number": {
        "en": "the last \\boxed{...} holds no number, so there is no answer: return None (an earlier box was a "
              "draft, and the marker does not count when there is a box)",
        "ko": "마지막 \\boxed{...}에 숫자가 없으니 답이 없습니다: None을 돌려주세요 (앞의 상자는 초안일 뿐이고, "
              "상자가 있으면 표지는 따지지 않습니다)"},
    "mistake_extract_commas": {
        "en": "a number with thousands separators was cut at its first comma: read 1,234 as 1234",
        "ko": "천 단위 쉼표가 있는 숫자를 첫 쉼표에서 잘랐습니다: 1,234는 1234로 읽으세요"},
    "mistake_extract_sign": {
        "en": "the sign was lost: a number may start with - or +, and -3 is not 3",
        "ko": "부호를 빠뜨렸습니다: 숫자는 -나 +로 시작할 수 있고, -3과 3은 다른 답입니다"},
    "mistake_extract_unicode_minus": {
        "en": "the typographic minus sign − (U+2212) was not read as a minus: models and people write "
              "it, so treat it like -",
        "ko": "인쇄용 빼기 기호 −(U+2212)를 마이너스로 읽지 않았습니다: 모델도 사람도 이 기호를 쓰니 -와 "
              "똑같이 다루세요"},
    "mistake_extract_decimals": {
        "en": "the decimal part was dropped: read 3.75 as 3.75, not 3",
        "ko": "소수 부분을 버렸습니다: 3.75는 3이 아니라 3.75로 읽으세요"},
    "mistake_extract_markers": {
        "en": "the marker was not recognised: accept 'Answer:' in any letter case, with spaces before "
              "the colon, and the Korean '답:' (also inside '정답:')",
        "ko": "답 표지를 알아보지 못했습니다: 'Answer:'는 대소문자와 상관없이, 쌍점 앞에 빈칸이 있어도 "
              "받아들이고, 한국어 '답:'도('정답:' 안의 것까지) 받아들이세요"},
    "mistake_extract_string": {
        "en": "the answer came back as text: return it as a float (float('1234')), or None",
        "ko": "답을 문자열로 돌려주었습니다: float로 바꿔서(float('1234')) 돌려주거나 None을 돌려주세요"},
    "mistake_vote_counts_none": {
        "en": "None was counted as an answer: completions without an answer do not vote; leave them out",
        "ko": "None을 답으로 셌습니다: 답이 없는 풀이는 투표하지 않으니 빼고 세세요"},
    "mistake_vote_tie": {
        "en": "a tie was broken another way: among the answers with the most votes, return the one that "
              "appears first in the list",
        "ko": "동점을 다른 방식으로 갈랐습니다: 표가 가장 많은 답들 가운데 목록에서 먼저 나온 답을 돌려주세요"},
    "mistake_vote_count": {
        "en": "this is how many votes the winner got: return the winning answer itself",
        "ko": "이긴 답이 받은 표의 수입니다: 이긴 답 자체를 돌려주세요"},
    "mistake_vote_empty": {
        "en": "your function raised {error} when no answer was left ({text}): with no vote at all, "
              "return None",
        "ko": "남은 답이 하나도 없을 때 {error} 예외가 발생했습니다 ({text}): 표가 하나도 없으면 None을 "
              "돌려주세요"},
    "mistake_passk_pass1": {
        "en": "this is c / n, the chance that one sample is correct: pass@k asks for at least one correct "
              "answer among k samples",
        "ko": "c / n, 곧 샘플 하나가 맞을 확률입니다: pass@k는 샘플 k개 가운데 맞는 답이 하나라도 있을 "
              "확률입니다"},
    "mistake_passk_with_replacement": {
        "en": "1 - (1 - c/n)^k draws with replacement and is biased: the k samples are drawn from the n "
              "without replacement, 1 - C(n-c, k) / C(n, k)",
        "ko": "1 - (1 - c/n)^k는 복원 추출을 가정해 편향됩니다: k개는 n개 가운데 비복원으로 뽑으니 "
              "1 - C(n-c, k) / C(n, k)입니다"},
    "mistake_passk_all_correct": {
        "en": "this is the chance that all k samples are correct, C(c, k) / C(n, k): pass@k needs only "
              "one, 1 - C(n-c, k) / C(n, k)",
        "ko": "k개가 모두 맞을 확률 C(c, k) / C(n, k)입니다: pass@k는 하나만 맞으면 되므로 "
              "1 - C(n-c, k) / C(n, k)입니다"},
    "mistake_passk_edge_equal": {
        "en": "1.0 came back for n - c = k: then exactly one choice of k samples holds no correct one, so pass@k "
              "is 1 - 1 / C(n, k); return 1.0 only when n - c < k",
        "ko": "n - c = k인데 1.0을 돌려주었습니다: 이때는 k개를 고르는 방법 가운데 꼭 하나에 맞는 샘플이 없으니 "
              "pass@k는 1 - 1 / C(n, k)입니다. 1.0은 n - c < k일 때만 돌려주세요"},
    "mistake_passk_off_by_one": {
        "en": "the product is one factor off: C(n-c, k) / C(n, k) is the product of (1 - k / i) for i "
              "from n - c + 1 to n, both ends included",
        "ko": "곱의 범위가 하나 어긋났습니다: C(n-c, k) / C(n, k)는 i가 n - c + 1부터 n까지(양 끝 포함)일 "
              "때 (1 - k / i)를 모두 곱한 값입니다"},
    "mistake_passk_overflow": {
        "en": "the binomial coefficients overflowed a float (factorials of large n): use the product "
              "1 - prod(1 - k / i for i in range(n - c + 1, n + 1)), or exact integers (math.comb)",
        "ko": "이항 계수가 float 범위를 넘었습니다(큰 n의 계승): 곱 "
              "1 - prod(1 - k / i for i in range(n - c + 1, n + 1))로 계산하거나 정확한 정수(math.comb)를 쓰세요"},
    "mistake_passk_edge": {
        "en": "when n - c < k every choice of k samples holds a correct one, so pass@k is 1.0 (your "
              "function raised {error}: {text})",
        "ko": "n - c < k이면 어떻게 k개를 골라도 맞는 샘플이 들어 있으니 pass@k는 1.0입니다 (함수에서 "
              "{error} 예외가 발생했습니다: {text})"},
    "mistake_passk_k_above_n": {
        "en": "k > n was not refused: k samples cannot be chosen from n; raise ValueError with a clear message",
        "ko": "k > n을 거절하지 않았습니다: n개에서 k개를 고를 수는 없으니 알기 쉬운 메시지로 ValueError를 "
              "일으키세요"},
    "mistake_reward_reads_thinking": {
        "en": "the answer was read from the thinking too: only the text after </think> is the answer",
        "ko": "생각하는 부분에서도 답을 읽었습니다: 답은 </think> 뒤의 글에서만 읽습니다"},
    "mistake_reward_no_format": {
        "en": "a correct number outside the format earned a reward: without <think>...</think> the reward is 0.0",
        "ko": "형식을 지키지 않은 정답에도 보상을 주었습니다: <think>...</think>가 없으면 보상은 0.0입니다"},
    "mistake_reward_no_partial": {
        "en": "a completion in the format with a wrong answer got 0.0: it earns the format reward, 0.1",
        "ko": "형식은 지켰지만 답이 틀린 풀이에 0.0을 주었습니다: 형식 보상 0.1을 받습니다"},
    "mistake_reward_partial_without_format": {
        "en": "the format reward was given without the format: 0.1 only when the completion opens with "
              "<think>, closes it once, and gives an answer after </think>",
        "ko": "형식을 지키지 않았는데 형식 보상을 주었습니다: 0.1은 <think>로 시작해 한 번 닫고 </think> "
              "뒤에 답을 쓴 풀이만 받습니다"},
    "mistake_reward_loose_tags": {
        "en": "the tags were checked too loosely: the completion must start with <think> (spaces aside) "
              "and hold exactly one <think> and one </think>",
        "ko": "태그를 너무 느슨하게 확인했습니다: 풀이는 (앞의 빈칸을 빼면) <think>로 시작하고, <think>와 "
              "</think>를 정확히 하나씩 담아야 합니다"},
    "mistake_reward_no_answer": {
        "en": "there is no answer after </think>, so the format is not met: the reward is 0.0",
        "ko": "</think> 뒤에 답이 없으니 형식을 지키지 못한 것입니다: 보상은 0.0입니다"},
    "mistake_adv_sample_std": {
        "en": "this divides by the sample std (G - 1 in the variance, torch.std's default): use the "
              "population std of the group, unbiased=False (divide by G)",
        "ko": "표본 표준편차로 나눴습니다(분산을 G - 1로 나누는 torch.std의 기본값): 그룹의 모표준편차"
              "(unbiased=False, G로 나누기)를 쓰세요"},
    "mistake_adv_global": {
        "en": "one mean and std were taken over the whole batch: each row is one prompt's group, "
              "normalize every row by its own mean and std",
        "ko": "배치 전체에서 평균과 표준편차를 하나만 구했습니다: 행 하나가 프롬프트 하나의 그룹이니 행마다 "
              "그 행의 평균과 표준편차로 정규화하세요"},
    "mistake_adv_wrong_axis": {
        "en": "the statistics were taken down the columns: a group is a row of rewards (dim=-1)",
        "ko": "통계를 열 방향으로 구했습니다: 그룹은 보상의 한 행입니다 (dim=-1)"},
    "mistake_adv_no_std": {
        "en": "the rewards were centred but not scaled: divide by the group's std + eps",
        "ko": "보상에서 평균만 빼고 크기는 맞추지 않았습니다: 그룹의 표준편차 + eps로 나누세요"},
    "mistake_adv_eps_inside": {
        "en": "eps went inside the square root: the denominator is std + eps",
        "ko": "eps를 제곱근 안에 넣었습니다: 분모는 표준편차 + eps입니다"},
    "mistake_adv_threshold": {
        "en": "a group whose rewards differ, if only by a hair, got all zeros, as if they were equal (a threshold "
              "on the std, or isclose): only rewards that are exactly equal (==) make a zero group",
        "ko": "보상이 아주 조금이라도 다른 그룹을 보상이 모두 같은 그룹처럼 0으로 채웠습니다(표준편차에 문턱값을 두거나 "
              "isclose를 썼습니다): 보상이 정확히 같을(==) 때만 그룹이 0이 됩니다"},
    "mistake_adv_equal_group": {
        "en": "a group whose rewards are all equal must give exactly 0: float rounding leaves r - mean a "
              "hair off zero and dividing by std + eps blows it up (or 0 / 0 gives nan); return zeros "
              "for such a row",
        "ko": "보상이 모두 같은 그룹은 정확히 0이어야 합니다: 부동소수점 반올림 때문에 r - mean이 0에서 살짝 "
              "어긋나고, 표준편차 + eps로 나누면 그 오차가 커집니다(0 / 0이면 nan). 그런 행은 0으로 채우세요"},
})


# ----------------------------------------------------------------------------
# 1. reading the answer out of a completion

NUMBER = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
MARKER = re.compile(r"(?:answer|답)\s*:", re.IGNORECASE)
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def _extract(completion, *, mistake=None):
    number = NUMBER
    if mistake == "commas":
        number = re.compile(r"[-+\u2212]?\d+(?:\.\d+)?")
    elif mistake == "sign":
        number = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
    elif mistake == "unicode_minus":
        number = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
    elif mistake == "decimals":
        number = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)")
    marker = re.compile(r"Answer:") if mistake == "markers" else MARKER

    def value(text):
        found = number.findall(text)
        if not found:
            return None
        pick = found[-1] if mistake == "last_number" else found[0]
        return float(pick.replace(",", "").replace("\u2212", "-"))

    if mistake == "last_number":
        return value(completion)
    boxes = BOXED.findall(completion)
    if mistake == "box_with_number":
        boxes = [box for box in boxes if number.search(box)]
    if boxes and mistake != "ignores_box":
        return value(boxes[-1])
    marks = list(marker.finditer(completion))
    if not marks:
        if mistake in ("fallback", "fallback_last"):
            found = number.findall(completion)
            return float(found[0 if mistake == "fallback" else -1].replace(",", "").replace("\u2212", "-")) \
                if found else None
        return None
    start = marks[0].end() if mistake == "first_marker" else marks[-1].end()
    return value(completion[start:])


# (text, label-free description) pieces the hidden completions are made of
_EN_LEADS = ("Let me work it out. {work}", "First, {work} Then I check it again.", "We have {work}")
_KO_LEADS = ("차근차근 풀어 봅시다. {work}", "먼저 {work} 다시 확인합니다.", "정리하면 {work}")


def _number_text(g, value_kind: int) -> tuple[str, float]:
    """A number as a model might write it, and its value."""
    sign = ("", "-", "\u2212", "+")[int(torch.randint(0, 4, (1,), generator=g))]
    whole = int(torch.randint(0, 10 ** int(torch.randint(1, 8, (1,), generator=g)), (1,), generator=g))
    text = f"{whole:,}" if value_kind % 2 else str(whole)
    if value_kind >= 2:
        frac = str(int(torch.randint(1, 1000, (1,), generator=g))).rjust(3, "0").rstrip("0") or "5"
        text += "." + frac
    value = float(text.replace(",", ""))
    return sign + text, (-value if sign in ("-", "\u2212") else value)


def _random_completion(g, style: int) -> str:
    a, b = (int(x) for x in torch.randint(0, 500, (2,), generator=g))
    noise = [str(a), str(b), str(a + b)]
    answer, _ = _number_text(g, int(torch.randint(0, 4, (1,), generator=g)))
    korean = bool(torch.randint(0, 2, (1,), generator=g))
    work = f"{noise[0]} + {noise[1]} = {noise[2]}."
    lead = (_KO_LEADS if korean else _EN_LEADS)[int(torch.randint(0, 3, (1,), generator=g))].format(work=work)
    tail = f" ({noise[1]} × 2)" if bool(torch.randint(0, 2, (1,), generator=g)) else ""
    if style == 0:
        end = f"정답: {answer}개입니다{tail}" if korean else f"Answer: {answer}{tail}"
    elif style == 1:
        end = f"답 : {answer}원{tail}" if korean else f"ANSWER : {answer} apples{tail}"
    elif style == 2:
        end = f"Answer: {noise[0]}. 잠깐, 다시 보니 답: {answer}" if korean else \
            f"Answer: {noise[0]}. Wait, that is wrong. Final answer: {answer}{tail}"
    elif style == 3:
        end = f"답: {noise[2]}, 최종적으로 $\\boxed{{{answer}}}$" if korean else \
            f"Answer: {noise[2]}, so the result is $\\boxed{{{answer}}}${tail}"
    elif style == 4:
        end = f"그래서 {answer}개가 남습니다." if korean else f"So {answer} are left."     # no marker: None
    else:
        end = f"\\boxed{{{noise[0]}}} ... \\boxed{{x = {answer}}}"
    return f"{lead} {end}"


EXTRACT_FIXED = (
    "Answer: 42",
    "The apples cost $9, so one costs $3.\nAnswer: 3",
    "Answer: 12 (because 3 × 4 = 12, and 12 - 0 = 12 with 5 left over)",
    "Answer: 7. Wait, that ignores the oranges. Answer: 5",
    "We get 161 / 23 = 7, so the answer is \\boxed{7}. Answer: 8",
    "Total: \\boxed{1,234,567} apples",
    "Answer: -3.5",
    "Answer: −12",
    "정답: 총 1,250원입니다",
    "풀이를 마쳤습니다. 답 : 3.75",
    "answer: +8",
    "The oranges cost 4 and the apples 9, so one apple costs 3.",
    "2 + 2 = 4, and 4 × 3 = 12. Answer: not sure",
    "Answer: unknown",
    "First \\boxed{12}, then 3 more checks: \\boxed{?}",
    "The answer is probably 12, but I have not checked it.",
)


def _pick(g, options):
    return options[int(torch.randint(len(options), (1,), generator=g))]


def _number_label(value: float) -> str:
    """3 for 3.0, and every digit where the short form would hide them (0.30000000000000004)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _case_label(text: str) -> str:
    short = text.replace("\n", " ")
    return "“" + (short if len(short) <= 80 else short[:24] + " … " + short[-53:]) + "”"


@register
class ExtractAnswer(Check):
    step = "reasoning.extract_answer"
    mutants = {f"mistake_extract_{m}": (lambda m: lambda text: _extract(text, mistake=m))(m)
               for m in ("ignores_box", "first_marker", "last_number", "commas", "unicode_minus", "sign",
                         "decimals", "markers", "box_with_number")}
    mutants["mistake_extract_fallback"] = [lambda text: _extract(text, mistake="fallback"),
                                           lambda text: _extract(text, mistake="fallback_last")]

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            styles = torch.cat([torch.randperm(6, generator=g), torch.randperm(6, generator=g)]).tolist()
            texts = [_random_completion(g, style) for style in styles]           # every style twice
            return [Case(_case_label(t), (t,)) for t in texts]
        return [Case(_case_label(t), (t,)) for t in EXTRACT_FIXED]

    def reference(self, completion):
        return _extract(completion)

    def judge(self, case, output):
        expected = self.reference(*case.args)
        if isinstance(output, str) and expected is not None:
            try:
                same = float(output.replace(",", "").replace("\u2212", "-")) == expected
            except ValueError:
                same = False
            if same:
                return Verdict(False, "mistake_extract_string", {}, case.label)
        if isinstance(output, int) and not isinstance(output, bool):
            output = float(output)
        return super().judge(case, output)


# ----------------------------------------------------------------------------
# 2. self-consistency: the majority vote


def _vote(answers, *, mistake=None):
    pool = list(answers) if mistake == "counts_none" else [a for a in answers if a is not None]
    if not pool:
        return None
    counts = Counter(pool)                  # insertion order: the first seen wins a tie
    top = max(counts.values())
    tied = [a for a in counts if counts[a] == top]
    if mistake == "count":
        return top
    if mistake == "tie_smallest":
        return min(tied)
    if mistake == "tie_largest":
        return max(tied)
    if mistake == "tie_last":
        return tied[-1]
    return tied[0]


@register
class MajorityVote(Check):
    step = "reasoning.majority_vote"
    mutants = {
        "mistake_vote_counts_none": lambda answers: _vote(answers, mistake="counts_none"),
        "mistake_vote_tie": [lambda answers: _vote(answers, mistake="tie_smallest"),
                             lambda answers: _vote(answers, mistake="tie_largest"),
                             lambda answers: _vote(answers, mistake="tie_last")],
        "mistake_vote_count": lambda answers: _vote(answers, mistake="count"),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            out = []
            for _ in range(4):
                pool = [float(x) for x in torch.randint(-20, 60, (4,), generator=g).tolist()]
                n = int(torch.randint(1, 16, (1,), generator=g))
                answers = [None if float(torch.rand(1, generator=g)) < 0.25 else
                           pool[int(torch.randint(0, 4, (1,), generator=g))] for _ in range(n)]
                out.append(answers)
            a, b = sorted(set(float(x) for x in torch.randperm(90, generator=g)[:2].tolist()))
            out.append([b, None, a, a, None, b, None, None])                 # a tie, the larger seen first
            out.append([a, b, None, b, a])                                     # a tie, the smaller seen first
            out.append([None] * int(torch.randint(1, 5, (1,), generator=g)))
            return [Case(str(x), (x,)) for x in out]
        lists = [[7.0, 5.0, 7.0, 12.0, 7.0],
                 [3.0],
                 [None, None, None, 4.0],
                 [None, 2.0, None, None, 2.0, None, 9.0],
                 [9.0, 2.0, 2.0, 9.0],
                 [5.0, 8.0, 1.0],
                 [-1.5, 3.0, None, 3.0, -1.5],
                 [None, None],
                 []]
        return [Case(str(x), (x,)) for x in lists]

    def reference(self, answers):
        return _vote(answers)

    def judge(self, case, output):
        if isinstance(output, int) and not isinstance(output, bool) and self.reference(*case.args) is not None \
                and float(output) == self.reference(*case.args):
            output = float(output)
        return super().judge(case, output)

    def explain_raised(self, case, error, text):
        if all(a is None for a in case.args[0]):
            return "mistake_vote_empty"
        return None


# ----------------------------------------------------------------------------
# 3. pass@k, the unbiased estimator


def _pass_at_k(n, c, k, *, mistake=None):
    if k > n and mistake != "no_refusal":
        raise ValueError(f"k = {k} is larger than n = {n}")
    if mistake == "pass1":
        return c / n
    if mistake == "with_replacement":
        return 1.0 - (1.0 - c / n) ** k
    if mistake == "all_correct":
        return math.comb(c, k) / math.comb(n, k)
    if mistake == "edge_equal" and n - c == k:
        return 1.0
    if mistake == "off_by_one":
        return 1.0 - math.prod(1.0 - k / i for i in range(n - c, n))
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@register
class PassAtK(Check):
    step = "reasoning.pass_at_k"
    # math.comb is allowed (an exact binomial, as the notebook says); these libraries' binomials are not,
    # refused by the grader's static pass by name (scipy and sympy cost seconds to import)
    forbidden_names = ("scipy.special.comb", "scipy.special.binom", "scipy.special._basic.comb",
                       "sympy.binomial", "sympy.functions.combinatorial.factorials.binomial")
    mutants = {f"mistake_passk_{m}": (lambda m: lambda n, c, k: _pass_at_k(n, c, k, mistake=m))(m)
               for m in ("pass1", "with_replacement", "all_correct", "edge_equal", "off_by_one")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            triples = []
            for high in (12, 60, 400):
                n = int(torch.randint(2, high, (1,), generator=g))
                c = int(torch.randint(1, n, (1,), generator=g))
                k = int(torch.randint(1, n - c + 1, (1,), generator=g))
                triples.append((n, c, k))
            n = int(torch.randint(600, 5000, (1,), generator=g))
            triples.append((n, int(torch.randint(1, 40, (1,), generator=g)), n // 3))
            n = int(torch.randint(5, 40, (1,), generator=g))
            triples.append((n, n - 2, 3))                                        # n - c < k
            cases = [Case(f"n={n} c={c} k={k}", (n, c, k)) for n, c, k in triples]
            n = int(torch.randint(1, 30, (1,), generator=g))
            return cases + [Case(f"n={n} c=0 k={n + 1}", (n, 0, n + 1), raises="ValueError")]
        triples = [(10, 3, 1), (10, 3, 5), (10, 0, 4), (10, 10, 1), (10, 8, 3), (10, 1, 10),
                   (200, 1, 100), (3000, 5, 1000), (2, 1, 2), (10, 7, 3)]
        return [Case(f"n={n} c={c} k={k}", (n, c, k)) for n, c, k in triples] + \
            [Case("n=5 c=2 k=6", (5, 2, 6), raises="ValueError")]

    def reference(self, n, c, k):
        return _pass_at_k(n, c, k)

    def judge(self, case, output):
        if case.raises:
            return Verdict(False, "mistake_passk_k_above_n", {}, case.label)
        if isinstance(output, torch.Tensor) and output.numel() == 1:
            output = float(output)
        if isinstance(output, float) and not math.isfinite(output):
            return Verdict(False, "mistake_passk_overflow", {}, case.label)
        return super().judge(case, output)

    def explain_raised(self, case, error, text):
        n, c, k = case.args
        if error == "OverflowError":
            return "mistake_passk_overflow"
        if n - c < k and error in ("ValueError", "ZeroDivisionError"):
            return "mistake_passk_edge"
        return None


# ----------------------------------------------------------------------------
# 4. a rule-based reward: format and correctness


def _in_format(completion: str) -> bool:
    text = completion.strip()
    return text.startswith("<think>") and text.count("<think>") == 1 and text.count("</think>") == 1


def _reward(completion, target, *, mistake=None):
    if mistake == "loose_tags":
        tags = "<think>" in completion and "</think>" in completion
    else:
        tags = _in_format(completion)
    after = completion.split("</think>")[-1] if "</think>" in completion else completion
    answer = _extract(completion if mistake == "reads_thinking" else after)
    correct = answer is not None and abs(answer - target) <= MATCH_TOL
    if mistake == "no_format":
        return 1.0 if correct else (FORMAT_REWARD if tags and answer is not None else 0.0)
    if mistake == "partial_without_format":
        return 1.0 if tags and correct else (FORMAT_REWARD if answer is not None else 0.0)
    if not tags:
        return 0.0
    if answer is None:
        return FORMAT_REWARD if mistake == "no_answer" else 0.0
    if correct:
        return 1.0
    return 0.0 if mistake == "no_partial" else FORMAT_REWARD


REWARD_FIXED = (
    ("<think>2 × $2 = $4, then $13 − $4 = $9, and 9 / 3 = 3.</think>\nAnswer: 3", 3.0),
    ("<think>13 - 4 = 9 and 9 / 3 = 3</think> Answer: 4", 3.0),
    ("<think>869 − 708 = 161</think> Answer: 7 (161 / 23)", 7.0),
    ("Answer: 3", 3.0),
    ("The answer is 3, I am sure. Answer: 7", 3.0),
    ("  <think>maybe \\boxed{5}? no: 869 − 708 = 161, 161 / 23 = 7</think> Answer: 7", 7.0),
    ("<think>161 / 23 = 7</think>", 7.0),
    ("</think> 161 / 23 = 7 <think> Answer: 7", 7.0),
    ("<think>a</think><think>b</think> Answer: 7", 7.0),
    ("Sure! <think>161 / 23 = 7</think> Answer: 7", 7.0),
    ("<think>1,000 + 250 = 1,250</think>정답: 1,250원", 1250.0),
    ("<think>-2 - 1.5</think> \\boxed{−3.5}", -3.5),
    ("<think>17 / 5 = 3.4</think> Answer: 3.4", 3.0),
    ("<think>0.1 + 0.2</think> Answer: 0.3", 0.1 + 0.2),
    ("<think>7 - 0.0000001</think> Answer: 6.9999999", 7.0),
    ("<think>7 - 0.00001</think> Answer: 6.99999", 7.0),
    ("<think>161 / 23 <think> = 7</think> Answer: 7", 7.0),
    ("<think>161 / 23 = 7</think> Answer: 7 </think> Answer: 7", 7.0),
)


@register
class Reward(Check):
    step = "reasoning.reward"
    depends = ("reasoning.extract_answer",)
    mutants = {f"mistake_reward_{m}": (lambda m: lambda text, target: _reward(text, target, mistake=m))(m)
               for m in ("reads_thinking", "no_format", "no_partial", "partial_without_format", "loose_tags",
                         "no_answer")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            out = []
            # (layout, right answer?): the format right and wrong, no tags, no answer, loose tags
            plan = [(0, True), (0, False), (1, None), (2, True), (2, False), (3, None), (4, None), (5, True),
                    (6, True), (7, True), (8, True)]
            for kind, right in plan:
                target = float(int(torch.randint(-50, 500, (1,), generator=g)))
                if right is None:
                    right = bool(torch.randint(0, 2, (1,), generator=g))
                said = target if right else target + float(int(torch.randint(1, 9, (1,), generator=g)))
                guess = int(torch.randint(0, 999, (1,), generator=g))
                step = int(guess - target)
                thinking = f"\\boxed{{{guess}}}? {guess} {'−' if step >= 0 else '+'} {abs(step)} = {target:g}"
                answer = f"Answer: {said:g}" if bool(torch.randint(0, 2, (1,), generator=g)) else f"정답: {said:,.0f}"
                text = {0: f"<think>{thinking}</think> {answer}",
                        1: f"\n<think>{thinking}</think>\n{answer}",
                        2: f"{answer}",
                        3: f"<think>{thinking}</think>",
                        4: f"<think>{thinking} {answer}",
                        5: f"Sure. <think>{thinking}</think> {answer}",
                        6: f"<think>{thinking}</think><think>again</think> {answer}",
                        7: f"<think>{thinking} <think>again</think> {answer}",
                        8: f"<think>{thinking}</think> {answer} </think> {answer}"}[kind]
                out.append((text, target))
            # an answer a fraction off an integer target: close, but not within 1e-6
            target = float(int(torch.randint(1, 500, (1,), generator=g)))
            said = target + _pick(g, (0.25, 0.4, 1e-4, 1e-5))
            out.append((f"<think>{target:g} or so</think> Answer: {said}", target))
            return [Case(f"{_case_label(t)}, target={_number_label(v)}", (t, v)) for t, v in out]
        return [Case(f"{_case_label(t)}, target={_number_label(v)}", (t, v)) for t, v in REWARD_FIXED]

    def reference(self, completion, target):
        return _reward(completion, target)

    def judge(self, case, output):
        if isinstance(output, int) and not isinstance(output, bool):
            output = float(output)
        return super().judge(case, output)


# ----------------------------------------------------------------------------
# 5. group-relative advantages (GRPO)


def _advantages(rewards, eps=1e-6, *, mistake=None):
    r = rewards.double()
    if mistake == "wrong_axis":
        r = r.T
    if mistake == "global":
        mean, std = r.mean(), r.std(unbiased=False)
    else:
        mean = r.mean() if mistake == "global_mean" else r.mean(-1, keepdim=True)                  # (P, 1)
        std = r.std(unbiased=False) if mistake == "global_std" else \
            r.std(-1, unbiased=(mistake == "sample_std"), keepdim=True)                           # (P, 1)
    if mistake == "no_std":
        out = r - mean
    elif mistake == "eps_inside":
        out = (r - mean) / (std ** 2 + eps).sqrt()
    else:
        out = (r - mean) / (std + eps)
    if mistake != "equal_group":
        same = (r == r[..., :1]).all(-1, keepdim=True) if mistake != "global" else (r == r.flatten()[0]).all()
        out = torch.where(same, torch.zeros_like(out), out)
    if mistake == "wrong_axis":
        out = out.T
    return out.to(rewards.dtype)


def _hair_apart(power: int) -> torch.Tensor:
    """[[0, 2**-power, 0, 2**-power], [0, 1, 1, 0]]: the first group is not equal; its std, 2**-(power + 1),
    is far below any threshold, and float32 computes it exactly (powers of two)."""
    hair = 2.0 ** -power
    return torch.tensor([[0.0, hair, 0.0, hair], [0.0, 1.0, 1.0, 0.0]])


def _hair_label(power: int) -> str:
    return f"[[0, 2**-{power}, 0, 2**-{power}], [0, 1, 1, 0]]"


def _advantages_unguarded(rewards, eps=1e-6):
    """(r - mean) / (std + eps) in the rewards' own dtype, without a rule for equal groups."""
    mean = rewards.mean(-1, keepdim=True)
    return (rewards - mean) / (rewards.std(-1, unbiased=False, keepdim=True) + eps)


def _advantages_no_eps(rewards, eps=1e-6):
    mean = rewards.mean(-1, keepdim=True)
    return (rewards - mean) / rewards.std(-1, unbiased=False, keepdim=True)


@register
class GroupAdvantages(Check):
    step = "reasoning.group_advantages"
    mutants = {
        "mistake_adv_sample_std": lambda r, eps=1e-6: _advantages(r, eps, mistake="sample_std"),
        "mistake_adv_global": [lambda r, eps=1e-6: _advantages(r, eps, mistake="global"),
                               lambda r, eps=1e-6: _advantages(r, eps, mistake="global_mean"),
                               lambda r, eps=1e-6: _advantages(r, eps, mistake="global_std")],
        "mistake_adv_wrong_axis": lambda r, eps=1e-6: _advantages(r, eps, mistake="wrong_axis"),
        "mistake_adv_no_std": lambda r, eps=1e-6: _advantages(r, eps, mistake="no_std"),
        "mistake_adv_eps_inside": lambda r, eps=1e-6: _advantages(r, eps, mistake="eps_inside"),
        "mistake_adv_equal_group": [_advantages_unguarded, _advantages_no_eps],
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            P, G = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(7, 17, (1,), generator=g))
            levels = torch.tensor([0.0, FORMAT_REWARD, 1.0])
            r = levels[torch.randint(0, 3, (P, G), generator=g)]
            r[0] = FORMAT_REWARD                                              # all equal: rounding
            r[1, 0], r[1, 1] = 0.0, 1.0                                       # not all equal
            smooth = torch.rand(P + 1, G - 3, generator=g) * float(torch.empty(1).uniform_(0.1, 5, generator=g))
            single = torch.full((1, G), FORMAT_REWARD)
            hair = int(torch.randint(27, 32, (1,), generator=g))
            return [Case(f"rewards {tuple(r.shape)} of 0, {FORMAT_REWARD}, 1; first row all {FORMAT_REWARD}", (r,)),
                    Case(f"rewards (1, {G}), all {FORMAT_REWARD}", (single,)),
                    Case(f"rewards {tuple(smooth.shape)} uniform", (smooth,)),
                    Case(f"rewards {tuple(smooth.shape)} uniform, eps=0.3", (smooth,), {"eps": 0.3}),
                    Case(f"rewards {tuple(smooth.shape)} uniform, float64", (smooth.double(),)),
                    Case("a group one hair apart: " + _hair_label(hair), (_hair_apart(hair),))]
        four = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
        tenth = torch.full((2, 8), FORMAT_REWARD)
        tenth[1, :3] = 1.0
        mixed = torch.tensor([[0.0, FORMAT_REWARD, 1.0, 1.0, FORMAT_REWARD, 0.0],
                              [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
        tiny = torch.tensor([[0.0, 1e-6, 0.0, 1e-6]])
        wide = torch.randn(3, 5, generator=gen(8)) * 3
        return [Case("[[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]", (four,)),
                Case(f"(1, 8), all {FORMAT_REWARD}", (torch.full((1, 8), FORMAT_REWARD),)),
                Case(f"(2, 8), first row all {FORMAT_REWARD}", (tenth,)),
                Case(f"[[0, {FORMAT_REWARD}, 1, 1, {FORMAT_REWARD}, 0], [0, 0, 0, 0, 0, 0]]", (mixed,)),
                Case("[[0, 1e-6, 0, 1e-6]]", (tiny,)),
                Case("randn(3, 5) * 3", (wide,)),
                Case("randn(3, 5) * 3, eps=0.5", (wide,), {"eps": 0.5}),
                Case("[[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], eps=0.5", (four,), {"eps": 0.5}),
                Case("randn(3, 5) * 3, float64 (keep the dtype)", (wide.double(),)),
                Case("a group one hair apart: " + _hair_label(30), (_hair_apart(30),))]

    def reference(self, rewards, eps=1e-6):
        return _advantages(rewards, eps)

    def judge(self, case, output):
        if self._zeroed_unequal_group(case, output):
            return Verdict(False, "mistake_adv_threshold", {}, case.label)
        verdict = self._judge_values(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict

    def _zeroed_unequal_group(self, case, output) -> bool:
        """A row of rewards that are not all equal, whose advantages should not be 0, came back all 0, while
        another such row did not (so the function does compute advantages, and took this group for equal)."""
        rewards = case.args[0]
        if not isinstance(output, torch.Tensor) or output.shape != rewards.shape or not output.is_floating_point():
            return False
        expected = self.reference(*case.args, **case.kwargs)
        unequal = ~(rewards == rewards[..., :1]).all(-1)                        # (P,)
        zeroed = (output.detach().cpu() == 0).all(-1) & (expected.abs() > 1e-4).any(-1)
        return bool((unequal & zeroed).any() and (unequal & ~zeroed).any())

    def _judge_values(self, case, output):
        verdict = super().judge(case, output)
        if verdict.passed or verdict.key.startswith("mistake_") or not isinstance(output, torch.Tensor) \
                or output.shape != case.args[0].shape:
            return verdict
        rewards = case.args[0]
        equal = (rewards == rewards[..., :1]).all(-1)                         # (P,)
        if bool(equal.any()) and not bool((output[equal] == 0).all()):
            return Verdict(False, "mistake_adv_equal_group", {}, case.label)
        return verdict


# ----------------------------------------------------------------------------
# 6. GRPO's pieces: token log-probs, the completion mask, the loss, group sampling
#
# Mistakes named (message key, each with a mutant, and a test in tests/test_reasoning_notebook.py):
#   token_logprobs: no shift (no_shift), probabilities instead of log-probs (probs), log of the
#     softmax, which gives -inf on large logits (unstable), log-softmax over the wrong axis (wrong_dim).
#   completion_mask: prompt tokens in the mask (prompt_in_mask), the end marker left out
#     (end_excluded), the tokens after the end kept (after_end), the mask of the tokens instead of the
#     predictions, one place late (unaligned), an end marker in the prompt taken for the end (prompt_end).
#   grpo_loss: the ratio not detached from the old policy (not_detached), the advantage's sign flipped
#     (sign), the objective returned instead of the loss (not_negated), the KL of the wrong direction
#     (kl_direction) or added with the wrong sign (kl_sign), the mean over padded tokens (padded_mean),
#     clipping on one side only (one_side), no clipping (no_clip), the normalization ignored
#     (normalization).
#   sample_group: rows not grouped by prompt (not_grouped), tokens after the end kept (no_pad), no
#     early stop (no_early_stop), the temperature ignored (temperature), one row at a time (row_by_row).

from autograde.checks.runner import drive_grad  # noqa: E402
from autograde.protocol import NoGradModel  # noqa: E402
from autograde.reference import grpo as _grpo  # noqa: E402

register_messages({
    "mistake_logprobs_no_shift": {
        "en": "the log-probs are not shifted: the logits at position j predict token j + 1, so gather "
              "log_softmax(logits[:, :-1]) at ids[:, 1:]",
        "ko": "로그 확률을 한 칸 밀지 않았습니다: 위치 j의 로짓은 j + 1번째 토큰을 예측하니 "
              "log_softmax(logits[:, :-1])에서 ids[:, 1:] 자리를 gather하세요"},
    "mistake_logprobs_probs": {
        "en": "these are probabilities, not log-probabilities: use log_softmax",
        "ko": "로그 확률이 아니라 확률입니다: log_softmax를 쓰세요"},
    "mistake_logprobs_unstable": {
        "en": "log(softmax(...)) underflows to -inf on large logits: use torch.log_softmax, which stays finite",
        "ko": "log(softmax(...))는 로짓이 크면 -inf로 떨어집니다: 유한한 값을 주는 torch.log_softmax를 쓰세요"},
    "mistake_logprobs_wrong_dim": {
        "en": "the log-softmax ran over the wrong axis: normalize over the vocabulary, dim=-1",
        "ko": "log-softmax를 엉뚱한 축으로 계산했습니다: 어휘 축(dim=-1)으로 정규화하세요"},
    "mistake_mask_prompt_in_mask": {
        "en": "the prompt's tokens are in the mask: the model did not write them, so they get 0 (the first "
              "completion token is position prompt_len - 1)",
        "ko": "프롬프트 토큰이 마스크에 들어갔습니다: 모델이 쓴 토큰이 아니니 0이어야 합니다 (풀이의 첫 토큰은 "
              "prompt_len - 1번 위치입니다)"},
    "mistake_mask_end_excluded": {
        "en": "the end marker is left out: the model chose to stop there, and that choice is learned too: "
              "keep it (1), and only what follows it gets 0",
        "ko": "끝 표시를 뺐습니다: 멈추기로 한 것도 모델이 고른 것이니 배워야 합니다. 끝 표시는 1로 두고, "
              "그 뒤만 0으로 하세요"},
    "mistake_mask_after_end": {
        "en": "the tokens after the end marker are kept: they are padding, not part of the answer; 0 after "
              "the first end marker",
        "ko": "끝 표시 뒤의 토큰을 남겼습니다: 답이 아니라 채움 토큰이니 첫 끝 표시 뒤는 0이어야 합니다"},
    "mistake_mask_unaligned": {
        "en": "the mask is one place late: position j is about token j + 1 (it lines up with token_logprobs), "
              "so the first completion token is at position prompt_len - 1",
        "ko": "마스크가 한 칸 늦습니다: j번 위치는 j + 1번째 토큰을 가리키므로(token_logprobs와 줄이 맞습니다) "
              "풀이의 첫 토큰은 prompt_len - 1번 위치입니다"},
    "mistake_mask_prompt_end": {
        "en": "an end marker inside the prompt was taken for the end of the completion: look for it only "
              "from prompt_len on",
        "ko": "프롬프트 안의 끝 표시를 풀이의 끝으로 잘못 봤습니다: 끝 표시는 prompt_len부터만 찾으세요"},
    "mistake_grpo_not_detached": {
        "en": "the ratio is not detached from the old policy: when old_logp is the policy's own log-prob (the "
              "first step on a batch) the ratio is 1 and its gradient vanishes; use old_logp.detach()",
        "ko": "비율을 이전 정책에서 떼어 내지(detach) 않았습니다: old_logp가 정책 자신의 로그 확률이면(배치의 첫 "
              "스텝) 비율이 1이 되고 기울기가 사라집니다. old_logp.detach()를 쓰세요"},
    "mistake_grpo_sign": {
        "en": "the advantage's sign is flipped: this pushes good completions down and bad ones up; the "
              "surrogate is ratio * A, and the loss is minus the objective",
        "ko": "이점의 부호가 뒤집혔습니다: 좋은 풀이는 내리고 나쁜 풀이는 올리게 됩니다. 대리 목적 함수는 비율 * A이고, "
              "손실은 목적 함수의 부호를 바꾼 값입니다"},
    "mistake_grpo_not_negated": {
        "en": "this is the objective, not the loss: the optimizer minimizes, so return minus the objective",
        "ko": "손실이 아니라 목적 함수입니다: 옵티마이저는 값을 최소화하므로 목적 함수의 부호를 바꿔 돌려주세요"},
    "mistake_grpo_kl_direction": {
        "en": "the KL estimate has the wrong direction: k3 for KL(pi || pi_ref) is exp(ref_logp - logp) - "
              "(ref_logp - logp) - 1",
        "ko": "KL 추정의 방향이 반대입니다: KL(pi || pi_ref)의 k3는 exp(ref_logp - logp) - "
              "(ref_logp - logp) - 1입니다"},
    "mistake_grpo_kl_sign": {
        "en": "the KL penalty has the wrong sign: the objective subtracts beta * KL, so the loss adds it",
        "ko": "KL 벌점의 부호가 틀렸습니다: 목적 함수에서 beta * KL을 빼므로 손실에는 더해야 합니다"},
    "mistake_grpo_padded_mean": {
        "en": "the mean ran over padded positions too: divide by the number of masked tokens (per sequence "
              "for 'sequence', over the batch for 'token'), not by the tensor's length",
        "ko": "채움 위치까지 넣어 평균을 냈습니다: 텐서 길이가 아니라 마스크된 토큰 수로 나누세요('sequence'는 "
              "시퀀스마다, 'token'은 배치 전체)"},
    "mistake_grpo_one_side": {
        "en": "the ratio is clipped on one side only: clamp it to [1 - eps, 1 + eps], both bounds",
        "ko": "비율을 한쪽만 잘랐습니다: [1 - eps, 1 + eps]로 양쪽 다 자르세요"},
    "mistake_grpo_no_clip": {
        "en": "the ratio is not clipped: take min(ratio * A, clamp(ratio, 1 - eps, 1 + eps) * A)",
        "ko": "비율을 자르지 않았습니다: min(비율 * A, clamp(비율, 1 - eps, 1 + eps) * A)를 쓰세요"},
    "mistake_grpo_normalization": {
        "en": "the other normalization was used: 'sequence' averages each sequence's tokens, then the "
              "sequences; 'token' averages every masked token of the batch at once",
        "ko": "다른 정규화를 썼습니다: 'sequence'는 시퀀스마다 토큰 평균을 낸 뒤 시퀀스끼리 평균하고, "
              "'token'은 배치의 마스크된 토큰 전체를 한꺼번에 평균합니다"},
    "mistake_group_not_grouped": {
        "en": "the rows are not grouped by prompt: rows p * G .. p * G + G - 1 belong to prompt p "
              "(repeat_interleave, not repeat)",
        "ko": "행이 프롬프트별로 묶이지 않았습니다: p * G번부터 p * G + G - 1번 행이 프롬프트 p의 것입니다 "
              "(repeat가 아니라 repeat_interleave)"},
    "mistake_group_no_pad": {
        "en": "tokens were kept after a row's end marker: from then on that row gets pad_id",
        "ko": "끝 표시 뒤에도 토큰을 남겼습니다: 그 행은 끝 표시 다음부터 pad_id를 받습니다"},
    "mistake_group_no_early_stop": {
        "en": "the loop went on after every row had ended: stop as soon as all rows have written end_id",
        "ko": "모든 행이 끝났는데도 반복을 계속했습니다: 모든 행이 end_id를 쓰면 바로 멈추세요"},
    "mistake_group_temperature": {
        "en": "the temperature was ignored: divide the logits by it before the softmax",
        "ko": "온도를 무시했습니다: softmax 전에 로짓을 온도로 나누세요"},
    "mistake_group_row_by_row": {
        "en": "the rows were sampled one at a time: draw each new token for all rows in one call of "
              "torch.multinomial on the (B, V) probabilities, so that the generator gives the same draws as the "
              "reference",
        "ko": "행을 하나씩 따로 샘플링했습니다: 모든 행의 새 토큰을 (B, V) 확률에 torch.multinomial을 한 번만 "
              "불러 한꺼번에 뽑으세요. 그래야 생성기가 참고 구현과 같은 값을 뽑습니다"},
})


def _logprobs(logits, ids, *, mistake=None):
    if mistake == "no_shift":
        return torch.log_softmax(logits[:, 1:].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    if mistake == "wrong_dim":
        return torch.log_softmax(logits[:, :-1].float(), 1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    if mistake == "probs":
        return torch.softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    if mistake == "unstable":
        return torch.log(torch.softmax(logits[:, :-1].float(), -1)).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return _grpo.token_logprobs(logits, ids)


@register
class TokenLogprobs(Check):
    step = "reasoning.token_logprobs"
    mutants = {f"mistake_logprobs_{m}": (lambda m: lambda lg, ids: _logprobs(lg, ids, mistake=m))(m)
               for m in ("no_shift", "probs", "unstable", "wrong_dim")}

    def cases(self, seed, hidden):
        g = gen(seed if hidden else 0)
        B, T, V = (int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(6, 11, (1,), generator=g)),
                   int(torch.randint(10, 30, (1,), generator=g))) if hidden else (2, 8, 14)
        logits = torch.randn(B, T, V, generator=g) * 2
        ids = torch.randint(0, V, (B, T), generator=g)
        wide = torch.randn(B, T, V, generator=g) * 60                              # softmax underflows
        wide_ids = logits.argmin(-1)                                                # unlikely tokens
        return [Case(f"logits randn({B}, {T}, {V}) * 2, ids ({B}, {T})", (logits, ids)),
                Case(f"logits randn({B}, {T}, {V}) * 60, unlikely ids", (wide, wide_ids)),
                Case(f"logits ({B}, {T}, {V}) float64", (logits.double(), ids))]

    def reference(self, logits, ids):
        return _grpo.token_logprobs(logits, ids)


def _mask(ids, prompt_len, end_id, *, mistake=None):
    if mistake == "prompt_end":
        hits = (ids == end_id).long()
        hits[:, :prompt_len] = 0
        first_any = (ids == end_id).long().cumsum(1) - (ids == end_id).long()
        keep = (first_any == 0).float()[:, prompt_len:]
        return torch.cat([torch.zeros(ids.shape[0], prompt_len - 1), keep], 1)
    out = _grpo.completion_mask(ids, prompt_len, end_id)
    completion = ids[:, prompt_len:]
    if mistake == "prompt_in_mask":
        out[:, :prompt_len - 1] = 1.0
    elif mistake == "end_excluded":
        out[:, prompt_len - 1:] *= (completion != end_id).float()
    elif mistake == "after_end":
        out[:, prompt_len - 1:] = 1.0
    elif mistake == "unaligned":
        out = torch.cat([torch.zeros(ids.shape[0], 1), out[:, :-1]], 1)
    return out


@register
class CompletionMask(Check):
    step = "reasoning.completion_mask"
    mutants = {f"mistake_mask_{m}": (lambda m: lambda ids, p, e: _mask(ids, p, e, mistake=m))(m)
               for m in ("prompt_in_mask", "end_excluded", "after_end", "unaligned", "prompt_end")}

    def cases(self, seed, hidden):
        end, pad = _grpo.END_ID, _grpo.PAD_ID
        rows = [_grpo.encode("23+45=68") + [end, pad, pad], _grpo.encode("99+99=1981") + [pad],
                _grpo.encode("10+10=") + [end, pad, pad, pad, pad], _grpo.encode("12+34=4") + [end, 6, end, pad]]
        fixed = torch.tensor(rows)
        cases = [Case("23+45=68<end><pad><pad> and three more, prompt_len=6", (fixed, 6, end))]
        g = gen(seed if hidden else 3)
        B, Tp, L, V = 4, int(torch.randint(3, 7, (1,), generator=g)), int(torch.randint(5, 9, (1,), generator=g)), 20
        ids = torch.randint(0, V - 1, (B, Tp + L), generator=g)
        e = V - 1
        ids[0, Tp + 1] = e                                      # ends at its 2nd token
        ids[1, Tp + L - 1] = e                                  # ends at its last token
        ids[2, Tp] = e                                          # ends at once
        ids[3, 1] = e                                           # never ends, but the prompt holds the end id
        ids[0, Tp + 3] = e                                      # a second end after the first
        cases.append(Case(f"random ({B}, {Tp + L}), prompt_len={Tp}, end_id={e}, one in a prompt", (ids, Tp, e)))
        return cases

    def reference(self, ids, prompt_len, end_id):
        return _grpo.completion_mask(ids, prompt_len, end_id)


def _loss(logp, old_logp, ref_logp, advantages, mask, clip_eps=0.2, beta=0.04, normalization="sequence", *,
          mistake=None):
    if normalization not in _grpo.NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}")
    old = old_logp if mistake == "not_detached" else old_logp.detach()
    ratio = torch.exp(logp - old)
    adv = (-advantages if mistake == "sign" else advantages)[:, None]
    if mistake == "one_side":
        clipped = torch.clamp(ratio, max=1 + clip_eps)
    else:
        clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    surrogate = ratio * adv if mistake == "no_clip" else torch.minimum(ratio * adv, clipped * adv)
    log_ratio = (logp - ref_logp) if mistake == "kl_direction" else (ref_logp - logp)
    kl = torch.exp(log_ratio) - log_ratio - 1
    objective = surrogate + beta * kl if mistake == "kl_sign" else surrogate - beta * kl
    per_token = objective if mistake == "not_negated" else -objective
    mask = mask.to(per_token.dtype)
    if mistake == "normalization":
        normalization = "token" if normalization == "sequence" else "sequence"
    if normalization == "sequence":
        count = torch.full_like(mask.sum(-1), mask.shape[-1]) if mistake == "padded_mean" else mask.sum(-1)
        return ((per_token * mask).sum(-1) / count).mean()
    count = mask.numel() if mistake == "padded_mean" else mask.sum()
    return (per_token * mask).sum() / count


def _driven(mistake=None):
    return lambda *args, **kwargs: drive_grad(lambda *a, **k: _loss(*a, **k, mistake=mistake), *args, **kwargs)


@register
class GRPOLoss(Check):
    step = "reasoning.grpo_loss"
    mutants = {f"mistake_grpo_{m}": (lambda m: lambda *a, **k: _loss(*a, **k, mistake=m))(m) for m in (
        "not_detached", "sign", "not_negated", "kl_direction", "kl_sign", "padded_mean", "one_side", "no_clip",
        "normalization")}

    def cases(self, seed, hidden):
        g = gen(seed if hidden else 11)
        B, T = (int(torch.randint(3, 7, (1,), generator=g)), int(torch.randint(5, 9, (1,), generator=g))) \
            if hidden else (4, 6)
        logp = -torch.rand(B, T, generator=g) * 3
        old = logp + (torch.rand(B, T, generator=g) - 0.5) * 1.2          # ratios from e^-0.6 to e^0.6: both clips
        ref = logp + torch.randn(B, T, generator=g) * 0.5
        adv = torch.randn(B, generator=g)
        adv[0], adv[1] = abs(adv[0]) + 0.5, -abs(adv[1]) - 0.5
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = T
        mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
        mask[:, 0] = 0.0                                                    # a prompt position
        mask[0, 0] = 0.0
        junk = logp.masked_fill(mask == 0, 7.0)                            # padded positions hold junk
        beta = round(float(torch.empty(1).uniform_(0.02, 0.2, generator=g)), 3) if hidden else 0.1
        eps = round(float(torch.empty(1).uniform_(0.1, 0.3, generator=g)), 2) if hidden else 0.2
        label = f"({B}, {T}) log-probs, advantages {[round(a, 2) for a in adv.tolist()][:3]}..."
        return [Case(f"{label}, old = the policy itself, beta={beta}", (junk, None, ref, adv, mask),
                     {"beta": beta}, drive="grad"),
                Case(f"{label}, old_logp, clip_eps={eps}, beta={beta}", (junk, old, ref, adv, mask),
                     {"clip_eps": eps, "beta": beta}, drive="grad"),
                Case(f"{label}, old_logp, clip_eps={eps}, normalization='token'", (junk, old, ref, adv, mask),
                     {"clip_eps": eps, "normalization": "token"}, drive="grad"),
                Case(f"{label}, old = the policy, beta=0, normalization='token'", (junk, None, ref, adv, mask),
                     {"beta": 0.0, "normalization": "token"}, drive="grad"),
                Case(f"{label}, normalization='batch'", (junk, old, ref, adv, mask), {"normalization": "batch"},
                     raises="ValueError", drive="grad")]

    def reference(self, *args, **kwargs):
        return _driven(None)(*args, **kwargs)


def _sample(model, prompts, group_size, temperature, max_new_tokens, end_id, pad_id, generator=None, *,
            mistake=None):
    if group_size < 2:
        raise ValueError("group_size must be >= 2")
    generator = None if generator is None else gen(generator.initial_seed())
    if mistake == "row_by_row":
        outs = []
        for row in prompts.repeat_interleave(group_size, 0):
            outs.append(_grpo.sample_group(model, row[None], 1, temperature, max_new_tokens, generator, end_id=end_id,
                                           pad_id=pad_id, use_cache=False)[0])
        width = max(len(o) for o in outs)
        return torch.stack([torch.cat([o, torch.full((width - len(o),), pad_id)]) for o in outs])
    if mistake == "not_grouped":
        return _grpo.sample_group(model, prompts.repeat(group_size, 1), 1, temperature, max_new_tokens, generator,
                                  end_id=end_id, pad_id=pad_id, use_cache=False)
    if mistake == "temperature":
        temperature = 1.0
    if mistake in ("no_pad", "no_early_stop"):
        ids = prompts.repeat_interleave(group_size, 0)
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
        for _ in range(max_new_tokens):
            token = _grpo.sample_next(model(ids)[:, -1, :].float(), temperature, generator=generator)
            if mistake == "no_early_stop":
                token = torch.where(done, torch.full_like(token, pad_id), token)
            ids = torch.cat([ids, token[:, None]], 1)
            done |= token == end_id
            if mistake == "no_pad" and bool(done.all()):
                break
        return ids
    return _grpo.sample_group(model, prompts, group_size, temperature, max_new_tokens, generator, end_id=end_id,
                              pad_id=pad_id, use_cache=False)


def _likely_end(fn, prompts) -> int:
    """A token the model often writes second: as the end marker it ends some rows early, not all."""
    with torch.no_grad():
        first = fn(prompts)[:, -1].argmax(-1)
        second = fn(torch.cat([prompts, first[:, None]], 1))[:, -1].argmax(-1)
    return int(second[0])


@register
class SampleGroup(Check):
    step = "reasoning.sample_group"
    mutants = {f"mistake_group_{m}": (lambda m: lambda *a, **k: _sample(*a, **k, mistake=m))(m)
               for m in ("not_grouped", "no_pad", "no_early_stop", "temperature", "row_by_row")}

    def cases(self, seed, hidden):
        from autograde.checks.steps.sampling import reference as course_reference

        model = course_reference().model
        fn, V = NoGradModel(model), model.cfg.vocab_size
        g = gen(seed if hidden else 5)
        P, Tp = (int(torch.randint(2, 4, (1,), generator=g)), int(torch.randint(3, 7, (1,), generator=g)))
        prompts = torch.randint(256, V - 1, (P, Tp), generator=g)
        end = _likely_end(fn, prompts)
        with torch.no_grad():
            first = int(fn(prompts[:1])[0, -1].argmax())
        pad = 0
        s = [int(x) for x in torch.randint(2**31 - 1, (3,), generator=g)]
        t = round(float(torch.empty(1).uniform_(0.5, 0.9, generator=g)), 2)
        return [Case(f"model, prompts ({P}, {Tp}), G=4, T=1, 6 new, end_id={end}", (fn, prompts, 4, 1.0, 6, end, pad),
                     {"generator": gen(s[0])}),
                Case(f"model, prompts ({P}, {Tp}), G=3, T={t}, 5 new, end_id={end}", (fn, prompts, 3, t, 5, end, pad),
                     {"generator": gen(s[1])}),
                Case(f"model, prompts ({P}, {Tp}), G=2, T=1, 8 new, end_id=-1 (never ends)",
                     (fn, prompts, 2, 1.0, 8, -1, pad), {"generator": gen(s[2])}),
                Case(f"model, one prompt, G=3, T=0.01, 6 new, end_id={first} (its likeliest first token: every "
                     f"row ends at once, so the loop stops)", (fn, prompts[:1], 3, 0.01, 6, first, pad),
                     {"generator": gen(s[0] + 1)}),
                Case(f"model, prompts ({P}, {Tp}), G=1", (fn, prompts, 1, 1.0, 4, end, pad), {"generator": gen(1)},
                     raises="ValueError")]

    def reference(self, *args, **kwargs):
        return _sample(*args, **kwargs)
