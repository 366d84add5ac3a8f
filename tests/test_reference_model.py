"""The reference transformer against Hugging Face transformers and torch.

Tiny random configs, float32, offline: transformers builds the models from a
config, no hub access. The bound 1e-5 is the issue's acceptance bound.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autograde.errors import CourseError
from autograde.reference.hf import to_hf_model
from autograde.reference.model import (KVCache, ModelConfig, Transformer, causal_mask,
                                       scaled_dot_product_attention)

TOL = 1e-5
REPO = Path(__file__).resolve().parents[1]

CONFIGS = {
    "gpt2": ModelConfig.gpt2_style(vocab_size=97, d_model=32, n_layer=2, n_head=4, d_ff=64, max_seq_len=32),
    "llama": ModelConfig.llama_style(vocab_size=97, d_model=32, n_layer=2, n_head=4, n_kv_head=4, d_ff=48,
                                     max_seq_len=32),
    "llama-gqa": ModelConfig.llama_style(vocab_size=97, d_model=32, n_layer=2, n_head=4, n_kv_head=2, d_ff=48,
                                         max_seq_len=32, tie_embeddings=False),
}


def random_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    model = Transformer(cfg)
    model.reset_parameters(seed=seed)
    # larger than init_std so that every weight matters in the comparison
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_match_transformers(name):
    model = random_model(CONFIGS[name])
    hf = to_hf_model(model)
    ids = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(ids)
        theirs = hf(ids).logits
    assert ours.shape == theirs.shape == (3, 17, 97)
    assert (ours - theirs).abs().max().item() <= TOL


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_padded_batch_matches_transformers(name):
    """Left padding: masked keys and shifted positions, as in batched generation."""
    model = random_model(CONFIGS[name], seed=5)
    hf = to_hf_model(model)
    ids = torch.randint(0, 97, (3, 12), generator=torch.Generator().manual_seed(4))
    attention_mask = torch.ones(3, 12, dtype=torch.long)
    attention_mask[1, :4] = 0
    attention_mask[2, :9] = 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(ids, attention_mask=attention_mask, position_ids=position_ids)
        theirs = hf(ids, attention_mask=attention_mask, position_ids=position_ids).logits
    real = attention_mask.bool()
    assert torch.isfinite(ours).all()
    assert (ours[real] - theirs[real]).abs().max().item() <= TOL
    # each padded row equals the same sequence run alone, unpadded
    with torch.no_grad():
        alone = model(ids[2:3, 9:])
    assert (ours[2, 9:] - alone[0]).abs().max().item() <= TOL


def test_attention_matches_torch_sdpa():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=gen) for _ in range(3))
    ours = scaled_dot_product_attention(q, k, v, causal_mask(7, 7))
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (ours - theirs).abs().max().item() <= TOL

    padding = torch.rand(2, 1, 1, 7, generator=gen) > 0.3
    padding[..., 0] = True                           # every query keeps at least one key
    mask = causal_mask(7, 7)[None, None] & padding   # (2, 1, 7, 7)
    ours = scaled_dot_product_attention(q, k, v, mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (ours - theirs).abs().max().item() <= TOL


def test_cross_attention_shapes_with_cache_offset():
    """Queries are the last positions: with 3 cached keys, query 0 sees keys 0..3."""
    mask = causal_mask(2, 5)
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_kv_cache_gives_same_logits(name):
    model = random_model(CONFIGS[name], seed=2)
    ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.cfg.n_layer)
        parts = [model(ids[:, :6], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(6, 10)]
    stepped = torch.cat(parts, dim=1)
    assert (full - stepped).abs().max().item() <= TOL
    assert cache.length == 10


def test_gqa_cache_stores_only_kv_heads():
    model = random_model(CONFIGS["llama-gqa"])
    cache = KVCache(model.cfg.n_layer)
    with torch.no_grad():
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    k, v = cache.layers[0]
    assert k.shape == v.shape == (1, 2, 5, 8)        # (B, n_kv_head, T, d_head)


def test_wrong_weight_shape_names_tensor_and_shapes():
    model = random_model(CONFIGS["llama"])
    state = model.state_dict()
    name = next(n for n in state if n.endswith("W_q"))
    state[name] = torch.zeros(5, 7)
    with pytest.raises(CourseError) as err:
        model.load_weights(state)
    message = str(err.value)
    assert name in message and "(5, 7)" in message and str(tuple(model.state_dict()[name].shape)) in message


def test_invalid_config_is_named():
    with pytest.raises(CourseError, match="n_head=3"):
        ModelConfig(d_model=32, n_head=3)


def test_learned_positions_reject_too_long_input():
    model = random_model(CONFIGS["gpt2"])
    with pytest.raises(CourseError, match="context length 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_relu_ffn_is_the_paper_formula():
    cfg = ModelConfig(d_model=8, n_head=2, n_kv_head=2, d_ff=16, ffn="relu", n_layer=1, vocab_size=11)
    ffn = Transformer(cfg).blocks[0].ffn
    x = torch.randn(2, 3, 8)
    expected = torch.relu(x @ ffn.W_1 + ffn.b_1) @ ffn.W_2 + ffn.b_2
    assert torch.allclose(ffn(x), expected, atol=1e-6)


# ----------------------------------------------------------------------------
# one functional core: attention's arithmetic is written once


# The functions outside reference/functional.py that may write part of attention out by hand: each
# builds a known mistake into it (a variant the checks compare a student's output against). Both only
# tile the key/value heads (k0, k1, k0, k1) and call the core for the rest; the sdpa check's variants
# (attention.py's _attn) rescale the core's scores and need no entry.
MISTAKE_VARIANTS = {("checks/steps/attention.py", "_mha"), ("checks/steps/real_model.py", "_mistaken_attention")}


def _attention_arithmetic(tree):
    """(function, line) of each score matrix (x @ y.transpose(-2, -1)) and each
    repeat of key/value heads along the head axis (repeat_interleave(n, dim=1) / repeat(1, n, ...))."""
    import ast

    found = []

    def visit(node, func):
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Dict):          # {"mistake_...": variant}: a mutant, allowed to differ
            children = [c for k, v in zip(node.keys, node.values) for c in (k, v)
                        if not (isinstance(k, ast.Constant) and str(k.value).startswith("mistake_") and c is v)]
        for child in children:
            if child is None:
                continue
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.BinOp) and isinstance(child.op, ast.MatMult):
                right = child.right
                if (isinstance(right, ast.Call) and isinstance(right.func, ast.Attribute)
                        and right.func.attr == "transpose") or \
                        (isinstance(right, ast.Attribute) and right.attr == "mT"):
                    found.append((name, child.lineno, "score matrix"))
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                attr, args = child.func.attr, child.args
                dims = [k.value for k in child.keywords if k.arg == "dim"] + args[1:2]
                if attr == "repeat_interleave" and any(isinstance(d, ast.Constant) and d.value == 1 for d in dims):
                    found.append((name, child.lineno, "repeat of key/value heads"))
                if attr == "repeat" and len(args) == 4 and isinstance(args[0], ast.Constant) and args[0].value == 1:
                    found.append((name, child.lineno, "tiled key/value heads"))
            visit(child, name)

    visit(tree, None)
    return found


def test_attention_arithmetic_lives_only_in_the_functional_core():
    """The score matrix and the key/value heads' repeat are written once, in
    reference/functional.py; the reference model, the assembled student model and every check call
    it. Only the mistake variants (which must change that arithmetic) write it out."""
    import ast

    package = REPO / "autograde"
    stray = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel == "reference/functional.py":
            continue
        for func, line, what in _attention_arithmetic(ast.parse(path.read_text(encoding="utf-8"))):
            if (rel, func) not in MISTAKE_VARIANTS:
                stray.append(f"{rel}:{line} in {func}: {what}")
    assert not stray, "attention written out outside reference/functional.py:\n" + "\n".join(stray)
    core = _attention_arithmetic(ast.parse((package / "reference/functional.py").read_text(encoding="utf-8")))
    assert {what for _, _, what in core} >= {"score matrix", "repeat of key/value heads"}
