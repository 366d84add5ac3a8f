"""Feedback messages in English and Korean, looked up by key.

The generic keys live here; each step module (autograde/checks/steps/*.py)
adds its own mistake messages with `register_messages`. Every key must exist
in both languages (a test enforces it). Placeholders use str.format names.
"""
from __future__ import annotations

CATALOG: dict[str, dict[str, str]] = {
    "ok": {"en": "passed", "ko": "통과"},
    "passed_cases": {"en": "{step}: passed ({n} cases)", "ko": "{step}: 통과 (사례 {n}개)"},
    "failed": {"en": "{step}: not yet — {detail}", "ko": "{step}: 아직 아닙니다 — {detail}"},
    "case": {"en": "in case '{case}': ", "ko": "'{case}' 사례에서: "},
    "not_implemented": {
        "en": "not implemented yet: replace `raise NotImplementedError()` in `{function}` with your code",
        "ko": "아직 구현하지 않았습니다: `{function}` 안의 `raise NotImplementedError()`를 여러분의 코드로 바꾸세요"},
    "missing_function": {
        "en": "there is no function `{function}` yet: run the cell that defines it first",
        "ko": "`{function}` 함수가 아직 없습니다: 그 함수를 정의하는 셀을 먼저 실행하세요"},
    "raised": {"en": "your function raised {error}: {text}", "ko": "함수에서 {error} 예외가 났습니다: {text}"},
    "did_not_raise": {"en": "expected your function to raise {error}, but it returned {got}",
                      "ko": "함수가 {error} 예외를 내야 하는데 {got}을(를) 돌려주었습니다"},
    "wrong_exception": {"en": "expected {expected}, but your function raised {error}: {text}",
                        "ko": "{expected} 예외가 나야 하는데 {error} 예외가 났습니다: {text}"},
    "timeout": {"en": "your function took longer than {seconds} s", "ko": "함수가 {seconds}초 안에 끝나지 않았습니다"},
    "forbidden_call": {
        "en": "this step must be written by hand; your function called {name}, which this step does not allow",
        "ko": "이 단계는 직접 구현해야 합니다. 함수가 이 단계에서 쓸 수 없는 {name}을(를) 호출했습니다"},
    "wrong_type": {"en": "expected a {expected}, got a {got}", "ko": "{expected}을(를) 돌려줘야 하는데 {got}이(가) 왔습니다"},
    "wrong_shape": {"en": "expected shape {expected}, got shape {got}", "ko": "모양이 {expected}여야 하는데 {got}입니다"},
    "wrong_dtype": {"en": "expected dtype {expected}, got {got}", "ko": "dtype이 {expected}여야 하는데 {got}입니다"},
    "nan_output": {"en": "the output has NaN at index {index}", "ko": "출력의 {index} 위치에 NaN이 있습니다"},
    "inf_output": {"en": "the output has inf at index {index}", "ko": "출력의 {index} 위치에 inf가 있습니다"},
    "wrong_values": {
        "en": "values differ: at index {index} expected {expected}, got {got} (largest difference {max_diff})",
        "ko": "값이 다릅니다: {index} 위치에서 {expected}이어야 하는데 {got}입니다 (가장 큰 차이 {max_diff})"},
    "wrong_length": {"en": "expected {expected} items, got {got}", "ko": "항목이 {expected}개여야 하는데 {got}개입니다"},
    "wrong_keys": {"en": "keys differ: missing {missing}, unexpected {extra}",
                   "ko": "키가 다릅니다: 빠진 키 {missing}, 없어야 할 키 {extra}"},
    "wrong_value": {"en": "expected {expected}, got {got}", "ko": "{expected}이어야 하는데 {got}입니다"},
    "mistake": {"en": "{detail}. Likely cause: {mistake}", "ko": "{detail}. 짐작되는 원인: {mistake}"},
    "device": {"en": "Device: {device}", "ko": "장치: {device}"},
    "fallback": {
        "en": "{piece}: your version does not pass its checks yet, so the reference version is used",
        "ko": "{piece}: 여러분의 구현이 아직 검사를 통과하지 못해 참고 구현을 대신 씁니다"},
    "using_yours": {"en": "{piece}: using your version", "ko": "{piece}: 여러분의 구현을 씁니다"},
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
