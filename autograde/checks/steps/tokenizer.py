"""Checks for notebook 1: UTF-8 bytes, byte pair encoding, the regex pre-split, special tokens.

The climb follows minbpe: bytes, pair counts, one merge, training, encoding,
decoding, pre-splitting, special tokens. Fixed cases use the chapter's worked
example ("hahaha haha"), real Korean and English text from the course corpus
and the merges of the trained reference tokenizer; hidden cases draw random
strings, corpus slices and merge tables from a seed chosen at grading time.

Merges are passed around as the notebook writes them: a list of
((id_a, id_b), new_id). The rank of a merge is its new id, so encoding never
trusts the order of the list (one check shuffles it on purpose).

Case labels are written as code and values ("'hahaha haha', 3"), the same in both
languages, because they appear inside the feedback sentence. A wrong list (bytes,
ids, merges) names its first differing position: "merges[2] differs: ...".

Mistakes named (message key, each with a mutant or a judge rule, and a test in
tests/test_mistakes_tokenizer.py that writes it the way a student would):
  utf8_bytes: code points instead of bytes (code_points), a bytes object (bytes_object),
    another encoding: UTF-16, CP949/EUC-KR (other_codec).
  count_pairs: pairs stepped by two (step_two), the last pair missed (last), presence
    instead of counts (presence), (a, b) and (b, a) counted together (unordered), a
    pair from the last id back to the first (wraparound).
  merge_pair: the second id of a merged pair kept (skip_one), the last id dropped
    (last_dropped), merged from the right (right_to_left), only the first occurrence
    merged (first_only).
  train_bpe: ties broken by first occurrence (tiebreak) or by the largest pair
    (tiebreak_reversed), ids not replaced after a merge (no_replace), new ids not
    256 + k (new_id), stopped at count 1 (stopped_early), a crash when no pair is left
    (no_pairs_left, raised), trained on code points instead of bytes (code_points).
  encode: merges applied in list order, leftmost first or reversed (rank_order), code
    points instead of bytes (code_points).
  decode: strict UTF-8 (strict, raised), errors='ignore' (ignore), token by token
    (per_token), bytes read as Latin-1 / chr (latin1).
  pre_split: str.split (whitespace), the re module (re_module, raised), regex.split
    instead of findall (split).
  encode_with_specials: a disallowed special encoded (not_refused), an allowed one
    refused (allowed_refused, raised), specials encoded as text (as_text), no pre-split
    (no_pre_split), the special token dropped (dropped).
"""
from __future__ import annotations

import random
from functools import lru_cache

import regex

from autograde.checks.core import Case, Check, _fmt, compare_outputs
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.reference import tokenizer as ref
from autograde.reference.tokenizer import TokenizerError, GPT4_SPLIT_PATTERN, BPETokenizer

KO = "애, 겨울 배가 맛있단다!"
EN = "The model reads tokens, not letters."
HAHA = "hahaha haha"
HAHA_MERGES = [((104, 97), 256), ((256, 256), 257), ((32, 257), 258)]   # the chapter's table
EOT, USER = ref.ENDOFTEXT, "<|user|>"

register_messages({
    "mistake_utf8_code_points": {
        "en": "these are Unicode code points (ord), not UTF-8 bytes: 배 is one code point but three bytes; "
              "use text.encode('utf-8')",
        "ko": "UTF-8 바이트가 아니라 유니코드 코드 포인트(ord)입니다: '배'는 코드 포인트로는 하나지만 "
              "바이트로는 세 개입니다. text.encode('utf-8')를 쓰세요"},
    "mistake_utf8_bytes_object": {
        "en": "the values are right but it is a bytes object: return list(...) of it, a list of ints",
        "ko": "값은 맞지만 bytes 객체입니다: list(...)로 감싸 정수 리스트로 돌려주세요"},
    "mistake_utf8_other_codec": {
        "en": "these are bytes of another encoding (UTF-16, CP949/EUC-KR, ...), not UTF-8: use text.encode('utf-8')",
        "ko": "UTF-8이 아닌 다른 인코딩(UTF-16, CP949/EUC-KR 등)의 바이트입니다: text.encode('utf-8')를 쓰세요"},
    "mistake_pairs_step_two": {
        "en": "pairs overlap: [1, 2, 3] has the pairs (1, 2) and (2, 3); step through the ids one at a time, "
              "e.g. zip(ids, ids[1:])",
        "ko": "쌍은 서로 겹칩니다: [1, 2, 3]에는 (1, 2)와 (2, 3)이 모두 있습니다. id를 한 칸씩 옮기며 세세요"
              "(예: zip(ids, ids[1:]))"},
    "mistake_pairs_last": {
        "en": "the last pair was not counted: a list of n ids has n - 1 adjacent pairs",
        "ko": "마지막 쌍을 세지 않았습니다: id가 n개이면 이웃한 쌍은 n - 1개입니다"},
    "mistake_pairs_presence": {
        "en": "every pair got the count 1: count how often each pair occurs, not whether it occurs",
        "ko": "모든 쌍의 개수가 1입니다: 쌍이 있는지 없는지가 아니라 몇 번 나오는지를 세세요"},
    "mistake_pairs_unordered": {
        "en": "(a, b) and (b, a) were counted as one pair: order matters, (1, 2) and (2, 1) are different pairs",
        "ko": "(a, b)와 (b, a)를 같은 쌍으로 셌습니다: 순서가 중요하므로 (1, 2)와 (2, 1)은 서로 다른 쌍입니다"},
    "mistake_pairs_wraparound": {
        "en": "a pair from the last id back to the first was counted: only neighbours in the list form pairs",
        "ko": "마지막 id와 첫 id를 이은 쌍까지 셌습니다: 리스트에서 실제로 이웃한 id만 쌍이 됩니다"},
    "mistake_merge_skip_one": {
        "en": "after a merge, skip both ids of the pair (i += 2): the second id was kept",
        "ko": "병합한 뒤에는 쌍의 두 id를 모두 건너뛰어야 합니다(i += 2): 둘째 id가 그대로 남았습니다"},
    "mistake_merge_last_dropped": {
        "en": "the last id was dropped: when it is not part of a merged pair, it must still be copied",
        "ko": "마지막 id가 빠졌습니다: 병합된 쌍에 속하지 않더라도 마지막 id는 그대로 옮겨야 합니다"},
    "mistake_merge_right_to_left": {
        "en": "the occurrences were merged from the right: replace left to right, so [1, 1, 1] with (1, 1) "
              "becomes [new, 1]",
        "ko": "오른쪽부터 병합했습니다: 왼쪽부터 바꿔야 하므로 [1, 1, 1]에 (1, 1)을 적용하면 [new, 1]이 됩니다"},
    "mistake_merge_end_pair": {
        "en": "a pair at the very end of the list was not merged: the loop stops one position early; the last pair "
              "starts at i = len(ids) - 2, so test i + 1 < len(ids)",
        "ko": "리스트 맨 끝의 쌍을 병합하지 않았습니다: 반복이 한 칸 일찍 멈춥니다. 마지막 쌍은 i = len(ids) - 2에서 "
              "시작하므로 i + 1 < len(ids)로 검사하세요"},
    "mistake_merge_index_end": {
        "en": "reading past the end ({error}: {text}) when the list ends with the pair's first id: the last id has "
              "no right neighbour, so test i + 1 < len(ids) before looking at ids[i + 1]",
        "ko": "리스트가 쌍의 첫 id로 끝날 때 끝을 넘어 읽었습니다 ({error}: {text}): 마지막 id에는 오른쪽 이웃이 없으므로 "
              "ids[i + 1]을 보기 전에 i + 1 < len(ids)인지 검사하세요"},
    "mistake_merge_first_only": {
        "en": "only the first occurrence of the pair was merged: replace every occurrence, left to right",
        "ko": "쌍이 처음 나온 곳만 병합했습니다: 왼쪽부터 쌍이 나오는 곳을 모두 바꾸세요"},
    "mistake_bpe_tiebreak": {
        "en": "a tie was broken by the first pair met: among pairs with the same count the course picks the "
              "smallest (id_a, id_b), while max() and most_common() keep the first pair they meet; "
              "use min(counts, key=lambda p: (-counts[p], p))",
        "ko": "동점일 때 먼저 만난 쌍을 골랐습니다: 개수가 같은 쌍 가운데 이 강좌는 (id_a, id_b)가 가장 작은 쌍을 "
              "고르는데, max()와 most_common()은 먼저 만난 쌍을 고릅니다. "
              "min(counts, key=lambda p: (-counts[p], p))를 쓰세요"},
    "mistake_bpe_tiebreak_reversed": {
        "en": "ties were broken the reverse way: among pairs with the same count you took the largest "
              "(id_a, id_b), the course takes the smallest; max over (count, pair) does that, "
              "use min(counts, key=lambda p: (-counts[p], p))",
        "ko": "동점을 반대로 처리했습니다: 개수가 같은 쌍 가운데 (id_a, id_b)가 가장 큰 쌍을 골랐는데, 이 강좌는 "
              "가장 작은 쌍을 고릅니다. (개수, 쌍)의 max가 이렇게 동작하니 "
              "min(counts, key=lambda p: (-counts[p], p))를 쓰세요"},
    "mistake_bpe_no_replace": {
        "en": "the same pair keeps winning: after each merge, replace the pair in ids (ids = merge_pair(...)) "
              "before counting again",
        "ko": "같은 쌍이 계속 뽑힙니다: 병합할 때마다 ids에서 그 쌍을 바꾼 다음(ids = merge_pair(...)) 다시 세세요"},
    "mistake_bpe_new_id": {
        "en": "the new ids are numbered wrongly: merge k (counting from 0) gets id 256 + k",
        "ko": "새 id 번호가 틀렸습니다: k번째 병합(0부터 셉니다)은 id 256 + k를 받습니다"},
    "mistake_bpe_stopped_early": {
        "en": "training stopped while pairs were left: keep merging pairs even when they occur only once, "
              "and stop only when no pair is left",
        "ko": "쌍이 남았는데 학습을 멈췄습니다: 한 번만 나오는 쌍도 계속 병합하고, 남은 쌍이 없을 때만 멈추세요"},
    "mistake_bpe_no_pairs_left": {
        "en": "{error} when no pair was left ({text}): stop early when the text is a single token, "
              "so 'aaaa' gives only 2 merges",
        "ko": "남은 쌍이 없을 때 {error} 예외가 발생했습니다({text}): 텍스트가 토큰 하나가 되면 일찍 멈추세요. "
              "'aaaa'에서는 병합이 2개뿐입니다"},
    "mistake_bpe_code_points": {
        "en": "training started from code points (ord), not UTF-8 bytes: start from list(text.encode('utf-8')), "
              "so that every id below 256 is a byte",
        "ko": "UTF-8 바이트가 아니라 코드 포인트(ord)에서 학습을 시작했습니다: list(text.encode('utf-8'))에서 "
              "시작해야 256보다 작은 id가 모두 바이트가 됩니다"},
    "mistake_bpe_rank_order": {
        "en": "BPE merges applied out of rank order: always apply the present pair with the lowest new id "
              "first (the order of the merges list does not matter, the ids do)",
        "ko": "BPE 병합을 순위대로 적용하지 않았습니다: 지금 있는 쌍 가운데 새 id가 가장 작은 병합부터 "
              "적용하세요(리스트 순서가 아니라 새 id가 순위입니다)"},
    "mistake_encode_code_points": {
        "en": "encoding started from code points (ord), not UTF-8 bytes: start from list(text.encode('utf-8'))",
        "ko": "UTF-8 바이트가 아니라 코드 포인트(ord)에서 인코딩을 시작했습니다: list(text.encode('utf-8'))에서 "
              "시작하세요"},
    "mistake_decode_strict": {
        "en": "decode raised on partial UTF-8: use errors='replace' ({error}: {text})",
        "ko": "불완전한 UTF-8에서 decode가 예외를 일으켰습니다: errors='replace'를 쓰세요({error}: {text})"},
    "mistake_decode_ignore": {
        "en": "invalid bytes vanished (errors='ignore'): use errors='replace' so that they show up as U+FFFD",
        "ko": "잘못된 바이트가 사라졌습니다(errors='ignore'): errors='replace'를 써야 U+FFFD로 표시됩니다"},
    "mistake_decode_per_token": {
        "en": "each token was decoded on its own, so a character split across tokens became U+FFFD: join the "
              "bytes of all tokens first, then decode once",
        "ko": "토큰을 하나씩 따로 디코딩해서 여러 토큰에 걸친 글자가 U+FFFD가 되었습니다: 모든 토큰의 "
              "바이트를 먼저 이어 붙인 다음 한 번에 디코딩하세요"},
    "mistake_decode_latin1": {
        "en": "each byte became one character (chr or Latin-1): the bytes are UTF-8, "
              "so decode them with .decode('utf-8', errors='replace')",
        "ko": "바이트 하나를 글자 하나로 바꾸었습니다(chr 또는 Latin-1): 바이트는 UTF-8이므로 "
              ".decode('utf-8', errors='replace')로 디코딩하세요"},
    "mistake_split_whitespace": {
        "en": "this splits on whitespace and loses the spaces: the pattern keeps a word's leading space "
              "(' 배가') and cuts punctuation off; use regex.findall(GPT4_SPLIT_PATTERN, text)",
        "ko": "공백으로 나누면 공백이 사라집니다: 패턴은 어절 앞의 공백을 붙여 두고(' 배가') 구두점은 따로 "
              "떼어 냅니다. regex.findall(GPT4_SPLIT_PATTERN, text)를 쓰세요"},
    "mistake_split_re_module": {
        "en": "Python's built-in re does not know \\p{{L}} ({text}): import regex and use regex.findall",
        "ko": "파이썬 내장 모듈 re는 \\p{{L}} 문법을 모릅니다({text}): regex를 import해서 regex.findall을 쓰세요"},
    "mistake_split_split": {
        "en": "regex.split returns what lies between the matches (here mostly empty strings): the chunks are "
              "the matches themselves, regex.findall(GPT4_SPLIT_PATTERN, text)",
        "ko": "regex.split은 일치한 부분 사이에 있는 것(여기서는 대부분 빈 문자열)을 돌려줍니다: 조각은 일치한 "
              "부분 자체이므로 regex.findall(GPT4_SPLIT_PATTERN, text)를 쓰세요"},
    "mistake_special_not_refused": {
        "en": "a special token that is not in `allowed` was encoded: raise ValueError instead, so that user "
              "text can never produce a special id",
        "ko": "`allowed`에 없는 특수 토큰을 인코딩했습니다: 사용자 텍스트가 특수 id를 만들 수 없도록 "
              "ValueError를 일으켜야 합니다"},
    "mistake_special_allowed_refused": {
        "en": "an allowed special token was refused ({error}: {text}): only special tokens missing from "
              "`allowed` raise",
        "ko": "허용된 특수 토큰을 거부했습니다({error}: {text}): 예외는 `allowed`에 없는 특수 토큰에만 일으키세요"},
    "mistake_special_as_text": {
        "en": "the allowed special token was encoded as ordinary text: cut the text at allowed special tokens "
              "and put their ids in between",
        "ko": "허용된 특수 토큰을 일반 텍스트로 인코딩했습니다: 허용된 특수 토큰 자리에서 텍스트를 자르고 그 "
              "자리에 특수 id를 넣으세요"},
    "mistake_special_dropped": {
        "en": "the allowed special token vanished: regex.split keeps the separators only when the pattern is "
              "in a group, '(' + ... + ')'; put the special id where the token was",
        "ko": "허용된 특수 토큰이 사라졌습니다: regex.split은 패턴을 괄호로 묶어야('(' + ... + ')') 구분자를 "
              "남깁니다. 특수 토큰이 있던 자리에 그 id를 넣으세요"},
    "mistake_special_no_pre_split": {
        "en": "merges crossed chunk boundaries: run pre_split on each piece and encode the chunks one by one",
        "ko": "병합이 조각 경계를 넘었습니다: 각 부분을 pre_split으로 나눈 다음 조각마다 따로 인코딩하세요"},
})


class TokenizerCheck(Check):
    """Mutants may be a tuple of callables: several ways to make the same mistake
    (Check.diagnose tries every variant).

    sequence: what a list output is called in feedback ("ids", "merges"); a wrong list then
    names its first differing position, in the params (index, expected, got) and, when no
    known mistake matches, in the text ("merges[2] differs: ...")."""
    sequence: str = ""

    def judge(self, case, output):
        verdict = super().judge(case, output)
        if verdict.passed or not self.sequence or case.raises or not isinstance(output, list):
            return verdict
        expected = self.reference(*case.args, **case.kwargs)
        for i, (o, e) in enumerate(zip(output, expected)):
            if type(o) is not type(e) or o != e:
                where = {"what": self.sequence, "index": i, "expected": _fmt(e), "got": _fmt(o)}
                if verdict.key.startswith("mistake_"):
                    verdict.params = {**verdict.params, **where}
                else:
                    verdict.key, verdict.params = "wrong_item", where
                return verdict
        return verdict                      # one list is a prefix of the other: wrong_length says so


def label(value, limit: int = 48) -> str:
    """A case label made of code: the repr of a value, shortened in the middle."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 12] + " ... " + text[-7:]


# ----------------------------------------------------------------------------
# shared inputs


@lru_cache(maxsize=1)
def reference_tokenizer() -> BPETokenizer:
    """The trained reference tokenizer (only tokenizer.json is read, not the model)."""
    from autograde.reference.checkpoint import REFERENCE_DIR, TOKENIZER_FILE

    return BPETokenizer.load(REFERENCE_DIR / TOKENIZER_FILE)


def reference_merges() -> list[tuple[tuple[int, int], int]]:
    tok = reference_tokenizer()
    return [(pair, new_id) for pair, new_id in sorted(tok.merges.items(), key=lambda kv: kv[1])]


@lru_cache(maxsize=1)
def corpus_text() -> dict[str, str]:
    from autograde.reference.corpus import load_corpus

    return {lang: "\n".join(docs) for lang, docs in load_corpus().items()}


def corpus_slice(rng: random.Random, lang: str, n_chars: int) -> str:
    text = corpus_text()[lang]
    start = rng.randrange(len(text) - n_chars)
    return text[start:start + n_chars]


POOL = ("abcdefghijklmnopqrstuvwxyzABC0123456789  .,!?'\n" + "가나다라배겨울맛있단한국어모델은토큰을읽습니다"
        + "éü😀🚀ㅋ")


def random_text(rng: random.Random, n: int, pool: str = POOL) -> str:
    return "".join(rng.choice(pool) for _ in range(n))


# ----------------------------------------------------------------------------
# 1. UTF-8 bytes


@register
class Utf8Bytes(TokenizerCheck):
    step = "tokenizer.utf8_bytes"
    mutants = {
        "mistake_utf8_code_points": lambda text: [ord(c) for c in text],
        "mistake_utf8_bytes_object": lambda text: text.encode("utf-8"),
        "mistake_utf8_other_codec": (lambda text: list(text.encode("utf-16-le")),
                                     lambda text: list(text.encode("utf-16")),
                                     lambda text: list(text.encode("cp949"))),
    }
    sequence = "bytes"

    def cases(self, seed, hidden):
        if hidden:
            rng = random.Random(seed)
            text, ko = random_text(rng, rng.randrange(5, 40)), corpus_slice(rng, "ko", 60)
            return [Case(label(text), (text,)), Case(label(ko), (ko,)),
                    Case("'🚀' * 3", ("🚀" * 3,)), Case("''", ("",))]
        return [Case("'배'", ("배",)), Case("'pear'", ("pear",)), Case(repr(KO), (KO,)), Case(repr(EN), (EN,)),
                Case("'é 😀'", ("é 😀",)), Case("''", ("",))]

    def explain_raised(self, case, error, text):
        return "mistake_utf8_other_codec" if error == "UnicodeEncodeError" else None

    def reference(self, text):
        return list(text.encode("utf-8"))


# ----------------------------------------------------------------------------
# 2. counting pairs


@register
class CountPairs(TokenizerCheck):
    step = "tokenizer.count_pairs"
    forbidden = ("autograde.reference.tokenizer.count_pairs",)
    mutants = {
        "mistake_pairs_step_two": lambda ids: _tally(zip(ids[0::2], ids[1::2])),   # (0,1), (2,3), ...
        "mistake_pairs_last": lambda ids: _tally(zip(ids, ids[1:-1])),              # the last pair missing
        "mistake_pairs_presence": lambda ids: {p: 1 for p in zip(ids, ids[1:])},
        "mistake_pairs_unordered": lambda ids: _tally(tuple(sorted(p)) for p in zip(ids, ids[1:])),
        "mistake_pairs_wraparound": lambda ids: _tally(zip(ids, ids[1:] + ids[:1])),
    }

    def cases(self, seed, hidden):
        if hidden:
            rng = random.Random(seed)
            ids = [rng.randrange(4) for _ in range(rng.randrange(8, 30))]
            ids = ids + [ids[-1] + 1, ids[-1]]                       # (a, b) and (b, a) both occur
            ko = corpus_slice(rng, "ko", 40)
            big = [rng.randrange(256, 4096) for _ in range(3)]
            return [Case(label(ids), (ids,)), Case(f"list({label(ko)}.encode())", (list(ko.encode()),)),
                    Case(label(big * 2), (big * 2,)), Case(f"[{big[0]}]", ([big[0]],)), Case("[]", ([],))]
        return [Case("[1, 2, 1, 2, 1]", ([1, 2, 1, 2, 1],)),
                Case("[1, 2, 3, 1, 2]", ([1, 2, 3, 1, 2],)),
                Case("[1, 1, 1, 1]", ([1, 1, 1, 1],)),
                Case("list('hahaha haha'.encode())", (list(HAHA.encode()),)),
                Case(f"list({KO!r}.encode())", (list(KO.encode()),)),
                Case("[7]", ([7],)), Case("[]", ([],))]

    def reference(self, ids):
        return dict(ref.count_pairs(ids))


def _tally(pairs) -> dict:
    counts = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return counts


# ----------------------------------------------------------------------------
# 3. merging one pair


def _merge_skip_one(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


def _merge_last_dropped(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_right_to_left(ids, pair, new_id):
    out, i = [], len(ids) - 1
    while i >= 0:
        if i >= 1 and (ids[i - 1], ids[i]) == tuple(pair):
            out.append(new_id)
            i -= 2
        else:
            out.append(ids[i])
            i -= 1
    return out[::-1]


def _merge_end_pair(ids, pair, new_id):
    """The bound check i + 2 < len(ids): a pair at the very end stays unmerged."""
    merged, i = [], 0
    while i < len(ids):
        if i + 2 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


@register
class MergePair(TokenizerCheck):
    step = "tokenizer.merge_pair"
    forbidden = ("autograde.reference.tokenizer.merge_pair",)
    mutants = {
        "mistake_merge_skip_one": _merge_skip_one,
        "mistake_merge_last_dropped": _merge_last_dropped,
        "mistake_merge_right_to_left": _merge_right_to_left,
        "mistake_merge_first_only": _merge_first_only,
        "mistake_merge_end_pair": _merge_end_pair,
    }
    sequence = "ids"

    def cases(self, seed, hidden):
        if hidden:
            rng = random.Random(seed)
            ids = [rng.randrange(3) for _ in range(rng.randrange(10, 40))]
            pair = (rng.randrange(3), rng.randrange(3))
            new = rng.randrange(256, 4096)
            two = [pair[0], pair[1], 5] + ids + [pair[0], pair[1], 7]           # at the start and near the end
            ends = [5] + ids + [pair[0], pair[1]]
            run = [9] * rng.randrange(3, 12, 2)
            return [Case(f"{label(two)}, {pair}, {new}", (two, pair, new)),
                    Case(f"{label(ends)}, {pair}, {new}", (ends, pair, new)),
                    Case(f"{label(run)}, (9, 9), {new}", (run, (9, 9), new)),
                    Case(f"[4095, 4095, 4095], (4095, 4095), {new}", ([4095, 4095, 4095], (4095, 4095), new)),
                    Case(f"[{new - 1}, {pair[0]}, {pair[1]}], {pair}, {new}",
                         ([new - 1, *pair], pair, new)),
                    Case(f"[{new - 1}], (1, 2), {new}", ([new - 1], (1, 2), new)),
                    Case(f"[], (1, 2), {new}", ([], (1, 2), new))]
        ha = list(HAHA.encode())
        return [Case("[1, 2, 3, 1, 2], (1, 2), 9", ([1, 2, 3, 1, 2], (1, 2), 9)),
                Case("[1, 1, 1], (1, 1), 7", ([1, 1, 1], (1, 1), 7)),
                Case("list('hahaha haha'.encode()), (104, 97), 256", (ha, (104, 97), 256)),
                Case("[256, 256, 256, 32, 256, 256], (256, 256), 257", ([256, 256, 256, 32, 256, 256], (256, 256), 257)),
                Case("[3, 1, 2], (1, 2), 300", ([3, 1, 2], (1, 2), 300)),
                Case("[1, 2, 3], (3, 1), 300", ([1, 2, 3], (3, 1), 300)),
                Case("[], (1, 2), 300", ([], (1, 2), 300))]

    def reference(self, ids, pair, new_id):
        return ref.merge_pair(ids, tuple(pair), new_id)

    def explain_raised(self, case, error, text):
        ids, pair = case.args[0], case.args[1]
        return "mistake_merge_index_end" if error == "IndexError" and ids and ids[-1] == pair[0] else None


# ----------------------------------------------------------------------------
# 4. training


def train_loop(text: str, n_merges: int, *, tie: str = "smallest", replace: bool = True, first_id: int = 256,
               min_count: int = 1, code_points: bool = False) -> list[tuple[tuple[int, int], int]]:
    """The plain BPE training loop on raw UTF-8 bytes (no pre-split), with the
    course's tie-break; the keyword arguments reproduce known mistakes."""
    ids = [ord(c) for c in text] if code_points else list(text.encode("utf-8"))
    merges = []
    for k in range(n_merges):
        counts = ref.count_pairs(ids)
        if not counts:
            break                                    # a single token is left: nothing to merge
        if tie == "smallest":
            pair = min(counts, key=lambda p: (-counts[p], p))
        elif tie == "first":
            pair = max(counts, key=counts.get)       # first pair seen among the most frequent
        else:
            pair = max(counts, key=lambda p: (counts[p], p))
        if counts[pair] < min_count:
            break
        new_id = first_id + k
        merges.append((pair, new_id))
        if replace:
            ids = ref.merge_pair(ids, pair, new_id)
    return merges


@register
class TrainBPE(TokenizerCheck):
    step = "tokenizer.train_bpe"
    forbidden = ("autograde.reference.tokenizer.train_merges", "autograde.reference.tokenizer.BPETokenizer.train")
    mutants = {
        "mistake_bpe_tiebreak": lambda text, n: train_loop(text, n, tie="first"),
        "mistake_bpe_tiebreak_reversed": lambda text, n: train_loop(text, n, tie="largest"),
        "mistake_bpe_no_replace": lambda text, n: train_loop(text, n, replace=False),
        "mistake_bpe_new_id": (lambda text, n: train_loop(text, n, first_id=257),
                               lambda text, n: train_loop(text, n, first_id=255)),
        "mistake_bpe_stopped_early": lambda text, n: train_loop(text, n, min_count=2),
        "mistake_bpe_code_points": lambda text, n: train_loop(text, n, code_points=True),
    }
    sequence = "merges"
    depends = ("tokenizer.utf8_bytes", "tokenizer.count_pairs", "tokenizer.merge_pair")

    def cases(self, seed, hidden):
        """The first hidden case is a three-way tie: the smallest, the first-seen and the
        largest pair all differ, so each tie-break is told apart from the others."""
        if hidden:
            rng = random.Random(seed)
            lo, mid, hi = sorted(rng.sample("abcdefghijklmnopqrstuvwxyz", 3))
            tie = (mid * 2 + hi * 2 + lo * 2) * rng.randrange(1, 3)
            lang = rng.choice(("ko", "en"))
            text = corpus_slice(rng, lang, rng.randrange(200, 500))
            ko = corpus_slice(rng, "ko", rng.randrange(60, 120))
            ties = random_text(rng, rng.randrange(20, 60), "ab c")
            run = rng.choice("xyz") * rng.randrange(2, 9)
            return [Case(f"{tie!r}, 6", (tie, 6)),
                    Case(f"{label(text)}, 30", (text, rng.randrange(10, 40))),
                    Case(f"{label(ko)}, 20", (ko, 20)),
                    Case(f"{label(ties)}, 8", (ties, rng.randrange(5, 12))),
                    Case(f"{run!r}, 8", (run, 8)),
                    Case("'😀', 3", ("😀", 3)), Case("'a', 2", ("a", 2)), Case("'', 2", ("", 2)),
                    Case(f"{label(text)}, 0", (text, 0))]
        return [Case("'bbccaa', 3", ("bbccaa", 3)),          # a three-way tie: smallest, first and largest differ
                Case("'hahaha haha', 3", (HAHA, 3)),
                Case("'hahaha haha', 4", (HAHA, 4)),
                Case("'aaaa', 5", ("aaaa", 5)),
                Case("'cd ab cd ab', 2", ("cd ab cd ab", 2)),
                Case(f"{label(corpus_text()['ko'][:300])}, 30", (corpus_text()["ko"][:300], 30)),
                Case(f"{label(corpus_text()['en'][:300])}, 30", (corpus_text()["en"][:300], 30))]

    def reference(self, text, n_merges):
        return train_loop(text, n_merges)

    def explain_raised(self, case, error, text):
        if error == "ValueError" and ("empty" in text or "arg is an empty" in text):
            return "mistake_bpe_no_pairs_left"
        return None


# ----------------------------------------------------------------------------
# 5. encoding


def encode_by_rank(text: str, merges) -> list[int]:
    """The lowest-rank present pair first, until none is left (reference._encode_chunk)."""
    ranks = {tuple(pair): new_id for pair, new_id in merges}
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = ref.merge_pair(ids, pair, ranks[pair])
    return ids


def _encode_list_order(text, merges):
    ids = list(text.encode("utf-8"))
    for pair, new_id in merges:                       # trusts the order of the list
        ids = ref.merge_pair(ids, tuple(pair), new_id)
    return ids


def _encode_reversed(text, merges):
    return _encode_list_order(text, sorted(merges, key=lambda m: -m[1]))


def _encode_first_seen(text, merges):
    """Merge the leftmost pair that has any merge, whatever its rank."""
    ranks = {tuple(pair): new_id for pair, new_id in merges}
    ids = list(text.encode("utf-8"))
    while True:
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) in ranks:
                ids = ids[:i] + [ranks[(ids[i], ids[i + 1])]] + ids[i + 2:]
                break
        else:
            return ids


def _encode_code_points(text, merges):
    ranks = {tuple(pair): new_id for pair, new_id in merges}
    ids = [ord(c) for c in text]
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = ref.merge_pair(ids, pair, ranks[pair])
    return ids


def shuffled(merges, seed: int):
    merges = list(merges)
    random.Random(seed).shuffle(merges)
    return merges


@register
class Encode(TokenizerCheck):
    step = "tokenizer.encode"
    forbidden = ("autograde.reference.tokenizer.BPETokenizer.encode",
                 "autograde.reference.tokenizer.BPETokenizer.encode_ordinary",
                 "autograde.reference.tokenizer.BPETokenizer._encode_chunk")
    mutants = {"mistake_bpe_rank_order": (_encode_list_order, _encode_first_seen, _encode_reversed),
               "mistake_encode_code_points": _encode_code_points}
    sequence = "ids"
    depends = ("tokenizer.utf8_bytes", "tokenizer.merge_pair")

    def cases(self, seed, hidden):
        if hidden:
            rng = random.Random(seed)
            lang = rng.choice(("ko", "en"))
            merges = train_loop(corpus_slice(rng, lang, 400), rng.randrange(20, 60))
            text, ko = corpus_slice(rng, lang, 80), corpus_slice(rng, "ko", 60)
            return [Case(f"{label(text)}, shuffled(train_bpe(...))", (text, shuffled(merges, seed))),
                    Case(f"{label(ko)}, shuffled(REF_MERGES)", (ko, shuffled(reference_merges(), seed + 1))),
                    Case("'abc', [((97, 98), 257), ((98, 99), 256)]", ("abc", [((97, 98), 257), ((98, 99), 256)])),
                    Case("'한', REF_MERGES", ("한", reference_merges())),
                    Case("'', REF_MERGES", ("", reference_merges())),
                    Case(f"{label(text)}, []", (text, []))]
        merges = reference_merges()
        return [Case("'hahahaha', haha_merges", ("hahahaha", HAHA_MERGES)),
                Case("' hahaha', haha_merges", (" hahaha", HAHA_MERGES)),
                Case("'aha', haha_merges", ("aha", HAHA_MERGES)),
                Case("'abc', [((97, 98), 257), ((98, 99), 256)]", ("abc", [((97, 98), 257), ((98, 99), 256)])),
                Case(f"{KO!r}, REF_MERGES", (KO, merges)),
                Case(f"{EN!r}, REF_MERGES", (EN, merges)),
                Case(f"{label(corpus_text()['ko'][:120])}, shuffled(REF_MERGES)",
                     (corpus_text()["ko"][:120], shuffled(merges, 0)))]

    def reference(self, text, merges):
        return encode_by_rank(text, merges)


# ----------------------------------------------------------------------------
# 6. decoding


def vocab_of(merges) -> dict[int, bytes]:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in sorted(merges, key=lambda m: m[1]):
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def decode_with(ids, merges, errors: str = "replace") -> str:
    vocab = vocab_of(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors=errors)


@register
class Decode(TokenizerCheck):
    step = "tokenizer.decode"
    forbidden = ("autograde.reference.tokenizer.BPETokenizer.decode",
                 "autograde.reference.tokenizer.BPETokenizer.decode_bytes")
    mutants = {
        "mistake_decode_ignore": lambda ids, merges: decode_with(ids, merges, errors="ignore"),
        "mistake_decode_per_token": lambda ids, merges: "".join(
            vocab_of(merges)[i].decode("utf-8", errors="replace") for i in ids),
        "mistake_decode_latin1": lambda ids, merges: b"".join(vocab_of(merges)[i] for i in ids).decode("latin-1"),
    }

    def cases(self, seed, hidden):
        merges = reference_merges()
        if hidden:
            rng = random.Random(seed)
            ids = encode_by_rank(corpus_slice(rng, "ko", 40), merges)
            cut = rng.randrange(1, len(ids))
            noise = [rng.randrange(256 + len(merges)) for _ in range(rng.randrange(5, 20))]
            few = train_loop(corpus_slice(rng, "ko", 300), rng.randrange(5, 30))
            few_ids = encode_by_rank(corpus_slice(rng, "ko", 30), few)
            top = 255 + len(merges)
            return [Case(f"{label(ids[:cut] + [0xED])}, REF_MERGES", (ids[:cut] + [0xED], merges)),
                    Case(f"{label(few_ids)}, train_bpe(...)", (few_ids, few)),
                    Case(f"{label(noise)}, REF_MERGES", (noise, merges)),
                    Case(f"[0, 255, {top}], REF_MERGES", ([0, 255, top], merges)),
                    Case("[], REF_MERGES", ([], merges))]
        ids_ko = encode_by_rank(KO, merges)
        partial = self.partial_token(merges)
        return [Case("[0xED, 0x95, 0x9C], []", ([0xED, 0x95, 0x9C], [])),
                Case("[257, 256, 258], haha_merges", ([257, 256, 258], HAHA_MERGES)),
                Case(f"encode({KO!r}), REF_MERGES", (ids_ko, merges)),
                Case("[0xED, 0x95], []", ([0xED, 0x95], [])),
                Case("[0x95, 0x9C], []", ([0x95, 0x9C], [])),
                Case("[0xED, 0x95, 0x9C, 0xED], []", ([0xED, 0x95, 0x9C, 0xED], [])),
                Case(f"[{partial}], REF_MERGES", ([partial], merges))]

    @staticmethod
    def partial_token(merges) -> int:
        """The first reference token whose bytes are not valid UTF-8 on their own."""
        for new_id, raw in sorted(vocab_of(merges).items()):
            if new_id >= 256:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return new_id
        return 0xED

    def reference(self, ids, merges):
        return decode_with(ids, merges)

    def explain_raised(self, case, error, text):
        return "mistake_decode_strict" if error == "UnicodeDecodeError" else None


# ----------------------------------------------------------------------------
# 7. the regex pre-split


@register
class PreSplit(TokenizerCheck):
    step = "tokenizer.pre_split"
    mutants = {"mistake_split_whitespace": lambda text: text.split(),
               "mistake_split_split": lambda text: regex.split(GPT4_SPLIT_PATTERN, text)}
    sequence = "chunks"

    def cases(self, seed, hidden):
        if hidden:
            rng = random.Random(seed)
            texts = [random_text(rng, rng.randrange(20, 60)), corpus_slice(rng, "ko", 120),
                     corpus_slice(rng, "en", 120)]
            return [Case(label(t), (t,)) for t in texts] + [Case("' '", (" ",)), Case("''", ("",))]
        dots = "Count these: " + "." * 37 + " 12345\n\n  end"
        return [Case(repr("Hello world! It's 2024."), ("Hello world! It's 2024.",)),
                Case(repr(KO), (KO,)),
                Case("'학교에서 친구를 만났습니다.'", ("학교에서 친구를 만났습니다.",)),
                Case(label(dots), (dots,)),
                Case(repr("I'LL be there, won't you?"), ("I'LL be there, won't you?",))]

    def reference(self, text):
        return regex.findall(GPT4_SPLIT_PATTERN, text)

    def explain_raised(self, case, error, text):
        return "mistake_split_re_module" if error in ("error", "PatternError") and "\\p" in text else None


# ----------------------------------------------------------------------------
# 8. special tokens


def _specials_as_text(text, merges, special_tokens, allowed):
    return [i for chunk in regex.findall(GPT4_SPLIT_PATTERN, text) for i in encode_by_rank(chunk, merges)]


def _specials_dropped(text, merges, special_tokens, allowed):
    parts = regex.split("|".join(regex.escape(s) for s in allowed), text) if allowed else [text]
    return [i for part in parts for chunk in regex.findall(GPT4_SPLIT_PATTERN, part)
            for i in encode_by_rank(chunk, merges)]


def _specials_no_pre_split(text, merges, special_tokens, allowed):
    split = "(" + "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")" if allowed else None
    ids = []
    for part in (regex.split(split, text) if split else [text]):
        if part in allowed:
            ids.append(special_tokens[part])
        elif part:
            ids.extend(encode_by_rank(part, merges))
    return ids


@register
class EncodeWithSpecials(TokenizerCheck):
    """`allowed` is passed as a tuple: sets do not cross the grader's wire format, and
    `in`, `sorted` and truth tests work the same on both."""
    step = "tokenizer.encode_with_specials"
    forbidden = ("autograde.reference.tokenizer.BPETokenizer.encode",
                 "autograde.reference.tokenizer.BPETokenizer.encode_ordinary",
                 "autograde.reference.tokenizer.BPETokenizer._encode_chunk")
    mutants = {
        "mistake_special_as_text": _specials_as_text,
        "mistake_special_no_pre_split": _specials_no_pre_split,
        "mistake_special_dropped": _specials_dropped,
    }
    sequence = "ids"
    depends = ("tokenizer.pre_split", "tokenizer.encode")

    @staticmethod
    def specials(merges) -> dict[str, int]:
        first = 256 + len(merges)
        return {EOT: first, USER: first + 1}

    def cases(self, seed, hidden):
        """Merges learned without a pre-split (as train_bpe learns them) cross word boundaries,
        so they show whether the text was pre-split; the reference merges show real ids."""
        if hidden:
            rng = random.Random(seed)
            lang = rng.choice(("ko", "en"))
            merges = train_loop(corpus_slice(rng, lang, 1500), rng.randrange(80, 150))
            specials = self.specials(merges)
            a, b, c = (corpus_slice(rng, lang, rng.randrange(40, 120)) for _ in range(3))
            order = rng.sample([EOT, USER], 2)
            text = a + order[0] + b + order[1] + c
            refused = rng.choice([EOT, USER])
            kept = tuple(s for s in (EOT, USER) if s != refused)
            return [Case(f"{label(a + b)}, allowed=()", (a + b, merges, specials, ())),
                    Case(f"{label(text)}, allowed={(EOT, USER)}", (text, merges, specials, (EOT, USER))),
                    Case(f"{EOT!r}, allowed=({EOT!r},)", (EOT, merges, specials, (EOT,))),
                    Case(f"{label(text)}, allowed={kept}", (text, merges, specials, kept), raises="ValueError")]
        raw = train_loop(corpus_text()["en"][:600] + corpus_text()["ko"][:300], 60)
        merges = reference_merges()
        specials = self.specials(merges)
        chat = f"{USER}안녕하세요! Tell me a story.{EOT}"
        return [Case(f"{label(f'{KO} {EN}')}, train_bpe(...), allowed=()", (f"{KO} {EN}", raw, self.specials(raw), ())),
                Case(f"{label(f'{KO}{EOT}{EN}')}, allowed=({EOT!r},)", (f"{KO}{EOT}{EN}", merges, specials, (EOT,))),
                Case(f"{label(chat)}, allowed={(EOT, USER)}", (chat, merges, specials, (EOT, USER))),
                Case(f"'hi {EOT} there', allowed=()", (f"hi {EOT} there", merges, specials, ()), raises="ValueError"),
                Case(f"{label(chat)}, allowed=({USER!r},)", (chat, merges, specials, (USER,)), raises="ValueError")]

    def reference(self, text, merges, special_tokens, allowed):
        try:
            return BPETokenizer(merges, special_tokens).encode(text, allowed_special=set(allowed))
        except TokenizerError as exc:   # the notebook's contract: ValueError
            raise ValueError(str(exc)) from None

    def judge(self, case, output):
        verdict = super().judge(case, output)
        if case.raises and not verdict.passed:
            verdict.key = "mistake_special_not_refused"
        return verdict

    def explain_raised(self, case, error, text):
        return "mistake_special_allowed_refused" if error == "ValueError" else None
