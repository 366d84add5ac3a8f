"""Run time of every solution notebook, top to bottom, as a student's kernel runs it.

    python bench/bench_notebooks.py [--threads 2] [--only 02_embeddings 07_real_model ...]

Each notebook runs in a fresh kernel in its own temporary folder (so my_llm/
starts empty), with OMP_NUM_THREADS set. Prints a Markdown table for
BENCHMARKS.md. Target: under 120 s each on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="these notebooks only (default: all)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    for path in sorted((ROOT / "solutions").glob("[a-z][a-z]/*/*.ipynb")):
        if args.only and path.parent.name not in args.only:
            continue
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": tmp}}).execute()
            rows.append((path.parent.name, path.parts[-3], time.perf_counter() - start))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={args.threads}")
    print()
    print("| notebook | language | seconds |")
    print("| --- | --- | --- |")
    for name, lang, seconds in rows:
        print(f"| {name} | {lang} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
