"""Checks for notebook 6: cross-entropy, perplexity, batches, the learning-rate schedule, clipping,
one AdamW step, and the training loop.

Fixed cases hold the extremes (logits of +-1000, every target but one ignored, a step exactly at
the end of the warmup, gradients that are all zero, the first AdamW step where the bias correction
matters most); hidden cases draw shapes, values and settings from a seed chosen at grading time.

The training loop is checked on a small model of the course's architecture for a few steps: with
the same configuration, seed and data order, its loss must follow the trajectory of the reference
loop (written with torch.nn.functional.cross_entropy, torch.optim.AdamW and
torch.nn.utils.clip_grad_norm_) within LOSS_TOL.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

import torch
import torch.nn.functional as F

from autograde.checks.core import Case, Check, Verdict, compare_outputs, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.reference.model import ModelConfig, Transformer

LOSS_TOL = 2e-4            # per step, absolute, on the training loop's losses
PPL_RTOL = 1e-4            # relative, on perplexity
WEIGHT_TOL = 1e-4          # absolute, on the trained weights the loop returns, at least...
WEIGHT_TOL_PER_LR = 0.05   # ...this fraction of the learning rate. AdamW divides each gradient by its own
# running size, so a gradient at the level of float rounding (rarely used rows of a tied embedding) can
# become a step of a sizeable fraction of lr: two correct loops that sum in another order have differed by
# 2.5e-4 at lr 3e-2 (1 hidden case in 30). A loop that returns the weights from before its last step is
# off by about lr on most of them, far outside this tolerance.

register_messages({
    "mistake_ce_unstable": {
        "en": "the loss overflowed on large logits: exp(1000) is inf in float32. Subtract each row's maximum "
              "before exp (log-sum-exp: m + log(sum(exp(z - m))))",
        "ko": "큰 로짓에서 손실이 넘쳤습니다: float32에서 exp(1000)은 inf입니다. exp 전에 행마다 최댓값을 "
              "빼세요 (로그-합-지수: m + log(sum(exp(z - m))))"},
    "mistake_ce_ignored_in_mean": {
        "en": "the ignored positions were counted in the mean: divide by the number of targets that are "
              "not ignore_index",
        "ko": "무시할 위치까지 평균의 분모에 넣었습니다: ignore_index가 아닌 정답의 개수로 나누세요"},
    "mistake_ce_ignore_not_masked": {
        "en": "targets equal to ignore_index were scored like any other: leave them out of the loss",
        "ko": "ignore_index와 같은 정답도 다른 정답처럼 손실에 넣었습니다: 그 위치는 손실에서 빼세요"},
    "mistake_ce_ignore_index_raised": {
        "en": "your function raised {error} on a target equal to ignore_index ({text}): mask those "
              "positions out before you gather (they are not token ids)",
        "ko": "정답이 ignore_index인 위치에서 {error} 예외가 발생했습니다 ({text}): 그 값은 토큰 id가 아니니, "
              "gather로 고르기 전에 그 위치를 가려 두세요"},
    "mistake_ce_sum": {
        "en": "this is the sum over the targets: the loss is their mean",
        "ko": "정답 전체의 합입니다: 손실은 합이 아니라 평균입니다"},
    "mistake_ce_sign": {
        "en": "the sign is flipped: the loss is minus the mean log-probability of the right token, so it is >= 0",
        "ko": "부호가 뒤집혔습니다: 손실은 정답 토큰 로그 확률의 평균에 마이너스를 붙인 값이라 0 이상입니다"},
    "mistake_ce_wrong_axis": {
        "en": "the softmax ran over the wrong axis: normalize over the vocabulary, the last dimension",
        "ko": "소프트맥스를 엉뚱한 축으로 계산했습니다: 어휘 축, 곧 마지막 차원으로 정규화하세요"},
    "mistake_ppl_base2": {
        "en": "2 ** loss: the loss is in nats (natural log), so perplexity is exp(loss)",
        "ko": "2 ** loss입니다: 손실은 자연로그(nat) 단위라서 퍼플렉서티는 exp(loss)입니다"},
    "mistake_ppl_no_exp": {
        "en": "this is the loss itself: perplexity is exp(mean loss)",
        "ko": "손실 그대로입니다: 퍼플렉서티는 exp(평균 손실)입니다"},
    "mistake_ppl_mean_of_exp": {
        "en": "the mean of exp(per-token loss): take the exp of the mean loss instead",
        "ko": "토큰마다 exp를 취한 뒤 평균을 냈습니다: 평균 손실을 먼저 구하고 exp를 취하세요"},
    "mistake_ppl_exp_of_sum": {
        "en": "the exp of the summed loss: perplexity is the exp of the mean loss over the counted tokens",
        "ko": "손실을 모두 더한 값에 exp를 취했습니다: 퍼플렉서티는 세는 토큰들의 평균 손실에 exp를 취한 값입니다"},
    "mistake_batch_no_shift": {
        "en": "the targets are the inputs: y must be x shifted by one token (ids[s + 1 : s + T + 1])",
        "ko": "정답이 입력과 같습니다: y는 x를 한 토큰 민 것(ids[s + 1 : s + T + 1])이어야 합니다"},
    "mistake_batch_range": {
        "en": "the window starts were drawn from another range: use torch.randint(0, len(ids) - seq_len - 1, "
              "(batch_size,), generator=generator)",
        "ko": "창의 시작 위치를 다른 범위에서 뽑았습니다: torch.randint(0, len(ids) - seq_len - 1, "
              "(batch_size,), generator=generator)를 쓰세요"},
    "mistake_batch_not_seeded": {
        "en": "the windows are valid but not the ones the seed gives: draw all starts with one call of "
              "torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=generator)",
        "ko": "창 자체는 올바르지만 시드가 정하는 창이 아닙니다: 시작 위치를 torch.randint(0, len(ids) - seq_len - 1, "
              "(batch_size,), generator=generator) 한 번으로 모두 뽑으세요"},
    "mistake_lr_warmup_zero": {
        "en": "the warmup starts at 0: step 0 already trains, with max_lr * (step + 1) / warmup",
        "ko": "예열이 0에서 시작합니다: 0번 스텝도 학습하므로 max_lr * (step + 1) / warmup입니다"},
    "mistake_lr_warmup_ahead": {
        "en": "the warmup runs one step ahead: step 0 gets max_lr * 1 / warmup, so the rate is max_lr * (step + 1) / warmup",
        "ko": "예열이 한 스텝 앞서갑니다: 0번 스텝의 학습률이 max_lr * 1 / warmup이므로 max_lr * (step + 1) / warmup입니다"},
    "mistake_lr_boundary": {
        "en": "the warmup ends at the wrong step: it covers steps 0 to warmup - 1 (step < warmup), and step warmup "
              "is the cosine's first, at max_lr",
        "ko": "예열이 끝나는 스텝이 어긋났습니다: 예열은 0번부터 warmup - 1번 스텝까지(step < warmup)이고, "
              "warmup번 스텝은 코사인의 첫 스텝으로 max_lr입니다"},
    "mistake_lr_progress_off_by_one": {
        "en": "the cosine's progress is off by one step: at step = warmup it is 0, (step - warmup) / (total_steps - warmup)",
        "ko": "코사인의 진행도가 한 스텝 어긋났습니다: step = warmup에서 0이 되도록 (step - warmup) / (total_steps - warmup)로 "
              "셉니다"},
    "mistake_lr_to_zero": {
        "en": "the cosine decays to 0: it ends at min_lr, lr = min_lr + (max_lr - min_lr) * 0.5 * (1 + cos(pi * progress))",
        "ko": "코사인이 0까지 내려갑니다: 끝은 min_lr이어서 lr = min_lr + (max_lr - min_lr) * 0.5 * (1 + cos(pi * progress))입니다"},
    "mistake_lr_no_clamp": {
        "en": "past total_steps the rate climbs again: after the schedule ends, stay at min_lr",
        "ko": "total_steps를 지나자 학습률이 다시 올라갑니다: 일정이 끝난 뒤에는 min_lr에 머무르세요"},
    "mistake_lr_progress": {
        "en": "the cosine's progress is counted from step 0: it runs from the end of the warmup, "
              "(step - warmup) / (total_steps - warmup)",
        "ko": "코사인의 진행도를 0번 스텝부터 셌습니다: 예열이 끝난 뒤부터, (step - warmup) / (total_steps - warmup)로 셉니다"},
    "mistake_lr_no_warmup": {
        "en": "there is no warmup: for step < warmup the rate rises linearly, max_lr * (step + 1) / warmup",
        "ko": "예열이 없습니다: step < warmup 동안 학습률은 max_lr * (step + 1) / warmup으로 직선처럼 오릅니다"},
    "mistake_clip_per_tensor": {
        "en": "each tensor was clipped by its own norm: clip by the global norm, the square root of the sum of "
              "every gradient's squared entries, and scale all of them by the same factor",
        "ko": "텐서마다 따로 노름을 구해 잘랐습니다: 모든 기울기 원소의 제곱을 더해 제곱근을 취한 전역 노름으로 "
              "자르고, 모든 텐서에 같은 배율을 곱하세요"},
    "mistake_clip_scales_up": {
        "en": "small gradients were scaled up to max_norm: clipping only ever shrinks (factor min(1, max_norm / norm))",
        "ko": "작은 기울기를 max_norm까지 키웠습니다: 클리핑은 줄이기만 합니다 (배율 min(1, max_norm / norm))"},
    "mistake_clip_sum_of_norms": {
        "en": "the tensors' norms were added: the global norm is sqrt(sum of squared norms), not their sum",
        "ko": "텐서들의 노름을 그냥 더했습니다: 전역 노름은 노름 제곱의 합에 제곱근을 취한 값입니다"},
    "mistake_clip_norm_after": {
        "en": "the returned norm is the one after clipping: return the norm measured before",
        "ko": "자른 뒤의 노름을 돌려주었습니다: 자르기 전에 잰 노름을 돌려주세요"},
    "mistake_clip_mean_square": {
        "en": "the norm was taken from the mean of the squares: the global norm sums the squares of every entry",
        "ko": "제곱의 평균으로 노름을 구했습니다: 전역 노름은 모든 원소의 제곱을 더해서 구합니다"},
    "mistake_clip_no_sqrt": {
        "en": "the norm is missing its square root: sqrt(sum of squares)",
        "ko": "노름에 제곱근이 빠졌습니다: 제곱합에 제곱근을 취하세요"},
    "mistake_adam_no_bias_correction": {
        "en": "no bias correction: divide m by 1 - beta1**step and v by 1 - beta2**step (step counts from 1)",
        "ko": "편향 보정이 없습니다: m은 1 - beta1**step으로, v는 1 - beta2**step으로 나누세요 (step은 1부터 셉니다)"},
    "mistake_adam_l2": {
        "en": "weight decay was added to the gradient (L2, as in Adam): AdamW decouples it, "
              "param * (1 - lr * weight_decay), apart from the moments",
        "ko": "가중치 감쇠를 기울기에 더했습니다 (Adam의 L2 방식): AdamW는 모멘트와 따로 "
              "param * (1 - lr * weight_decay)로 감쇠합니다"},
    "mistake_adam_decay_no_lr": {
        "en": "the weight decay was not scaled by the learning rate: param * (1 - lr * weight_decay)",
        "ko": "가중치 감쇠에 학습률을 곱하지 않았습니다: param * (1 - lr * weight_decay)입니다"},
    "mistake_adam_eps_inside": {
        "en": "eps went inside the square root: the denominator is sqrt(v_hat) + eps",
        "ko": "eps를 제곱근 안에 넣었습니다: 분모는 sqrt(v_hat) + eps입니다"},
    "mistake_adam_step_off_by_one": {
        "en": "the bias correction used the wrong step (one off, step - 1 or step + 1): `step` is already this "
              "update's number (1 for the first), so divide by 1 - beta1**step and 1 - beta2**step",
        "ko": "편향 보정에 한 칸 어긋난 스텝(step - 1이나 step + 1)을 썼습니다: `step`이 이미 이번 업데이트의 번호이므로 "
              "(첫 업데이트가 1) 1 - beta1**step과 1 - beta2**step으로 나누세요"},
    "mistake_adam_moment_weights": {
        "en": "a moment's new term has the wrong weight: m = beta1 * m + (1 - beta1) * grad and "
              "v = beta2 * v + (1 - beta2) * grad**2",
        "ko": "모멘트에 새로 더하는 항의 가중치가 틀렸습니다: m = beta1 * m + (1 - beta1) * grad, "
              "v = beta2 * v + (1 - beta2) * grad**2입니다"},
    "mistake_adam_betas_swapped": {
        "en": "beta1 and beta2 were swapped: beta1 (0.9) averages the gradient, beta2 (0.95 or 0.999) its square",
        "ko": "beta1과 beta2가 뒤바뀌었습니다: beta1(0.9)은 기울기의, beta2(0.95나 0.999)는 기울기 제곱의 평균에 씁니다"},
    "mistake_adam_no_sqrt": {
        "en": "the update divides by v_hat itself: divide by its square root, sqrt(v_hat) + eps",
        "ko": "v_hat 자체로 나눴습니다: 그 제곱근, sqrt(v_hat) + eps로 나누세요"},
    "mistake_train_no_zero_grad": {
        "en": "the gradients piled up from step to step: clear them (model.zero_grad(set_to_none=True)) "
              "before each backward()",
        "ko": "기울기가 스텝마다 쌓였습니다: backward() 전에 매번 기울기를 지우세요 (model.zero_grad(set_to_none=True))"},
    "mistake_train_no_clip": {
        "en": "the gradients were not clipped: clip them by their global norm before the AdamW step",
        "ko": "기울기를 자르지 않았습니다: AdamW 스텝 전에 전역 노름으로 자르세요"},
    "mistake_train_no_schedule": {
        "en": "the learning rate stayed at its peak: take it from lr_schedule at every step",
        "ko": "학습률이 최댓값에 머물렀습니다: 스텝마다 lr_schedule에서 받아 쓰세요"},
    "mistake_train_fresh_moments": {
        "en": "the AdamW moments started from zero at every step: keep m, v for each parameter across steps",
        "ko": "AdamW 모멘트를 스텝마다 0에서 새로 시작했습니다: 파라미터마다 m, v를 스텝 사이에 이어 가세요"},
    "mistake_train_decay_all": {
        "en": "weight decay was applied to every parameter: only to the matrices (p.dim() >= 2), not to the "
              "norms' 1-d weights",
        "ko": "모든 파라미터에 가중치 감쇠를 적용했습니다: 행렬(p.dim() >= 2)에만 적용하고 정규화 층의 1차원 "
              "가중치에는 적용하지 마세요"},
    "mistake_train_step_zero": {
        "en": "the AdamW step number started at 0: the first update is step 1 (the bias correction divides by 1 - beta**step)",
        "ko": "AdamW 스텝 번호를 0부터 셌습니다: 첫 업데이트가 1번입니다 (편향 보정이 1 - beta**step으로 나눕니다)"},
    "mistake_train_batch_order": {
        "en": "the batches differ from the reference's: at each step draw batch_size // 2 windows from each "
              "language with get_batch, in the order of `streams`, from the one generator seeded with settings['seed']",
        "ko": "배치가 참고 구현과 다릅니다: 스텝마다 `streams`의 순서대로 언어마다 get_batch로 batch_size // 2개 창을 "
              "뽑고, 생성기는 settings['seed']로 시드를 준 하나만 쓰세요"},
    "mistake_train_output": {
        "en": "train_model returns (state_dict, losses): the model's state_dict() and one float per step",
        "ko": "train_model은 (state_dict, losses)를 돌려줍니다: 모델의 state_dict()와 스텝마다 float 하나입니다"},
    "mistake_train_weights": {
        "en": "the losses follow the reference, but the returned weights are not the trained ones (tensor {name}): "
              "return the model's state_dict() after the last step",
        "ko": "손실은 참고 궤적을 따르지만 돌려준 가중치가 학습을 마친 가중치가 아닙니다 (텐서 {name}): "
              "마지막 스텝 뒤의 model.state_dict()를 돌려주세요"},
    "mistake_train_trajectory": {
        "en": "the loss left the reference trajectory at step {step}: {got} instead of {expected} "
              "(tolerance {tol}); same seed, same data, same updates give the same losses",
        "ko": "{step}번 스텝에서 손실이 참고 궤적을 벗어났습니다: {expected} 대신 {got}입니다 "
              "(허용 오차 {tol}). 시드와 데이터와 업데이트가 같으면 손실도 같습니다"},
})


# ----------------------------------------------------------------------------
# 1. cross-entropy


def _ce_parts(logits, targets, ignore_index):
    z = logits.reshape(-1, logits.shape[-1])
    t = targets.reshape(-1)
    keep = t != ignore_index
    return z, t, keep


def _ce_variant(logits, targets, ignore_index=-100, *, mistake=None):
    z, t, keep = _ce_parts(logits, targets, ignore_index)
    if mistake == "wrong_axis":
        logp = z - torch.logsumexp(z, dim=0, keepdim=True)
    elif mistake == "unstable":
        logp = z - torch.log(torch.exp(z).sum(-1, keepdim=True))
    else:
        logp = z - torch.logsumexp(z, dim=-1, keepdim=True)
    if mistake == "not_masked":
        picked = logp.gather(1, t.clamp(0, z.shape[-1] - 1)[:, None])[:, 0]
        return -picked.mean()
    picked = logp.gather(1, torch.where(keep, t, 0)[:, None])[:, 0] * keep
    if mistake == "ignored_in_mean":
        return -picked.sum() / t.numel()
    if mistake == "sum":
        return -picked.sum()
    if mistake == "sign":
        return picked.sum() / keep.sum()
    return -picked.sum() / keep.sum()


def _ce_reference(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


def _random_ce_case(g, label):
    B, T = int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
    V = int(torch.randint(3, 60, (1,), generator=g))
    scale = float(torch.empty(1).uniform_(0.5, 40.0, generator=g))
    z = torch.randn(B, T, V, generator=g) * scale
    y = torch.randint(0, V, (B, T), generator=g)
    return z, y, V, f"{label} {(B, T, V)}, scale {scale:.1f}"


# torch's broadcasting error: "The size of tensor a (7) must match the size of tensor b (10) at ..."
SHAPE_CLASH = re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")


@register
class CrossEntropy(Check):
    step = "training.cross_entropy"
    forbidden = ("torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss",
                 "torch.nn.functional.log_softmax", "torch.log_softmax", "torch.Tensor.log_softmax",
                 "torch.logsumexp", "torch.Tensor.logsumexp")
    mutants = {
        "mistake_ce_ignored_in_mean": lambda *a, **kw: _ce_variant(*a, **kw, mistake="ignored_in_mean"),
        "mistake_ce_ignore_not_masked": lambda *a, **kw: _ce_variant(*a, **kw, mistake="not_masked"),
        "mistake_ce_sum": lambda *a, **kw: _ce_variant(*a, **kw, mistake="sum"),
        "mistake_ce_sign": lambda *a, **kw: _ce_variant(*a, **kw, mistake="sign"),
        "mistake_ce_wrong_axis": lambda *a, **kw: _ce_variant(*a, **kw, mistake="wrong_axis"),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            z, y, V, label = _random_ce_case(g, "random logits")
            y2 = y.clone()
            y2[torch.rand(y.shape, generator=g) < 0.4] = -100
            y2[0, 0] = int(torch.randint(0, V, (1,), generator=g))          # at least one target counts
            z3, y3, V3, label3 = _random_ce_case(g, "random logits")
            pad = int(torch.randint(0, V3, (1,), generator=g))
            y3[0, 0] = (pad + 1) % V3
            y3[-1, -1] = pad
            return [Case(label, (z, y)),
                    Case(label + ", some targets -100", (z, y2)),
                    Case(label3 + f", ignore_index={pad}", (z3, y3), {"ignore_index": pad}),
                    Case(label + " * 100 (large logits)", (z * 100, y))]
        small = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
        huge = torch.tensor([[[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]],
                             [[0.0, 0.0, 1000.0], [500.0, -500.0, 0.0]]])
        g = gen(11)
        z = torch.randn(2, 5, 7, generator=g) * 3
        y = torch.randint(0, 7, (2, 5), generator=g)
        y_ign = y.clone()
        y_ign[0, 3:] = -100
        y_ign[1, :4] = -100
        y_pad = y.clone()
        y_pad[:, -2:] = 0
        y_pad[0, 0] = 3
        return [Case("(2, 3) logits, targets [0, 1]", (small, torch.tensor([0, 1]))),
                Case("(2, 2, 3) logits of +-1000", (huge, torch.tensor([[0, 2], [1, 0]]))),
                Case("(2, 5, 7) logits, every target counts", (z, y)),
                Case("(2, 5, 7), six targets -100", (z, y_ign)),
                Case("(2, 5, 7), every target but one -100",
                     (z, torch.full_like(y, -100).index_put_((torch.tensor([1]), torch.tensor([4])), torch.tensor(2)))),
                Case("(2, 5, 7), ignore_index=0 (a pad id)", (z, y_pad), {"ignore_index": 0})]

    def reference(self, logits, targets, ignore_index=-100):
        return _ce_reference(logits, targets, ignore_index)

    def judge(self, case, output):
        verdict = super().judge(case, output)
        if not verdict.passed and verdict.key in ("nan_output", "inf_output", "wrong_values") \
                and isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
            naive = _ce_variant(*case.args, **case.kwargs, mistake="unstable")
            if not bool(torch.isfinite(naive).all()):
                return Verdict(False, "mistake_ce_unstable", {}, case.label)
        return verdict

    def explain_raised(self, case, error, text):
        logits = case.args[0]
        V, N = logits.shape[-1], logits.numel() // max(1, logits.shape[-1])
        sizes = SHAPE_CLASH.search(text)
        # a log-sum-exp over the wrong axis often ends not in wrong numbers but in a shape clash:
        # a vector of the vocabulary's size meets the vector of the N positions
        if error == "RuntimeError" and sizes and V != N and {int(sizes[1]), int(sizes[2])} == {V, N}:
            return "mistake_ce_wrong_axis"
        ignore = case.kwargs.get("ignore_index", -100)
        if error in ("IndexError", "RuntimeError") and bool((case.args[1] == ignore).any()) and ignore < 0:
            return "mistake_ce_ignore_index_raised"
        return None


# ----------------------------------------------------------------------------
# 2. perplexity


def _per_token(logits, targets, ignore_index):
    z, t, keep = _ce_parts(logits, targets, ignore_index)
    return F.cross_entropy(z[keep].double(), t[keep], reduction="none")


@register
class Perplexity(Check):
    step = "training.perplexity"
    depends = ("training.cross_entropy",)
    forbidden = CrossEntropy.forbidden
    mutants = {
        "mistake_ppl_base2": lambda z, t, ignore_index=-100: float(2 ** _per_token(z, t, ignore_index).mean()),
        "mistake_ppl_no_exp": lambda z, t, ignore_index=-100: float(_per_token(z, t, ignore_index).mean()),
        "mistake_ppl_mean_of_exp": lambda z, t, ignore_index=-100: float(_per_token(z, t, ignore_index).exp().mean()),
        "mistake_ppl_exp_of_sum": lambda z, t, ignore_index=-100: math.exp(float(_per_token(z, t, ignore_index).sum())),
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            z, y, V, label = _random_ce_case(g, "random logits")
            y2 = y.clone()
            y2[0] = -100                                                   # B >= 2: other rows count
            return [Case(label, (z / 8, y)), Case(label + ", first row -100", (z / 8, y2))]
        V = 5
        return [Case("uniform logits over 5 tokens (perplexity 5)", (torch.zeros(2, 3, V), torch.tensor([[0, 1, 2], [3, 4, 0]]))),
                Case("(2, 3) logits, targets [0, 1]", (torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]]), torch.tensor([0, 1]))),
                Case("(2, 5, 7) logits, two targets -100",
                     (torch.randn(2, 5, 7, generator=gen(3)), torch.tensor([[1, 2, 3, -100, 4], [0, -100, 6, 5, 1]])))]

    def reference(self, logits, targets, ignore_index=-100):
        return math.exp(float(_per_token(logits, targets, ignore_index).mean()))

    def judge(self, case, output):
        if isinstance(output, torch.Tensor) and output.numel() == 1 and output.is_floating_point():
            output = float(output)
        expected = self.reference(*case.args, **case.kwargs)
        if isinstance(output, (int, float)) and not isinstance(output, bool) \
                and math.isclose(float(output), expected, rel_tol=PPL_RTOL):
            return Verdict(True, case=case.label)
        for key, mutant in self.mutants.items():
            if isinstance(output, (int, float)) and math.isclose(float(output), mutant(*case.args, **case.kwargs),
                                                                 rel_tol=PPL_RTOL):
                return Verdict(False, key, {}, case.label)
        return compare_outputs(output, expected, label=case.label) if not isinstance(output, (int, float)) \
            else Verdict(False, "wrong_value", {"expected": f"{expected:.6g}", "got": f"{float(output):.6g}"}, case.label)


# ----------------------------------------------------------------------------
# 3. batches


def _batch(ids, batch_size, seq_len, generator, *, mistake=None):
    high = len(ids) - seq_len - {"range": 0, "range_short": 2}.get(mistake, 1)
    starts = torch.randint(0, high, (batch_size,), generator=generator)
    x = torch.stack([ids[s:s + seq_len] for s in starts.tolist()])
    shift = 0 if mistake == "no_shift" else 1
    y = torch.stack([ids[s + shift:s + shift + seq_len] for s in starts.tolist()])
    return x, y


def fresh(generator):
    return gen(generator.initial_seed())


def _windows_valid(ids, x, y):
    """Every row of x is a window of ids and y is that window shifted by one."""
    n, T = len(ids), x.shape[1]
    for row_x, row_y in zip(x, y):
        starts = [s for s in range(n - T) if torch.equal(ids[s:s + T], row_x) and torch.equal(ids[s + 1:s + T + 1], row_y)]
        if not starts:
            return False
    return True


@register
class GetBatch(Check):
    step = "training.get_batch"
    mutants = {
        "mistake_batch_no_shift": lambda ids, b, t, g: _batch(ids, b, t, fresh(g), mistake="no_shift"),
        "mistake_batch_range": [lambda ids, b, t, g: _batch(ids, b, t, fresh(g), mistake="range"),
                                lambda ids, b, t, g: _batch(ids, b, t, fresh(g), mistake="range_short")],
    }

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            n = int(torch.randint(30, 400, (1,), generator=g))
            ids = torch.randint(0, 2048, (n,), generator=g)
            b, t = int(torch.randint(2, 9, (1,), generator=g)), int(torch.randint(2, 17, (1,), generator=g))
            return [Case(f"{n} random ids, batch {b}, seq_len {t}", (ids, b, t, gen(int(torch.randint(2**31 - 1, (1,), generator=g)))))]
        return [Case("ids 0..99, batch 4, seq_len 8", (torch.arange(100), 4, 8, gen(0))),
                Case("ids 0..9, batch 3, seq_len 8 (only starts 0 and 1 fit)", (torch.arange(10) * 7, 3, 8, gen(1))),
                Case("1000 random ids, batch 16, seq_len 32", (torch.randint(0, 2048, (1000,), generator=gen(5)), 16, 32, gen(2)))]

    def reference(self, ids, batch_size, seq_len, generator):
        return _batch(ids, batch_size, seq_len, fresh(generator))

    def judge(self, case, output):
        if isinstance(output, list):
            output = tuple(output)
        verdict = super().judge(case, output)
        if verdict.passed or verdict.key.startswith("mistake_"):
            return verdict
        ids = case.args[0]
        if isinstance(output, tuple) and len(output) == 2 and all(isinstance(o, torch.Tensor) for o in output) \
                and output[0].shape == output[1].shape == (case.args[1], case.args[2]) \
                and not output[0].is_floating_point() and _windows_valid(ids, output[0], output[1]):
            return Verdict(False, "mistake_batch_not_seeded", {}, case.label)
        return verdict


# ----------------------------------------------------------------------------
# 4. the learning-rate schedule


def _lr(step, max_lr, min_lr, warmup, total_steps, *, mistake=None):
    end = {"boundary_late": warmup + 1, "boundary_early": warmup - 1}.get(mistake, warmup)   # first cosine step
    if step < end and mistake != "no_warmup":
        return max_lr * {"warmup_zero": step, "warmup_ahead": step + 2}.get(mistake, step + 1) / warmup
    if mistake == "progress":
        progress = step / max(1, total_steps)
    else:
        shift = {"progress_ahead": 1, "progress_behind": -1}.get(mistake, 0)
        progress = (step - warmup + shift) / max(1, total_steps - warmup)
    if mistake != "no_clamp":
        progress = min(1.0, progress)
    low = 0.0 if mistake == "to_zero" else min_lr
    return low + (max_lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


@register
class LRSchedule(Check):
    step = "training.lr_schedule"
    mutants = {**{f"mistake_lr_{m}": (lambda m: lambda *a: _lr(*a, mistake=m))(m)
                  for m in ("warmup_zero", "warmup_ahead", "to_zero", "no_clamp", "progress", "no_warmup")},
               "mistake_lr_boundary": [lambda *a: _lr(*a, mistake="boundary_late"),     # step <= warmup
                                       lambda *a: _lr(*a, mistake="boundary_early")],   # step < warmup - 1
               "mistake_lr_progress_off_by_one": [lambda *a: _lr(*a, mistake="progress_ahead"),
                                                  lambda *a: _lr(*a, mistake="progress_behind")]}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            warmup = int(torch.randint(1, 50, (1,), generator=g))
            total = warmup + int(torch.randint(10, 500, (1,), generator=g))
            max_lr = round(float(torch.empty(1).uniform_(1e-4, 1e-2, generator=g)), 6)
            min_lr = round(max_lr * float(torch.rand(1, generator=g)) * 0.5, 7)
            steps = sorted({0, warmup - 1, warmup, total - 1, total + 7,
                            *torch.randint(0, total, (4,), generator=g).tolist()})
            return [Case(f"step {s} (max_lr {max_lr}, min_lr {min_lr}, warmup {warmup}, total {total})",
                         (s, max_lr, min_lr, warmup, total)) for s in steps]
        settings = (3e-3, 3e-4, 100, 900)
        return [Case(f"step {s} of the reference run (max_lr 3e-3, min_lr 3e-4, warmup 100, total 900)", (s, *settings))
                for s in (0, 49, 99, 100, 500, 899, 950)] + \
            [Case("step 3, warmup 1, total 5", (3, 1.0, 0.0, 1, 5)),
             Case("step 2, warmup 3, total 6: the last warmup step, at max_lr", (2, 1.0, 0.0, 3, 6))]

    def reference(self, step, max_lr, min_lr, warmup, total_steps):
        return _lr(step, max_lr, min_lr, warmup, total_steps)

    def judge(self, case, output):
        if isinstance(output, int) and not isinstance(output, bool):
            output = float(output)
        if isinstance(output, torch.Tensor) and output.numel() == 1:
            output = float(output)
        return super().judge(case, output)


# ----------------------------------------------------------------------------
# 5. clipping by the global norm


def _clip(grads, max_norm, *, mistake=None):
    norms = [g.double().norm() for g in grads]
    if mistake == "per_tensor":
        return [g * min(1.0, max_norm / (float(n) + 1e-6)) for g, n in zip(grads, norms)], \
            float(torch.stack(norms).norm())
    if mistake == "sum_of_norms":
        total = float(sum(norms))
    elif mistake == "mean_square":
        total = math.sqrt(sum(float(g.double().pow(2).mean()) for g in grads))
    elif mistake == "no_sqrt":
        total = float(sum(n ** 2 for n in norms))
    else:
        total = float(torch.stack(norms).norm()) if norms else 0.0
    coef = max_norm / (total + 1e-6)
    if mistake != "scales_up":
        coef = min(1.0, coef)
    clipped = [g * coef for g in grads]
    if mistake == "norm_after":
        return clipped, float(torch.stack([c.double().norm() for c in clipped]).norm())
    return clipped, total


@register
class ClipGradNorm(Check):
    step = "training.clip_grad_norm"
    forbidden = ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_norm", "torch.nn.utils.get_total_norm",
                 "torch.nn.utils.clip_grads_with_norm_")
    mutants = {f"mistake_clip_{m}": (lambda m: lambda g, n: _clip(g, n, mistake=m))(m)
               for m in ("per_tensor", "scales_up", "sum_of_norms", "mean_square", "norm_after", "no_sqrt")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            shapes = [tuple(torch.randint(1, 9, (int(torch.randint(1, 3, (1,), generator=g)),), generator=g).tolist())
                      for _ in range(int(torch.randint(2, 6, (1,), generator=g)))]
            grads = [torch.randn(s, generator=g) * float(torch.empty(1).uniform_(0.01, 5, generator=g)) for s in shapes]
            total = float(torch.stack([x.norm() for x in grads]).norm())
            return [Case(f"{len(grads)} random gradients, max_norm = norm / 3", (grads, round(total / 3, 4))),
                    Case(f"{len(grads)} random gradients, max_norm = 2 * norm", (grads, round(total * 2, 4)))]
        a, b = torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([4.0])
        g = gen(7)
        many = [torch.randn(4, 3, generator=g), torch.randn(3, generator=g) * 0.1, torch.randn(2, 2, 2, generator=g) * 10]
        return [Case("[[3, 0], [0, 0]] and [4] (norm 5), max_norm 1", ([a, b], 1.0)),
                Case("[[3, 0], [0, 0]] and [4] (norm 5), max_norm 10: unchanged", ([a, b], 10.0)),
                Case("[[3, 0], [0, 0]] and [4] (norm 5), max_norm 4", ([a, b], 4.0)),
                Case("all-zero gradients", ([torch.zeros(3, 2), torch.zeros(4)], 1.0)),
                Case("three gradients of different scales, max_norm 1", (many, 1.0))]

    def reference(self, grads, max_norm):
        return _clip(grads, max_norm)

    def judge(self, case, output):
        if isinstance(output, list) and len(output) == 2:
            output = tuple(output)
        if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], torch.Tensor) \
                and output[1].numel() == 1:
            output = (output[0], float(output[1]))
        expected = self.reference(*case.args)
        if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], (int, float)) \
                and not isinstance(output[1], bool):
            clipped = compare_outputs(list(output[0]) if isinstance(output[0], tuple) else output[0],
                                      expected[0], label=case.label)
            norm_ok = math.isclose(float(output[1]), expected[1], rel_tol=1e-5, abs_tol=1e-6)
            if clipped.passed and norm_ok:
                return Verdict(True, case=case.label)
            mistake = self._diagnose(case, output)
            if mistake:
                return Verdict(False, mistake, {}, case.label)
            if not clipped.passed:
                return clipped
            return Verdict(False, "wrong_value", {"expected": f"{expected[1]:.6g}", "got": f"{float(output[1]):.6g}",
                                                  "index": 1}, case.label)
        return compare_outputs(output, expected, label=case.label)

    def _diagnose(self, case, output):
        for key, mutant in self.mutants.items():
            wrong = mutant(*case.args)
            if compare_outputs(list(output[0]), wrong[0]).passed and \
                    math.isclose(float(output[1]), wrong[1], rel_tol=1e-5, abs_tol=1e-6):
                return key
        return None


# ----------------------------------------------------------------------------
# 6. one AdamW step


def _adamw(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay, *, mistake=None):
    beta1, beta2 = betas
    if mistake == "betas_swapped":
        beta1, beta2 = beta2, beta1
    p = param.clone()
    if mistake == "l2":
        grad = grad + weight_decay * p
    elif mistake == "decay_no_lr":
        p = p * (1 - weight_decay)
    else:
        p = p * (1 - lr * weight_decay)
    m = beta1 * exp_avg + (beta1 if mistake == "m_weight" else 1 - beta1) * grad
    v = beta2 * exp_avg_sq + (beta2 if mistake == "v_weight" else 1 - beta2) * grad * grad
    t = {"step_off_by_one": step - 1, "step_ahead": step + 1}.get(mistake, step)
    if mistake == "no_bias_correction":
        m_hat, v_hat = m, v
    else:
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    if mistake == "eps_inside":
        denom = (v_hat + eps).sqrt()
    elif mistake == "no_sqrt":
        denom = v_hat + eps
    else:
        denom = v_hat.sqrt() + eps
    return p - lr * m_hat / denom, m, v


def _adamw_torch(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    """One step of torch.optim.AdamW from the given state."""
    p = torch.nn.Parameter(param.detach().clone())
    opt = torch.optim.AdamW([p], lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=False)
    opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": exp_avg.detach().clone(),
                    "exp_avg_sq": exp_avg_sq.detach().clone()}
    p.grad = grad.detach().clone()
    opt.step()
    state = opt.state[p]
    return p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()


def _adam_state(g, shape, steps, betas, lr, eps, weight_decay):
    """A realistic state: `steps` steps of torch.optim.AdamW on random gradients."""
    p = torch.nn.Parameter(torch.randn(shape, generator=g))
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
    for _ in range(steps):
        p.grad = torch.randn(shape, generator=g)
        opt.step()
    state = opt.state[p]
    return p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()


@register
class AdamWStep(Check):
    step = "training.adamw_step"
    forbidden = ("torch.optim.AdamW", "torch.optim.Adam")
    mutants = {**{f"mistake_adam_{m}": (lambda m: lambda *a: _adamw(*a, mistake=m))(m)
                  for m in ("no_bias_correction", "l2", "decay_no_lr", "eps_inside", "betas_swapped", "no_sqrt")},
               "mistake_adam_step_off_by_one": [lambda *a: _adamw(*a, mistake="step_off_by_one"),
                                                lambda *a: _adamw(*a, mistake="step_ahead")],
               "mistake_adam_moment_weights": [lambda *a: _adamw(*a, mistake="m_weight"),
                                               lambda *a: _adamw(*a, mistake="v_weight")]}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            out = []
            for _ in range(2):
                shape = tuple(torch.randint(1, 7, (2,), generator=g).tolist())
                k = int(torch.randint(1, 40, (1,), generator=g))
                lr = round(float(torch.empty(1).uniform_(1e-3, 5e-2, generator=g)), 5)
                wd = round(float(torch.empty(1).uniform_(0.0, 0.3, generator=g)), 3)
                betas = (0.9, round(float(torch.empty(1).uniform_(0.95, 0.999, generator=g)), 3))
                eps = float(10 ** -torch.randint(3, 9, (1,), generator=g).item())
                p, m, v = _adam_state(g, shape, k, betas, lr, eps, wd)
                grad = torch.randn(shape, generator=g) * float(torch.empty(1).uniform_(0.01, 3, generator=g))
                out.append(Case(f"{shape} after {k} steps: step {k + 1}, lr {lr}, betas {betas}, eps {eps:g}, "
                                f"weight_decay {wd}", (p, grad, m, v, k + 1, lr, betas, eps, wd)))
            return out
        g = gen(21)
        p, grad = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
        zeros = torch.zeros(3, 4)
        p9, m9, v9 = _adam_state(g, (2, 5), 9, (0.9, 0.95), 1e-2, 1e-8, 0.1)
        g9 = torch.randn(2, 5, generator=g)
        p_big, m_big, v_big = _adam_state(g, (4,), 30, (0.9, 0.999), 1e-3, 1e-3, 0.0)
        return [Case("step 1 from zero moments, lr 1e-2, betas (0.9, 0.95), weight_decay 0.1",
                     (p, grad, zeros, zeros, 1, 1e-2, (0.9, 0.95), 1e-8, 0.1)),
                Case("step 1, weight_decay 0.5, lr 0.1 (decay is decoupled)",
                     (p, grad, zeros, zeros, 1, 0.1, (0.9, 0.95), 1e-8, 0.5)),
                Case("step 10 after nine steps of torch.optim.AdamW",
                     (p9, g9, m9, v9, 10, 1e-2, (0.9, 0.95), 1e-8, 0.1)),
                Case("step 31, betas (0.9, 0.999), eps 1e-3, no weight decay",
                     (p_big, torch.randn(4, generator=g), m_big, v_big, 31, 1e-3, (0.9, 0.999), 1e-3, 0.0)),
                Case("step 1000, zero gradient", (p, torch.zeros(3, 4), grad * 0.1, grad.abs() * 0.01, 1000, 1e-3,
                                                  (0.9, 0.95), 1e-8, 0.1)),
                Case("step 1, tiny gradients (1e-3), eps 1e-3, lr 0.1",
                     (p, grad * 1e-3, zeros, zeros, 1, 0.1, (0.9, 0.999), 1e-3, 0.0))]

    def reference(self, param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
        return _adamw_torch(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay)

    def judge(self, case, output):
        if isinstance(output, list):
            output = tuple(output)
        return super().judge(case, output)


# ----------------------------------------------------------------------------
# 7. the training loop


def _loop(cfg, streams, settings, progress=False, *, mistake=None):
    """The reference loop (torch's own cross-entropy, AdamW and clipping); `mistake` makes known mistakes."""
    s = settings
    model = Transformer(ModelConfig.from_dict(cfg))
    model.reset_parameters(seed=s["seed"])
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2 or mistake == "decay_all"]
    rest = [p for p in model.parameters() if not (p.dim() >= 2 or mistake == "decay_all")]
    groups = [{"params": decay, "weight_decay": s["weight_decay"]}] + ([{"params": rest, "weight_decay": 0.0}] if rest else [])
    opt = torch.optim.AdamW(groups, lr=s["lr"], betas=tuple(s["betas"]), eps=s["eps"], foreach=False)
    generator = gen(s["seed"])
    per_stream = s["batch_size"] // len(streams)
    losses = []
    for step in range(s["steps"]):
        lr = s["lr"] if mistake == "no_schedule" else _lr(step, s["lr"], s["min_lr"], s["warmup"], s["total_steps"])
        for group in opt.param_groups:
            group["lr"] = lr
        if mistake == "fresh_moments":                # moments never kept: zero at every step, the count goes on
            for state in opt.state.values():
                state["exp_avg"].zero_()
                state["exp_avg_sq"].zero_()
        parts = [_batch(ids, per_stream, s["seq_len"], generator) for ids in streams.values()]
        x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if mistake != "no_zero_grad":
            opt.zero_grad(set_to_none=True)
        loss.backward()
        raw = [p.grad.clone() for p in model.parameters()] if mistake == "no_zero_grad" else None
        if mistake != "no_clip":
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["clip"])
        opt.step()
        if raw is not None:                           # what piles up is the unclipped gradient
            for p, g in zip(model.parameters(), raw):
                p.grad = g
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


@lru_cache(maxsize=1)
def corpus_streams(n_chars: int = 6000) -> dict[str, torch.Tensor]:
    """The first n_chars characters of each language of the course corpus, as reference token ids."""
    from autograde.reference.checkpoint import load_reference
    from autograde.reference.corpus import LANGUAGES, load_corpus

    tok, corpus = load_reference().tokenizer, load_corpus()
    return {lang: torch.tensor(tok.encode_ordinary("\n".join(corpus[lang])[:n_chars])) for lang in LANGUAGES}


def small_config(vocab_size: int, d_model: int = 32, n_layer: int = 2, n_head: int = 4, n_kv_head: int = 2,
                 d_ff: int = 64, seq_len: int = 32) -> dict:
    return ModelConfig.llama_style(vocab_size=vocab_size, d_model=d_model, n_layer=n_layer, n_head=n_head,
                                   n_kv_head=n_kv_head, d_ff=d_ff, max_seq_len=seq_len, tie_embeddings=True).to_dict()


def train_settings(**overrides) -> dict:
    base = {"steps": 6, "total_steps": 6, "batch_size": 4, "seq_len": 16, "lr": 1e-2, "min_lr": 1e-3, "warmup": 2,
            "weight_decay": 0.1, "betas": (0.9, 0.95), "eps": 1e-8, "clip": 1.0, "seed": 0}
    return {**base, **overrides}


@register
class TrainModel(Check):
    step = "training.train_model"
    depends = ("training.cross_entropy", "training.get_batch", "training.lr_schedule", "training.clip_grad_norm",
               "training.adamw_step")
    forbidden = ("torch.nn.functional.cross_entropy", "torch.optim.AdamW", "torch.optim.Adam",
                 "torch.nn.utils.clip_grad_norm_")
    mutants = {f"mistake_train_{m}": (lambda m: lambda *a, **kw: _loop(*a, **kw, mistake=m))(m)
               for m in ("no_zero_grad", "no_clip", "no_schedule", "fresh_moments", "decay_all")}

    def cases(self, seed, hidden):
        streams = corpus_streams()
        if hidden:
            g = gen(seed)
            V = int(torch.randint(40, 300, (1,), generator=g))
            rand = {lang: torch.randint(0, V, (int(torch.randint(200, 600, (1,), generator=g)),), generator=g)
                    for lang in streams}
            heads = int(torch.randint(1, 3, (1,), generator=g)) * 2
            cfg = small_config(V, d_model=8 * heads, n_layer=int(torch.randint(1, 3, (1,), generator=g)),
                               n_head=heads, n_kv_head=heads // 2, d_ff=int(torch.randint(16, 65, (1,), generator=g)))
            steps = int(torch.randint(4, 8, (1,), generator=g))
            s = train_settings(steps=steps, total_steps=steps + int(torch.randint(0, 5, (1,), generator=g)),
                               batch_size=2 * int(torch.randint(1, 4, (1,), generator=g)),
                               seq_len=int(torch.randint(4, 17, (1,), generator=g)),
                               lr=round(float(torch.empty(1).uniform_(3e-3, 3e-2, generator=g)), 4),
                               warmup=int(torch.randint(1, 4, (1,), generator=g)),
                               weight_decay=round(float(torch.empty(1).uniform_(0.05, 0.5, generator=g)), 3),
                               clip=round(float(torch.empty(1).uniform_(0.05, 2.0, generator=g)), 3),
                               seed=int(torch.randint(2**31 - 1, (1,), generator=g)))
            cfg_real = small_config(2048, d_model=16, n_layer=1, n_head=2, n_kv_head=1, d_ff=32)
            return [Case(f"random ids over {V} tokens, {steps} steps, seed {s['seed']}", (cfg, rand, s)),
                    Case("course corpus, 5 steps, lr 3e-2, weight_decay 0.5, clip 0.1",
                         (cfg_real, streams, train_settings(steps=5, total_steps=5, lr=3e-2, weight_decay=0.5, clip=0.1,
                                                            seed=int(torch.randint(2**31 - 1, (1,), generator=g)))))]
        cfg = small_config(2048)
        return [Case("course corpus, small model, 6 steps", (cfg, streams, train_settings())),
                Case("course corpus, 6 steps of warmup only, clip 0.05 (always clipping)",
                     (cfg, streams, train_settings(warmup=6, total_steps=12, clip=0.05, seed=3, lr=3e-2)))]

    def reference(self, cfg, streams, settings, progress=False):
        return _loop(cfg, streams, settings)

    def judge(self, case, output):
        state, losses = self.reference(*case.args, **case.kwargs)
        if isinstance(output, list) and len(output) == 2:
            output = tuple(output)
        if not (isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], dict)
                and isinstance(output[1], (list, tuple))):
            return Verdict(False, "mistake_train_output", {}, case.label)
        got_state, got = output[0], list(output[1])
        if set(got_state) != set(state) or not all(isinstance(got_state[k], torch.Tensor)
                                                   and tuple(got_state[k].shape) == tuple(state[k].shape) for k in state):
            return Verdict(False, "mistake_train_output", {}, case.label)
        if len(got) != len(losses):
            return Verdict(False, "wrong_length", {"expected": len(losses), "got": len(got)}, case.label)
        try:
            got = [float(x) for x in got]
        except (TypeError, ValueError):
            return Verdict(False, "mistake_train_output", {}, case.label)
        bad = next((i for i, (a, b) in enumerate(zip(got, losses)) if not abs(a - b) <= LOSS_TOL), None)
        if bad is None:
            atol = max(WEIGHT_TOL, WEIGHT_TOL_PER_LR * case.args[2]["lr"])
            off = next((k for k in state if not (got_state[k].is_floating_point() and torch.allclose(
                got_state[k].detach().float().cpu(), state[k], rtol=1e-3, atol=atol))), None)
            if off is not None:
                return Verdict(False, "mistake_train_weights", {"name": off}, case.label)
            return Verdict(True, case=case.label)
        if bad == 0:                                   # the first loss comes before any update: the data differ
            return Verdict(False, "mistake_train_batch_order", {}, case.label)
        if not math.isfinite(got[bad]) and all(math.isfinite(x) for x in losses):
            return Verdict(False, "mistake_train_step_zero", {}, case.label)
        for key, mutant in self.mutants.items():
            wrong = mutant(*case.args, **case.kwargs)[1]
            if len(wrong) == len(got) and all(abs(a - b) <= LOSS_TOL for a, b in zip(got, wrong)):
                return Verdict(False, key, {}, case.label)
        return Verdict(False, "mistake_train_trajectory", {"step": bad + 1, "got": f"{got[bad]:.5f}",
                                                           "expected": f"{losses[bad]:.5f}", "tol": LOSS_TOL}, case.label)
