"""GRPO on a task with a checkable answer: two-digit addition, from a tiny model that is partly
right to one that is mostly right, on a CPU.

The pieces, each a short function that the notebook's steps ask the students to write and that
the checks compare against:

    sample_group        G completions per prompt at a temperature (the course's sample_next)
    token_logprobs      log pi(token | tokens before it), gathered at the sampled ids
    completion_mask     1 on the completion's tokens up to and including the end marker
    group_advantages    (r - mean) / (std + eps) inside each prompt's group, 0 for equal groups
    kl_k3               the KL estimate of DeepSeekMath: exp(q - p) - (q - p) - 1
    grpo_loss           the clipped surrogate with the ratio to the sampling policy, minus beta KL,
                        averaged per sequence then over sequences ("sequence", DeepSeekMath) or over
                        every completion token of the batch ("token", DAPO)

Alignment used everywhere: for sequences `ids` (B, T) whose first `prompt_len` tokens are the
prompt, position j of a (B, T - 1) tensor is about token j + 1 (the model predicts it from the
tokens 0..j). token_logprobs and completion_mask both use it, so the mask multiplies the
log-probs directly.

The starting model is trained here too (`build_start_model`, `course grpo-start`): the
course's Llama-style model, 2 layers 64 wide, supervised on a part of the training problems
for a fixed number of steps, so that it solves some held-out problems but not most.
Everything is deterministic under the seeds in the settings and a fixed number of CPU threads.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from autograde.errors import CourseError
from autograde.reference.model import KVCache, ModelConfig, Transformer
from autograde.reference.sampling import sample_next

GRPO_DIR = Path(__file__).resolve().parent.parent / "data" / "grpo"
WEIGHTS_FILE, CONFIG_FILE, SFT_LOG_FILE, RUN_FILE = "model.safetensors", "config.json", "sft_log.json", "run.json"

# ----------------------------------------------------------------------------
# the task: a + b = ? for two-digit a and b, one character per token

END, PAD = "<end>", "<pad>"
VOCAB = tuple("0123456789+=") + (END, PAD)
STOI = {s: i for i, s in enumerate(VOCAB)}
END_ID, PAD_ID = STOI[END], STOI[PAD]
PROMPT_LEN = 6                      # "23+45=": every prompt has the same length, no padding on the left
MAX_NEW_TOKENS = 6                  # the longest right answer is "198" + <end>: 4; a longer one never ends


def encode(text: str) -> list[int]:
    return [STOI[c] for c in text]


def decode(ids) -> str:
    """The text up to the first end marker (or all of it)."""
    out = []
    for i in ids:
        if int(i) in (END_ID, PAD_ID):
            break
        out.append(VOCAB[int(i)])
    return "".join(out)


def prompt_text(a: int, b: int) -> str:
    return f"{a}+{b}="


def answer_text(a: int, b: int) -> str:
    return str(a + b)


def all_problems() -> list[tuple[int, int]]:
    return [(a, b) for a in range(10, 100) for b in range(10, 100)]


def split_problems(seed: int, held_out: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, held-out): the 8,100 problems shuffled once; the held-out ones are never trained on."""
    problems = all_problems()
    order = torch.randperm(len(problems), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [problems[i] for i in order]
    return shuffled[held_out:], shuffled[:held_out]


def prompt_batch(problems) -> torch.Tensor:
    return torch.tensor([encode(prompt_text(a, b)) for a, b in problems])          # (P, PROMPT_LEN)


def rewards_of(completions: torch.Tensor, problems, group_size: int) -> torch.Tensor:
    """(P * G, L) completion ids, grouped by prompt -> (P, G) rewards: 1 when the completion is the
    right number followed by the end marker, else 0."""
    out = torch.zeros(len(problems), group_size)
    for row, ids in enumerate(completions.tolist()):
        a, b = problems[row // group_size]
        ended = END_ID in ids
        out[row // group_size, row % group_size] = float(ended and decode(ids) == answer_text(a, b))
    return out


def start_config() -> ModelConfig:
    """The course's Llama-style model at its smallest: 2 layers, 64 wide, 14 tokens."""
    return ModelConfig.llama_style(vocab_size=len(VOCAB), d_model=64, n_layer=2, n_head=4, n_kv_head=4, d_ff=176,
                                   max_seq_len=PROMPT_LEN + MAX_NEW_TOKENS, tie_embeddings=True)


# ----------------------------------------------------------------------------
# the GRPO pieces


@torch.no_grad()
def sample_group(model: Transformer, prompts: torch.Tensor, group_size: int, temperature: float = 1.0,
                 max_new_tokens: int = MAX_NEW_TOKENS, generator: torch.Generator | None = None,
                 greedy: bool = False, end_id: int = END_ID, pad_id: int = PAD_ID,
                 use_cache: bool = True) -> torch.Tensor:
    """(P, Tp) prompts -> (P * G, Tp + L) sequences, rows p * G .. p * G + G - 1 for prompt p.

    One call of the course's sample_next per new token draws that token for every row at once,
    at `temperature`, from `generator`; a row that has written the end marker gets pad_id
    afterwards; the loop stops when every row has ended, or after max_new_tokens (a completion
    that never ends stops there, without an end marker). use_cache=False runs the model on the
    whole sequence at each token (what the notebook's version does): the same tokens."""
    if group_size < 1:
        raise CourseError(f"group_size must be >= 1 (got {group_size})")
    if hasattr(model, "eval"):
        model.eval()
    ids = prompts.repeat_interleave(group_size, dim=0)                            # (B, Tp)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    cache = KVCache(model.cfg.n_layer) if use_cache else None
    step_input = ids
    for _ in range(max_new_tokens):
        logits = (model(step_input, cache=cache) if use_cache else model(ids))[:, -1, :].float()  # (B, V)
        token = sample_next(logits, temperature, greedy=greedy, generator=generator)  # (B,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        done |= token == end_id
        if bool(done.all()):
            break
        step_input = token[:, None]
    return ids


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits of the model on (B, T) ids -> (B, T - 1): log-prob of ids[:, j + 1] given ids[:, :j + 1]."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)                    # (B, T-1, V)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)                        # (B, T-1)


def completion_mask(ids: torch.Tensor, prompt_len: int, end_id: int = END_ID) -> torch.Tensor:
    """(B, T) ids -> (B, T - 1) float mask aligned with token_logprobs: 1 for the completion's
    tokens up to and including the first end marker; 0 for the prompt and whatever follows the end."""
    completion = ids[:, prompt_len:]                                           # (B, L)
    ended_before = (completion == end_id).long().cumsum(dim=1) - (completion == end_id).long()  # ends strictly before
    keep = (ended_before == 0).float()                                         # (B, L)
    prompt = torch.zeros(ids.shape[0], prompt_len - 1, dtype=keep.dtype, device=ids.device)
    return torch.cat([prompt, keep], dim=1)                                    # (B, T-1)


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(P, G) rewards -> (P, G) advantages (r - mean) / (std + eps) per row; exactly 0 for a row of equal rewards."""
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, unbiased=False, keepdim=True)
    advantages = (rewards - mean) / (std + eps)
    equal = (rewards == rewards[:, :1]).all(dim=-1, keepdim=True)
    return torch.where(equal, torch.zeros_like(advantages), advantages)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from tokens sampled by pi_theta (Schulman's k3):
    pi_ref / pi_theta - log(pi_ref / pi_theta) - 1, never negative, unbiased."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


NORMALIZATIONS = ("sequence", "token")


def grpo_terms(logp, old_logp, ref_logp, advantages, mask, clip_eps: float = 0.2, beta: float = 0.04,
               normalization: str = "sequence") -> dict[str, torch.Tensor]:
    """The loss and its parts. Shapes: logp, old_logp, ref_logp, mask (B, T - 1); advantages (B,).

    per token:  r = exp(logp - old_logp)   (old_logp detached: the policy that sampled)
                s = min(r A, clip(r, 1 - eps, 1 + eps) A)
                l = -(s - beta k3)
    "sequence": mean over each sequence's masked tokens, then over sequences (DeepSeekMath)
    "token":    sum over every masked token of the batch / their number (DAPO)"""
    if normalization not in NORMALIZATIONS:
        raise CourseError(f"normalization must be one of {NORMALIZATIONS} (got {normalization!r})")
    ratio = torch.exp(logp - old_logp.detach())
    adv = advantages[:, None]                                                   # (B, 1): one per sequence
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    kl = kl_k3(logp, ref_logp.detach())
    per_token = -(surrogate - beta * kl)                                        # (B, T-1)
    mask = mask.to(per_token.dtype)
    if normalization == "sequence":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    else:
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    n = mask.sum().clamp(min=1)
    return {"loss": loss, "surrogate": (surrogate * mask).sum() / n, "kl": (kl * mask).sum() / n,
            "clipped": (((ratio - 1).abs() > clip_eps).float() * mask).sum() / n}


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, clip_eps: float = 0.2, beta: float = 0.04,
              normalization: str = "sequence") -> torch.Tensor:
    return grpo_terms(logp, old_logp, ref_logp, advantages, mask, clip_eps, beta, normalization)["loss"]


# ----------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def pass_at_1_greedy(model: Transformer, problems, batch: int = 512) -> float:
    """Share of `problems` the greedy completion gets right."""
    right = 0
    for start in range(0, len(problems), batch):
        part = problems[start:start + batch]
        ids = sample_group(model, prompt_batch(part).to(next(model.parameters()).device), 1, greedy=True)
        right += int(rewards_of(ids[:, PROMPT_LEN:].cpu(), part, 1).sum())
    return right / len(problems)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@k needs k <= n: {k} samples cannot be chosen from {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@torch.no_grad()
def correct_counts(model: Transformer, problems, n: int, temperature: float, seed: int, batch: int = 64) -> list[int]:
    """For each problem, how many of n sampled completions are right."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    counts = []
    for start in range(0, len(problems), batch):
        part = problems[start:start + batch]
        ids = sample_group(model, prompt_batch(part).to(gen.device), n, temperature, generator=gen)
        counts += rewards_of(ids[:, PROMPT_LEN:].cpu(), part, n).sum(-1).int().tolist()
    return counts


def pass_at_k_curve(counts: list[int], n: int, ks) -> list[float]:
    return [sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks]


# ----------------------------------------------------------------------------
# the starting model: supervised, briefly


@dataclass
class SFTSettings:
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    train_problems: int = 2000       # the SFT sees only these (the RL run draws from all training problems)
    held_out: int = 500
    seed: int = 19
    threads: int = 1


def sft_batch(problems, gen: torch.Generator, batch_size: int):
    """Whole sequences prompt + answer + <end>, padded with PAD; the loss counts the answer and <end> only."""
    picks = torch.randint(0, len(problems), (batch_size,), generator=gen).tolist()
    seqs = [encode(prompt_text(*problems[i]) + answer_text(*problems[i])) + [END_ID] for i in picks]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [PAD_ID] * (width - len(s)) for s in seqs])        # (B, T)
    targets = ids[:, 1:].clone()
    targets[:, :PROMPT_LEN - 1] = -100                                           # the prompt is given, not learned
    targets[targets == PAD_ID] = -100
    return ids, targets


def train_start_model(settings: SFTSettings | None = None, progress: bool = False) -> tuple[Transformer, dict]:
    s = settings or SFTSettings()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    started, cpu0 = time.perf_counter(), time.process_time()
    train, held = split_problems(s.seed, s.held_out)
    sft_problems = train[:s.train_problems]
    model = Transformer(start_config())
    model.reset_parameters(seed=s.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=(0.9, 0.98), weight_decay=0.0)
    gen = torch.Generator().manual_seed(s.seed)
    steps = range(s.steps)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="supervised start", unit="step")
    model.train()
    for _ in steps:
        ids, targets = sft_batch(sft_problems, gen, s.batch_size)
        loss = F.cross_entropy(model(ids)[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    log = {"settings": asdict(s), "config": model.cfg.to_dict(), "parameters": model.num_parameters(),
           "final_loss": round(loss.item(), 6), "pass_at_1_held_out": pass_at_1_greedy(model, held),
           "pass_at_1_sft_problems": pass_at_1_greedy(model, sft_problems[:500]),
           "wall_seconds": round(time.perf_counter() - started, 2),
           "cpu_seconds": round(time.process_time() - cpu0, 2)}
    return model, log


def build_start_model(out_dir: Path = GRPO_DIR, settings: SFTSettings | None = None, progress: bool = False) -> dict:
    """Train the starting model and write its weights, config and log (`course grpo-start`)."""
    from safetensors.torch import save_file

    model, log = train_start_model(settings, progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out_dir / WEIGHTS_FILE),
              metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n")
    (out_dir / SFT_LOG_FILE).write_text(json.dumps(log, indent=2) + "\n")
    return log


def load_start_model(directory: Path = GRPO_DIR, device="cpu") -> Transformer:
    """The shipped starting model (weights under autograde/data/grpo)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise CourseError(f"{directory / name} is missing; run `course grpo-start` to create it")
    model = Transformer(ModelConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text())))
    model.load_weights(load_file(str(directory / WEIGHTS_FILE)))
    return model.to(device).eval()


# ----------------------------------------------------------------------------
# the loop


@dataclass
class GRPOSettings:
    steps: int = 600
    prompts_per_step: int = 32
    group_size: int = 8
    temperature: float = 1.0
    lr: float = 1e-3                    # 2e-3 and above collapse the policy within 25 steps
    clip_eps: float = 0.2
    beta: float = 0.04
    normalization: str = "sequence"
    updates_per_batch: int = 1          # mu: gradient steps per sampled batch; with 1 the ratio is 1 when the
                                        # gradient is taken (clipping only acts from the 2nd step on a batch)
    eval_every: int = 25
    held_out: int = 500
    seed: int = 19
    threads: int = 1                    # one thread: deterministic bits, immune to spin-waits on a busy machine
    pass_k_n: int = 16                  # samples per held-out problem for pass@k, k = 1 .. pass_k_n
    pass_k_problems: int = 200
    pass_k_temperature: float = 1.0


def check_step_inputs(rewards: torch.Tensor, problems, group_size: int) -> None:
    """Bad input named before it turns into a silent no-op or a broadcast."""
    if group_size < 2:
        raise CourseError(f"a group of {group_size} completion has no baseline to compare with: "
                          "group-relative advantages need group_size >= 2")
    if tuple(rewards.shape) != (len(problems), group_size):
        raise CourseError(f"rewards have shape {tuple(rewards.shape)}, expected (prompts, group_size) = "
                          f"({len(problems)}, {group_size})")


def finite_or_raise(terms: dict[str, torch.Tensor], step: int) -> None:
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value).all())]
    if bad:
        raise CourseError(f"step {step}: the loss is not finite; not finite: {', '.join(bad)}")


def grpo_step(policy, reference, optimizer, problems, s: GRPOSettings, gen: torch.Generator, step: int = 0) -> dict:
    """One GRPO step: sample groups, score them, advantages, mu gradient steps on the clipped objective."""
    device = next(policy.parameters()).device
    prompts = prompt_batch(problems).to(device)
    ids = sample_group(policy, prompts, s.group_size, s.temperature, generator=gen, use_cache=False)  # (B, T)
    rewards = rewards_of(ids[:, PROMPT_LEN:].cpu(), problems, s.group_size)               # (P, G)
    check_step_inputs(rewards, problems, s.group_size)
    advantages = group_advantages(rewards).flatten().to(device)                          # (B,)
    mask = completion_mask(ids, PROMPT_LEN)                                               # (B, T-1)
    with torch.no_grad():
        old_logp = token_logprobs(policy(ids), ids)
        ref_logp = token_logprobs(reference(ids), ids)
    policy.train()
    for _ in range(s.updates_per_batch):
        terms = grpo_terms(token_logprobs(policy(ids), ids), old_logp, ref_logp, advantages, mask,
                           s.clip_eps, s.beta, s.normalization)
        finite_or_raise(terms, step)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
    policy.eval()
    lengths = mask.sum(-1)
    return {"reward": rewards.mean().item(), "kl": terms["kl"].item(), "loss": terms["loss"].item(),
            "clipped": terms["clipped"].item(), "length": lengths.mean().item(),
            "ended": float((ids[:, PROMPT_LEN:] == END_ID).any(-1).float().mean()),
            "zero_groups": int((rewards == rewards[:, :1]).all(-1).sum())}


def run_grpo(settings: GRPOSettings | None = None, start: Transformer | None = None, progress: bool = True,
             pass_k: bool = True, device="cpu") -> tuple[Transformer, dict]:
    """The whole run: a copy of the starting model trained by GRPO; the log of every step."""
    import copy

    s = settings or GRPOSettings()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    start = start if start is not None else load_start_model(device=device)
    reference = copy.deepcopy(start).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    policy = copy.deepcopy(start)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
    train, held = split_problems(SFTSettings().seed, s.held_out)
    gen = torch.Generator(device=device).manual_seed(s.seed)
    pick = torch.Generator().manual_seed(s.seed + 1)
    started, cpu0 = time.perf_counter(), time.process_time()
    history = [{"step": 0, "pass_at_1": pass_at_1_greedy(policy, held)}]
    steps = range(1, s.steps + 1)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="GRPO", unit="step")
    for step in steps:
        idx = torch.randint(0, len(train), (s.prompts_per_step,), generator=pick).tolist()
        row = {"step": step, **grpo_step(policy, reference, optimizer, [train[i] for i in idx], s, gen, step)}
        if step % s.eval_every == 0 or step == s.steps:
            row["pass_at_1"] = pass_at_1_greedy(policy, held)
        history.append(row)
        if progress:
            steps.set_postfix(reward=f"{row['reward']:.2f}", kl=f"{row['kl']:.3f}",
                              **({"pass1": f"{row['pass_at_1']:.2f}"} if "pass_at_1" in row else {}))
    rl_wall, rl_cpu = time.perf_counter() - started, time.process_time() - cpu0
    log = {"settings": asdict(s), "history": history,
           "pass_at_1_before": history[0]["pass_at_1"], "pass_at_1_after": history[-1]["pass_at_1"],
           "rl_wall_seconds": round(rl_wall, 2), "rl_cpu_seconds": round(rl_cpu, 2),
           "steps_per_second": round(s.steps / rl_wall, 3)}
    if pass_k:
        ks = list(range(1, s.pass_k_n + 1))
        probe = held[:s.pass_k_problems]
        for name, model in (("before", start), ("after", policy)):
            counts = correct_counts(model, probe, s.pass_k_n, s.pass_k_temperature, s.seed + 2)
            log[f"pass_at_k_{name}"] = [round(v, 6) for v in pass_at_k_curve(counts, s.pass_k_n, ks)]
            log[f"never_solved_{name}"] = sum(c == 0 for c in counts)
    return policy, log


def machine_record() -> dict:
    """Where a run was measured: the load is part of the story on a shared machine."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {"python": platform.python_version(), "torch": torch.__version__, "processor": platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_1_5_15": [round(x, 2) for x in load],
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
