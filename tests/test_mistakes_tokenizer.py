"""Notebook 1: every mistake listed in the docstring of autograde/checks/steps/tokenizer.py,
written the way a student writes it (not by calling the check's mutant), is named by its
own message key on the visible cases and on hidden cases of several seeds; a wrong list
names its first differing position."""
import re
from collections import Counter
from pathlib import Path

import pytest
import regex

from autograde.checks.registry import all_checks
from autograde.checks.runner import describe, run_check
from autograde.reference.tokenizer import GPT4_SPLIT_PATTERN

TOKENIZER = Path(__file__).resolve().parent.parent / "autograde" / "data" / "reference" / "tokenizer.json"
pytestmark = pytest.mark.skipif(not TOKENIZER.exists(), reason="the reference tokenizer is not trained yet")
SEEDS = (0, 1, 2, 3, 11)


def verdicts(step, fn):
    return [run_check(step, fn, hidden=False, seed=0)] + [run_check(step, fn, hidden=True, seed=s) for s in SEEDS]


# ----------------------------------------------------------------------------
# helpers a student writes right (the mistakes below use them where a notebook would)


def pairs_ok(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_ok(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def encode_ok(text, merges):
    rank = {tuple(p): i for p, i in merges}
    ids = list(text.encode("utf-8"))
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))
        if best not in rank:
            break
        ids = merge_ok(ids, best, rank[best])
    return ids


def specials_ok(text, merges, special_tokens, allowed):
    for s in special_tokens:
        if s in text and s not in allowed:
            raise ValueError(s)
    parts = regex.split("(" + "|".join(regex.escape(s) for s in allowed) + ")", text) if allowed else [text]
    ids = []
    for part in parts:
        if part in allowed:
            ids.append(special_tokens[part])
        else:
            for chunk in regex.findall(GPT4_SPLIT_PATTERN, part):
                ids += encode_ok(chunk, merges)
    return ids


def vocab(merges):
    v = {i: bytes([i]) for i in range(256)}
    for (a, b), new in sorted(merges, key=lambda m: m[1]):
        v[new] = v[a] + v[b]
    return v


# ----------------------------------------------------------------------------
# the mistakes


def utf8_ord(text):
    return [ord(ch) for ch in text]


def utf8_bytes_object(text):
    return text.encode()


def utf8_utf16(text):
    return list(text.encode("utf-16-le"))


def utf8_cp949(text):
    return [b for b in text.encode("cp949")]


def pairs_step_two(ids):
    counts = {}
    for i in range(0, len(ids) - 1, 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def pairs_last_missed(ids):
    counts = {}
    for i in range(len(ids) - 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def pairs_presence(ids):
    return {pair: 1 for pair in set(zip(ids, ids[1:]))}


def pairs_unordered(ids):
    return Counter(tuple(sorted(p)) for p in zip(ids, ids[1:]))


def pairs_wraparound(ids):
    counts = {}
    for i in range(len(ids)):
        pair = (ids[i], ids[(i + 1) % len(ids)])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_keeps_second(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        out.append(new_id if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair else ids[i])
    return out


def merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_from_right(ids, pair, new_id):
    out, i = [], len(ids) - 1
    while i >= 0:
        if i > 0 and ids[i - 1] == pair[0] and ids[i] == pair[1]:
            out.insert(0, new_id)
            i -= 2
        else:
            out.insert(0, ids[i])
            i -= 1
    return out


def merge_first_only(ids, pair, new_id):
    ids = list(ids)
    for i in range(len(ids) - 1):
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            return ids[:i] + [new_id] + ids[i + 2:]
    return ids


def trainer(pick=None, replace=True, first=256, min_count=1, units=None):
    def train_bpe(text, n_merges, progress=False):
        ids = units(text) if units else list(text.encode("utf-8"))
        merges = []
        for k in range(n_merges):
            counts = pairs_ok(ids)
            if not counts:
                break
            pair = pick(counts) if pick else min(counts, key=lambda p: (-counts[p], p))
            if counts[pair] < min_count:
                break
            merges.append((pair, first + k))
            if replace:
                ids = merge_ok(ids, pair, first + k)
        return merges
    return train_bpe


def train_crashes_when_done(text, n_merges, progress=False):
    ids, merges = list(text.encode("utf-8")), []
    for k in range(n_merges):
        counts = pairs_ok(ids)
        top = max(counts.values())                      # ValueError on an empty dict
        pair = min(p for p in counts if counts[p] == top)
        merges.append((pair, 256 + k))
        ids = merge_ok(ids, pair, 256 + k)
    return merges


def encode_list_order(text, merges):
    ids = list(text.encode("utf-8"))
    for pair, new_id in merges:
        ids = merge_ok(ids, pair, new_id)
    return ids


def encode_code_points(text, merges):
    rank = {tuple(p): i for p, i in merges}
    ids = [ord(c) for c in text]
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))
        if best not in rank:
            break
        ids = merge_ok(ids, best, rank[best])
    return ids


def decode_strict(ids, merges):
    v = vocab(merges)
    return b"".join(v[i] for i in ids).decode("utf-8")


def decode_ignore(ids, merges):
    v = vocab(merges)
    return b"".join(v[i] for i in ids).decode("utf-8", errors="ignore")


def decode_each(ids, merges):
    v = vocab(merges)
    return "".join(v[i].decode("utf-8", errors="replace") for i in ids)


def decode_chr(ids, merges):
    v = vocab(merges)
    return "".join(chr(b) for i in ids for b in v[i])


def specials_never_refused(text, merges, special_tokens, allowed):
    return specials_ok(text, merges, special_tokens, tuple(special_tokens))


def specials_refuse_all(text, merges, special_tokens, allowed):
    if any(s in text for s in special_tokens):
        raise ValueError("special tokens are not allowed")
    return specials_ok(text, merges, special_tokens, allowed)


def specials_as_text(text, merges, special_tokens, allowed):
    for s in special_tokens:
        if s in text and s not in allowed:
            raise ValueError(s)
    return [i for chunk in regex.findall(GPT4_SPLIT_PATTERN, text) for i in encode_ok(chunk, merges)]


def specials_no_pre_split(text, merges, special_tokens, allowed):
    for s in special_tokens:
        if s in text and s not in allowed:
            raise ValueError(s)
    parts = regex.split("(" + "|".join(regex.escape(s) for s in allowed) + ")", text) if allowed else [text]
    return [i for part in parts if part for i in
            ([special_tokens[part]] if part in allowed else encode_ok(part, merges))]


def specials_dropped(text, merges, special_tokens, allowed):
    for s in special_tokens:
        if s in text and s not in allowed:
            raise ValueError(s)
    parts = regex.split("|".join(regex.escape(s) for s in allowed), text) if allowed else [text]
    return [i for part in parts for chunk in regex.findall(GPT4_SPLIT_PATTERN, part) for i in encode_ok(chunk, merges)]


MISTAKES = [
    ("utf8_bytes", utf8_ord, "mistake_utf8_code_points"),
    ("utf8_bytes", utf8_bytes_object, "mistake_utf8_bytes_object"),
    ("utf8_bytes", utf8_utf16, "mistake_utf8_other_codec"),
    ("utf8_bytes", utf8_cp949, "mistake_utf8_other_codec"),
    ("count_pairs", pairs_step_two, "mistake_pairs_step_two"),
    ("count_pairs", pairs_last_missed, "mistake_pairs_last"),
    ("count_pairs", pairs_presence, "mistake_pairs_presence"),
    ("count_pairs", pairs_unordered, "mistake_pairs_unordered"),
    ("count_pairs", pairs_wraparound, "mistake_pairs_wraparound"),
    ("merge_pair", merge_keeps_second, "mistake_merge_skip_one"),
    ("merge_pair", merge_drops_last, "mistake_merge_last_dropped"),
    ("merge_pair", merge_from_right, "mistake_merge_right_to_left"),
    ("merge_pair", merge_first_only, "mistake_merge_first_only"),
    ("train_bpe", trainer(pick=lambda c: max(c, key=c.get)), "mistake_bpe_tiebreak"),
    ("train_bpe", trainer(pick=lambda c: Counter(c).most_common(1)[0][0]), "mistake_bpe_tiebreak"),
    ("train_bpe", trainer(pick=lambda c: max(c, key=lambda p: (c[p], p))), "mistake_bpe_tiebreak_reversed"),
    ("train_bpe", trainer(pick=lambda c: sorted(c.items(), key=lambda kv: (kv[1], kv[0]))[-1][0]),
     "mistake_bpe_tiebreak_reversed"),
    ("train_bpe", trainer(replace=False), "mistake_bpe_no_replace"),
    ("train_bpe", trainer(first=257), "mistake_bpe_new_id"),
    ("train_bpe", trainer(min_count=2), "mistake_bpe_stopped_early"),
    ("train_bpe", train_crashes_when_done, "mistake_bpe_no_pairs_left"),
    ("train_bpe", trainer(units=lambda text: [ord(c) for c in text]), "mistake_bpe_code_points"),
    ("encode", encode_list_order, "mistake_bpe_rank_order"),
    ("encode", encode_code_points, "mistake_encode_code_points"),
    ("decode", decode_strict, "mistake_decode_strict"),
    ("decode", decode_ignore, "mistake_decode_ignore"),
    ("decode", decode_each, "mistake_decode_per_token"),
    ("decode", decode_chr, "mistake_decode_latin1"),
    ("pre_split", lambda text: text.split(), "mistake_split_whitespace"),
    ("pre_split", lambda text: re.findall(GPT4_SPLIT_PATTERN, text), "mistake_split_re_module"),
    ("pre_split", lambda text: regex.split(GPT4_SPLIT_PATTERN, text), "mistake_split_split"),
    ("encode_with_specials", specials_never_refused, "mistake_special_not_refused"),
    ("encode_with_specials", specials_refuse_all, "mistake_special_allowed_refused"),
    ("encode_with_specials", specials_as_text, "mistake_special_as_text"),
    ("encode_with_specials", specials_no_pre_split, "mistake_special_no_pre_split"),
    ("encode_with_specials", specials_dropped, "mistake_special_dropped"),
]


@pytest.mark.parametrize("step, fn, key", MISTAKES, ids=[f"{m[0]}-{m[2]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_student_mistake_is_named_on_visible_and_hidden_cases(step, fn, key):
    for result in verdicts(f"tokenizer.{step}", fn):
        assert not result["passed"] and result["key"] == key, result


def test_the_helpers_are_right():
    """The mistakes above differ from these helpers only in the mistake itself."""
    for step, fn in (("count_pairs", pairs_ok), ("merge_pair", merge_ok), ("encode", encode_ok),
                     ("encode_with_specials", specials_ok)):
        for result in verdicts(f"tokenizer.{step}", fn):
            assert result["passed"], result


def test_every_listed_mistake_has_a_student_test():
    """At least 90% of the mistakes the tokenizer checks know (their mutants and raised
    mistakes) are written above as a student would write them."""
    known = {key for step, check in all_checks().items() if step.startswith("tokenizer.") for key in check.mutants}
    known |= {"mistake_bpe_no_pairs_left", "mistake_decode_strict", "mistake_split_re_module",
              "mistake_special_not_refused", "mistake_special_allowed_refused"}
    tested = {key for _, _, key in MISTAKES}
    assert len(known & tested) >= 0.9 * len(known), sorted(known - tested)


def test_a_wrong_merge_names_its_position():
    def pair_reversed_from_the_third(text, n_merges, progress=False):
        merges = trainer()(text, n_merges)
        return merges[:2] + [((b, a), i) for (a, b), i in merges[2:]]

    result = run_check("tokenizer.train_bpe", pair_reversed_from_the_third, seed=0)
    assert result["key"] == "wrong_item" and result["params"]["index"] == 2, result
    assert "merges[2] differs" in describe(result, "en")
    assert "merges[2] 값이 다릅니다" in describe(result, "ko")


def test_a_named_mistake_keeps_its_position_in_the_params():
    result = run_check("tokenizer.train_bpe", trainer(pick=lambda c: max(c, key=lambda p: (c[p], p))), seed=0)
    assert result["key"] == "mistake_bpe_tiebreak_reversed"
    assert result["params"]["what"] == "merges" and result["params"]["index"] == 0, result


def test_a_wrong_encoding_names_the_first_wrong_id():
    def encode_off_by_one_at_the_end(text, merges):
        ids = encode_ok(text, merges)
        return ids[:-1] + [ids[-1] + 1] if ids else ids

    result = run_check("tokenizer.encode", encode_off_by_one_at_the_end, seed=0)
    assert result["key"] == "wrong_item" and result["params"]["what"] == "ids", result
    assert f"ids[{result['params']['index']}] differs" in describe(result, "en")
