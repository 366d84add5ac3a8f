"""Notebook 4: each mistake listed in autograde/checks/steps/ffn.py, written the way a student would
write it (not by calling the check's mutant), fails and is named by its own message key, on the
visible cases and on the hidden cases of several seeds."""
import math

import pytest
import torch
import torch.nn.functional as F

from autograde.checks.messages import CATALOG, message
from autograde.checks.runner import run_check
from autograde.checks.steps import ffn
from autograde.reference.model import rope_cos_sin

SEEDS = (1, 2, 3)


def assert_named(step, fn, key, visible=True, seeds=SEEDS):
    result = run_check(step, fn)
    if visible:
        assert not result["passed"] and result["key"] == key, result
    else:
        assert result["passed"], result
    for seed in seeds:
        result = run_check(step, fn, hidden=True, seed=seed)
        assert not result["passed"] and result["key"] == key, result
    assert message(key, "ko") != message(key, "en")


# ----------------------------------------------------------------------------
# 1. ReLU FFN


def relu_ffn_with(b1="in", b2=True, relu_out=False, act=torch.relu):
    def relu_ffn(x, W_1, b_1, W_2, b_2):
        h = x @ W_1
        if b1 == "in":
            h = h + b_1
        h = act(h)
        if b1 == "after":
            h = h + b_1
        out = h @ W_2
        if b2:
            out = out + b_2
        return torch.relu(out) if relu_out else out
    return relu_ffn


def relu_ffn_first_sequence(x, W_1, b_1, W_2, b_2):
    out = torch.zeros_like(x)
    for i in range(1):                                                 # meant range(len(x))
        out[i] = torch.relu(x[i] @ W_1 + b_1) @ W_2 + b_2
    return out


CASES = [
    ("ffn.relu_ffn", relu_ffn_with(b1=None, b2=False), "mistake_ffn_no_bias", True),
    ("ffn.relu_ffn", relu_ffn_with(b1=None), "mistake_ffn_no_bias_1", True),
    ("ffn.relu_ffn", relu_ffn_with(b2=False), "mistake_ffn_no_bias_2", True),
    ("ffn.relu_ffn", relu_ffn_with(b1="after"), "mistake_ffn_bias_after_relu", True),
    ("ffn.relu_ffn", relu_ffn_with(relu_out=True), "mistake_ffn_relu_output", True),
    ("ffn.relu_ffn", relu_ffn_with(act=F.gelu), "mistake_ffn_wrong_activation", True),
    ("ffn.relu_ffn", relu_ffn_first_sequence, "mistake_batch_first_row", True),
]


# ----------------------------------------------------------------------------
# 2. GELU and SwiGLU


def gelu_with(half=0.5, coef=0.044715, power=3, root=True, tanh=torch.tanh):
    def gelu(z):
        c = math.sqrt(2 / math.pi) if root else 2 / math.pi
        return half * z * (1 + tanh(c * (z + coef * z ** power)))
    return gelu


def tanh_by_hand(u):
    return (torch.exp(2 * u) - 1) / (torch.exp(2 * u) + 1)


def tanh_by_hand_2(u):
    return (torch.exp(u) - torch.exp(-u)) / (torch.exp(u) + torch.exp(-u))


CASES += [
    ("ffn.gelu", lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2))), "mistake_gelu_erf", True),
    ("ffn.gelu", gelu_with(half=1.0), "mistake_gelu_half", True),
    ("ffn.gelu", gelu_with(coef=0.0), "mistake_gelu_cubic", True),
    ("ffn.gelu", gelu_with(power=2), "mistake_gelu_power", True),
    ("ffn.gelu", gelu_with(root=False), "mistake_gelu_sqrt", True),
    ("ffn.gelu", gelu_with(coef=0.44715), "mistake_gelu_constant", True),          # the weight ten times too big
    ("ffn.gelu", lambda z: z * torch.sigmoid(1.702 * z), "mistake_gelu_sigmoid", True),
    ("ffn.gelu", gelu_with(tanh=tanh_by_hand), "mistake_gelu_tanh_overflow", True),
    ("ffn.gelu", gelu_with(tanh=tanh_by_hand_2), "mistake_gelu_tanh_overflow", True),
]


def swiglu_with(gate_act=F.silu, up_act=None, after=False):
    def swiglu_ffn(x, W_gate, W_up, W_down):
        a, b = x @ W_gate, x @ W_up
        if after:
            return F.silu(a * b) @ W_down
        if up_act is not None:
            return (a * up_act(b)) @ W_down
        return (gate_act(a) * b) @ W_down
    return swiglu_ffn


def swiglu_first_sequence(x, W_gate, W_up, W_down):
    x0 = x[0] if x.dim() == 3 else x
    out = (F.silu(x0 @ W_gate) * (x0 @ W_up)) @ W_down
    return out.expand_as(x)


CASES += [
    ("ffn.swiglu", swiglu_with(up_act=F.silu), "mistake_swiglu_swapped", True),
    ("ffn.swiglu", swiglu_with(gate_act=torch.sigmoid), "mistake_swiglu_sigmoid", True),
    ("ffn.swiglu", swiglu_with(gate_act=lambda a: a), "mistake_swiglu_no_activation", True),
    ("ffn.swiglu", swiglu_with(gate_act=F.gelu), "mistake_swiglu_wrong_activation", True),
    ("ffn.swiglu", swiglu_with(gate_act=torch.relu), "mistake_swiglu_wrong_activation", True),
    ("ffn.swiglu", swiglu_with(after=True), "mistake_swiglu_silu_after_product", True),
    ("ffn.swiglu", swiglu_first_sequence, "mistake_batch_first_row", True),
]


# ----------------------------------------------------------------------------
# 3. RMSNorm


def good_rms_norm(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rms_norm_first_sequence(x, weight, eps):
    out = torch.zeros_like(x)
    out[0] = good_rms_norm(x[0], weight, eps)                         # the loop over the batch went missing
    return out


CASES += [
    ("ffn.rms_norm", lambda x, w, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True)) * w,
     "mistake_rmsnorm_no_eps", True),
    ("ffn.rms_norm", lambda x, w, eps: (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + eps) * w, "mistake_rmsnorm_mean", True),
    ("ffn.rms_norm", lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w,
     "mistake_rmsnorm_eps_outside", True),
    ("ffn.rms_norm", lambda x, w, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps),
     "mistake_rmsnorm_no_weight", True),
    ("ffn.rms_norm", lambda x, w, eps: x / torch.sqrt((x ** 2).mean() + eps) * w, "mistake_rmsnorm_axis", True),
    ("ffn.rms_norm", lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True) + eps) * w, "mistake_rmsnorm_no_sqrt",
     True),
    ("ffn.rms_norm", lambda x, w, eps: w * x / (x.norm(dim=-1, keepdim=True) + eps), "mistake_rmsnorm_norm", True),
    ("ffn.rms_norm", rms_norm_first_sequence, "mistake_batch_first_row", True),
]


# ----------------------------------------------------------------------------
# 4. the block (notebook 4 gives the students the reference multi-head attention)


def attention(h, w, cfg, cos, sin):
    return ffn._attention(h, w, cfg, cos, sin)


def swiglu(h, w):
    return (F.silu(h @ w["ffn.W_gate"]) * (h @ w["ffn.W_up"])) @ w["ffn.W_down"]


def block_with(kind="pre"):
    def transformer_block(x, w, cfg, cos, sin):
        eps = cfg["norm_eps"]
        n1, n2 = w["norm1.weight"], w["norm2.weight"]
        if kind == "post":
            x = good_rms_norm(x + attention(x, w, cfg, cos, sin), n1, eps)
            return good_rms_norm(x + swiglu(x, w), n2, eps)
        if kind == "swapped":
            n1, n2 = n2, n1
        if kind == "parallel":
            return x + attention(good_rms_norm(x, n1, eps), w, cfg, cos, sin) + swiglu(good_rms_norm(x, n2, eps), w)
        h = good_rms_norm(x, n1, eps) if kind != "no_norm" else x
        if kind == "no_residual":
            x = attention(h, w, cfg, cos, sin)
        elif kind == "from_norm":
            x = h + attention(h, w, cfg, cos, sin)
        else:
            x = x + attention(h, w, cfg, cos, sin)
        h = good_rms_norm(x, n2, eps) if kind != "no_norm" else x
        return x + swiglu(h, w) if kind != "from_norm" else h + swiglu(h, w)
    return transformer_block


def block_first_sequence(x, w, cfg, cos, sin):
    one = block_with()(x[0].unsqueeze(0), w, cfg, cos, sin)
    return one.repeat(x.shape[0], 1, 1)


BLOCK_CASES = [
    ("ffn.block", block_with("post"), "mistake_block_post_norm", True),
    ("ffn.block", block_with("no_residual"), "mistake_block_no_residual", True),
    ("ffn.block", block_with("from_norm"), "mistake_block_residual_from_norm", True),
    ("ffn.block", block_with("no_norm"), "mistake_block_no_norm", True),
    ("ffn.block", block_with("parallel"), "mistake_block_parallel", True),
    ("ffn.block", block_with("swapped"), "mistake_block_norms_swapped", True),
    ("ffn.block", block_first_sequence, "mistake_batch_first_row", True),
]


# ----------------------------------------------------------------------------
# 5. the forward pass


def layer(weights, i):
    return {k[len(f"blocks.{i}."):]: v for k, v in weights.items() if k.startswith(f"blocks.{i}.")}


_TABLES = {}


def forward_with(final_norm=True, rope=True, softmax=False, scale_emb=False, same_layer=False, last_only=False,
                 rope_buffer=None, transpose=True, flat=False):
    def forward(ids, weights, cfg):
        B, T = ids.shape
        D = cfg["d_model"] // cfg["n_head"]
        x = weights["tok_emb"][ids] if not flat else weights["tok_emb"][ids.view(-1)].view(B, T, -1)
        if scale_emb:
            x = x * math.sqrt(cfg["d_model"])
        if rope_buffer:                                                # "computed once, for the longest input"
            key = (D, cfg["rope_theta"])
            if key not in _TABLES:
                _TABLES[key] = rope_cos_sin(torch.arange(rope_buffer)[None], D, cfg["rope_theta"])
            cos, sin = (t[:, :T] for t in _TABLES[key])
        elif rope:
            cos, sin = rope_cos_sin(torch.arange(T)[None], D, cfg["rope_theta"])
        else:
            cos, sin = torch.ones(1, T, D), torch.zeros(1, T, D)
        cos, sin = cos[:, None], sin[:, None]
        for i in range(cfg["n_layer"]):
            x = block_with()(x, layer(weights, 0 if same_layer else i), cfg, cos, sin)
        if final_norm:
            x = good_rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])
        logits = x @ weights["tok_emb"].T if transpose else x @ weights["tok_emb"]
        if last_only:
            logits = logits[:, -1, :]
        return torch.softmax(logits, dim=-1) if softmax else logits
    return forward


def forward_first_sequence(ids, weights, cfg):
    one = forward_with()(ids[:1], weights, cfg)
    return one.expand(ids.shape[0], -1, -1)


FORWARD_CASES = [
    ("ffn.forward", forward_with(final_norm=False), "mistake_forward_no_final_norm", True),
    ("ffn.forward", forward_with(rope=False), "mistake_forward_no_rope", True),
    ("ffn.forward", forward_with(softmax=True), "mistake_forward_probabilities", True),
    ("ffn.forward", forward_with(scale_emb=True), "mistake_forward_scaled_embedding", True),
    ("ffn.forward", forward_with(same_layer=True), "mistake_forward_layers", True),
    ("ffn.forward", forward_with(last_only=True), "mistake_forward_last_position", True),
    ("ffn.forward", forward_with(transpose=False), "mistake_forward_unembedding", True),
    ("ffn.forward", forward_first_sequence, "mistake_batch_first_row", True),
    ("ffn.forward", forward_with(rope_buffer=64), "mistake_fixed_buffer", False),
    ("ffn.forward", forward_with(flat=True), "mistake_view_noncontiguous", False),
]


@pytest.mark.parametrize("step, fn, key, visible", CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_student_mistake_is_named(step, fn, key, visible):
    assert_named(step, fn, key, visible=visible)


@pytest.mark.parametrize("step, fn, key, visible", BLOCK_CASES + FORWARD_CASES,
                         ids=[c[2] for c in BLOCK_CASES + FORWARD_CASES])
def test_student_mistake_in_block_or_forward_is_named(step, fn, key, visible):
    assert_named(step, fn, key, visible=visible, seeds=SEEDS[:2])     # the slowest steps: two seeds


def test_the_greedy_mistake_is_named():
    """Right logits on the first calls, wrong afterwards: only greedy generation shows it."""
    calls = []

    def forward(ids, weights, cfg):
        calls.append(1)
        logits = forward_with()(ids, weights, cfg)
        return logits if ids.shape[1] < 12 else -logits
    result = run_check("ffn.forward", forward)
    assert not result["passed"] and result["key"] == "mistake_forward_greedy", result


def test_every_listed_mistake_has_a_student_test():
    listed = {word for line in ffn.__doc__.split("Mistakes named")[1].splitlines()
              for word in line.replace("/", " ").split() if word.startswith("mistake_")}
    named = {key for _, _, key, _ in CASES + BLOCK_CASES + FORWARD_CASES} | {"mistake_forward_greedy"}
    assert listed <= named, listed - named
    assert listed <= set(CATALOG)


def test_hidden_cases_include_the_extremes():
    from autograde.checks.registry import get_check

    cfg = ffn.model_config()
    for seed in SEEDS:
        for step in ("ffn.relu_ffn", "ffn.swiglu", "ffn.rms_norm", "ffn.block", "ffn.forward"):
            first = [c.args[0] for c in get_check(step).cases(seed, True) if c.drive is None]
            batched = [x for x in first if x.dim() >= 2]
            assert any(x.shape[0] >= 2 and not torch.equal(x[0], x[1]) for x in batched), step
            assert any(x.shape[1] == 1 for x in batched if x.dim() == 3 or step == "ffn.forward"), step
            assert any(not x.is_contiguous() for x in first), step
            if step != "ffn.forward":
                assert any(x.dtype == torch.float64 for x in first), step
            if step in ("ffn.block", "ffn.forward"):
                assert max(x.shape[1] for x in first) == cfg["max_seq_len"], step


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_cases_are_a_pure_function_of_the_seed():
    from autograde.checks.registry import get_check

    for step in ("ffn.relu_ffn", "ffn.gelu", "ffn.swiglu", "ffn.rms_norm", "ffn.block", "ffn.forward"):
        a, b = get_check(step).cases(11, True), get_check(step).cases(11, True)
        assert [(c.label, c.drive) for c in a] == [(c.label, c.drive) for c in b], step
        assert all(same(ca.args, cb.args) for ca, cb in zip(a, b)), step
        assert [c.label for c in get_check(step).cases(12, True)] != [c.label for c in a] or step == "ffn.gelu", step
