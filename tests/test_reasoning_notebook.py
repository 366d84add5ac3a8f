"""Notebook 9 (reasoning): the solution's steps pass on several seeds, correct code written another way
passes, the mistakes students make are named, pass@k agrees with brute-force enumeration, the optional
real-model cell skips cleanly offline (full marks in the grader's sandbox, and the exercise failing cleanly: tests/test_grader.py)."""
import itertools
import math
import re
import socket
import statistics
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import notebook_source
from autograde.checks.registry import get_check
from autograde.checks.runner import LAST_RESULTS, run_check

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "solutions" / "src" / "09_reasoning.py"
STEPS = ("extract_answer", "majority_vote", "pass_at_k", "reward", "group_advantages")


def cells_of(kind: str) -> list[tuple[str, str]]:
    return notebook_source.cells_of(SOURCE, kind)


SOL = notebook_source.solution_namespace(SOURCE, {"math": math, "re": re, "torch": torch, "Counter": Counter,
                                                  "FORMAT_REWARD": 0.1})


def key(step, fn, hidden=False, seed=None):
    LAST_RESULTS.clear()                  # each call judged alone, not blamed on an earlier test
    return run_check(f"reasoning.{step}", fn, hidden=hidden, seed=seed)["key"]


def with_solution(**names):
    """A namespace like the notebook's, with some of the solution's functions replaced."""
    return {**SOL, **names}


# ----------------------------------------------------------------------------
# the solution passes, visible and hidden, several seeds


@pytest.mark.parametrize("step", STEPS)
def test_the_solution_passes_visible_and_hidden_cases(step):
    assert key(step, SOL[step]) == "ok"
    for seed in (1, 2, 3, 4, 5, 6):
        result = run_check(f"reasoning.{step}", SOL[step], hidden=True, seed=seed)
        assert result["passed"], result


def _describe(cases):
    return [(c.label, repr(c.args), repr(c.kwargs), c.raises) for c in cases]


@pytest.mark.parametrize("step", STEPS)
def test_cases_are_pure_in_the_seed(step):
    check = get_check(f"reasoning.{step}")
    assert _describe(check.cases(7, True)) == _describe(check.cases(7, True))
    assert _describe(check.cases(7, True)) != _describe(check.cases(8, True))
    assert _describe(check.cases(0, False)) == _describe(check.cases(0, False))


def test_hidden_cases_cover_the_rules():
    """Across a few seeds the hidden completions hold boxes, markers of both languages, signs,
    commas, decimals and answerless texts; the reward groups hold an all-equal row."""
    texts = [c.args[0] for seed in range(6) for c in get_check("reasoning.extract_answer").cases(seed, True)]
    answers = [SOL["extract_answer"](t) for t in texts]
    assert any("\\boxed" in t for t in texts) and any("답" in t for t in texts) and any("ANSWER" in t for t in texts)
    assert any("\u2212" in t for t in texts) and any(re.search(r"\d,\d{3}", t) for t in texts)
    assert None in answers and any(a is not None and a < 0 for a in answers)
    assert any(a is not None and a != int(a) for a in answers)
    rewards = get_check("reasoning.group_advantages").cases(3, True)[0].args[0]
    assert bool((rewards[0] == rewards[0, 0]).all()) and not bool((rewards[1] == rewards[1, 0]).all())


# ----------------------------------------------------------------------------
# pass@k against brute force


def brute_force_pass_at_k(n, c, k):
    """The fraction of all k-subsets of n samples (the first c correct) that hold a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


def test_pass_at_k_matches_exhaustive_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = brute_force_pass_at_k(n, c, k)
                assert math.isclose(SOL["pass_at_k"](n, c, k), float(exact), rel_tol=1e-12, abs_tol=1e-12), (n, c, k)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_exact_binomials(nck):
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert math.isclose(SOL["pass_at_k"](n, c, k), float(exact), rel_tol=1e-9, abs_tol=1e-12)


def test_pass_at_k_edges_and_refusal():
    assert SOL["pass_at_k"](10, 0, 4) == 0.0
    assert SOL["pass_at_k"](10, 8, 3) == 1.0 and SOL["pass_at_k"](7, 1, 7) == 1.0
    assert math.isfinite(SOL["pass_at_k"](100_000, 3, 50_000))
    with pytest.raises(ValueError, match="k <= n"):
        SOL["pass_at_k"](5, 2, 6)


# ----------------------------------------------------------------------------
# correct code written differently


def extract_by_hand(completion):
    boxes = re.findall(r"\\boxed\{([^{}]*)\}", completion)
    if boxes:
        tail = boxes[-1]
    else:
        cuts = [m.end() for m in re.finditer(r"(answer|답)\s*:", completion, flags=re.I)]
        if not cuts:
            return None
        tail = completion[cuts[-1]:]
    m = re.search(r"([-+−]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?", tail)
    if not m:
        return None
    value = float(m.group(2).replace(",", "") + (m.group(3) or ""))
    return -value if m.group(1) in ("-", "−") else value


def vote_with_dict(answers):
    counts, first = {}, {}
    for i, a in enumerate(answers):
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
            first.setdefault(a, i)
    if not counts:
        return None
    return min(counts, key=lambda a: (-counts[a], first[a]))


def vote_with_mode(answers):
    kept = [a for a in answers if a is not None]
    return statistics.mode(kept) if kept else None


def pass_with_comb(n, c, k):
    if k > n:
        raise ValueError("k must not exceed n")
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def reward_with_regex(completion, target):
    m = re.fullmatch(r"\s*<think>((?:(?!</?think>).)*)</think>((?:(?!</?think>).)*)", completion, flags=re.S)
    if not m:
        return 0.0
    answer = SOL["extract_answer"](m.group(2))
    if answer is None:
        return 0.0
    return 1.0 if math.isclose(answer, target, abs_tol=1e-6) else 0.1


def advantages_by_loop(rewards, eps=1e-6):
    out = torch.zeros_like(rewards)
    for p, row in enumerate(rewards):
        if len(set(row.tolist())) == 1:
            continue
        mean = row.sum() / len(row)
        std = ((row - mean) ** 2).mean().sqrt()
        out[p] = (row - mean) / (std + eps)
    return out


@pytest.mark.parametrize("step, fn", [("extract_answer", extract_by_hand), ("majority_vote", vote_with_dict),
                                      ("majority_vote", vote_with_mode), ("pass_at_k", pass_with_comb),
                                      ("reward", reward_with_regex), ("group_advantages", advantages_by_loop)])
def test_correct_variants_pass(step, fn):
    assert key(step, fn) == "ok"
    for seed in (5, 9):
        assert key(step, fn, hidden=True, seed=seed) == "ok"


# ----------------------------------------------------------------------------
# mistakes, written the way a student would write them


def extract_last_number(completion):
    nums = re.findall(r"[-+−]?\d[\d,]*(?:\.\d+)?", completion)
    return float(nums[-1].rstrip(",").replace(",", "").replace("−", "-")) if nums else None


def extract_first_marker(completion):
    boxes = re.findall(r"\\boxed\{([^{}]*)\}", completion)
    region = boxes[-1] if boxes else None
    if region is None:
        m = re.search(r"(?:answer|답)\s*:", completion, re.I)
        if m is None:
            return None
        region = completion[m.end():]
    return SOL["extract_answer"](f"\\boxed{{{region}}}")


def extract_markers_only(completion):
    return SOL["extract_answer"](completion.replace("\\boxed", "\\fbox"))


def extract_fallback(completion):
    found = SOL["extract_answer"](completion)
    if found is None and not re.search(r"(?:answer|답)\s*:", completion, re.I):
        nums = re.findall(r"\d+", completion)
        return float(nums[-1]) if nums else None
    return found


def _extract_with(number):
    def extract(completion):
        boxes = re.findall(r"\\boxed\{([^{}]*)\}", completion)
        if boxes:
            region = boxes[-1]
        else:
            marks = list(re.finditer(r"(?:answer|답)\s*:", completion, re.I))
            if not marks:
                return None
            region = completion[marks[-1].end():]
        m = re.search(number, region)
        return float(m.group().replace(",", "").replace("−", "-")) if m else None
    return extract


def extract_string(completion):
    found = SOL["extract_answer"](completion)
    return None if found is None else f"{found:g}"


def extract_english_marker(completion):
    boxes = re.findall(r"\\boxed\{([^{}]*)\}", completion)
    if boxes:
        return _extract_with(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")(completion)
    parts = completion.split("Answer:")
    if len(parts) == 1:
        return None
    return _extract_with(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")("Answer:" + parts[-1])


def vote_counts_none(answers):
    return Counter(answers).most_common(1)[0][0] if answers else None


def vote_set_max(answers):
    kept = [a for a in answers if a is not None]
    return max(sorted(set(kept)), key=kept.count) if kept else None


def vote_statistics_mode(answers):
    return statistics.mode([a for a in answers if a is not None])


def vote_returns_count(answers):
    kept = Counter(a for a in answers if a is not None)
    return kept.most_common(1)[0][1] if kept else None


def pass_naive(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return 1 - (1 - c / n) ** k


def pass_one(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return c / n


def _gamma_comb(a, b):
    return math.gamma(a + 1) / (math.gamma(b + 1) * math.gamma(a - b + 1))


def pass_gamma(n, c, k):
    if k > n:
        raise ValueError("k > n")
    if n - c < k:
        return 1.0
    return 1 - _gamma_comb(n - c, k) / _gamma_comb(n, k)


def pass_gamma_no_edge(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return 1 - _gamma_comb(n - c, k) / _gamma_comb(n, k)


def pass_no_refusal(n, c, k):
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_off_by_one(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c, n))


def pass_all_correct(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return math.comb(c, k) / math.comb(n, k)


def _reward_parts(completion):
    text = completion.strip()
    ok = text.startswith("<think>") and text.count("<think>") == 1 and text.count("</think>") == 1
    return ok, SOL["extract_answer"](text.split("</think>")[-1])


def reward_reads_everything(completion, target):
    ok, _ = _reward_parts(completion)
    answer = SOL["extract_answer"](completion)
    if not ok or answer is None:
        return 0.0
    return 1.0 if answer == target else 0.1


def reward_correct_is_enough(completion, target):
    ok, answer = _reward_parts(completion)
    if answer is not None and answer == target:
        return 1.0
    return 0.1 if ok and answer is not None else 0.0


def reward_all_or_nothing(completion, target):
    ok, answer = _reward_parts(completion)
    return 1.0 if ok and answer == target else 0.0


def reward_loose(completion, target):
    ok = "<think>" in completion and "</think>" in completion
    answer = SOL["extract_answer"](completion.split("</think>")[-1])
    if not ok or answer is None:
        return 0.0
    return 1.0 if answer == target else 0.1


def reward_partial_for_any_answer(completion, target):
    ok, answer = _reward_parts(completion)
    if answer is None:
        return 0.0
    return 1.0 if ok and answer == target else 0.1


def reward_partial_for_tags(completion, target):
    ok, answer = _reward_parts(completion)
    if not ok:
        return 0.0
    return 1.0 if answer == target else 0.1


def adv_torch_std(rewards, eps=1e-6):
    adv = (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + eps)
    return torch.where((rewards == rewards[:, :1]).all(-1, keepdim=True), 0.0, adv)


def adv_whole_batch(rewards, eps=1e-6):
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + eps)


def adv_columns(rewards, eps=1e-6):
    mean = rewards.mean(0, keepdim=True)
    std = rewards.std(0, unbiased=False, keepdim=True)
    equal = (rewards == rewards[:1]).all(0, keepdim=True)
    return torch.where(equal, 0.0, (rewards - mean) / (std + eps))


def adv_centred_only(rewards, eps=1e-6):
    return rewards - rewards.mean(-1, keepdim=True)


def adv_eps_in_sqrt(rewards, eps=1e-6):
    var = ((rewards - rewards.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
    adv = (rewards - rewards.mean(-1, keepdim=True)) / torch.sqrt(var + eps)
    return torch.where((rewards == rewards[:, :1]).all(-1, keepdim=True), 0.0, adv)


def adv_unguarded(rewards, eps=1e-6):
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, unbiased=False, keepdim=True) + eps)


def adv_std_zero_guard(rewards, eps=1e-6):
    std = rewards.std(-1, unbiased=False, keepdim=True)
    adv = (rewards - rewards.mean(-1, keepdim=True)) / (std + eps)
    return torch.where(std == 0, 0.0, adv)


def adv_no_eps(rewards, eps=1e-6):
    return (rewards - rewards.mean(-1, keepdim=True)) / rewards.std(-1, unbiased=False, keepdim=True)


def adv_in_place(rewards, eps=1e-6):
    equal = (rewards == rewards[:, :1]).all(-1, keepdim=True)
    std = rewards.std(-1, unbiased=False, keepdim=True)
    rewards -= rewards.mean(-1, keepdim=True)
    return torch.where(equal, 0.0, rewards / (std + eps))


NUMBER_WITHOUT = {
    "commas": r"[-+−]?\d+(?:\.\d+)?",
    "sign": r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?",
    "unicode_minus": r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?",
    "decimals": r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)",
}


@pytest.mark.parametrize("step, fn, expected", [
    ("extract_answer", extract_last_number, "mistake_extract_last_number"),
    ("extract_answer", extract_first_marker, "mistake_extract_first_marker"),
    ("extract_answer", extract_markers_only, "mistake_extract_ignores_box"),
    ("extract_answer", extract_fallback, "mistake_extract_fallback"),
    ("extract_answer", _extract_with(NUMBER_WITHOUT["commas"]), "mistake_extract_commas"),
    ("extract_answer", _extract_with(NUMBER_WITHOUT["sign"]), "mistake_extract_sign"),
    ("extract_answer", _extract_with(NUMBER_WITHOUT["unicode_minus"]), "mistake_extract_unicode_minus"),
    ("extract_answer", _extract_with(NUMBER_WITHOUT["decimals"]), "mistake_extract_decimals"),
    ("extract_answer", extract_english_marker, "mistake_extract_markers"),
    ("extract_answer", extract_string, "mistake_extract_string"),
    ("majority_vote", vote_counts_none, "mistake_vote_counts_none"),
    ("majority_vote", vote_set_max, "mistake_vote_tie"),
    ("majority_vote", vote_statistics_mode, "mistake_vote_empty"),
    ("majority_vote", vote_returns_count, "mistake_vote_count"),
    ("pass_at_k", pass_naive, "mistake_passk_with_replacement"),
    ("pass_at_k", pass_one, "mistake_passk_pass1"),
    ("pass_at_k", pass_gamma, "mistake_passk_overflow"),
    ("pass_at_k", pass_gamma_no_edge, "mistake_passk_edge"),
    ("pass_at_k", pass_no_refusal, "mistake_passk_k_above_n"),
    ("pass_at_k", pass_off_by_one, "mistake_passk_off_by_one"),
    ("pass_at_k", pass_all_correct, "mistake_passk_all_correct"),
    ("reward", reward_reads_everything, "mistake_reward_reads_thinking"),
    ("reward", reward_correct_is_enough, "mistake_reward_no_format"),
    ("reward", reward_all_or_nothing, "mistake_reward_no_partial"),
    ("reward", reward_loose, "mistake_reward_loose_tags"),
    ("reward", reward_partial_for_any_answer, "mistake_reward_partial_without_format"),
    ("reward", reward_partial_for_tags, "mistake_reward_no_answer"),
    ("group_advantages", adv_torch_std, "mistake_adv_sample_std"),
    ("group_advantages", adv_whole_batch, "mistake_adv_global"),
    ("group_advantages", adv_columns, "mistake_adv_wrong_axis"),
    ("group_advantages", adv_centred_only, "mistake_adv_no_std"),
    ("group_advantages", adv_eps_in_sqrt, "mistake_adv_eps_inside"),
    ("group_advantages", adv_unguarded, "mistake_adv_equal_group"),
    ("group_advantages", adv_std_zero_guard, "mistake_adv_equal_group"),
    ("group_advantages", adv_no_eps, "mistake_adv_equal_group"),
    ("group_advantages", adv_in_place, "mutated_input"),
])
def test_mistakes_are_named(step, fn, expected):
    assert key(step, fn) == expected


@pytest.mark.parametrize("fn, expected", [(adv_torch_std, "mistake_adv_sample_std"),
                                          (adv_unguarded, "mistake_adv_equal_group"),
                                          (adv_whole_batch, "mistake_adv_global")])
def test_hidden_cases_name_the_same_mistakes(fn, expected):
    assert key("group_advantages", fn, hidden=True, seed=11) == expected


def test_the_sample_std_is_named_in_both_languages():
    from autograde.checks.messages import message

    assert "unbiased=False" in message("mistake_adv_sample_std", "en")
    assert "unbiased=False" in message("mistake_adv_sample_std", "ko") and "모표준편차" in message("mistake_adv_sample_std", "ko")


def test_a_reward_that_calls_a_broken_extractor_blames_it():
    """reward depends on extract_answer: with a failing extractor, the feedback says to fix that first."""
    from autograde.checks.runner import run_check as run

    LAST_RESULTS.clear()
    broken = extract_last_number
    run("reasoning.extract_answer", broken, remember=True)

    def reward_on_broken(completion, target):
        text = completion.strip()
        if not text.startswith("<think>") or text.count("<think>") != 1 or text.count("</think>") != 1:
            return 0.0
        answer = broken(text.split("</think>")[1])
        if answer is None:
            return 0.0
        return 1.0 if answer == target else 0.1

    result = run("reasoning.reward", reward_on_broken, remember=True)
    LAST_RESULTS.clear()
    assert not result["passed"] and result["key"] == "dependency_failed", result


# ----------------------------------------------------------------------------
# the optional real-model cell, offline


def test_the_optional_cell_skips_in_one_line_and_never_connects(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("COURSE_REAL_MODEL", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the optional cell tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    body = [b for h, b in cells_of("# %%") if "cached_checkpoint" in b]
    assert len(body) == 1
    ns = {**SOL, "device": torch.device("cpu"), "TEXT": {"no_model": "skipped: {name}", "off": "off"}}
    exec(compile(body[0], str(SOURCE), "exec"), ns)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["skipped: Qwen/Qwen3-0.6B"]
    monkeypatch.setenv("COURSE_REAL_MODEL", "off")
    exec(compile(body[0], str(SOURCE), "exec"), ns)
    assert capsys.readouterr().out.strip().splitlines() == ["off"]


def test_the_optional_cell_runs_a_local_checkpoint(tmp_path, monkeypatch, capsys):
    """With a checkpoint directory (a tiny random Qwen3 with a chat template that knows enable_thinking),
    the cell loads it with the course's loader and prints one row per question and mode."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from test_hf_models import COMMON, train_tokenizer

    torch.manual_seed(0)
    cfg = transformers.Qwen3Config(**COMMON, head_dim=32, rope_theta=1000000.0, tie_word_embeddings=False)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    train_tokenizer(tmp_path, bos=False)
    monkeypatch.setenv("COURSE_REAL_MODEL", str(tmp_path))
    monkeypatch.setenv("COURSE_REAL_MODEL_TOKENS", "12")
    body = [b for h, b in cells_of("# %%") if "cached_checkpoint" in b][0]
    text = {"header": "{mode}|{ok}|{tokens}", "row": "{mode}|{ok}|{tokens}|{q}", "tokens": "tokens",
            "direct": "direct", "thinking": "thinking"}
    exec(compile(body, str(SOURCE), "exec"), {**SOL, "device": torch.device("cpu"), "TEXT": text})
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "||tokens" and len(rows) == 7, rows
    assert [r.split("|")[0] for r in rows[1:]] == ["direct", "thinking"] * 3
    assert all(r.split("|")[1] in ("True", "False") and int(r.split("|")[2]) > 0 for r in rows[1:]), rows


# ----------------------------------------------------------------------------
# holes a student could slip through, closed (each wrong version passed every case before)


def _reward_with(same):
    """The solution's reward, with its own test of whether the answer matches the target."""
    def reward(completion, target):
        text = completion.strip()
        if not text.startswith("<think>") or text.count("<think>") != 1 or text.count("</think>") != 1:
            return 0.0
        answer = SOL["extract_answer"](text.split("</think>")[1])
        if answer is None:
            return 0.0
        return 1.0 if same(answer, target) else 0.1
    return reward


def extract_last_box_with_a_number(completion):
    number = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
    for box in reversed(re.findall(r"\\boxed\{([^{}]*)\}", completion)):
        if number.search(box):
            return float(number.search(box).group().replace(",", "").replace("\u2212", "-"))
    return SOL["extract_answer"](re.sub(r"\\boxed\{[^{}]*\}", "", completion))


def adv_in_float32(rewards, eps=1e-6):
    return SOL["group_advantages"](rewards.float(), eps)


@pytest.mark.parametrize("step, fn, expected", [
    ("reward", _reward_with(lambda a, t: a == t), "wrong_value"),                 # 0.1 + 0.2 is not 0.3
    ("reward", _reward_with(lambda a, t: int(a) == int(t)), "wrong_value"),       # 3.4 is not 3
    ("reward", _reward_with(lambda a, t: round(a) == round(t)), "wrong_value"),
    ("reward", _reward_with(lambda a, t: abs(a - t) < 1e-4), "wrong_value"),       # 6.99999 is not 7
    ("extract_answer", extract_last_box_with_a_number, "mistake_extract_box_with_number"),
    ("group_advantages", adv_in_float32, "wrong_dtype_precision"),   # float64 rewards: right to float32's precision
])
def test_closed_holes_fail(step, fn, expected):
    assert key(step, fn) == expected


@pytest.mark.parametrize("fn", [_reward_with(lambda a, t: int(a) == int(t)), adv_in_float32])
def test_closed_holes_fail_on_hidden_cases_too(fn):
    step = "reward" if fn is not adv_in_float32 else "group_advantages"
    for seed in (1, 2, 3):
        assert key(step, fn, hidden=True, seed=seed) != "ok"


def test_the_tolerance_of_the_reward_is_the_notebooks():
    """1e-6 either way: 6.9999999 counts as 7, 6.99999 does not."""
    assert SOL["reward"]("<think>x</think> Answer: 6.9999999", 7.0) == 1.0
    assert SOL["reward"]("<think>x</think> Answer: 6.99999", 7.0) == 0.1


def _reward_counting(tag):
    """The format test counts only one of the two tags."""
    def reward(completion, target):
        text = completion.strip()
        if not text.startswith("<think>") or text.count(tag) != 1 or "</think>" not in text:
            return 0.0
        answer = SOL["extract_answer"](text.split("</think>")[1])
        if answer is None:
            return 0.0
        return 1.0 if abs(answer - target) <= 1e-6 else 0.1
    return reward


def adv_returns_float64(rewards, eps=1e-6):
    return SOL["group_advantages"](rewards.double(), eps)


@pytest.mark.parametrize("step, fn, expected", [
    ("reward", _reward_counting("<think>"), "mistake_reward_loose_tags"),
    ("reward", _reward_counting("</think>"), "mistake_reward_loose_tags"),
    ("group_advantages", adv_returns_float64, "wrong_dtype"),
])
def test_closed_holes_fail_visible_and_hidden(step, fn, expected):
    assert key(step, fn) == expected
    for seed in (1, 2, 3):
        assert key(step, fn, hidden=True, seed=seed) == expected


def extract_colon_optional(completion):
    """'answer' without its colon taken as a marker: "The answer is probably 12" gives 12."""
    boxes = re.findall(r"\\boxed\{([^{}]*)\}", completion)
    markers = list(re.finditer(r"(?:answer|답)\s*:?", completion, re.IGNORECASE))
    if not boxes and not markers:
        return None
    region = boxes[-1] if boxes else completion[markers[-1].end():]
    found = re.search(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", region)
    return float(found.group().replace(",", "").replace("\u2212", "-")) if found else None


def pass_one_already_at_the_edge(n, c, k):
    if k > n:
        raise ValueError("k > n")
    if n - c <= k:                                       # should be <: at n - c = k one choice has no correct one
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@pytest.mark.parametrize("step, fn, expected", [
    ("extract_answer", extract_colon_optional, "mistake_extract_fallback"),
    ("pass_at_k", pass_one_already_at_the_edge, "mistake_passk_edge_equal"),
])
def test_edges_the_cases_missed_are_named(step, fn, expected):
    assert key(step, fn) == expected


def adv_isclose_guard(rewards, eps=1e-6):
    mean = rewards.mean(-1, keepdim=True)
    advantages = (rewards - mean) / (rewards.std(-1, unbiased=False, keepdim=True) + eps)
    equal = torch.isclose(rewards, rewards[:, :1]).all(-1, keepdim=True)     # not ==: a hair apart counts as equal
    return torch.where(equal, torch.zeros_like(advantages), advantages)


def adv_small_std_guard(rewards, eps=1e-6):
    std = rewards.std(-1, unbiased=False, keepdim=True)
    advantages = (rewards - rewards.mean(-1, keepdim=True)) / (std + eps)
    return torch.where(std < 1e-7, torch.zeros_like(advantages), advantages)


@pytest.mark.parametrize("fn", [adv_isclose_guard, adv_small_std_guard])
def test_a_threshold_instead_of_equality_is_named(fn):
    assert key("group_advantages", fn) == "mistake_adv_threshold"
    for seed in (1, 2, 3):
        assert key("group_advantages", fn, hidden=True, seed=seed) == "mistake_adv_threshold"


def test_the_hair_group_is_exact_in_float32():
    """The case's first group is a hair apart; float32 computes its mean and std exactly, so the solution
    (float32 throughout) gives the reference's advantages, not zeros."""
    from autograde.checks.steps.reasoning import _advantages, _hair_apart

    rewards = _hair_apart(31)
    assert torch.equal(rewards.std(-1, unbiased=False), torch.tensor([2.0 ** -32, 0.5]))
    assert torch.allclose(SOL["group_advantages"](rewards), _advantages(rewards), rtol=1e-6, atol=0)


def test_library_binomials_are_refused_by_the_static_pass_but_math_comb_is_not():
    from autograde.grader.static import analyse

    check = get_check("reasoning.pass_at_k")

    def finding(source):
        names = (*check.forbidden, *check.forbidden_names)
        return analyse([("pass_at_k", source)], [], [(check.step, check.function, names)]).forbidden.get(check.step)

    body = "    if k > n:\n        raise ValueError('k > n')\n    return 1.0 - {comb}(n - c, k) / {comb}(n, k)\n"
    for imports, comb in (("from scipy.special import comb", "comb"), ("import sympy", "sympy.binomial"),
                          ("from scipy import special", "special.binom")):
        found = finding(f"{imports}\n\n\ndef pass_at_k(n, c, k):\n" + body.format(comb=comb))
        assert found is not None and found.what.split(".")[0] in ("scipy", "sympy"), (imports, found)
    assert finding("import math\n\n\ndef pass_at_k(n, c, k):\n" + body.format(comb="math.comb")) is None
