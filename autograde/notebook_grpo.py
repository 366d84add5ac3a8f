"""Guards for notebook 9's GRPO loop: bad input stops the run with a message in the student's language.

    check_group(rewards, n_prompts, group_size)   a group of one, rewards of the wrong shape
    equal_groups(rewards)                         the note when every group's rewards are equal
    check_lengths(ids, prompt_len, max_new)       a completion longer than the bound
    check_finite(step, **tensors)                 NaN or inf: which one, at which step

The loop itself is written out in the notebook (it calls the student's functions); these only
name what went wrong, as autograde.reference.grpo does for the reference run in English.
"""
from __future__ import annotations

import torch

from autograde.checks.core import get_language
from autograde.checks.messages import message, register_messages
from autograde.errors import CourseError

register_messages({
    "grpo_group_of_one": {
        "en": "a group of {size} completion per prompt has nothing to compare with: the group's mean is the "
              "completion itself and every advantage is 0; use group_size >= 2",
        "ko": "프롬프트마다 풀이 {size}개짜리 그룹은 비교할 대상이 없습니다: 그룹 평균이 곧 그 풀이라서 이점이 "
              "모두 0입니다. group_size >= 2로 하세요"},
    "grpo_rewards_shape": {
        "en": "the rewards have shape {got}, but one row per prompt and one column per completion means "
              "{expected}",
        "ko": "보상의 모양이 {got}입니다: 프롬프트마다 한 행, 풀이마다 한 열이면 {expected}이어야 합니다"},
    "grpo_all_equal": {
        "en": "step {step}: every group's rewards are equal, so every advantage is 0 and the surrogate "
              "gives no gradient; this step only pulls the model towards the start (the KL term)",
        "ko": "{step}번 스텝: 모든 그룹의 보상이 같아 이점이 전부 0이고, 대리 목적이 기울기를 주지 않습니다. "
              "이 스텝은 모델을 시작 모델 쪽으로 당기기만 합니다(KL 항)"},
    "grpo_too_long": {
        "en": "sample_group returned {got} new tokens per row, more than max_new_tokens = {bound}: a "
              "completion that never writes the end marker must stop at the bound",
        "ko": "sample_group이 행마다 새 토큰을 {got}개 돌려주었습니다. max_new_tokens = {bound}보다 많습니다: "
              "끝 표시를 끝내 쓰지 않는 풀이도 한도에서 멈춰야 합니다"},
    "grpo_not_finite": {
        "en": "step {step}: {name} is not finite (NaN or inf), so the update would ruin the weights; the run "
              "stops here. {hint}",
        "ko": "{step}번 스텝: {name}에 유한하지 않은 값(NaN이나 inf)이 있어 이대로 갱신하면 가중치가 망가집니다. "
              "실행을 여기서 멈춥니다. {hint}"},
    "grpo_hint_logp": {
        "en": "Log-probs come from log_softmax; log(softmax(...)) gives -inf for unlikely tokens.",
        "ko": "로그 확률은 log_softmax로 구하세요. log(softmax(...))는 확률이 아주 낮은 토큰에서 -inf가 됩니다."},
    "grpo_hint_loss": {
        "en": "Its inputs are finite, so look inside grpo_loss: a division by a mask sum of 0, or exp of a "
              "large number.",
        "ko": "입력은 모두 유한하니 grpo_loss 안을 보세요: 합이 0인 마스크로 나누었거나, 큰 수에 exp를 씌웠을 수 "
              "있습니다."},
})


def _error(key: str, **params) -> CourseError:
    return CourseError(message(key, get_language(), **params))


def check_group(rewards: torch.Tensor, n_prompts: int, group_size: int) -> None:
    if group_size < 2:
        raise _error("grpo_group_of_one", size=group_size)
    if not isinstance(rewards, torch.Tensor) or tuple(rewards.shape) != (n_prompts, group_size):
        got = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise _error("grpo_rewards_shape", got=got, expected=(n_prompts, group_size))


def equal_groups(rewards: torch.Tensor, step: int) -> str | None:
    """The note to print when no group has anything to teach, else None."""
    if bool((rewards == rewards[:, :1]).all()):
        return message("grpo_all_equal", get_language(), step=step)
    return None


def check_lengths(ids: torch.Tensor, prompt_len: int, max_new_tokens: int) -> None:
    if ids.shape[1] - prompt_len > max_new_tokens:
        raise _error("grpo_too_long", got=ids.shape[1] - prompt_len, bound=max_new_tokens)


def check_finite(step: int, loss: torch.Tensor, **inputs: torch.Tensor) -> None:
    """Name the first input that is not finite, else the loss itself."""
    for name, value in inputs.items():
        if not bool(torch.isfinite(value).all()):
            raise _error("grpo_not_finite", step=step, name=name,
                         hint=message("grpo_hint_logp", get_language()) if "logp" in name else "")
    if not bool(torch.isfinite(loss).all()):
        raise _error("grpo_not_finite", step=step, name="grpo_loss(...)",
                     hint=message("grpo_hint_loss", get_language()))
