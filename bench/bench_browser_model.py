"""The browser's reference model (course/assets/llm-course/model.js): how long a
64-token forward pass and one cached decode step take in headless Chromium,
this checkout's model.js against the one of another git revision, in one browser.

    python bench/bench_browser_model.py [--against HEAD~1] [--rounds 5] [--passes 9] [--warmup 5]

Needs chromium and chromedriver (as the browser tests do). Both versions load
the same exported weights (`course build`'s model-<hash>.js) in their own page
from file://; the pages take turns, `--rounds` times, and each round reports
the median of `--passes` passes after `--warmup` untimed ones. Both versions' logits
must agree within 1e-5, so a faster version that computes something else fails
here. Prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_JS = "course/assets/llm-course/model.js"
TEXT = "The model reads tokens, not letters. 모델은 글자가 아니라 토큰을 읽습니다. " * 6

# ids are made in Python (the tokenizer is not on this page); the script times
# forward passes of the 64 ids and one decode step after a 64-token prefill
RUN = """
const [ids, passes, warmup] = arguments;
const api = window.llmCourse, model = api.model;
const median = f => {                    // f returns the milliseconds it measured
  for (let i = 0; i < warmup; i++) f();
  const times = [];
  for (let i = 0; i < passes; i++) times.push(f());
  times.sort((a, b) => a - b);
  return times[Math.floor(passes / 2)];
};
const forward = median(() => { const t0 = performance.now(); api.logits(ids); return performance.now() - t0; });
const decode = median(() => {
  const cache = model.newCache();
  model.forward(ids.slice(0, -1), {cache});
  const t0 = performance.now();
  model.forward(ids.slice(-1), {cache});
  return performance.now() - t0;
});
return {forward, decode, logits: api.logits(ids)};
"""


def page(directory: Path, name: str, model_js: str) -> str:
    (directory / f"{name}.js").write_text(model_js, encoding="utf-8")
    html = (f'<!doctype html><meta charset="utf-8"><script src="data.js"></script>'
            f'<script src="{name}.js"></script><p>{name}</p>')
    (directory / f"{name}.html").write_text(html, encoding="utf-8")
    return (directory / f"{name}.html").as_uri()


def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        sys.exit("bench_browser_model: chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="git revision whose model.js is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=5, help="passes before the timed ones (V8 compiles the loops)")
    args = parser.parse_args()

    from autograde.reference.checkpoint import load_reference
    from autograde.site.widgets import model_js

    try:
        baseline = subprocess.run(["git", "show", f"{args.against}:{MODEL_JS}"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as exc:
        sys.exit(f"bench_browser_model: no {MODEL_JS} at {args.against!r}: {exc.stderr.strip()}")
    ids = load_reference().tokenizer.encode_ordinary(TEXT)[:64]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "data.js").write_text(model_js(), encoding="utf-8")
        urls = {"this checkout": page(directory, "current", (ROOT / MODEL_JS).read_text(encoding="utf-8")),
                args.against: page(directory, "baseline", baseline)}
        drv = browser()
        figures = {name: {"forward": [], "decode": []} for name in urls}
        logits = {}
        try:
            for _ in range(args.rounds):
                for name, url in urls.items():
                    drv.get(url)
                    got = drv.execute_script(RUN, ids, args.passes, args.warmup)
                    figures[name]["forward"].append(got["forward"])
                    figures[name]["decode"].append(got["decode"])
                    logits[name] = got["logits"]
            version = drv.capabilities.get("browserVersion", "?")
        finally:
            drv.quit()
    worst = max(abs(a - b) for a, b in zip(*logits.values()))
    if worst > 1e-5:
        sys.exit(f"bench_browser_model: the two versions' logits differ by {worst:.2e} (more than 1e-5)")

    def cell(values):
        return ", ".join(f"{v:.1f}" for v in values) + f" (median {statistics.median(values):.1f})"

    base = statistics.median(figures[args.against]["forward"])
    now = statistics.median(figures["this checkout"]["forward"])
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; Chromium {version} headless, file://; "
          f"{len(ids)} tokens; logits of the two versions differ by at most {worst:.1e}.\n")
    print("| model.js | 64-token forward pass, ms (each round's median of "
          f"{args.passes}) | one decode step after 63 cached, ms |")
    print("| --- | --- | --- |")
    for name in urls:
        print(f"| {name} | {cell(figures[name]['forward'])} | {cell(figures[name]['decode'])} |")
    print(f"\nForward pass: {base / now:.2f}x the speed of {args.against}.")


if __name__ == "__main__":
    main()
