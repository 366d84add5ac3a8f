"""Sampling rules on hand-made logits, seeded generation, and the KV cache."""
import math

import pytest
import torch

from autograde.errors import CourseError
from autograde.reference.model import ModelConfig, Transformer
from autograde.reference.sampling import (apply_temperature, generate, next_token_distribution, sample_next,
                                          top_k_filter, top_p_filter)

NEG = float("-inf")


def kept(filtered: torch.Tensor) -> list[int]:
    return torch.isfinite(filtered).nonzero().flatten().tolist()


def test_top_k_keeps_exactly_k_on_ties_lower_id_first():
    logits = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 0.0])
    assert kept(top_k_filter(logits, 1)) == [1]
    assert kept(top_k_filter(logits, 2)) == [1, 3]
    assert kept(top_k_filter(logits, 3)) == [1, 2, 3]          # tie 2.0 at ids 2 and 4: id 2 wins
    assert kept(top_k_filter(logits, 100)) == list(range(6))
    assert top_k_filter(logits, 3)[1] == 3.0                    # kept logits are unchanged


def test_top_k_batched_rows_are_independent():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    assert torch.isfinite(top_k_filter(logits, 1)).tolist() == [[False, False, True], [True, False, False]]


def probs_logits(*probs):
    return torch.tensor(probs, dtype=torch.float64).log()


def test_top_p_includes_the_token_that_crosses_p():
    logits = probs_logits(0.5, 0.25, 0.125, 0.125)
    assert kept(top_p_filter(logits, 0.3)) == [0]               # 0.5 already reaches 0.3
    assert kept(top_p_filter(logits, 0.6)) == [0, 1]            # 0.5 < 0.6: the crossing token 1 is kept
    assert kept(top_p_filter(logits, 0.8)) == [0, 1, 2]
    assert kept(top_p_filter(logits, 1.0)) == [0, 1, 2, 3]


def test_top_p_ties_ranked_by_id():
    logits = probs_logits(0.2, 0.4, 0.4)
    assert kept(top_p_filter(logits, 0.3)) == [1]
    assert kept(top_p_filter(logits, 0.5)) == [1, 2]


def test_order_temperature_then_top_k_then_top_p():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    probs = next_token_distribution(logits, temperature=0.5, top_k=3, top_p=0.9)
    scaled = torch.softmax(logits[:3] / 0.5, dim=-1)             # top-k 3, then renormalize
    # top-p on the scaled top-3: 0.867 < 0.9, so the second token crosses p and is kept
    expected = torch.tensor([scaled[0], scaled[1], 0.0, 0.0])
    expected = expected / expected.sum()
    assert torch.allclose(probs, expected, atol=1e-6)


def test_temperature_divides_logits():
    logits = torch.tensor([1.0, 2.0])
    assert torch.equal(apply_temperature(logits, 2.0), torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": -1}, "temperature must be > 0"),
    ({"top_k": 0}, "top_k must be a whole number >= 1"),
    ({"top_k": 1.5}, "top_k must be a whole number >= 1"),
    ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.2}, r"top_p must be in \(0, 1\]"),
])
def test_bad_sampling_arguments_are_named(kwargs, message):
    with pytest.raises(CourseError, match=message):
        next_token_distribution(torch.zeros(4), **kwargs)


def test_greedy_is_argmax_lowest_id_on_ties():
    assert sample_next(torch.tensor([[0.0, 5.0, 5.0]]), greedy=True).tolist() == [1]


def test_sampler_draws_from_the_right_distribution():
    """Chi-square goodness of fit, 6 categories, 20000 seeded draws."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, 1.5]])
    probs = next_token_distribution(logits, temperature=0.8)[0]
    gen = torch.Generator().manual_seed(0)
    n = 20000
    draws = torch.stack([sample_next(logits, temperature=0.8, generator=gen) for _ in range(n)]).flatten()
    observed = torch.bincount(draws, minlength=6).double()
    expected = probs.double() * n
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 20.5        # 99.9th percentile of chi-square with 5 degrees of freedom


def tiny_model(cfg_name: str, scale: float = 20.0) -> Transformer:
    make = ModelConfig.gpt2_style if cfg_name == "gpt2" else ModelConfig.llama_style
    cfg = make(vocab_size=50, d_model=32, n_layer=2, n_head=4, n_kv_head=2 if cfg_name == "llama" else 4,
               d_ff=48, max_seq_len=24)
    model = Transformer(cfg)
    model.reset_parameters(seed=7)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)   # peaky distributions so sampling differences would show
    return model.eval()


@pytest.mark.parametrize("cfg_name", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", [dict(greedy=True), dict(temperature=0.9, top_k=10, top_p=0.9, seed=3)])
def test_cache_and_no_cache_generate_identical_tokens(cfg_name, mode):
    model = tiny_model(cfg_name)
    prompt = [1, 2, 3, 4, 5]
    # 40 new tokens run past the 24-token window, exercising the cache rebuild
    cached = generate(model, prompt, 40, use_cache=True, **mode)
    uncached = generate(model, prompt, 40, use_cache=False, **mode)
    assert cached == uncached and len(cached) == 40


def test_seeded_generation_is_reproducible_and_seed_matters():
    model = tiny_model("llama", scale=1.0)                    # flat: every draw matters
    runs = [generate(model, [1, 2], 20, temperature=1.5, seed=s) for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_prompt_longer_than_context_keeps_the_last_window():
    model = tiny_model("llama")
    long_prompt = list(range(1, 50)) * 2                      # 98 tokens, window 24
    assert generate(model, long_prompt, 5, greedy=True) == generate(model, long_prompt[-24:], 5, greedy=True)


def test_empty_prompt_is_an_error():
    with pytest.raises(CourseError, match="prompt is empty"):
        generate(tiny_model("gpt2"), [], 3)
