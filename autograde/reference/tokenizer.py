"""Byte-level BPE, the way GPT-2/GPT-4 style tokenizers work.

Every string becomes UTF-8 bytes first, so ids 0..255 are the 256 bytes and
nothing is ever "unknown". Training then repeatedly glues the most frequent
adjacent pair of tokens into a new token.

Tie-breaking (documented, so that training is deterministic): when several
pairs share the highest count, the pair with the smallest (first id, second id)
wins. Merges are numbered in the order they were learned; that number is the
merge's *rank*, and encoding always applies the lowest-rank pair first.

Before merging, text is split into chunks by a regular expression (GPT-4's
split pattern) so that merges never cross a chunk boundary: " 모델은" and
" model" are chunks, and a merge can never join a letter to a following space.
Hangul syllables are letters (\\p{L}), so a Korean word with its particles
stays one chunk, with its leading space.
"""
from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from pathlib import Path

import regex

from autograde.errors import CourseError

# GPT-4 (cl100k) split pattern: contractions, letter runs (with one leading
# non-letter such as a space), 1-3 digit numbers, punctuation runs, newlines
# and other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
ENDOFTEXT = "<|endoftext|>"
FORMAT_NAME = "course-bpe"
FORMAT_VERSION = 1


class TokenizerError(CourseError):
    """Bad input to the tokenizer (unknown id, disallowed special token, bad file)."""


# ----------------------------------------------------------------------------
# The two primitive operations of BPE


def count_pairs(ids: list[int], counts: Counter | None = None, weight: int = 1) -> Counter:
    """Count adjacent pairs: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}."""
    counts = Counter() if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, left to right.

    [1, 1, 1] with pair (1, 1) -> [new, 1]: occurrences never overlap.
    """
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


# ----------------------------------------------------------------------------
# Training


def _pretokenize_counts(text: str, pattern: regex.Pattern, special_tokens) -> Counter:
    """How often each chunk occurs; special tokens are cut out, never trained on."""
    pieces = [text]
    if special_tokens:
        splitter = regex.compile("|".join(regex.escape(s) for s in special_tokens))
        pieces = splitter.split(text)
    chunk_counts = Counter()
    for piece in pieces:
        chunk_counts.update(pattern.findall(piece))
    return chunk_counts


def train_merges(chunk_counts: Counter, n_merges: int, progress: bool = False):
    """Learn `n_merges` merges from chunk frequencies.

    Returns a list of (pair, new_id). The bookkeeping (pair counts, and which
    chunks contain each pair) is updated only for the chunks a merge touches,
    so each merge costs time proportional to those chunks, not to the corpus.
    """
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # ids per distinct chunk
    freqs = list(chunk_counts.values())

    pair_counts: Counter = Counter()
    where = defaultdict(set)  # pair -> indices of words containing it
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += freqs[w]
            where[pair].add(w)

    # Max-heap by count, ties broken by the smaller pair. Entries go stale when a
    # count changes; a stale entry is recognised (its count differs) and skipped.
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    steps = range(n_merges)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="BPE merges", unit="merge")
    for step in steps:
        best = None
        while heap:
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) == -neg_count and neg_count < 0:
                best = pair
                break
        if best is None:  # every chunk is a single token: nothing left to merge
            break
        new_id = 256 + step
        merges.append((best, new_id))
        changed = set()
        for w in list(where[best]):
            old = words[w]
            new = merge_pair(old, best, new_id)
            for pair in zip(old, old[1:]):
                pair_counts[pair] -= freqs[w]
                where[pair].discard(w)
                changed.add(pair)
            for pair in zip(new, new[1:]):
                pair_counts[pair] += freqs[w]
                where[pair].add(w)
                changed.add(pair)
            words[w] = new
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            else:
                del pair_counts[pair]
    return merges


# ----------------------------------------------------------------------------
# The tokenizer


class BPETokenizer:
    """Byte-level BPE with a regex pre-split and special tokens.

    >>> tok = BPETokenizer.train("hello hello world", vocab_size=260)
    >>> tok.decode(tok.encode("hello"))
    'hello'
    """

    def __init__(self, merges=None, special_tokens=None, pattern: str = GPT4_SPLIT_PATTERN):
        self.pattern = pattern
        self._compiled = regex.compile(pattern)
        self.merges: dict[tuple[int, int], int] = {}  # pair -> new id; id order = rank
        for (a, b), new_id in merges or []:
            self.merges[(int(a), int(b))] = int(new_id)
        self.vocab = self._build_vocab()
        self.special_tokens: dict[str, int] = {}
        for text, idx in (special_tokens or {}).items():
            self.add_special_token(text, idx)
        self._cache: dict[str, list[int]] = {}

    # -- vocabulary ---------------------------------------------------------
    def _build_vocab(self) -> dict[int, bytes]:
        vocab = {i: bytes([i]) for i in range(256)}
        for (a, b), new_id in sorted(self.merges.items(), key=lambda kv: kv[1]):
            if a not in vocab or b not in vocab:
                raise TokenizerError(f"merge ({a}, {b}) -> {new_id} uses an id that is not defined before it")
            vocab[new_id] = vocab[a] + vocab[b]
        return vocab

    def add_special_token(self, text: str, idx: int | None = None) -> int:
        if idx is None:
            idx = self.vocab_size
        if idx in self.vocab or idx in self.special_tokens.values():
            raise TokenizerError(f"special token {text!r} cannot take id {idx}: the id is already used")
        self.special_tokens[text] = idx
        return idx

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def token_bytes(self, idx: int) -> bytes:
        if idx in self.vocab:
            return self.vocab[idx]
        for text, special_id in self.special_tokens.items():
            if special_id == idx:
                return text.encode("utf-8")
        raise TokenizerError(f"token id {idx} is not in the vocabulary (valid ids: 0..{self.vocab_size - 1})")

    # -- training -------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens=(ENDOFTEXT,),
              pattern: str = GPT4_SPLIT_PATTERN, progress: bool = False) -> "BPETokenizer":
        """Learn merges until the vocabulary (bytes + merges + specials) has `vocab_size` ids."""
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise TokenizerError(f"vocab_size {vocab_size} is smaller than 256 bytes + {len(special_tokens)} special tokens")
        chunk_counts = _pretokenize_counts(text, regex.compile(pattern), special_tokens)
        merges = train_merges(chunk_counts, n_merges, progress=progress)
        tok = cls(merges, pattern=pattern)
        for special in special_tokens:
            tok.add_special_token(special)
        return tok

    # -- encoding -------------------------------------------------------------
    def _encode_chunk(self, chunk_bytes: bytes) -> list[int]:
        ids = list(chunk_bytes)
        while len(ids) >= 2:
            # the pair that was learned first (lowest rank) is merged first
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break
            ids = merge_pair(ids, pair, self.merges[pair])
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token strings as plain text."""
        ids = []
        for chunk in self._compiled.findall(text):
            cached = self._cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(chunk.encode("utf-8"))
                if len(self._cache) < 100_000:
                    self._cache[chunk] = cached
            ids.extend(cached)
        return ids

    def encode(self, text: str, allowed_special=()) -> list[int]:
        """Encode text.

        allowed_special: "all", or a collection of special-token strings that may
        appear in `text` and become their ids. Any other registered special token
        found in `text` raises, because silently encoding "<|endoftext|>" typed by
        a user as a real end-of-text marker is a classic injection bug.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise TokenizerError(
                    f"unknown special token(s) {sorted(unknown)}; this tokenizer has {sorted(self.special_tokens)}")
        for special in self.special_tokens:
            if special not in allowed and special in text:
                raise TokenizerError(
                    f"text contains the special token {special!r}, which is not allowed here; "
                    f"pass allowed_special={{{special!r}}} to encode it as a special token, "
                    f"or use encode_ordinary() to treat it as plain text")
        if not allowed:
            return self.encode_ordinary(text)
        splitter = "(" + "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
        ids = []
        for part in regex.split(splitter, text):
            if part in allowed:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    # -- decoding -------------------------------------------------------------
    def decode_bytes(self, ids) -> bytes:
        return b"".join(self.token_bytes(int(i)) for i in ids)

    def decode(self, ids) -> str:
        """Ids -> text. Bytes that are not valid UTF-8 (say, half a Hangul
        syllable) become U+FFFD instead of raising."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- persistence ----------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "merges": [[a, b, new_id] for (a, b), new_id in sorted(self.merges.items(), key=lambda kv: kv[1])],
            "special_tokens": dict(self.special_tokens),
        }

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict) -> "BPETokenizer":
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise TokenizerError(f"not a {FORMAT_NAME} tokenizer file (missing \"format\": \"{FORMAT_NAME}\")")
        if data.get("version") != FORMAT_VERSION:
            raise TokenizerError(f"unsupported tokenizer file version {data.get('version')!r}")
        try:
            merges = [((a, b), new_id) for a, b, new_id in data["merges"]]
            return cls(merges, data.get("special_tokens", {}), data["pattern"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenizerError(f"malformed tokenizer file: {exc}") from None

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"tokenizer file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)
