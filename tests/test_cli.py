"""The `course` command: help texts, the reference model's commands, and bad
input that must end in one clear line on stderr (exit 2), never a traceback."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from autograde.reference.checkpoint import REFERENCE_DIR, load_reference
from autograde.reference.sampling import generate

SUBCOMMANDS = ["build", "check", "grade", "release", "feedback", "export-grades", "export-gradescope", "tokenize", "detokenize", "generate", "export-hf", "train-reference",
               "grpo-start", "corpus", "figures"]


def course(*args, env=None):
    return subprocess.run([sys.executable, "-m", "autograde.cli", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=300)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help(sub):
    result = course(*([sub] if sub else []), "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout and len(result.stdout.splitlines()) > 3


def test_tokenize_prints_json_ids_that_decode_back():
    text = "겨울 배가 맛있다. Pears in winter."
    result = course("tokenize", text)
    ids = json.loads(result.stdout)
    assert ids == load_reference().tokenizer.encode(text)
    assert course("detokenize", json.dumps(ids)).stdout.rstrip("\n") == text


def test_special_token_needs_permission():
    assert_clean_error(course("tokenize", "a<|endoftext|>b"), "<|endoftext|>", "not allowed")
    ids = json.loads(course("tokenize", "a<|endoftext|>b", "--allow-special").stdout)
    assert load_reference().tokenizer.special_tokens["<|endoftext|>"] in ids


def test_detokenize_names_the_bad_id():
    assert_clean_error(course("detokenize", "[1, 999999]"), "999999")
    assert_clean_error(course("detokenize", "not json"), "JSON list of integers")


def test_generate_greedy_matches_the_library():
    ref = load_reference()
    prompt = "언어 모델은"
    result = course("generate", prompt, "--greedy", "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    expected = prompt + ref.tokenizer.decode(generate(ref.model, ref.tokenizer.encode(prompt), 12, greedy=True))
    assert result.stdout.rstrip("\n") == expected


def test_generate_is_reproducible_with_a_seed():
    args = ["generate", "The model", "--max-new-tokens", "10", "--temperature", "0.9", "--top-k", "20",
            "--top-p", "0.95", "--seed", "5"]
    assert course(*args).stdout == course(*args).stdout


@pytest.mark.parametrize("args, fragment", [
    (["--temperature", "0"], "temperature must be > 0"),
    (["--temperature", "-2"], "temperature must be > 0"),
    (["--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--top-k", "0"], "top_k must be a whole number >= 1"),
    (["--max-new-tokens", "-1"], "max-new-tokens"),
])
def test_generate_bad_arguments(args, fragment):
    assert_clean_error(course("generate", "hello", *args), fragment)


def test_generate_empty_prompt():
    assert_clean_error(course("generate", ""), "prompt is empty")


def test_generate_prompt_longer_than_context_is_cropped_with_a_note():
    result = course("generate", "토큰 " * 300, "--greedy", "--max-new-tokens", "3")
    assert result.returncode == 0
    assert "the model sees only its last 128" in result.stderr


def test_wrong_weight_shape_is_named(tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(REFERENCE_DIR, broken)
    state = load_file(broken / "model.safetensors")
    name = sorted(n for n in state if n.endswith("W_q"))[0]
    state[name] = torch.zeros(3, 3)
    save_file(state, broken / "model.safetensors")
    assert_clean_error(course("generate", "hi", "--model", str(broken)), name, "(3, 3)")


def test_missing_or_corrupt_model_directory(tmp_path):
    assert_clean_error(course("generate", "hi", "--model", str(tmp_path / "nope")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{")
    assert_clean_error(course("generate", "hi", "--model", str(tmp_path / "bad")))


def test_export_hf_loads_offline_and_continues_the_same(tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    out = tmp_path / "hf"
    result = course("export-hf", str(out))
    assert result.returncode == 0, result.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}

    hf_tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    hf_model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    for prompt in ["The model reads", "언어 모델은 "]:
        ids = hf_tok.encode(prompt, add_special_tokens=False).ids
        with torch.no_grad():
            out_ids = hf_model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                        max_new_tokens=15, do_sample=False, pad_token_id=0)
        hf_text = prompt + hf_tok.decode(out_ids[0, len(ids):].tolist(), skip_special_tokens=False)
        ours = course("generate", prompt, "--greedy", "--max-new-tokens", "15").stdout.rstrip("\n")
        assert hf_text == ours


def test_export_hf_refuses_a_file_path(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert_clean_error(course("export-hf", str(target)), "not a directory")


KOREAN_FEEDBACK = ("❌ tokenizer.split_pieces: 통과하지 못했습니다 — 입력 'a b'의 경우: 공백은 다음 조각의 앞에 붙어야 "
                   "합니다. 토큰 id를 한 칸씩 옮겨 보세요.\n❌ 두 번째 검사: 아주아주아주아주아주아주아주아주아주아주아주긴낱말도 "
                   "끝까지 보여야 합니다")


def test_the_check_table_keeps_every_korean_character_where_it_wraps(monkeypatch, capsys):
    """`course check`'s table at every terminal width from 100 to 160: the message column, read back
    line by line, is the whole message (rich's default overflow dropped characters at a wrap)."""
    from autograde.grader.check import print_table

    result = {"lang": "ko", "assignment": "01_tokenizer", "notebook": "x.ipynb", "score": 0, "max_score": 2,
              "tests": [{"name": "check_split_pieces", "score": 0, "max_score": 2, "status": "failed",
                         "output": KOREAN_FEEDBACK}]}
    for width in range(100, 161):
        monkeypatch.setenv("COLUMNS", str(width))
        print_table(result)
        rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.count("│") == 5]
        text = "".join(row[4].strip() for row in rows if row[1].strip() != "합계")
        assert text.replace(" ", "") == KOREAN_FEEDBACK.replace(" ", "").replace("\n", ""), width


def test_the_check_table_prints_a_students_text_as_it_is(capsys, monkeypatch):
    """What comes from the student's run (an exception's text, a cell name) may look like rich markup:
    "[/]" used to crash `course check` after grading, "[link=...]" to turn into a link."""
    from autograde.grader.check import print_table

    result = {"lang": "en", "assignment": "03_attention", "notebook": "x.ipynb", "score": 0, "max_score": 2,
              "tests": [{"name": "check_causal_mask", "score": 0, "max_score": 2, "status": "failed",
                         "output": "❌ raised ValueError: [/] [link=file:///etc/passwd]x[/link]"}],
              "tamper": [{"event": "cell_added", "cell": "[/red]"}],
              "cell_errors": [{"cell": "[bold]mask", "error": "ValueError: [/]"}]}
    monkeypatch.setenv("COLUMNS", "200")            # one line per row
    print_table(result)
    out = capsys.readouterr().out
    for text in ("[/] [link=file:///etc/passwd]x[/link]", "[/red]", "[bold]mask", "ValueError: [/]"):
        assert text in out, (text, out)


# The probe module runs `main()` on a command that is interrupted inside code that `exec` compiled
# from a string (as a dataclass's methods are while a module imports): CPython then marks the
# KeyboardInterrupt "unhandled" for good, and `python -m` used to end with SIGINT (-2), not 130.
INTERRUPTED_IN_EXEC = """
import argparse, sys
from autograde import cli

class Parser:
    def parse_args(self, argv):
        return argparse.Namespace(command="probe", func=lambda args: exec("raise KeyboardInterrupt"))

cli.build_parser = Parser
sys.exit(cli.main([]))
"""


def test_an_interruption_inside_exec_still_exits_130(tmp_path):
    (tmp_path / "interrupted_probe.py").write_text(INTERRUPTED_IN_EXEC)
    import autograde
    from pathlib import Path

    env = {"PYTHONPATH": f"{tmp_path}:{Path(autograde.__file__).parents[1]}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "interrupted_probe"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert (done.returncode, done.stderr.strip()) == (130, "interrupted"), (done.returncode, done.stderr[-1000:])


def test_a_stop_whose_exception_was_swallowed_is_raised_again(monkeypatch):
    """Ctrl-C or SIGTERM whose KeyboardInterrupt fell in a weakref callback (Python prints it as
    "Exception ignored" and goes on) is remembered: the next safe point raises it again."""
    import gc
    import signal
    import weakref

    from autograde import interrupt

    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: swallowed.append(info.exc_type))

    class Thing:
        pass

    with interrupt.installed():
        thing = Thing()
        ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGTERM))   # noqa: F841 (kept alive)
        del thing
        gc.collect()
        assert swallowed == [KeyboardInterrupt]          # Python lost the exception...
        assert interrupt.stopped()                       # ...the stop is not lost
        with pytest.raises(KeyboardInterrupt):
            interrupt.raise_if_stopped()
    with interrupt.installed():                          # a new run starts un-stopped
        assert not interrupt.stopped()
