"""Benchmark `course check NOTEBOOK`: one solution notebook, warm start against cold, wall clock.

    .venv/bin/python bench/bench_check.py [--repeat 7] [--assignment 03_attention]

Runs `python -m autograde.cli check solutions/en/A/A.ipynb` as a student would, alternating the
default (sandboxes forked from the zygote, autograde/grader/warm.py) and COURSE_SANDBOX_WARM=off,
and prints the median and the range of each, with the load average: other processes on the
machine slow both alike. Timing only: the test suite never asserts on time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def once(notebook: Path, **extra) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autograde.cli", "check", str(notebook)], cwd=REPO,
                          env=dict(os.environ, **extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - start, done.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--assignment", default="03_attention")
    args = p.parse_args()
    notebook = REPO / "solutions" / "en" / args.assignment / f"{args.assignment}.ipynb"
    times: dict[str, list[float]] = {"warm": [], "cold": []}
    load = os.getloadavg()[0]
    for _ in range(args.repeat):
        for start, extra in (("warm", {}), ("cold", {"COURSE_SANDBOX_WARM": "off"})):
            seconds, status = once(notebook, **extra)
            if status != 0:
                print(f"warning: {start} check exited {status}", file=sys.stderr)
            times[start].append(seconds)
    print(f"`course check` of {notebook.relative_to(REPO)}, {args.repeat} runs each, alternating; "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs")
    print("\n| start | median s | min s | max s |\n| --- | --- | --- | --- |")
    for start, values in times.items():
        print(f"| {start} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
