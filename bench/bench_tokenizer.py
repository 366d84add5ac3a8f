"""BPE training and encoding: the course's reference trainer vs Hugging Face `tokenizers`.

    python bench/bench_tokenizer.py [--vocab 2048] [--repeat 3]

Both train on the committed corpus (both languages) with the same vocabulary
size, byte-level, the same GPT-4 split pattern; then both encode the whole
corpus. Prints a Markdown table for BENCHMARKS.md. Figures are the best of
--repeat runs, measured side by side in one process.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers import Regex

    from autograde.reference.corpus import LANGUAGES, load_corpus
    from autograde.reference.hf import hf_tokenizer_json
    from autograde.reference.tokenizer import ENDOFTEXT, GPT4_SPLIT_PATTERN, BPETokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)

    corpus = load_corpus()
    docs = [d for lang in LANGUAGES for d in corpus[lang]]
    text = "\n".join(docs)

    ours_train, ours = best_of(args.repeat, lambda: BPETokenizer.train(text, args.vocab))

    def hf_train():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=args.vocab, special_tokens=[ENDOFTEXT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([text], trainer)
        return tok

    hf_train_s, _ = best_of(args.repeat, hf_train)
    loaded = Tokenizer.from_str(json.dumps(hf_tokenizer_json(ours)))   # same merges, HF engine

    def ours_encode():
        ours._cache.clear()     # no warm chunk cache: measure real work
        return sum(len(ours.encode_ordinary(d)) for d in docs)

    ours_enc_s, n_tokens = best_of(args.repeat, ours_encode)
    hf_enc_s, n_hf = best_of(args.repeat, lambda: sum(len(e.ids) for e in loaded.encode_batch(docs,
                                                                                               add_special_tokens=False)))
    assert n_tokens == n_hf, "the two encoders disagree"
    mb = len(text.encode("utf-8")) / 1e6

    print(f"machine: {platform.machine()} {platform.processor() or ''}, Python {platform.python_version()}, "
          f"corpus {len(text):,} characters ({mb:.2f} MB UTF-8), vocab {args.vocab}, best of {args.repeat}")
    print()
    print("| task | reference (autograde) | tokenizers (Rust) | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| train BPE | {ours_train:.2f} s | {hf_train_s:.2f} s | {ours_train / hf_train_s:.1f}x |")
    print(f"| encode corpus ({n_tokens:,} tokens) | {ours_enc_s:.2f} s ({mb / ours_enc_s:.2f} MB/s) | "
          f"{hf_enc_s:.3f} s ({mb / hf_enc_s:.1f} MB/s) | {ours_enc_s / hf_enc_s:.1f}x |")


if __name__ == "__main__":
    main()
