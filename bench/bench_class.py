"""Robustness at class size: one `course grade` of a large mixed class, then a full regrade.

    .venv/bin/python bench/bench_class.py [--submissions 200] [--workers 2] [--root-parent DIR]

The class is bench_grade.py's mix for 03_attention (correct, buggy and every
hostile case of tests/hostile/corpus.py, the ones too dangerous for nbgrader
included), repeated until it has N submissions. Its course root lives OUTSIDE
/tmp (default: a new folder under the home directory), where instructors keep
theirs, so the sandbox's file-system allow-list is what keeps the solutions
and the gradebook out of reach, not the mask over /tmp.

Measures, in one run on one machine:
- wall time of the first grade and of the regrade (the state file removed, so
  every submission is graded again from scratch);
- peak memory: the largest sum of resident set sizes over the grader and all
  its descendants (zygote, sandboxes, workers), sampled every 0.2 s, and the
  largest rise of the machine's used memory (MemTotal - MemAvailable) during
  the run, which also counts the sandboxes' tmpfs pages;
- whether the regrade gave identical scores, per-test points and feedback;
- whether every hostile submission was contained (its spec in the corpus);
- the exit status of each run (0: all graded).

Prints Markdown for BENCHMARKS.md. Timing only: the test suite never asserts on time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_grade import ASSIGNMENT, build_class, contained, course_root, env  # noqa: E402

from autograde.grader.grade import STATE_DIR  # noqa: E402
from autograde.grader.sandbox import sandbox_mode  # noqa: E402


def used_memory() -> int:
    info = psutil.virtual_memory()
    return info.total - info.available


class PeakMemory:
    """Samples a process tree's summed RSS and the machine's used memory until stopped."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.base = used_memory()
        self.tree_peak = 0
        self.machine_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.tree_peak = max(self.tree_peak, total)
            self.machine_peak = max(self.machine_peak, used_memory() - self.base)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def grade(root: Path, workers: int) -> tuple[float, int, PeakMemory]:
    cmd = [sys.executable, "-m", "autograde.cli", "grade", ASSIGNMENT, "--root", str(root), "--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = PeakMemory(proc.pid)
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    peak.stop()
    if proc.returncode != 0:
        print(f"warning: course grade exited {proc.returncode}: {err[-600:]}", file=sys.stderr)
    return seconds, proc.returncode, peak


def results(root: Path) -> dict[str, dict]:
    """student -> what a regrade must reproduce: score, per-test points, error, tampering found, and the
    autograded notebook (the feedback nbgrader's generate_feedback shows) byte for byte."""
    keep = ("score", "tests", "error", "tamper_counts", "seeds")
    out = {}
    for student, entry in state(root).items():
        notebook = root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        out[student] = {k: entry.get(k) for k in keep}
        out[student]["autograded"] = notebook.read_bytes() if notebook.exists() else None
    return out


def state(root: Path) -> dict:
    return json.loads((root / STATE_DIR / f"{ASSIGNMENT}.json").read_text(encoding="utf-8"))["done"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--root-parent", type=Path, default=Path.home(),
                   help="where the course root is made (default: the home directory; not /tmp on purpose)")
    p.add_argument("--keep", action="store_true", help="keep the course root (printed)")
    args = p.parse_args()

    notebooks, kinds, corpus = build_class(args.submissions // 2)
    # every hostile case once (the unsafe ones too), then correct and buggy copies up to N
    hostile = {f"hostile_{k}": v[0] for k, v in corpus.items()}
    plain = {s: nb for s, nb in notebooks.items() if kinds[s] != "hostile"}
    names = list(plain)
    cls = dict(hostile)
    i = 0
    while len(cls) < args.submissions:
        src = names[i % len(names)]
        cls[f"{src}_{i // len(names):02d}"] = plain[src]
        i += 1
    args.root_parent.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(args.root_parent)      # course_root uses mkdtemp
    root = course_root(cls)
    load = os.getloadavg()[0]
    first_s, first_rc, first_mem = grade(root, args.workers)
    first = results(root)
    broken = contained(state(root), corpus, "hostile_")
    (root / STATE_DIR / f"{ASSIGNMENT}.json").unlink()
    second_s, second_rc, second_mem = grade(root, args.workers)
    second = results(root)
    differ = sorted(f"{s} ({', '.join(k for k in first[s] if first[s][k] != second.get(s, {}).get(k))})"
                    for s in first if first[s] != second.get(s))

    n = len(cls)
    counts = {"hostile": len(hostile), "correct": sum(s.startswith("correct_") for s in cls),
              "buggy": sum(s.startswith("buggy_") for s in cls)}
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
          f"sandbox mode {sandbox_mode()}, load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"class: {n} submissions to {ASSIGNMENT} ({counts}); course root under {args.root_parent}")
    print("\n| run | wall s | submissions/s | peak RSS, grader tree | peak rise of used memory | exit |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, s, rc, mem in (("grade", first_s, first_rc, first_mem), ("regrade", second_s, second_rc, second_mem)):
        print(f"| {label} | {s:.1f} | {n / s:.2f} | {mem.tree_peak / 2**20:.0f} MiB | "
              f"{mem.machine_peak / 2**20:.0f} MiB | {rc} |")
    print(f"\nRegrade identical (score, per-test points, error, tampering, autograded notebook): {n - len(differ)} of {n}"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    print(f"Hostile submissions not contained: {len(broken)} of {len(hostile)} ({', '.join(broken) or 'none'})")
    if args.keep:
        print("course root:", root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if not differ and not broken and first_rc == second_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
