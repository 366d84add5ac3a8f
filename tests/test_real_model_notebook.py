"""Notebook 7 (a real model): the solution's steps pass on several seeds, the known mistakes are named
when a student's version makes them, shortcuts are refused, the tiny offline Qwen3 stand-in loads and
matches transformers, and the real configs' KV-cache sizes hold (full marks in the grader's sandbox, and
the exercise failing cleanly: tests/test_grader.py). No test needs the network or downloaded weights."""
import json
import math
import re
import unicodedata
from pathlib import Path

import pytest
import regex
import torch
import torch.nn.functional as F

from notebook_source import solution_namespace, solution_text
from autograde.checks.registry import get_check
from autograde.checks.runner import LAST_RESULTS, run_check
from autograde.checks.steps import real_model as rm

tokenizers = pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "solutions" / "src" / "07_real_model.py"
STEPS = ("bytes_to_unicode", "bpe_encode", "qk_norm", "repeat_kv", "gqa_attention", "decoder_block", "forward",
         "kv_cache_bytes")
SOLUTION_TEXT = solution_text(SOURCE)


def namespace(changes=()) -> dict:
    """The solution cells, with each (old, new) text change made first: a student's version."""
    text = SOLUTION_TEXT
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return solution_namespace(SOURCE, {"math": math, "torch": torch, "F": F, "regex": regex,
                                       "unicodedata": unicodedata}, text)


SOL = namespace()


def key(step, fn, hidden=False, seed=None):
    LAST_RESULTS.clear()
    return run_check(f"real_model.{step}", fn, hidden=hidden, seed=seed)["key"]


# ----------------------------------------------------------------------------
# the solution passes; the cases are pure in the seed


@pytest.mark.parametrize("step", STEPS)
def test_the_solution_passes_visible_and_hidden_cases(step):
    assert key(step, SOL[step]) == "ok"
    for seed in (1, 2, 3):
        result = run_check(f"real_model.{step}", SOL[step], hidden=True, seed=seed)
        assert result["passed"], result


def _flat(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [x for k, v in sorted(value.items(), key=str) for x in _flat(k) + _flat(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    if isinstance(value, (int, float, str)):
        return [torch.tensor([ord(ch) for ch in value] or [-1]) if isinstance(value, str) else torch.tensor(float(value))]
    return []


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("step", STEPS[1:])
def test_cases_are_pure_in_the_seed(step):
    check = get_check(f"real_model.{step}")
    inputs = lambda seed, hidden: [x for c in check.cases(seed, hidden) for x in _flat(c.args)]  # noqa: E731
    assert _same(inputs(7, True), inputs(7, True))
    assert not _same(inputs(7, True), inputs(8, True))
    assert _same(inputs(0, False), inputs(0, False))


@pytest.mark.parametrize("step, unchanged", [
    ("bpe_encode", rm._bpe), ("qk_norm", rm._qk_norm), ("gqa_attention", rm._attention),
    ("decoder_block", rm._block), ("forward", rm._forward), ("kv_cache_bytes", rm._kv_bytes)])
def test_the_mutants_start_from_the_right_math(step, unchanged):
    """Each mutant is one change away from a correct version: without the change, it passes."""
    from autograde.checks.core import compare_outputs

    check = get_check(f"real_model.{step}")
    for case in check.cases(0, False) + check.cases(3, True):
        assert compare_outputs(unchanged(*case.args), check.reference(*case.args)).passed, case.label


# ----------------------------------------------------------------------------
# correct code written another way passes


def repeat_with_interleave(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=1)


def kv_bytes_by_parts(config, n_tokens, bytes_per_value=2):
    per_token_per_layer = 2 * config.get("num_key_value_heads", config["num_attention_heads"]) * \
        (config["head_dim"] if "head_dim" in config else config["hidden_size"] // config["num_attention_heads"])
    return int(per_token_per_layer * bytes_per_value) * n_tokens * config["num_hidden_layers"]


def bpe_all_occurrences(text, vocab, merges, pattern):
    """Merging every occurrence of the best pair at once, as the tokenizers library does."""
    byte_char = SOL["bytes_to_unicode"]()
    rank = {pair: i for i, pair in enumerate(merges)}
    out = []
    for piece in regex.findall(pattern, unicodedata.normalize("NFC", text)):
        word = [byte_char[b] for b in piece.encode()]
        while True:
            best = min(zip(word, word[1:]), key=lambda p: rank.get(p, math.inf), default=None)
            if best is None or best not in rank:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        out += [vocab[s] for s in word]
    return out


@pytest.mark.parametrize("step, fn", [("repeat_kv", repeat_with_interleave), ("kv_cache_bytes", kv_bytes_by_parts),
                                      ("bpe_encode", bpe_all_occurrences)])
def test_correct_variants_pass(step, fn):
    assert key(step, fn) == "ok"
    assert key(step, fn, hidden=True, seed=5) == "ok"


# ----------------------------------------------------------------------------
# mistakes, written into the solution the way a student would make them


ATTN_QK = ('    q = qk_norm(x @ w["W_q"], w["q_norm.weight"], H, eps)              # (B, H, T, D)\n'
           '    k = qk_norm(x @ w["W_k"], w["k_norm.weight"], G, eps)              # (B, G, T, D)\n')
ROPE_LINE = "    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)\n"
BLOCK_BODY = ('    a, kv = gqa_attention(rms_norm(x, w["norm1.weight"], eps), attn_weights, cfg, cos, sin, past)\n'
              '    h = x + a                                                           # (B, T, C)\n'
              '    f = swiglu(rms_norm(h, w["norm2.weight"], eps), w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])\n')
MISTAKES = [
    ("bytes_to_unicode", [("if byte in printable:", "if True:")], "mistake_rm_byte_identity"),
    ("bytes_to_unicode", [("table[byte] = chr(next_free)", "table[byte] = chr(256 + byte)")], "mistake_rm_byte_offset"),
    ("bpe_encode", [('unicodedata.normalize("NFC", text)', "text")], "mistake_rm_no_nfc"),
    ("bpe_encode", [('regex.findall(pattern, unicodedata.normalize("NFC", text))',
                     '[unicodedata.normalize("NFC", text)]')], "mistake_rm_no_split"),
    ("bpe_encode", [("_, i = min(pairs)", "_, i = pairs[0]")], "mistake_rm_leftmost_merge"),
    ("bpe_encode", [('symbols = [byte_char[b] for b in piece.encode("utf-8")]', "symbols = list(piece)")],
     "mistake_rm_raw_bytes"),
    ("qk_norm", [("heads = x.view(B, T, n_heads, -1).transpose(1, 2)", "heads = x.view(B, n_heads, T, -1)")],
     "mistake_rm_qk_bad_split"),
    ("qk_norm", [("    heads = x.view(B, T, n_heads, -1).transpose(1, 2)          # (B, H, T, D)\n"
                  "    return rms_norm(heads, weight, eps)",
                  "    return rms_norm(x, 1.0, eps).view(B, T, n_heads, -1).transpose(1, 2) * weight")],
     "mistake_rm_qk_whole_vector"),
    ("qk_norm", [("h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)",
                  "h = h / (h.pow(2).mean(-1, keepdim=True).sqrt() + eps)")], "mistake_rm_qk_eps_outside"),
    ("qk_norm", [("return weight * h.to(x.dtype)", "return h.to(x.dtype)")], "mistake_rm_qk_no_weight"),
    ("repeat_kv", [("return x[:, :, None].expand(B, G, n_rep, T, D).reshape(B, G * n_rep, T, D)",
                    "return x.repeat(1, n_rep, 1, 1)")], "mistake_rm_repeat_tiled"),
    ("repeat_kv", [("return x[:, :, None].expand(B, G, n_rep, T, D).reshape(B, G * n_rep, T, D)",
                    "return x.repeat_interleave(n_rep, dim=2)")], "mistake_rm_repeat_axis"),
    ("gqa_attention", [(ATTN_QK, '    q = (x @ w["W_q"]).view(B, T, H, -1).transpose(1, 2)\n'
                                 '    k = (x @ w["W_k"]).view(B, T, G, -1).transpose(1, 2)\n')], "mistake_rm_no_qk_norm"),
    ("gqa_attention", [(ATTN_QK, '    q = apply_rope((x @ w["W_q"]).view(B, T, H, -1).transpose(1, 2), cos, sin)\n'
                                 '    k = apply_rope((x @ w["W_k"]).view(B, T, G, -1).transpose(1, 2), cos, sin)\n'
                                 '    q, k = rms_norm(q, w["q_norm.weight"], eps), rms_norm(k, w["k_norm.weight"], eps)\n'),
                       (ROPE_LINE, "")], "mistake_rm_rope_before_norm"),
    ("gqa_attention", [("    x1, x2 = x.chunk(2, dim=-1)\n    return torch.cat([-x2, x1], dim=-1)",
                        "    x1, x2 = x[..., 0::2], x[..., 1::2]\n    return torch.stack([-x2, x1], dim=-1).flatten(-2)")],
     "mistake_rm_rope_interleaved"),
    ("gqa_attention", [(".tril(diagonal=S - T)", ".tril()")], "mistake_rm_mask_no_offset"),
    ("gqa_attention", [("scores.masked_fill(~visible, float(\"-inf\"))", "scores")], "mistake_rm_no_mask"),
    ("gqa_attention", [("/ math.sqrt(q.shape[-1])", "/ math.sqrt(x.shape[-1])")], "mistake_rm_scale_d_model"),
    ("gqa_attention", [("    S = k.shape[2]\n", "    k, v = repeat_kv(k, H // G), repeat_kv(v, H // G)\n    S = k.shape[2]\n"),
                       ("q @ repeat_kv(k, H // G).transpose(-2, -1)", "q @ k.transpose(-2, -1)"),
                       ("(probs @ repeat_kv(v, H // G))", "(probs @ v)")], "mistake_rm_cache_repeated"),
    ("gqa_attention", [(ROPE_LINE, "    k_raw = k\n" + ROPE_LINE),
                       ("    return out @ w[\"W_o\"], (k, v)",
                        "    k_cache = k_raw if past is None else torch.cat([past[0], k_raw], dim=2)\n"
                        "    return out @ w[\"W_o\"], (k_cache, v)")], "mistake_rm_cache_before_rope"),
    ("decoder_block", [(BLOCK_BODY,
                        '    a, kv = gqa_attention(x, attn_weights, cfg, cos, sin, past)\n'
                        '    h = rms_norm(x + a, w["norm1.weight"], eps)\n'
                        '    f = swiglu(h, w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])\n'),
                       ("    return h + f, kv", '    return rms_norm(h + f, w["norm2.weight"], eps), kv')],
     "mistake_rm_post_norm"),
    ("decoder_block", [("    return h + f, kv", "    return f, kv")], "mistake_rm_no_residual"),
    ("decoder_block", [('w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])', 'w["ffn.W_up"], w["ffn.W_gate"], w["ffn.W_down"])')],
     "mistake_rm_swiglu_swapped"),
    ("forward", [("torch.arange(past_len, past_len + ids.shape[1], device=ids.device)",
                  "torch.arange(ids.shape[1], device=ids.device)")], "mistake_rm_positions_restart"),
    ("forward", [('    x = rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])\n', "")], "mistake_rm_no_final_norm"),
    ("kv_cache_bytes", [('config["num_hidden_layers"] * 2 *', 'config["num_hidden_layers"] *')], "mistake_rm_kv_no_two"),
    ("kv_cache_bytes", [('kv_heads = config.get("num_key_value_heads", heads)', "kv_heads = heads")],
     "mistake_rm_kv_all_heads"),
    ("kv_cache_bytes", [('config.get("head_dim") or config["hidden_size"] // heads', 'config["hidden_size"] // heads')],
     "mistake_rm_kv_head_dim"),
    ("kv_cache_bytes", [("* bytes_per_value * n_tokens", "* bytes_per_value * 8 * n_tokens")], "mistake_rm_kv_bits"),
    ("kv_cache_bytes", [('return config["num_hidden_layers"] * 2 *', "return 2 *")], "mistake_rm_kv_no_layers"),
]


@pytest.mark.parametrize("step, changes, expected", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_mistakes_are_named(step, changes, expected):
    assert key(step, namespace(changes)[step]) == expected


def test_the_tokenizers_library_is_a_refused_shortcut():
    tok = rm._tokenizer()

    def library(text, vocab, merges, pattern):
        return tok.encode(text, add_special_tokens=False).ids

    assert key("bpe_encode", library) == "forbidden_call"


# ----------------------------------------------------------------------------
# the tiny stand-in and the real configs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from autograde.reference.hf_load import load_checkpoint_dir
    from autograde.reference.tiny_real import build_tiny_qwen3

    directory = build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))
    return directory, load_checkpoint_dir(directory, "cpu", "float32")


def test_the_tiny_model_is_deterministic_and_has_qwen3s_shape(tiny, tmp_path):
    from autograde.reference.tiny_real import build_tiny_qwen3

    directory, loaded = tiny
    again = build_tiny_qwen3(tmp_path / "again")
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (directory / name).read_bytes() == (again / name).read_bytes(), name
    cfg = loaded.model.cfg
    assert cfg.qk_norm and cfg.tie_embeddings and cfg.n_kv_head < cfg.n_head and cfg.head_dim * cfg.n_head != cfg.d_model
    assert json.loads((directory / "config.json").read_text())["model_type"] == "qwen3"


def test_the_students_forward_on_the_tiny_model_matches_transformers_and_the_cache_is_exact(tiny):
    transformers = pytest.importorskip("transformers")
    directory, loaded = tiny
    c = loaded.model.cfg
    cfg = {"vocab_size": c.vocab_size, "d_model": c.d_model, "n_layer": c.n_layer, "n_head": c.n_head,
           "n_kv_head": c.n_kv_head, "head_dim": c.head_dim, "d_ff": c.d_ff, "norm_eps": c.norm_eps,
           "rope_theta": c.rope_theta}
    weights = dict(loaded.model.state_dict())
    ids = torch.tensor([loaded.tokenizer.encode("언어 모델은 다음 토큰을 예측합니다. The model reads tokens.")])
    hf = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                           attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = hf(ids).logits
        mine, _ = SOL["forward"](ids, weights, cfg)
        logits, cache = SOL["forward"](ids[:, :5], weights, cfg)
        steps = [logits]
        for t in range(5, ids.shape[1]):
            logits, cache = SOL["forward"](ids[:, t:t + 1], weights, cfg, cache)
            steps.append(logits)
    assert (mine - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    assert (torch.cat(steps, 1) - mine).abs().max() < 1e-4
    config = json.loads((directory / "config.json").read_text())
    measured = sum(t.numel() * t.element_size() for kv in cache for t in kv)
    assert measured == SOL["kv_cache_bytes"](config, ids.shape[1], 4)


def test_the_students_tokenizer_matches_the_tiny_models_tokenizer(tiny):
    directory, loaded = tiny
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in spec["model"]["merges"]]
    pattern = next(s["pattern"]["Regex"] for s in spec["pre_tokenizer"]["pretokenizers"] if s["type"] == "Split")
    for text in ["언어 모델은 다음 토큰을 예측합니다.", unicodedata.normalize("NFD", "겨울 배가 맛있다"),
                 "The model's 1,234 tokens!\n\n  Then  more.", "KV 캐시는 28개 층마다"]:
        assert SOL["bpe_encode"](text, spec["model"]["vocab"], merges, pattern) == \
            loaded.tokenizer.encode(text, add_special_tokens=False)


def test_kv_cache_sizes_of_real_configs():
    from autograde.reference.tiny_real import QWEN3_0_6B

    fields = {k: QWEN3_0_6B[k] for k in rm.REAL_CONFIGS["Qwen/Qwen3-0.6B"]}
    assert fields == rm.REAL_CONFIGS["Qwen/Qwen3-0.6B"]
    assert SOL["kv_cache_bytes"](QWEN3_0_6B, 1) == 114_688                  # 28 x 2 x 8 x 128 x 2 bytes
    assert SOL["kv_cache_bytes"](rm.REAL_CONFIGS["meta-llama/Llama-3.2-1B"], 1) == 32_768
    assert SOL["kv_cache_bytes"](rm.REAL_CONFIGS["Qwen/Qwen2.5-0.5B-Instruct"], 1) == 12_288
    mha = {**QWEN3_0_6B, "num_key_value_heads": 16}
    assert SOL["kv_cache_bytes"](mha, 1000) == 2 * SOL["kv_cache_bytes"](QWEN3_0_6B, 1000)


# ----------------------------------------------------------------------------
# export-hf refuses what it cannot write (a Qwen2 or Qwen3 config), before writing anything


@pytest.mark.parametrize("extra", [dict(qkv_bias=True), dict(qk_norm=True),
                                   dict(rope_scaling={"rope_type": "linear", "factor": 2.0})])
def test_export_hf_refuses_a_config_it_cannot_write(tmp_path, extra):
    from autograde.errors import CourseError
    from autograde.reference.hf import export_hf
    from autograde.reference.model import ModelConfig, Transformer
    from autograde.reference.tokenizer import BPETokenizer

    model = Transformer(ModelConfig.llama_style(vocab_size=300, d_model=32, n_layer=1, n_head=4, n_kv_head=2, d_ff=64,
                                                **extra))
    with pytest.raises(CourseError) as error:
        export_hf(model, BPETokenizer(), tmp_path / "out")
    assert list(extra)[0] in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------
# notebook 5's assembly runs the students' pieces inside functional.forward (ops), not a copy of it


def test_the_assembly_of_pieces_is_the_reference_forward():
    from autograde.assemble import reference_pieces, stack_blocks
    from autograde.reference.checkpoint import load_reference

    reference = load_reference()
    pieces = reference_pieces(reference.tokenizer)
    weights = {name: t.detach() for name, t in reference.model.state_dict().items()}
    seen = []

    def spying_norm(x, weight, eps):
        seen.append(tuple(x.shape))
        return pieces["ffn.rms_norm"](x, weight, eps)

    model_fn = stack_blocks(weights, reference.model.cfg, spying_norm, pieces["attention.multi_head"],
                            pieces["ffn.swiglu"])
    ids = torch.tensor([reference.tokenizer.encode("언어 모델은 다음 토큰을 예측합니다.")])
    with torch.no_grad():
        assert torch.allclose(model_fn(ids), reference.model(ids), rtol=1e-4, atol=1e-5)
    assert len(seen) == 2 * reference.model.cfg.n_layer + 1          # every norm, the final one too, is the piece


def test_the_byte_map_is_the_tokenizers_librarys():
    from tokenizers import pre_tokenizers

    table = SOL["bytes_to_unicode"]()
    assert sorted(table.values()) == sorted(pre_tokenizers.ByteLevel.alphabet()) and table[32] == "Ġ"
    tok = rm._tokenizer()
    assert tok.pre_tokenizer.pre_tokenize_str(" \n")[0][0] == "".join(table[b] for b in b" \n")


@pytest.mark.slow
def test_the_notebook_runs_its_real_model_branch_on_a_given_directory(tiny, tmp_path, monkeypatch):
    """COURSE_REAL_MODEL=DIR takes the real-model path (here on the tiny checkpoint, the only one offline):
    the notebook says it runs the given model, its ids match, its logits match transformers, its chat runs."""
    import nbformat
    from nbclient import NotebookClient

    directory, _ = tiny
    monkeypatch.setenv("COURSE_REAL_MODEL", str(directory))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(REPO / "solutions" / "en" / "07_real_model" / "07_real_model.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"Running the real {directory}:" in text and "tiny random model" not in text
    assert text.count("same ids as the model's tokenizer: True") == 4
    assert re.search(r"largest logit difference \S+, relative (\S+)", text)
    rel = float(re.search(r"largest logit difference \S+, relative (\S+)", text).group(1))
    assert rel < 1e-4


# ----------------------------------------------------------------------------
# bench/bench_real_model.py: one clear line without weights; on a checkpoint directory, the same greedy tokens


def test_the_real_model_bench_without_weights_and_on_a_checkpoint(tiny, tmp_path):
    import os
    import subprocess
    import sys

    directory, _ = tiny
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home"), "OMP_NUM_THREADS": "1"}
    env.pop("COURSE_REAL_MODEL", None)
    script = str(REPO / "bench" / "bench_real_model.py")
    absent = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env, timeout=120)
    assert absent.returncode == 2 and absent.stdout == ""
    assert len(absent.stderr.strip().splitlines()) == 1 and absent.stderr.startswith("error: no Qwen/Qwen3-0.6B")
    done = subprocess.run([sys.executable, script, "--model", str(directory), "--prompt-tokens", "16", "--new-tokens", "4",
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "same greedy tokens as transformers: True" in done.stdout and "course prefill, 16 tokens" in done.stdout


# ----------------------------------------------------------------------------
# holes a student could slip through, closed (each wrong version passed every case before)


FIXED_EPS = [('rms_norm(x, w["norm1.weight"], eps)', 'rms_norm(x, w["norm1.weight"], 1e-6)'),
             ('rms_norm(h, w["norm2.weight"], eps)', 'rms_norm(h, w["norm2.weight"], 1e-6)'),
             ('H, G, eps = cfg["n_head"], cfg["n_kv_head"], cfg["norm_eps"]',
              'H, G, eps = cfg["n_head"], cfg["n_kv_head"], 1e-6'),
             ('rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])', 'rms_norm(x, weights["norm_f.weight"], 1e-6)')]
HOLES = [
    # cfg["norm_eps"] ignored (every case used 1e-6)
    ("gqa_attention", FIXED_EPS, "wrong_values"),
    ("decoder_block", FIXED_EPS, "wrong_values"),
    ("forward", FIXED_EPS, "wrong_values"),
    # cfg["rope_theta"] ignored (every case used Qwen3's 1e6)
    ("forward", [('rope_tables(positions, cfg["head_dim"], cfg["rope_theta"])',
                  'rope_tables(positions, cfg["head_dim"], 1000000.0)')], "wrong_values"),
    # cfg["n_layer"] ignored (every case had 2 layers), or taken from the cache (None in a prefill)
    ("forward", [('for i in range(cfg["n_layer"]):', "for i in range(2):")], None),
    ("forward", [('for i in range(cfg["n_layer"]):', "for i in range(len(cache) if cache else 2):")], None),
    # n_rep hard-coded to 2 (every visible case had 4 query heads on 2 key/value heads)
    ("gqa_attention", [("repeat_kv(k, H // G)", "repeat_kv(k, 2)"), ("repeat_kv(v, H // G)", "repeat_kv(v, 2)")], None),
]


@pytest.mark.parametrize("step, changes, expected", HOLES, ids=[f"{h[0]}-{i}" for i, h in enumerate(HOLES)])
def test_a_field_of_cfg_that_is_ignored_fails(step, changes, expected):
    result = key(step, namespace(changes)[step])
    assert result != "ok" if expected is None else result == expected


def ready_made_byte_map():
    from transformers.convert_slow_tokenizer import bytes_to_unicode as library_table

    return library_table()


def byte_map_from_the_alphabet():
    from tokenizers.pre_tokenizers import ByteLevel

    shifted = iter(sorted(ch for ch in ByteLevel.alphabet() if ord(ch) >= 256))
    keep = {*range(33, 127), *range(161, 173), *range(174, 256)}
    return {b: chr(b) if b in keep else next(shifted) for b in range(256)}


def bpe_with_the_librarys_model(text, vocab, merges, pattern):
    from tokenizers.models import BPE

    model, byte_char = BPE(vocab, merges), SOL["bytes_to_unicode"]()
    ids = []
    for piece in regex.findall(pattern, unicodedata.normalize("NFC", text)):
        ids += [token.id for token in model.tokenize("".join(byte_char[b] for b in piece.encode("utf-8")))]
    return ids


@pytest.mark.parametrize("step, fn", [("bytes_to_unicode", byte_map_from_the_alphabet),
                                      ("bpe_encode", bpe_with_the_librarys_model)])
def test_the_librarys_own_pieces_are_refused(step, fn):
    assert key(step, fn) == "forbidden_call"
    assert key(step, fn, hidden=True, seed=2) == "forbidden_call"


def test_a_ready_made_byte_table_from_transformers_is_refused():
    pytest.importorskip("transformers")
    assert key("bytes_to_unicode", ready_made_byte_map) == "forbidden_call"


@pytest.mark.parametrize("step, changes", [
    ("qk_norm", [("return weight * h.to(x.dtype)", "return weight.double() * h.double()")]),
    ("repeat_kv", [("reshape(B, G * n_rep, T, D)\n", "reshape(B, G * n_rep, T, D).double()\n")]),
    ("gqa_attention", [('return out @ w["W_o"], (k, v)', 'return out @ w["W_o"], (k.double(), v)')]),
    ("decoder_block", [("return h + f, kv", "return (h + f).double(), kv")]),
    ("forward", [('return x @ weights["tok_emb"].T, new_cache', 'return (x @ weights["tok_emb"].T).double(), new_cache')]),
])
def test_a_result_in_another_dtype_fails(step, changes):
    """Values within tolerance, in float64 where the reference keeps float32 (the cache too)."""
    assert key(step, namespace(changes)[step]) == "wrong_dtype"


def test_a_config_changed_in_place_is_reported_and_the_real_configs_stay():
    before = json.dumps(rm.REAL_CONFIGS, sort_keys=True)
    changes = [('    heads = config["num_attention_heads"]\n',
                '    heads = config["num_attention_heads"]\n    config.setdefault("num_key_value_heads", heads)\n')]
    assert key("kv_cache_bytes", namespace(changes)["kv_cache_bytes"]) == "mutated_input"
    assert json.dumps(rm.REAL_CONFIGS, sort_keys=True) == before


def test_a_split_pattern_written_in_instead_of_the_argument_fails():
    """Every case passed Qwen's pattern; one now passes GPT-2's, and the reference is the library's encoder."""
    fixed = namespace([("regex.findall(pattern, ", f"regex.findall({rm.QWEN_SPLIT!r}, ")])["bpe_encode"]
    assert key("bpe_encode", fixed) == "mistake_rm_pattern_ignored"
    for seed in (1, 2, 3):
        assert key("bpe_encode", fixed, hidden=True, seed=seed) == "mistake_rm_pattern_ignored"


LIBRARY_CELLS = {
    "bytes_to_unicode": "from transformers.convert_slow_tokenizer import bytes_to_unicode as library_table\n\n\n"
                        "def bytes_to_unicode():\n    return library_table()\n",
    # BPE(...).tokenize names nothing the static pass can resolve: the sandbox's tripwire must catch it
    "bpe_encode": "from tokenizers.models import BPE\n\n\n"
                  "def bpe_encode(text, vocab, merges, pattern):\n"
                  "    model, byte_char = BPE(vocab, merges), bytes_to_unicode()\n"
                  "    pieces = regex.findall(pattern, unicodedata.normalize('NFC', text))\n"
                  "    return [t.id for p in pieces for t in model.tokenize(''.join(byte_char[b] for b in p.encode()))]\n",
}


@pytest.mark.slow
def test_the_librarys_tokenizer_pieces_are_refused_in_the_sandbox(tmp_path):
    """Graded for real: the transformers table is refused by the static pass, the tokenizers BPE model's
    tokenize by the worker's tripwire; the other steps keep their points."""
    pytest.importorskip("transformers")
    from autograde.grader.pipeline import grade_notebook
    from autograde.grader.sandbox import Limits

    def by_id(nb):
        return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if "nbgrader" in c.get("metadata", {})}

    name = "07_real_model"
    nb = json.loads((REPO / "exercises" / "en" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
    solution = by_id(json.loads((REPO / "solutions" / "en" / name / f"{name}.ipynb").read_text(encoding="utf-8")))
    for gid, cell in by_id(nb).items():
        if cell["metadata"]["nbgrader"].get("solution"):
            cell["source"] = LIBRARY_CELLS.get(gid, solution[gid]["source"])
    path = tmp_path / f"{name}.ipynb"
    path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    tests = {t["name"]: t for t in grade_notebook(path, Limits(timeout=240, call_timeout=60))["tests"]}
    for cell, library in (("check_bytes_to_unicode", r"transformers\.convert_slow_tokenizer\.bytes_to_unicode"),
                          ("check_bpe_encode", r"tokenizers\.models\.(BPE|Model)\.tokenize")):
        assert tests[cell]["status"] == "failed", tests[cell]
        assert tests[cell]["steps"][0]["key"] in ("forbidden_reference", "forbidden_call"), tests[cell]
        assert re.search(library, tests[cell]["output"]), tests[cell]["output"]
    assert tests["check_qk_norm"]["status"] == "passed"


TRANSFORMERS_ROUTES = [
    ("qk_norm", "from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm\n\n\n"
                "def qk_norm(x, weight, n_heads, eps):\n"
                "    norm = Qwen3RMSNorm(weight.shape[0], eps)\n    norm.weight.data = weight\n"
                "    return norm(x.unflatten(-1, (n_heads, -1)).transpose(1, 2))\n"),
    ("repeat_kv", "from transformers.models.llama import modeling_llama\n\n\n"
                  "def repeat_kv(x, n_rep):\n    return modeling_llama.repeat_kv(x, n_rep)\n"),
    ("gqa_attention", "import transformers.models.qwen3.modeling_qwen3 as q3\n\n\n"
                      "def gqa_attention(x, w, cfg, cos, sin, past=None):\n"
                      "    return q3.eager_attention_forward(None, x, x, x, None, 1.0)\n"),
    ("forward", "import transformers\n\n\n"
                "def forward(ids, weights, cfg, cache=None):\n"
                "    return transformers.AutoModelForCausalLM.from_config(transformers.Qwen3Config())(ids)\n"),
]


@pytest.mark.parametrize("step, source", TRANSFORMERS_ROUTES, ids=[r[0] for r in TRANSFORMERS_ROUTES])
def test_transformers_own_pieces_are_refused_by_the_static_pass(step, source):
    """The grader's static pass reads forbidden and forbidden_names (autograde.grader.pipeline.static_report):
    transformers' Qwen3 / Llama pieces, by name, without importing them."""
    from autograde.grader.static import analyse

    check = get_check(f"real_model.{step}")
    report = analyse([(step, source)], [], [(check.step, check.function, (*check.forbidden, *check.forbidden_names))])
    assert report.forbidden[check.step].what.startswith("transformers."), report.to_json()
    solution = analyse([(step, SOLUTION_TEXT)], [], [(check.step, check.function,
                                                       (*check.forbidden, *check.forbidden_names))])
    assert solution.forbidden == {}


def test_merges_remembered_from_an_earlier_call_fail():
    """Every case passed the same merges; one now passes only the first few (the library's encoder with those)."""
    remembered = namespace([("    rank = {pair: i for i, pair in enumerate(merges)}\n",
                             "    rank = RANKS.setdefault('rank', {pair: i for i, pair in enumerate(merges)})\n")])
    remembered["RANKS"] = {}
    assert key("bpe_encode", remembered["bpe_encode"]) == "mistake_rm_merges_ignored"
    remembered["RANKS"].clear()
    assert key("bpe_encode", remembered["bpe_encode"], hidden=True, seed=2) == "mistake_rm_merges_ignored"
