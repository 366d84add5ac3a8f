"""Tokens to think: the same tiny transformer, trained on the same problems written three ways.

The experiment behind chapter 8 and notebook 8. Every problem is a prompt and a
completion of single-character tokens. The completion comes in three formats:

    answer at once      10110 :=1.             the answer is the first token after the prompt
    think first         10110 :11011=1.        intermediate results, then the answer
    answer first        10110 :=1;11011.       the answer, then the same intermediate results

The input sits left-aligned in a field of blanks as wide as the largest problem
(here 6), `:` ends the prompt, `=` opens the answer, `;` separates an answer from the
explanation that follows it and `.` ends the completion. The three formats hold
the same facts; only their order differs, and with it how many forward passes
the model has run before it must commit to the answer.

Two tasks:

    parity      n bits; the answer is 1 when the number of ones is odd. The
                thoughts are the running parity after each bit. Chance is 50%.
    digits      n digits to add up, keeping only the last digit ("3527" means
                3 + 5 + 2 + 7 = 17, answer 7): the apples problem's chain of
                dependent arithmetic steps made tiny. The thoughts are the
                running last digit (3, 8, 0, 7). Chance is 10%.

Training scores only the completion (the loss mask is 0 on the prompt and the
padding), decoding is greedy until `.` within a bounded number of tokens, and
a problem counts as solved when the text after `=` (up to `;` or `.`) equals
the answer exactly.

Everything is seeded: the problems each training step sees, the held-out
problems and the initial weights depend only on the settings and the seed, and
training runs in a fixed number of threads, so a rerun reproduces a recorded
run (bench/bench_thinking.py writes autograde/data/reference/thinking_run.json).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from autograde.checks.core import get_language
from autograde.checks.messages import message, register_messages
from autograde.errors import CourseError
from autograde.reference.model import ModelConfig, Transformer

FORMATS = ("at_once", "think", "answer_first")
TASKS = ("parity", "digits")
PROMPT_END, ANSWER, EXPLAIN, END, PAD, BLANK = ":", "=", ";", ".", "_", " "
VOCAB = "0123456789+" + PROMPT_END + ANSWER + EXPLAIN + END + PAD + BLANK
STOI = {ch: i for i, ch in enumerate(VOCAB)}
PAD_ID = STOI[PAD]
CHANCE = {"parity": 0.5, "digits": 0.1}

register_messages({
    "thinking_format_type": {
        "en": "format_completion returned a {got}, not a string: return the completion's characters as one str",
        "ko": "format_completion이 문자열이 아닌 값을 돌려주었습니다(타입: {got}). 완성의 글자를 str 하나로 "
              "돌려주세요"},
    "thinking_format_char": {
        "en": "format_completion wrote {char!r}, which is not in the vocabulary {vocab!r}",
        "ko": "format_completion이 어휘 집합 {vocab!r}에 없는 글자를 썼습니다: {char!r}"},
    "thinking_mask_shape": {
        "en": "loss_mask({prompt_len}, {total_len}, {width}) must return a float tensor of shape ({width},), "
              "not {got}",
        "ko": "loss_mask({prompt_len}, {total_len}, {width}) 호출은 모양이 ({width},)인 float 텐서를 돌려줘야 "
              "합니다. 받은 값: {got}"},
    "thinking_decode_shape": {
        "en": "greedy_decode must return a tensor of token ids of shape ({rows}, n) with n at most {max_new}, "
              "not {got}",
        "ko": "greedy_decode는 모양이 ({rows}, n)이고 n이 {max_new} 이하인 토큰 id 텐서를 돌려줘야 합니다. "
              "받은 값: {got}"},
    "thinking_no_end": {
        "en": "note: {count} of {total} completions never wrote the end marker '.' within {max_new} tokens; "
              "they were cut there and count as whatever answer they hold (said once: early in training "
              "this is normal)",
        "ko": "참고: 완성 {total}개 가운데 {count}개가 {max_new}토큰 안에 끝 표시 '.'를 쓰지 않았습니다. 거기서 "
              "잘랐고, 그 안에 든 답으로 채점합니다(한 번만 알립니다. 학습 초기에는 흔한 일입니다)"},
    "thinking_match_type": {
        "en": "exact_match must return a number between 0 and 1, not {got}",
        "ko": "exact_match는 0과 1 사이의 숫자를 돌려줘야 합니다. 받은 값: {got}"},
    "thinking_diverged": {
        "en": "training diverged: the loss is {loss} at step {step}, so it stopped there. Look at the loss mask "
              "(all zeros makes 0/0) and the learning rate",
        "ko": "학습이 발산해서 멈췄습니다: {step}번째 스텝의 손실 값은 {loss}입니다. 손실 마스크(모두 0이면 "
              "0/0이 됩니다)와 학습률을 살펴보세요"},
})


# ----------------------------------------------------------------------------
# problems and formats


@dataclass(frozen=True)
class Problem:
    prompt: str          # "10110 :" or "3527:" (the input in its field, then ":")
    thoughts: str        # the intermediate results, one character per step
    answer: str          # one character


def field_width(task: str, largest: int) -> int:
    """Characters of the input field that holds problems of up to `largest` bits or digits."""
    return largest


def make_problem(task: str, values: list[int], largest: int | None = None) -> Problem:
    """The problem with these bits (parity) or digits (digits), with its running results.

    The input is written left-aligned in a field of blanks as wide as the largest problem
    (`largest` bits or digits), so every problem's `:` and its k-th intermediate result sit at
    the same positions whatever its size: a small model with learned positions then learns
    one alignment between results and inputs instead of one per size."""
    if task == "parity":
        running, acc = [], 0
        for bit in values:
            acc ^= bit
            running.append(acc)
        body = "".join(str(v) for v in values)
    elif task == "digits":
        running, acc = [], 0
        for digit in values:
            acc = (acc + digit) % 10
            running.append(acc)
        body = "".join(str(v) for v in values)
    else:
        raise CourseError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    thoughts = "".join(str(r) for r in running)
    width = field_width(task, largest or len(values))
    if len(body) > width:
        raise CourseError(f"a problem of {len(values)} is larger than the field for {largest}")
    return Problem(body.ljust(width, BLANK) + PROMPT_END, thoughts, thoughts[-1])


def random_problem(task: str, size: int, rng: random.Random, largest: int | None = None) -> Problem:
    """One problem of `size` bits or digits, drawn from rng, in a field for `largest`."""
    top = 1 if task == "parity" else 9
    return make_problem(task, [rng.randint(0, top) for _ in range(size)], largest)


def format_completion(thoughts: str, answer: str, fmt: str) -> str:
    """What the model learns to write after the prompt, in one of the three formats."""
    if fmt == "at_once":
        return ANSWER + answer + END
    if fmt == "think":
        return thoughts + ANSWER + answer + END
    if fmt == "answer_first":
        return ANSWER + answer + EXPLAIN + thoughts + END
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def completion(problem: Problem, fmt: str) -> str:
    return format_completion(problem.thoughts, problem.answer, fmt)


def encode(text: str) -> list[int]:
    return [STOI[ch] for ch in text]


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


def extract_answer(text: str) -> str | None:
    """The text after the first `=`, up to `;` or `.` (or the end); None when there is no `=`."""
    if ANSWER not in text:
        return None
    rest = text.split(ANSWER, 1)[1]
    for stop in (EXPLAIN, END):
        rest = rest.split(stop, 1)[0]
    return rest


def loss_mask(prompt_len: int, total_len: int, width: int) -> torch.Tensor:
    """(width,) float mask over the *targets* of a sequence of total_len tokens padded to width + 1.

    Target t is token t + 1, so the completion's tokens (positions prompt_len .. total_len - 1)
    are targets prompt_len - 1 .. total_len - 2: 1 there, 0 on the prompt and on padding.
    """
    mask = torch.zeros(width)
    mask[prompt_len - 1:total_len - 1] = 1.0
    return mask


def make_batch(problems: list[Problem], fmt: str, pieces: "Pieces | None" = None):
    """Token inputs x (B, T), targets y (B, T) and the loss mask (B, T), padded on the right."""
    pieces = pieces or REFERENCE_PIECES
    seqs = [encode(p.prompt + pieces.completion(p.thoughts, p.answer, fmt)) for p in problems]
    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width - 1), PAD_ID, dtype=torch.long)
    y = torch.full((len(seqs), width - 1), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(seqs), width - 1)
    for row, (seq, p) in enumerate(zip(seqs, problems)):
        ids = torch.tensor(seq)
        x[row, :len(seq) - 1] = ids[:-1]
        y[row, :len(seq) - 1] = ids[1:]
        mask[row] = pieces.loss_mask(len(p.prompt), len(seq), width - 1)
    return x, y, mask


def masked_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets where mask is 1 (the completion)."""
    per_token = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")   # (B*T,)
    m = mask.flatten()
    return (per_token * m).sum() / m.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------
# decoding and accuracy


@torch.no_grad()
def greedy_decode(model, prompt_ids: torch.Tensor, max_new: int, end_id: int) -> torch.Tensor:
    """Greedy continuation of a batch of prompts of one length, (B, T) -> (B, n) new tokens.

    Each step appends every row's most likely next token. A row that has written end_id
    gets end_id from then on; decoding stops once every row has written it, or after
    max_new steps (n <= max_new), so a model that never writes end_id cannot loop forever."""
    ids = prompt_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    out = []
    for _ in range(max_new):
        nxt = model(ids)[:, -1].argmax(-1)                               # (B,)
        nxt = torch.where(done, torch.full_like(nxt, end_id), nxt)
        out.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)                      # (B, T + 1)
        done |= nxt == end_id
        if bool(done.all()):
            break
    return torch.stack(out, dim=1)                                       # (B, n)


def exact_match(completions: list[str], answers: list[str]) -> float:
    """The fraction of completions whose extracted answer equals the answer exactly."""
    return sum(extract_answer(c) == a for c, a in zip(completions, answers)) / len(answers)


@dataclass(frozen=True)
class Pieces:
    """The experiment's four exchangeable pieces: notebook 8 passes the student's versions."""
    completion: object = format_completion        # (thoughts, answer, fmt) -> str
    loss_mask: object = loss_mask                  # (prompt_len, total_len, width) -> (width,) tensor
    greedy_decode: object = greedy_decode          # (model, ids (B, T), max_new, end_id) -> (B, n)
    exact_match: object = exact_match              # (completions, answers) -> float


REFERENCE_PIECES = Pieces()


@torch.no_grad()
def accuracy(model, problems: list[Problem], fmt: str, pieces: Pieces | None = None) -> float:
    """Exact-match accuracy of greedy answers, problems grouped by prompt length.

    The decoding budget is a correct completion's length plus 2 tokens."""
    pieces = pieces or REFERENCE_PIECES
    device = next(model.parameters()).device
    by_len: dict[int, list[Problem]] = {}
    for p in problems:
        by_len.setdefault(len(p.prompt), []).append(p)
    texts, answers = [], []
    for group in by_len.values():
        budget = len(completion(group[0], fmt)) + 2
        ids = torch.tensor([encode(p.prompt) for p in group], device=device)     # (B, T)
        new = pieces.greedy_decode(model, ids, budget, STOI[END])
        texts += [decode(row).split(END, 1)[0] + (END if END in decode(row) else "") for row in new.tolist()]
        answers += [p.answer for p in group]
    return pieces.exact_match(texts, answers)


# ----------------------------------------------------------------------------
# the experiment


@dataclass
class ThinkingSettings:
    task: str = "parity"
    train_size: int = 12           # bits or digits of the problems the headline accuracy is measured on
    min_size: int = 2              # training draws sizes min_size .. train_size, each as often
    eval_sizes: tuple = (2, 4, 6, 8, 10, 12)
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    eval_every: int = 250
    eval_problems: int = 256       # held-out problems per size
    seed: int = 0
    threads: int = 1               # one thread: immune to OpenMP spin-waits on a busy machine
    extra: dict = field(default_factory=dict)


def tiny_config(s: ThinkingSettings) -> ModelConfig:
    """A Llama-style model (the course's own shape, much smaller) over the 17-character vocabulary.

    Rotary positions matter here: with the input in a fixed field, the k-th intermediate
    result always sits the same distance after the k-th input, so one attention pattern
    (look back that far) serves every step; learned absolute positions must learn each
    step's alignment on its own and get there far more slowly."""
    seq = field_width(s.task, s.train_size) + s.train_size + 6
    return ModelConfig.llama_style(vocab_size=len(VOCAB), d_model=s.d_model, n_layer=s.n_layer, n_head=s.n_head,
                                   n_kv_head=s.n_head, d_ff=4 * s.d_model, max_seq_len=seq, tie_embeddings=True)


def held_out(s: ThinkingSettings, size: int) -> list[Problem]:
    """The evaluation problems of one size: fixed by the seed, never shown in training
    (for sizes with fewer possible problems than twice eval_problems, all of them, and
    training sees them too: there is nothing to hold out)."""
    rng = random.Random(f"eval-{s.task}-{size}-{s.seed}")
    space = (2 if s.task == "parity" else 10) ** size
    if space < 2 * s.eval_problems:
        top = 1 if s.task == "parity" else 9
        values = [[(i // (top + 1) ** j) % (top + 1) for j in range(size)] for i in range(space)]
        return [make_problem(s.task, v, s.train_size) for v in values]
    seen, out = set(), []
    while len(out) < s.eval_problems:
        p = random_problem(s.task, size, rng, s.train_size)
        if p.prompt not in seen:
            seen.add(p.prompt)
            out.append(p)
    return out


def training_problems(s: ThinkingSettings, rng: random.Random, banned: set, count: int) -> list[Problem]:
    """count training problems, sizes min_size .. train_size each as often, none of them in banned."""
    problems = []
    while len(problems) < count:
        p = random_problem(s.task, rng.randint(s.min_size, s.train_size), rng, s.train_size)
        if p.prompt not in banned:
            problems.append(p)
    return problems


def lr_at(step: int, s: ThinkingSettings) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak (the reference trainer's schedule)."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_format(s: ThinkingSettings, fmt: str, device: str = "cpu", pieces: Pieces | None = None,
                 progress: bool = False) -> dict:
    """Train one model on format fmt; returns its accuracy history and final accuracy per size.

    The batches do not depend on the format: step k draws the same problems for every format,
    so the three models differ only in the order of the completion's tokens. pieces: the
    formatter, loss mask, decoding and scoring to use (notebook 8: the student's own).
    """
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    model = Transformer(tiny_config(s)).to(device)
    model.reset_parameters(seed=s.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=(0.9, 0.95), weight_decay=0.0)
    tests = {size: held_out(s, size) for size in sorted(set(s.eval_sizes) | {s.train_size})}
    banned = {p.prompt for size, ps in tests.items() for p in ps
              if len(ps) == s.eval_problems}
    rng = random.Random(f"train-{s.task}-{s.seed}")
    history = []
    for step in range(s.steps):
        problems = training_problems(s, rng, banned, s.batch_size)
        x, y, mask = (t.to(device) for t in make_batch(problems, fmt, pieces))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        model.train()
        loss = masked_loss(model(x), y, mask)
        if not torch.isfinite(loss):
            raise CourseError(message("thinking_diverged", get_language(), loss=loss.item(), step=step + 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % s.eval_every == 0 or step + 1 == s.steps:
            model.eval()
            history.append({"step": step + 1, "loss": round(loss.item(), 4),
                            "accuracy": round(accuracy(model, tests[s.train_size], fmt, pieces), 4)})
            if progress:
                print(f"{fmt:>12}  step {step + 1:4d}  loss {loss.item():.4f}  "
                      f"accuracy {history[-1]['accuracy']:.1%}", flush=True)
    model.eval()
    by_size = {str(size): round(accuracy(model, tests[size], fmt, pieces), 4) for size in s.eval_sizes}
    return {"format": fmt, "history": history, "accuracy": history[-1]["accuracy"], "by_size": by_size,
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1)}


def run_experiment(s: ThinkingSettings, formats=FORMATS, device: str = "cpu", pieces: Pieces | None = None,
                   progress: bool = False) -> dict:
    """All formats with the same settings and seed: settings, chance level and one result per format."""
    return {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
            "chance": CHANCE[s.task],
            "formats": {fmt: train_format(s, fmt, device, pieces, progress) for fmt in formats}}


def full_settings(task: str, seed: int = 0) -> ThinkingSettings:
    """The recorded run's settings (chapter 8's numbers; notebook 8 with no size knob set)."""
    if task == "parity":
        return ThinkingSettings(task="parity", train_size=12, eval_sizes=(2, 4, 6, 8, 10, 12), steps=400,
                                eval_every=25, seed=seed)
    if task == "digits":
        return ThinkingSettings(task="digits", train_size=8, eval_sizes=(2, 3, 4, 5, 6, 7, 8), steps=400,
                                eval_every=25, seed=seed)
    raise CourseError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def small_settings(task: str = "parity") -> ThinkingSettings:
    """A setting of a few seconds per format that still shows the gap (tests/test_thinking.py)."""
    return ThinkingSettings(task=task, train_size=8, eval_sizes=(4, 8), steps=200, batch_size=32, warmup=50,
                            eval_every=50, eval_problems=64, seed=0)


# ----------------------------------------------------------------------------
# notebook 8: the student's pieces, guarded


class PieceError(CourseError):
    """A student's piece returned something the experiment cannot use. In a notebook, IPython
    shows only this message (in the notebook's language), not a traceback through the course."""

    def _render_traceback_(self):
        return [str(self)]


def _say(key: str, **params) -> str:
    return message(key, get_language(), **params)


def guarded_pieces(completion, loss_mask_fn, greedy, match) -> Pieces:
    """The student's four pieces, each wrapped so that a wrong type or shape stops the run with one
    clear sentence, and decoding that never writes `.` is reported (it is bounded by max_new)."""

    def checked_completion(thoughts, answer, fmt):
        text = completion(thoughts, answer, fmt)
        if not isinstance(text, str):
            raise PieceError(_say("thinking_format_type", got=type(text).__name__))
        bad = next((ch for ch in text if ch not in STOI or ch in (PAD, BLANK)), None)
        if bad is not None:
            raise PieceError(_say("thinking_format_char", char=bad, vocab=VOCAB[:-2]))
        return text

    def checked_mask(prompt_len, total_len, width):
        mask = loss_mask_fn(prompt_len, total_len, width)
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (width,) or not mask.dtype.is_floating_point:
            got = f"shape {tuple(mask.shape)}, {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise PieceError(_say("thinking_mask_shape", prompt_len=prompt_len, total_len=total_len, width=width,
                                  got=got))
        return mask.detach().float().cpu()

    noted = []

    def checked_greedy(model, ids, max_new, end_id):
        new = greedy(model, ids, max_new, end_id)
        ok = (isinstance(new, torch.Tensor) and new.dim() == 2 and new.shape[0] == ids.shape[0]
              and 0 < new.shape[1] <= max_new and not new.dtype.is_floating_point
              and bool(((new >= 0) & (new < len(VOCAB))).all()))
        if not ok:
            got = f"shape {tuple(new.shape)}, {new.dtype}" if isinstance(new, torch.Tensor) else type(new).__name__
            raise PieceError(_say("thinking_decode_shape", rows=ids.shape[0], max_new=max_new, got=got))
        unfinished = int((~(new == end_id).any(dim=1)).sum())
        if unfinished and not noted:
            noted.append(unfinished)
            print(_say("thinking_no_end", count=unfinished, total=new.shape[0], max_new=max_new))
        return new

    def checked_match(completions, answers):
        value = match(completions, answers)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise PieceError(_say("thinking_match_type", got=repr(value)[:40]))
        return float(value)

    return Pieces(checked_completion, checked_mask, checked_greedy, checked_match)


def notebook_settings(task: str, steps: int | None = None) -> ThinkingSettings:
    """Notebook 8's settings: the recorded run's (seed 0), or a short run when steps is given
    (the test suite's: fewer steps and fewer held-out problems, same code)."""
    s = full_settings(task, seed=0)
    if steps is not None and steps != s.steps:
        s.steps, s.eval_every, s.eval_problems = steps, max(1, steps // 2), 32
        s.warmup = min(s.warmup, max(1, steps // 2))
    return s
