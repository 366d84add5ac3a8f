"""Notebook 6 (training): the solution's steps pass on several seeds, correct code written another way
passes, the known mistakes are named, forbidden shortcuts are refused, the loop follows the reference
training run (full marks in the grader's sandbox, and the exercise failing cleanly: tests/test_grader.py)."""
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from notebook_source import solution_namespace
from autograde.checks.registry import get_check
from autograde.checks.runner import LAST_RESULTS, run_check
from autograde.reference.model import ModelConfig, Transformer

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "solutions" / "src" / "06_training.py"
REFERENCE = REPO / "autograde" / "data" / "reference" / "model.safetensors"
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="the reference model is not trained yet")
STEPS = ("cross_entropy", "perplexity", "get_batch", "lr_schedule", "clip_grad_norm", "adamw_step", "train_model")


SOL = solution_namespace(SOURCE, {"math": math, "torch": torch, "ModelConfig": ModelConfig,
                                  "Transformer": Transformer,
                                  "tqdm": __import__("tqdm.auto", fromlist=["tqdm"]).tqdm})


def key(step, fn, hidden=False, seed=None):
    LAST_RESULTS.clear()                  # each call judged alone, not blamed on an earlier test
    return run_check(f"training.{step}", fn, hidden=hidden, seed=seed)["key"]


# ----------------------------------------------------------------------------
# the solution passes, visible and hidden, several seeds


@pytest.mark.parametrize("step", STEPS)
def test_the_solution_passes_visible_and_hidden_cases(step):
    assert key(step, SOL[step]) == "ok"
    seeds = (1, 2) if step == "train_model" else (1, 2, 3, 4)
    for seed in seeds:
        result = run_check(f"training.{step}", SOL[step], hidden=True, seed=seed)
        assert result["passed"], result


def _flat(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return [torch.tensor(float(value))] if isinstance(value, (int, float)) else []


def _inputs(cases):
    return [x for c in cases for x in _flat(c.args) + _flat(c.kwargs)]


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("step", STEPS)
def test_cases_are_pure_in_the_seed(step):
    check = get_check(f"training.{step}")
    assert _same(_inputs(check.cases(7, True)), _inputs(check.cases(7, True)))
    assert not _same(_inputs(check.cases(7, True)), _inputs(check.cases(8, True)))
    assert _same(_inputs(check.cases(0, False)), _inputs(check.cases(0, False)))


# ----------------------------------------------------------------------------
# correct code written differently


def ce_log_softmax_by_hand(logits, targets, ignore_index=-100):
    z = logits.flatten(0, -2).double()
    y = targets.flatten()
    keep = (y != ignore_index).nonzero()[:, 0]
    z, y = z[keep], y[keep]
    shifted = z - z.amax(-1, keepdim=True)
    logp = shifted - shifted.exp().sum(-1, keepdim=True).log()
    return (-logp[torch.arange(len(y)), y].mean()).to(logits.dtype)


def ppl_as_tensor(logits, targets, ignore_index=-100):
    return torch.exp(ce_log_softmax_by_hand(logits, targets, ignore_index))


def lr_piecewise(step, max_lr, min_lr, warmup, total_steps):
    if step >= total_steps:
        return min_lr
    if step < warmup:
        return (step + 1) * max_lr / warmup
    angle = math.pi * (step - warmup) / (total_steps - warmup)
    return min_lr + (max_lr - min_lr) * (math.cos(angle) + 1) / 2


def clip_with_vector_norm(grads, max_norm):
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale for g in grads], total


def adamw_with_addcdiv(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    b1, b2 = betas
    p = param.clone().mul_(1 - lr * weight_decay)
    m = exp_avg.clone().lerp_(grad, 1 - b1)
    v = exp_avg_sq.clone().mul_(b2).addcmul_(grad, grad, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** step)).add_(eps)
    return p.addcdiv_(m, denom, value=-lr / (1 - b1 ** step)), m, v


def batch_loop(ids, batch_size, seq_len, generator):
    starts = torch.randint(len(ids) - seq_len - 1, (batch_size,), generator=generator)
    return (torch.stack([ids[s:s + seq_len] for s in starts]), torch.stack([ids[s + 1:s + seq_len + 1] for s in starts]))


@pytest.mark.parametrize("step, fn", [("cross_entropy", ce_log_softmax_by_hand), ("perplexity", ppl_as_tensor),
                                      ("lr_schedule", lr_piecewise), ("clip_grad_norm", clip_with_vector_norm),
                                      ("adamw_step", adamw_with_addcdiv), ("get_batch", batch_loop)])
def test_correct_variants_pass(step, fn):
    assert key(step, fn) == "ok"
    assert key(step, fn, hidden=True, seed=5) == "ok"


def test_the_adamw_step_matches_torch_over_several_steps():
    g = torch.Generator().manual_seed(3)
    mine = torch.randn(5, 4, generator=g)
    theirs = torch.nn.Parameter(mine.clone())
    opt = torch.optim.AdamW([theirs], lr=3e-2, betas=(0.9, 0.95), weight_decay=0.2)
    m = v = torch.zeros_like(mine)
    for t in range(1, 21):
        grad = torch.randn(5, 4, generator=g)
        mine, m, v = SOL["adamw_step"](mine, grad, m, v, t, 3e-2, (0.9, 0.95), 1e-8, 0.2)
        theirs.grad = grad
        opt.step()
    assert torch.allclose(mine, theirs.detach(), atol=1e-6)


def test_clipping_matches_torch():
    g = torch.Generator().manual_seed(4)
    params = [torch.nn.Parameter(torch.randn(3, 4, generator=g)) for _ in range(3)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 5
    clipped, norm = SOL["clip_grad_norm"]([p.grad.clone() for p in params], 1.0)
    total = torch.nn.utils.clip_grad_norm_(params, 1.0)
    assert math.isclose(norm, float(total), rel_tol=1e-5)
    assert all(torch.allclose(c, p.grad) for c, p in zip(clipped, params))


# ----------------------------------------------------------------------------
# mistakes, written the way a student would write them


def ce_naive(logits, targets, ignore_index=-100):
    z, y = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = y != ignore_index
    probs = z.exp() / z.exp().sum(-1, keepdim=True)
    return -(probs[keep, y[keep]].log()).mean()


def ce_mean_over_all(logits, targets, ignore_index=-100):
    z, y = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = y != ignore_index
    m = z.max(-1, keepdim=True).values
    lse = m[:, 0] + (z - m).exp().sum(-1).log()
    nll = (lse - z.gather(1, y.clamp(min=0)[:, None])[:, 0]) * keep
    return nll.mean()


def ce_no_mask(logits, targets, ignore_index=-100):
    z, y = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    m = z.max(-1, keepdim=True).values
    lse = m[:, 0] + (z - m).exp().sum(-1).log()
    return (lse - z[torch.arange(len(y)), y]).mean()


def ce_max_over_positions(logits, targets, ignore_index=-100):
    z, y = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = y != ignore_index
    m = z.max(dim=0, keepdim=True).values                      # dim=0: over the positions, not the vocabulary
    lse = m[:, 0] + (z - m).exp().sum(dim=0).log()             # (V,) where (N,) belongs: a shape clash
    picked = z.gather(1, torch.where(keep, y, 0)[:, None])[:, 0]
    return ((lse - picked) * keep).sum() / keep.sum()


def ce_sum(logits, targets, ignore_index=-100):
    return ce_log_softmax_by_hand(logits, targets, ignore_index) * (targets != ignore_index).sum()


def ce_uses_torch(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


def ppl_base2(logits, targets, ignore_index=-100):
    return 2 ** float(SOL["cross_entropy"](logits.double(), targets, ignore_index))


def lr_warmup_from_zero(step, max_lr, min_lr, warmup, total_steps):
    if step < warmup:
        return max_lr * step / warmup
    return SOL["lr_schedule"](step, max_lr, min_lr, warmup, total_steps)


def lr_to_zero(step, max_lr, min_lr, warmup, total_steps):
    return SOL["lr_schedule"](step, max_lr, 0.0, warmup, total_steps)


def lr_unclamped(step, max_lr, min_lr, warmup, total_steps):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    p = (step - warmup) / (total_steps - warmup)
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


def clip_each(grads, max_norm):
    out = [g * min(1.0, max_norm / (float(g.norm()) + 1e-6)) for g in grads]
    return out, math.sqrt(sum(float(g.norm()) ** 2 for g in grads))


def clip_always_rescales(grads, max_norm):
    total = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    return [g * max_norm / total for g in grads], total


def clip_uses_torch(grads, max_norm):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], float(total)


def adam_without_bias_correction(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    b1, b2 = betas
    m = b1 * exp_avg + (1 - b1) * grad
    v = b2 * exp_avg_sq + (1 - b2) * grad ** 2
    return param * (1 - lr * weight_decay) - lr * m / (v.sqrt() + eps), m, v


def adam_l2(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    grad = grad + weight_decay * param
    return SOL["adamw_step"](param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, 0.0)


def adam_uses_torch(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    p = torch.nn.Parameter(param.clone())
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    p.grad = grad
    opt.step()
    return p.detach(), exp_avg, exp_avg_sq


def batch_targets_equal_inputs(ids, batch_size, seq_len, generator):
    x, _ = SOL["get_batch"](ids, batch_size, seq_len, generator)
    return x, x.clone()


def batch_global_rng(ids, batch_size, seq_len, generator):
    torch.manual_seed(123)
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,))
    return (torch.stack([ids[s:s + seq_len] for s in starts]), torch.stack([ids[s + 1:s + seq_len + 1] for s in starts]))


@pytest.mark.parametrize("step, fn, expected", [
    ("cross_entropy", ce_naive, "mistake_ce_unstable"),
    ("cross_entropy", ce_mean_over_all, "mistake_ce_ignored_in_mean"),
    ("cross_entropy", ce_no_mask, "mistake_ce_ignore_index_raised"),
    ("cross_entropy", ce_sum, "mistake_ce_sum"),
    ("cross_entropy", ce_max_over_positions, "mistake_ce_wrong_axis"),
    ("cross_entropy", ce_uses_torch, "forbidden_call"),
    ("perplexity", ppl_base2, "mistake_ppl_base2"),
    ("lr_schedule", lr_warmup_from_zero, "mistake_lr_warmup_zero"),
    ("lr_schedule", lr_to_zero, "mistake_lr_to_zero"),
    ("lr_schedule", lr_unclamped, "mistake_lr_no_clamp"),
    ("clip_grad_norm", clip_each, "mistake_clip_per_tensor"),
    ("clip_grad_norm", clip_always_rescales, "mistake_clip_scales_up"),
    ("clip_grad_norm", clip_uses_torch, "forbidden_call"),
    ("adamw_step", adam_without_bias_correction, "mistake_adam_no_bias_correction"),
    ("adamw_step", adam_l2, "mistake_adam_l2"),
    ("adamw_step", adam_uses_torch, "forbidden_call"),
    ("get_batch", batch_targets_equal_inputs, "mistake_batch_no_shift"),
    ("get_batch", batch_global_rng, "mistake_batch_not_seeded"),
])
def test_mistakes_are_named(step, fn, expected):
    assert key(step, fn) == expected


def test_a_mask_over_a_real_pad_id_is_named():
    """With ignore_index = 0 (a real id) forgetting the mask does not raise: the check still names it."""
    def ce_forgets_the_mask(logits, targets, ignore_index=-100):
        if ignore_index < 0:
            return SOL["cross_entropy"](logits, targets, ignore_index)
        return ce_no_mask(logits, targets, ignore_index)
    assert key("cross_entropy", ce_forgets_the_mask) == "mistake_ce_ignore_not_masked"


def loop_with(**changes):
    """The solution's train_model with one of its lines changed, as a student might."""
    source = re.search(r'kind="solution" id="train_model"\n(.*?)# %% kind="test"', SOURCE.read_text(encoding="utf-8"),
                       re.S).group(1)
    for old, new in changes.items():
        assert old in source, old
        source = source.replace(old, new)
    ns = dict(SOL)
    exec(compile(source, "student", "exec"), ns)
    return ns["train_model"]


@pytest.mark.parametrize("changes, expected", [
    ({"        model.zero_grad(set_to_none=True)\n": ""}, "mistake_train_no_zero_grad"),
    ({'grads, _ = clip_grad_norm([p.grad for p in params], s["clip"])': "grads = [p.grad for p in params]"},
     "mistake_train_no_clip"),
    ({'lr = lr_schedule(step, s["lr"], s["min_lr"], s["warmup"], s["total_steps"])': 'lr = s["lr"]'},
     "mistake_train_no_schedule"),
    ({'decay = s["weight_decay"] if p.dim() >= 2 else 0.0': 'decay = s["weight_decay"]'}, "mistake_train_decay_all"),
    ({"*moments[i], step + 1,": "*moments[i], step,"}, "mistake_train_step_zero"),
    ({"moments[i] = (m, v)": "pass"}, "mistake_train_fresh_moments"),
    ({"for ids in streams.values()]": "for ids in reversed(list(streams.values()))]"}, "mistake_train_batch_order"),
    ({"    params = list(model.parameters())\n": "    params = list(model.parameters())\n    start = {k: v.clone() for k, v in model.state_dict().items()}\n",
      "return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses": "return start, losses"},
     "mistake_train_weights"),
])
def test_loop_mistakes_are_named(changes, expected):
    assert key("train_model", loop_with(**changes)) == expected


def test_the_loop_retraces_the_reference_run():
    """The first step of the notebook's settings give the reference run's logged first loss."""
    from autograde.reference.checkpoint import load_reference
    from autograde.reference.corpus import load_corpus
    from autograde.reference.train import TrainSettings, reference_config, split_streams

    s = TrainSettings()
    train, _, _ = split_streams(load_reference().tokenizer, load_corpus(), s.validation_fraction)
    cfg = reference_config(2048, s.seq_len).to_dict()
    settings = {"steps": 1, "total_steps": s.steps, "batch_size": s.batch_size, "seq_len": s.seq_len, "lr": s.lr,
                "min_lr": s.lr / 10, "warmup": s.warmup, "weight_decay": s.weight_decay, "betas": (0.9, 0.95),
                "eps": 1e-8, "clip": 1.0, "seed": s.seed}
    _, losses = SOL["train_model"](cfg, train, settings)
    log = json.loads((REPO / "autograde" / "data" / "reference" / "train_log.json").read_text())
    assert abs(losses[0] - log["history"][0]["train_loss"]) < 1e-4


# ----------------------------------------------------------------------------
# the loss-curve figure


def test_the_loss_curve_is_drawn_from_the_training_log(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from autograde import figures_training

    log = json.loads((REPO / "autograde" / "data" / "reference" / "train_log.json").read_text(encoding="utf-8"))
    fig = figures_training.loss_curve(log, "ko")
    ax = fig.axes[0]
    assert [len(line.get_xdata()) for line in ax.lines[:3]] == [len(log["history"])] * 3
    assert ax.get_title() == figures_training.LABELS["ko"]["title"]
    assert any(line.get_xdata()[0] == log["best_step"] for line in ax.lines[3:])
    assert figures_training.schedule(0, log["settings"]) == log["settings"]["lr"] / log["settings"]["warmup"]
    from autograde.figures import _pyplot

    written = figures_training.fig_loss_curve(_pyplot(), log, "en", tmp_path / figures_training.FIGURE_NAME)
    assert written.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        figures_training.loss_curve(log, "fr")
