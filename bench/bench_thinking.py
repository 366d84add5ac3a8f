"""The tokens-to-think experiment in full: every task, format and seed, and the small setting the tests rerun.

    python bench/bench_thinking.py [--seeds 0 1 2] [--tasks parity digits] [--out PATH]

Writes autograde/data/reference/thinking_run.json (by default):

    full    {task: {"seeds": {seed: {"settings", "chance", "formats": {fmt: result}}}}}: the numbers
            chapter 8 quotes and notebook 8 reproduces with its default settings (seed 0)
    small   {task: result}: a seconds-long setting that tests/test_thinking.py reruns and compares
            exactly, which shows that the full numbers come from this code
    machine Python, torch, processor, threads, and the machine's load average before and after

Each result records per format the accuracy history, the final accuracy per problem size, and
the wall time and the process's CPU time (time.process_time): on a shared machine the wall time
grows with the load, the CPU time much less.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograde.figures_thinking import RUN_PATH  # noqa: E402
from autograde.reference.thinking import TASKS, full_settings, run_experiment, small_settings  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--out", type=Path, default=RUN_PATH)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    record = {"full": {}, "small": {}}
    for task in args.tasks:
        record["small"][task] = run_experiment(small_settings(task))
        record["full"][task] = {"seeds": {}}
        for seed in args.seeds:
            result = run_experiment(full_settings(task, seed))
            record["full"][task]["seeds"][str(seed)] = result
            line = ", ".join(f"{f} {r['accuracy']:.1%} ({r['wall_seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU)"
                             for f, r in result["formats"].items())
            print(f"{task} seed {seed}: {line}", flush=True)
    record["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "processor": platform.machine(), "cpus": os.cpu_count(),
                         "load_average_before": [round(x, 2) for x in load_before],
                         "load_average_after": [round(x, 2) for x in os.getloadavg()],
                         "total_wall_seconds": round(time.perf_counter() - started, 1)}
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
