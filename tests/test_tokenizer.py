"""Byte-level BPE: exact agreement with Hugging Face `tokenizers`, round trips,
special tokens, persistence and clear errors."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from autograde.reference.checkpoint import REFERENCE_DIR
from autograde.reference.corpus import load_corpus
from autograde.reference.hf import hf_tokenizer_json
from autograde.reference.tokenizer import (ENDOFTEXT, BPETokenizer, TokenizerError, count_pairs,
                                           merge_pair)

MIXED = ("The model reads tokens, not letters. 언어 모델은 글자가 아니라 토큰을 읽습니다. "
         "애, 겨울 배가 맛있단다! Counting 1234 dots .... is hard 😀🚀 ㅋㅋㅋ 한글 ᄒᆞᆫ글\n\n  tabs\tand  spaces")


@pytest.fixture(scope="module")
def small_tok() -> BPETokenizer:
    return BPETokenizer.train(MIXED * 3, vocab_size=256 + 60 + 1)


@pytest.fixture(scope="module")
def reference_tok() -> BPETokenizer:
    return BPETokenizer.load(REFERENCE_DIR / "tokenizer.json")


def as_hf(tok: BPETokenizer) -> Tokenizer:
    return Tokenizer.from_str(json.dumps(hf_tokenizer_json(tok)))


# -- the building blocks ------------------------------------------------------

def test_count_pairs_and_merge_pair():
    ids = [1, 2, 3, 1, 2]
    assert count_pairs(ids) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge_pair(ids, (1, 2), 9) == [9, 3, 9]
    assert merge_pair([1, 1, 1], (1, 1), 7) == [7, 1]     # left to right, no overlap


def test_training_is_deterministic_with_documented_tie_break():
    # "cd" and "ab" both occur twice ("cd" first); the smaller pair (97, 98) must win
    tok = BPETokenizer.train("cd\nab\ncd\nab", vocab_size=256 + 1 + 1, special_tokens=(ENDOFTEXT,))
    assert list(tok.merges) == [(97, 98)]
    again = BPETokenizer.train(MIXED, vocab_size=300)
    assert again.to_dict() == BPETokenizer.train(MIXED, vocab_size=300).to_dict()


def test_hangul_syllable_is_three_bytes_and_words_stay_one_chunk(small_tok):
    assert len("배".encode()) == 3
    chunks = small_tok._compiled.findall("언어 모델은 토큰을")
    assert chunks == ["언어", " 모델은", " 토큰을"]


def test_merges_apply_in_rank_order():
    # merges: (a,b)->256 first, then (b,c)->257; "abc" must become [256, c], not [a, 257]
    tok = BPETokenizer([((97, 98), 256), ((98, 99), 257)])
    assert tok.encode("abc") == [256, 99]


# -- agreement with `tokenizers` ----------------------------------------------

def test_matches_hf_on_whole_training_corpus(reference_tok):
    hf = as_hf(reference_tok)
    corpus = load_corpus()
    for lang, docs in corpus.items():
        for doc in docs:
            ours = reference_tok.encode_ordinary(doc)
            assert ours == hf.encode(doc, add_special_tokens=False).ids, f"{lang} document differs"
            assert reference_tok.decode(ours) == doc


hangul = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
jamo = st.one_of(st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),
                 st.characters(min_codepoint=0x3131, max_codepoint=0x318E))
emoji = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)
ascii_ = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
spaces = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0"])
mixed_text = st.lists(st.one_of(hangul, jamo, emoji, ascii_, spaces, st.characters(blacklist_categories=("Cs",))),
                      max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mixed_text)
def test_matches_hf_on_random_unicode(reference_tok, text):
    hf = as_hf(reference_tok)
    ours = reference_tok.encode_ordinary(text)
    assert ours == hf.encode(text, add_special_tokens=False).ids
    assert reference_tok.decode(ours) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mixed_text)
def test_round_trip_small_tokenizer(small_tok, text):
    assert small_tok.decode(small_tok.encode(text)) == text


# -- decoding never raises ----------------------------------------------------

def test_partial_utf8_decodes_with_replacement_character(small_tok):
    ids = list("배".encode())                  # three byte tokens
    assert small_tok.decode(ids[:2]) == "\ufffd"
    assert small_tok.decode(ids) == "배"
    assert small_tok.decode([0xFF]) == "\ufffd"


def test_unknown_id_is_named(small_tok):
    with pytest.raises(TokenizerError, match="token id 99999 is not in the vocabulary"):
        small_tok.decode([5, 99999])


# -- special tokens -----------------------------------------------------------

def test_special_tokens_allowed_and_disallowed(small_tok):
    eot = small_tok.special_tokens[ENDOFTEXT]
    text = f"끝{ENDOFTEXT}end"
    with pytest.raises(TokenizerError, match="not allowed here"):
        small_tok.encode(text)
    ids = small_tok.encode(text, allowed_special={ENDOFTEXT})
    assert eot in ids and small_tok.decode(ids) == text
    assert small_tok.encode(text, allowed_special="all") == ids
    assert eot not in small_tok.encode_ordinary(text)
    with pytest.raises(TokenizerError, match="unknown special token"):
        small_tok.encode("x", allowed_special={"<|nope|>"})


def test_special_token_matches_hf(reference_tok):
    hf = as_hf(reference_tok)
    text = f"Hello{ENDOFTEXT}안녕"
    assert reference_tok.encode(text, allowed_special="all") == hf.encode(text, add_special_tokens=False).ids


# -- persistence and bad files ------------------------------------------------

def test_save_load_round_trip(small_tok, tmp_path):
    path = tmp_path / "tok.json"
    small_tok.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.to_dict() == small_tok.to_dict()
    assert loaded.encode(MIXED) == small_tok.encode(MIXED)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "other"}', "not a course-bpe tokenizer"),
    ('{"format": "course-bpe", "version": 99}', "unsupported tokenizer file version"),
    ('{"format": "course-bpe", "version": 1, "pattern": "x", "merges": [[1, 2]]}', "malformed"),
])
def test_bad_tokenizer_files(tmp_path, content, message):
    path = tmp_path / "tok.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match=message):
        BPETokenizer.load(path)


def test_vocab_too_small():
    with pytest.raises(TokenizerError, match="smaller than 256 bytes"):
        BPETokenizer.train("abc", vocab_size=100)
