"""Prefill and decode speed of a real checkpoint run by the course's code, against transformers' generate.

    python bench/bench_real_model.py [--model DIR] [--prompt-tokens 128] [--new-tokens 32]
                                     [--device cpu|cuda] [--dtype float32|bfloat16] [--threads N]
    python bench/bench_real_model.py --random-weights     # Qwen3-0.6B's shapes, random values

--model defaults to Qwen/Qwen3-0.6B from the local Hugging Face cache (or COURSE_REAL_MODEL); the script
never downloads, and without the files it ends with one line saying how to get them. --random-weights
builds a model of Qwen3-0.6B's exact shapes (596,049,920 parameters) with random values instead: the
time a forward pass takes does not depend on the values, so its speeds are those of the real model,
but its tokens mean nothing.

Measured: the course's prefill (tokens/s) and its decode with the KV cache (tokens/s); transformers'
greedy generate of the same number of tokens (tokens/s, its own cache); whether both write the same
greedy tokens; the KV cache's bytes; the process's peak resident memory; the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

REAL_ID = "Qwen/Qwen3-0.6B"


def find_model(name: str | None) -> Path | None:
    if name:
        return Path(name) if Path(name).is_dir() else None
    if os.environ.get("COURSE_REAL_MODEL"):
        return Path(os.environ["COURSE_REAL_MODEL"])
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(REAL_ID, local_files_only=True))
    except Exception:
        return None


def random_qwen3(dtype: torch.dtype, device: torch.device):
    """transformers' Qwen3 of Qwen3-0.6B's config with random weights, and the course's model on the same tensors."""
    import transformers

    from autograde.reference.hf_load import check_fit, config_from_hf, state_from_hf
    from autograde.reference.model import Transformer
    from autograde.reference.tiny_real import QWEN3_0_6B

    fields = {k: v for k, v in QWEN3_0_6B.items() if k not in ("model_type", "torch_dtype")}
    torch.manual_seed(0)
    hf = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**fields)).to(device, dtype).eval()
    cfg = config_from_hf(QWEN3_0_6B)
    with torch.device("meta"):
        ours = Transformer(cfg)
    state = state_from_hf(dict(hf.state_dict()), cfg)
    check_fit(ours, state, "random Qwen3-0.6B")
    ours.load_weights(state, assign=True)
    return hf, ours.eval().requires_grad_(False)


def timed(call, device):
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU time is the steadier figure."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    out = call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import transformers
    except ImportError:
        print("error: this benchmark compares with transformers: pip install transformers", file=sys.stderr)
        return 2
    from autograde.reference import functional as fn
    from autograde.reference.hf_load import load_checkpoint_dir, pick_device, pick_dtype
    from autograde.reference.sampling import generate

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device, "bfloat16")
    if args.random_weights:
        hf, model = random_qwen3(dtype, device)
        what = f"{REAL_ID} shapes, random weights"
        prompt = torch.randint(1000, 100000, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    else:
        directory = find_model(args.model)
        if directory is None or not (directory / "config.json").is_file():
            print(f"error: no {args.model or REAL_ID} checkpoint on this machine; download it where there is "
                  f"network (`hf download {REAL_ID} --local-dir DIR`) and pass --model DIR, or measure the same "
                  "shapes with --random-weights", file=sys.stderr)
            return 2
        loaded = load_checkpoint_dir(directory, device, dtype)
        model, what = loaded.model, str(directory)
        hf = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype,
                                                               attn_implementation="eager").to(device).eval()
        text = " ".join(["언어 모델은 다음 토큰을 예측합니다. The model reads tokens, one at a time."] * 40)
        prompt = loaded.tokenizer.encode(text, add_special_tokens=False)[:args.prompt_tokens]
    ids = torch.tensor([prompt], device=device)

    with torch.no_grad():
        model(ids[:, :8])                                                     # warm-up
        cache = fn.KVCache(model.cfg.n_layer)
        logits, prefill_s, prefill_cpu = timed(lambda: model(ids, cache=cache), device)
        kv_bytes = cache.nbytes()

        def decode():
            token = logits[:, -1:].argmax(-1)
            for _ in range(args.new_tokens):
                token = model(token, cache=cache)[:, -1:].argmax(-1)

        _, decode_s, decode_cpu = timed(decode, device)
        ours, ours_s, ours_cpu = timed(lambda: generate(model, prompt, args.new_tokens, greedy=True), device)
        hf.generation_config.pad_token_id = hf.generation_config.eos_token_id
        out, hf_s, hf_cpu = timed(lambda: hf.generate(ids, max_new_tokens=args.new_tokens, do_sample=False,
                                                      min_new_tokens=args.new_tokens,
                                                      attention_mask=torch.ones_like(ids)), device)
    theirs = out[0, ids.shape[1]:].tolist()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20        # KiB -> GiB on Linux
    n_params = sum(p.numel() for p in model.parameters())
    n, p = args.new_tokens, len(prompt)
    print(f"model: {what} ({n_params:,} parameters), {str(dtype).removeprefix('torch.')} on {device.type}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"transformers {transformers.__version__}")
    print("(wall seconds; CPU seconds of this process in brackets)")
    print(f"course prefill, {p} tokens: {prefill_s:.2f} s [{prefill_cpu:.2f}] -> {p / prefill_s:,.1f} tokens/s")
    print(f"course decode with the KV cache, {n} tokens: {decode_s:.2f} s [{decode_cpu:.2f}] -> "
          f"{n / decode_s:,.2f} tokens/s")
    print(f"course generate (prefill + {n} tokens): {ours_s:.2f} s [{ours_cpu:.2f}] -> {n / ours_s:,.2f} new tokens/s")
    print(f"transformers generate (prefill + {n} tokens): {hf_s:.2f} s [{hf_cpu:.2f}] -> {n / hf_s:,.2f} new tokens/s")
    print(f"KV cache after the prompt: {kv_bytes:,} bytes; peak resident memory {peak:.2f} GiB")
    same = ours == theirs
    print(f"same greedy tokens as transformers: {same}"
          + ("" if same else f" (first difference at token {next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
