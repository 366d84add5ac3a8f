"""The reference GRPO run of notebook 9, drawn from its results (autograde/data/grpo/run.json):

    grpo_curves(run, lang)      reward, greedy pass@1 on held-out problems, KL to the start and mean
                                completion length against the step (four stacked panels)
    pass_at_k_figure(run, lang) pass@k for k = 1 .. n before and after the run

`course figures` saves both for the site (grpo-curves.png, grpo-pass-at-k.png and their dark twins);
the notebook draws the same figures from its own run. Labels live in LABELS, keyed the same in
both languages.
"""
from __future__ import annotations

from pathlib import Path

CURVES_FIGURE, PASS_K_FIGURE, RESULTS_TABLE = "grpo-curves.png", "grpo-pass-at-k.png", "grpo-results.md"

LABELS = {
    "en": {"step": "GRPO step", "reward": "mean reward of the sampled groups (T = 1)",
           "pass1": "pass@1, greedy, on held-out problems", "kl": "KL to the starting model (k3, per token)",
           "length": "mean completion length (tokens)",
           "title": "GRPO on two-digit addition", "k": "k (samples per problem)", "passk": "pass@k (held out)",
           "before": "before RL", "after": "after RL", "passk_title": "pass@k before and after",
           "item": "item", "value": "value", "model": "model", "model_value": "{layers} layers, width {width}, "
           "{params:,} parameters", "run": "GRPO steps x prompts x group", "pass1_row": "pass@1, greedy, {n} held-out "
           "problems", "passk_row": "pass@{k}, {n} samples at T = {t}, {m} held-out problems", "arrow": "{a:.1%} -> {b:.1%}",
           "time": "RL time ({threads} thread): wall / CPU", "seconds": "{wall:.0f} s / {cpu:.0f} s",
           "speed": "steps per second (wall)"},
    "ko": {"step": "GRPO 스텝", "reward": "샘플링한 그룹의 평균 보상 (T = 1)",
           "pass1": "보류 문제의 pass@1 (탐욕적 디코딩)", "kl": "시작 모델과의 KL (k3, 토큰당)",
           "length": "풀이의 평균 길이 (토큰)",
           "title": "두 자리 덧셈에 GRPO", "k": "k (문제당 샘플 수)", "passk": "pass@k (보류 문제)",
           "before": "강화학습 전", "after": "강화학습 후", "passk_title": "강화학습 전후의 pass@k",
           "item": "항목", "value": "값", "model": "모델", "model_value": "{layers}층, 폭 {width}, 파라미터 {params:,}개",
           "run": "GRPO 스텝 x 프롬프트 x 그룹", "pass1_row": "pass@1, 탐욕적 디코딩, 보류 문제 {n}개",
           "passk_row": "pass@{k}, T = {t}에서 샘플 {n}개, 보류 문제 {m}개", "arrow": "{a:.1%} -> {b:.1%}",
           "time": "강화학습 시간 (스레드 {threads}개): 경과 / CPU", "seconds": "{wall:.0f}초 / {cpu:.0f}초",
           "speed": "초당 스텝 (경과 시간 기준)"},
}


def _smooth(values: list[float], width: int = 10) -> list[float]:
    """Trailing mean over `width` steps: one step's reward is a noisy sample of 256 completions."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0.0)
        out.append(total / min(i + 1, width))
    return out


def grpo_curves(run: dict, lang: str = "en"):
    from autograde.figures import FIGURE_WIDTH_IN, _pyplot

    plt = _pyplot()
    L = LABELS[lang]
    rows = [h for h in run["history"] if "reward" in h]
    steps = [h["step"] for h in rows]
    evals = [h for h in run["history"] if "pass_at_1" in h]
    fig, axes = plt.subplots(4, 1, figsize=(FIGURE_WIDTH_IN, 9.0), sharex=True, layout="constrained")
    for ax, key, color in ((axes[0], "reward", "#1f77b4"), (axes[2], "kl", "#9467bd"),
                           (axes[3], "length", "#7f7f7f")):
        values = [h[key] for h in rows]
        ax.plot(steps, values, color=color, alpha=0.25, lw=0.8)
        ax.plot(steps, _smooth(values), color=color, lw=1.6)
        ax.set_title(L[key], loc="left")
    axes[1].plot([h["step"] for h in evals], [h["pass_at_1"] for h in evals], "o-", ms=3, color="#2ca02c")
    axes[1].set_title(L["pass1"], loc="left")
    axes[1].set_ylim(0, 1)
    axes[0].set_ylim(0, 1)
    axes[-1].set_xlabel(L["step"])
    fig.suptitle(L["title"])
    return fig


def pass_at_k_figure(run: dict, lang: str = "en"):
    from autograde.figures import FIGURE_WIDTH_IN, _pyplot

    plt = _pyplot()
    L = LABELS[lang]
    ks = list(range(1, len(run["pass_at_k_before"]) + 1))
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 3.8), layout="constrained")
    ax.plot(ks, run["pass_at_k_before"], "o-", ms=3, color="#7f7f7f", label=L["before"])
    ax.plot(ks, run["pass_at_k_after"], "o-", ms=3, color="#2ca02c", label=L["after"])
    ax.set_xticks([1, 4, 8, 12, 16] if len(ks) == 16 else ks)
    ax.set_xlabel(L["k"])
    ax.set_ylabel(L["passk"])
    ax.set_ylim(0, 1.02)
    ax.set_title(L["passk_title"])
    ax.legend(loc="lower right")
    return fig


def results_md(run: dict, sft: dict, lang: str) -> str:
    """The numbers the chapter quotes, as a table (figures/grpo-results.md)."""
    L, s, cfg = LABELS[lang], run["settings"], sft["config"]
    n, last = s["pass_k_n"], len(run["pass_at_k_before"])
    rows = [(L["model"], L["model_value"].format(layers=cfg["n_layer"], width=cfg["d_model"], params=sft["parameters"])),
            (L["run"], f"{s['steps']} x {s['prompts_per_step']} x {s['group_size']}"),
            (L["pass1_row"].format(n=s["held_out"]), L["arrow"].format(a=run["pass_at_1_before"],
                                                                        b=run["pass_at_1_after"]))]
    for k in (1, last):
        rows.append((L["passk_row"].format(k=k, n=n, t=s["pass_k_temperature"], m=s["pass_k_problems"]),
                     L["arrow"].format(a=run["pass_at_k_before"][k - 1], b=run["pass_at_k_after"][k - 1])))
    rows += [(L["time"].format(threads=s["threads"]), L["seconds"].format(wall=run["rl_wall_seconds"],
                                                                        cpu=run["rl_cpu_seconds"])),
             (L["speed"], f"{run['steps_per_second']:.2f}")]
    lines = [f"| {L['item']} | {L['value']} |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


def make_grpo_figures(run: dict, sft: dict, lang: str, out: Path) -> list[Path]:
    from autograde.figures import _save

    (Path(out) / RESULTS_TABLE).write_text(results_md(run, sft, lang), encoding="utf-8")
    return [_save(grpo_curves(run, lang), Path(out) / CURVES_FIGURE),
            _save(pass_at_k_figure(run, lang), Path(out) / PASS_K_FIGURE), Path(out) / RESULTS_TABLE]
