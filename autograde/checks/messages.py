"""Feedback messages in English and Korean, looked up by key.

The generic keys live here; each step module (autograde/checks/steps/*.py)
adds its own mistake messages with `register_messages`. Every key must exist
in both languages (a test enforces it). Placeholders use str.format names.

Korean: a particle whose form depends on the last sound of the word before it
(이/가, 을/를, 은/는, 와/과, 으로/로, 이어야/여야 ...) never follows a placeholder,
because the value is not known when the sentence is written; rephrase ("기댓값은
{expected}, 받은 값은 {got}입니다"), follow the placeholder with a noun ("{token}번
토큰을"), or use the neutral form "을(를)". `korean_problems` finds the violations
(tests/test_messages_ko.py runs it over the whole catalogue).
"""
from __future__ import annotations

import re

CATALOG: dict[str, dict[str, str]] = {
    "ok": {"en": "passed", "ko": "통과"},
    "passed_cases": {"en": "{step}: passed ({n} cases)", "ko": "{step}: 통과 (입력 {n}개)"},
    "failed": {"en": "{step}: not yet — {detail}", "ko": "{step}: 통과하지 못했습니다 — {detail}"},
    "case": {"en": "for input {case}: ", "ko": "입력 {case}의 경우: "},
    "not_implemented": {
        "en": "not implemented yet: replace `raise NotImplementedError()` in `{function}` with your code",
        "ko": "아직 구현되지 않았습니다: `{function}` 함수 안의 `raise NotImplementedError()` 줄을 "
              "직접 작성한 코드로 바꾸세요"},
    "missing_function": {
        "en": "there is no function `{function}` yet: run the cell that defines it first",
        "ko": "`{function}` 함수가 아직 없습니다: 이 함수를 정의하는 셀부터 실행하세요"},
    "raised": {"en": "your function raised {error}: {text}", "ko": "함수에서 {error} 예외가 발생했습니다: {text}"},
    "did_not_raise": {"en": "expected your function to raise {error}, but it returned {got}",
                      "ko": "함수가 {error} 예외를 일으켜야 하는데 값을 돌려주었습니다: {got}"},
    "wrong_exception": {"en": "expected {expected}, but your function raised {error}: {text}",
                        "ko": "{expected} 예외가 발생해야 하는데 {error} 예외가 발생했습니다: {text}"},
    "timeout": {"en": "your function took longer than {seconds} s", "ko": "함수가 {seconds}초 안에 끝나지 않았습니다"},
    "forbidden_call": {
        "en": "this step must be written by hand; your function called {name}, which this step does not allow",
        "ko": "이 단계는 직접 구현해야 하는데, 이 단계에서 쓸 수 없는 함수를 호출했습니다: {name}"},
    "wrong_type": {"en": "expected a {expected}, got a {got}",
                   "ko": "돌려준 값의 타입이 다릅니다: 기대한 타입은 {expected}, 받은 타입은 {got}입니다"},
    "wrong_shape": {"en": "expected shape {expected}, got shape {got}",
                    "ko": "모양이 다릅니다: 기대한 모양은 {expected}, 받은 모양은 {got}입니다"},
    "wrong_dtype": {"en": "expected dtype {expected}, got {got}",
                    "ko": "dtype이 다릅니다: 기대한 dtype은 {expected}, 받은 dtype은 {got}입니다"},
    "wrong_dtype_precision": {
        "en": "the values are right only to {got_dtype} precision (largest difference {max_diff}): your function returned a "
              "lower-precision dtype than its float64 input; keep the input's dtype (no .float(), no torch.float32 "
              "tensors made inside)",
        "ko": "값이 {got_dtype} 정밀도까지만 맞습니다 (가장 큰 차이: {max_diff}): float64 입력에 대해 더 낮은 정밀도의 "
              "dtype을 돌려주었습니다. 입력의 dtype을 그대로 유지하세요 (.float()나 안에서 만든 torch.float32 텐서 없이)"},
    "lost_precision": {
        "en": "the values are right only to float32 precision (largest difference {max_diff}): the dtype is float64, "
              "but a step in between computes in float32 (a .float(), a tensor made without dtype=, a cast back with "
              ".to(x.dtype)); keep float64 throughout",
        "ko": "값이 float32 정밀도까지만 맞습니다 (가장 큰 차이: {max_diff}): dtype은 float64이지만 중간 단계가 float32로 "
              "계산합니다 (.float(), dtype= 없이 만든 텐서, 마지막에 .to(x.dtype)로 되돌리기). 처음부터 끝까지 float64를 "
              "유지하세요"},
    "float_for_int": {
        "en": "the value is right but it is a float ({got}); a count must be an int: use // for whole-number division, "
              "or int(...) at the end",
        "ko": "값은 맞지만 float({got})입니다. 개수는 int여야 합니다: 나눗셈에는 //를 쓰거나 마지막에 int(...)로 바꾸세요"},
    "nan_output": {"en": "the output has NaN at index {index}", "ko": "출력의 {index} 위치에 NaN 값이 있습니다"},
    "inf_output": {"en": "the output has inf at index {index}", "ko": "출력의 {index} 위치에 inf 값이 있습니다"},
    "wrong_values": {
        "en": "values differ: at index {index} expected {expected}, got {got} (largest difference {max_diff})",
        "ko": "값이 다릅니다: {index} 위치의 기댓값은 {expected}, 받은 값은 {got}입니다 (가장 큰 차이: {max_diff})"},
    "wrong_length": {"en": "expected {expected} items, got {got}", "ko": "항목 수가 다릅니다: {expected}개를 기대했는데 {got}개입니다"},
    "wrong_keys": {"en": "keys differ: missing {missing}, unexpected {extra}",
                   "ko": "키가 다릅니다: 빠진 키 {missing}, 없어야 할 키 {extra}"},
    "wrong_value": {"en": "expected {expected}, got {got}", "ko": "기댓값은 {expected}, 받은 값은 {got}입니다"},
    "wrong_item": {"en": "{what}[{index}] differs: expected {expected}, got {got}",
                   "ko": "{what}[{index}] 값이 다릅니다: 기댓값은 {expected}, 받은 값은 {got}입니다"},
    "mistake": {"en": "{detail}. Likely cause: {mistake}", "ko": "{detail}. 예상되는 원인: {mistake}"},
    "device": {"en": "Device: {device}", "ko": "장치: {device}"},
    "fallback": {
        "en": "{piece}: your version does not pass its checks yet, so the reference version is used",
        "ko": "{piece}: 직접 작성한 구현이 아직 검사를 통과하지 못해 참고 구현을 대신 사용합니다"},
    "using_yours": {"en": "{piece}: using your version", "ko": "{piece}: 직접 작성한 구현을 사용합니다"},
}


def register_messages(entries: dict[str, dict[str, str]]) -> None:
    for key, texts in entries.items():
        if key in CATALOG and CATALOG[key] != texts:
            raise ValueError(f"message key {key!r} is defined twice")
        CATALOG[key] = texts


def message(key: str, lang: str = "en", **params) -> str:
    entry = CATALOG.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry["en"]
    try:
        return text.format(**params)
    except (KeyError, IndexError):
        return text



def both(key: str, sep: str = " / ", **params) -> str:
    """The message in Korean, then in English (one line unless `sep` says otherwise): for what the
    grader says before (or without) knowing the notebook's language (a submission it could not
    read, a link, another assignment's notebook)."""
    return message(key, "ko", **params) + sep + message(key, "en", **params)

# particles whose form depends on the sound before them, longest first
_VARIABLE_PARTICLES = ("이어야", "이었", "이라는", "이라고", "이란", "이랑", "이며", "이나", "이다", "이고", "이야",
                       "으로", "여야", "였", "라는", "라고", "란", "랑", "며", "나", "다", "고", "야",
                       "이", "가", "을", "를", "은", "는", "와", "과", "로")
# the neutral spellings that are right after any value
_NEUTRAL = ("을(를)", "를(을)", "이(가)", "가(이)", "은(는)", "는(은)", "와(과)", "과(와)", "(으)로", "(이)라는",
            "(이)라고", "(이)어야", "(이)다")
_AFTER_PLACEHOLDER = re.compile(r"(?<!\{)\{[A-Za-z_][A-Za-z0-9_]*(?:![rsa])?(?::[^{}]*)?\}[`'\"’”)\]]*")
# phrases that read as word-for-word translations
LITERAL_PHRASES = ("아직 아닙니다", "예외가 났습니다", "가장 그럴듯한", "짐작되는 원인", "사례에서")


def korean_problems(text: str) -> list[str]:
    """What a native reader would trip over in one Korean message: a value-dependent particle
    right after a {placeholder} (or after the quote or bracket that closes it), and the
    literal phrases listed above. Returns one line per problem."""
    problems = []
    for match in _AFTER_PLACEHOLDER.finditer(text):
        rest = text[match.end():]
        if rest.startswith(_NEUTRAL):
            continue
        for particle in _VARIABLE_PARTICLES:
            if rest.startswith(particle):
                problems.append(f"particle {particle!r} after {match.group()!r}: its form depends on the value")
                break
    problems += [f"literal phrase {phrase!r}" for phrase in LITERAL_PHRASES if phrase in text]
    return problems
