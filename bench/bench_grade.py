"""Benchmark `course grade`: N copies of one submission, 1 worker vs 2 workers, side by side.

    .venv/bin/python bench/bench_grade.py [--copies 16] [--workers 1 2] [--notebook PATH]

Each run grades into a fresh temporary nbgrader course root (fresh gradebook,
no state file), so both runs do the same work. Prints a Markdown table for
BENCHMARKS.md. Timing only; the test suite never asserts on time.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograde.grader.grade import grade_assignment  # noqa: E402
from autograde.grader.sandbox import sandbox_mode  # noqa: E402

ASSIGNMENT = "02_attention"


def one_run(notebook: Path, copies: int, workers: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-grade-"))
    try:
        for i in range(copies):
            target = root / "submitted" / f"student{i:03d}" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            target.parent.mkdir(parents=True)
            shutil.copyfile(notebook, target)
        start = time.perf_counter()
        grade_assignment(ASSIGNMENT, workers=workers, root=root, quiet=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--notebook", default=str(REPO / "solutions/en" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
          f"sandbox mode {sandbox_mode()}")
    one_run(Path(args.notebook), 1, 1)                       # warm caches (imports, reference model)
    rows = []
    for workers in args.workers:
        seconds = one_run(Path(args.notebook), args.copies, workers)
        rows.append((workers, seconds, args.copies / seconds))
    print(f"\n| workers | seconds for {args.copies} submissions | submissions/s | speed-up |")
    print("| --- | --- | --- | --- |")
    for workers, seconds, rate in rows:
        print(f"| {workers} | {seconds:.1f} | {rate:.2f} | {rate / rows[0][2]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
