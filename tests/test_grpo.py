"""The reference GRPO (autograde/reference/grpo.py): its loss is the paper's, its run is deterministic and
learns, its committed starting model and results are current."""
import json
import math

import pytest
import torch

from autograde.errors import CourseError
from autograde.reference import grpo as G

RUN = json.loads((G.GRPO_DIR / G.RUN_FILE).read_text())
SFT_LOG = json.loads((G.GRPO_DIR / G.SFT_LOG_FILE).read_text())


def deepseekmath_objective(logp, old, ref, adv, lengths, eps, beta, per_token_batch=False):
    """GRPO's objective as DeepSeekMath writes it (eq. 3 with the k3 KL of eq. 4), scalar by scalar:
    J = 1/G sum_i 1/|o_i| sum_t [min(r A_i, clip(r, 1-eps, 1+eps) A_i) - beta (q/p - log(q/p) - 1)],
    r = pi/pi_old, q/p = pi_ref/pi. per_token_batch: sum over all tokens / their number instead (DAPO)."""
    per_seq, total, count = [], 0.0, 0
    for i, n in enumerate(lengths):
        terms = []
        for t in range(n):
            r = math.exp(logp[i][t] - old[i][t])
            clipped = min(max(r, 1 - eps), 1 + eps)
            q_over_p = math.exp(ref[i][t] - logp[i][t])
            terms.append(min(r * adv[i], clipped * adv[i]) - beta * (q_over_p - math.log(q_over_p) - 1))
        per_seq.append(sum(terms) / n)
        total, count = total + sum(terms), count + n
    return total / count if per_token_batch else sum(per_seq) / len(per_seq)


def test_loss_is_the_deepseekmath_objective_worked_by_hand():
    # two completions of one prompt: 3 and 2 tokens, then padding (masked, filled with junk)
    logp = [[-0.5, -1.0, -0.2, 9.0], [-2.0, -0.1, 7.0, 7.0]]
    old = [[-0.7, -1.0, -0.9, 0.0], [-1.5, -0.3, 0.0, 0.0]]   # ratios e^0.2, 1, e^0.7 | e^-0.5, e^0.2
    ref = [[-0.6, -1.2, -0.3, 0.0], [-1.8, -0.1, 0.0, 0.0]]
    adv, lengths, eps, beta = [1.0, -1.0], [3, 2], 0.2, 0.04
    # one token by hand: i=0, t=2: r = e^0.7 = 2.0138 is clipped to 1.2 (A > 0), q/p = e^-0.1 = 0.904837,
    # k3 = 0.904837 + 0.1 - 1 = 0.004837, term = 1.2 - 0.04 * 0.004837 = 1.199807
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    args = (torch.tensor(logp), torch.tensor(old), torch.tensor(ref), torch.tensor(adv), mask)
    for normalization, per_token in (("sequence", False), ("token", True)):
        expected = -deepseekmath_objective(logp, old, ref, adv, lengths, eps, beta, per_token)
        got = G.grpo_loss(*args, clip_eps=eps, beta=beta, normalization=normalization)
        assert float(got) == pytest.approx(expected, abs=1e-6), normalization
    assert float(G.grpo_loss(*args, normalization="sequence")) != pytest.approx(
        float(G.grpo_loss(*args, normalization="token")), abs=1e-3)     # the choice matters


def test_gradient_is_the_policy_gradient_when_the_ratio_is_one():
    """At the sampling policy (ratio 1, mu = 1) the surrogate's gradient is A * grad log pi, and the
    gradient flows through logp only (old_logp is a constant)."""
    logp = torch.tensor([[-0.5, -1.0], [-2.0, -0.1]], requires_grad=True)
    mask, adv = torch.ones(2, 2), torch.tensor([1.0, -1.0])
    loss = G.grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, beta=0.0, normalization="token")
    loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None].expand(2, 2) / 4)


def test_logprobs_and_mask_line_up():
    ids = torch.tensor([G.encode("23+45=68") + [G.END_ID, G.PAD_ID, G.PAD_ID],
                        G.encode("99+99=1981") + [G.PAD_ID]])
    mask = G.completion_mask(ids, G.PROMPT_LEN)
    assert mask.tolist() == [[0] * 5 + [1, 1, 1, 0, 0], [0] * 5 + [1, 1, 1, 1, 1]]    # a completion that never ends
    logits = torch.randn(2, ids.shape[1], len(G.VOCAB))
    lp = G.token_logprobs(logits, ids)
    assert lp.shape == mask.shape
    assert float(lp[0, 5]) == pytest.approx(float(torch.log_softmax(logits[0, 5], -1)[G.STOI["6"]]))


def test_kl_k3_is_non_negative_and_zero_at_the_reference():
    p = torch.randn(50)
    assert (G.kl_k3(p, p) == 0).all()
    assert (G.kl_k3(p, p + torch.randn(50)) >= 0).all()


def test_group_sampling_is_grouped_bounded_and_seeded():
    model = G.load_start_model()
    prompts = G.prompt_batch([(23, 45), (99, 99)])
    a = G.sample_group(model, prompts, 4, 1.0, generator=torch.Generator().manual_seed(0))
    b = G.sample_group(model, prompts, 4, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape[0] == 8 and a.shape[1] <= G.PROMPT_LEN + G.MAX_NEW_TOKENS
    assert torch.equal(a[:4, :G.PROMPT_LEN], prompts[:1].expand(4, -1))


def test_bad_input_is_named():
    with pytest.raises(CourseError, match="group of 1"):
        G.check_step_inputs(torch.zeros(3, 1), [(1, 2)] * 3, 1)
    with pytest.raises(CourseError, match=r"shape \(8,\)"):
        G.check_step_inputs(torch.zeros(8), [(1, 2)] * 2, 4)
    with pytest.raises(CourseError, match="not finite: kl"):
        G.finite_or_raise({"surrogate": torch.tensor(1.0), "kl": torch.tensor(float("nan"))}, 3)
    with pytest.raises(CourseError, match="normalization"):
        G.grpo_loss(*[torch.zeros(1, 1)] * 3, torch.zeros(1), torch.ones(1, 1), normalization="batch")


def test_committed_run_meets_the_target():
    """pass@1 on held-out problems rose by at least 40 points, within 3 min of the process's CPU time."""
    assert RUN["pass_at_1_before"] == SFT_LOG["pass_at_1_held_out"]
    assert 0.15 <= RUN["pass_at_1_before"] <= 0.4
    assert RUN["pass_at_1_after"] - RUN["pass_at_1_before"] >= 0.40
    assert RUN["rl_cpu_seconds"] <= 180
    assert len(RUN["pass_at_k_before"]) == len(RUN["pass_at_k_after"]) == RUN["settings"]["pass_k_n"]


def test_short_run_is_deterministic_and_improves_pass_at_1():
    """The bench's short run (40 steps), recomputed: every logged number the same, and pass@1 on held-out
    problems already higher than the starting model's."""
    record = RUN["short_record"]
    _, log = G.run_grpo(G.GRPOSettings(**record["settings"]), progress=False, pass_k=False)
    assert len(log["history"]) == len(record["history"])
    for got, want in zip(log["history"], record["history"]):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), (want["step"], key)
    assert log["pass_at_1_after"] >= log["pass_at_1_before"] + 0.05


@pytest.mark.slow
def test_committed_start_model_is_current(tmp_path):
    """`course grpo-start` rebuilds the shipped weights (same settings, same seed, one thread)."""
    from safetensors.torch import load_file

    log = G.build_start_model(tmp_path)
    assert log["pass_at_1_held_out"] == SFT_LOG["pass_at_1_held_out"]
    assert log["final_loss"] == pytest.approx(SFT_LOG["final_loss"], abs=1e-4)
    fresh, shipped = load_file(str(tmp_path / G.WEIGHTS_FILE)), load_file(str(G.GRPO_DIR / G.WEIGHTS_FILE))
    assert fresh.keys() == shipped.keys()
    for name in shipped:
        assert torch.allclose(fresh[name], shipped[name], atol=1e-4), name



def test_chapter_quotes_the_committed_run():
    """Chapter 9's numbers about the run are the committed run's, in both languages."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "course"
    k = RUN["settings"]["pass_k_n"]
    numbers = [f"{RUN['pass_at_1_before']:.1%}", f"{RUN['pass_at_1_after']:.1%}",
               f"{RUN['pass_at_k_before'][0]:.1%}", f"{RUN['pass_at_k_after'][0]:.1%}",
               f"{RUN['pass_at_k_before'][k - 1]:.1%}", f"{RUN['pass_at_k_after'][k - 1]:.1%}",
               f"{RUN['never_solved_before']}", f"{RUN['never_solved_after']}", f"{RUN['rl_cpu_seconds']:.0f}",
               f"{RUN['settings']['steps']}", f"{RUN['settings']['held_out']}", f"{RUN['settings']['pass_k_problems']}"]
    for lang in ("en", "ko"):
        text = (root / lang / "chapters" / "09-reasoning-models.md").read_text(encoding="utf-8")
        section = text[text.index("{#grpo-tiny-run}"):text.index("{#what-rl-teaches}")]
        assert '--8<-- "figures/grpo-results.md"' in section
        missing = [n for n in numbers if n not in section]
        assert not missing, (lang, missing)
