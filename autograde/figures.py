"""Every figure of the site, drawn from the reference model and tokenizer.

`course figures` (and `course build`) writes, for each language, into
course/<lang>/figures/: PNG figures with labels in that language and small
Markdown tables that pages include with `--8<-- "figures/NAME.md"`.
Everything is deterministic: fixed inputs, no sampling, no timestamps.

The rules every figure is drawn by (readable on a phone, a dark twin) live in
autograde.figure_style, which the loss curve (autograde.figures_training) uses too.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from autograde.errors import CourseError
from autograde.figure_style import (  # noqa: F401  (re-exported: notebooks and tests use figures.*)
    DARK_BACKGROUND, DARK_FOREGROUND, DARK_SUFFIX, FIGURE_DPI, FIGURE_WIDTH_IN, MIN_FONT_PT, SIDECAR, _pyplot,
    _save, dark_path, dark_variant, figure_texts)

LANGS = ("en", "ko")
SENTENCE_BAE = "애, 겨울 배가 맛있단다!"
LOGITS_EXAMPLE = [2.0, 1.0, 0.5, 0.2, -1.0]

# The same content in both languages, written for this course, to compare
# how many tokens each language needs.
PARALLEL = [
    ("The model reads tokens, not letters.", "모델은 글자가 아니라 토큰을 읽습니다."),
    ("In winter, pears are sweet and cold.", "겨울에는 배가 달고 시원합니다."),
    ("Attention mixes the values of earlier tokens.", "어텐션은 앞선 토큰들의 값을 섞습니다."),
    ("She went to the library to read a book.", "그녀는 책을 읽으려고 도서관에 갔습니다."),
    ("We cooked soup with potatoes and onions.", "우리는 감자와 양파로 국을 끓였습니다."),
    ("The cache keeps the keys and values of the past.", "캐시는 지나간 키와 값을 보관합니다."),
]

LABELS = {
    "en": {
        "language": "Language", "english": "English", "korean": "Korean", "sentence": "sentence",
        "tokens": "tokens", "characters": "characters", "bytes": "UTF-8 bytes",
        "tokens_per_char": "tokens per character", "chars_per_token": "characters per token",
        "token_counts_title": "Tokens for the same sentences",
        "token_ratio_title": "Tokens per character",
        "parallel": "six parallel sentences", "corpus": "whole training corpus",
        "position": "position", "dimension": "dimension",
        "sinusoid_title": "Sinusoidal positional encoding\n(64 positions x 64 dimensions)",
        "sinusoid_lines": "Dimensions 0, 8 and 24 along the positions",
        "query": "query token (looking)", "key": "key token (looked at)",
        "attention_title": "Attention of the reference model, layer {layer}",
        "value_axis": "value", "logit": "logit",
        "head": "head {head}",
        "probability": "probability", "token": "token",
        "temperature_title": "Softmax of the logits\n{logits} at several temperatures",
        "topk_title": "Next token after “{prompt}”:\nthe {shown} likeliest, renormalized",
        "all": "all", "kept_k": "top-k={k}", "kept_p": "top-p={p}",
        "item": "item", "value": "value",
        "parameters": "parameters", "layers": "layers", "d_model": "model width d",
        "heads": "query heads / key-value heads", "d_ff": "FFN width", "vocab": "vocabulary size",
        "context": "context length", "position_kind": "positions", "norm_kind": "normalization",
        "ffn_kind": "feed-forward", "steps": "optimizer steps (weights kept from / run)", "train_time": "training time ({threads} CPU thread(s), wall clock)",
        "val_loss": "validation loss", "documents": "documents", "prompt": "prompt", "continuation": "greedy continuation",
        "seconds": "{s:.0f} s",
    },
    "ko": {
        "language": "언어", "english": "영어", "korean": "한국어", "sentence": "문장",
        "tokens": "토큰 수", "characters": "글자 수", "bytes": "UTF-8 바이트 수",
        "tokens_per_char": "글자당 토큰", "chars_per_token": "토큰당 글자",
        "token_counts_title": "같은 내용의 문장에 드는 토큰 수",
        "token_ratio_title": "글자당 토큰 수",
        "parallel": "같은 뜻의 문장 여섯 쌍", "corpus": "학습 말뭉치 전체",
        "position": "위치", "dimension": "차원",
        "sinusoid_title": "사인파 위치 인코딩\n(위치 64개 x 차원 64개)",
        "sinusoid_lines": "위치에 따른 0, 8, 24번 차원의 값",
        "query": "쿼리 토큰 (바라보는 쪽)", "key": "키 토큰 (보이는 쪽)",
        "attention_title": "참고 모델의 어텐션, {layer}번 층",
        "value_axis": "값", "logit": "로짓",
        "head": "{head}번 헤드",
        "probability": "확률", "token": "토큰",
        "temperature_title": "로짓 {logits}의\n온도별 소프트맥스",
        "topk_title": "“{prompt}” 다음 토큰:\n확률 상위 {shown}개, 다시 정규화한 값",
        "all": "전체", "kept_k": "top-k={k}", "kept_p": "top-p={p}",
        "item": "항목", "value": "값",
        "parameters": "파라미터 수", "layers": "층 수", "d_model": "모델 폭 d",
        "heads": "쿼리 헤드 / 키·값 헤드", "d_ff": "FFN 폭", "vocab": "어휘 집합 크기",
        "context": "컨텍스트 길이", "position_kind": "위치 표현", "norm_kind": "정규화",
        "ffn_kind": "피드포워드", "steps": "최적화 단계 (가중치를 남긴 단계 / 전체)", "train_time": "학습 시간 (CPU 스레드 {threads}개, 실제 경과 시간)",
        "val_loss": "검증 손실", "documents": "문서 수", "prompt": "프롬프트", "continuation": "탐욕적 디코딩 이어쓰기",
        "seconds": "{s:.0f}초",
    },
}
LANG_NAME = {"en": {"en": "English", "ko": "Korean"}, "ko": {"en": "영어", "ko": "한국어"}}


def token_label(tok, idx: int) -> str:
    """A readable label for one token: its text, or its bytes when it is part of a character."""
    raw = tok.token_bytes(idx)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "<" + raw.hex(" ") + ">"
    return text.replace(" ", "␣").replace("\n", "↵")


# ----------------------------------------------------------------------------
# tokens


def token_table_rows(tok, corpus_stats: dict) -> list[dict]:
    rows = []
    for i, lang in enumerate(("en", "ko")):
        text = " ".join(pair[i] for pair in PARALLEL)
        rows.append({"scope": "parallel", "lang": lang, "characters": len(text),
                     "bytes": len(text.encode("utf-8")), "tokens": len(tok.encode(text))})
    for lang in ("en", "ko"):
        stats = corpus_stats[lang]
        rows.append({"scope": "corpus", "lang": lang, "characters": stats["characters"], "bytes": None,
                     "tokens": stats["tokens"]})
    return rows


def token_stats_md(rows: list[dict], lang: str) -> str:
    L = LABELS[lang]
    head = [L["sentence"] if False else "", L["language"], L["characters"], L["bytes"], L["tokens"],
            L["tokens_per_char"], L["chars_per_token"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        scope = L["parallel"] if row["scope"] == "parallel" else L["corpus"]
        nbytes = f"{row['bytes']:,}" if row["bytes"] is not None else "–"
        lines.append(f"| {scope} | {LANG_NAME[lang][row['lang']]} | {row['characters']:,} | {nbytes} | "
                     f"{row['tokens']:,} | {row['tokens'] / row['characters']:.2f} | "
                     f"{row['characters'] / row['tokens']:.2f} |")
    return "\n".join(lines) + "\n"


def fig_token_counts(plt, tok, lang: str, path: Path) -> Path:
    L = LABELS[lang]
    counts = [(len(tok.encode(en)), len(tok.encode(ko))) for en, ko in PARALLEL]
    ratios = [(len(tok.encode(en)) / len(en), len(tok.encode(ko)) / len(ko)) for en, ko in PARALLEL]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(FIGURE_WIDTH_IN, 6.8), layout="constrained")  # stacked
    xs = range(len(PARALLEL))
    for j, (name, color) in enumerate(((L["english"], "#1f77b4"), (L["korean"], "#d62728"))):
        ax1.bar([x + (j - 0.5) * 0.38 for x in xs], [c[j] for c in counts], 0.38, label=name, color=color)
        ax2.bar([x + (j - 0.5) * 0.38 for x in xs], [r[j] for r in ratios], 0.38, label=name, color=color)
    for ax, title, ylabel in ((ax1, L["token_counts_title"], L["tokens"]),
                              (ax2, L["token_ratio_title"], L["tokens_per_char"])):
        ax.set_title(title)
        ax.set_xlabel(L["sentence"])
        ax.set_ylabel(ylabel)
        ax.set_xticks(list(xs), [str(x + 1) for x in xs])
    fig.legend(*ax1.get_legend_handles_labels(), ncols=2, loc="outside upper center")
    return _save(fig, path)


# ----------------------------------------------------------------------------
# positions and attention


def fig_sinusoidal(plt, lang: str, path: Path) -> Path:
    from autograde.reference.model import sinusoidal_table

    L = LABELS[lang]
    table = sinusoidal_table(64, 64).numpy()               # (P, C)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(FIGURE_WIDTH_IN, 7.6), height_ratios=(1.3, 1),
                                   layout="constrained")
    im = ax1.imshow(table.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
    ax1.set_title(L["sinusoid_title"])
    ax1.set_xlabel(L["position"])
    ax1.set_ylabel(L["dimension"])
    fig.colorbar(im, ax=ax1, ticks=[-1, 0, 1])
    for dim in (0, 8, 24):
        ax2.plot(table[:, dim], label=str(dim))
    ax2.set_title(L["sinusoid_lines"])
    ax2.set_xlabel(L["position"])
    ax2.set_ylabel(L["value_axis"])
    ax2.legend(title=L["dimension"], ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _save(fig, path)


def attention_maps(model, ids: list[int]) -> torch.Tensor:
    """Attention weights of every layer for one sequence: (n_layer, H, T, T)."""
    for block in model.blocks:
        block.attn.keep_weights = True
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))
        return torch.stack([block.attn.last_weights[0] for block in model.blocks])
    finally:
        for block in model.blocks:
            block.attn.keep_weights = False
            block.attn.last_weights = None


def fig_attention(plt, ref, lang: str, path: Path, layer: int = 1) -> Path:
    """One panel per head of one layer, two panels a row, so that a phone
    shows every token label at full size."""
    L = LABELS[lang]
    ids = ref.tokenizer.encode(SENTENCE_BAE)
    labels = [token_label(ref.tokenizer, i) for i in ids]
    maps = attention_maps(ref.model, ids)[layer]           # (H, T, T)
    n_head = maps.shape[0]
    cols = 2
    rows = -(-n_head // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(FIGURE_WIDTH_IN, 2.75 * rows + 1.2), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for h, ax in enumerate(axes.flat):
        if h >= n_head:
            ax.set_visible(False)
            continue
        ax.imshow(maps[h].numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(L["head"].format(head=h))
        ax.set_xticks(range(len(ids)), labels, rotation=90)
        ax.set_yticks(range(len(ids)), labels)
        ax.tick_params(length=2, pad=2)
    fig.supxlabel(L["key"])
    fig.supylabel(L["query"])
    fig.suptitle(L["attention_title"].format(layer=layer) + f"\n{SENTENCE_BAE}")
    return _save(fig, path)


# ----------------------------------------------------------------------------
# sampling


def fig_softmax_temperature(plt, lang: str, path: Path) -> Path:
    L = LABELS[lang]
    logits = torch.tensor(LOGITS_EXAMPLE)
    temps = (0.5, 1.0, 2.0)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 3.8), layout="constrained")
    width = 0.8 / len(temps)
    for j, t in enumerate(temps):
        probs = torch.softmax(logits / t, dim=-1)
        ax.bar([i + (j - 1) * width for i in range(len(logits))], probs.tolist(), width, label=f"T = {t}")
    ax.set_xticks(range(len(logits)), [f"{z:g}" for z in LOGITS_EXAMPLE])
    ax.set_xlabel(L["logit"])
    ax.set_ylabel(L["probability"])
    ax.set_title(L["temperature_title"].format(logits=LOGITS_EXAMPLE))
    ax.legend()
    return _save(fig, path)


def fig_top_k_top_p(plt, ref, lang: str, path: Path, k: int = 5, p: float = 0.8, shown: int = 10) -> Path:
    """Three panels side by side sharing one token axis: horizontal bars, so the
    token labels are written horizontally, once."""
    from matplotlib.ticker import MaxNLocator

    from autograde.reference.sampling import top_k_filter, top_p_filter

    L = LABELS[lang]
    prompt = "언어 모델은" if lang == "ko" else "The model"
    ids = ref.tokenizer.encode(prompt)
    with torch.no_grad():
        logits = ref.model(torch.tensor([ids]))[0, -1]       # (V,)
    probs = torch.softmax(logits, dim=-1)
    order = torch.sort(probs, descending=True, stable=True).indices[:shown]
    labels = [token_label(ref.tokenizer, int(i)) for i in order]
    panels = [(L["all"], torch.ones_like(probs, dtype=torch.bool)),
              (L["kept_k"].format(k=k), torch.isfinite(top_k_filter(logits, k))),
              (L["kept_p"].format(p=p), torch.isfinite(top_p_filter(logits, p)))]
    fig, axes = plt.subplots(1, 3, figsize=(FIGURE_WIDTH_IN, 0.3 * shown + 2.2), sharex=True, sharey=True,
                             layout="constrained")
    for ax, (title, keep) in zip(axes, panels):
        renorm = torch.where(keep, probs, torch.zeros_like(probs))
        renorm = renorm / renorm.sum()
        colors = ["#2ca02c" if keep[i] else "#cccccc" for i in order]
        ax.barh(range(shown), renorm[order].tolist(), color=colors)
        ax.set_yticks(range(shown), labels)
        ax.xaxis.set_major_locator(MaxNLocator(2))
        ax.set_title(title)
    axes[0].invert_yaxis()   # likeliest on top (the y axis is shared: once)
    axes[1].set_xlabel(L["probability"])
    fig.suptitle(L["topk_title"].format(prompt=prompt, shown=shown))
    return _save(fig, path)


# ----------------------------------------------------------------------------
# training and the model card


def model_stats_md(log: dict, lang: str) -> str:
    L = LABELS[lang]
    cfg = log["config"]
    final = log["final"]
    rows = [
        (L["parameters"], f"{log['parameters']:,}"),
        (L["layers"], cfg["n_layer"]), (L["d_model"], cfg["d_model"]),
        (L["heads"], f"{cfg['n_head']} / {cfg['n_kv_head']}"), (L["d_ff"], cfg["d_ff"]),
        (L["vocab"], f"{cfg['vocab_size']:,}"), (L["context"], cfg["max_seq_len"]),
        (L["position_kind"], cfg["position"]), (L["norm_kind"], cfg["norm"]), (L["ffn_kind"], cfg["ffn"]),
        (L["steps"], f"{log.get('best_step', log['settings']['steps']):,} / {log['settings']['steps']:,}"),
        (L["train_time"].format(threads=log["settings"]["threads"]), L["seconds"].format(s=log["train_seconds"])),
        (L["val_loss"], f"{final['val_loss']:.3f} (" + ", ".join(
            f"{LANG_NAME[lang][c]} {v:.3f}" for c, v in final["val_loss_by_language"].items()) + ")"),
    ]
    for code in ("en", "ko"):
        c = log["corpus"][code]
        rows.append((f"{LANG_NAME[lang][code]}: {L['documents']} / {L['characters']} / {L['tokens']}",
                     f"{c['documents']} / {c['characters']:,} / {c['tokens']:,}"))
    lines = [f"| {L['item']} | {L['value']} |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


def samples_md(log: dict, lang: str) -> str:
    L = LABELS[lang]
    lines = [f"| {L['language']} | {L['prompt']} | {L['continuation']} |", "|---|---|---|"]
    for code, samples in log["samples_greedy"].items():
        for s in samples:
            cont = s["continuation"].replace("|", "\\|").replace("\n", " ↵ ")
            lines.append(f"| {LANG_NAME[lang][code]} | `{s['prompt']}` | {cont} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------


def make_all(course_dir) -> list[Path]:
    """Write every figure and table for both languages; returns the paths."""
    from autograde.figures_grpo import make_grpo_figures
    from autograde.figures_thinking import RESULTS_MD, fig_thinking, figure_name, load_run, results_md
    from autograde.figures_training import FIGURE_NAME as LOSS_FIGURE, fig_loss_curve
    from autograde.reference.grpo import GRPO_DIR, RUN_FILE, SFT_LOG_FILE
    from autograde.reference.checkpoint import REFERENCE_DIR, load_reference

    plt = _pyplot()
    ref = load_reference()
    log_path = REFERENCE_DIR / "train_log.json"
    if not log_path.is_file():
        raise CourseError(f"{log_path} is missing; run `course train-reference`")
    log = json.loads(log_path.read_text(encoding="utf-8"))
    if not (GRPO_DIR / RUN_FILE).is_file():
        raise CourseError(f"{GRPO_DIR / RUN_FILE} is missing; run `python bench/bench_grpo.py`")
    grpo_run = json.loads((GRPO_DIR / RUN_FILE).read_text(encoding="utf-8"))
    grpo_sft = json.loads((GRPO_DIR / SFT_LOG_FILE).read_text(encoding="utf-8"))
    rows = token_table_rows(ref.tokenizer, log["corpus"])
    thinking = load_run()
    written = []
    for lang in LANGS:
        out = Path(course_dir) / lang / "figures"
        out.mkdir(parents=True, exist_ok=True)
        (out / SIDECAR).unlink(missing_ok=True)   # _save records each figure afresh
        written += [
            fig_token_counts(plt, ref.tokenizer, lang, out / "token-counts.png"),
            fig_sinusoidal(plt, lang, out / "sinusoidal-positions.png"),
            fig_attention(plt, ref, lang, out / "attention-heatmap.png"),
            fig_softmax_temperature(plt, lang, out / "softmax-temperature.png"),
            fig_top_k_top_p(plt, ref, lang, out / "top-k-top-p.png"),
            fig_loss_curve(plt, log, lang, out / LOSS_FIGURE),
            *make_grpo_figures(grpo_run, grpo_sft, lang, out),
            *(fig_thinking(plt, thinking, task, lang, out / figure_name(task)) for task in thinking["full"]),
        ]
        written += [dark_path(p) for p in written if p.parent == out and p.suffix == ".png"]
        for name, text in (("token-stats.md", token_stats_md(rows, lang)),
                           ("model-stats.md", model_stats_md(log, lang)),
                           ("samples.md", samples_md(log, lang)),
                           (RESULTS_MD, results_md(thinking, lang))):
            (out / name).write_text(text, encoding="utf-8")
            written.append(out / name)
        written.append(out / SIDECAR)
    return written
