"""Generation speed of the reference model with and without the KV cache.

    python bench/bench_generate.py [--tokens 256] [--device cpu|cuda] [--repeat 3]

Greedy decoding of --tokens new tokens from a short prompt. Both runs produce
the same tokens (asserted). The model's window is 128 tokens, so after the
window fills the cached path rebuilds its cache each step (see
autograde.reference.sampling.generate); --window lets you benchmark a larger
context with the same weights (RoPE has no learned length limit).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch


def main() -> None:
    from autograde.reference.checkpoint import load_checkpoint
    from autograde.reference.sampling import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=None, help="context length to run with (default: the model's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ref = load_checkpoint(device=args.device)
    if args.window:
        ref.model.cfg.max_seq_len = args.window
    prompt = ref.tokenizer.encode("언어 모델은 토큰을")

    def timed(use_cache: bool):
        best, out = float("inf"), None
        for _ in range(args.repeat):
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = generate(ref.model, prompt, args.tokens, greedy=True, use_cache=use_cache)
            if args.device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best, out

    generate(ref.model, prompt, 8, greedy=True)          # warm-up
    no_cache_s, a = timed(False)
    cache_s, b = timed(True)
    assert a == b, "cached and uncached generation differ"
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{platform.machine()} CPU, {args.threads} threads"
    print(f"device: {name}; {args.tokens} new tokens, window {ref.model.cfg.max_seq_len}, best of {args.repeat}")
    print()
    print("| mode | seconds | tokens/s |")
    print("| --- | --- | --- |")
    print(f"| without KV cache | {no_cache_s:.2f} | {args.tokens / no_cache_s:.0f} |")
    print(f"| with KV cache | {cache_s:.2f} | {args.tokens / cache_s:.0f} |")
    print(f"| speed-up | {no_cache_s / cache_s:.1f}x | |")


if __name__ == "__main__":
    main()
