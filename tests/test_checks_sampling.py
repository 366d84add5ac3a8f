"""Notebook 5's checks: correct implementations written differently pass, the
known mistakes are named, and the final assembly works with or without the
student's pieces."""
from pathlib import Path

import pytest
import torch

from autograde.checks.runner import run_check
from autograde.checks.steps.sampling import chi_square
from autograde.reference.model import KVCache

REFERENCE = Path(__file__).resolve().parent.parent / "autograde" / "data" / "reference" / "model.safetensors"
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="the reference model is not trained yet")
NEG = float("-inf")


# ----------------------------------------------------------------------------
# correct implementations, written differently from the notebook's


def temperature_log_softmax(z, t):
    return torch.log_softmax(z / t, dim=-1)          # logits up to a constant per row


def greedy_max(z):
    return torch.max(z, dim=-1).indices


def top_k_loop(z, k):
    out = torch.full_like(z, NEG)
    for r in range(z.shape[0]):
        for i in sorted(range(z.shape[1]), key=lambda i: (-float(z[r, i]), i))[:k]:
            out[r, i] = z[r, i]
    return out


def top_p_float64(z, p):
    probs = torch.softmax(z.double(), dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = sorted_probs.cumsum(-1)
    keep = torch.cat([torch.ones_like(cum[..., :1], dtype=torch.bool), cum[..., :-1] < p], dim=-1)
    return z.masked_fill(~torch.zeros_like(keep).scatter(-1, order, keep), NEG)


def sample_row_by_row(z, g, temperature=1.0, top_k=None, top_p=None):
    """One draw per row, each from its own multinomial call; the filtered distribution of a row is
    computed once per distinct row (the checks repeat a few rows thousands of times, and the loop
    filter above is slow on a vocabulary of 2048)."""
    rows, seen = [], {}
    for row in z:
        key = row.numpy().tobytes()
        if key not in seen:
            filtered = row[None] / temperature
            if top_k is not None:
                filtered = top_k_loop(filtered, top_k)
            if top_p is not None:
                filtered = top_p_float64(filtered, top_p)
            seen[key] = torch.softmax(filtered, -1)
        rows.append(torch.multinomial(seen[key], 1, generator=g)[0, 0])
    return torch.stack(rows)


def generate_tensor_out(model_fn, prompt, n, generator=None, temperature=1.0, top_k=None, top_p=None,
                        stop_id=None, context_length=None, sliding=False):
    ids = torch.tensor([list(prompt)])
    context = ids if context_length is None else ids[:, -context_length:]
    while ids.shape[1] - len(prompt) < n:
        logits = model_fn(context)[:, -1]
        nxt = greedy_max(logits) if generator is None else sample_row_by_row(logits, generator, temperature,
                                                                             top_k, top_p)
        ids, context = torch.cat([ids, nxt[:, None]], dim=1), torch.cat([context, nxt[:, None]], dim=1)
        if context_length is not None and context.shape[1] > context_length:     # full: the newest half
            context = context[:, -context_length:] if sliding else context[:, -(context_length // 2):]
        if int(nxt) == stop_id:
            break
    return ids[0, len(prompt):]


@torch.no_grad()
def cached_prefill_all_but_last(model, prompt, n, generator=None, temperature=1.0, top_k=None, top_p=None,
                                progress=False):
    cache, new = KVCache(model.cfg.n_layer), []
    if len(prompt) > 1:
        model(torch.tensor([list(prompt[:-1])]), cache=cache)
    step = [prompt[-1]]
    for _ in range(n):
        logits = model(torch.tensor([step]), cache=cache)[:, -1]
        token = int(greedy_max(logits)[0]) if generator is None else \
            int(sample_row_by_row(logits, generator, temperature, top_k, top_p)[0])
        new.append(token)
        step = [token]
    return new


CORRECT = {
    "temperature": temperature_log_softmax, "greedy": greedy_max, "top_k": top_k_loop, "top_p": top_p_float64,
    "sample_next": sample_row_by_row, "generate": generate_tensor_out,
    "generate_with_cache": cached_prefill_all_but_last,
}


@needs_reference
@pytest.mark.parametrize("step", list(CORRECT))
def test_correct_implementations_written_differently_pass(step):
    for hidden, seed in ((False, None), (True, 1), (True, 2)):
        result = run_check(f"sampling.{step}", CORRECT[step], hidden=hidden, seed=seed)
        assert result["passed"], result


# ----------------------------------------------------------------------------
# known mistakes are named


def topk_threshold(z, k):
    kth = torch.topk(z, min(k, z.shape[-1]), dim=-1).values[..., -1:]
    return z.masked_fill(z < kth, NEG)


def topp_drops_crossing(z, p):
    probs = torch.softmax(z, -1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(sorted_probs, dtype=torch.bool).scatter(-1, order, sorted_probs.cumsum(-1) <= p)
    return z.masked_fill(~keep, NEG)


def topp_sorted_order(z, p):
    sorted_probs = torch.sort(torch.softmax(z, -1), dim=-1, descending=True, stable=True).values
    return z.masked_fill(~(sorted_probs.cumsum(-1) - sorted_probs < p), NEG)


def sample_filters_swapped(z, g, temperature=1.0, top_k=None, top_p=None):
    z = z / temperature
    if top_p is not None:
        z = top_p_float64(z, top_p).float()
    if top_k is not None:
        z = top_k_loop(z, top_k)
    return torch.multinomial(torch.softmax(z, -1), 1, generator=g).squeeze(-1)


def sample_categorical(z, g, temperature=1.0, top_k=None, top_p=None):
    z = z / temperature
    if top_k is not None:
        z = top_k_loop(z, top_k)
    if top_p is not None:
        z = top_p_float64(z, top_p).float()
    return torch.distributions.Categorical(logits=z).sample()


def sample_too_hot(z, g, temperature=1.0, top_k=None, top_p=None):
    return sample_row_by_row(z, g, temperature * 1.7 + 0.2, top_k, top_p)


def generate_with_prompt(model_fn, prompt, n, **kw):
    return list(prompt) + [int(i) for i in generate_tensor_out(model_fn, prompt, n, **kw)]


def generate_no_window(model_fn, prompt, n, context_length=None, **kw):
    return generate_tensor_out(model_fn, prompt, n, **kw)


def generate_sliding(model_fn, prompt, n, **kw):
    return generate_tensor_out(model_fn, prompt, n, **kw, sliding=True)


def cache_never_used(model, prompt, n, **kw):
    return [int(i) for i in generate_tensor_out(lambda ids: model(ids), prompt, n, **kw)]


@torch.no_grad()
def cache_full_input(model, prompt, n, generator=None, **kw):
    cache, ids = KVCache(model.cfg.n_layer), list(prompt)
    for _ in range(n):
        ids.append(int(greedy_max(model(torch.tensor([ids]), cache=cache)[:, -1])[0]))
    return ids[len(prompt):]


MISTAKES = [
    ("temperature", lambda z, t: torch.softmax(z, -1) / t, "mistake_temperature_after_softmax"),
    ("temperature", lambda z, t: z * t, "mistake_temperature_multiplied"),
    ("greedy", lambda z: z.shape[-1] - 1 - z.flip(-1).argmax(-1), "mistake_greedy_tie"),
    ("top_k", topk_threshold, "mistake_topk_ties"),
    ("top_k", lambda z, k: top_k_loop(z, k).nan_to_num(neginf=0.0), "mistake_filter_zero"),
    ("top_p", topp_drops_crossing, "mistake_topp_crossing"),
    ("top_p", topp_sorted_order, "mistake_topp_unsorted"),
    ("sample_next", lambda z, g, **kw: z.argmax(-1), "mistake_sample_greedy"),
    ("sample_next", sample_filters_swapped, "mistake_sample_order"),
    ("sample_next", sample_categorical, "mistake_sample_not_seeded"),
    ("sample_next", sample_too_hot, "mistake_sample_distribution"),
    ("generate", generate_with_prompt, "mistake_generate_prompt"),
    ("generate", generate_no_window, "mistake_generate_window"),
    ("generate", generate_sliding, "mistake_generate_sliding"),
    ("generate_with_cache", cache_never_used, "mistake_cache_not_used"),
    ("generate_with_cache", cache_full_input, "mistake_cache_full_input"),
]


@needs_reference
@pytest.mark.parametrize("step, fn, key", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_known_mistakes_are_named(step, fn, key):
    result = run_check(f"sampling.{step}", fn)
    assert not result["passed"] and result["key"] == key, result


def test_chi_square_accepts_the_right_distribution_and_rejects_a_wrong_one():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    right = torch.multinomial(probs.expand(20_000, -1), 1, generator=torch.Generator().manual_seed(0))[:, 0]
    wrong = torch.multinomial(torch.tensor([0.46, 0.27, 0.16, 0.08, 0.03]).expand(20_000, -1), 1,
                              generator=torch.Generator().manual_seed(0))[:, 0]
    assert chi_square(right, probs)["passed"]
    assert not chi_square(wrong, probs)["passed"]


# ----------------------------------------------------------------------------
# the final assembly


@needs_reference
def test_assembly_falls_back_to_the_reference_for_every_missing_piece(tmp_path, monkeypatch, capsys):
    from autograde.assemble import build_generator
    from autograde.reference.checkpoint import load_reference
    from autograde.reference.sampling import generate

    monkeypatch.chdir(tmp_path)                                 # no my_llm/ here
    text = build_generator()("언어 모델은", max_new_tokens=12, seed=None)
    printed = capsys.readouterr().out
    assert printed.count("reference version is used") == 6
    ref = load_reference()
    ids = ref.tokenizer.encode("언어 모델은")
    expected = generate(ref.model, ids, 12, greedy=True, stop_id=ref.tokenizer.special_tokens["<|endoftext|>"])
    eot = ref.tokenizer.special_tokens["<|endoftext|>"]
    assert text == ref.tokenizer.decode(ids + [i for i in expected if i != eot])


@needs_reference
def test_assembly_uses_a_saved_piece_and_ignores_unknown_steps(tmp_path, monkeypatch, capsys):
    import json

    from autograde.assemble import build_generator
    from autograde.notebook import save_piece

    monkeypatch.chdir(tmp_path)
    save_piece("sampling.generate", generate_tensor_out)        # passes its check
    index = json.loads(Path("my_llm/pieces.json").read_text())
    index["ffn.rms_norm"] = {"module": "ffn", "function": "rms_norm", "source": "def rms_norm(x, w, eps):\n"
                             "    return x\n", "imports": []}
    Path("my_llm/pieces.json").write_text(json.dumps(index))
    Path("my_llm/ffn.py").write_text(index["ffn.rms_norm"]["source"])
    build_generator()("The model reads", max_new_tokens=4)
    printed = capsys.readouterr().out
    assert "sampling.generate: using your version" in printed
    assert "ffn.rms_norm: your version does not pass" in printed
