"""Real Hugging Face checkpoints (llama, qwen2, qwen3) run by the course's own code.

transformers builds tiny random models of each supported architecture inside
the test (the fields of real configs, sizes shrunk), saves them (sharded or
not, tied or untied, transformers 5's rope_parameters or the older
rope_theta/rope_scaling), and our loader reads them back: logits must match
transformers' forward (float32, 1e-5) and greedy tokens its generate. The
tokenizer is a small byte-level BPE trained here with the `tokenizers`
library. No network: a hub id must fail with one clean line.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from autograde.cli import main  # noqa: E402
from autograde.errors import CourseError  # noqa: E402
from autograde.reference import functional as fn  # noqa: E402
from autograde.reference.hf_load import config_from_hf, load_checkpoint_dir, load_model  # noqa: E402
from autograde.reference.sampling import generate  # noqa: E402

TOL = 1e-5
NEW_TOKENS = 10
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>"]
TEXTS = ["언어 모델은 다음 토큰을 예측합니다.", "겨울 배가 맛있다고 합니다.", "The model reads tokens, not letters.",
         "Attention lets every token look back at the tokens before it.", "토큰마다 벡터가 하나씩 있습니다."] * 20
# a ChatML-style template of our own, with the branches real templates use
TEMPLATE = (
    "{%- if bos_token is defined and add_bos %}{{ bos_token }}{% endif -%}\n"
    "{%- for message in messages %}\n"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' ~ message['role']) }}{% endif %}\n"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}<|im_end|>\n"
    "{% endfor -%}\n"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n"
    "{%- if enable_thinking is defined and not enable_thinking %}\n<think>\n\n</think>\n{% endif %}\n"
    "{% endif %}")

COMMON = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=300, max_position_embeddings=4096, rms_norm_eps=1e-6,
              eos_token_id=2, bos_token_id=3)
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 64}
# name: (config class, fields, save options)
ARCHS = {
    "llama-untied": ("LlamaConfig", dict(rope_theta=10000.0, tie_word_embeddings=False), dict(shard=False)),
    "llama3-scaled-tied-oldconfig": ("LlamaConfig", dict(rope_theta=500000.0, rope_scaling=LLAMA3_SCALING,
                                                         tie_word_embeddings=True),
                                     dict(shard=True, old_config=True, bos=True)),
    "qwen2-tied": ("Qwen2Config", dict(rope_theta=1000000.0, tie_word_embeddings=True), dict(shard=True)),
    "qwen3-untied": ("Qwen3Config", dict(head_dim=32, rope_theta=1000000.0, tie_word_embeddings=False),
                     dict(shard=False)),
}


def train_tokenizer(directory, bos: bool):
    """A byte-level BPE (tokenizer.json) and its tokenizer_config.json with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer)
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3]
    if bos:   # Llama 3's tokenizer adds a BOS in its post-processor
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                           special_tokens=[("<|begin_of_text|>", 3)])
    tok.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "chat_template": TEMPLATE, "clean_up_tokenization_spaces": False}
    if bos:
        config["bos_token"] = "<|begin_of_text|>"
    (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))


def to_old_config(directory):
    """config.json as transformers 4 wrote it (and as most hub checkpoints still have it)."""
    path = directory / "config.json"
    data = json.loads(path.read_text())
    params = data.pop("rope_parameters")
    data["rope_theta"] = params.pop("rope_theta")
    data["rope_scaling"] = params if params.get("rope_type", "default") != "default" else None
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (directory, transformers model in float32 eval mode)."""
    built = {}
    for i, (name, (cls, fields, save)) in enumerate(ARCHS.items()):
        cfg = getattr(transformers, cls)(**COMMON, **fields)
        torch.manual_seed(100 + i)
        hf = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
        with torch.no_grad():   # every weight random (biases and norm gains too), so every one matters
            for p in hf.parameters():
                p.copy_(1 + 0.2 * torch.randn_like(p) if p.dim() == 1 else torch.randn_like(p) / p.shape[-1] ** 0.5)
        directory = tmp_path_factory.mktemp(name)
        hf.save_pretrained(directory, max_shard_size="60KB" if save["shard"] else "1GB")
        assert (directory / "model.safetensors.index.json").is_file() == save["shard"]
        if save.get("old_config"):
            to_old_config(directory)
        train_tokenizer(directory, bos=save.get("bos", False))
        built[name] = (directory, hf)
    return built


def random_ids(seed, shape):
    return torch.randint(4, 300, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_logits_match_transformers(checkpoints, name):
    directory, hf = checkpoints[name]
    loaded = load_checkpoint_dir(directory, "cpu", "float32")
    model = loaded.model
    assert model.cfg.qkv_bias == name.startswith("qwen2") and model.cfg.qk_norm == name.startswith("qwen3")
    assert model.cfg.tie_embeddings == ("-tied" in name)
    ids = random_ids(1, (2, 12))
    far = torch.arange(3000, 3012).expand(2, 12)     # long-range positions: where RoPE scaling matters
    with torch.no_grad():
        for positions in (None, far):
            ours = model(ids, position_ids=positions)
            theirs = hf(ids, position_ids=positions).logits
            assert ours.shape == theirs.shape == (2, 12, 300)
            assert (ours - theirs).abs().max().item() <= TOL
        # left padding, as in batched generation: masked keys, positions counted from the first real token
        mask = torch.ones(2, 12, dtype=torch.long)
        mask[1, :5] = 0
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ours = model(ids, attention_mask=mask, position_ids=positions)
        theirs = hf(ids, attention_mask=mask, position_ids=positions).logits
        real = mask.bool()                            # padding rows attend to nothing: not compared
        assert (ours[real] - theirs[real]).abs().max().item() <= TOL


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_greedy_tokens_match_transformers_generate(checkpoints, name):
    directory, hf = checkpoints[name]
    loaded = load_checkpoint_dir(directory, "cpu", "float32")
    prompt = random_ids(2, (1, 7))
    with torch.no_grad():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                          do_sample=False, pad_token_id=0)
    theirs = out[0, prompt.shape[1]:].tolist()
    for use_cache in (True, False):
        ours = generate(loaded.model, prompt[0].tolist(), NEW_TOKENS, greedy=True, use_cache=use_cache,
                        stop_id=loaded.stop_ids)
        assert ours == theirs


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_cli_generate_matches_transformers(checkpoints, name, capsys):
    directory, hf = checkpoints[name]
    prompt = "언어 모델은 토큰을"
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    ids = hf_tok(prompt).input_ids
    assert (ids[0] == 3) == name.startswith("llama3")            # the BOS of the post-processor
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
    expected = prompt + hf_tok.decode(out[0, len(ids):], skip_special_tokens=True)
    rc = main(["generate", prompt, "--model", str(directory), "--greedy", "--max-new-tokens", str(NEW_TOKENS),
               "--device", "cpu", "--dtype", "float32"])
    assert rc == 0
    assert capsys.readouterr().out == expected + "\n"


def test_tokenizer_and_chat_template_match_transformers(checkpoints):
    directory, _ = checkpoints["llama3-scaled-tied-oldconfig"]
    ours = load_checkpoint_dir(directory, "cpu", "float32").tokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(directory)
    for text in ["겨울 배가 맛있다!", "The model reads tokens.", "처음 보는 글자: 龍 🙂", "<|im_end|> inside"]:
        ids = ours.encode(text)
        assert ids == theirs(text).input_ids
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    messages = [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": " 안녕하세요? "},
                {"role": "assistant", "content": "안녕하세요."}, {"role": "user", "content": "모델이 뭐예요?"}]
    for options in ({}, {"enable_thinking": False}, {"add_bos": True}):
        for add_generation_prompt in (True, False):
            text = ours.render_chat(messages, add_generation_prompt, **options)
            assert text == theirs.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                      tokenize=False, **options)
            assert ours.encode_chat(messages, add_generation_prompt, **options) == \
                theirs(text, add_special_tokens=False).input_ids
    with pytest.raises(CourseError, match="unknown role tool"):
        ours.render_chat([{"role": "tool", "content": "x"}])


def test_cli_chat_answers_like_transformers(checkpoints, capsys):
    directory, hf = checkpoints["qwen3-untied"]
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    messages = [{"role": "system", "content": "짧게"}, {"role": "user", "content": "모델이 뭐예요?"}]
    text = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    ids = hf_tok(text, add_special_tokens=False).input_ids
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0, eos_token_id=[2])
    expected = hf_tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()
    rc = main(["chat", "모델이 뭐예요?", "--system", "짧게", "--model", str(directory), "--greedy",
               "--max-new-tokens", str(NEW_TOKENS), "--device", "cpu"])
    assert rc == 0
    assert capsys.readouterr().out == expected + "\n"


def test_bfloat16_keeps_the_checkpoint_in_half_precision(checkpoints):
    directory, hf = checkpoints["qwen2-tied"]
    model = load_checkpoint_dir(directory, "cpu", "bfloat16").model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids = random_ids(3, (1, 9))
    with torch.no_grad():
        ours = model(ids).float()
        theirs = hf(ids).logits
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert (ours - theirs).abs().max().item() < 0.1 * theirs.abs().max().item()   # bf16 keeps ~3 digits


def test_llama3_and_rope_config_styles_agree(checkpoints):
    new_style = transformers.LlamaConfig(**COMMON, rope_theta=500000.0, rope_scaling=LLAMA3_SCALING).to_dict()
    old_style = json.loads((checkpoints["llama3-scaled-tied-oldconfig"][0] / "config.json").read_text())
    assert "rope_parameters" in new_style and "rope_scaling" in old_style
    a, b = config_from_hf(new_style), config_from_hf(old_style)
    assert a.rope_theta == b.rope_theta == 500000.0 and a.rope_scaling["rope_type"] == b.rope_scaling["rope_type"]
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](transformers.LlamaConfig(**COMMON, rope_theta=500000.0,
                                                                       rope_scaling=LLAMA3_SCALING), "cpu")
    ours = fn.rope_inv_freq(16, 500000.0, a.rope_scaling)
    plain = fn.rope_inv_freq(16, 500000.0)
    assert torch.allclose(ours, theirs.float(), rtol=1e-6, atol=0)
    # the three regimes all occur: untouched fast pairs, stretched slow pairs, blended ones between
    ratio = plain / ours
    assert (ratio == 1).any() and (ratio == 8).any() and ((ratio > 1) & (ratio < 8)).any()


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_broken_checkpoints_are_named(checkpoints, tmp_path, capsys):
    import shutil

    source, _ = checkpoints["qwen2-tied"]
    cases = []
    other = tmp_path / "neox"
    shutil.copytree(source, other)
    data = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**data, "model_type": "gpt_neox"}))
    cases.append((other, "'gpt_neox' is not supported"))
    missing = tmp_path / "missing-shard"
    shutil.copytree(source, missing)
    shard = sorted(set(json.loads((missing / "model.safetensors.index.json").read_text())["weight_map"].values()))[1]
    (missing / shard).unlink()
    cases.append((missing, f"{shard} is missing"))
    wrong = tmp_path / "wrong-heads"
    shutil.copytree(source, wrong)
    (wrong / "config.json").write_text(json.dumps({**data, "num_key_value_heads": 4}))
    cases.append((wrong, "model.layers.0.self_attn.k_proj.weight has shape (32, 64), but config.json implies (64, 64)"))
    lacking = tmp_path / "no-bias"
    shutil.copytree(source, lacking)
    (lacking / "config.json").write_text(json.dumps({**data, "model_type": "qwen3"}))   # needs q_norm, k_norm
    cases.append((lacking, "lacks ['model.layers.0.self_attn.k_norm.weight'"))
    for directory, fragment in cases:
        assert main(["generate", "hi", "--model", str(directory), "--device", "cpu"]) == 2
        one_error_line(capsys, fragment)
    assert main(["generate", "hi", "--model", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    one_error_line(capsys, "no such model directory")


def test_chat_needs_a_chat_template(checkpoints, tmp_path, capsys):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(checkpoints["llama-untied"][0], plain)
    (plain / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    assert main(["chat", "안녕", "--model", str(plain), "--device", "cpu"]) == 2
    one_error_line(capsys, "no chat template")
    with pytest.raises(SystemExit) as exit_:       # argparse: --model is required for chat
        main(["chat", "안녕"])
    assert exit_.value.code == 2 and "--model" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_error_line(checkpoints, capsys):
    assert main(["generate", "hi", "--model", str(checkpoints["llama-untied"][0]), "--device", "cuda"]) == 2
    one_error_line(capsys, "no CUDA GPU")


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline-flag", "no-network"])
def test_hub_id_without_network_is_one_error_line(tmp_path, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    command = [sys.executable, "-m", "autograde.cli", "generate", "hi", "--model", "course-test/no-such-model"]
    result = subprocess.run(command, env={**clean, "HF_HOME": str(tmp_path / "hf"), **env}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: model course-test/no-such-model ") and result.stderr.count("\n") == 1, \
        result.stderr
    assert "--model DIR" in result.stderr and "Traceback" not in result.stderr


def test_the_course_model_exported_runs_the_same_through_the_loader(tmp_path, capsys):
    """`course export-hf` writes a llama checkpoint: the loader must continue it like the course's own model."""
    assert main(["export-hf", str(tmp_path / "exported")]) == 0
    capsys.readouterr()
    prompt = "언어 모델은"
    assert main(["generate", prompt, "--greedy", "--max-new-tokens", "12"]) == 0
    own = capsys.readouterr().out
    assert main(["generate", prompt, "--greedy", "--max-new-tokens", "12", "--model", str(tmp_path / "exported"),
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out == own
    loaded = load_model(str(tmp_path / "exported"), "cpu")
    assert loaded.hf and loaded.model.cfg.d_head is None and not loaded.model.cfg.qk_norm


def test_cli_chat_reads_turns_from_stdin_and_keeps_the_history(checkpoints, capsys, monkeypatch):
    import io

    directory, hf = checkpoints["qwen2-tied"]
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory)
    messages, expected = [], []
    for line in ("안녕하세요", "The model?"):
        messages.append({"role": "user", "content": line})
        ids = hf_tok(hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                enable_thinking=False), add_special_tokens=False).input_ids
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=[2])
        reply = hf_tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        messages.append({"role": "assistant", "content": reply})
        expected.append(reply)
    monkeypatch.setattr(sys, "stdin", io.StringIO("안녕하세요\nThe model?\n"))
    assert main(["chat", "--model", str(directory), "--greedy", "--max-new-tokens", "6", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == "".join(reply + "\n" for reply in expected)


def test_functional_forward_runs_a_checkpoint_with_other_pieces(checkpoints):
    """The hook the assembly of the students' pieces needs: functional.forward over the loaded
    weights with rms_norm, attention and swiglu replaced by implementations of another signature."""
    import torch.nn.functional as F

    directory, hf = checkpoints["llama-untied"]
    model = load_checkpoint_dir(directory, "cpu", "float32").model
    cfg, calls = model.cfg, []

    def multi_head(x, W_q, W_k, W_v, W_o, n_head, n_kv_head, cos, sin):   # a notebook-style attention
        calls.append("attention")
        q = fn.apply_rope(fn.split_heads(x @ W_q, n_head), cos, sin)
        k = fn.apply_rope(fn.split_heads(x @ W_k, n_kv_head), cos, sin)
        v = fn.split_heads(x @ W_v, n_kv_head)
        k, v = (t.repeat_interleave(n_head // n_kv_head, dim=1) for t in (k, v))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2) @ W_o

    ops = {
        "rms_norm": lambda x, weight, eps: calls.append("norm") or F.rms_norm(x, x.shape[-1:], weight, eps),
        "swiglu": lambda x, W_gate, W_up, W_down: calls.append("ffn") or (F.silu(x @ W_gate) * (x @ W_up)) @ W_down,
        "attention": lambda x, w, cfg, mask, rope, cache, layer: multi_head(
            x, w["W_q"], w["W_k"], w["W_v"], w["W_o"], cfg.n_head, cfg.n_kv_head, *rope),
    }
    ids = random_ids(4, (1, 10))
    with torch.no_grad():
        ours = fn.forward(ids, model.weights(), cfg, ops=ops)
        theirs = hf(ids).logits
    assert calls.count("attention") == calls.count("ffn") == cfg.n_layer and calls.count("norm") == 2 * cfg.n_layer + 1
    assert (ours - theirs).abs().max().item() <= TOL


# the published shapes of the small open models the course considers (no weights: the meta device)
REAL_SHAPES = {
    "Qwen3-0.6B": ("Qwen3Config", 596_049_920, dict(
        hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
        rope_theta=1000000.0, tie_word_embeddings=True)),
    "Qwen2.5-0.5B": ("Qwen2Config", 494_032_768, dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
        tie_word_embeddings=True)),
    "Llama-3.2-1B": ("LlamaConfig", 1_235_814_400, dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling={**LLAMA3_SCALING, "factor": 32.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=True)),
}


@pytest.mark.parametrize("name", sorted(REAL_SHAPES))
def test_full_size_layouts_map_tensor_for_tensor(name):
    """Every tensor of the full-size model finds its place, with the shape config.json implies,
    and the parameter count is the published one (0.6B, 0.49B, 1.24B)."""
    from autograde.reference.hf_load import check_fit, state_from_hf
    from autograde.reference.model import Transformer

    cls, count, fields = REAL_SHAPES[name]
    config = getattr(transformers, cls)(**fields)
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(config)
        ours = Transformer(config_from_hf(config.to_dict()))
    check_fit(ours, state_from_hf(hf.state_dict(), ours.cfg), name)
    assert ours.num_parameters() == hf.num_parameters() == count


def test_kept_attention_weights_come_through_the_functional_core(checkpoints):
    """figures.py sets keep_weights: the whole forward and a block called alone both fill last_weights."""
    model = load_checkpoint_dir(checkpoints["qwen3-untied"][0], "cpu", "float32").model
    ids = random_ids(5, (1, 6))
    block = model.blocks[1]
    block.attn.keep_weights = True
    with torch.no_grad():
        model(ids)
        whole = block.attn.last_weights
        block.attn.last_weights = None
        x = torch.randn(1, 6, model.cfg.d_model)
        rope = fn.rope_cos_sin(torch.arange(6)[None], model.cfg.head_dim, model.cfg.rope_theta)
        block(x, fn.causal_mask(6, 6)[None, None], rope)
    assert whole.shape == block.attn.last_weights.shape == (1, 4, 6, 6)
    assert torch.allclose(whole.sum(-1), torch.ones(1, 4, 6)) and torch.equal(whole.triu(1), torch.zeros_like(whole))
    assert model.blocks[0].attn.last_weights is None
