"""Notebook 1's checks: the solutions and correct variants written differently
pass (visible and hidden cases), every known mistake is caught and named, and
mistakes that raise (strict UTF-8, the `re` module, a special token that must be
refused) get their own message."""
import re
from collections import Counter
from pathlib import Path

import jupytext
import pytest
import regex
from tqdm.auto import tqdm

import autograde.checks.steps.tokenizer as T
from autograde.checks.registry import all_checks
from autograde.checks.runner import run_check
from autograde.reference.tokenizer import GPT4_SPLIT_PATTERN

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "autograde" / "data" / "reference" / "tokenizer.json"
pytestmark = pytest.mark.skipif(not TOKENIZER.exists(), reason="the reference tokenizer is not trained yet")
STEPS = sorted(s for s in all_checks() if s.startswith("tokenizer."))
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def solution() -> dict:
    """The functions of the solution notebook, defined from its source."""
    nb = jupytext.read(ROOT / "solutions" / "src" / "01_tokenizer.py")
    namespace = {"regex": regex, "tqdm": tqdm}
    for cell in nb.cells:
        if cell.metadata.get("kind") == "solution" or cell.metadata.get("id") == "split_pattern":
            exec(cell.source, namespace)
    return namespace


def test_the_notebook_gives_the_reference_split_pattern(solution):
    assert solution["GPT4_SPLIT_PATTERN"] == GPT4_SPLIT_PATTERN


def verdicts(step, fn, seeds=SEEDS):
    return [run_check(step, fn, hidden=False, seed=0)] + [run_check(step, fn, hidden=True, seed=s) for s in seeds]


@pytest.mark.parametrize("step", STEPS)
def test_the_solution_passes(step, solution):
    for result in verdicts(step, solution[all_checks()[step].function]):
        assert result["passed"], result


def merge_on_a_copy(ids, pair, new_id):
    return merge_in_place(list(ids), pair, new_id)    # in place, but on a copy: the caller's list is unchanged


def encode_merge_by_merge(text, merges):
    ids = list(text.encode("utf-8"))
    for pair, new_id in sorted(merges, key=lambda m: m[1]):
        ids = T.ref.merge_pair(ids, pair, new_id)
    return ids


@pytest.mark.parametrize("step, fn", [
    ("tokenizer.utf8_bytes", lambda text: [b for b in bytearray(text, "utf-8")]),
    ("tokenizer.count_pairs", lambda ids: Counter(zip(ids, ids[1:]))),
    ("tokenizer.merge_pair", merge_on_a_copy),
    ("tokenizer.encode", encode_merge_by_merge),
    ("tokenizer.pre_split", lambda text: [m.group() for m in regex.finditer(GPT4_SPLIT_PATTERN, text)]),
])
def test_correct_variants_pass(step, fn):
    for result in verdicts(step, fn):
        assert result["passed"], result


def test_merging_the_callers_list_in_place_is_named():
    results = verdicts("tokenizer.merge_pair", merge_in_place)
    assert results and all(not r["passed"] and r["key"] == "mutated_input" for r in results), results


def merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


MUTANTS = [(step, key, fn) for step in STEPS for key, fns in all_checks()[step].mutants.items()
           for fn in (fns if isinstance(fns, tuple) else (fns,))]


@pytest.mark.parametrize("step, key, fn", MUTANTS, ids=[f"{s}-{k}-{i}" for i, (s, k, _) in enumerate(MUTANTS)])
def test_every_mutant_is_named(step, key, fn):
    for result in verdicts(step, fn):
        assert result["key"] == key, result


def decode_strict(ids, merges):
    vocab = T.vocab_of(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8")


def train_without_stopping(text, n_merges):
    ids, merges = list(text.encode("utf-8")), []
    for k in range(n_merges):
        counts = T.ref.count_pairs(ids)
        pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))     # ValueError once no pair is left
        merges.append((pair, 256 + k))
        ids = T.ref.merge_pair(ids, pair, 256 + k)
    return merges


def test_raising_mistakes_are_named(solution):
    specials = solution["encode_with_specials"]

    def never_refuses(text, merges, special_tokens, allowed):
        return specials(text, merges, special_tokens, tuple(special_tokens))

    def refuses_all(text, merges, special_tokens, allowed):
        if any(s in text for s in special_tokens):
            raise ValueError("no special tokens here")
        return specials(text, merges, special_tokens, allowed)

    def refuses_with_key_error(text, merges, special_tokens, allowed):
        for s in special_tokens:
            if s in text and s not in allowed:
                raise KeyError(s)
        return specials(text, merges, special_tokens, allowed)

    cases = [("tokenizer.decode", decode_strict, "mistake_decode_strict"),
             ("tokenizer.pre_split", lambda text: re.findall(GPT4_SPLIT_PATTERN, text), "mistake_split_re_module"),
             ("tokenizer.train_bpe", train_without_stopping, "mistake_bpe_no_pairs_left"),
             ("tokenizer.encode_with_specials", never_refuses, "mistake_special_not_refused"),
             ("tokenizer.encode_with_specials", refuses_all, "mistake_special_allowed_refused")]
    for step, fn, key in cases:
        for result in verdicts(step, fn):
            assert result["key"] == key, result
    result = run_check("tokenizer.encode_with_specials", refuses_with_key_error, seed=0)
    assert result["key"] == "wrong_exception" and result["params"]["expected"] == "ValueError"


def test_the_rank_order_mistake_has_the_documented_message():
    result = run_check("tokenizer.encode", T._encode_list_order, seed=0)
    from autograde.checks.runner import describe
    assert "BPE merges applied out of rank order" in describe(result, "en")
    result = run_check("tokenizer.decode", decode_strict, seed=0)
    assert "decode raised on partial UTF-8: use errors='replace'" in describe(result, "en")
