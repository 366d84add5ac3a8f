"""Turning logits into the next token, and the autoregressive loop.

The order is fixed: temperature, then top-k, then top-p, then softmax and a
draw. Rules at the boundaries (documented because the checks test them):

* top-k keeps exactly k tokens. On ties at the k-th place the lower token id
  wins (a stable sort), so k never silently becomes k + 1.
* top-p keeps the smallest set of most likely tokens whose probability
  reaches p, *including* the token whose probability crosses p. A token is
  kept when the probability of all tokens ranked before it is still < p.
  Ties are ranked by token id, like top-k.
* greedy picks the highest logit; on ties the lowest id (torch.argmax).
"""
from __future__ import annotations

import torch

from autograde.errors import CourseError
from autograde.reference.model import KVCache, Transformer


def check_sampling_args(temperature=1.0, top_k=None, top_p=None):
    if not temperature > 0:
        raise CourseError(f"temperature must be > 0 (got {temperature}); use greedy decoding for 'temperature 0'")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise CourseError(f"top_k must be a whole number >= 1 (got {top_k})")
    if top_p is not None and not 0 < top_p <= 1:
        raise CourseError(f"top_p must be in (0, 1] (got {top_p})")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by T before the softmax: T < 1 sharpens, T > 1 flattens."""
    check_sampling_args(temperature=temperature)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of the last dimension, set the rest to -inf."""
    check_sampling_args(top_k=k)
    k = min(int(k), logits.shape[-1])
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # (..., V)
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, order[..., :k], True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest top set whose probability reaches p."""
    check_sampling_args(top_p=p)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)  # (..., V)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability ranked ahead of each token
    keep_sorted = mass_before < p                             # the crossing token has mass_before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def next_token_distribution(logits, temperature=1.0, top_k=None, top_p=None) -> torch.Tensor:
    """Logits (..., V) -> the probabilities the sampler draws from (..., V)."""
    check_sampling_args(temperature, top_k, top_p)
    logits = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, greedy=False, generator=None) -> torch.Tensor:
    """(B, V) logits -> (B,) next token ids."""
    if greedy:
        return logits.argmax(dim=-1)
    probs = next_token_distribution(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Transformer, prompt_ids, max_new_tokens: int, *, temperature=1.0, top_k=None,
             top_p=None, greedy=False, seed=None, use_cache=True, stop_id=None) -> list[int]:
    """Continue `prompt_ids` by up to `max_new_tokens` tokens; returns only the new ids.

    stop_id: an id, or a collection of ids, that ends the text (it is returned as the last id).

    Context policy (the same with and without the cache, so both give identical
    tokens): the model sees at most its context length `window`. A longer
    prompt keeps its last `window` tokens. When the generated text fills the
    window, the oldest half is dropped and the model continues from the last
    window // 2 tokens. With the KV cache, prefill runs the context once and
    each decode step feeds one token; the cache is rebuilt only when the
    context is shifted, once every window // 2 tokens.
    """
    if len(prompt_ids) == 0:
        raise CourseError("the prompt is empty: give at least one token")
    if max_new_tokens < 0:
        raise CourseError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
    if not greedy:
        check_sampling_args(temperature, top_k, top_p)
    model.eval()
    device = next(model.parameters()).device
    window = model.cfg.max_seq_len
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    stops = set() if stop_id is None else {int(stop_id)} if isinstance(stop_id, int) else {int(i) for i in stop_id}

    ids = list(prompt_ids)
    start = max(0, len(ids) - window)          # the model's context is ids[start:]
    new_ids: list[int] = []
    cache = None
    for _ in range(max_new_tokens):
        if len(ids) - start > window:          # full: keep the newest half
            start = len(ids) - window // 2
            cache = None
        if use_cache and cache is not None:
            step_input = torch.tensor([ids[-1:]], device=device)          # decode: (1, 1)
        else:
            cache = KVCache(model.cfg.n_layer) if use_cache else None      # prefill: (1, T)
            step_input = torch.tensor([ids[start:]], device=device)
        logits = model(step_input, cache=cache)[:, -1, :]                  # (1, V)
        token = int(sample_next(logits, temperature, top_k, top_p, greedy, generator)[0])
        ids.append(token)
        new_ids.append(token)
        if token in stops:
            break
    return new_ids
