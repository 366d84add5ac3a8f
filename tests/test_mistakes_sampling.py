"""Notebook 5: every mistake listed in the docstring of autograde/checks/steps/sampling.py,
written the way a student writes it (not by calling the check's mutant), is named by its
own message key on the visible cases and on hidden cases of several seeds; a wrong filter
under a right sample_next is blamed on the filter; a wrong generated token names its
position."""
from pathlib import Path

import pytest
import torch

from autograde.checks.registry import all_checks
from autograde.checks.runner import describe, run_check
from autograde.reference.model import KVCache

REFERENCE = Path(__file__).resolve().parent.parent / "autograde" / "data" / "reference" / "model.safetensors"
pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason="the reference model is not trained yet")
NEG = float("-inf")
SEEDS = (0, 1, 2, 7)
SAMPLE_SEEDS = (0, 7)           # sample_next draws 20,000 rows per case: fewer hidden seeds
MODEL_SEEDS = (1, 2)            # generation runs the model: fewer hidden seeds


def verdicts(step, fn, seeds=SEEDS):
    return [run_check(step, fn, hidden=False, seed=0)] + [run_check(step, fn, hidden=True, seed=s) for s in seeds]


# ----------------------------------------------------------------------------
# pieces a student writes right


def temperature_ok(logits, t):
    return logits / t


def top_k_ok(logits, k):
    values, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order[..., :k], True)
    return logits.masked_fill(~keep, NEG)


def top_p_ok(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before < p)
    return logits.masked_fill(~keep, NEG)


def sampler(temperature=temperature_ok, top_k=top_k_ok, top_p=top_p_ok, order="kp", softmax=True, squeeze=True):
    """sample_next as the notebook writes it, on top of the given pieces."""
    def sample_next(logits, generator, temperature_=1.0, top_k_=None, top_p_=None, **kw):
        t, k, p = kw.get("temperature", temperature_), kw.get("top_k", top_k_), kw.get("top_p", top_p_)
        z = temperature(logits, t)
        steps = [(top_k, k), (top_p, p)] if order == "kp" else [(top_p, p), (top_k, k)]
        for fn, arg in steps:
            if arg is not None:
                z = fn(z, arg)
        probs = torch.softmax(z, dim=-1) if softmax else z
        draws = torch.multinomial(probs, 1, generator=generator)
        return draws.squeeze(-1) if squeeze else draws
    return sample_next


# ----------------------------------------------------------------------------
# temperature, greedy, top-k, top-p


def topk_threshold(z, k):
    kth = torch.topk(z, min(k, z.shape[-1]), dim=-1).values[..., -1:]
    return z.masked_fill(z < kth, NEG)


def topk_k_plus_one(z, k):
    kth = torch.sort(z, dim=-1, descending=True).values[..., k:k + 1]    # sorted[k] is the (k+1)-th
    return z.masked_fill(z < kth, NEG)


def topk_strict(z, k):
    kth = torch.sort(z, dim=-1, descending=True).values[..., min(k, z.shape[-1]) - 1:min(k, z.shape[-1])]
    return torch.where(z > kth, z, torch.full_like(z, NEG))


def topk_torch_topk(z, k):
    idx = torch.topk(z, min(k, z.shape[-1]), dim=-1).indices
    out = torch.full_like(z, NEG)
    return out.scatter(-1, idx, z.gather(-1, idx))


def topk_smallest(z, k):
    idx = torch.topk(z, min(k, z.shape[-1]), dim=-1, largest=False).indices
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, idx, True)
    return z.masked_fill(~keep, NEG)


def topk_index_error(z, k):
    values, order = torch.sort(z, dim=-1, descending=True, stable=True)
    _kth = values[:, k - 1]                                             # IndexError when k > V
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, order[..., :k], True)
    return z.masked_fill(~keep, NEG)


def topk_zero(z, k):
    keep = top_k_ok(z, k) > NEG
    return torch.where(keep, z, torch.zeros_like(z))


def topp_le(z, p):
    probs = torch.softmax(z, dim=-1)
    sp, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) <= p)
    return z.masked_fill(~keep, NEG)


def topp_cumsum_minus_p(z, p):
    """The old hint taken literally: mass_before = cumsum - p."""
    probs = torch.softmax(z, dim=-1)
    sp, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - p < p)
    return z.masked_fill(~keep, NEG)


def topp_ties_high_first(z, p):
    probs = torch.softmax(z, dim=-1)
    sp, order = torch.sort(probs, dim=-1, stable=True)
    sp, order = sp.flip(-1), order.flip(-1)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp < p)
    return z.masked_fill(~keep, NEG)


def topp_sorted_mask(z, p):
    sp = torch.sort(torch.softmax(z, dim=-1), dim=-1, descending=True, stable=True).values
    return z.masked_fill(~(sp.cumsum(-1) - sp < p), NEG)


def topp_no_sort(z, p):
    probs = torch.softmax(z, dim=-1)
    return z.masked_fill(probs.cumsum(-1) - probs >= p, NEG)


def topp_probs(z, p):
    kept = torch.softmax(top_p_ok(z, p), dim=-1)
    return kept / kept.sum(-1, keepdim=True)


def topp_boundary(z, p):
    probs = torch.softmax(z, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before <= p)   # <= where < belongs
    return z.masked_fill(~keep, NEG)


def topp_zero(z, p):
    return top_p_ok(z, p).nan_to_num(neginf=0.0)


FILTER_MISTAKES = [
    ("temperature", lambda z, t: torch.softmax(z, dim=-1) / t, "mistake_temperature_after_softmax"),
    ("temperature", lambda z, t: torch.softmax(z, dim=-1), "mistake_temperature_after_softmax"),
    ("temperature", lambda z, t: z * t, "mistake_temperature_multiplied"),
    ("temperature", lambda z, t: torch.softmax(z / t, dim=-1), "mistake_temperature_probabilities"),
    ("greedy", lambda z: z.argmax(dim=0), "mistake_greedy_axis"),
    ("greedy", lambda z: torch.tensor([max(range(len(r)), key=lambda i: (r[i], i)) for r in z.tolist()]),
     "mistake_greedy_tie"),
    ("greedy", lambda z: z.max(dim=-1).values, "mistake_greedy_values"),
    ("greedy", lambda z: torch.argmax(z, dim=-1, keepdim=True), "mistake_greedy_keepdim"),
    ("top_k", topk_threshold, "mistake_topk_ties"),
    ("top_k", topk_k_plus_one, "mistake_topk_k_plus_one"),
    ("top_k", topk_strict, "mistake_topk_fewer"),
    ("top_k", topk_torch_topk, "mistake_topk_tie_order"),
    ("top_k", topk_smallest, "mistake_topk_smallest"),
    ("top_k", topk_index_error, "mistake_topk_too_large"),
    ("top_k", topk_zero, "mistake_filter_zero"),
    ("top_p", topp_le, "mistake_topp_crossing"),
    ("top_p", topp_cumsum_minus_p, "mistake_topp_crossing"),
    ("top_p", topp_ties_high_first, "mistake_topp_tie_order"),
    ("top_p", topp_sorted_mask, "mistake_topp_unsorted"),
    ("top_p", topp_no_sort, "mistake_topp_no_sort"),
    ("top_p", topp_probs, "mistake_topp_probabilities"),
    ("top_p", topp_zero, "mistake_filter_zero"),
    ("top_p", topp_boundary, "mistake_topp_boundary"),
]


@pytest.mark.parametrize("step, fn, key", FILTER_MISTAKES,
                         ids=[f"{m[0]}-{m[2]}-{i}" for i, m in enumerate(FILTER_MISTAKES)])
def test_a_filter_mistake_is_named_on_visible_and_hidden_cases(step, fn, key):
    for result in verdicts(f"sampling.{step}", fn):
        assert not result["passed"] and result["key"] == key, result


def test_the_right_pieces_pass():
    for step, fn in (("temperature", temperature_ok), ("top_k", top_k_ok), ("top_p", top_p_ok),
                     ("sample_next", sampler())):
        for result in verdicts(f"sampling.{step}", fn):
            assert result["passed"], result


def test_the_top_p_hint_states_the_mass_strictly_before_each_token():
    from autograde.checks.messages import message

    en, ko = message("mistake_topp_crossing", "en"), message("mistake_topp_crossing", "ko")
    assert "cumsum - sorted_probs" in en and "cumsum - sorted_probs" in ko
    assert "cumsum - p" not in en and "cumsum - p" not in ko


def test_k_plus_one_is_not_called_a_tie_problem():
    result = run_check("sampling.top_k", topk_k_plus_one)
    assert result["key"] == "mistake_topk_k_plus_one"
    assert "k + 1" in describe(result, "en") and "tie" not in describe(result, "en").split(":")[-1]


# ----------------------------------------------------------------------------
# sample_next


def sample_argmax(logits, generator, temperature=1.0, top_k=None, top_p=None):
    return torch.argmax(logits, dim=-1)


def sample_categorical(logits, generator, temperature=1.0, top_k=None, top_p=None):
    z = logits / temperature
    if top_k is not None:
        z = top_k_ok(z, top_k)
    if top_p is not None:
        z = top_p_ok(z, top_p)
    return torch.distributions.Categorical(logits=z).sample()


def sample_too_hot(logits, generator, temperature=1.0, top_k=None, top_p=None):
    return sampler()(logits, generator, temperature=temperature * 1.7 + 0.2, top_k=top_k, top_p=top_p)


def sample_softmax_of_the_wrong_variable(logits, generator, temperature=1.0, top_k=None, top_p=None):
    scaled = logits / temperature
    filtered = scaled
    if top_k is not None:
        filtered = top_k_ok(filtered, top_k)
    if top_p is not None:
        filtered = top_p_ok(filtered, top_p)
    probs = torch.softmax(scaled, dim=-1)                  # the filtered logits are never used
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sample_late_temperature(logits, generator, temperature=1.0, top_k=None, top_p=None):
    z = logits
    if top_k is not None:
        z = top_k_ok(z, top_k)
    if top_p is not None:
        z = top_p_ok(z, top_p)
    return torch.multinomial(torch.softmax(z / temperature, -1), 1, generator=generator).squeeze(-1)


def sample_no_op_filters(logits, generator, temperature=1.0, top_k=None, top_p=None):
    return sampler(top_k=lambda z, k: z, top_p=lambda z, p: z)(logits, generator, temperature=temperature)


SAMPLE_MISTAKES = [
    (sample_argmax, "mistake_sample_greedy"),
    (sampler(squeeze=False), "mistake_sample_keepdim"),
    (sampler(order="pk"), "mistake_sample_order"),
    (sampler(temperature=lambda z, t: z), "mistake_sample_temperature"),
    (sample_late_temperature, "mistake_sample_temperature"),
    (sampler(softmax=False), "mistake_sample_logits"),
    (sample_categorical, "mistake_sample_not_seeded"),
    (sample_too_hot, "mistake_sample_distribution"),
    (sample_softmax_of_the_wrong_variable, "mistake_sample_removed"),
    # a right sample_next on top of a wrong piece: the piece is named, not sample_next
    (sampler(top_k=topk_k_plus_one), "mistake_sample_wrong_piece"),
    (sampler(top_k=topk_strict), "mistake_sample_wrong_piece"),
    (sampler(top_p=topp_le), "mistake_sample_wrong_piece"),
    (sampler(top_p=topp_cumsum_minus_p), "mistake_sample_wrong_piece"),
    (sampler(temperature=lambda z, t: z * t), "mistake_sample_wrong_piece"),
    (sample_no_op_filters, "mistake_sample_removed"),       # the same draws as the wrong variable above
    # a top-k stuck at k = 1: "a filter kept one token", or the piece itself where a known filter mistake
    # (fewer than k, the crossing token dropped) draws the same tokens
    (sampler(top_k=lambda z, k: top_k_ok(z, 1)), ("mistake_sample_filter_suspect", "mistake_sample_wrong_piece")),
]


@pytest.mark.parametrize("fn, key", SAMPLE_MISTAKES, ids=[f"{m[1] if isinstance(m[1], str) else m[1][0]}-{i}" for i, m in enumerate(SAMPLE_MISTAKES)])
def test_a_sample_next_mistake_is_named_on_visible_and_hidden_cases(fn, key):
    keys = key if isinstance(key, tuple) else (key,)
    results = verdicts("sampling.sample_next", fn, SAMPLE_SEEDS)
    for result in results:
        assert not result["passed"] and result["key"] in keys, result
    assert results[0]["key"] == keys[0], results[0]          # the visible cases give the first-listed name


@pytest.mark.parametrize("piece, fn", [("top_k_filter", topk_smallest), ("top_k_filter", topk_k_plus_one),
                                       ("top_p_filter", topp_le), ("apply_temperature", lambda z, t: z * t)])
def test_a_wrong_piece_is_blamed_not_sample_next(piece, fn):
    kwargs = {{"top_k_filter": "top_k", "top_p_filter": "top_p", "apply_temperature": "temperature"}[piece]: fn}
    for result in verdicts("sampling.sample_next", sampler(**kwargs), SAMPLE_SEEDS):
        assert result["key"] == "mistake_sample_wrong_piece", result
        assert piece in result["params"]["piece"].split("/"), result
        assert "always picked" not in describe(result, "en")


def test_sample_next_depends_on_its_pieces_and_generate_on_sample_next():
    checks = all_checks()
    assert set(checks["sampling.sample_next"].depends) == {"sampling.temperature", "sampling.top_k", "sampling.top_p"}
    for step in ("sampling.generate", "sampling.generate_with_cache"):
        assert "sampling.sample_next" in checks[step].depends and "sampling.greedy" in checks[step].depends


# ----------------------------------------------------------------------------
# generate and the KV cache


def looper(mistake=None):
    """generate as the notebook writes it; `mistake` makes one known mistake."""
    sample_next = sampler()

    def generate(model_fn, prompt_ids, max_new_tokens, generator=None, temperature=1.0, top_k=None, top_p=None,
                 stop_id=None, context_length=None, progress=False):
        ids, new = list(prompt_ids), []
        start = max(0, len(ids) - context_length) if context_length else 0
        for step in range(max_new_tokens):
            full = context_length and (len(ids) - start >= context_length if mistake == "window_early"
                                       else len(ids) - start > context_length)
            if full:
                start = len(ids) - context_length // 2
            window = ids[start:]
            if mistake == "window":
                window = ids
            elif mistake == "sliding" and context_length:
                window = ids[-context_length:]
            elif mistake == "no_feedback":
                window = list(prompt_ids)
            logits = model_fn(torch.tensor([window]))
            logits = logits[:, 0, :] if mistake == "first_position" else logits[:, -1, :]
            if generator is None or mistake == "ignores_generator":
                token = int(logits.argmax(-1)[0])
            else:
                g = torch.Generator().manual_seed(generator.initial_seed()) if mistake == "reseeded" else generator
                token = int(sample_next(logits, g, temperature=temperature, top_k=top_k, top_p=top_p)[0])
            if mistake == "fifth_token" and step == 5:
                token = (token + 1) % logits.shape[-1]
            if token == stop_id and mistake == "stop_excluded":
                break
            ids.append(token)
            new.append(token)
            if token == stop_id and mistake != "stop_ignored":
                break
        return ids if mistake == "prompt" else new
    return generate


GENERATE_MISTAKES = ["prompt", "first_position", "no_feedback", "stop_excluded", "stop_ignored", "window", "sliding",
                     "window_early", "ignores_generator", "reseeded"]


def test_the_student_loop_is_right_without_a_mistake():
    for result in verdicts("sampling.generate", looper(), MODEL_SEEDS):
        assert result["passed"], result


@pytest.mark.parametrize("mistake", GENERATE_MISTAKES)
def test_a_generate_mistake_is_named(mistake):
    for result in verdicts("sampling.generate", looper(mistake), MODEL_SEEDS):
        assert not result["passed"] and result["key"] == f"mistake_generate_{mistake}", result


def test_a_wrong_generated_token_names_its_position():
    result = run_check("sampling.generate", looper("fifth_token"))
    assert result["key"] == "wrong_generated_token" and result["params"]["index"] == 5, result
    assert "new_ids[5] differs" in describe(result, "en")
    assert "new_ids[5] 값이 다릅니다" in describe(result, "ko")


def cacher(mistake=None):
    sample_next = sampler()

    @torch.no_grad()
    def generate_with_cache(model, prompt_ids, max_new_tokens, generator=None, temperature=1.0, top_k=None,
                            top_p=None, progress=False):
        cache = KVCache(model.cfg.n_layer)
        ids, new = list(prompt_ids), []
        step_input = torch.tensor([ids])
        for _ in range(max_new_tokens):
            if mistake == "fresh" and new:
                cache = KVCache(model.cfg.n_layer)
            if mistake == "many_tokens" and new:
                cache.__init__(model.cfg.n_layer)             # "start over" on the same cache object
                step_input = torch.tensor([ids])
            logits = model(step_input) if mistake == "not_used" else model(step_input, cache=cache)
            logits = logits[:, -1, :]
            token = int(logits.argmax(-1)[0]) if generator is None else \
                int(sample_next(logits, generator, temperature=temperature, top_k=top_k, top_p=top_p)[0])
            ids.append(token)
            new.append(token)
            step_input = torch.tensor([ids]) if mistake in ("full_input", "not_used") else torch.tensor([[token]])
        return new
    return generate_with_cache


@pytest.mark.parametrize("mistake", ["full_input", "fresh", "not_used", "many_tokens"])
def test_a_cache_mistake_is_named(mistake):
    for result in verdicts("sampling.generate_with_cache", cacher(mistake), MODEL_SEEDS):
        assert not result["passed"] and result["key"] == f"mistake_cache_{mistake}", result


def test_every_listed_mistake_has_a_student_test():
    """At least 90% of the mistakes the sampling checks know are written above as a student would."""
    known = {key for step, check in all_checks().items() if step.startswith("sampling.") for key in check.mutants}
    known |= {"mistake_generate_prompt", "mistake_cache_not_used", "mistake_cache_many_tokens",
              "mistake_topk_too_large", "mistake_sample_removed", "mistake_sample_not_seeded",
              "mistake_sample_distribution", "mistake_sample_wrong_piece", "mistake_sample_filter_suspect",
              "mistake_sample_filter_raised"}
    tested = {key for _, _, key in FILTER_MISTAKES} | {k for _, key in SAMPLE_MISTAKES for k in
                                                        (key if isinstance(key, tuple) else (key,))} \
        | {f"mistake_generate_{m}" for m in GENERATE_MISTAKES} \
        | {f"mistake_cache_{m}" for m in ("full_input", "fresh", "not_used", "many_tokens")}
    assert len(known & tested) >= 0.9 * len(known), sorted(known - tested)
