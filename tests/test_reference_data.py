"""The committed reference model, tokenizer and corpus: current, small, deterministic, and it writes words."""
import json

import regex
from safetensors.torch import load_file

from autograde.reference.checkpoint import REFERENCE_DIR, load_reference
from autograde.reference.corpus import CORPUS_DIR, corpus_fingerprint, load_corpus
from autograde.reference.sampling import generate
from autograde.reference.train import TrainSettings, train_reference

LOG = json.loads((REFERENCE_DIR / "train_log.json").read_text(encoding="utf-8"))


def test_model_was_trained_on_the_committed_corpus():
    ref = load_reference()
    assert ref.model.cfg.extra["corpus_sha256"] == corpus_fingerprint(CORPUS_DIR)


def test_corpus_manifest_matches_files():
    manifest = json.loads((CORPUS_DIR / "manifest.json").read_text(encoding="utf-8"))
    corpus = load_corpus()
    for lang, info in manifest["languages"].items():
        assert info["documents"] == len(corpus[lang])
        assert info["characters"] == sum(len(d) for d in corpus[lang])


def test_committed_files_are_small():
    total = sum((REFERENCE_DIR / name).stat().st_size for name in ("model.safetensors", "tokenizer.json", "config.json"))
    assert total <= 20 * 1024 * 1024


def test_weights_are_float32_and_finite():
    state = load_file(str(REFERENCE_DIR / "model.safetensors"))
    for name, tensor in state.items():
        assert tensor.dtype.is_floating_point and tensor.isfinite().all(), name


def test_validation_loss_is_recorded_and_far_below_chance():
    final = LOG["final"]
    chance = __import__("math").log(LOG["config"]["vocab_size"])
    assert set(final["val_loss_by_language"]) == {"en", "ko"}
    assert final["val_loss"] < 0.75 * chance
    assert LOG["parameters"] == sum(p.numel() for p in load_reference().model.parameters())


def words_of(text: str, lang: str) -> list[str]:
    pattern = r"\p{Hangul}+" if lang == "ko" else r"[A-Za-z]+"
    return regex.findall(pattern, text)


def test_greedy_continuations_are_words_of_the_prompt_language():
    """Not noise: most words the model writes exist in its corpus, in the prompt's language."""
    ref = load_reference()
    corpus = load_corpus()
    for lang, prompts in {"en": ["The model reads", "In winter"], "ko": ["언어 모델은", "겨울에는"]}.items():
        known = {w for doc in corpus[lang] for w in words_of(doc, lang)}
        for prompt in prompts:
            text = ref.tokenizer.decode(generate(ref.model, ref.tokenizer.encode(prompt), 30, greedy=True))
            words = words_of(text, lang)[:-1]               # the last word may be cut off
            assert len(words) >= 3, (prompt, text)
            share = sum(w in known for w in words) / len(words)
            assert share >= 0.7, (prompt, text, share)


def test_training_is_deterministic(tmp_path):
    settings = TrainSettings(vocab_size=300, steps=3, batch_size=2, seq_len=16, eval_every=2, eval_batches=1,
                             warmup=1)
    logs = [train_reference(tmp_path / name, settings=settings, progress=False) for name in ("a", "b")]
    assert logs[0]["history"] == logs[1]["history"]
    for name in ("model.safetensors", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
