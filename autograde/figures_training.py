"""The loss curve of the course's reference model, drawn from its training log
(autograde/data/reference/train_log.json): training loss, validation loss per language,
the step whose weights were kept (early stopping) and the learning-rate schedule.

    loss_curve(log, lang)            a matplotlib figure (notebook 6 shows it)
    fig_loss_curve(plt, log, lang, path)   the same figure saved as a PNG for the site
                                     (course/<lang>/figures/training-loss.png, from `course figures`)

Labels live in LABELS, one entry per language with the same keys.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from autograde.figure_style import MIN_FONT_PT, _pyplot, _save

LANGS = ("en", "ko")
FIGURE_NAME = "training-loss.png"     # written by autograde.figures.make_all (`course figures`)

LABELS = {
    "en": {"step": "optimizer step", "loss": "cross-entropy (nats)", "lr": "learning rate",
           "train": "training batch", "val": "validation, {lang}", "kept": "weights kept (step {step})",
           "uniform": "uniform guess, log V = {value:.2f}", "title": "How the reference model learned",
           "en": "English", "ko": "Korean"},
    "ko": {"step": "옵티마이저 스텝", "loss": "교차 엔트로피 (nat)", "lr": "학습률",
           "train": "학습 배치", "val": "검증, {lang}", "kept": "남긴 가중치 ({step}스텝)",
           "uniform": "고르게 찍기, log V = {value:.2f}", "title": "참고 모델의 학습 과정",
           "en": "영어", "ko": "한국어"},
}


def schedule(step: int, settings: dict) -> float:
    """The reference run's learning rate at `step` (0-based): autograde.reference.train.lr_at."""
    lr, warmup, total = settings["lr"], settings["warmup"], settings["steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def loss_curve(log: dict, lang: str = "en"):
    """The figure (pyplot with the Hangul font registered; a notebook keeps its inline backend)."""
    plt = _pyplot()

    if lang not in LABELS:
        raise ValueError(f"language must be one of {LANGS}, not {lang!r}")
    L = LABELS[lang]
    hist = log["history"]
    steps = [h["step"] for h in hist]
    fig, ax = plt.subplots(figsize=(5.2, 5.6))         # at most 5.2 in wide: readable on a phone
    ax.plot(steps, [h["train_loss"] for h in hist], "o-", ms=3, color="#7f7f7f", label=L["train"])
    for code, color in (("en", "#1f77b4"), ("ko", "#d62728")):
        ax.plot(steps, [h["val_loss_by_language"][code] for h in hist], color=color,
                label=L["val"].format(lang=L[code]))
    vocab = log.get("config", {}).get("vocab_size")
    if vocab:
        ax.axhline(math.log(vocab), color="#bbbbbb", ls=":", lw=1, label=L["uniform"].format(value=math.log(vocab)))
    best = log.get("best_step")
    if best:
        ax.axvline(best, color="#2ca02c", ls="--", lw=1, label=L["kept"].format(step=best))
    ax.set_xlabel(L["step"])
    ax.set_ylabel(L["loss"])
    ax.set_title(L["title"])
    settings = log.get("settings")
    if settings:
        lr_ax = ax.twinx()
        xs = list(range(settings["steps"]))
        lr_ax.plot([x + 1 for x in xs], [schedule(x, settings) for x in xs], color="#9467bd", lw=0.8, alpha=0.6)
        lr_ax.set_ylabel(L["lr"], color="#9467bd")
        lr_ax.tick_params(axis="y", colors="#9467bd")
    # below the axes, at the site's smallest text size, one entry a line
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=MIN_FONT_PT, frameon=False)
    fig.tight_layout()
    return fig


def fig_loss_curve(plt, log: dict, lang: str, path: Path) -> Path:
    """Save the figure (plt: autograde.figure_style._pyplot(), which registers the Hangul font)."""
    return _save(loss_curve(log, lang), Path(path))
