"""Train the course's reference tokenizer and model from the committed corpus.

Deterministic: one seed fixes the tokenizer (BPE has a documented
tie-break), the train/validation split, the initial weights, the batch order
and the samples. CPU training uses a fixed number of threads (1, TrainSettings.threads) because the
order of floating-point reductions, and so the last bits of every weight,
depend on it.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from autograde.reference.checkpoint import REFERENCE_DIR, save_checkpoint
from autograde.reference.corpus import CORPUS_DIR, LANGUAGES, corpus_fingerprint, load_corpus
from autograde.reference.model import ModelConfig, Transformer
from autograde.reference.sampling import generate
from autograde.reference.tokenizer import ENDOFTEXT, BPETokenizer

SAMPLE_PROMPTS = {"en": ["The model reads", "A token is"], "ko": ["언어 모델은", "겨울에는"]}


@dataclass
class TrainSettings:
    vocab_size: int = 2048
    steps: int = 900
    batch_size: int = 24
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    eval_every: int = 50
    eval_batches: int = 8
    validation_fraction: float = 0.1
    seed: int = 1234
    threads: int = 1   # one thread: immune to OpenMP spin-waits when the machine is busy


def reference_config(vocab_size: int, seq_len: int) -> ModelConfig:
    """The course model: Llama-style, small enough to train on a laptop CPU."""
    return ModelConfig.llama_style(
        vocab_size=vocab_size, d_model=128, n_layer=4, n_head=4, n_kv_head=2, d_ff=352,
        max_seq_len=seq_len, tie_embeddings=True)


def split_streams(tok: BPETokenizer, corpus: dict[str, list[str]], fraction: float):
    """Per language: token stream of all documents, last `fraction` held out."""
    eot = tok.special_tokens[ENDOFTEXT]
    train, valid, stats = {}, {}, {}
    for lang, docs in corpus.items():
        ids: list[int] = []
        for doc in docs:
            ids.extend(tok.encode_ordinary(doc))
            ids.append(eot)
        cut = int(len(ids) * (1 - fraction))
        train[lang] = torch.tensor(ids[:cut])
        valid[lang] = torch.tensor(ids[cut:])
        stats[lang] = {"documents": len(docs), "characters": sum(len(d) for d in docs), "tokens": len(ids)}
    return train, valid, stats


def random_windows(stream: torch.Tensor, n: int, seq_len: int, gen: torch.Generator):
    """n random (input, target) windows of seq_len tokens: targets are inputs shifted by one."""
    starts = torch.randint(0, len(stream) - seq_len - 1, (n,), generator=gen)
    x = torch.stack([stream[s:s + seq_len] for s in starts.tolist()])          # (n, T)
    y = torch.stack([stream[s + 1:s + seq_len + 1] for s in starts.tolist()])  # (n, T)
    return x, y


def mixed_batch(streams: dict[str, torch.Tensor], batch: int, seq_len: int, gen: torch.Generator):
    """Half the batch from each language, so neither language dominates."""
    parts = [random_windows(streams[lang], batch // len(streams), seq_len, gen) for lang in LANGUAGES]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def lr_at(step: int, s: TrainSettings) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: Transformer, streams: dict[str, torch.Tensor], s: TrainSettings) -> dict[str, float]:
    model.eval()
    gen = torch.Generator().manual_seed(s.seed + 1)  # same windows at every evaluation
    losses = {}
    for lang in LANGUAGES:
        x, y = random_windows(streams[lang], s.eval_batches * 8, s.seq_len, gen)
        logits = model(x)
        losses[lang] = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    model.train()
    return losses


def train_reference(out_dir: Path = REFERENCE_DIR, corpus_dir: Path = CORPUS_DIR,
                    settings: TrainSettings | None = None, progress: bool = True) -> dict:
    s = settings or TrainSettings()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    started = time.perf_counter()

    corpus = load_corpus(corpus_dir)
    all_text = "\n".join(doc for lang in LANGUAGES for doc in corpus[lang])
    tok = BPETokenizer.train(all_text, s.vocab_size, special_tokens=(ENDOFTEXT,), progress=progress)
    tokenizer_seconds = time.perf_counter() - started
    train, valid, stats = split_streams(tok, corpus, s.validation_fraction)

    cfg = reference_config(tok.vocab_size, s.seq_len)
    cfg.extra = {"corpus_sha256": corpus_fingerprint(corpus_dir), "seed": s.seed}
    model = Transformer(cfg)
    model.reset_parameters(seed=s.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=s.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(s.seed)

    # The corpus is small, so the model starts to memorize it after a few
    # hundred steps: keep the weights of the evaluation with the lowest
    # validation loss (early stopping), deterministically.
    history = []
    best = {"val_loss": float("inf"), "step": 0, "state": None}
    steps = range(s.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="training", unit="step")
    model.train()
    for step in steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        x, y = mixed_batch(train, s.batch_size, s.seq_len, gen)
        logits = model(x)                                              # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % s.eval_every == 0 or step == 0 or step + 1 == s.steps:
            val = evaluate(model, valid, s)
            history.append({"step": step + 1, "train_loss": loss.item(),
                            "val_loss": sum(val.values()) / len(val), "val_loss_by_language": val})
            if history[-1]["val_loss"] < best["val_loss"]:
                best = {"val_loss": history[-1]["val_loss"], "step": step + 1,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            if progress and hasattr(steps, "set_postfix"):
                steps.set_postfix(train=f"{loss.item():.3f}", val=f"{history[-1]['val_loss']:.3f}")

    model.load_state_dict(best["state"])
    model.eval()
    samples = {lang: [{"prompt": p, "continuation": tok.decode(generate(model, tok.encode(p), 40, greedy=True))}
                      for p in prompts] for lang, prompts in SAMPLE_PROMPTS.items()}
    save_checkpoint(model, tok, out_dir)
    log = {
        "parameters": model.num_parameters(),
        "config": cfg.to_dict(),
        "settings": s.__dict__,
        "corpus": stats,
        "tokenizer_seconds": round(tokenizer_seconds, 2),
        "train_seconds": round(time.perf_counter() - started, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": s.threads,
                    "processor": platform.machine()},
        "history": history,
        "final": next(h for h in history if h["step"] == best["step"]),
        "best_step": best["step"],
        "samples_greedy": samples,
    }
    (Path(out_dir) / "train_log.json").write_text(json.dumps(log, indent=2, ensure_ascii=False) + "\n")
    return log
