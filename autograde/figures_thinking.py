"""The tokens-to-think experiment's figures and tables, drawn from its recorded run
(autograde/data/reference/thinking_run.json, written by bench/bench_thinking.py).

    thinking_curves(run, task, lang)         accuracy against training steps (top) and against
                                             problem size after training (bottom), three formats
    fig_thinking(plt, run, task, lang, path) the same figure saved for the site
                                             (course/<lang>/figures/thinking-<task>.png, `course figures`)
    results_md(run, lang)                    the table chapter 8 includes (figures/thinking-results.md)

Labels live in LABELS, one entry per language with the same keys.
"""
from __future__ import annotations

import json
from pathlib import Path

LANGS = ("en", "ko")
RUN_PATH = Path(__file__).parent / "data" / "reference" / "thinking_run.json"
RESULTS_MD = "thinking-results.md"
COLORS = {"at_once": "#d62728", "think": "#2ca02c", "answer_first": "#1f77b4"}
STYLES = {"at_once": "o-", "think": "s-", "answer_first": "^--"}


def figure_name(task: str) -> str:
    return f"thinking-{task}.png"


LABELS = {
    "en": {"at_once": "answer at once", "think": "think first", "answer_first": "answer first, then explain",
           "step": "training step", "accuracy": "accuracy on held-out problems", "size": "problem size",
           "chance": "chance ({value:.0%})",
           "title_parity": "Parity of {n} bits", "title_digits": "Last digit of a sum of {n} digits",
           "size_parity": "bits", "size_digits": "digits",
           "after": "after {steps:,} steps, by size",
           "task": "task", "format": "format", "seed": "seed {seed}", "mean": "mean",
           "task_parity": "parity, {n} bits", "task_digits": "last digit, {n} digits",
           "time": "CPU time per run"},
    "ko": {"at_once": "바로 답하기", "think": "먼저 생각하기", "answer_first": "답 먼저, 설명은 나중",
           "step": "학습 스텝", "accuracy": "처음 보는 문제의 정확도", "size": "문제 크기",
           "chance": "찍어서 맞힐 확률 ({value:.0%})",
           "title_parity": "{n}비트의 홀짝", "title_digits": "숫자 {n}개 합의 끝자리",
           "size_parity": "비트 수", "size_digits": "숫자 개수",
           "after": "{steps:,}스텝 학습 뒤, 크기별",
           "task": "과제", "format": "형식", "seed": "시드 {seed}", "mean": "평균",
           "task_parity": "홀짝, {n}비트", "task_digits": "끝자리, 숫자 {n}개",
           "time": "실행 한 번의 CPU 시간"},
}


def load_run(path: Path = RUN_PATH) -> dict:
    from autograde.errors import CourseError

    if not Path(path).is_file():
        raise CourseError(f"{path} is missing; run `python bench/bench_thinking.py`")
    return json.loads(Path(path).read_text(encoding="utf-8"))


def thinking_curves(result: dict, task: str, lang: str = "en"):
    """One task's figure from one seed's result ({"settings", "chance", "formats"})."""
    from autograde.figures import MIN_FONT_PT, _pyplot

    if lang not in LABELS:
        raise ValueError(f"language must be one of {LANGS}, not {lang!r}")
    plt = _pyplot()
    L = LABELS[lang]
    s = result["settings"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 7.4))
    for fmt, r in result["formats"].items():
        top.plot([h["step"] for h in r["history"]], [h["accuracy"] for h in r["history"]],
                 STYLES[fmt], ms=4, color=COLORS[fmt], label=L[fmt])
        sizes = sorted(r["by_size"], key=int)
        bottom.plot([int(n) for n in sizes], [r["by_size"][n] for n in sizes], STYLES[fmt], ms=4, color=COLORS[fmt])
    for ax in (top, bottom):
        ax.axhline(result["chance"], color="#999999", ls=":", lw=1)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(L["accuracy"] if ax is top else "")
    top.plot([], [], color="#999999", ls=":", lw=1, label=L["chance"].format(value=result["chance"]))
    top.set_title(L[f"title_{task}"].format(n=s["train_size"]))
    top.set_xlabel(L["step"])
    bottom.set_title(L["after"].format(steps=s["steps"]))
    bottom.set_xlabel(L[f"size_{task}"])
    bottom.set_xticks(sorted(int(n) for n in result["formats"]["think"]["by_size"]))
    bottom.legend(*top.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  fontsize=MIN_FONT_PT, frameon=False)
    fig.tight_layout()
    return fig


def fig_thinking(plt, run: dict, task: str, lang: str, path: Path) -> Path:
    """The reference run's figure for one task (its first seed) saved as a PNG and its dark twin."""
    from autograde.figures import _save

    seed_result = next(iter(run["full"][task]["seeds"].values()))
    return _save(thinking_curves(seed_result, task, lang), path)


def percent(value: float) -> str:
    """How the chapter and the notebook write an accuracy: 0.4961 -> 49.6%."""
    return f"{100 * value:.1f}%"


def results_md(run: dict, lang: str) -> str:
    """Accuracy on held-out problems of the trained size, per task, format and seed."""
    L = LABELS[lang]
    rows = []
    seeds = None
    for task, entry in run["full"].items():
        seeds = list(entry["seeds"])
        n = next(iter(entry["seeds"].values()))["settings"]["train_size"]
        for fmt in next(iter(entry["seeds"].values()))["formats"]:
            accs = [entry["seeds"][k]["formats"][fmt]["accuracy"] for k in seeds]
            cpu = max(entry["seeds"][k]["formats"][fmt]["cpu_seconds"] for k in seeds)
            rows.append([L[f"task_{task}"].format(n=n), L[fmt]] + [percent(a) for a in accs]
                        + [percent(sum(accs) / len(accs)), f"≤ {cpu:.0f} s"])
    head = [L["task"], L["format"]] + [L["seed"].format(seed=k) for k in seeds] + [L["mean"], L["time"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
