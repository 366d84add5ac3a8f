"""Saving and loading the reference model and tokenizer (safetensors + JSON)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from autograde.errors import CourseError
from autograde.reference.model import ModelConfig, Transformer
from autograde.reference.tokenizer import BPETokenizer

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "data" / "reference"
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"


@dataclass
class Reference:
    model: Transformer
    tokenizer: BPETokenizer
    directory: Path


def save_checkpoint(model: Transformer, tokenizer: BPETokenizer, directory) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(model.cfg.to_dict(), indent=2, ensure_ascii=False) + "\n")
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    tokenizer.save(directory / TOKENIZER_FILE)


def load_checkpoint(directory=REFERENCE_DIR, device="cpu") -> Reference:
    """Load config, weights and tokenizer; every problem is named, none is a traceback."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
        if not (directory / name).is_file():
            raise CourseError(f"{directory / name} is missing; run `course train-reference` to create it")
    try:
        cfg = ModelConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CourseError(f"{directory / CONFIG_FILE} is not a valid model config: {exc}") from None
    try:
        state = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise CourseError(f"{directory / WEIGHTS_FILE} is not a readable safetensors file: {exc}") from None
    model = Transformer(cfg)
    model.load_weights(state)
    tokenizer = BPETokenizer.load(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise CourseError(f"tokenizer has {tokenizer.vocab_size} ids but the model expects {cfg.vocab_size}")
    return Reference(model.to(device).eval(), tokenizer, directory)


_cache: dict[tuple[str, str], Reference] = {}


def load_reference(device="cpu") -> Reference:
    """The committed, trained reference model (loaded once per process)."""
    key = (str(REFERENCE_DIR), str(device))
    if key not in _cache:
        _cache[key] = load_checkpoint(REFERENCE_DIR, device)
    return _cache[key]


def pick_device() -> torch.device:
    """CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
