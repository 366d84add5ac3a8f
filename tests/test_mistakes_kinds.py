"""Issue 23's kinds of mistake, each written the way a student would write it (not by calling a check's mutant),
named by its own message key on the visible cases and on hidden cases: off-by-one in both directions, the wrong
axis of a cached or batched tensor, a float for an int count, float64 returned with float32 precision, a missing
default of a real config, a wrong constant, an aggregate over the wrong thing, and a function that raises on an
input the step allows. Then: no two mistake keys of a step claim the same submission."""
import math

import pytest
import torch

from autograde.checks import runner
from autograde.checks.core import compare_outputs
from autograde.checks.messages import message
from autograde.checks.registry import all_checks
from autograde.checks.runner import run_check
from autograde.reference import functional as fn
from autograde.reference import tokenizer as ref_tok

HIDDEN_SEED = 5


def key_of(step, f, hidden=False):
    runner.LAST_RESULTS.clear()
    result = run_check(step, f, hidden=hidden, seed=HIDDEN_SEED if hidden else None)
    return result["key"]


# ----------------------------------------------------------------------------
# notebook 6 (training): a schedule, AdamW, perplexity, clipping, batches


def lr(step, max_lr, min_lr, warmup, total_steps, *, warm=lambda s: s + 1, last_warm=None, shift=0):
    last_warm = warmup - 1 if last_warm is None else last_warm
    if step <= last_warm:
        return max_lr * warm(step) / warmup
    t = min(1.0, (step - warmup + shift) / max(1, total_steps - warmup))
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * t))


def lr_next_step_warmup(*a):
    return lr(*a, warm=lambda s: s + 2)


def lr_warmup_includes_end(step, max_lr, min_lr, warmup, total_steps):
    return lr(step, max_lr, min_lr, warmup, total_steps, last_warm=warmup)


def lr_progress_late(*a):
    return lr(*a, shift=-1)


def lr_progress_early(*a):
    return lr(*a, shift=1)


def adam(param, grad, m, v, step, lr_, betas, eps, wd, *, t=lambda s: s, w1=lambda b: 1 - b, w2=lambda b: 1 - b):
    b1, b2 = betas
    m = b1 * m + w1(b1) * grad
    v = b2 * v + w2(b2) * grad.square()
    update = (m / (1 - b1 ** t(step))) / ((v / (1 - b2 ** t(step))).sqrt() + eps)
    return param - lr_ * wd * param - lr_ * update, m, v


def adam_next_step(*a):
    return adam(*a, t=lambda s: s + 1)


def adam_v_weighted_by_beta(*a):
    return adam(*a, w2=lambda b: b)


def adam_m_weighted_by_beta(*a):
    return adam(*a, w1=lambda b: b)


def ppl_exp_total(logits, targets, ignore_index=-100):
    z = logits.double()
    keep = targets != ignore_index
    nll = z.exp().sum(-1).log() - z.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return math.exp(float(nll[keep].sum()))


def clip_rms(grads, max_norm):
    total = math.sqrt(sum(float(g.double().square().mean()) for g in grads))
    scale = min(1.0, max_norm / (total + 1e-6))
    return [g * scale for g in grads], total


def batch_starts_short(ids, batch_size, seq_len, generator):
    starts = torch.randint(0, len(ids) - seq_len - 2, (batch_size,), generator=generator)
    x = torch.stack([ids[s:s + seq_len] for s in starts.tolist()])
    return x, torch.stack([ids[s + 1:s + 1 + seq_len] for s in starts.tolist()])


# ----------------------------------------------------------------------------
# notebook 1 (tokenizer)


def merge_stops_early(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i < len(ids) - 2 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_reads_past_the_end(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# ----------------------------------------------------------------------------
# notebook 2 (embeddings)


def cos(a, b, eps=1e-8, *, b_dim=-1):
    return (a / a.norm(dim=-1, keepdim=True).clamp_min(eps)) @ (b / b.norm(dim=b_dim, keepdim=True).clamp_min(eps)).T


def cos_b_down_columns(a, b, eps=1e-8):
    return cos(a, b, eps, b_dim=0)


def cos_via_float32(a, b, eps=1e-8):
    return cos(a.float(), b.float(), eps).to(a.dtype)


def neighbours(table, query_id, k, *, extra=0, refuse_last=False):
    V = table.shape[0]
    if k < 1 or k > V - 1 or (refuse_last and k == V - 1):
        raise ValueError("bad k")
    sims = cos(table[query_id][None], table)[0]
    sims[query_id] = -math.inf
    order = sorted(range(V), key=lambda i: (-float(sims[i]), i))
    return order[:k + extra]


def neighbours_one_more(table, query_id, k):
    return neighbours(table, query_id, k, extra=1)


def neighbours_refuse_all(table, query_id, k):
    return neighbours(table, query_id, k, refuse_last=True)


def embed_strict_bound(ids, tok_emb, pos_table, start=0):
    T = ids.shape[-1]
    if start + T >= len(pos_table):
        raise ValueError("positions out of range")
    return tok_emb[ids] + pos_table[start:start + T]


def sinusoidal_odd(n_positions, dim):
    if dim % 2:
        raise ValueError("odd")
    table = torch.zeros(n_positions, dim)
    for i in range(dim // 2):
        w = 1.0 / 10000 ** ((2 * i + 1) / dim)
        table[:, 2 * i] = torch.sin(torch.arange(n_positions) * w)
        table[:, 2 * i + 1] = torch.cos(torch.arange(n_positions) * w)
    return table


# ----------------------------------------------------------------------------
# notebooks 4 and 5 (FFN, sampling), notebook 9 (reasoning)


def gelu_inverted(z):
    return 0.5 * z * (1 + torch.tanh(math.sqrt(math.pi / 2) * (z + 0.044715 * z ** 3)))


def gelu_in_float32(z):
    y = z.float()
    return 0.5 * y * (1 + torch.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))


def top_k_first_row(logits, k):
    out = logits.clone()
    kth = torch.sort(logits[0], descending=True).values[min(k, logits.shape[-1]) - 1]
    out[0] = logits[0].masked_fill(logits[0] < kth, float("-inf"))
    return out


def top_p_first_row_cut(logits, p):
    probs = torch.softmax(logits[0], -1)
    sorted_probs, order = torch.sort(probs, descending=True, stable=True)
    drop = torch.zeros_like(probs, dtype=torch.bool)
    drop[order] = (sorted_probs.cumsum(0) - sorted_probs) >= p                    # the first row's cut, for all
    return logits.masked_fill(drop, float("-inf"))


def advantages_batch_std(rewards, eps=1e-6):
    mean = rewards.mean(dim=1, keepdim=True)
    adv = (rewards - mean) / (rewards.std(unbiased=False) + eps)
    flat = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    return torch.where(flat, torch.zeros_like(adv), adv)


# ----------------------------------------------------------------------------
# notebook 7 (real model)


def kv_bytes_reads_fields(config, n_tokens, bytes_per_value=2):
    per_token = config["num_key_value_heads"] * config["head_dim"] * 2 * bytes_per_value
    return config["num_hidden_layers"] * per_token * n_tokens


def kv_bytes_true_division(config, n_tokens, bytes_per_value=2):
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] / heads
    return 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", heads) * head_dim * bytes_per_value \
        * n_tokens


def forward_reads_heads_axis(ids, weights, cfg, cache=None):
    from autograde.checks.steps import real_model as rm

    past = 0 if cache is None else cache[0][1].size(1)              # (B, G, S, D): G, not S
    cos_, sin_ = rm.rope_tables(torch.arange(past, past + ids.shape[1]), cfg["head_dim"], cfg["rope_theta"])
    x, kvs = weights["tok_emb"][ids], []
    for i in range(cfg["n_layer"]):
        x, kv = rm._block(x, rm.layer(weights, i), cfg, cos_, sin_, None if cache is None else cache[i])
        kvs.append(kv)
    return fn.rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"]) @ weights["tok_emb"].T, kvs


def causal_mask_needs_two(T):
    if T < 2:
        raise IndexError("index 1 is out of bounds")
    return torch.tril(torch.ones(T, T)).bool()


NAMED = [
    ("training.lr_schedule", lr_next_step_warmup, "mistake_lr_warmup_ahead"),
    ("training.lr_schedule", lr_warmup_includes_end, "mistake_lr_boundary"),
    ("training.lr_schedule", lr_progress_late, "mistake_lr_progress_off_by_one"),
    ("training.lr_schedule", lr_progress_early, "mistake_lr_progress_off_by_one"),
    ("training.adamw_step", adam_next_step, "mistake_adam_step_off_by_one"),
    ("training.adamw_step", adam_v_weighted_by_beta, "mistake_adam_moment_weights"),
    ("training.adamw_step", adam_m_weighted_by_beta, "mistake_adam_moment_weights"),
    ("training.perplexity", ppl_exp_total, "mistake_ppl_exp_of_sum"),
    ("training.clip_grad_norm", clip_rms, "mistake_clip_mean_square"),
    ("training.get_batch", batch_starts_short, "mistake_batch_range"),
    ("tokenizer.merge_pair", merge_stops_early, "mistake_merge_end_pair"),
    ("tokenizer.merge_pair", merge_reads_past_the_end, "mistake_merge_index_end"),
    ("embeddings.cosine_similarity", cos_b_down_columns, "mistake_cos_wrong_axis"),
    ("embeddings.nearest_neighbours", neighbours_one_more, "mistake_nn_k_plus_one"),
    ("embeddings.nearest_neighbours", neighbours_refuse_all, "mistake_nn_k_bound"),
    ("embeddings.embed_with_positions", embed_strict_bound, "mistake_embed_bound_last"),
    ("embeddings.sinusoidal_encoding", sinusoidal_odd, "mistake_pe_odd_exponent"),
    ("ffn.gelu", gelu_inverted, "mistake_gelu_constant"),
    ("sampling.top_k", top_k_first_row, "mistake_filter_first_row"),
    ("sampling.top_p", top_p_first_row_cut, "mistake_filter_first_row"),
    ("reasoning.group_advantages", advantages_batch_std, "mistake_adv_global"),
    ("real_model.kv_cache_bytes", kv_bytes_reads_fields, "mistake_rm_kv_missing_default"),
    ("real_model.kv_cache_bytes", kv_bytes_true_division, "float_for_int"),
    ("real_model.forward", forward_reads_heads_axis, "mistake_rm_cache_length_axis"),
    ("attention.causal_mask", causal_mask_needs_two, "raised_for_input"),
]
# mistakes that only the hidden cases show: float64 inputs (the visible ones are float32)
HIDDEN_ONLY = [
    ("embeddings.cosine_similarity", cos_via_float32, "lost_precision"),
    ("ffn.gelu", gelu_in_float32, "wrong_dtype_precision"),
]


@pytest.mark.parametrize("step, f, key", NAMED, ids=[f"{k}-{f.__name__}" for _, f, k in NAMED])
def test_each_kind_is_named_on_visible_and_hidden_cases(step, f, key):
    assert key_of(step, f) == key
    assert key_of(step, f, hidden=True) == key
    assert message(key, "ko") != message(key, "en")


@pytest.mark.parametrize("step, f, key", HIDDEN_ONLY, ids=[f"{k}-{f.__name__}" for _, f, k in HIDDEN_ONLY])
def test_hidden_only_kinds_are_named(step, f, key):
    assert key_of(step, f, hidden=True) == key


def bpe_rightmost_on_ties(text, vocab, merges, pattern):
    """The lowest rank wins, but on equal ranks the last position: max over (-rank, position)."""
    import unicodedata

    import regex

    from autograde.checks.steps import real_model as rm

    byte_char, rank, ids = rm._byte_map(), {pair: r for r, pair in enumerate(merges)}, []
    for piece in regex.findall(pattern, unicodedata.normalize("NFC", text)):
        symbols = [byte_char[b] for b in piece.encode("utf-8")]
        while True:
            found = [(-rank[p], i) for i, p in enumerate(zip(symbols, symbols[1:])) if p in rank]
            if not found:
                break
            _, i = max(found)
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        ids += [vocab[s] for s in symbols]
    return ids


def test_a_tie_broken_to_the_right_is_named():
    """real_model.bpe_encode: only texts with the same lowest-ranked pair twice in one piece tell it apart
    (hidden seed 12 draws one); wherever it fails, it is named."""
    results = []
    for seed in (11, 12):
        runner.LAST_RESULTS.clear()
        results.append(run_check("real_model.bpe_encode", bpe_rightmost_on_ties, hidden=True, seed=seed))
    failing = [r for r in results if not r["passed"]]
    assert failing and all(r["key"] == "mistake_rm_tie_rightmost" for r in failing), results


# ----------------------------------------------------------------------------
# no two keys claim the same submission


def _variants(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


RAISED = object()     # a mutant that raises on a case (a returned None is an output like any other)


def _output(f, case):
    try:
        return runner.call(f, tuple(runner.snapshot(a) if isinstance(a, torch.Tensor) else a for a in case.args),
                           dict(case.kwargs), case.drive)
    except Exception:
        return RAISED


# steps whose mutants drive a model for many tokens, train one or draw thousands of samples: their notebook
# tests run each mistake through the diagnosis (tests/test_checks.py: every mutant, visible cases)
HEAVY = {"training.train_model", "sampling.generate", "sampling.generate_with_cache", "sampling.sample_next",
         "ffn.forward", "ffn.block", "real_model.forward", "real_model.decoder_block", "real_model.gqa_attention",
         "attention.multi_head"}


@pytest.mark.parametrize("step", sorted(set(all_checks()) - HEAVY))
def test_no_two_mistakes_claim_the_same_submission(step):
    """Every variant of every mutant, as a submission, on one hidden seed's cases (tests/test_checks.py runs
    each through the visible cases): the
    diagnosis (Check.narrow) keeps, of the keys that fit the first wrong output, those that fit the other cases
    too, and names the first in the check's order. That key must be the submission's own, or a student who
    made one mistake would be told another."""
    check = all_checks()[step]
    order = list(check.mutants)
    shared = []
    for hidden in (True,):
        cases = [c for c in check.cases(HIDDEN_SEED, hidden) if not c.raises]
        expected = [_output(check.reference, c) for c in cases]
        outputs = {(k, i): [_output(v, c) for c in cases]
                   for k, value in check.mutants.items() for i, v in enumerate(_variants(value))}

        def same(a, b, label):
            return a is not RAISED and b is not RAISED and compare_outputs(a, b, label).passed

        def matching(j, out):                     # Check.mistakes: the keys whose mutants give `out` on case j
            return [k for k in order if any(same(out, theirs[j], cases[j].label)
                                            for (k2, _), theirs in outputs.items() if k2 == k)]

        for (key, i), mine in outputs.items():
            wrong = [j for j, c in enumerate(cases) if mine[j] is not RAISED and not same(mine[j], expected[j], c.label)]
            if not wrong:
                continue
            candidates = matching(wrong[0], mine[wrong[0]])         # as Check.narrow, over the other cases
            for j in range(len(cases)):
                if j != wrong[0] and mine[j] is not RAISED and len(candidates) > 1:
                    candidates = [k for k in candidates if k in matching(j, mine[j])] or candidates
            if candidates[:1] != [key]:
                shared.append(f"{'hidden' if hidden else 'visible'}: {key}[{i}] is named {candidates[:1]}")
    assert not shared, shared
