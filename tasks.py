#!/usr/bin/env python3
"""Setup and main tasks, with nothing but Python needed to start.

    python3 tasks.py build   # create .venv, install everything, build the course into site/
    python3 tasks.py test    # the same setup, then the whole test suite

The virtual environment lives in .venv/. torch is installed first, pinned
(COURSE_TORCH overrides the pin), so that resolving the other packages never
pulls a second, larger torch build. Browser tests need Debian's chromium and
chromium-driver; `test` installs them with apt-get when it runs as root.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
TORCH = os.environ.get("COURSE_TORCH", "torch==2.13.0")


def run(*cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed (this is {sys.version.split()[0]})")
    # (re)create the venv when it is missing or was left half-made by an interrupted run
    if not PY.exists() or subprocess.run([str(PY), "-m", "pip", "--version"], capture_output=True).returncode != 0:
        run(sys.executable, "-m", "venv", "--clear", VENV)
    stamp = VENV / ".course-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    if subprocess.run([str(PY), "-c", "import torch"], capture_output=True).returncode != 0:
        run(*pip, TORCH)
    run(*pip, "-e", f"{ROOT}[dev]")
    stamp.write_text(want)


def ensure_chromium() -> None:
    """Debian's chromium + chromium-driver for the search tests (root + apt only)."""
    if shutil.which("chromedriver") and (shutil.which("chromium") or shutil.which("chromium-browser")):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print("note: chromium/chromedriver not found and cannot be installed here; browser tests will skip")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver", env=env)
    except subprocess.CalledProcessError:
        print("note: installing chromium failed; browser tests will skip")


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task == "build":
        ensure_venv()
        return subprocess.call([str(BIN / "course"), "build", *rest], cwd=ROOT)
    if task == "test":
        ensure_venv()
        ensure_chromium()
        # two workers, one test file each at a time (files share expensive fixtures)
        args = rest or ["-n", "2", "--dist", "loadfile"]
        return subprocess.call([str(PY), "-m", "pytest", *args], cwd=ROOT)
    if task == "setup":
        ensure_venv()
        return 0
    print(__doc__)
    return 0 if task in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
