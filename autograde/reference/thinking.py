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

from autograde.errors import CourseError
from autograde.reference.model import ModelConfig, Transformer

FORMATS = ("at_once", "think", "answer_first")
TASKS = ("parity", "digits")
PROMPT_END, ANSWER, EXPLAIN, END, PAD, BLANK = ":", "=", ";", ".", "_", " "
VOCAB = "0123456789+" + PROMPT_END + ANSWER + EXPLAIN + END + PAD + BLANK
STOI = {ch: i for i, ch in enumerate(VOCAB)}
PAD_ID = STOI[PAD]
CHANCE = {"parity": 0.5, "digits": 0.1}


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


def completion(problem: Problem, fmt: str) -> str:
    """What the model learns to write after the prompt, in one of the three formats."""
    if fmt == "at_once":
        return ANSWER + problem.answer + END
    if fmt == "think":
        return problem.thoughts + ANSWER + problem.answer + END
    if fmt == "answer_first":
        return ANSWER + problem.answer + EXPLAIN + problem.thoughts + END
    raise CourseError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


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


def loss_mask(prompt_len: int, total_len: int, length: int) -> torch.Tensor:
    """(length,) float mask over the *targets* of a sequence of total_len tokens padded to length + 1.

    Target t is token t + 1, so the completion's tokens (positions prompt_len .. total_len - 1)
    are targets prompt_len - 1 .. total_len - 2: 1 there, 0 on the prompt and on padding.
    """
    mask = torch.zeros(length)
    mask[prompt_len - 1:total_len - 1] = 1.0
    return mask


def make_batch(problems: list[Problem], fmt: str):
    """Token inputs x (B, T), targets y (B, T) and the loss mask (B, T), padded on the right."""
    seqs = [encode(p.prompt + completion(p, fmt)) for p in problems]
    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width - 1), PAD_ID, dtype=torch.long)
    y = torch.full((len(seqs), width - 1), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(seqs), width - 1)
    for row, (seq, p) in enumerate(zip(seqs, problems)):
        ids = torch.tensor(seq)
        x[row, :len(seq) - 1] = ids[:-1]
        y[row, :len(seq) - 1] = ids[1:]
        mask[row] = loss_mask(len(p.prompt), len(seq), width - 1)
    return x, y, mask


def masked_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets where mask is 1 (the completion)."""
    per_token = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")   # (B*T,)
    m = mask.flatten()
    return (per_token * m).sum() / m.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------
# decoding and accuracy


@torch.no_grad()
def greedy_complete(model, prompts: list[str], max_new: int) -> list[str]:
    """Greedy continuation of prompts of equal length, stopping at `.` or after max_new tokens."""
    if len({len(p) for p in prompts}) != 1:
        raise CourseError("greedy_complete batches prompts of one length only")
    device = next(model.parameters()).device
    ids = torch.tensor([encode(p) for p in prompts], device=device)     # (B, T)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    out = []
    for _ in range(max_new):
        nxt = model(ids)[:, -1].argmax(-1)                               # (B,)
        nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
        out.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == STOI[END]
        if bool(done.all()):
            break
    texts = [decode(row) for row in torch.stack(out, dim=1).tolist()]
    return [t.split(PAD, 1)[0] for t in texts]


def accuracy(model, problems: list[Problem], fmt: str) -> float:
    """Exact-match accuracy of greedy answers, problems grouped by prompt length."""
    by_len: dict[int, list[Problem]] = {}
    for p in problems:
        by_len.setdefault(len(p.prompt), []).append(p)
    right = 0
    for group in by_len.values():
        budget = len(completion(group[0], fmt)) + 2
        texts = greedy_complete(model, [p.prompt for p in group], budget)
        right += sum(extract_answer(t) == p.answer for t, p in zip(texts, group))
    return right / len(problems)


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


def train_format(s: ThinkingSettings, fmt: str, device: str = "cpu") -> dict:
    """Train one model on format fmt; returns its accuracy history and final accuracy per size.

    The batches do not depend on the format: step k draws the same problems for every format,
    so the three models differ only in the order of the completion's tokens.
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
        x, y, mask = (t.to(device) for t in make_batch(problems, fmt))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        model.train()
        loss = masked_loss(model(x), y, mask)
        if not torch.isfinite(loss):
            raise CourseError(f"training diverged: the loss is {loss.item()} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % s.eval_every == 0 or step + 1 == s.steps:
            model.eval()
            history.append({"step": step + 1, "loss": round(loss.item(), 4),
                            "accuracy": round(accuracy(model, tests[s.train_size], fmt), 4)})
    model.eval()
    by_size = {str(size): round(accuracy(model, tests[size], fmt), 4) for size in s.eval_sizes}
    return {"format": fmt, "history": history, "accuracy": history[-1]["accuracy"], "by_size": by_size,
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1)}


def run_experiment(s: ThinkingSettings, formats=FORMATS, device: str = "cpu") -> dict:
    """All formats with the same settings and seed: settings, chance level and one result per format."""
    return {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
            "chance": CHANCE[s.task],
            "formats": {fmt: train_format(s, fmt, device) for fmt in formats}}


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
