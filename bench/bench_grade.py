"""Benchmark class grading: `course grade --workers N` against serial `nbgrader autograde`, one run.

    .venv/bin/python bench/bench_grade.py [--submissions 50] [--workers 2] [--skip-nbgrader] [--cold]

Builds one class of generated submissions to 03_attention, correct, buggy and
hostile mixed (the hostile ones from tests/hostile/corpus.py), and grades it
twice, one after the other on the same machine, each in a fresh copy of the
same nbgrader course root:

1. `nbgrader autograde 03_attention` (serial, as nbgrader runs; its per-cell
   timeout set to course grade's per-call limit, 10 s);
2. `course grade 03_attention --workers N` (sandboxes forked from the warm start's zygote);
3. with --cold, the same with COURSE_SANDBOX_WARM=off (every sandbox a fresh interpreter).

Five hostile cases that nbgrader cannot run without endangering the machine
(a memory bomb, a fork bomb, a 1 GB print, ...) are graded by course grade
alone, in a third, separate run.

Prints Markdown for BENCHMARKS.md: wall times and their ratio, where course
grade's time goes per submission (from each result's `sandbox.timing`), whether
every hostile submission was contained, and where the two graders' scores differ.
Timing only: the test suite never asserts on time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from autograde.grader.grade import STATE_DIR  # noqa: E402
from autograde.grader.sandbox import sandbox_mode  # noqa: E402
from hostile.corpus import all_cases, solution_notebook, with_cell  # noqa: E402

ASSIGNMENT = "03_attention"
CALL_TIMEOUT = 10
# Too dangerous for nbgrader, which has no memory, process or output limits.
UNSAFE_FOR_NBGRADER = ("memory_bomb", "memory_bomb_in_call", "fork_bomb", "print_1gb", "loop_swallowing_alarm")
BUGS = {
    "mask_off_by_one": ("causal_mask", "import torch\ndef causal_mask(T):\n"
                        "    return torch.ones(T, T, dtype=torch.bool).tril(-1)\n"),
    "softmax_wrong_axis": ("softmax", "def softmax(x, dim=-1):\n    e = (x - x.amax(dim=0, keepdim=True)).exp()\n"
                           "    return e / e.sum(dim=0, keepdim=True)\n"),
    "no_max_subtraction": ("softmax", "def softmax(x, dim=-1):\n    e = x.exp()\n"
                           "    return e / e.sum(dim=dim, keepdim=True)\n"),
    "blank": (None, None),
}


# ----------------------------------------------------------------------------
# the class


def build_class(n: int) -> tuple[dict[str, dict | bytes], dict[str, str], dict[str, tuple]]:
    """student -> notebook, student -> kind ('correct', 'buggy', 'hostile'), and the whole hostile corpus."""
    paths = {"steps": str(REPO / "autograde/checks/steps/attention.py"),
             "weights": str(REPO / "autograde/data/reference/model.safetensors"),
             "solution": str(REPO / "solutions/en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")}
    corpus = all_cases(paths)
    unsafe = {k: v for k, v in corpus.items() if k in UNSAFE_FOR_NBGRADER}
    hostile = [(k, v) for k, v in corpus.items() if k not in UNSAFE_FOR_NBGRADER]
    exercise = json.loads((REPO / "exercises/en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(encoding="utf-8"))
    n_hostile = min(len(hostile), n // 2)
    n_buggy = (n - n_hostile) // 2
    notebooks, kinds = {}, {}
    for i in range(n - n_hostile - n_buggy):
        notebooks[f"correct_{i:02d}"], kinds[f"correct_{i:02d}"] = solution_notebook(), "correct"
    bugs = list(BUGS.items())
    for i in range(n_buggy):
        name, (cell, source) = bugs[i % len(bugs)]
        student = f"buggy_{i:02d}_{name}"
        notebooks[student] = exercise if cell is None else with_cell(cell, source)
        kinds[student] = "buggy"
    for name, (nb, _) in hostile[:n_hostile]:
        notebooks[f"hostile_{name}"], kinds[f"hostile_{name}"] = nb, "hostile"
    return notebooks, kinds, corpus


def course_root(notebooks: dict[str, dict | bytes]) -> Path:
    """A fresh nbgrader course: config, gradebook with the assignment, submitted/ filled."""
    root = Path(tempfile.mkdtemp(prefix="bench-grade-"))
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.source_directory = {str(REPO / 'solutions' / 'en')!r}\n"
        "c.CourseDirectory.release_directory = 'release'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{root / 'gradebook.db'}'\n"
        f"c.ExecutePreprocessor.timeout = {CALL_TIMEOUT}\n")
    run(root, [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force", "--log-level=ERROR"])
    for student, nb in notebooks.items():
        target = root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        target.parent.mkdir(parents=True)
        target.write_bytes(nb if isinstance(nb, bytes) else json.dumps(nb, ensure_ascii=False).encode())
    return root


def env(**extra) -> dict:
    """nbgrader calls `alembic` by name: the interpreter's bin directory goes first on PATH."""
    out = dict(os.environ, COURSE_GRADE_CALL_TIMEOUT=str(CALL_TIMEOUT), **extra)
    out["PATH"] = str(Path(sys.executable).parent) + os.pathsep + out.get("PATH", "")
    return out


def run(root: Path, cmd: list[str], **extra) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        print(f"warning: {' '.join(cmd[:4])} exited {done.returncode}: {done.stderr[-400:]}", file=sys.stderr)
    return seconds, done.returncode


def exported(root: Path) -> dict[str, float]:
    """student -> total score in the gradebook, through `nbgrader export` (as an instructor would)."""
    run(root, [sys.executable, "-m", "nbgrader", "export", "--CsvExportPlugin.to=grades.csv", "--log-level=ERROR"])
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        return {r["student_id"]: float(r["raw_score"] or 0) for r in csv.DictReader(f) if r["assignment"] == ASSIGNMENT}


# ----------------------------------------------------------------------------
# containment, from course grade's state file


def contained(state: dict, cases: dict[str, tuple], prefix: str) -> list[str]:
    """The hostile students whose result breaks their spec (see tests/hostile/corpus.py)."""
    baseline = next(e["tests"] for s, e in state.items() if s.startswith("correct_"))
    broken = []
    for name, (_, spec) in cases.items():
        got = state.get(prefix + name)
        if got is None:
            broken.append(f"{name} (not graded)")
        elif spec.get("error"):
            if got["score"] != 0 or not got["error"]:
                broken.append(name)
        elif any(score > baseline.get(cell, 0) for cell, score in got["tests"].items()) \
                or any(got["tests"].get(cell, 0) != 0 for cell in spec.get("zero", [])) \
                or (spec.get("same") and got["tests"] != baseline):
            broken.append(name)
    return broken


def timing_table(state: dict) -> list[str]:
    """Per submission: read (notebook, rebuild), static (the static pass), plan (cases, job files),
    start_up (sandbox start until the first cell may run), import_torch (its part spent importing
    torch: 0 for a sandbox forked from the zygote), cells, calls (the checks' calls in the child),
    rest (the sandboxed run's remainder: outputs written, teardown, restarts), judge (the checks in
    the parent); warm (sandboxes forked from the zygote per submission)."""
    keys = ("read", "static", "plan", "start_up", "import_torch", "cells", "calls", "rest", "judge", "warm")
    rows = [e["timing"] for e in state.values() if e.get("timing")]
    for t in rows:
        t["rest"] = max(0.0, t.get("sandbox", 0) - t.get("start_up", 0) - t.get("cells", 0) - t.get("calls", 0))
        t["warm"] = t.get("warm_starts", 0)
    lines = ["| per submission (mean / median, s) | " + " | ".join(keys) + " |",
             "| --- |" + " --- |" * len(keys)]
    for kind in ("correct", "buggy", "hostile", "all"):
        pick = [e["timing"] for s, e in state.items() if e.get("timing") and (kind == "all" or s.startswith(kind))]
        if pick:
            cells = [f"{statistics.mean(t.get(k, 0) for t in pick):.2f} / {statistics.median(t.get(k, 0) for t in pick):.2f}"
                     for k in keys]
            lines.append(f"| {kind} ({len(pick)}) | " + " | ".join(cells) + " |")
    overhead = [t["read"] + t.get("static", 0) + t.get("plan", 0) + t.get("judge", 0) + t.get("sandbox", 0)
                - t.get("import_torch", 0) - t.get("cells", 0) - t.get("calls", 0) for t in rows]
    lines += ["", f"Overhead beyond the student's code (everything but `import torch`, cells and calls), "
                  f"per submission: mean {statistics.mean(overhead):.2f} s, median {statistics.median(overhead):.2f} s."]
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-nbgrader", action="store_true", help="time course grade only")
    p.add_argument("--keep", action="store_true", help="keep the course roots (printed)")
    p.add_argument("--cold", action="store_true", help="also time course grade with COURSE_SANDBOX_WARM=off")
    args = p.parse_args()
    notebooks, kinds, corpus = build_class(args.submissions)
    unsafe = {k: v for k, v in corpus.items() if k in UNSAFE_FOR_NBGRADER}
    counts = {k: list(kinds.values()).count(k) for k in ("correct", "buggy", "hostile")}
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
          f"sandbox mode {sandbox_mode()}, load average {os.getloadavg()[0]:.1f}")
    print(f"class: {len(notebooks)} submissions ({counts}); unsafe for nbgrader, graded by course grade alone: "
          f"{len(unsafe)}")
    roots = []
    nb_seconds, nb_scores = None, {}
    if not args.skip_nbgrader:
        root = course_root(notebooks)
        roots.append(root)
        nb_seconds, _ = run(root, [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
                                   "--log-level=ERROR"])
        nb_scores = exported(root)
    root = course_root(notebooks)
    roots.append(root)
    course_seconds, _ = run(root, [sys.executable, "-m", "autograde.cli", "grade", ASSIGNMENT, "--root", str(root),
                                   "--workers", str(args.workers)])
    course_scores = exported(root)
    state = json.loads((root / STATE_DIR / f"{ASSIGNMENT}.json").read_text(encoding="utf-8"))["done"]
    cold_seconds = cold_state = None
    if args.cold:
        cold_root = course_root(notebooks)
        roots.append(cold_root)
        cold_seconds, _ = run(cold_root, [sys.executable, "-m", "autograde.cli", "grade", ASSIGNMENT, "--root",
                                          str(cold_root), "--workers", str(args.workers)], COURSE_SANDBOX_WARM="off")
        cold_state = json.loads((cold_root / STATE_DIR / f"{ASSIGNMENT}.json").read_text(encoding="utf-8"))["done"]
        if exported(cold_root) != course_scores:
            print("warning: the cold and the warm start gave different scores", file=sys.stderr)
    hostile_cases = {s.removeprefix("hostile_"): corpus[s.removeprefix("hostile_")]
                     for s, kind in kinds.items() if kind == "hostile"}
    broken = contained(state, hostile_cases, "hostile_")

    unsafe_root = course_root({"correct_00": solution_notebook(), **{f"hostile_{k}": v[0] for k, v in unsafe.items()}})
    roots.append(unsafe_root)
    unsafe_seconds, _ = run(unsafe_root, [sys.executable, "-m", "autograde.cli", "grade", ASSIGNMENT, "--root",
                                          str(unsafe_root), "--workers", str(args.workers)])
    unsafe_state = json.loads((unsafe_root / STATE_DIR / f"{ASSIGNMENT}.json").read_text(encoding="utf-8"))["done"]
    unsafe_broken = contained(unsafe_state, unsafe, "hostile_")

    n = len(notebooks)
    print(f"\n| grader | seconds for {n} submissions | submissions/s | speed-up |")
    print("| --- | --- | --- | --- |")
    if nb_seconds is not None:
        print(f"| `nbgrader autograde` (serial) | {nb_seconds:.1f} | {n / nb_seconds:.2f} | 1.00x |")
    ratio = f"{nb_seconds / course_seconds:.2f}x" if nb_seconds else "-"
    print(f"| `course grade --workers {args.workers}` | {course_seconds:.1f} | {n / course_seconds:.2f} | {ratio} |")
    if cold_seconds:
        cold_ratio = f"{nb_seconds / cold_seconds:.2f}x" if nb_seconds else "-"
        print(f"| `course grade --workers {args.workers}`, COURSE_SANDBOX_WARM=off | {cold_seconds:.1f} | "
              f"{n / cold_seconds:.2f} | {cold_ratio} |")
    print(f"\nThe {len(unsafe)} cases nbgrader cannot run safely, plus one correct submission, by course grade "
          f"alone: {unsafe_seconds:.1f} s.")
    print(f"\nHostile submissions not contained by course grade: {len(broken) + len(unsafe_broken)} of "
          f"{len(hostile_cases) + len(unsafe)} ({', '.join(broken + unsafe_broken) or 'none'}).")
    print()
    print("\n".join(timing_table(state)))
    if cold_state:
        print("\nThe same, COURSE_SANDBOX_WARM=off:\n")
        print("\n".join(timing_table(cold_state)))
    print(f"\nload average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
    if nb_scores:
        differ = sorted(s for s in notebooks if nb_scores.get(s) != course_scores.get(s))
        print(f"\nScores that differ between nbgrader and course grade: {len(differ)} of {n}")
        for s in differ:
            print(f"- {s}: nbgrader {nb_scores.get(s)}, course grade {course_scores.get(s)}")
    if args.keep:
        print("\ncourse roots:", *roots)
    else:
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
