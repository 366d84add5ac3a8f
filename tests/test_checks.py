"""Every registered check: the reference passes (no false failures), every
known mistake fails and is named (no false passes), messages exist in both
languages, and comparisons cannot be fooled."""
import pytest
import torch

from autograde.checks.core import compare_outputs
from autograde.checks.messages import CATALOG, message
from autograde.checks.registry import all_checks
from autograde.checks import runner
from autograde.checks.runner import run_check

CHECKS = all_checks()


def test_every_message_exists_in_both_languages():
    for key, texts in CATALOG.items():
        assert set(texts) >= {"en", "ko"}, key
        assert texts["en"].count("{") == texts["ko"].count("{"), key


@pytest.mark.parametrize("step", sorted(CHECKS))
@pytest.mark.parametrize("hidden", [False, True])
def test_reference_passes(step, hidden, monkeypatch):
    check = CHECKS[step]
    monkeypatch.setattr(check, "forbidden", ())     # the reference may use what students may not
    result = run_check(step, check.reference, hidden=hidden, seed=1234 if hidden else None)
    assert result["passed"], result


def variants(value) -> list:
    """A mutant entry is one function or a list/tuple of variants of the same mistake."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


MUTANTS = [(step, key, i) for step, check in sorted(CHECKS.items()) for key, value in check.mutants.items()
           for i in range(len(variants(value)))]


@pytest.mark.parametrize("step, key, variant", MUTANTS)
def test_known_mistake_fails_and_is_named(step, key, variant, monkeypatch):
    monkeypatch.setattr(CHECKS[step], "forbidden", ())
    monkeypatch.setattr(runner, "LAST_RESULTS", {})    # judged alone: no blame on an earlier test's failure
    result = run_check(step, variants(CHECKS[step].mutants[key])[variant])
    assert not result["passed"]
    assert result["key"] == key, result
    assert key in CATALOG and message(key, "ko") != message(key, "en")


def test_object_equal_to_everything_does_not_pass():
    class Liar:
        def __eq__(self, other):
            return True

    assert not compare_outputs(Liar(), 3).passed
    assert not compare_outputs(Liar(), [1, 2]).passed
    assert not compare_outputs(Liar(), torch.zeros(2)).passed


def test_monkeypatched_allclose_does_not_change_verdicts(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    assert not compare_outputs(torch.ones(3), torch.zeros(3)).passed


def test_nan_and_wrong_shape_are_reported():
    assert compare_outputs(torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, 1.0])).key == "nan_output"
    assert compare_outputs(torch.zeros(2, 3), torch.zeros(3, 2)).key == "wrong_shape"
    assert compare_outputs(torch.zeros(2, dtype=torch.long), torch.zeros(2)).key == "wrong_dtype"


def test_forward_is_also_judged_by_greedy_generation():
    """The assembled model must write the reference's greedy tokens, not only match its logits once."""
    from autograde.checks.steps import ffn

    calls = []

    def right_twice(ids, weights, cfg):                  # right logits for two calls, then reversed
        calls.append(ids.shape)
        logits = ffn._forward(ids, weights, cfg)
        return logits if len(calls) <= 2 else -logits

    result = run_check("ffn.forward", right_twice)
    assert not result["passed"] and result["key"] == "mistake_forward_greedy", result
    assert "greedy generation" in result["case"]
    assert "탐욕적 디코딩" in message(result["key"], "ko", **result["params"])


def test_greedy_judge_stops_at_a_near_tie():
    from autograde.checks.core import Case
    from autograde.checks.steps.ffn import GREEDY_TOKENS, judge_greedy

    def tied(ids):                                       # tokens 0 and 1 tie at every step
        logits = torch.zeros(1, ids.shape[1], 4)
        logits[..., :2] = 5.0
        return logits

    case = Case("tie", (torch.tensor([[2, 3]]),), drive=f"greedy:{GREEDY_TOKENS}")
    assert judge_greedy(case, [1] * GREEDY_TOKENS, tied).passed             # either pick is right
    assert not judge_greedy(case, [1] * (GREEDY_TOKENS - 1), tied).passed   # but the length is not
    assert not judge_greedy(case, "0 1", tied).passed
