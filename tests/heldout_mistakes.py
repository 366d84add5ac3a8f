"""A self-assessment set of mistaken submissions, by the kinds of mistake that issue 23 lists, each written
into the notebooks' own solutions as a student would (a text change), apart from the mistake
implementations that tests/test_mistakes_*.py and the notebook tests use to pin each message key.

Not a test (pytest does not collect this file): it measures how often the feedback names the mistake.

    .venv/bin/python tests/heldout_mistakes.py          # one line per submission, then the totals

Each submission runs through the step's visible cases and the hidden cases of two seeds. It counts as
named when every run fails with a key that says what is wrong (not one of GENERIC) and all runs that
fail give the same key; wrongly passed when no run fails. No submission here is correct, so none
can be wrongly failed; the correct ones (tests/test_checks_variants.py, the notebook tests) cover that.

Issue 23, measured on this set: 18 of 53 named before its diagnoses, 50 of 53 after; 2 wrongly passed both times
(top-p's `<=` against `<` and generate's `>=` at the window's edge: no case put a value exactly on that
boundary), visible and hidden naming different mistakes 4 times before, 0 after. Since 2026-12-07: 53 of 53
named, 0 wrongly passed (top-p gets uniform rows, where p lies exactly on a cumulative sum; generate gets
protocol.WindowProbe, whose next id is the length of the window it was fed; cross_entropy's log-sum-exp
over the positions is named from the shape clash it raises).
"""
from __future__ import annotations

import math
import re
import sys
from collections import Counter
from pathlib import Path

import regex
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_source import solution_namespace, solution_text  # noqa: E402

from autograde.checks.runner import LAST_RESULTS, run_check  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (11, 12)
# keys that say only that the output is off, not why
GENERIC = {"wrong_values", "wrong_value", "wrong_item", "wrong_shape", "wrong_length", "wrong_keys", "nan_output",
           "inf_output", "raised", "did_not_raise", "wrong_exception", "wrong_generated_token"}


def source(name: str) -> Path:
    """solutions/src/NN_<name>.py, whatever its number."""
    return next((ROOT / "solutions" / "src").glob(f"*_{name}.py"))


def setup(notebook: str) -> dict:
    from autograde.reference.tokenizer import GPT4_SPLIT_PATTERN
    base = {"math": math, "re": re, "torch": torch, "F": F, "regex": regex, "tqdm": tqdm, "Counter": Counter,
            "FORMAT_REWARD": 0.1, "GPT4_SPLIT_PATTERN": GPT4_SPLIT_PATTERN,
            "unicodedata": __import__("unicodedata")}
    if notebook == "ffn_block":
        from autograde.checks.steps.ffn import layer_weights
        from autograde.reference.model import rope_cos_sin
        base.update(solution_namespace(source("attention"), dict(base)), rope_cos_sin=rope_cos_sin,
                    layer_weights=layer_weights)
    if notebook == "sampling":
        from autograde.reference.model import KVCache
        base["KVCache"] = KVCache
    return base


# (step, notebook, function, kind, [(old, new), ...])
SUBMISSIONS = [
    # -- off by one, both directions ----------------------------------------------------------------
    ("training.lr_schedule", "training", "lr_schedule", "off-by-one", [("if step < warmup:", "if step <= warmup:")]),
    ("training.lr_schedule", "training", "lr_schedule", "off-by-one", [("(step + 1) / warmup", "(step + 2) / warmup")]),
    ("training.lr_schedule", "training", "lr_schedule", "off-by-one", [("(step + 1) / warmup", "step / warmup")]),
    ("training.lr_schedule", "training", "lr_schedule", "off-by-one",
     [("(step - warmup) / max(1, total_steps - warmup)", "(step - warmup + 1) / max(1, total_steps - warmup)")]),
    ("training.lr_schedule", "training", "lr_schedule", "off-by-one",
     [("(step - warmup) / max(1, total_steps - warmup)", "(step - warmup - 1) / max(1, total_steps - warmup)")]),
    ("training.adamw_step", "training", "adamw_step", "off-by-one",
     [("beta1 ** step", "beta1 ** (step + 1)"), ("beta2 ** step", "beta2 ** (step + 1)")]),
    ("training.adamw_step", "training", "adamw_step", "off-by-one",
     [("beta1 ** step", "beta1 ** (step - 1)"), ("beta2 ** step", "beta2 ** (step - 1)")]),
    ("training.get_batch", "training", "get_batch", "off-by-one",
     [("len(ids) - seq_len - 1, (batch_size,)", "len(ids) - seq_len, (batch_size,)")]),
    ("training.get_batch", "training", "get_batch", "off-by-one",
     [("len(ids) - seq_len - 1, (batch_size,)", "len(ids) - seq_len - 2, (batch_size,)")]),
    ("tokenizer.train_bpe", "tokenizer", "train_bpe", "off-by-one", [("new_id = 256 + k", "new_id = 257 + k")]),
    ("tokenizer.train_bpe", "tokenizer", "train_bpe", "off-by-one", [("new_id = 256 + k", "new_id = 255 + k")]),
    ("tokenizer.merge_pair", "tokenizer", "merge_pair", "off-by-one",
     [("if i + 1 < len(ids) and", "if i + 2 < len(ids) and")]),
    ("sampling.top_k", "sampling", "top_k_filter", "off-by-one", [("order[..., :k]", "order[..., :k + 1]")]),
    ("sampling.top_k", "sampling", "top_k_filter", "off-by-one", [("order[..., :k]", "order[..., :k - 1]")]),
    ("sampling.top_p", "sampling", "top_p_filter", "off-by-one", [("mass_before < p", "mass_before <= p")]),
    ("sampling.generate", "sampling", "generate", "off-by-one",
     [("len(ids) - start > context_length", "len(ids) - start >= context_length")]),
    ("embeddings.nearest_neighbours", "embeddings", "nearest_neighbours", "off-by-one",
     [("if i != query_id][:k]", "if i != query_id][:k + 1]")]),
    ("embeddings.sinusoidal_encoding", "embeddings", "sinusoidal_encoding", "off-by-one",
     [("torch.arange(0, dim, 2).float() / dim", "torch.arange(1, dim + 1, 2).float() / dim")]),
    ("reasoning.pass_at_k", "reasoning", "pass_at_k", "off-by-one",
     [("range(n - c + 1, n + 1)", "range(n - c, n)")]),
    ("reasoning.pass_at_k", "reasoning", "pass_at_k", "off-by-one", [("if n - c < k:", "if n - c <= k:")]),
    # -- a tie broken the other way ----------------------------------------------------------------
    ("reasoning.majority_vote", "reasoning", "majority_vote", "tie",
     [("return votes.most_common(1)[0][0]", "return max(reversed(list(votes)), key=votes.get)")]),
    ("sampling.greedy", "sampling", "greedy", "tie",
     [("return logits.argmax(dim=-1)", "return logits.shape[-1] - 1 - logits.flip(-1).argmax(dim=-1)")]),
    ("real_model.bpe_encode", "real_model", "bpe_encode", "tie",
     [("_, i = min(pairs)", "_, i = min(pairs, key=lambda p: (p[0], -p[1]))")]),
    # -- the wrong axis of a cached or batched tensor ----------------------------------------------
    ("real_model.forward", "real_model", "forward", "axis",
     [("past_len = 0 if cache is None else cache[0][0].shape[2]",
       "past_len = 0 if cache is None else cache[0][0].shape[1]")]),
    ("sampling.top_k", "sampling", "top_k_filter", "axis",
     [("    return logits.masked_fill(~keep, float(\"-inf\"))",
       "    out = logits.clone()\n    out[0] = logits[0].masked_fill(~keep[0], float(\"-inf\"))\n    return out")]),
    ("sampling.top_p", "sampling", "top_p_filter", "axis",
     [("    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)",
       "    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)\n    keep[1:] = True")]),
    ("reasoning.group_advantages", "reasoning", "group_advantages", "axis",
     [("std = rewards.std(dim=-1, unbiased=False, keepdim=True)", "std = rewards.std(unbiased=False)")]),
    ("embeddings.cosine_similarity", "embeddings", "cosine_similarity", "axis",
     [("b_unit = b / b.norm(dim=-1, keepdim=True)", "b_unit = b / b.norm(dim=0, keepdim=True)")]),
    ("training.cross_entropy", "training", "cross_entropy", "axis",
     [("m = z.max(dim=-1, keepdim=True).values", "m = z.max(dim=0, keepdim=True).values"),
      ("(z - m).exp().sum(dim=-1).log()", "(z - m).exp().sum(dim=0).log()")]),
    # -- types and precision ----------------------------------------------------------------------
    ("real_model.kv_cache_bytes", "real_model", "kv_cache_bytes", "type",
     [('config["hidden_size"] // heads', 'config["hidden_size"] / heads')]),
    ("real_model.kv_cache_bytes", "real_model", "kv_cache_bytes", "type",
     [("return config[\"num_hidden_layers\"] * 2 *", "return 2.0 * config[\"num_hidden_layers\"] *")]),
    ("embeddings.cosine_similarity", "embeddings", "cosine_similarity", "dtype",
     [("return a_unit @ b_unit.T", "return (a_unit.float() @ b_unit.float().T).to(a.dtype)")]),
    ("ffn.gelu", "ffn_block", "gelu", "dtype", [("inner = math.sqrt(2.0 / math.pi)", "z = z.float()\n    inner = math.sqrt(2.0 / math.pi)")]),
    ("ffn.rms_norm", "ffn_block", "rms_norm", "dtype",
     [("mean_square = x.pow(2).mean(dim=-1, keepdim=True)",
       "mean_square = x.float().pow(2).mean(dim=-1, keepdim=True)")]),
    ("embeddings.embed_with_positions", "embeddings", "embed_with_positions", "dtype",
     [("return tok_emb[ids] + pos_table[positions]", "return tok_emb[ids].float() + pos_table[positions].float()")]),
    ("sampling.greedy", "sampling", "greedy", "type",
     [("return logits.argmax(dim=-1)", "return logits.argmax(dim=-1).float()")]),
    # -- missing defaults of real configs ---------------------------------------------------------
    ("real_model.kv_cache_bytes", "real_model", "kv_cache_bytes", "config default",
     [('kv_heads = config.get("num_key_value_heads", heads)', 'kv_heads = config["num_key_value_heads"]')]),
    ("real_model.kv_cache_bytes", "real_model", "kv_cache_bytes", "config default",
     [('config.get("head_dim") or config["hidden_size"] // heads', 'config["head_dim"]')]),
    # -- wrong constants, aggregates over the wrong thing -----------------------------------------
    ("ffn.gelu", "ffn_block", "gelu", "constant", [("math.sqrt(2.0 / math.pi)", "math.sqrt(math.pi / 2.0)")]),
    ("ffn.gelu", "ffn_block", "gelu", "constant", [("0.044715", "0.44715")]),
    ("ffn.gelu", "ffn_block", "gelu", "constant", [("0.5 * z * (1.0", "z * (1.0")]),
    ("embeddings.sinusoidal_encoding", "embeddings", "sinusoidal_encoding", "constant",
     [("10000.0 ** (-torch.arange(0, dim, 2).float() / dim)", "10000.0 ** (torch.arange(0, dim, 2).float() / dim)")]),
    ("training.adamw_step", "training", "adamw_step", "constant",
     [("v = exp_avg_sq * beta2 + grad * grad * (1 - beta2)", "v = exp_avg_sq * beta2 + grad * grad * beta2")]),
    ("training.perplexity", "training", "perplexity", "aggregate",
     [("return math.exp(float(cross_entropy(logits.double(), targets, ignore_index)))",
       "return math.exp(float(cross_entropy(logits.double(), targets, ignore_index)"
       " * (targets != ignore_index).sum()))")]),
    ("training.clip_grad_norm", "training", "clip_grad_norm", "aggregate",
     [("float((g.double() ** 2).sum())", "float((g.double() ** 2).mean())")]),
    ("reasoning.group_advantages", "reasoning", "group_advantages", "aggregate",
     [("mean = rewards.mean(dim=-1, keepdim=True)", "mean = rewards.mean()")]),
    ("training.cross_entropy", "training", "cross_entropy", "aggregate",
     [("return ((lse - picked) * keep).sum() / keep.sum()", "return ((lse - picked) * keep).mean()")]),
    # -- a function that raises on an input the step allows --------------------------------------
    ("embeddings.embed_with_positions", "embeddings", "embed_with_positions", "raises",
     [("if start + T > pos_table.shape[0]:", "if start + T >= pos_table.shape[0]:")]),
    ("embeddings.nearest_neighbours", "embeddings", "nearest_neighbours", "raises",
     [("if not 1 <= k <= V - 1:", "if not 1 <= k < V - 1:")]),
    ("reasoning.pass_at_k", "reasoning", "pass_at_k", "raises", [("if k > n:", "if k >= n:")]),
    ("tokenizer.merge_pair", "tokenizer", "merge_pair", "raises",
     [("if i + 1 < len(ids) and ids[i]", "if ids[i]")]),
    ("tokenizer.decode", "tokenizer", "decode", "raises", [('.decode("utf-8", errors="replace")', '.decode("utf-8")')]),
    ("attention.causal_mask", "attention", "causal_mask", "raises",
     [("return torch.ones(T, T, dtype=torch.bool).tril()", "return torch.ones(T, T, dtype=torch.bool).tril() if T > 1 else 1 / 0")]),
]


def submission(notebook: str, function: str, changes) -> callable:
    text = solution_text(source(notebook))
    for old, new in changes:
        if old not in text:
            raise AssertionError(f"{notebook}: {old!r} is not in the solution")
        text = text.replace(old, new, 1)
    return solution_namespace(source(notebook), setup(notebook), text)[function]


def outcome(step: str, fn) -> dict:
    runs = []
    for hidden, seed in ((False, None), *((True, s) for s in SEEDS)):
        LAST_RESULTS.clear()
        runs.append(run_check(step, fn, hidden=hidden, seed=seed))
    failing = [r for r in runs if not r["passed"]]
    keys = [r["key"] for r in failing]
    return {"keys": [r["key"] if not r["passed"] else "pass" for r in runs], "passed": not failing,
            "named": bool(failing) and all(k not in GENERIC for k in keys) and len(set(keys)) == 1,
            "consistent": len(set(keys)) <= 1}


def main() -> int:
    totals = Counter()
    start = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    for step, notebook, function, kind, changes in SUBMISSIONS[start:]:
        result = outcome(step, submission(notebook, function, changes))
        totals["all"] += 1
        totals["named"] += result["named"]
        totals["wrongly passed"] += result["passed"]
        totals["visible/hidden differ"] += not result["consistent"]
        mark = "named" if result["named"] else ("PASSED" if result["passed"] else "unnamed")
        print(f"{mark:8} {kind:15} {step:32} {' | '.join(result['keys'])}")
    print(dict(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
