"""Checks for notebook 4: temperature, greedy decoding, top-k, top-p, sampling, generation, the KV cache.

Fixed cases use hand-made logits with ties and top-p boundaries, and the real
next-token logits of the trained reference model; hidden cases draw shapes,
values, settings and generator seeds from a seed chosen at grading time.

Randomness is compared draw for draw: the reference draws with
torch.multinomial(probs, 1, generator=g) from a generator seeded like the
student's (`generator.initial_seed()`), so a correct sample_next or generate
returns exactly the reference's ids. When the draws differ, a chi-square
goodness-of-fit test on 20,000 draws from one row tells the student whether
the distribution itself is wrong or only the way of drawing.

Cases of sample_next, generate and generate_with_cache carry live objects: a
torch.Generator, the reference model behind a callable, and (for the cache) a
spy that records how the model was called. They run in-process (notebooks);
a sandboxed grader has to rebuild those objects on its side.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from autograde.checks.core import Case, Check, Verdict, compare_outputs, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.protocol import NoGradModel  # model_fn for the checks ($model on the wire)
from autograde.reference import sampling as ref

PROMPTS = ("언어 모델은", "The model reads")
CHAPTER_LOGITS = [2.0, 1.0, 0.5, 0.0, -1.0]     # the worked example of chapter 5
N_DRAWS = 20_000                                 # rows of one chi-square case
Z_999 = 3.090232                                 # standard normal quantile at 0.999

register_messages({
    "mistake_temperature_after_softmax": {
        "en": "temperature applied after softmax: dividing (or powering) probabilities is not what T does; "
              "return the logits divided by T, the softmax comes later",
        "ko": "소프트맥스 뒤에 온도를 적용했습니다: 확률을 나누거나 거듭제곱하는 것은 온도가 하는 일이 아닙니다. "
              "로짓을 T로 나눈 값을 돌려주세요. 소프트맥스는 그다음입니다"},
    "mistake_temperature_multiplied": {
        "en": "the logits were multiplied by T: divide them, so that T < 1 sharpens and T > 1 flattens",
        "ko": "로짓에 T를 곱했습니다: T로 나누어야 T < 1이면 뾰족해지고 T > 1이면 평평해집니다"},
    "mistake_temperature_probabilities": {
        "en": "these are probabilities, not logits: return logits / T without the softmax",
        "ko": "로짓이 아니라 확률입니다: 소프트맥스 없이 logits / T를 돌려주세요"},
    "mistake_greedy_axis": {
        "en": "argmax over the wrong axis: the vocabulary is the last dimension (dim=-1)",
        "ko": "argmax를 엉뚱한 축으로 했습니다: 어휘 축은 마지막 차원(dim=-1)입니다"},
    "mistake_greedy_tie": {
        "en": "on ties greedy decoding takes the lowest id (what torch.argmax does), not the highest",
        "ko": "동점이면 탐욕적 디코딩은 가장 큰 id가 아니라 가장 작은 id를 고릅니다 (torch.argmax가 그렇게 합니다)"},
    "mistake_topk_ties": {
        "en": "top-k keeping more than k on ties: `logits >= k-th value` keeps every tied token; "
              "keep exactly k, the lower id first (a stable descending sort)",
        "ko": "동점 때문에 top-k가 k개보다 많이 남겼습니다: `logits >= k번째 값`은 동점인 토큰을 모두 남깁니다. "
              "정확히 k개를, id가 작은 쪽부터 남기세요 (내림차순 안정 정렬)"},
    "mistake_topk_tie_order": {
        "en": "exactly k tokens, but the wrong one among tied logits: the lower id must win "
              "(torch.topk promises no order among ties; use torch.sort(..., descending=True, stable=True))",
        "ko": "k개는 맞지만 동점인 로짓 가운데 엉뚱한 토큰을 남겼습니다: id가 작은 쪽이 이겨야 합니다 "
              "(torch.topk는 동점의 순서를 보장하지 않습니다. torch.sort(..., descending=True, stable=True)를 쓰세요)"},
    "mistake_topk_fewer": {
        "en": "top-k kept fewer than k tokens: `logits > k-th value` drops the k-th token itself",
        "ko": "top-k가 k개보다 적게 남겼습니다: `logits > k번째 값`은 k번째 토큰까지 지웁니다"},
    "mistake_filter_zero": {
        "en": "removed tokens were set to 0: a logit of 0 still has probability; set them to -inf",
        "ko": "지운 토큰을 0으로 두었습니다: 로짓 0에도 확률이 있습니다. -inf로 바꾸세요"},
    "mistake_topp_crossing": {
        "en": "top-p dropping the token that crosses p: keep a token while the probability ranked before it "
              "is still < p (mass_before = cumsum - p), so the token that crosses p stays",
        "ko": "top-p가 p를 넘기는 토큰을 버렸습니다: 앞선 토큰들의 확률 합이 아직 p보다 작으면 남겨야 합니다 "
              "(mass_before = cumsum - p). 그래야 p를 넘기는 토큰이 남습니다"},
    "mistake_topp_tie_order": {
        "en": "tokens with the same probability were ranked the wrong way: like top-k, rank ties by token id, "
              "the lower id first (a stable descending sort)",
        "ko": "확률이 같은 토큰의 순위를 거꾸로 매겼습니다: top-k처럼 동점은 id가 작은 쪽을 앞에 둡니다 "
              "(내림차순 안정 정렬)"},
    "mistake_topp_unsorted": {
        "en": "the keep/remove pattern was applied in sorted order: map it back to the token ids "
              "(scatter with the sort indices) before filling with -inf",
        "ko": "남길지 지울지를 정렬된 순서 그대로 적용했습니다: -inf로 채우기 전에 정렬 인덱스로 "
              "원래 토큰 id 자리에 되돌려 놓으세요 (scatter)"},
    "mistake_topp_probabilities": {
        "en": "these are probabilities, not logits: return the logits with the removed tokens set to -inf",
        "ko": "로짓이 아니라 확률입니다: 지운 토큰만 -inf로 바꾼 로짓을 돌려주세요"},
    "mistake_sample_not_seeded": {
        "en": "your draws follow the right distribution but are not the reference's seeded draws: draw with "
              "torch.multinomial(probs, 1, generator=generator), so that the same seed gives the same tokens",
        "ko": "뽑은 결과의 분포는 맞지만 참고 구현이 같은 시드로 뽑은 값과 다릅니다: "
              "torch.multinomial(probs, 1, generator=generator)로 뽑아야 같은 시드에서 같은 토큰이 나옵니다"},
    "mistake_sample_distribution": {
        "en": "your draws do not follow the expected distribution (chi-square {chi2} > {critical}, 99.9% level): "
              "token {token} came {got} times in {n} draws, about {expected} were expected",
        "ko": "뽑은 결과가 기대한 분포를 따르지 않습니다 (카이제곱 {chi2} > {critical}, 99.9% 수준): "
              "{n}번 중 {token}번 토큰이 {got}번 나왔는데 약 {expected}번이어야 합니다"},
    "mistake_sample_removed": {
        "en": "token {token} was drawn although the filters removed it (probability 0)",
        "ko": "필터가 지운(확률 0) {token}번 토큰이 뽑혔습니다"},
    "mistake_sample_order": {
        "en": "the filters ran in the wrong order: temperature first, then top-k, then top-p on what top-k left",
        "ko": "필터 순서가 틀렸습니다: 온도를 먼저, 그다음 top-k, 마지막으로 top-k가 남긴 토큰에 top-p입니다"},
    "mistake_sample_temperature": {
        "en": "the temperature had no effect or came too late: divide the logits by T first, before the filters and the softmax",
        "ko": "온도가 효과가 없거나 너무 늦게 적용되었습니다: 필터와 소프트맥스보다 먼저 로짓을 T로 나누세요"},
    "mistake_sample_greedy": {
        "en": "you always picked the most likely token: sample_next draws at random from the probabilities",
        "ko": "늘 가장 그럴듯한 토큰만 골랐습니다: sample_next는 확률에 따라 무작위로 뽑아야 합니다"},
    "mistake_generate_prompt": {
        "en": "the prompt was returned too: return only the new ids",
        "ko": "프롬프트까지 돌려주었습니다: 새로 만든 id만 돌려주세요"},
    "mistake_generate_first_position": {
        "en": "the prediction was read from the first position: the next token comes from the last row, logits[:, -1, :]",
        "ko": "첫 위치의 예측을 읽었습니다: 다음 토큰은 마지막 행 logits[:, -1, :]에서 나옵니다"},
    "mistake_generate_no_feedback": {
        "en": "the new tokens were not fed back: append each new token to the ids the model reads at the next step",
        "ko": "새 토큰을 다시 넣지 않았습니다: 새 토큰마다 다음 단계에 모델이 읽을 id 뒤에 붙이세요"},
    "mistake_generate_stop_excluded": {
        "en": "the stop token is missing from the output: append it, then stop",
        "ko": "멈춤 토큰이 출력에 없습니다: 멈춤 토큰도 붙인 다음 멈추세요"},
    "mistake_generate_stop_ignored": {
        "en": "generation went on after the stop token: stop as soon as stop_id is drawn",
        "ko": "멈춤 토큰 뒤에도 생성을 계속했습니다: stop_id가 나오면 바로 멈추세요"},
    "mistake_generate_sliding": {
        "en": "the window slid by one token per step: when the context is full, keep only the newest "
              "context_length // 2 ids and go on from there (the rule of chapter 6, the same with and without a cache)",
        "ko": "창을 한 토큰씩 밀었습니다: 문맥이 가득 차면 가장 최근 id context_length // 2개만 남기고 거기서부터 "
              "이어 가세요 (6장의 규칙으로, 캐시가 있든 없든 같습니다)"},
    "mistake_generate_window": {
        "en": "the model saw more than context_length tokens: a longer prompt keeps its last context_length ids, "
              "and a full window keeps its newest half",
        "ko": "모델이 context_length개보다 많은 토큰을 보았습니다: 긴 프롬프트는 마지막 context_length개의 id만 "
              "남기고, 창이 가득 차면 최근 절반만 남깁니다"},
    "mistake_cache_full_input": {
        "en": "after the prefill the whole sequence was fed again into the cache: feed only the newest token, (1, 1)",
        "ko": "프리필 뒤에 시퀀스 전체를 캐시에 다시 넣었습니다: 가장 최근 토큰 하나, (1, 1)만 넣으세요"},
    "mistake_cache_fresh": {
        "en": "a new, empty cache was used at each step, so the model saw only one token: create the cache once, before the prefill",
        "ko": "단계마다 새 빈 캐시를 써서 모델이 토큰 하나만 보았습니다: 캐시는 프리필 전에 한 번만 만드세요"},
    "mistake_cache_not_used": {
        "en": "the tokens are right, but call {call} of the model did not get the cache: create one KVCache "
              "before the prefill and pass the same one (cache=cache) at every step",
        "ko": "토큰은 맞지만 모델의 {call}번째 호출에 캐시를 넘기지 않았습니다: 프리필 전에 KVCache를 하나 "
              "만들고 단계마다 그 캐시를 (cache=cache) 넘기세요"},
    "mistake_cache_many_tokens": {
        "en": "the tokens are right, but call {call} of the model read {tokens} tokens: after the prefill, "
              "feed only the newest token, (1, 1); the cache holds the rest",
        "ko": "토큰은 맞지만 모델의 {call}번째 호출에서 토큰 {tokens}개를 읽었습니다: 프리필 뒤에는 가장 최근 "
              "토큰 하나, (1, 1)만 넣으세요. 나머지는 캐시에 있습니다"},
})


def fresh(generator: torch.Generator | None) -> torch.Generator | None:
    """A new generator in the state the student's generator started from."""
    return None if generator is None else gen(generator.initial_seed())


class SamplingCheck(Check):
    """Mutants may be a tuple of callables: several ways to make the same mistake
    (Check.diagnose tries every variant)."""

    def failed(self, verdict: Verdict, case: Case, output) -> Verdict:
        mistake = self.diagnose(case, output)
        if mistake:
            verdict.key, verdict.params = mistake, {**verdict.params, "where": case.label}
        return verdict


# ----------------------------------------------------------------------------
# real logits of the reference model


@lru_cache(maxsize=1)
def reference():
    from autograde.reference.checkpoint import load_reference

    return load_reference()


@lru_cache(maxsize=None)
def real_logits(index: int) -> torch.Tensor:
    """Next-token logits of the reference model after PROMPTS[index], (1, V)."""
    ref_model = reference().model
    ids = torch.tensor([reference().tokenizer.encode(PROMPTS[index])])
    with torch.no_grad():
        return ref_model(ids)[:, -1, :].clone()


def safe_p(logits: torch.Tensor, rank: int) -> float:
    """A top-p value halfway between two cumulative sums of the row (ranks `rank` - 1 and `rank`,
    moved to a nearby rank whose gap is wide), so that the nucleus is the same however the sum
    is computed."""
    probs = torch.sort(torch.softmax(logits.double(), dim=-1), descending=True).values
    cum = probs.cumsum(-1)
    wide = [r for r in range(1, len(probs)) if probs[r] > 1e-3]     # gaps far above float32 rounding
    rank = min(wide, key=lambda r: abs(r - rank)) if rank > 0 and wide else rank
    return float((cum[rank - 1] + cum[rank]) / 2) if rank > 0 else float(cum[0] / 2)


# ----------------------------------------------------------------------------
# 1. temperature


@register
class Temperature(SamplingCheck):
    """Logits mean the same thing up to a constant per row, so the verdict
    compares the distributions softmax(output) and softmax(logits / T)."""
    step, function, points = "sampling.temperature", "apply_temperature", 1
    forbidden = ("autograde.reference.sampling.apply_temperature",)
    mutants = {
        "mistake_temperature_probabilities": lambda z, t: torch.softmax(z / t, dim=-1),
        "mistake_temperature_after_softmax": (
            lambda z, t: torch.softmax(z, dim=-1) / t,
            lambda z, t: torch.softmax(z, dim=-1) ** (1 / t),
            lambda z, t: torch.softmax(z, dim=-1)),       # (probs ** (1/T) renormalized is softmax(z / T) itself)
        "mistake_temperature_multiplied": lambda z, t: z * t,
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(3, 40, (1,), generator=g))
            z = torch.randn(B, V, generator=g) * 3
            t = round(float(torch.empty(1).uniform_(0.2, 3.0, generator=g)), 3)
            return [Case(f"random logits {tuple(z.shape)}, T={t}", (z, t)),
                    Case("real logits, T=0.7", (real_logits(1), 0.7))]
        z = torch.tensor([CHAPTER_LOGITS])
        return [Case("chapter logits, T=0.5", (z, 0.5)),
                Case("chapter logits, T=2", (z, 2.0)),
                Case("chapter logits, T=1", (z, 1.0)),
                Case(f"real logits after “{PROMPTS[0]}”, T=0.7", (real_logits(0), 0.7))]

    def reference(self, logits, temperature):
        return ref.apply_temperature(logits, temperature)

    def judge(self, case, output):
        expected = self.reference(*case.args)
        verdict = compare_outputs(output, expected, label=case.label)
        if verdict.passed:
            return verdict
        if verdict.key == "wrong_values" and compare_outputs(
                torch.softmax(output.float(), dim=-1), torch.softmax(expected.float(), dim=-1)).passed:
            return Verdict(True, case=case.label)            # the same distribution, shifted by a constant
        return self.failed(verdict, case, output)


# ----------------------------------------------------------------------------
# 2. greedy decoding


@register
class Greedy(SamplingCheck):
    step, function, points = "sampling.greedy", "greedy", 1
    mutants = {
        "mistake_greedy_axis": lambda z: z.argmax(dim=0),
        "mistake_greedy_tie": lambda z: z.shape[-1] - 1 - z.flip(-1).argmax(dim=-1),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(3, 12, (1,), generator=g))
            return [Case(f"random logits with ties {(B, V)}", (torch.randint(-2, 3, (B, V), generator=g).float(),)),
                    Case("random logits", (torch.randn(B + 1, V + 5, generator=g),))]
        return [Case("[[0, 5, 5]]: a tie", (torch.tensor([[0.0, 5.0, 5.0]]),)),
                Case("three rows with ties", (torch.tensor([[1.0, 3.0, 3.0, 0.0],
                                                            [2.0, 2.0, 2.0, 2.0],
                                                            [-1.0, -4.0, -1.0, -3.0]]),)),
                Case("real logits of two prompts", (torch.cat([real_logits(0), real_logits(1)]),))]

    def reference(self, logits):
        return logits.argmax(dim=-1)


# ----------------------------------------------------------------------------
# 3. top-k


def _topk_threshold(z, k, strict=False):
    kth = torch.sort(z, dim=-1, descending=True).values[..., min(k, z.shape[-1]) - 1:min(k, z.shape[-1])]
    keep = z > kth if strict else z >= kth
    return z.masked_fill(~keep, float("-inf"))


def _topk_by_topk(z, k):
    idx = torch.topk(z, min(k, z.shape[-1]), dim=-1).indices
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, idx, True)
    return z.masked_fill(~keep, float("-inf"))


@register
class TopK(SamplingCheck):
    step, function, points = "sampling.top_k", "top_k_filter", 1
    forbidden = ("autograde.reference.sampling.top_k_filter", "autograde.reference.sampling.next_token_distribution")
    mutants = {
        "mistake_topk_ties": lambda z, k: _topk_threshold(z, k),
        "mistake_topk_fewer": lambda z, k: _topk_threshold(z, k, strict=True),
        "mistake_topk_tie_order": _topk_by_topk,
        "mistake_filter_zero": lambda z, k: ref.top_k_filter(z, k).nan_to_num(neginf=0.0),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(4, 30, (1,), generator=g))
            k = int(torch.randint(1, V, (1,), generator=g))
            return [Case(f"random logits with ties {(B, V)}, k={k}",
                         (torch.randint(-3, 4, (B, V), generator=g).float(), k)),
                    Case(f"random logits, k={k}", (torch.randn(B, V, generator=g), k)),
                    Case(f"k={V + 3} larger than the vocabulary", (torch.randn(B, V, generator=g), V + 3))]
        return [Case("[3, 1, 1, 0], k=2: a tie at the edge", (torch.tensor([[3.0, 1.0, 1.0, 0.0]]), 2)),
                Case("[2, 5, 5, 5, 1], k=2", (torch.tensor([[2.0, 5.0, 5.0, 5.0, 1.0]]), 2)),
                Case("[1, 3, 2, 3, 2, 0], k=3", (torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 0.0]]), 3)),
                Case("two rows, k=1", (torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 2.0]]), 1)),
                Case("k=10 larger than the vocabulary", (torch.tensor([[0.5, -1.0, 2.0, 0.5]]), 10)),
                Case("real logits, k=50", (real_logits(0), 50))]

    def reference(self, logits, k):
        return ref.top_k_filter(logits, k)


# ----------------------------------------------------------------------------
# 4. top-p


def _topp(z, p, *, rule="before", unsorted=False, probabilities=False):
    probs = torch.softmax(z, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = sorted_probs.cumsum(-1)
    keep_sorted = {"before": cum - sorted_probs < p, "le": cum <= p, "lt": cum < p}[rule]
    keep = keep_sorted if unsorted else torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    if probabilities:
        kept = probs.masked_fill(~keep, 0.0)
        return kept / kept.sum(-1, keepdim=True)
    return z.masked_fill(~keep, float("-inf"))


def _probs_logits(*probs) -> torch.Tensor:
    return torch.tensor([probs]).log()                                   # (1, V)


@register
class TopP(SamplingCheck):
    """Every p lies well between two cumulative sums, so that any correct way
    of summing (float32, float64, another order) keeps the same tokens."""
    step, function, points = "sampling.top_p", "top_p_filter", 2
    forbidden = ("autograde.reference.sampling.top_p_filter", "autograde.reference.sampling.next_token_distribution")
    mutants = {
        "mistake_topp_tie_order": lambda z, p: _topp(z.flip(-1), p).flip(-1),
        "mistake_topp_crossing": (lambda z, p: _topp(z, p, rule="le"), lambda z, p: _topp(z, p, rule="lt")),
        "mistake_topp_unsorted": lambda z, p: _topp(z, p, unsorted=True),
        "mistake_topp_probabilities": lambda z, p: _topp(z, p, probabilities=True),
        "mistake_filter_zero": lambda z, p: ref.top_p_filter(z, p).nan_to_num(neginf=0.0),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(5, 40, (1,), generator=g))
            z = torch.randn(1, V, generator=g) * 2
            rank = int(torch.randint(1, V - 1, (1,), generator=g))
            rows = torch.randn(B, V, generator=g)
            return [Case(f"random logits (1, {V}), nucleus of {rank + 1}", (z, safe_p(z[0], rank))),
                    Case(f"random rows {tuple(rows.shape)}, p=0.9", (rows, 0.9)),
                    Case("real logits", (real_logits(1), safe_p(real_logits(1)[0], rank % 20 + 1)))]
        return [Case("probs (0.5, 0.3, 0.15, 0.05), p=0.75", (_probs_logits(0.5, 0.3, 0.15, 0.05), 0.75)),
                Case("probs (0.5, 0.3, 0.15, 0.05), p=0.85", (_probs_logits(0.5, 0.3, 0.15, 0.05), 0.85)),
                Case("chapter logits, p=0.9", (torch.tensor([CHAPTER_LOGITS]), 0.9)),
                Case("probs (0.5, 0.25, 0.125, 0.125), p=0.3", (_probs_logits(0.5, 0.25, 0.125, 0.125), 0.3)),
                Case("unsorted probs (0.1, 0.45, 0.05, 0.4), p=0.5", (_probs_logits(0.1, 0.45, 0.05, 0.4), 0.5)),
                Case("tied probs (0.2, 0.4, 0.4), p=0.3", (_probs_logits(0.2, 0.4, 0.4), 0.3)),
                Case("two rows, p=0.6", (torch.cat([_probs_logits(0.5, 0.3, 0.2), _probs_logits(0.1, 0.2, 0.7)]), 0.6)),
                Case(f"real logits after “{PROMPTS[0]}”", (real_logits(0), safe_p(real_logits(0)[0], 12)))]

    def reference(self, logits, p):
        return ref.top_p_filter(logits, p)


# ----------------------------------------------------------------------------
# 5. sample_next


def _distribution(logits, temperature=1.0, top_k=None, top_p=None, order="right"):
    """The probabilities sample_next draws from; `order` makes the known mistakes."""
    z = logits.float()
    if order != "late_temperature":
        z = z / (temperature if order != "no_temperature" else 1.0)
    filters = [(ref.top_k_filter, top_k), (ref.top_p_filter, top_p)]
    for fn, arg in reversed(filters) if order == "p_before_k" else filters:
        if arg is not None:
            z = fn(z, arg)
    if order == "late_temperature":
        z = z / temperature
    return torch.softmax(z, dim=-1)


def _draw(logits, generator, temperature=1.0, top_k=None, top_p=None, order="right"):
    probs = _distribution(logits, temperature, top_k, top_p, order)
    return torch.multinomial(probs, 1, generator=fresh(generator)).squeeze(-1)


def chi_square(draws: torch.Tensor, probs: torch.Tensor) -> dict:
    """Pearson's chi-square of integer draws against probabilities (V,).

    Categories with an expected count under 5 are pooled into one, the
    textbook condition for the chi-square approximation. The 99.9% critical
    value uses the Wilson-Hilferty approximation (within 1% for df >= 2).
    """
    n = draws.numel()
    counts = torch.bincount(draws, minlength=probs.numel()).double()
    expected = probs.double() * n
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum().view(1)])
    exp = torch.cat([expected[big], expected[~big].sum().view(1)])
    obs, exp = obs[exp > 0], exp[exp > 0]
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = max(len(exp) - 1, 1)
    critical = df * (1 - 2 / (9 * df) + Z_999 * math.sqrt(2 / (9 * df))) ** 3
    worst = int(((counts - expected).abs() / expected.clamp_min(1).sqrt()).argmax())
    return {"chi2": f"{stat:.1f}", "critical": f"{critical:.1f}", "passed": stat <= critical, "token": worst,
            "got": int(counts[worst]), "expected": int(round(float(expected[worst]))), "n": n}


@register
class SampleNext(SamplingCheck):
    step, function, points = "sampling.sample_next", "sample_next", 2
    forbidden = ("autograde.reference.sampling.sample_next", "autograde.reference.sampling.next_token_distribution")
    mutants = {
        "mistake_sample_greedy": lambda z, g, **kw: z.argmax(dim=-1),
        "mistake_sample_order": lambda z, g, **kw: _draw(z, g, **kw, order="p_before_k"),
        "mistake_sample_temperature": (lambda z, g, **kw: _draw(z, g, **kw, order="late_temperature"),
                                       lambda z, g, **kw: _draw(z, g, **kw, order="no_temperature")),
    }

    def cases(self, seed, hidden):
        def rows(logits):                                  # one row repeated: N_DRAWS draws of it
            return torch.tensor([logits]).expand(N_DRAWS, len(logits)).contiguous()

        if hidden:
            g = gen(seed)
            V = int(torch.randint(5, 12, (1,), generator=g))
            z = (torch.randn(V, generator=g) * 1.5).tolist()
            t = round(float(torch.empty(1).uniform_(0.5, 1.5, generator=g)), 2)
            k = int(torch.randint(2, V, (1,), generator=g))
            top = torch.sort(torch.tensor(z) / t, descending=True).values[:k]     # what top-k leaves
            p = safe_p(top, int(torch.randint(1, k, (1,), generator=g)))
            s = [int(x) for x in torch.randint(2**31 - 1, (3,), generator=g)]
            return [Case(f"T={t}, {N_DRAWS} draws", (rows(z), gen(s[0])), {"temperature": t}),
                    Case(f"T={t}, top_k={k}, top_p={p:.3f}", (rows(z), gen(s[1])),
                         {"temperature": t, "top_k": k, "top_p": p}),
                    Case("real logits, T=0.8, top_p=0.95",
                         (real_logits(1).expand(64, -1).contiguous(), gen(s[2])), {"temperature": 0.8, "top_p": 0.95})]
        z = CHAPTER_LOGITS
        return [Case(f"chapter logits, T=1, {N_DRAWS} draws", (rows(z), gen(0))),
                Case("chapter logits, T=0.5, top_k=3", (rows(z), gen(1)), {"temperature": 0.5, "top_k": 3}),
                Case("chapter logits, T=0.5, top_p=0.9", (rows(z), gen(2)), {"temperature": 0.5, "top_p": 0.9}),
                Case("probs (0.4, 0.2, 0.2, 0.1, 0.1), top_k=2, top_p=0.6",
                     (rows(torch.tensor([0.4, 0.2, 0.2, 0.1, 0.1]).log().tolist()), gen(3)), {"top_k": 2, "top_p": 0.6}),
                Case("real logits of two prompts, T=0.8, top_k=40, top_p=0.9",
                     (torch.cat([real_logits(0), real_logits(1)]), gen(4)),
                     {"temperature": 0.8, "top_k": 40, "top_p": 0.9})]

    def reference(self, logits, generator, temperature=1.0, top_k=None, top_p=None):
        return ref.sample_next(logits, temperature, top_k, top_p, generator=fresh(generator))

    def judge(self, case, output):
        expected = self.reference(*case.args, **case.kwargs)
        verdict = compare_outputs(output, expected, label=case.label)
        if verdict.passed or verdict.key != "wrong_values":
            return verdict
        logits = case.args[0]
        if not bool((logits == logits[:1]).all()):       # different rows: no distribution to test
            return self.failed(verdict, case, output)
        probs = ref.next_token_distribution(logits[0], case.kwargs.get("temperature", 1.0),
                                            case.kwargs.get("top_k"), case.kwargs.get("top_p"))
        draws = output.detach().cpu().long()
        if int(draws.min()) < 0 or int(draws.max()) >= probs.numel():
            return verdict
        mistake = self.diagnose(case, output)
        if mistake:
            return Verdict(False, mistake, {}, case.label)
        removed = (probs[draws] == 0).nonzero()
        if len(removed):
            return Verdict(False, "mistake_sample_removed", {"token": int(draws[removed[0, 0]])}, case.label)
        stats = chi_square(draws, probs)
        key = "mistake_sample_not_seeded" if stats.pop("passed") else "mistake_sample_distribution"
        return Verdict(False, key, stats, case.label)


# ----------------------------------------------------------------------------
# 6. the autoregressive loop


def generate_loop(model_fn, prompt_ids, max_new_tokens, generator=None, temperature=1.0, top_k=None,
                  top_p=None, stop_id=None, context_length=None, progress=False, *, mistake=None):
    """The notebook's generate, written with the reference pieces. `mistake` makes the known mistakes."""
    from tqdm.auto import tqdm

    generator = fresh(generator) if mistake else generator
    ids, new_ids = list(prompt_ids), []
    start = max(0, len(ids) - context_length) if context_length else 0     # the model reads ids[start:]
    for _ in tqdm(range(max_new_tokens), disable=not progress, desc="generate"):
        if context_length and len(ids) - start > context_length:           # window full: keep the newest half
            start = len(ids) - context_length // 2
        window = ids[start:]
        if mistake == "window":
            window = ids
        elif mistake == "sliding":
            window = ids[-context_length:] if context_length else ids
        elif mistake == "no_feedback":
            window = list(prompt_ids)
        logits = model_fn(torch.tensor([window]))[:, 0 if mistake == "first_position" else -1, :]   # (1, V)
        if generator is None:
            token = int(logits.argmax(dim=-1)[0])
        else:
            token = int(ref.sample_next(logits, temperature, top_k, top_p, generator=generator)[0])
        if token == stop_id and mistake == "stop_excluded":
            break
        ids.append(token)
        new_ids.append(token)
        if token == stop_id and mistake != "stop_ignored":
            break
    return new_ids


def as_id_list(output):
    """Accept a list of ints, a list of 0-d tensors or a 1-d tensor; anything else is left alone."""
    if isinstance(output, torch.Tensor) and output.dim() == 1 and not output.is_floating_point():
        return [int(i) for i in output.tolist()]
    if isinstance(output, (list, tuple)) and all(isinstance(i, torch.Tensor) and i.numel() == 1
                                                  and not i.is_floating_point() for i in output):
        return [int(i) for i in output]
    return list(output) if isinstance(output, tuple) else output


def prompt_ids(index: int) -> list[int]:
    return reference().tokenizer.encode(PROMPTS[index])


def long_prompt(length: int) -> list[int]:
    text = " ".join(["The model reads tokens, not letters.", "애, 겨울 배가 맛있단다!"] * 40)
    return reference().tokenizer.encode(text)[:length]


@register
class Generate(SamplingCheck):
    step, function, points = "sampling.generate", "generate", 2
    needs_reference = True       # the sandbox must provide the reference model
    forbidden = ("autograde.reference.sampling.generate",)
    mutants = {
        "mistake_generate_first_position": lambda *a, **kw: generate_loop(*a, **kw, mistake="first_position"),
        "mistake_generate_no_feedback": lambda *a, **kw: generate_loop(*a, **kw, mistake="no_feedback"),
        "mistake_generate_stop_excluded": lambda *a, **kw: generate_loop(*a, **kw, mistake="stop_excluded"),
        "mistake_generate_stop_ignored": lambda *a, **kw: generate_loop(*a, **kw, mistake="stop_ignored"),
        "mistake_generate_window": lambda *a, **kw: generate_loop(*a, **kw, mistake="window"),
        "mistake_generate_sliding": lambda *a, **kw: generate_loop(*a, **kw, mistake="sliding"),
    }

    def cases(self, seed, hidden):
        model = reference().model
        fn, window, V = NoGradModel(model), model.cfg.max_seq_len, model.cfg.vocab_size
        if hidden:
            g = gen(seed)
            prompt = torch.randint(256, V - 1, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist()
            s = [int(x) for x in torch.randint(2**31 - 1, (2,), generator=g)]
            t = round(float(torch.empty(1).uniform_(0.6, 1.3, generator=g)), 2)
            k = int(torch.randint(5, 100, (1,), generator=g))
            greedy_ids = generate_loop(fn, prompt, 8)
            extra = int(torch.randint(80, 160, (1,), generator=g))
            return [Case("random prompt, greedy", (fn, prompt, 8)),
                    Case(f"random prompt, T={t}, top_k={k}, top_p=0.9", (fn, prompt, 10),
                         {"generator": gen(s[0]), "temperature": t, "top_k": k, "top_p": 0.9}),
                    Case("random prompt, greedy, stop_id", (fn, prompt, 8), {"stop_id": greedy_ids[4]}),
                    Case(f"prompt of {window + extra} tokens, context_length={window}",
                         (fn, long_prompt(window + extra), 12), {"generator": gen(s[1]), "context_length": window}),
                    Case(f"random prompt of {window - 4} tokens, 24 new, greedy, context_length={window}",
                         (fn, torch.randint(256, V - 1, (window - 4,), generator=g).tolist(), 24),
                         {"context_length": window})]
        ko, en = prompt_ids(0), prompt_ids(1)
        greedy_ko = generate_loop(fn, ko, 10)
        stop = greedy_ko[3]
        return [Case(f"“{PROMPTS[0]}”, greedy", (fn, ko, 10)),
                Case(f"“{PROMPTS[1]}”, T=0.8, top_p=0.9", (fn, en, 10),
                     {"generator": gen(0), "temperature": 0.8, "top_p": 0.9}),
                Case(f"“{PROMPTS[1]}”, T=1.2, top_k=20", (fn, en, 10),
                     {"generator": gen(1), "temperature": 1.2, "top_k": 20}),
                Case(f"“{PROMPTS[0]}”, greedy, stop_id={stop}", (fn, ko, 10), {"stop_id": stop}),
                Case(f"prompt of {window + 80} tokens, greedy, context_length={window}",
                     (fn, long_prompt(window + 80), 12), {"context_length": window}),
                Case(f"prompt of {window - 4} tokens, 24 new, context_length={window}",
                     (fn, long_prompt(window - 4), 24), {"generator": gen(2), "context_length": window})]

    def reference(self, model_fn, prompt, max_new_tokens, generator=None, temperature=1.0, top_k=None,
                  top_p=None, stop_id=None, context_length=None):
        """autograde.reference.sampling.generate, without the cache (context_length is the model's window)."""
        return ref.generate(model_fn.model, prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, greedy=generator is None, use_cache=False, stop_id=stop_id,
                            seed=None if generator is None else generator.initial_seed())

    def judge(self, case, output):
        output = as_id_list(output)
        expected = self.reference(*case.args, **case.kwargs)
        verdict = compare_outputs(output, expected, label=case.label)
        if verdict.passed:
            return verdict
        if isinstance(output, list) and output == list(case.args[1]) + expected:
            return Verdict(False, "mistake_generate_prompt", {}, case.label)
        return self.failed(verdict, case, output)


# ----------------------------------------------------------------------------
# 7. generation with the KV cache


class ModelSpy:
    """The reference model, recording how it is called: (tokens in this call, cache object).

    In the grader's sandbox the worker builds its own (autograde.grader.worker.SandboxSpy) and
    reports the calls back; the parent puts them into `calls` before judging."""

    __wire_model__ = "spy"

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, ids, *args, cache=None, **kwargs):
        self.calls.append((int(ids.shape[-1]), cache))
        with torch.no_grad():
            return self.model(ids, *args, cache=cache, **kwargs)

    forward = __call__

    def __getattr__(self, name):                      # cfg, parameters(), ... come from the model
        return getattr(self.model, name)

    def __repr__(self):
        return "model"


def _cached(model, prompt, max_new_tokens, generator=None, temperature=1.0, top_k=None, top_p=None,
            progress=False, *, mistake):
    from autograde.reference.model import KVCache

    generator, cache = fresh(generator), KVCache(model.cfg.n_layer)
    ids, new_ids = list(prompt), []
    step_input = ids
    for _ in range(max_new_tokens):
        if mistake == "fresh" and new_ids:
            cache = KVCache(model.cfg.n_layer)
        with torch.no_grad():
            logits = model.model(torch.tensor([step_input]), cache=cache)[:, -1, :]
        token = int(logits.argmax(-1)[0]) if generator is None else \
            int(ref.sample_next(logits, temperature, top_k, top_p, generator=generator)[0])
        ids.append(token)
        new_ids.append(token)
        step_input = ids if mistake == "full_input" else [token]
    return new_ids


@register
class GenerateWithCache(SamplingCheck):
    step, function, points = "sampling.generate_with_cache", "generate_with_cache", 1
    needs_reference = True
    forbidden = ("autograde.reference.sampling.generate",)
    mutants = {
        "mistake_cache_full_input": lambda *a, **kw: _cached(*a, **kw, mistake="full_input"),
        "mistake_cache_fresh": lambda *a, **kw: _cached(*a, **kw, mistake="fresh"),
    }

    def cases(self, seed, hidden):
        model = reference().model
        if hidden:
            g = gen(seed)
            prompt = torch.randint(256, model.cfg.vocab_size - 1, (int(torch.randint(2, 20, (1,), generator=g)),),
                                   generator=g).tolist()
            s = int(torch.randint(2**31 - 1, (1,), generator=g))
            return [Case("random prompt, greedy", (ModelSpy(model), prompt, 12)),
                    Case("random prompt, T=0.9, top_k=50", (ModelSpy(model), prompt, 12),
                         {"generator": gen(s), "temperature": 0.9, "top_k": 50})]
        return [Case(f"“{PROMPTS[0]}”, greedy", (ModelSpy(model), prompt_ids(0), 16)),
                Case(f"“{PROMPTS[1]}”, T=0.8, top_p=0.9", (ModelSpy(model), prompt_ids(1), 16),
                     {"generator": gen(5), "temperature": 0.8, "top_p": 0.9})]

    def reference(self, model, prompt, max_new_tokens, generator=None, temperature=1.0, top_k=None, top_p=None):
        return ref.generate(model.model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            greedy=generator is None, use_cache=True,
                            seed=None if generator is None else generator.initial_seed())

    def judge(self, case, output):
        spy, prompt = case.args[0], case.args[1]
        calls = list(spy.calls)                        # the student's calls, before any mutant runs
        output = as_id_list(output)
        verdict = compare_outputs(output, self.reference(*case.args, **case.kwargs), label=case.label)
        if not verdict.passed:
            return self.failed(verdict, case, output)
        cache = calls[0][1] if calls else None
        for i, (tokens, used) in enumerate(calls):          # one cache throughout, one token after the prefill
            if used is None or used is not cache:
                return Verdict(False, "mistake_cache_not_used", {"call": i + 1}, case.label)
            if i > 0 and tokens != 1:
                return Verdict(False, "mistake_cache_many_tokens", {"call": i + 1, "tokens": tokens}, case.label)
        return verdict
