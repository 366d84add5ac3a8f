"""Notebook 9's GRPO steps: the solution passes, the mistakes students make are named (each written the
way a student would), bad input stops the loop with a message in the student's language, and the
notebook's own loop gives the reference run's numbers."""
import math
import re
from collections import Counter

import pytest
import torch

import notebook_source
from autograde.checks.core import set_language
from autograde.checks.runner import LAST_RESULTS, run_check
from autograde.errors import CourseError
from autograde.reference import grpo as G
from autograde.reference.sampling import sample_next
from test_reasoning_notebook import SOURCE

SOL = notebook_source.solution_namespace(SOURCE, {"math": math, "re": re, "torch": torch, "Counter": Counter,
                                                  "FORMAT_REWARD": 0.1, "sample_next": sample_next})
STEPS = ("token_logprobs", "completion_mask", "grpo_loss", "sample_group")


def key(step, fn, hidden=False, seed=None):
    LAST_RESULTS.clear()
    return run_check(f"reasoning.{step}", fn, hidden=hidden, seed=seed)["key"]


@pytest.mark.parametrize("step", STEPS)
def test_the_solution_passes_visible_and_hidden_cases(step):
    assert key(step, SOL[step]) == "ok"
    for seed in (1, 2):
        assert key(step, SOL[step], hidden=True, seed=seed) == "ok"


# ----------------------------------------------------------------------------
# mistakes, written the way a student would write them


def logprobs_no_shift(logits, ids):
    return torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)[:, 1:]


def logprobs_unstable(logits, ids):
    return torch.log(torch.softmax(logits[:, :-1], -1)).gather(-1, ids[:, 1:, None]).squeeze(-1)


def logprobs_probs(logits, ids):
    return torch.softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def mask_with_prompt(ids, prompt_len, end_id):
    mask = SOL["completion_mask"](ids, prompt_len, end_id)
    mask[:, :prompt_len - 1] = 1.0
    return mask


def mask_without_end(ids, prompt_len, end_id):
    seen = (ids[:, prompt_len:] == end_id).long().cumsum(1)
    keep = (seen == 0).float()
    return torch.cat([torch.zeros(ids.shape[0], prompt_len - 1), keep], 1)


def mask_after_end_kept(ids, prompt_len, end_id):
    return torch.cat([torch.zeros(ids.shape[0], prompt_len - 1), torch.ones(ids.shape[0], ids.shape[1] - prompt_len)], 1)


def mask_one_late(ids, prompt_len, end_id):
    full = SOL["completion_mask"](ids, prompt_len, end_id)
    return torch.cat([torch.zeros(ids.shape[0], 1), full[:, :-1]], 1)


def mask_end_searched_from_start(ids, prompt_len, end_id):
    seen = (ids == end_id).long()
    before = (seen.cumsum(1) - seen)[:, 1:]
    mask = (before == 0).float()
    mask[:, :prompt_len - 1] = 0.0
    return mask


def _loss_variant(**change):
    """The solution's loss with one line changed, as a student would get it wrong."""
    def loss(logp, old_logp, ref_logp, advantages, mask, clip_eps=0.2, beta=0.04, normalization="sequence"):
        if normalization not in ("sequence", "token"):
            raise ValueError(normalization)
        old = old_logp if change.get("no_detach") else old_logp.detach()
        ratio = torch.exp(logp - old)
        adv = advantages[:, None] * (-1 if change.get("flip") else 1)
        low = None if change.get("upper_only") else 1 - clip_eps
        clipped = ratio if change.get("no_clip") else torch.clamp(ratio, low, 1 + clip_eps)
        surrogate = torch.minimum(ratio * adv, clipped * adv)
        d = (logp - ref_logp) if change.get("kl_reversed") else (ref_logp - logp)
        kl = torch.exp(d) - d - 1
        objective = surrogate + beta * kl if change.get("kl_plus") else surrogate - beta * kl
        per_token = objective if change.get("no_minus") else -objective
        if change.get("plain_mean"):
            return (per_token * mask).mean(-1).mean() if normalization == "sequence" else (per_token * mask).mean()
        if normalization == "sequence" or change.get("always_sequence"):
            return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
        return (per_token * mask).sum() / mask.sum()
    return loss


def _sample_tiled(model, prompts, group_size, temperature, max_new_tokens, end_id, pad_id, generator):
    ids = prompts.repeat(group_size, 1)                     # tiled: prompt 0, 1, 0, 1, ...
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        token = sample_next(model(ids)[:, -1, :], temperature, generator=generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        ids = torch.cat([ids, token[:, None]], 1)
        done |= token == end_id
        if bool(done.all()):
            break
    return ids


@torch.no_grad()
def sample_no_pad(model, prompts, group_size, temperature, max_new_tokens, end_id, pad_id, generator=None):
    if group_size < 2:
        raise ValueError("group_size < 2")
    ids = prompts.repeat_interleave(group_size, 0)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        token = sample_next(model(ids)[:, -1, :], temperature, generator=generator)
        ids = torch.cat([ids, token[:, None]], 1)
        done |= token == end_id
        if bool(done.all()):
            break
    return ids


@torch.no_grad()
def sample_no_early_stop(model, prompts, group_size, temperature, max_new_tokens, end_id, pad_id, generator=None):
    ids = prompts.repeat_interleave(group_size, 0)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):                          # always max_new_tokens steps
        probs = torch.softmax(model(ids)[:, -1, :].float() / temperature, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        ids = torch.cat([ids, token[:, None]], 1)
        done |= token == end_id
    return ids


@torch.no_grad()
def sample_row_by_row(model, prompts, group_size, temperature, max_new_tokens, end_id, pad_id, generator=None):
    if group_size < 2:
        raise ValueError("group_size < 2")
    rows = []
    for row in prompts.repeat_interleave(group_size, 0):     # each completion on its own
        ids = row[None]
        for _ in range(max_new_tokens):
            probs = torch.softmax(model(ids)[:, -1, :].float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, token], 1)
            if int(token) == end_id:
                break
        rows.append(ids[0])
    width = max(len(r) for r in rows)
    return torch.stack([torch.cat([r, torch.full((width - len(r),), pad_id)]) for r in rows])


@torch.no_grad()
def sample_cold(model, prompts, group_size, temperature, max_new_tokens, end_id, pad_id, generator=None):
    return SOL["sample_group"](model, prompts, group_size, 1.0, max_new_tokens, end_id, pad_id, generator)


@pytest.mark.parametrize("step, fn, expected", [
    ("token_logprobs", logprobs_no_shift, "mistake_logprobs_no_shift"),
    ("token_logprobs", logprobs_unstable, "mistake_logprobs_unstable"),
    ("token_logprobs", logprobs_probs, "mistake_logprobs_probs"),
    ("completion_mask", mask_with_prompt, "mistake_mask_prompt_in_mask"),
    ("completion_mask", mask_without_end, "mistake_mask_end_excluded"),
    ("completion_mask", mask_after_end_kept, "mistake_mask_after_end"),
    ("completion_mask", mask_one_late, "mistake_mask_unaligned"),
    ("completion_mask", mask_end_searched_from_start, "mistake_mask_prompt_end"),
    ("grpo_loss", _loss_variant(no_detach=True), "mistake_grpo_not_detached"),
    ("grpo_loss", _loss_variant(flip=True), "mistake_grpo_sign"),
    ("grpo_loss", _loss_variant(no_minus=True), "mistake_grpo_not_negated"),
    ("grpo_loss", _loss_variant(kl_reversed=True), "mistake_grpo_kl_direction"),
    ("grpo_loss", _loss_variant(kl_plus=True), "mistake_grpo_kl_sign"),
    ("grpo_loss", _loss_variant(plain_mean=True), "mistake_grpo_padded_mean"),
    ("grpo_loss", _loss_variant(upper_only=True), "mistake_grpo_one_side"),
    ("grpo_loss", _loss_variant(no_clip=True), "mistake_grpo_no_clip"),
    ("grpo_loss", _loss_variant(always_sequence=True), "mistake_grpo_normalization"),
    ("sample_group", _sample_tiled, "mistake_group_not_grouped"),
    ("sample_group", sample_no_pad, "mistake_group_no_pad"),
    ("sample_group", sample_cold, "mistake_group_temperature"),
    ("sample_group", sample_no_early_stop, "mistake_group_no_early_stop"),
    ("sample_group", sample_row_by_row, "mistake_group_row_by_row"),
])
def test_mistakes_are_named(step, fn, expected):
    assert key(step, fn) == expected


def test_a_mistake_is_named_in_korean_too():
    set_language("ko")
    try:
        LAST_RESULTS.clear()
        result = run_check("reasoning.grpo_loss", _loss_variant(no_detach=True))
        from autograde.checks.messages import message
        assert "detach" in message(result["key"], "ko") and "기울기" in message(result["key"], "ko")
    finally:
        set_language("en")


# ----------------------------------------------------------------------------
# bad input in the loop: a message in the student's language


@pytest.mark.parametrize("lang, words", [("en", "nothing to compare"), ("ko", "비교할 대상")])
def test_a_group_of_one_is_refused_in_the_students_language(lang, words):
    from autograde import notebook_grpo as guard

    set_language(lang)
    try:
        with pytest.raises(CourseError, match=words):
            guard.check_group(torch.zeros(4, 1), 4, 1)
        with pytest.raises(CourseError, match=r"\(4, 8\)"):
            guard.check_group(torch.zeros(32), 4, 8)
        with pytest.raises(CourseError, match="logp"):
            guard.check_finite(3, torch.tensor(0.0), logp=torch.tensor([0.0, -float("inf")]))
        with pytest.raises(CourseError, match="grpo_loss"):
            guard.check_finite(3, torch.tensor(float("nan")), logp=torch.zeros(2))
        with pytest.raises(CourseError, match="max_new_tokens"):
            guard.check_lengths(torch.zeros(2, 6 + 9), 6, 6)
        assert guard.equal_groups(torch.ones(3, 4), 7) is not None and guard.equal_groups(torch.eye(2), 7) is None
    finally:
        set_language("en")


def test_sample_group_refuses_a_group_of_one():
    assert key("sample_group", lambda *a, **k: SOL["sample_group"](*a, **k) if a[2] > 1 else a[1]) == "did_not_raise"


# ----------------------------------------------------------------------------
# the notebook's loop is the reference run


def test_the_notebooks_loop_gives_the_reference_runs_numbers():
    """The notebook's grpo_step cell with the solution's pieces, 3 steps, against grpo.run_grpo: the same
    rewards, KL, loss and lengths, so that the full run prints the chapter's numbers."""
    body = next(b for _, b in notebook_source.cells_of(SOURCE, "") if "def grpo_step(" in b)
    settings = G.GRPOSettings(steps=3, held_out=50, prompts_per_step=8)
    ns = {**SOL, "G": G, "guard": __import__("autograde.notebook_grpo", fromlist=["x"]), "device": torch.device("cpu"),
          "os": __import__("os"), "COURSE_LANG": "en"}
    exec(compile(body[:body.index("\nif device.type")], str(SOURCE), "exec"), ns)
    ns["s"] = settings
    start = G.load_start_model()
    _, log = G.run_grpo(settings, start=start, progress=False, pass_k=False)
    import copy

    torch.manual_seed(settings.seed)
    policy, reference = copy.deepcopy(start), copy.deepcopy(start).eval()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=settings.lr, betas=(0.9, 0.99), weight_decay=0.0)
    gen, pick = torch.Generator().manual_seed(settings.seed), torch.Generator().manual_seed(settings.seed + 1)
    train, _ = G.split_problems(G.SFTSettings().seed, settings.held_out)
    for want in log["history"][1:]:
        idx = torch.randint(0, len(train), (settings.prompts_per_step,), generator=pick).tolist()
        row, _ = ns["grpo_step"](policy, reference, optimizer, [train[i] for i in idx], gen, want["step"])
        for name in ("reward", "kl", "loss", "length"):
            assert row[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7), (want["step"], name)
