"""The last step of notebook 5: one text generator from the pieces written in notebooks 1-5.

Every notebook saves the functions that pass their checks into my_llm/
(autograde.notebook.save_piece). build_generator() takes each piece below from
there when it still passes its check and otherwise, saying so, the reference
version; a piece never written, or a step this course version does not know,
counts as missing. The weights are always the trained reference model's.

    tokenizer.encode, tokenizer.decode   notebook 1, with the reference tokenizer's merges
    attention.multi_head                 notebook 3
    ffn.rms_norm, ffn.swiglu             notebook 4, stacked like the reference model's blocks
    sampling.generate                    notebook 5
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from autograde.checks.steps.sampling import generate_loop
from autograde.notebook import load_piece
from autograde.reference import functional as fn
from autograde.reference import model as ref
from autograde.reference.checkpoint import load_reference
from autograde.reference.tokenizer import ENDOFTEXT


def reference_pieces(tokenizer) -> dict:
    """The reference version of every piece, called the way the notebooks call theirs."""
    def multi_head_attention(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):   # cos, sin: (1, 1, T, D)
        def rope(t):
            return t * cos + ref.rotate_half(t) * sin
        q = rope(ref.split_heads(x @ W_q, n_head))                                   # (B, H, T, D)
        k = rope(ref.split_heads(x @ W_k, n_kv_head))                                # (B, G, T, D)
        v = ref.split_heads(x @ W_v, n_kv_head)                                      # (B, G, T, D)
        T = x.shape[1]
        out = fn.grouped_query_attention(q, k, v, fn.causal_mask(T, T))              # (B, H, T, D)
        return ref.merge_heads(out) @ W_o                                            # (B, T, C)

    return {
        "tokenizer.encode": lambda text, merges: tokenizer.encode_ordinary(text),
        "tokenizer.decode": lambda ids, merges: tokenizer.decode(ids),
        "attention.multi_head": multi_head_attention,
        "ffn.rms_norm": lambda x, weight, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight,
        "ffn.swiglu": lambda x, W_gate, W_up, W_down: (F.silu(x @ W_gate) * (x @ W_up)) @ W_down,
        "sampling.generate": generate_loop,
    }


def stack_blocks(weights: dict, cfg: ref.ModelConfig, rms_norm, attention, swiglu):
    """model_fn from the pieces: ids (1, T) -> logits (1, T, V). The stack itself is the reference's own
    forward (autograde.reference.functional), with the pieces put in its place through `ops`."""
    def attend(x, w, cfg, mask, rope, cache, layer):          # functional's attention signature
        cos, sin = rope                                        # (1, T, D) each
        return attention(x, w["W_q"], w["W_k"], w["W_v"], w["W_o"], cfg.n_head, cfg.n_kv_head,
                         cos[:, None], sin[:, None])          # the notebook's (1, 1, T, D)

    ops = {"rms_norm": rms_norm, "attention": attend, "swiglu": swiglu}

    def forward(ids):
        return fn.forward(ids, weights, cfg, ops=ops)          # (1, T, V)
    return forward


def build_generator():
    """write(prompt, ...) -> prompt and continuation, from your pieces where they pass."""
    reference = load_reference()
    tokenizer, cfg = reference.tokenizer, reference.model.cfg
    merges = sorted(tokenizer.merges.items(), key=lambda kv: kv[1])    # [((id_a, id_b), new_id), ...]
    piece = {step: load_piece(step, fallback) for step, fallback in reference_pieces(tokenizer).items()}
    weights = {name: t.detach() for name, t in reference.model.state_dict().items()}
    model_fn = stack_blocks(weights, cfg, piece["ffn.rms_norm"], piece["attention.multi_head"], piece["ffn.swiglu"])
    stop_id = tokenizer.special_tokens.get(ENDOFTEXT)

    @torch.no_grad()
    def write(prompt: str, max_new_tokens: int = 60, temperature: float = 0.8, top_k=None, top_p=0.9,
              seed: int | None = 0) -> str:
        """seed=None writes greedily."""
        ids = list(piece["tokenizer.encode"](prompt, merges))
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with tqdm(total=max_new_tokens, desc=prompt) as bar:      # one tick per call of the model

            def counted(step_ids):
                bar.update(1)
                return model_fn(step_ids)

            new = piece["sampling.generate"](counted, ids, max_new_tokens, generator=generator,
                                             temperature=temperature, top_k=top_k, top_p=top_p, stop_id=stop_id,
                                             context_length=cfg.max_seq_len)
        new = [int(i) for i in new if int(i) != stop_id]
        return piece["tokenizer.decode"](ids + new, merges)

    return write
