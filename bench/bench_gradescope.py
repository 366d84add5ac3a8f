"""Time of Gradescope's run_autograder per submission, cold and warm.

    python bench/bench_gradescope.py [--runs 4] [--assignment 03_attention]

Exports the autograder archive, lays it out as Gradescope does in a temporary AUTOGRADER_ROOT,
and runs run_autograder on the solution notebook `--runs` times, each in a new root (Gradescope
starts a new container per submission). The first run is "cold" (the OS file cache may not hold
torch and the model yet, as in a container just started); the rest are "warm". Uses this
project's environment (COURSE_PYTHON), like the tests. Prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from autograde.grader.gradescope import export, unpack
    from test_grader import make_submission

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--assignment", default="03_attention")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = export(args.assignment, tmp / "autograder.zip", ("en", "ko"), secret_root=tmp)
        notebook = json.dumps(make_submission("full", "en", args.assignment), ensure_ascii=False)
        times, scores = [], []
        for i in range(args.runs):
            root = unpack(archive, tmp / f"run{i}")
            (root / "submission").mkdir()
            (root / "submission" / f"{args.assignment}.ipynb").write_text(notebook, encoding="utf-8")
            env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_PYTHON": sys.executable}
            start = time.perf_counter()
            subprocess.run(["bash", str(root / "run_autograder")], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            scores.append(json.loads((root / "results" / "results.json").read_text())["score"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; assignment {args.assignment}; "
          f"scores {sorted(set(scores))}")
    print()
    print("| run | seconds |")
    print("| --- | --- |")
    print(f"| cold (first) | {times[0]:.2f} |")
    warm = times[1:]
    if warm:
        print(f"| warm (median of {len(warm)}) | {statistics.median(warm):.2f} |")
        print(f"| warm (min / max) | {min(warm):.2f} / {max(warm):.2f} |")


if __name__ == "__main__":
    main()
