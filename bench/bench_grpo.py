"""The reference GRPO run of notebook 9: two-digit addition, from the shipped starting model.

    python bench/bench_grpo.py [--threads 2] [--out autograde/data/grpo/run.json]

Runs the whole RL run with the committed settings (autograde.reference.grpo.GRPOSettings), then
pass@k for k = 1 .. 16 before and after (the unbiased estimator of Chen et al. 2021, n = 16 samples
per held-out problem), and writes everything to the results JSON that the chapter, the figures and
the tests read. Also records a short run (40 steps) whose every number the test suite recomputes,
to prove the run deterministic and that even a short run raises pass@1.

Measured: wall time and this process's CPU time of the RL loop alone (the evaluation of pass@1
every eval_every steps included), steps per second, the load average of the machine before and
after (it is shared: CPU time / wall time says how much of the machine the run got).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograde.reference.grpo import GRPO_DIR, RUN_FILE, GRPOSettings, machine_record, run_grpo  # noqa: E402

SHORT = dict(steps=40, eval_every=20, held_out=300, threads=1)     # about 6 s of CPU: the test suite reruns it


def short_record() -> dict:
    """The small run the tests repeat: settings and every logged number."""
    settings = GRPOSettings(**SHORT)
    _, log = run_grpo(settings, progress=False, pass_k=False)
    return {"settings": asdict(settings), "history": log["history"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=GRPOSettings().threads)
    p.add_argument("--out", default=str(GRPO_DIR / RUN_FILE))
    p.add_argument("--short-only", action="store_true", help="recompute only the short run's record in --out")
    args = p.parse_args(argv)
    if args.short_only:
        log = json.loads(Path(args.out).read_text())
        log["short_record"] = short_record()
        Path(args.out).write_text(json.dumps(log, indent=1) + "\n")
        return 0
    before = machine_record()
    started = time.perf_counter()
    _, log = run_grpo(GRPOSettings(threads=args.threads), progress=True)
    log["total_wall_seconds"] = round(time.perf_counter() - started, 2)
    log["machine_before"] = before
    log["machine_after"] = machine_record()
    log["short_record"] = short_record()
    Path(args.out).write_text(json.dumps(log, indent=1) + "\n")
    print(f"pass@1 {log['pass_at_1_before']:.1%} -> {log['pass_at_1_after']:.1%} in {log['settings']['steps']} "
          f"steps; RL {log['rl_wall_seconds']} s wall, {log['rl_cpu_seconds']} s CPU, "
          f"{log['steps_per_second']} steps/s; load {before['load_average_1_5_15']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
