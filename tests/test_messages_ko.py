"""Korean feedback reads as Korean: no particle whose form depends on a value follows a
{placeholder}, and none of the word-for-word phrases a native reader flagged is left."""
import pytest

from autograde.checks.messages import CATALOG, LITERAL_PHRASES, korean_problems, message
from autograde.checks.registry import all_checks

all_checks()        # every step module registers its messages


def test_the_scanner_flags_the_old_catalogue():
    old = {
        "wrong_shape": "모양이 {expected}여야 하는데 {got}입니다",
        "wrong_value": "{expected}이어야 하는데 {got}입니다",
        "wrong_type": "{expected}을 돌려줘야 하는데 {got}가 왔습니다",
        "failed": "{step}: 아직 아닙니다 — {detail}",
        "quoted": "`{name}`를 호출했습니다",
        "instrumental": "{x}로 나누세요",
    }
    for key, text in old.items():
        assert korean_problems(text), key


def test_the_scanner_accepts_neutral_forms_and_invariant_endings():
    fine = ["{expected}을(를) 돌려줘야 하는데 {got}이(가) 왔습니다",
            "기댓값은 {expected}, 받은 값은 {got}입니다",
            "{n}번 중 {token}번 토큰이 {got}번 나왔습니다",
            "출력의 {index} 위치에 NaN 값이 있습니다",
            "{{literal}}가 있습니다",
            "함수가 {seconds}초 안에 끝나지 않았습니다"]
    for text in fine:
        assert korean_problems(text) == [], text


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_every_korean_message_reads_well(key):
    assert korean_problems(CATALOG[key]["ko"]) == [], (key, CATALOG[key]["ko"])


def test_every_literal_phrase_is_gone_from_the_catalogue():
    for key, texts in CATALOG.items():
        for phrase in LITERAL_PHRASES:
            assert phrase not in texts["ko"], (key, phrase)


def test_korean_messages_are_korean_and_differ_from_english():
    for key, texts in CATALOG.items():
        ko = message(key, "ko")
        assert ko != message(key, "en"), key
        assert any("\uac00" <= ch <= "\ud7a3" for ch in ko), key


def test_case_labels_of_notebooks_1_and_4_hold_no_english_words():
    """Case labels appear inside Korean sentences ("입력 ...의 경우"), so the labels of these two
    notebooks are written as code and values, the same in both languages."""
    import re

    words = re.compile(r"\b(?:random|logits|with|the|prompt|tokens?|merges?|text|chapter|real|rows?|draws?|"
                       r"tie|ties|larger|than|vocabulary|corpus|shuffled|allowed|not|greedy|new|of|and|at|place|max)\b")
    for step, check in all_checks().items():
        if not step.startswith(("tokenizer.", "sampling.")):
            continue
        for hidden, seed in ((False, 0), (True, 0), (True, 1)):
            for case in check.cases(seed, hidden):
                code = re.sub(r"'[^']*'|“[^”]*”|\"[^\"]*\"|[A-Za-z_]+\(|[A-Za-z_]+=", "", case.label)
                assert not words.search(code), (step, case.label)


def test_a_case_label_is_shown_once_quoted():
    """A label is code (a string argument keeps its own quotes): the line around it adds none, so a
    Korean student reads 입력 '배'의 경우, never 입력 ''배''에서."""
    from autograde.checks.runner import describe

    result = {"passed": False, "step": "utf8_bytes", "key": "wrong_shape", "params": {"expected": "(3,)", "got": "(1,)"}, "case": "'배'", "n": 3}
    for lang in ("en", "ko"):
        line = describe(result, lang)
        assert "'배'" in line and "''배''" not in line, line
    assert "입력 '배'의 경우" in describe(result, "ko")
