"""Checks for notebook 8 (tokens to think): the three completion formats, the loss mask over the
completion, batched greedy decoding to an end marker, answer extraction and exact-match accuracy.

Fixed cases hold the examples of chapter 8 (`10110`, `3527`) and the edges (no thoughts at all, an
unknown format, a completion that fills the whole width, a row that never writes the end marker);
hidden cases draw thoughts, answers, lengths, prompts and end markers from a seed chosen at grading
time. greedy_decode runs on the course's reference model (a real next-token model: its greedy
choices are not the tiny models', but the loop is the same), so the grader's sandbox loads it.

Mistakes named (message key, each with a mutant or a judge rule, and a test in tests/test_thinking.py):
  format_completion: no end marker (no_end), no `=` (no_marker), answer first without `;`
    (no_separator), the two orders swapped (order), not a string (type, a judge rule), an
    unknown format accepted (a case that must raise ValueError).
  loss_mask: the mask over inputs instead of targets (shifted), the prompt scored (prompt), the
    padding scored (padding), the end marker not scored (short), booleans (dtype, a judge rule).
  greedy_decode: the first position's logits (first_position), rows that go on after their end
    marker (stop_ignored), a stop as soon as one row ends (first_stop), the prompt returned with
    the new tokens (prompt), no bound (a case whose end marker never comes).
  extract_answer: after the last `=` (last_marker), `;` not a stop (no_separator), "" for no
    answer (empty), one character only (one_char).
  exact_match: raw completions compared (raw), a count instead of a fraction (count).
"""
from __future__ import annotations

from functools import lru_cache

import torch

from autograde.checks.core import Case, Check, Verdict, compare_outputs, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.protocol import NoGradModel
from autograde.reference import thinking as th

register_messages({
    "mistake_format_no_end": {
        "en": "the completion does not end with '.': the end marker is what tells decoding to stop",
        "ko": "완성이 '.'으로 끝나지 않습니다: 디코딩을 멈출 때를 알려 주는 것이 바로 끝 표시입니다"},
    "mistake_format_no_marker": {
        "en": "the answer has no '=' before it: every format writes '=' and then the answer, so that "
              "extract_answer can find it",
        "ko": "답 앞에 '='가 없습니다: 모든 형식은 '='를 쓰고 그 뒤에 답을 써야 extract_answer가 답을 찾습니다"},
    "mistake_format_no_separator": {
        "en": "answer_first writes '=', the answer, then ';' before the thoughts: without ';' the thoughts "
              "run into the answer",
        "ko": "answer_first는 '=', 답, 그다음 ';'를 쓰고 나서 생각을 씁니다: ';'가 없으면 생각이 답에 붙어 버립니다"},
    "mistake_format_order": {
        "en": "the two orders are swapped: 'think' writes the thoughts first and then '=answer.', "
              "'answer_first' writes '=answer;' and then the thoughts",
        "ko": "두 순서가 뒤바뀌었습니다: 'think'는 생각을 먼저 쓰고 '=답.'을 쓰며, 'answer_first'는 '=답;'을 "
              "먼저 쓰고 생각을 씁니다"},
    "mistake_format_type": {
        "en": "format_completion must return one string (the completion's characters), not a {got}",
        "ko": "format_completion은 완성의 글자를 담은 문자열 하나를 돌려줘야 합니다. 받은 타입은 {got}입니다"},
    "mistake_mask_shifted": {
        "en": "the mask covers the completion's positions in the input, one too late: target t is token "
              "t + 1, so the first completion token is the target at position prompt_len - 1",
        "ko": "마스크가 입력에서 완성이 놓인 위치를 덮어 한 칸 늦습니다: 위치 t의 정답은 토큰 t + 1이므로, "
              "완성의 첫 토큰은 위치 prompt_len - 1의 정답입니다"},
    "mistake_mask_prompt": {
        "en": "the prompt is scored too: its bits are random, so only the completion (targets prompt_len - 1 "
              "to total_len - 2) gets a 1",
        "ko": "프롬프트까지 셉니다: 프롬프트의 비트는 무작위이니 완성(위치 prompt_len - 1부터 total_len - 2까지의 "
              "정답)에만 1을 두세요"},
    "mistake_mask_padding": {
        "en": "the padding after the completion is scored: positions from total_len - 1 on hold no real "
              "target and must be 0",
        "ko": "완성 뒤의 패딩까지 셉니다: total_len - 1부터의 위치에는 진짜 정답이 없으니 0이어야 합니다"},
    "mistake_mask_short": {
        "en": "the last target, the end marker '.', is not scored: the model must learn to write it, or "
              "decoding never stops",
        "ko": "마지막 정답인 끝 표시 '.'를 세지 않습니다: 모델이 끝 표시를 쓰는 법을 배워야 디코딩이 멈춥니다"},
    "mistake_mask_dtype": {
        "en": "return a float tensor of 1.0 and 0.0 (the loss multiplies by it and divides by its sum), "
              "not {got}",
        "ko": "1.0과 0.0으로 된 float 텐서를 돌려주세요(손실에 곱하고 그 합으로 나눕니다). 받은 dtype은 {got}입니다"},
    "mistake_decode_first_position": {
        "en": "the next token was read from the first position's logits: the prediction for the next "
              "token is at the last position, logits[:, -1]",
        "ko": "다음 토큰을 첫 위치의 로짓에서 골랐습니다: 다음 토큰의 예측은 마지막 위치, logits[:, -1]에 있습니다"},
    "mistake_decode_stop_ignored": {
        "en": "a row went on writing after its end marker: once a row has written end_id, it gets end_id "
              "from then on",
        "ko": "끝 표시를 쓴 행이 그 뒤에도 다른 토큰을 썼습니다: end_id를 쓴 행에는 그 뒤로 계속 end_id를 채우세요"},
    "mistake_decode_first_stop": {
        "en": "decoding stopped when the first row ended: stop when every row has written end_id (or "
              "after max_new steps)",
        "ko": "첫 행이 끝나자 디코딩을 멈췄습니다: 모든 행이 end_id를 썼을 때(또는 max_new 스텝 뒤에) 멈추세요"},
    "mistake_decode_prompt": {
        "en": "the prompt came back with the new tokens: return only the new tokens, shape (B, n)",
        "ko": "새 토큰과 함께 프롬프트까지 돌려주었습니다: 새 토큰만, 모양 (B, n)으로 돌려주세요"},
    "mistake_extract_last_marker": {
        "en": "the answer was read after the last '=': the answer is what follows the first '='",
        "ko": "마지막 '=' 뒤에서 답을 읽었습니다: 답은 첫 번째 '=' 뒤에 옵니다"},
    "mistake_extract_no_separator": {
        "en": "';' was not treated as the end of the answer: in answer-first completions the explanation "
              "follows it",
        "ko": "';'를 답의 끝으로 보지 않았습니다: 답 먼저 형식에서는 그 뒤에 설명이 옵니다"},
    "mistake_extract_empty": {
        "en": "with no '=' there is no answer: return None, not an empty string",
        "ko": "'='가 없으면 답이 없습니다: 빈 문자열이 아니라 None을 돌려주세요"},
    "mistake_extract_one_char": {
        "en": "only the first character after '=' was kept: the answer runs to ';' or '.' (or the end)",
        "ko": "'=' 뒤의 첫 글자만 남겼습니다: 답은 ';'나 '.'까지(없으면 끝까지) 이어집니다"},
    "mistake_match_raw": {
        "en": "the whole completions were compared with the answers: compare extract_answer(completion)",
        "ko": "완성 전체를 답과 비교했습니다: extract_answer(completion)로 꺼낸 답을 비교하세요"},
    "mistake_match_count": {
        "en": "this is the number of right answers: return the fraction, between 0 and 1",
        "ko": "맞힌 개수를 돌려주었습니다: 0과 1 사이의 비율을 돌려주세요"},
})


# ----------------------------------------------------------------------------
# 1. the three formats


def _format(thoughts, answer, fmt, *, mistake=None):
    end = "" if mistake == "no_end" else th.END
    mark = "" if mistake == "no_marker" else th.ANSWER
    sep = "" if mistake == "no_separator" else th.EXPLAIN
    if mistake == "order" and fmt in ("think", "answer_first"):
        fmt = "think" if fmt == "answer_first" else "answer_first"
    if fmt == "at_once":
        return mark + answer + end
    if fmt == "think":
        return thoughts + mark + answer + end
    if fmt == "answer_first":
        return mark + answer + sep + thoughts + end
    raise ValueError(f"unknown format {fmt!r}")


def _random_thoughts(g, digits: bool) -> tuple[str, str]:
    n = int(torch.randint(1, 13, (1,), generator=g))
    top = 10 if digits else 2
    thoughts = "".join(str(int(x)) for x in torch.randint(0, top, (n,), generator=g))
    return thoughts, thoughts[-1]


@register
class FormatCompletion(Check):
    step = "thinking.format_completion"
    mutants = {f"mistake_format_{m}": (lambda m: lambda t, a, f: _format(t, a, f, mistake=m))(m)
               for m in ("no_end", "no_marker", "no_separator", "order")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            out = []
            for fmt in th.FORMATS:
                for digits in (False, True):
                    t, a = _random_thoughts(g, digits)
                    out.append((t, a, fmt))
            bad = "".join(str(int(x)) for x in torch.randint(0, 2, (3,), generator=g))
            return [Case(repr(c), c) for c in out] + [Case(f"('{bad}', '1', 'shout')", (bad, "1", "shout"),
                                                            raises="ValueError")]
        fixed = [("11011", "1", f) for f in th.FORMATS] + [("3807", "7", "think"), ("3807", "7", "answer_first"),
                                                           ("", "0", "think")]
        return [Case(repr(c), c) for c in fixed] + [Case("('11011', '1', 'backwards')", ("11011", "1", "backwards"),
                                                         raises="ValueError")]

    def reference(self, thoughts, answer, fmt):
        return th.format_completion(thoughts, answer, fmt)

    def judge(self, case, output):
        if not case.raises and not isinstance(output, str):
            return Verdict(False, "mistake_format_type", {"got": type(output).__name__}, case.label)
        return super().judge(case, output)


# ----------------------------------------------------------------------------
# 2. the loss mask


def _mask(prompt_len, total_len, width, *, mistake=None):
    m = torch.zeros(width)
    lo, hi = prompt_len - 1, total_len - 1
    if mistake == "shifted":
        lo, hi = lo + 1, hi + 1
    elif mistake == "prompt":
        lo = 0
    elif mistake == "padding":
        hi = width
    elif mistake == "short":
        hi -= 1
    m[lo:hi] = 1.0
    return m


@register
class LossMask(Check):
    step = "thinking.loss_mask"
    mutants = {f"mistake_mask_{m}": (lambda m: lambda p, t, w: _mask(p, t, w, mistake=m))(m)
               for m in ("shifted", "prompt", "padding", "short")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            out = []
            for _ in range(5):
                p = int(torch.randint(2, 15, (1,), generator=g))
                t = p + int(torch.randint(2, 15, (1,), generator=g))
                w = t - 1 + int(torch.randint(0, 6, (1,), generator=g))
                out.append((p, t, w))
            return [Case(f"prompt_len={p}, total_len={t}, width={w}", (p, t, w)) for p, t, w in out]
        fixed = [(7, 15, 16), (7, 10, 16), (13, 16, 15), (5, 7, 9)]
        return [Case(f"prompt_len={p}, total_len={t}, width={w}", (p, t, w)) for p, t, w in fixed]

    def reference(self, prompt_len, total_len, width):
        return th.loss_mask(prompt_len, total_len, width)

    def judge(self, case, output):
        if isinstance(output, torch.Tensor) and not output.dtype.is_floating_point \
                and tuple(output.shape) == (case.args[2],):
            return Verdict(False, "mistake_mask_dtype", {"got": str(output.dtype)}, case.label)
        return super().judge(case, output)


# ----------------------------------------------------------------------------
# 3. greedy decoding to an end marker


@lru_cache(maxsize=1)
def _model():
    from autograde.reference.checkpoint import load_reference

    return load_reference().model


def _decode(model, prompt_ids, max_new, end_id, *, mistake=None):
    ids = prompt_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    out = []
    for _ in range(max_new):
        logits = model(ids)
        nxt = (logits[:, 0] if mistake == "first_position" else logits[:, -1]).argmax(-1)
        if mistake != "stop_ignored":
            nxt = torch.where(done, torch.full_like(nxt, end_id), nxt)
        out.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == end_id
        if bool(done.any() if mistake == "first_stop" else done.all()):
            break
    new = torch.stack(out, dim=1)
    return torch.cat([prompt_ids, new], dim=1) if mistake == "prompt" else new


def _decode_cases(prompts: torch.Tensor, fn, max_new: int):
    """Three cases on one batch of two prompts: row 0 ends at its third token, row 1 at its fifth
    (the rows end apart, a finished row is filled with end_id), and an end marker that neither row
    ever writes (the loop must stop after max_new steps)."""
    free = _decode(fn, prompts, max_new, end_id=-1)                       # what greedy writes, unstopped
    seen = set(free.flatten().tolist())
    never = next(t for t in range(256, 2048) if t not in seen)
    ends = [int(free[0, 2]), int(free[1, 4]), never]
    return [Case(f"model, prompts {prompts.tolist()}, max_new={max_new}, end_id={end}", (fn, prompts, max_new, end))
            for end in ends]


@register
class GreedyDecode(Check):
    step = "thinking.greedy_decode"
    mutants = {f"mistake_decode_{m}": (lambda m: lambda *a: _decode(*a, mistake=m))(m)
               for m in ("first_position", "stop_ignored", "first_stop", "prompt")}

    def cases(self, seed, hidden):
        fn = NoGradModel(_model())
        if hidden:
            g = gen(seed)
            T = int(torch.randint(3, 9, (1,), generator=g))
            prompts = torch.randint(256, 2000, (2, T), generator=g)
            return _decode_cases(prompts, fn, 8)
        prompts = torch.tensor([[300, 301, 302, 303], [400, 500, 600, 700]])
        return _decode_cases(prompts, fn, 8)

    def reference(self, model, prompt_ids, max_new, end_id):
        return th.greedy_decode(model, prompt_ids, max_new, end_id)


# ----------------------------------------------------------------------------
# 4. reading the answer, and 5. exact-match accuracy


def _extract(text, *, mistake=None):
    if th.ANSWER not in text:
        return "" if mistake == "empty" else None
    rest = text.rsplit(th.ANSWER, 1)[1] if mistake == "last_marker" else text.split(th.ANSWER, 1)[1]
    stops = (th.END,) if mistake == "no_separator" else (th.EXPLAIN, th.END)
    for stop in stops:
        rest = rest.split(stop, 1)[0]
    return rest[:1] if mistake == "one_char" else rest


EXTRACT_FIXED = ("11011=1.", "=1;11011.", "=0.", "3807=7.", "=12;3.", "11=0;1=1.", "=7", "1101", ".", "=.")


@register
class ExtractAnswer(Check):
    step = "thinking.extract_answer"
    mutants = {f"mistake_extract_{m}": (lambda m: lambda text: _extract(text, mistake=m))(m)
               for m in ("last_marker", "no_separator", "empty", "one_char")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            texts = []
            for fmt in th.FORMATS:
                t, a = _random_thoughts(g, bool(torch.randint(0, 2, (1,), generator=g)))
                texts.append(th.format_completion(t, a + str(int(torch.randint(0, 10, (1,), generator=g))), fmt))
            texts += [texts[0] + "=3.", texts[1][:-1], "".join(str(int(x)) for x in torch.randint(0, 2, (6,),
                                                                                                    generator=g))]
            return [Case(repr(t), (t,)) for t in texts]
        return [Case(repr(t), (t,)) for t in EXTRACT_FIXED]

    def reference(self, text):
        return th.extract_answer(text)


def _match(completions, answers, *, mistake=None):
    if mistake == "raw":
        right = sum(c == a for c, a in zip(completions, answers))
    else:
        right = sum(th.extract_answer(c) == a for c, a in zip(completions, answers))
    return float(right) if mistake == "count" else right / len(answers)


@register
class ExactMatch(Check):
    step = "thinking.exact_match"
    depends = ("thinking.extract_answer",)
    mutants = {f"mistake_match_{m}": (lambda m: lambda c, a: _match(c, a, mistake=m))(m) for m in ("raw", "count")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed)
            out = []
            for n in (3, 6, 9):
                comps, answers = [], []
                for _ in range(n):
                    t, a = _random_thoughts(g, True)
                    said = a if bool(torch.randint(0, 2, (1,), generator=g)) else str((int(a) + 1) % 10)
                    comps.append(th.format_completion(t, said, th.FORMATS[n % 3]))
                    answers.append(a)
                out.append((comps, answers))
            return [Case(f"{c}, {a}", (c, a)) for c, a in out]
        fixed = [(["11011=1.", "=0.", "=1;110."], ["1", "1", "0"]),
                 (["=7.", "3807=7.", "38", "=7;3807."], ["7", "7", "7", "7"]),
                 (["1", "=1."], ["1", "1"])]
        return [Case(f"{c}, {a}", (c, a)) for c, a in fixed]

    def reference(self, completions, answers):
        return th.exact_match(completions, answers)

    def judge(self, case, output):
        if isinstance(output, int) and not isinstance(output, bool):
            output = float(output)
        return super().judge(case, output)
