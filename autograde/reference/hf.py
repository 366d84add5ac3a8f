"""The bridge to Hugging Face: weight-name maps, export, and tokenizer.json.

Only used for cross-checks and `course export-hf`; the course itself never
needs transformers. Our weights are stored (in, out); torch.nn.Linear stores
(out, in), so Llama's projections are transposed on the way. GPT-2's Conv1D
already stores (in, out), and its c_attn packs W_q, W_k, W_v side by side.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from autograde.errors import CourseError
from autograde.reference.model import ModelConfig, Transformer
from autograde.reference.tokenizer import BPETokenizer


# ----------------------------------------------------------------------------
# configs


def is_gpt2_style(cfg: ModelConfig) -> bool:
    return (cfg.position, cfg.norm, cfg.ffn, cfg.bias, cfg.tie_embeddings) == ("learned", "layernorm", "gelu", True, True) \
        and cfg.n_kv_head == cfg.n_head


def is_llama_style(cfg: ModelConfig) -> bool:
    return (cfg.position, cfg.norm, cfg.ffn, cfg.bias) == ("rope", "rmsnorm", "swiglu", False)


def refuse_unwritable(cfg: ModelConfig) -> None:
    """One clear line for what the GPT-2 and Llama configs written here cannot express (Qwen2's biases on
    W_q, W_k, W_v; Qwen3's QK-norm; RoPE scaling): exporting them anyway would write a different model."""
    unwritable = [name for name, present in (("qkv_bias", cfg.qkv_bias), ("qk_norm", cfg.qk_norm),
                                             ("rope_scaling", bool(cfg.rope_scaling))) if present]
    if unwritable:
        raise CourseError(f"export-hf writes GPT-2- and Llama-style models; this config has {', '.join(unwritable)}, "
                          "which that export cannot write")


def hf_config(cfg: ModelConfig):
    """The transformers config of the same architecture."""
    refuse_unwritable(cfg)
    if is_gpt2_style(cfg):
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.d_model, n_layer=cfg.n_layer,
            n_head=cfg.n_head, n_inner=cfg.d_ff, activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
            bos_token_id=cfg.vocab_size - 1, eos_token_id=cfg.vocab_size - 1)
    if is_llama_style(cfg):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
            num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
            head_dim=cfg.head_dim, max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
            rope_theta=cfg.rope_theta, hidden_act="silu", attention_bias=False, mlp_bias=False,
            tie_word_embeddings=cfg.tie_embeddings, bos_token_id=cfg.vocab_size - 1, eos_token_id=cfg.vocab_size - 1)
    raise CourseError("only GPT-2-style and Llama-style configs have a Hugging Face equivalent")


# ----------------------------------------------------------------------------
# weights


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    ours = {k: v.detach() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    if is_gpt2_style(cfg):
        out["transformer.wte.weight"] = ours["tok_emb"]
        out["transformer.wpe.weight"] = ours["pos_emb"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours_norm, hf_norm in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[h + hf_norm + ".weight"] = ours[p + ours_norm + ".weight"]
                out[h + hf_norm + ".bias"] = ours[p + ours_norm + ".bias"]
            a = p + "attn."
            out[h + "attn.c_attn.weight"] = torch.cat([ours[a + "W_q"], ours[a + "W_k"], ours[a + "W_v"]], dim=1)
            out[h + "attn.c_attn.bias"] = torch.cat([ours[a + "b_q"], ours[a + "b_k"], ours[a + "b_v"]])
            out[h + "attn.c_proj.weight"], out[h + "attn.c_proj.bias"] = ours[a + "W_o"], ours[a + "b_o"]
            out[h + "mlp.c_fc.weight"], out[h + "mlp.c_fc.bias"] = ours[p + "ffn.W_1"], ours[p + "ffn.b_1"]
            out[h + "mlp.c_proj.weight"], out[h + "mlp.c_proj.bias"] = ours[p + "ffn.W_2"], ours[p + "ffn.b_2"]
        out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = ours["norm_f.weight"], ours["norm_f.bias"]
        out["lm_head.weight"] = ours["tok_emb"]
    elif is_llama_style(cfg):
        out["model.embed_tokens.weight"] = ours["tok_emb"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            out[h + "input_layernorm.weight"] = ours[p + "norm1.weight"]
            out[h + "post_attention_layernorm.weight"] = ours[p + "norm2.weight"]
            for ours_name, hf_name in (("W_q", "q_proj"), ("W_k", "k_proj"), ("W_v", "v_proj"), ("W_o", "o_proj")):
                out[h + f"self_attn.{hf_name}.weight"] = ours[p + "attn." + ours_name].t()
            for ours_name, hf_name in (("W_gate", "gate_proj"), ("W_up", "up_proj"), ("W_down", "down_proj")):
                out[h + f"mlp.{hf_name}.weight"] = ours[p + "ffn." + ours_name].t()
        out["model.norm.weight"] = ours["norm_f.weight"]
        out["lm_head.weight"] = ours["tok_emb"] if cfg.tie_embeddings else ours["W_u"].t()
    else:
        hf_config(cfg)  # raises the explanatory error
    return {k: v.contiguous().clone() for k, v in out.items()}


def from_hf_state_dict(cfg: ModelConfig, hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of to_hf_state_dict: load a transformers model's weights into ours."""
    ours: dict[str, torch.Tensor] = {}
    if is_gpt2_style(cfg):
        C = cfg.d_model
        ours["tok_emb"] = hf_state["transformer.wte.weight"]
        ours["pos_emb"] = hf_state["transformer.wpe.weight"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours_norm, hf_norm in (("norm1", "ln_1"), ("norm2", "ln_2")):
                ours[p + ours_norm + ".weight"] = hf_state[h + hf_norm + ".weight"]
                ours[p + ours_norm + ".bias"] = hf_state[h + hf_norm + ".bias"]
            w, b = hf_state[h + "attn.c_attn.weight"], hf_state[h + "attn.c_attn.bias"]
            for j, (wn, bn) in enumerate((("W_q", "b_q"), ("W_k", "b_k"), ("W_v", "b_v"))):
                ours[p + "attn." + wn] = w[:, j * C:(j + 1) * C]
                ours[p + "attn." + bn] = b[j * C:(j + 1) * C]
            ours[p + "attn.W_o"], ours[p + "attn.b_o"] = hf_state[h + "attn.c_proj.weight"], hf_state[h + "attn.c_proj.bias"]
            ours[p + "ffn.W_1"], ours[p + "ffn.b_1"] = hf_state[h + "mlp.c_fc.weight"], hf_state[h + "mlp.c_fc.bias"]
            ours[p + "ffn.W_2"], ours[p + "ffn.b_2"] = hf_state[h + "mlp.c_proj.weight"], hf_state[h + "mlp.c_proj.bias"]
        ours["norm_f.weight"], ours["norm_f.bias"] = hf_state["transformer.ln_f.weight"], hf_state["transformer.ln_f.bias"]
    else:
        ours["tok_emb"] = hf_state["model.embed_tokens.weight"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            ours[p + "norm1.weight"] = hf_state[h + "input_layernorm.weight"]
            ours[p + "norm2.weight"] = hf_state[h + "post_attention_layernorm.weight"]
            for ours_name, hf_name in (("W_q", "q_proj"), ("W_k", "k_proj"), ("W_v", "v_proj"), ("W_o", "o_proj")):
                ours[p + "attn." + ours_name] = hf_state[h + f"self_attn.{hf_name}.weight"].t()
            for ours_name, hf_name in (("W_gate", "gate_proj"), ("W_up", "up_proj"), ("W_down", "down_proj")):
                ours[p + "ffn." + ours_name] = hf_state[h + f"mlp.{hf_name}.weight"].t()
        ours["norm_f.weight"] = hf_state["model.norm.weight"]
        if not cfg.tie_embeddings:
            ours["W_u"] = hf_state["lm_head.weight"].t()
    return {k: v.contiguous().clone() for k, v in ours.items()}


def to_hf_model(model: Transformer):
    """A transformers model holding exactly our weights."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_config(hf_config(model.cfg), attn_implementation="eager")
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    # GPT-2 registers non-weight buffers (e.g. attn.bias masks) in some versions
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise CourseError(f"weight mapping to transformers is incomplete: missing {missing}, unexpected {unexpected}")
    return hf.eval()


# ----------------------------------------------------------------------------
# tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable characters.

    Printable Latin-1 bytes map to themselves; the rest are shifted to code
    points from 256 upwards so that tokenizer.json never contains raw control
    bytes or spaces.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def hf_tokenizer_json(tok: BPETokenizer) -> dict:
    """Our BPE as a `tokenizers` tokenizer.json (byte-level BPE, same ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    byte_char = bytes_to_unicode()

    def as_text(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {as_text(tok.vocab[i]): i for i in tok.vocab}
    merges = [(as_text(tok.vocab[a]), as_text(tok.vocab[b]))
              for (a, b), _ in sorted(tok.merges.items(), key=lambda kv: kv[1])]
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    for text, idx in sorted(tok.special_tokens.items(), key=lambda kv: kv[1]):
        hf.add_special_tokens([AddedToken(text, special=True, normalized=False)])
        if hf.token_to_id(text) != idx:
            raise CourseError(f"special token {text!r} got id {hf.token_to_id(text)} in tokenizers, expected {idx}")
    return json.loads(hf.to_str())


def export_hf(model: Transformer, tok: BPETokenizer, directory, force: bool = False) -> Path:
    """Write config.json, model.safetensors and tokenizer.json for transformers.

    Refuses an empty path, a file, and (without force) a directory that already holds anything;
    a directory that cannot be written is a CourseError that names it."""
    if not str(directory).strip():
        raise CourseError("the output directory is empty: name a directory, e.g. `course export-hf out/`")
    refuse_unwritable(model.cfg)                  # before anything is written
    directory = Path(directory)
    try:
        if directory.exists() and not directory.is_dir():
            raise CourseError(f"{directory} exists and is not a directory")
        if directory.is_dir() and any(directory.iterdir()) and not force:
            raise CourseError(f"{directory} is not empty; choose a new directory, or add --force to overwrite "
                              "the files of an earlier export there")
        directory.mkdir(parents=True, exist_ok=True)
        hf = to_hf_model(model)
        hf.save_pretrained(directory, safe_serialization=True)
        (directory / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json(tok), ensure_ascii=False, indent=2),
                                                  encoding="utf-8")
        eos = next(iter(tok.special_tokens), None)
        (directory / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "bos_token": eos,
            "model_max_length": model.cfg.max_seq_len, "clean_up_tokenization_spaces": False}, indent=2),
            encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a part of the path is a file, not a directory"
        raise CourseError(f"cannot write the model to {directory}: {reason}"
                          + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(directory) else "")) \
            from None
    return directory
