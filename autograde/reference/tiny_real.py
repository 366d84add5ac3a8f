"""A stand-in for a real checkpoint: a tiny random Qwen3 built offline, in Hugging Face's own format.

Notebook 7 and bench/bench_real_model.py run Qwen/Qwen3-0.6B when its files are on the machine.
Where they are not (CI, the grader's sandbox, an offline laptop), build_tiny_qwen3(DIR) writes a
checkpoint directory of the same architecture (grouped-query attention, QK-norm, a head_dim of
its own, tied embeddings, SwiGLU, RoPE) with random weights, and a byte-level BPE tokenizer with
Qwen's normalizer (NFC) and pre-tokenizer split pattern, trained by the `tokenizers` library on
the course's corpus. Everything is seeded, so the same directory comes out every time; nothing
is downloaded. hf_load.load_checkpoint_dir() then reads it like any real checkpoint.

QWEN3_0_6B holds the fields of Qwen/Qwen3-0.6B's config.json that the course uses (written here,
from the model's published config, so that no download is needed to reason about its sizes).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

# Qwen2/2.5/3's pre-tokenizer: split pattern (isolated pieces), then bytes -> printable characters
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHATML = ("{%- for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n"
          "{%- if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}")

QWEN3_0_6B = {
    "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
    "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False, "torch_dtype": "bfloat16",
    "eos_token_id": 151645, "bos_token_id": 151643,
}
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 1024}
TINY_VOCAB = 1024


def byte_level_bpe(texts, vocab_size: int, specials=()):
    """A byte-level BPE built the way Qwen's tokenizer.json is (NFC, Qwen's split pattern, byte level),
    trained by the `tokenizers` library on `texts`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def train_tokenizer(vocab_size: int = TINY_VOCAB):
    """The tiny model's tokenizer: byte_level_bpe on the course corpus, with the chat's special tokens."""
    from autograde.reference.corpus import load_corpus

    corpus = load_corpus()
    return byte_level_bpe([doc for lang in sorted(corpus) for doc in corpus[lang]], vocab_size, SPECIALS)


def tiny_config(vocab_size: int) -> dict:
    return {**QWEN3_0_6B, **TINY_SHAPE, "vocab_size": vocab_size, "torch_dtype": "float32",
            "eos_token_id": SPECIALS.index("<|im_end|>"), "bos_token_id": SPECIALS.index("<|endoftext|>")}


def random_weights(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights named as transformers names them, stored (out, in) like nn.Linear."""
    g = torch.Generator().manual_seed(seed)
    C, D, F = cfg["hidden_size"], cfg["head_dim"], cfg["intermediate_size"]
    H, G = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def matrix(out_dim, in_dim):
        return torch.randn(out_dim, in_dim, generator=g) / in_dim ** 0.5

    def gain(n):                       # norm weights near 1 but not 1, so that each one matters
        return 1 + 0.1 * torch.randn(n, generator=g)

    state = {"model.embed_tokens.weight": torch.randn(cfg["vocab_size"], C, generator=g),
             "model.norm.weight": gain(C)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state.update({
            p + "input_layernorm.weight": gain(C), p + "post_attention_layernorm.weight": gain(C),
            p + "self_attn.q_proj.weight": matrix(H * D, C), p + "self_attn.k_proj.weight": matrix(G * D, C),
            p + "self_attn.v_proj.weight": matrix(G * D, C), p + "self_attn.o_proj.weight": matrix(C, H * D),
            p + "self_attn.q_norm.weight": gain(D), p + "self_attn.k_norm.weight": gain(D),
            p + "mlp.gate_proj.weight": matrix(F, C), p + "mlp.up_proj.weight": matrix(F, C),
            p + "mlp.down_proj.weight": matrix(C, F)})
    return state


def build_tiny_qwen3(directory, seed: int = 0) -> Path:
    """Write config.json, model.safetensors, tokenizer.json and tokenizer_config.json to directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
         "chat_template": CHATML, "clean_up_tokenization_spaces": False}, ensure_ascii=False), encoding="utf-8")
    cfg = tiny_config(tok.get_vocab_size())
    (directory / "config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    save_file(random_weights(cfg, seed), str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
