"""Checks for notebook 5: temperature, greedy decoding, top-k, top-p, sampling, generation, the KV cache.

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

Case labels are written as code and values ("[[2, 1, 0.5, 0, -1]], T=0.5"), the same
in both languages, because they appear inside the feedback sentence.

Mistakes named (message key, each with a mutant or a judge rule, and a test in
tests/test_mistakes_sampling.py that writes it the way a student would):
  temperature: softmax applied after or instead of T (after_softmax), logits * T
    (multiplied), probabilities returned (probabilities); changing the caller's logits
    in place has its message (in_place) for the grader's generic input-mutation check.
  greedy: argmax over the batch axis (axis), highest id on ties (tie), the max values
    instead of the ids (values), a (B, 1) result (keepdim).
  top-k: every token tied with the k-th kept (ties), k + 1 tokens kept (k_plus_one), the
    k-th token dropped (fewer), torch.topk's order among ties (tie_order), the k smallest
    kept (smallest), torch.topk failing for k > V (too_large, raised), removed logits set
    to 0 (filter_zero).
  top-p: the crossing token dropped (crossing), ties ranked by the higher id (tie_order),
    the sorted keep-pattern used in id order (unsorted), cumulative sums in id order
    without sorting (no_sort), probabilities returned (probabilities), 0 instead of -inf
    (filter_zero).
  sample_next: argmax (greedy), top-p before top-k (order), temperature late or missing
    (temperature), multinomial on logits (logits, raised), a (B, 1) result (keepdim),
    unseeded draws (not_seeded), a wrong distribution (distribution), a removed token
    drawn (removed); a wrong temperature, top-k or top-p *function* underneath a right
    sample_next is named as that function's fault (wrong_piece), never as sample_next's.
  generate: prompt returned (prompt), first position read (first_position), new tokens
    not fed back (no_feedback), stop token left out (stop_excluded) or ignored
    (stop_ignored), no context window (window), a window sliding by one (sliding),
    greedy although a generator is given (ignores_generator), the generator re-seeded
    at every step (reseeded); a wrong token names its position (new_ids[i]).
  generate_with_cache: the whole sequence fed after the prefill (full_input), a fresh
    cache per step (fresh), the cache not passed (not_used), more than one token per
    step (many_tokens); a wrong token names its position.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from autograde.checks.core import Case, Check, Verdict, compare_outputs, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.protocol import NoGradModel, WindowProbe  # model_fn for the checks ($model on the wire)
from autograde.reference import sampling as ref

PROMPTS = ("언어 모델은", "The model reads")
CHAPTER_LOGITS = [2.0, 1.0, 0.5, 0.0, -1.0]     # the worked example of chapter 5
N_DRAWS = 20_000                                 # rows of one chi-square case
Z_999 = 3.090232                                 # standard normal quantile at 0.999

register_messages({
    "mistake_temperature_after_softmax": {
        "en": "temperature applied after softmax: dividing (or powering) probabilities is not what T does; "
              "return the logits divided by T, the softmax comes later",
        "ko": "소프트맥스를 먼저 하고 온도를 적용했습니다: 확률을 T로 나누거나 거듭제곱하는 것은 온도의 역할이 "
              "아닙니다. 로짓을 T로 나눈 값을 돌려주고, 소프트맥스는 그 뒤에 하세요"},
    "mistake_temperature_multiplied": {
        "en": "the logits were multiplied by T: divide them, so that T < 1 sharpens and T > 1 flattens",
        "ko": "로짓에 T를 곱했습니다: T로 나누어야 T < 1일 때 분포가 뾰족해지고 T > 1일 때 평평해집니다"},
    "mistake_temperature_probabilities": {
        "en": "these are probabilities, not logits: return logits / T without the softmax",
        "ko": "돌려준 값이 로짓이 아니라 확률입니다: 소프트맥스 없이 logits / T를 돌려주세요"},
    "mistake_temperature_in_place": {
        "en": "the logits passed in were changed in place (logits /= T or logits.div_(T)): the caller still "
              "needs the original logits; return a new tensor, logits / T",
        "ko": "받은 로짓 텐서를 제자리에서 바꾸었습니다(logits /= T, logits.div_(T)): 호출한 쪽은 원래 로짓을 "
              "계속 써야 하므로 새 텐서 logits / T를 돌려주세요"},
    "mistake_greedy_axis": {
        "en": "argmax over the wrong axis: the vocabulary is the last dimension (dim=-1)",
        "ko": "argmax를 다른 축에서 구했습니다: 어휘 축은 마지막 차원(dim=-1)입니다"},
    "mistake_greedy_tie": {
        "en": "on ties greedy decoding takes the lowest id (what torch.argmax does), not the highest",
        "ko": "동점일 때 탐욕적 디코딩은 가장 큰 id가 아니라 가장 작은 id를 고릅니다(torch.argmax의 동작)"},
    "mistake_greedy_values": {
        "en": "these are the largest logits, not their token ids: return the indices (argmax, or .indices of max)",
        "ko": "토큰 id가 아니라 가장 큰 로짓 값 자체를 돌려주었습니다: 위치(argmax 또는 max의 .indices)를 돌려주세요"},
    "mistake_greedy_keepdim": {
        "en": "the result has shape (B, 1): return one id per row, shape (B,) (no keepdim)",
        "ko": "결과의 모양이 (B, 1)입니다: 행마다 id 하나씩, 모양 (B,)로 돌려주세요(keepdim 없이)"},
    "mistake_topk_ties": {
        "en": "top-k keeping more than k on ties: `logits >= k-th value` keeps every tied token; "
              "keep exactly k, the lower id first (a stable descending sort)",
        "ko": "동점 때문에 top-k가 k개보다 많이 남겼습니다: `logits >= k번째 값`은 동점인 토큰을 모두 남깁니다. "
              "id가 작은 쪽부터 정확히 k개만 남기세요(내림차순 안정 정렬)"},
    "mistake_filter_first_row": {
        "en": "only the first row of the batch was filtered (or its cut-off used for every row): logits are (B, V), "
              "and each row is filtered by its own values",
        "ko": "배치의 첫 번째 행만 걸렀습니다(또는 그 행의 기준을 모든 행에 썼습니다): 로짓은 (B, V)이고, 각 행은 "
              "자기 값으로 걸러야 합니다"},
    "mistake_topk_k_plus_one": {
        "en": "top-k kept k + 1 tokens even without ties: the k-th largest value is sorted[..., k - 1] "
              "(indices start at 0), and sorted indices [:k] are the k to keep",
        "ko": "동점이 없는데도 top-k가 k + 1개를 남겼습니다: 인덱스는 0부터 시작하므로 k번째로 큰 값은 "
              "sorted[..., k - 1]이고, 남길 k개는 정렬 인덱스의 [:k]입니다"},
    "mistake_topk_tie_order": {
        "en": "exactly k tokens, but the wrong one among tied logits: the lower id must win "
              "(torch.topk promises no order among ties; use torch.sort(..., descending=True, stable=True))",
        "ko": "k개는 맞지만 동점인 로짓 가운데 다른 토큰을 남겼습니다: id가 작은 쪽이 남아야 합니다 "
              "(torch.topk는 동점의 순서를 보장하지 않으니 torch.sort(..., descending=True, stable=True)를 쓰세요)"},
    "mistake_topk_fewer": {
        "en": "top-k kept fewer than k tokens: `logits > k-th value` drops the k-th token itself",
        "ko": "top-k가 k개보다 적게 남겼습니다: `logits > k번째 값`은 k번째 토큰까지 지웁니다"},
    "mistake_topk_smallest": {
        "en": "top-k kept the k smallest logits: sort in descending order (descending=True)",
        "ko": "top-k가 가장 작은 로짓 k개를 남겼습니다: 내림차순(descending=True)으로 정렬하세요"},
    "mistake_topk_too_large": {
        "en": "k larger than the vocabulary raised {error} ({text}): keep every token then, e.g. k = min(k, V)",
        "ko": "k가 어휘 크기보다 클 때 {error} 예외가 발생했습니다({text}): 그때는 모든 토큰을 남기세요. "
              "예: k = min(k, V)"},
    "mistake_filter_zero": {
        "en": "removed tokens were set to 0: a logit of 0 still has probability; set them to -inf",
        "ko": "지운 토큰의 로짓을 0으로 두었습니다: 로짓 0에도 확률이 있으니 -inf로 바꾸세요"},
    "mistake_topp_boundary": {
        "en": "top-p kept a token whose probability ranked ahead of it is exactly p: the ones ahead already "
              "hold p, so it is not needed; keep a token while mass_before < p, not <= p",
        "ko": "top-p가 앞 순위 토큰들의 확률 합이 정확히 p인 토큰까지 남겼습니다: 앞의 토큰들로 이미 p가 채워졌으니 "
              "이 토큰은 필요 없습니다. mass_before <= p가 아니라 mass_before < p인 토큰만 남기세요"},
    "mistake_topp_crossing": {
        "en": "top-p dropping the token that crosses p: keep a token while the probability ranked before it "
              "is still < p, i.e. mass_before = cumsum - sorted_probs (the mass strictly before each token) "
              "and keep mass_before < p, so the token that crosses p stays",
        "ko": "top-p가 누적 확률이 p를 넘어서게 하는 토큰을 버렸습니다: 앞 순위 토큰들의 확률 합이 아직 p보다 "
              "작으면 그 토큰은 남겨야 합니다. mass_before = cumsum - sorted_probs(각 토큰 바로 앞까지의 합)로 "
              "구하고 mass_before < p인 토큰을 남기면, p를 넘어서게 하는 토큰도 남습니다"},
    "mistake_topp_tie_order": {
        "en": "tokens with the same probability were ranked the wrong way: like top-k, rank ties by token id, "
              "the lower id first (a stable descending sort)",
        "ko": "확률이 같은 토큰의 순위를 거꾸로 매겼습니다: top-k와 마찬가지로 동점은 id가 작은 쪽을 앞에 "
              "둡니다(내림차순 안정 정렬)"},
    "mistake_topp_unsorted": {
        "en": "the keep/remove pattern was applied in sorted order: map it back to the token ids "
              "(scatter with the sort indices) before filling with -inf",
        "ko": "남길지 지울지 정한 결과를 정렬된 순서 그대로 적용했습니다: -inf로 채우기 전에 정렬 인덱스로 "
              "원래 토큰 id 자리에 되돌려 놓으세요(scatter)"},
    "mistake_topp_no_sort": {
        "en": "the cumulative sum ran in token-id order: sort the probabilities in descending order first, "
              "so that the nucleus holds the most likely tokens",
        "ko": "누적 합을 토큰 id 순서대로 구했습니다: 확률을 먼저 내림차순으로 정렬해야 확률이 높은 토큰들이 "
              "남습니다"},
    "mistake_topp_probabilities": {
        "en": "these are probabilities, not logits: return the logits with the removed tokens set to -inf",
        "ko": "돌려준 값이 로짓이 아니라 확률입니다: 지운 토큰만 -inf로 바꾼 로짓을 돌려주세요"},
    "mistake_sample_not_seeded": {
        "en": "your draws follow the right distribution but are not the reference's seeded draws: draw with "
              "torch.multinomial(probs, 1, generator=generator), so that the same seed gives the same tokens",
        "ko": "뽑은 결과의 분포는 맞지만, 같은 시드로 참고 구현이 뽑은 값과 다릅니다: "
              "torch.multinomial(probs, 1, generator=generator)로 뽑아야 같은 시드에서 같은 토큰이 나옵니다"},
    "mistake_sample_distribution": {
        "en": "your draws do not follow the expected distribution (chi-square {chi2} > {critical}, 99.9% level): "
              "token {token} came {got} times in {n} draws, about {expected} were expected",
        "ko": "뽑은 결과가 기대한 분포를 따르지 않습니다(카이제곱 {chi2} > {critical}, 99.9% 수준): "
              "{n}번 뽑는 동안 {token}번 토큰이 {got}번 나왔는데, 기대한 횟수는 약 {expected}번입니다"},
    "mistake_sample_removed": {
        "en": "token {token} was drawn although the filters remove it (probability 0): either your top_k_filter / "
              "top_p_filter did not remove it, or sample_next drew from the logits from before the filters",
        "ko": "필터가 지우는(확률 0) {token}번 토큰이 뽑혔습니다: top_k_filter나 top_p_filter가 그 토큰을 지우지 "
              "않았거나, sample_next가 필터를 거치기 전의 로짓에서 뽑았습니다"},
    "mistake_sample_order": {
        "en": "the filters ran in the wrong order: temperature first, then top-k, then top-p on what top-k left",
        "ko": "필터 순서가 틀렸습니다: 온도를 먼저 적용하고, 그다음 top-k, 마지막으로 top-k가 남긴 토큰에 "
              "top-p를 적용하세요"},
    "mistake_sample_temperature": {
        "en": "the temperature had no effect or came too late: divide the logits by T first, before the filters "
              "and the softmax",
        "ko": "온도가 효과가 없거나 너무 늦게 적용되었습니다: 필터와 소프트맥스보다 먼저 로짓을 T로 나누세요"},
    "mistake_sample_greedy": {
        "en": "you always picked the most likely token: sample_next draws at random from the probabilities",
        "ko": "항상 확률이 가장 높은 토큰만 골랐습니다: sample_next는 확률에 따라 무작위로 뽑아야 합니다"},
    "mistake_sample_logits": {
        "en": "torch.multinomial got logits ({error}: {text}): it needs probabilities, so apply the softmax "
              "after the filters and draw from that",
        "ko": "torch.multinomial에 로짓을 넘겼습니다({error}: {text}): 확률이 필요하니 필터 다음에 소프트맥스를 "
              "적용한 결과에서 뽑으세요"},
    "mistake_sample_keepdim": {
        "en": "the draws have shape (B, 1): return one id per row, shape (B,) (squeeze(-1) the multinomial's result)",
        "ko": "뽑은 결과의 모양이 (B, 1)입니다: 행마다 id 하나씩, 모양 (B,)로 돌려주세요"
              "(multinomial 결과에 squeeze(-1))"},
    "mistake_sample_wrong_piece": {
        "en": "sample_next itself draws the right way, but from logits that your {piece} got wrong "
              "(its check names the mistake): fix {piece} first",
        "ko": "sample_next 자체는 제대로 뽑지만, 그 입력이 되는 로짓을 {piece} 함수가 잘못 만들었습니다"
              "(그 함수의 검사가 실수를 알려 줍니다): {piece} 함수부터 고치세요"},
    "mistake_sample_filter_suspect": {
        "en": "with top_k or top_p given, every row got its most likely token: a filter probably kept a single "
              "token; the likely cause is your top_k_filter or top_p_filter, not sample_next; check them first",
        "ko": "top_k나 top_p를 주었더니 모든 행에서 확률이 가장 높은 토큰만 나왔습니다: 필터가 토큰을 하나만 "
              "남겼을 가능성이 큽니다. sample_next보다는 top_k_filter나 top_p_filter에 원인이 있을 테니 두 함수부터 "
              "확인하세요"},
    "mistake_sample_filter_raised": {
        "en": "with top_k or top_p given, sample_next raised {error} ({text}): the draws without filters were "
              "right, so a filter probably removed every token (all -inf makes the softmax NaN); check "
              "top_k_filter and top_p_filter first",
        "ko": "top_k나 top_p를 주었을 때 sample_next에서 {error} 예외가 발생했습니다({text}): 필터 없이 뽑은 "
              "결과는 맞았으므로, 필터가 모든 토큰을 지웠을 가능성이 큽니다(모두 -inf이면 소프트맥스가 NaN이 "
              "됩니다). top_k_filter와 top_p_filter부터 확인하세요"},
    "mistake_generate_prompt": {
        "en": "the prompt was returned too: return only the new ids",
        "ko": "프롬프트까지 돌려주었습니다: 새로 만든 id만 돌려주세요"},
    "mistake_generate_first_position": {
        "en": "the prediction was read from the first position: the next token comes from the last row, "
              "logits[:, -1, :]",
        "ko": "첫 위치의 예측을 읽었습니다: 다음 토큰은 마지막 위치의 로짓 logits[:, -1, :]에서 나옵니다"},
    "mistake_generate_no_feedback": {
        "en": "the new tokens were not fed back: append each new token to the ids the model reads at the next step",
        "ko": "새 토큰을 다시 입력하지 않았습니다: 새 토큰마다 다음 단계에 모델이 읽을 id 뒤에 붙이세요"},
    "mistake_generate_stop_excluded": {
        "en": "the stop token is missing from the output: append it, then stop",
        "ko": "출력에 멈춤 토큰이 없습니다: 멈춤 토큰도 붙인 다음에 멈추세요"},
    "mistake_generate_stop_ignored": {
        "en": "generation went on after the stop token: stop as soon as stop_id is drawn",
        "ko": "멈춤 토큰이 나온 뒤에도 생성을 계속했습니다: stop_id가 나오면 바로 멈추세요"},
    "mistake_generate_sliding": {
        "en": "the window slid by one token per step: when the context is full, keep only the newest "
              "context_length // 2 ids and go on from there (the rule of chapter 7, the same with and without a cache)",
        "ko": "창을 한 토큰씩 밀었습니다: 컨텍스트가 가득 차면 가장 최근 id context_length // 2개만 남기고 거기서부터 "
              "이어 가세요(7장의 규칙이며, 캐시를 쓰든 안 쓰든 같습니다)"},
    "mistake_generate_window": {
        "en": "the model saw more than context_length tokens: a longer prompt keeps its last context_length ids, "
              "and a full window keeps its newest half",
        "ko": "모델이 context_length개보다 많은 토큰을 보았습니다: 프롬프트가 더 길면 마지막 context_length개의 "
              "id만 남기고, 창이 가득 차면 최근 절반만 남깁니다"},
    "mistake_generate_window_early": {
        "en": "the window was cut while it was exactly full: the model can still read context_length tokens, so "
              "keep them all and cut to the newest half only when there are more (len(ids) - start > "
              "context_length, not >=)",
        "ko": "창이 딱 가득 찼을 때 잘랐습니다: 모델은 context_length개까지는 읽을 수 있으니 모두 두고, 그보다 "
              "많아졌을 때만 최근 절반으로 줄이세요(len(ids) - start >= context_length가 아니라 > context_length)"},
    "mistake_generate_ignores_generator": {
        "en": "a generator was given but the tokens are the greedy ones: with a generator, draw with sample_next "
              "(temperature, top_k, top_p); greedy is only for generator=None",
        "ko": "generator를 주었는데 탐욕적 디코딩과 같은 토큰이 나왔습니다: generator가 있으면 sample_next로 "
              "(temperature, top_k, top_p를 넣어) 뽑고, 탐욕적 디코딩은 generator=None일 때만 쓰세요"},
    "mistake_generate_reseeded": {
        "en": "the generator was re-seeded (or made anew) at every step, so every step repeats the first draw: "
              "pass the same generator to sample_next at every step",
        "ko": "단계마다 generator를 새로 만들거나 시드를 다시 주어서 매 단계가 첫 번째 뽑기를 되풀이합니다: "
              "모든 단계에서 같은 generator를 sample_next에 넘기세요"},
    "wrong_generated_token": {
        "en": "new_ids[{index}] differs: expected {expected}, got {got} (the first {index} new ids are right)",
        "ko": "new_ids[{index}] 값이 다릅니다: 기댓값은 {expected}, 받은 값은 {got}입니다"
              "(앞의 새 id {index}개는 맞습니다)"},
    "mistake_cache_full_input": {
        "en": "after the prefill the whole sequence was fed again into the cache: feed only the newest token, (1, 1)",
        "ko": "프리필 뒤에 시퀀스 전체를 다시 캐시에 넣었습니다: 가장 최근 토큰 하나, 모양 (1, 1)만 넣으세요"},
    "mistake_cache_fresh": {
        "en": "a new, empty cache was used at each step, so the model saw only one token: create the cache once, "
              "before the prefill",
        "ko": "단계마다 비어 있는 새 캐시를 써서 모델이 토큰 하나만 보았습니다: 캐시는 프리필 전에 한 번만 만드세요"},
    "mistake_cache_not_used": {
        "en": "the tokens are right, but call {call} of the model did not get the cache: create one KVCache "
              "before the prefill and pass the same one (cache=cache) at every step",
        "ko": "토큰은 맞지만 모델을 {call}번째로 호출할 때 캐시를 넘기지 않았습니다: 프리필 전에 KVCache를 하나 "
              "만들고 단계마다 같은 캐시를 넘기세요(cache=cache)"},
    "mistake_cache_many_tokens": {
        "en": "the tokens are right, but call {call} of the model read {tokens} tokens: after the prefill, "
              "feed only the newest token, (1, 1); the cache holds the rest",
        "ko": "토큰은 맞지만 모델을 {call}번째로 호출할 때 토큰 {tokens}개를 읽었습니다: 프리필 뒤에는 가장 최근 "
              "토큰 하나, 모양 (1, 1)만 넣으세요. 나머지는 캐시에 있습니다"},
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


def _rows(g: torch.Generator, B: int, V: int, scale: float = 1.0) -> torch.Tensor:
    """B rows of random logits that differ from each other (B >= 2 in every batch case)."""
    return torch.randn(B, V, generator=g) * scale + torch.arange(B).view(B, 1) * 0.25


def _code(t: torch.Tensor) -> str:
    """A short label for a small tensor: its values, rounded, as code."""
    return str([[round(float(x), 3) for x in row] for row in t.tolist()]).replace(".0,", ",").replace(".0]", "]")


@register
class Temperature(SamplingCheck):
    """Logits mean the same thing up to a constant per row, so the verdict
    compares the distributions softmax(output) and softmax(logits / T)."""
    step = "sampling.temperature"
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
            B, V = int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(3, 40, (1,), generator=g))
            z = _rows(g, B, V, 3.0)
            t = round(float(torch.empty(1).uniform_(0.2, 3.0, generator=g)), 3)
            t_small = round(float(torch.empty(1).uniform_(0.05, 0.15, generator=g)), 3)
            return [Case(f"randn({B}, {V}) * 3, T={t}", (z, t)),
                    Case(f"randn({B}, {V}) * 3, T=1", (z, 1.0)),
                    Case(f"randn({B}, 2), T={t_small}", (_rows(g, B, 2), t_small)),
                    Case(f"model(“{PROMPTS[1]}”)[:, -1], T=0.7", (real_logits(1), 0.7))]
        z = torch.tensor([CHAPTER_LOGITS, [0.0, 1.0, 3.0, -2.0, 1.0]])
        return [Case(f"{_code(z)}, T=0.5", (z, 0.5)),
                Case(f"{_code(z)}, T=2", (z, 2.0)),
                Case(f"{_code(z)}, T=1", (z, 1.0)),
                Case(f"model(“{PROMPTS[0]}”)[:, -1], T=0.7", (real_logits(0), 0.7))]

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
    step = "sampling.greedy"
    mutants = {
        "mistake_greedy_axis": lambda z: z.argmax(dim=0),
        "mistake_greedy_tie": lambda z: z.shape[-1] - 1 - z.flip(-1).argmax(dim=-1),
        "mistake_greedy_values": (lambda z: z.max(dim=-1).values, lambda z: z.max(dim=-1, keepdim=True).values),
        "mistake_greedy_keepdim": lambda z: z.argmax(dim=-1, keepdim=True),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(3, 12, (1,), generator=g))
            ties = torch.randint(-2, 3, (B, V), generator=g).float()
            ties[0, :2] = ties[0].max() + 1                    # a tie for the maximum in the first row
            edges = _rows(g, B, V)
            edges[0, 0], edges[1, -1] = 9.0, 9.0               # the maximum at id 0 and at id V - 1
            return [Case(f"randint(-2, 3, ({B}, {V}))", (ties,)),
                    Case(f"randn({B + 1}, {V + 5})", (_rows(g, B + 1, V + 5),)),
                    Case(f"randn({B}, {V}), argmax: [0, {V - 1}, ...]", (edges,)),
                    Case(f"randn({B}, 1), V=1", (_rows(g, B, 1),))]
        return [Case("[[0, 5, 5], [5, 5, 0]]", (torch.tensor([[0.0, 5.0, 5.0], [5.0, 5.0, 0.0]]),)),
                Case("[[1, 3, 3, 0], [2, 2, 2, 2], [-1, -4, -1, -3]]",
                     (torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, -4.0, -1.0, -3.0]]),)),
                Case(f"model(“{PROMPTS[0]}”, “{PROMPTS[1]}”)[:, -1]",
                     (torch.cat([real_logits(0), real_logits(1)]),))]

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


def _topk_k_plus_one(z, k):
    """The k + 1 largest (an off-by-one: sorted[..., k] taken for the k-th value, or indices [:k + 1])."""
    return ref.top_k_filter(z, min(k + 1, z.shape[-1]))


def _topk_smallest(z, k):
    k = min(k, z.shape[-1])
    order = torch.sort(z, dim=-1, stable=True).indices
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, order[..., :k], True)
    return z.masked_fill(~keep, float("-inf"))


def _tie_at_k(g, B, V, k):
    """Distinct random rows, with the k-th and (k+1)-th largest values of every row made equal."""
    z = _rows(g, B, V)
    order = torch.sort(z, dim=-1, descending=True).indices
    for r in range(B):
        z[r, order[r, k]] = z[r, order[r, k - 1]]
    return z


def first_row_filtered(filter_fn):
    """Variants of a filter (logits (B, V), setting) -> (B, V) that work on the first row only: the other rows
    left as they came, or masked where the first row is masked (its cut-off applied to every row)."""
    def rest_unchanged(z, setting):
        out = z.clone()
        out[:1] = filter_fn(z[:1], setting)
        return out

    def first_row_mask(z, setting):
        return z.masked_fill(filter_fn(z[:1], setting).isneginf(), float("-inf"))

    return [rest_unchanged, first_row_mask]


@register
class TopK(SamplingCheck):
    """The first case has no ties, so that keeping k + 1 tokens is told apart from keeping the
    tied ones; the next ones put a tie exactly at the k-th place."""
    step = "sampling.top_k"
    forbidden = ("autograde.reference.sampling.top_k_filter", "autograde.reference.sampling.next_token_distribution")
    mutants = {
        "mistake_topk_ties": lambda z, k: _topk_threshold(z, k),
        "mistake_topk_k_plus_one": _topk_k_plus_one,
        "mistake_topk_fewer": lambda z, k: _topk_threshold(z, k, strict=True),
        "mistake_topk_tie_order": _topk_by_topk,
        "mistake_topk_smallest": _topk_smallest,
        "mistake_filter_zero": lambda z, k: ref.top_k_filter(z, k).nan_to_num(neginf=0.0),
        "mistake_filter_first_row": first_row_filtered(ref.top_k_filter),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(5, 30, (1,), generator=g))
            k = int(torch.randint(2, V - 1, (1,), generator=g))
            return [Case(f"randn({B}, {V}), k={k}", (_rows(g, B, V), k)),
                    Case(f"randn({B}, {V}) (sorted[{k - 1}] == sorted[{k}]), k={k}", (_tie_at_k(g, B, V, k), k)),
                    Case(f"randint(-3, 4, ({B}, {V})), k={k}", (torch.randint(-3, 4, (B, V), generator=g).float(), k)),
                    Case(f"randn({B}, {V}), k=1", (_rows(g, B, V), 1)),
                    Case(f"randn({B}, {V}), k={V} = V", (_rows(g, B, V), V)),
                    Case(f"randn({B}, {V}), k={V + 3} > V", (_rows(g, B, V), V + 3))]
        return [Case("[[0, 3, 1, 2], [4, -1, 2, 0]], k=2", (torch.tensor([[0.0, 3.0, 1.0, 2.0], [4.0, -1.0, 2.0, 0.0]]), 2)),
                Case("[[3, 1, 1, 0], [1, 1, 3, 0]], k=2", (torch.tensor([[3.0, 1.0, 1.0, 0.0], [1.0, 1.0, 3.0, 0.0]]), 2)),
                Case("[[2, 5, 5, 5, 1]], k=2", (torch.tensor([[2.0, 5.0, 5.0, 5.0, 1.0]]), 2)),
                Case("[[1, 3, 2, 3, 2, 0]], k=3", (torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 0.0]]), 3)),
                Case("[[0, 1, 2], [2, 1, 2]], k=1", (torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 2.0]]), 1)),
                Case("[[0.5, -1, 2, 0.5], [1, 0, -1, 3]], k=10",
                     (torch.tensor([[0.5, -1.0, 2.0, 0.5], [1.0, 0.0, -1.0, 3.0]]), 10)),
                Case(f"model(“{PROMPTS[0]}”)[:, -1], k=50", (real_logits(0), 50))]

    def reference(self, logits, k):
        return ref.top_k_filter(logits, k)

    def explain_raised(self, case, error, text):
        k, V = case.args[1], case.args[0].shape[-1]
        return "mistake_topk_too_large" if k > V and error in ("RuntimeError", "IndexError") else None


# ----------------------------------------------------------------------------
# 4. top-p


def _topp(z, p, *, rule="before", unsorted=False, probabilities=False):
    probs = torch.softmax(z, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = sorted_probs.cumsum(-1)
    keep_sorted = {"before": cum - sorted_probs < p, "before_le": cum - sorted_probs <= p, "le": cum <= p,
                   "lt": cum < p, "minus_p": cum - p < p}[rule]
    keep = keep_sorted if unsorted else torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    if probabilities:
        kept = probs.masked_fill(~keep, 0.0)
        return kept / kept.sum(-1, keepdim=True)
    return z.masked_fill(~keep, float("-inf"))


def _topp_no_sort(z, p):
    probs = torch.softmax(z, dim=-1)
    return z.masked_fill(~(probs.cumsum(-1) - probs < p), float("-inf"))


def _probs_logits(*probs) -> torch.Tensor:
    return torch.tensor([probs]).log()                                   # (1, V)


def _nucleus_rows(g, B, V):
    """B different random rows and one p that lies well between two cumulative sums of every row."""
    for _ in range(100):
        z = _rows(g, B, V, 2.0)
        p = safe_p(z[0], int(torch.randint(1, V - 1, (1,), generator=g)))
        sums = torch.sort(torch.softmax(z.double(), -1), descending=True).values.cumsum(-1)
        if bool(((sums - p).abs() > 1e-3).all()):
            return z, p
    return z, p


def _uniform_case(log2_vocab: int, g: torch.Generator) -> Case:
    """2^k equal logits and p = m / 2^k: the m-th token's mass ranked ahead is exactly p, so only m
    tokens stay (ties: the lowest ids)."""
    V = 2 ** log2_vocab
    m = int(torch.randint(1, V, (1,), generator=g))
    return Case(f"zeros(1, {V}), p={m}/{V}", (torch.zeros(1, V), m / V))


@register
class TopP(SamplingCheck):
    """Every p lies well between two cumulative sums, so that any correct way
    of summing (float32, float64, another order) keeps the same tokens, except
    on uniform rows: there every probability is 1/2^k, every sum is exact in
    any float format, and p sits exactly on a sum, so the rule at the boundary
    (mass ranked ahead < p keeps the token, not <=) is checked too."""
    step = "sampling.top_p"
    forbidden = ("autograde.reference.sampling.top_p_filter", "autograde.reference.sampling.next_token_distribution")
    mutants = {
        "mistake_topp_tie_order": lambda z, p: _topp(z.flip(-1), p).flip(-1),
        # before "crossing": on a row whose order the missing sort happens not to disturb for the
        # kept tokens, the two can coincide, and the missing sort is the rarer, more specific finding
        "mistake_topp_no_sort": _topp_no_sort,
        "mistake_topp_crossing": (lambda z, p: _topp(z, p, rule="le"), lambda z, p: _topp(z, p, rule="lt"),
                                  lambda z, p: _topp(z, p, rule="minus_p")),     # mass_before = cumsum - p
        "mistake_topp_boundary": lambda z, p: _topp(z, p, rule="before_le"),
        "mistake_topp_unsorted": lambda z, p: _topp(z, p, unsorted=True),
        "mistake_topp_probabilities": lambda z, p: _topp(z, p, probabilities=True),
        "mistake_filter_zero": lambda z, p: ref.top_p_filter(z, p).nan_to_num(neginf=0.0),
        "mistake_filter_first_row": first_row_filtered(ref.top_p_filter),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            B, V = int(torch.randint(2, 4, (1,), generator=g)), int(torch.randint(5, 40, (1,), generator=g))
            z = torch.randn(1, V, generator=g) * 2
            rank = int(torch.randint(1, V - 1, (1,), generator=g))
            rows, p_rows = _nucleus_rows(g, B, V)
            tied = torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.1], [0.3, 0.1, 0.2, 0.3, 0.1]]).log()
            shuffle = torch.randperm(5, generator=g)          # p=0.2 keeps one of the two tied 0.3s
            return [Case(f"randn(1, {V}) * 2, p={safe_p(z[0], rank):.4f}", (z, safe_p(z[0], rank))),
                    Case(f"randn({B}, {V}) * 2, p={p_rows:.4f}", (rows, p_rows)),
                    Case(f"log({_code(tied.exp()[:, shuffle])}), p=0.2", (tied[:, shuffle].contiguous(), 0.2)),
                    Case(f"randn({B}, {V}), p=1e-4", (_rows(g, B, V), 1e-4)),
                    Case(f"randn({B}, {V}), p=1", (_rows(g, B, V), 1.0)),
                    _uniform_case(int(torch.randint(2, 5, (1,), generator=g)), g),
                    Case(f"model(“{PROMPTS[1]}”)[:, -1]", (real_logits(1), safe_p(real_logits(1)[0], rank % 20 + 1)))]
        return [Case("log([[0.5, 0.3, 0.15, 0.05]]), p=0.75", (_probs_logits(0.5, 0.3, 0.15, 0.05), 0.75)),
                Case("log([[0.5, 0.3, 0.15, 0.05]]), p=0.85", (_probs_logits(0.5, 0.3, 0.15, 0.05), 0.85)),
                Case(f"{_code(torch.tensor([CHAPTER_LOGITS]))}, p=0.9", (torch.tensor([CHAPTER_LOGITS]), 0.9)),
                Case("log([[0.5, 0.25, 0.125, 0.125]]), p=0.3", (_probs_logits(0.5, 0.25, 0.125, 0.125), 0.3)),
                Case("log([[0.1, 0.45, 0.05, 0.4]]), p=0.4", (_probs_logits(0.1, 0.45, 0.05, 0.4), 0.4)),
                Case("log([[0.2, 0.4, 0.4]]), p=0.3", (_probs_logits(0.2, 0.4, 0.4), 0.3)),
                Case("zeros(1, 4), p=0.5", (torch.zeros(1, 4), 0.5)),
                Case("log([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]), p=0.6",
                     (torch.cat([_probs_logits(0.5, 0.3, 0.2), _probs_logits(0.1, 0.2, 0.7)]), 0.6)),
                Case("log([[0.3, 0.7], [0.6, 0.4]]), p=1e-4",
                     (torch.cat([_probs_logits(0.3, 0.7), _probs_logits(0.6, 0.4)]), 1e-4)),
                Case("log([[0.3, 0.7, 0.0001], [0.6, 0.1, 0.3]]), p=1",
                     (torch.cat([_probs_logits(0.3, 0.7, 0.0001), _probs_logits(0.6, 0.1, 0.3)]), 1.0)),
                Case(f"model(“{PROMPTS[0]}”)[:, -1]", (real_logits(0), safe_p(real_logits(0)[0], 12)))]

    def reference(self, logits, p):
        return ref.top_p_filter(logits, p)


# ----------------------------------------------------------------------------
# 5. sample_next


# the pieces sample_next normally calls, with the mistakes their own checks name; a filter that works on the
# first row only is left out: sample_next's cases repeat one row of logits many times, and a filter that
# leaves most rows unfiltered would explain draws that some other mistake (the filters not used) made
PIECES = {name: (arg, {k: v for k, v in mutants.items() if k != "mistake_filter_first_row"})
          for name, (arg, mutants) in {"apply_temperature": ("temperature", Temperature.mutants),
                                       "top_k_filter": ("top_k", TopK.mutants),
                                       "top_p_filter": ("top_p", TopP.mutants)}.items()}


def _distribution(logits, temperature=1.0, top_k=None, top_p=None, order="right", pieces=None):
    """The probabilities sample_next draws from; `order` makes the known mistakes of sample_next
    itself, `pieces` replaces apply_temperature / top_k_filter / top_p_filter (a student's wrong piece)."""
    pieces = pieces or {}
    temp = pieces.get("apply_temperature", lambda z, t: z / t)
    z = logits.float()
    if order != "late_temperature":
        z = temp(z, temperature if order != "no_temperature" else 1.0)
    filters = [(pieces.get("top_k_filter", ref.top_k_filter), top_k), (pieces.get("top_p_filter", ref.top_p_filter), top_p)]
    for fn, arg in reversed(filters) if order == "p_before_k" else filters:
        if arg is not None:
            z = fn(z, arg)
    if order == "late_temperature":
        z = temp(z, temperature)
    return torch.softmax(z, dim=-1)


def _draw(logits, generator, temperature=1.0, top_k=None, top_p=None, order="right", pieces=None):
    probs = _distribution(logits, temperature, top_k, top_p, order, pieces)
    return torch.multinomial(probs, 1, generator=fresh(generator)).squeeze(-1)


def _draw_logits(logits, generator, temperature=1.0, top_k=None, top_p=None):
    """multinomial on the filtered logits instead of their softmax (it only runs when all are >= 0)."""
    z = logits.float() / temperature
    if top_k is not None:
        z = ref.top_k_filter(z, top_k)
    if top_p is not None:
        z = ref.top_p_filter(z, top_p)
    return torch.multinomial(z.nan_to_num(neginf=0.0), 1, generator=fresh(generator)).squeeze(-1)


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


def order_case(g: torch.Generator):
    """(N_DRAWS, 5) identical rows, k=2 and p where top-p before top-k keeps two tokens and the
    right order one: probabilities near (0.4, 0.25, 0.15, 0.1, 0.1), ids shuffled."""
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.1]) + torch.empty(5).uniform_(-0.01, 0.01, generator=g)
    probs = (probs / probs.sum())[torch.randperm(5, generator=g)]
    p = round(float(torch.empty(1).uniform_(0.43, 0.47, generator=g)), 3)   # (above 0.5, top-k keeping k + 1
    #                                                                        would look like the order mistake)
    return probs.log().expand(N_DRAWS, 5).contiguous(), 2, p


def late_temperature_case(g: torch.Generator):
    """(N_DRAWS, V) identical rows, T, k and p where dividing by T after the filters keeps
    another set of tokens than the right order (and top-p before top-k keeps the right set)."""
    for _ in range(500):
        V = int(torch.randint(6, 10, (1,), generator=g))
        z = torch.randn(V, generator=g) * 1.5
        t = round(float(torch.empty(1).uniform_(0.4, 0.6, generator=g)), 2)
        k = int(torch.randint(3, V - 1, (1,), generator=g))
        cum = torch.softmax(torch.sort(z / t, descending=True).values[:k].double(), -1).cumsum(-1)
        for r in range(1, k):
            if float(cum[r] - cum[r - 1]) < 0.02:
                continue
            p = float((cum[r - 1] + cum[r]) / 2)
            kept = {o: tuple((_distribution(z[None], t, k, p, o)[0] > 0).tolist())
                    for o in ("right", "p_before_k", "late_temperature")}
            if kept["late_temperature"] != kept["right"] == kept["p_before_k"]:
                return z.expand(N_DRAWS, V).contiguous(), t, k, p
    raise RuntimeError("no case found where a late temperature shows")     # (not met in 1,000 seeds tried)


@register
class SampleNext(SamplingCheck):
    """A wrong draw is first compared with the draws of sample_next built on each known mistake
    of the pieces it calls (apply_temperature, top_k_filter, top_p_filter): when one matches,
    the piece is named, not sample_next. "Always the most likely token" is only said on a case
    without filters, where no filter can explain it."""
    step = "sampling.sample_next"
    depends = ("sampling.temperature", "sampling.top_k", "sampling.top_p")
    forbidden = ("autograde.reference.sampling.sample_next", "autograde.reference.sampling.next_token_distribution")
    mutants = {
        "mistake_sample_greedy": lambda z, g, **kw: z.argmax(dim=-1),
        "mistake_sample_keepdim": lambda z, g, **kw: _draw(z, g, **kw)[:, None],
        "mistake_sample_order": lambda z, g, **kw: _draw(z, g, **kw, order="p_before_k"),
        "mistake_sample_temperature": (lambda z, g, **kw: _draw(z, g, **kw, order="late_temperature"),
                                       lambda z, g, **kw: _draw(z, g, **kw, order="no_temperature")),
        "mistake_sample_logits": lambda z, g, **kw: _draw_logits(z, g, **kw),   # (raises when a logit is < 0)
    }

    def cases(self, seed, hidden):
        def rows(logits):                                  # one row repeated: N_DRAWS draws of it
            return torch.tensor([logits]).expand(N_DRAWS, len(logits)).contiguous()

        if hidden:
            g = gen(seed)
            V = int(torch.randint(5, 12, (1,), generator=g))
            z = (torch.randn(V, generator=g) * 1.5).tolist()
            t = round(float(torch.empty(1).uniform_(0.5, 1.5, generator=g)), 2)
            t = round(float(torch.empty(1).uniform_(0.4, 0.7, generator=g)) * (1 if t < 1 else 3), 2)   # far from 1
            k = int(torch.randint(2, V - 2, (1,), generator=g))                     # k + 1 < V: k + 1 still filters
            top = torch.sort(torch.tensor(z) / t, descending=True).values[:k]     # what top-k leaves
            p = safe_p(top, int(torch.randint(1, k, (1,), generator=g)))
            s = [int(x) for x in torch.randint(2**31 - 1, (8,), generator=g)]
            batch = _rows(g, 64, V, 1.5)
            order_z, order_k, order_p = order_case(g)
            late_z, late_t, late_k, late_p = late_temperature_case(g)
            zs = str([round(x, 2) for x in z])
            return [Case(f"{zs} x {N_DRAWS}", (rows(z), gen(s[0]))),
                    Case(f"{zs} x {N_DRAWS}, T={t}", (rows(z), gen(s[1])), {"temperature": t}),
                    Case(f"{zs} x {N_DRAWS}, T={t}, top_k={k}, top_p={p:.3f}", (rows(z), gen(s[2])),
                         {"temperature": t, "top_k": k, "top_p": p}),
                    Case(f"log({_code(order_z[:1].exp())}) x {N_DRAWS}, top_k={order_k}, top_p={order_p}",
                         (order_z, gen(s[6])), {"top_k": order_k, "top_p": order_p}),
                    Case(f"{_code(late_z[:1])} x {N_DRAWS}, T={late_t}, top_k={late_k}, top_p={late_p:.3f}",
                         (late_z, gen(s[5] + 1)), {"temperature": late_t, "top_k": late_k, "top_p": late_p}),
                    Case(f"randn(64, {V}) * 1.5, T={t}, top_k={k}", (batch, gen(s[3])), {"temperature": t, "top_k": k}),
                    Case(f"randn(64, {V}) * 1.5, top_k=1", (batch, gen(s[4])), {"top_k": 1}),
                    Case(f"randn(64, {V}) * 1.5, top_k={V}, top_p=1e-4", (batch, gen(s[7])), {"top_k": V, "top_p": 1e-4}),
                    Case(f"model(“{PROMPTS[1]}”)[:, -1] x 64, T=0.8, top_p=0.95",
                         (real_logits(1).expand(64, -1).contiguous(), gen(s[5])), {"temperature": 0.8, "top_p": 0.95})]
        z = CHAPTER_LOGITS
        zs = str(z).replace(".0,", ",").replace(".0]", "]")
        quarter = "log([0.4, 0.2, 0.2, 0.1, 0.1])"       # p=0.45: top-p before top-k keeps 2 tokens, not 1
        return [Case(f"{zs} x {N_DRAWS}", (rows(z), gen(0))),
                Case(f"{zs} x {N_DRAWS}, T=0.5", (rows(z), gen(5)), {"temperature": 0.5}),
                Case(f"{zs} x {N_DRAWS}, T=0.5, top_k=3", (rows(z), gen(1)), {"temperature": 0.5, "top_k": 3}),
                Case(f"{zs} x {N_DRAWS}, T=0.5, top_p=0.9", (rows(z), gen(2)), {"temperature": 0.5, "top_p": 0.9}),
                Case(f"{quarter} x {N_DRAWS}, top_k=2, top_p=0.45",
                     (rows(torch.tensor([0.4, 0.2, 0.2, 0.1, 0.1]).log().tolist()), gen(3)), {"top_k": 2, "top_p": 0.45}),
                Case(f"model(“{PROMPTS[0]}”, “{PROMPTS[1]}”)[:, -1], T=0.8, top_k=40, top_p=0.9",
                     (torch.cat([real_logits(0), real_logits(1)]), gen(4)),
                     {"temperature": 0.8, "top_k": 40, "top_p": 0.9})]

    def reference(self, logits, generator, temperature=1.0, top_k=None, top_p=None):
        return ref.sample_next(logits, temperature, top_k, top_p, generator=fresh(generator))

    def wrong_piece(self, case, output) -> str | None:
        """The piece (apply_temperature, top_k_filter, top_p_filter) whose known mistake, under a
        right sample_next, draws exactly the student's tokens."""
        logits, generator = case.args
        kw = dict(case.kwargs)
        used = {"apply_temperature": kw.get("temperature", 1.0) != 1.0, "top_k_filter": kw.get("top_k") is not None,
                "top_p_filter": kw.get("top_p") is not None}
        found = []
        for piece, (_, mutants) in PIECES.items():
            if not used[piece]:
                continue
            for fn in (fn for fns in mutants.values() for fn in (fns if isinstance(fns, (list, tuple)) else (fns,))):
                try:
                    wrong = _draw(logits, generator, **kw, pieces={piece: fn})
                except Exception:
                    continue
                if compare_outputs(output, wrong).passed:
                    found.append(piece)           # (both filters can explain the same draws: name both)
                    break
        return "/".join(found) or None

    def diagnose(self, case, output):
        filtered = case.kwargs.get("top_k") is not None or case.kwargs.get("top_p") is not None
        for key, fns in self.mutants.items():
            if key == "mistake_sample_greedy" and filtered:
                continue                      # with filters, "argmax" is what a filter keeping one token gives
            for fn in fns if isinstance(fns, (list, tuple)) else (fns,):
                try:
                    wrong = fn(*case.args, **case.kwargs)
                except Exception:
                    continue
                if compare_outputs(output, wrong).passed:
                    return key
        return None

    def judge(self, case, output):
        expected = self.reference(*case.args, **case.kwargs)
        verdict = compare_outputs(output, expected, label=case.label)
        if verdict.passed:
            return verdict
        mistake = self.diagnose(case, output)
        if mistake:
            return Verdict(False, mistake, {"where": case.label}, case.label)
        if verdict.key != "wrong_values":
            return verdict
        piece = self.wrong_piece(case, output)
        if piece:
            return Verdict(False, "mistake_sample_wrong_piece", {"piece": piece}, case.label)
        filtered = case.kwargs.get("top_k") is not None or case.kwargs.get("top_p") is not None
        logits = case.args[0]
        if not bool((logits == logits[:1]).all()):       # different rows: no distribution to test
            if filtered and compare_outputs(output, logits.argmax(dim=-1)).passed:
                return Verdict(False, "mistake_sample_filter_suspect", {}, case.label)
            return verdict
        probs = ref.next_token_distribution(logits[0], case.kwargs.get("temperature", 1.0),
                                            case.kwargs.get("top_k"), case.kwargs.get("top_p"))
        draws = output.detach().cpu().long()
        if int(draws.min()) < 0 or int(draws.max()) >= probs.numel():
            return verdict
        removed = (probs[draws] == 0).nonzero()
        if len(removed):
            return Verdict(False, "mistake_sample_removed", {"token": int(draws[removed[0, 0]])}, case.label)
        stats = chi_square(draws, probs)
        if stats.pop("passed"):
            return Verdict(False, "mistake_sample_not_seeded", stats, case.label)
        if filtered and compare_outputs(output, logits.argmax(dim=-1)).passed:
            return Verdict(False, "mistake_sample_filter_suspect", {}, case.label)
        return Verdict(False, "mistake_sample_distribution", stats, case.label)

    def explain_raised(self, case, error, text):
        if error == "RuntimeError" and ("probability tensor" in text or "invalid multinomial" in text):
            filtered = case.kwargs.get("top_k") is not None or case.kwargs.get("top_p") is not None
            return "mistake_sample_filter_raised" if filtered else "mistake_sample_logits"
        return None


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
        early = mistake == "window_early" and len(ids) - start == context_length   # cut when just full
        if context_length and (len(ids) - start > context_length or early):    # window full: keep the newest half
            start = len(ids) - context_length // 2
        window = ids[start:]
        if mistake == "window":
            window = ids
        elif mistake == "sliding":
            window = ids[-context_length:] if context_length else ids
        elif mistake == "no_feedback":
            window = list(prompt_ids)
        logits = model_fn(torch.tensor([window]))[:, 0 if mistake == "first_position" else -1, :]   # (1, V)
        if generator is None or mistake == "ignores_generator":
            token = int(logits.argmax(dim=-1)[0])
        else:
            draw_with = fresh(generator) if mistake == "reseeded" else generator
            token = int(ref.sample_next(logits, temperature, top_k, top_p, generator=draw_with)[0])
        if token == stop_id and mistake == "stop_excluded":
            break
        ids.append(token)
        new_ids.append(token)
        if token == stop_id and mistake != "stop_ignored":
            break
    return new_ids


def position(verdict: Verdict, output, expected: list[int]) -> Verdict:
    """A wrong list of new ids: name the first differing position, new_ids[i] (also in a mistake's
    params, so that the grader's report can show where the tokens first went wrong)."""
    if not isinstance(output, list):
        return verdict
    for i, (o, e) in enumerate(zip(output, expected)):
        if type(o) is not int or o != e:
            return Verdict(False, "wrong_generated_token", {"index": i, "expected": e, "got": _short(o)}, verdict.case)
    return verdict                                   # one list is a prefix of the other: wrong_length says it


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_id_list(output):
    """Accept a list of ints, a list of 0-d tensors or a 1-d tensor; anything else is left alone."""
    if isinstance(output, torch.Tensor) and output.dim() == 1 and not output.is_floating_point():
        return [int(i) for i in output.tolist()]
    if isinstance(output, (list, tuple)) and all(isinstance(i, torch.Tensor) and i.numel() == 1
                                                  and not i.is_floating_point() for i in output):
        return [int(i) for i in output]
    return list(output) if isinstance(output, tuple) else output


def probe_case(prompt_length: int, max_new_tokens: int) -> Case:
    """A greedy case on protocol.WindowProbe, whose next id is the length of the window it was fed: the
    new ids spell out every window, so the step where the window is cut is checked exactly."""
    window = WindowProbe.WINDOW
    prompt = [(5 * i + 1) % WindowProbe.VOCAB for i in range(prompt_length)]
    return Case(f"window_probe, {prompt}, {max_new_tokens}, context_length={window}",
                (WindowProbe(), prompt, max_new_tokens), {"context_length": window})


def prompt_ids(index: int) -> list[int]:
    return reference().tokenizer.encode(PROMPTS[index])


def long_prompt(length: int) -> list[int]:
    text = " ".join(["The model reads tokens, not letters.", "애, 겨울 배가 맛있단다!"] * 40)
    return reference().tokenizer.encode(text)[:length]


@register
class Generate(SamplingCheck):
    step = "sampling.generate"
    depends = ("sampling.greedy", "sampling.sample_next")
    forbidden = ("autograde.reference.sampling.generate",)
    mutants = {
        "mistake_generate_first_position": lambda *a, **kw: generate_loop(*a, **kw, mistake="first_position"),
        "mistake_generate_no_feedback": lambda *a, **kw: generate_loop(*a, **kw, mistake="no_feedback"),
        "mistake_generate_stop_excluded": lambda *a, **kw: generate_loop(*a, **kw, mistake="stop_excluded"),
        "mistake_generate_stop_ignored": lambda *a, **kw: generate_loop(*a, **kw, mistake="stop_ignored"),
        "mistake_generate_window": lambda *a, **kw: generate_loop(*a, **kw, mistake="window"),
        "mistake_generate_sliding": lambda *a, **kw: generate_loop(*a, **kw, mistake="sliding"),
        "mistake_generate_window_early": lambda *a, **kw: generate_loop(*a, **kw, mistake="window_early"),
        "mistake_generate_ignores_generator": lambda *a, **kw: generate_loop(*a, **kw, mistake="ignores_generator"),
        "mistake_generate_reseeded": lambda *a, **kw: generate_loop(*a, **kw, mistake="reseeded"),
    }

    def cases(self, seed, hidden):
        model = reference().model
        fn, window, V = NoGradModel(model), model.cfg.max_seq_len, model.cfg.vocab_size
        if hidden:
            g = gen(seed)
            prompt = torch.randint(256, V - 1, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist()
            s = [int(x) for x in torch.randint(2**31 - 1, (4,), generator=g)]
            t = round(float(torch.empty(1).uniform_(0.6, 1.3, generator=g)), 2)
            k = int(torch.randint(5, 100, (1,), generator=g))
            greedy_ids = generate_loop(fn, prompt, 8)
            extra = int(torch.randint(80, 160, (1,), generator=g))
            edge = [0, V - 1, int(torch.randint(256, V - 1, (1,), generator=g)), 0]
            one = [int(torch.randint(0, V, (1,), generator=g))]
            return [Case(f"model, {prompt}, 8", (fn, prompt, 8)),
                    Case(f"model, {prompt}, 10, T={t}, top_k={k}, top_p=0.9", (fn, prompt, 10),
                         {"generator": gen(s[0]), "temperature": t, "top_k": k, "top_p": 0.9}),
                    Case(f"model, {prompt}, 8, stop_id={greedy_ids[4]}", (fn, prompt, 8), {"stop_id": greedy_ids[4]}),
                    Case(f"model, {one}, 6, T=1", (fn, one, 6), {"generator": gen(s[2])}),
                    Case(f"model, {edge}, 6", (fn, edge, 6)),
                    Case(f"model, [{window + extra} ids], 12, context_length={window}",
                         (fn, long_prompt(window + extra), 12), {"generator": gen(s[1]), "context_length": window}),
                    Case(f"model, [{window - 4} ids], 24, context_length={window}",
                         (fn, torch.randint(256, V - 1, (window - 4,), generator=g).tolist(), 24),
                         {"context_length": window}),
                    Case(f"model, [{window} ids], 6, T=1, context_length={window}",
                         (fn, long_prompt(window), 6), {"generator": gen(s[3]), "context_length": window}),
                    probe_case(int(torch.randint(1, 2 * WindowProbe.WINDOW, (1,), generator=g)), 21)]
        ko, en = prompt_ids(0), prompt_ids(1)
        greedy_ko = generate_loop(fn, ko, 10)
        stop = greedy_ko[3]
        return [Case(f"model, “{PROMPTS[0]}”, 10", (fn, ko, 10)),
                Case(f"model, “{PROMPTS[1]}”, 10, T=0.8, top_p=0.9", (fn, en, 10),
                     {"generator": gen(0), "temperature": 0.8, "top_p": 0.9}),
                Case(f"model, “{PROMPTS[1]}”, 10, T=1.2, top_k=20", (fn, en, 10),
                     {"generator": gen(1), "temperature": 1.2, "top_k": 20}),
                Case(f"model, “{PROMPTS[0]}”, 10, stop_id={stop}", (fn, ko, 10), {"stop_id": stop}),
                Case(f"model, [{window + 80} ids], 12, context_length={window}",
                     (fn, long_prompt(window + 80), 12), {"context_length": window}),
                Case(f"model, [{window - 4} ids], 24, T=1, context_length={window}",
                     (fn, long_prompt(window - 4), 24), {"generator": gen(2), "context_length": window}),
                probe_case(3, 14)]

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
        return self.failed(position(verdict, output, expected), case, output)


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
    step = "sampling.generate_with_cache"
    depends = ("sampling.greedy", "sampling.sample_next")
    forbidden = ("autograde.reference.sampling.generate",)
    mutants = {
        "mistake_cache_full_input": lambda *a, **kw: _cached(*a, **kw, mistake="full_input"),
        "mistake_cache_fresh": lambda *a, **kw: _cached(*a, **kw, mistake="fresh"),
    }

    def cases(self, seed, hidden):
        model = reference().model
        window, V = model.cfg.max_seq_len, model.cfg.vocab_size
        if hidden:
            g = gen(seed)
            prompt = torch.randint(256, V - 1, (int(torch.randint(2, 20, (1,), generator=g)),), generator=g).tolist()
            s = [int(x) for x in torch.randint(2**31 - 1, (2,), generator=g)]
            one = [int(torch.randint(0, V, (1,), generator=g))]
            return [Case(f"model, {prompt}, 12", (ModelSpy(model), prompt, 12)),
                    Case(f"model, {prompt}, 12, T=0.9, top_k=50", (ModelSpy(model), prompt, 12),
                         {"generator": gen(s[0]), "temperature": 0.9, "top_k": 50}),
                    Case(f"model, {one}, 8", (ModelSpy(model), one, 8)),
                    Case(f"model, [0, {V - 1}, 0], 8, T=1", (ModelSpy(model), [0, V - 1, 0], 8), {"generator": gen(s[1])}),
                    Case(f"model, [{window - 12} ids], 12", (ModelSpy(model), long_prompt(window - 12), 12))]
        return [Case(f"model, “{PROMPTS[0]}”, 16", (ModelSpy(model), prompt_ids(0), 16)),
                Case(f"model, “{PROMPTS[1]}”, 16, T=0.8, top_p=0.9", (ModelSpy(model), prompt_ids(1), 16),
                     {"generator": gen(5), "temperature": 0.8, "top_p": 0.9}),
                Case(f"model, [{window - 12} ids], 12", (ModelSpy(model), long_prompt(window - 12), 12))]

    def reference(self, model, prompt, max_new_tokens, generator=None, temperature=1.0, top_k=None, top_p=None):
        return ref.generate(model.model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            greedy=generator is None, use_cache=True,
                            seed=None if generator is None else generator.initial_seed())

    def judge(self, case, output):
        spy, prompt = case.args[0], case.args[1]
        calls = list(spy.calls)                        # the student's calls, before any mutant runs
        output = as_id_list(output)
        expected = self.reference(*case.args, **case.kwargs)
        verdict = compare_outputs(output, expected, label=case.label)
        if not verdict.passed:
            return self.failed(position(verdict, output, expected), case, output)
        cache = calls[0][1] if calls else None
        for i, (tokens, used) in enumerate(calls):          # one cache throughout, one token after the prefill
            if used is None or used is not cache:
                return Verdict(False, "mistake_cache_not_used", {"call": i + 1}, case.label)
            if i > 0 and tokens != 1:
                return Verdict(False, "mistake_cache_many_tokens", {"call": i + 1, "tokens": tokens}, case.label)
        return verdict
