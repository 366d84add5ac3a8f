"""Checks for notebook 7: a real model's tokenizer and decoder, and its KV-cache memory.

Every step is checked on small stand-ins of the real thing, so that the grader's sandbox needs no
network and no downloaded weights: a byte-level BPE tokenizer with Qwen's split pattern trained
here by the `tokenizers` library (the reference is that library's own encoder), and random
Qwen3-shaped weights (grouped-query attention, QK-norm, a head_dim that is not d_model / n_head,
tied embeddings). The attention, the block and the forward are compared with
autograde.reference.functional, the same math that runs Qwen/Qwen3-0.6B in `course generate`.
The KV-cache sizes are checked against the config.json fields of real models, written below.

Fixed cases hold the extremes (one token, a cache already holding tokens, text with decomposed
Hangul and digits, a config without head_dim); hidden cases draw shapes, texts and sizes from the seed.
No argument is the same in every case: the split pattern, norm_eps, rope_theta, the layer count and the
grouping of heads each change somewhere, so code that writes one in instead of reading it fails; a
result in another dtype than the reference's fails too (core.dtype_kept).
"""
from __future__ import annotations

import math
import unicodedata
from functools import lru_cache

import torch
import torch.nn.functional as F

from autograde.checks.core import Case, Check, dtype_kept, gen
from autograde.checks.messages import register_messages
from autograde.checks.registry import register
from autograde.reference import functional as fn
from autograde.reference.tiny_real import QWEN_SPLIT, byte_level_bpe

register_messages({
    "mistake_rm_byte_identity": {
        "en": "every byte was mapped to chr(byte): spaces, newlines and control bytes must become printable "
              "characters (byte 32 is 'Ġ', chr(288)); keep the printable ranges and number the rest from 256",
        "ko": "모든 바이트를 chr(byte)로 옮겼습니다: 공백, 줄바꿈, 제어 바이트는 보이는 글자로 바꿔야 합니다 "
              "(32번 바이트는 chr(288)인 'Ġ'). 보이는 범위는 그대로 두고 나머지는 256부터 차례로 번호를 매기세요"},
    "mistake_rm_byte_offset": {
        "en": "the bytes outside the printable ranges were sent to chr(256 + byte): number them in order, "
              "256, 257, ... for the first, second, ... byte that is not printable",
        "ko": "보이는 범위 밖의 바이트를 chr(256 + byte)로 보냈습니다: 보이지 않는 바이트에 차례로 256, 257, ... "
              "번호를 매기세요"},
    "mistake_rm_no_split": {
        "en": "merges ran across word boundaries: split the text with the pre-tokenizer pattern first "
              "(regex.findall(pattern, text)) and run BPE inside each piece",
        "ko": "병합이 단어 경계를 넘었습니다: 먼저 사전 분할 패턴으로 글을 나누고(regex.findall(pattern, text)) "
              "조각마다 따로 BPE를 돌리세요"},
    "mistake_rm_pattern_ignored": {
        "en": "the text was split with Qwen's pattern written into the code, not with the `pattern` argument: "
              "split with regex.findall(pattern, text), whatever pattern the caller passes",
        "ko": "인자로 받은 `pattern`이 아니라 코드에 적어 둔 Qwen 패턴으로 글을 나눴습니다: 호출한 쪽이 어떤 "
              "패턴을 넘기든 regex.findall(pattern, text)로 나누세요"},
    "mistake_rm_merges_ignored": {
        "en": "the merges passed in were not the ones used (a list kept from an earlier call, or read from "
              "elsewhere): rank the pairs by this call's `merges` argument",
        "ko": "인자로 받은 merges가 아닌 다른 목록을 썼습니다(앞선 호출에서 남겨 둔 목록이나 다른 곳에서 읽은 목록): "
              "이번 호출의 `merges` 인자로 쌍의 순위를 매기세요"},
    "mistake_rm_no_nfc": {
        "en": "the text was not NFC-normalized: decomposed Hangul (jamo typed one by one) must first become "
              "syllables, unicodedata.normalize('NFC', text), as the real tokenizer's normalizer does",
        "ko": "글을 NFC로 정규화하지 않았습니다: 자모가 풀어진 한글을 먼저 음절로 합쳐야 합니다. 실제 토크나이저의 "
              "정규화기처럼 unicodedata.normalize('NFC', text)를 먼저 부르세요"},
    "mistake_rm_leftmost_merge": {
        "en": "the leftmost mergeable pair was merged first: always merge the pair with the lowest rank "
              "(the earliest in the merges list), wherever it is",
        "ko": "병합할 수 있는 쌍 가운데 가장 왼쪽 쌍부터 합쳤습니다: 위치와 상관없이 순위가 가장 낮은(병합 목록에서 "
              "가장 앞선) 쌍을 먼저 합치세요"},
    "mistake_rm_raw_bytes": {
        "en": "your function raised {error} ({text}): the vocabulary's symbols are bytes written through "
              "bytes_to_unicode(), not the raw characters of the text",
        "ko": "함수에서 {error} 예외가 발생했습니다 ({text}): 어휘의 기호는 글자 그대로가 아니라 "
              "bytes_to_unicode()로 옮긴 바이트입니다"},
    "mistake_rm_qk_whole_vector": {
        "en": "the norm ran over all heads at once: QK-norm normalizes each head's head_dim values on their own, "
              "after splitting the heads",
        "ko": "모든 헤드를 한꺼번에 정규화했습니다: QK-norm은 헤드를 나눈 뒤 헤드마다 head_dim개 값을 따로 정규화합니다"},
    "mistake_rm_qk_bad_split": {
        "en": "the heads were split with view(B, H, T, D) directly: view as (B, T, H, D), then transpose(1, 2)",
        "ko": "view(B, H, T, D)로 헤드를 바로 나눴습니다: (B, T, H, D)로 본 다음 transpose(1, 2)를 하세요"},
    "mistake_rm_qk_eps_outside": {
        "en": "eps was added outside the square root: x / sqrt(mean(x^2) + eps)",
        "ko": "eps를 제곱근 밖에서 더했습니다: x / sqrt(mean(x^2) + eps)입니다"},
    "mistake_rm_qk_no_weight": {
        "en": "the learned weight (D,) was not applied after normalizing",
        "ko": "정규화한 뒤 학습된 가중치 (D,)를 곱하지 않았습니다"},
    "mistake_rm_repeat_tiled": {
        "en": "the key/value heads were tiled (k0, k1, k0, k1): each one must serve n_rep consecutive query heads "
              "(k0, k0, k1, k1), as repeat_interleave(n_rep, dim=1) gives",
        "ko": "키/값 헤드를 통째로 반복했습니다 (k0, k1, k0, k1): 헤드 하나가 이웃한 쿼리 헤드 n_rep개를 맡아야 "
              "합니다 (k0, k0, k1, k1). repeat_interleave(n_rep, dim=1)이 그렇게 만듭니다"},
    "mistake_rm_repeat_axis": {
        "en": "the repeat ran along another axis: repeat the heads, dim 1 of (B, G, T, D)",
        "ko": "다른 축을 따라 반복했습니다: (B, G, T, D)의 1번 축, 곧 헤드 축을 반복하세요"},
    "mistake_rm_rope_before_norm": {
        "en": "RoPE was applied before QK-norm: Qwen3 normalizes each query and key head first, then rotates",
        "ko": "QK-norm보다 RoPE를 먼저 적용했습니다: Qwen3는 쿼리와 키 헤드를 먼저 정규화하고 그다음 회전합니다"},
    "mistake_rm_no_qk_norm": {
        "en": "QK-norm is missing: normalize every query and key head with q_norm.weight and k_norm.weight before RoPE",
        "ko": "QK-norm이 빠졌습니다: RoPE 전에 쿼리와 키 헤드마다 q_norm.weight, k_norm.weight로 정규화하세요"},
    "mistake_rm_rope_interleaved": {
        "en": "RoPE rotated neighbouring pairs (x0, x1), (x2, x3), ...: this checkpoint uses the rotate-half "
              "convention, pairs (x_i, x_{i+D/2})",
        "ko": "RoPE가 이웃한 쌍 (x0, x1), (x2, x3), ...을 회전했습니다: 이 체크포인트는 rotate-half 방식, "
              "곧 (x_i, x_{i+D/2}) 쌍을 씁니다"},
    "mistake_rm_no_mask": {
        "en": "the attention is not causal: a query may only look at keys at its own position or before "
              "(with a cache, query i sits at position past + i)",
        "ko": "어텐션이 인과적이지 않습니다: 쿼리는 자기 위치까지의 키만 볼 수 있습니다 "
              "(캐시가 있으면 쿼리 i의 위치는 past + i입니다)"},
    "mistake_rm_mask_no_offset": {
        "en": "the causal mask ignores the cached tokens: with `past` keys in the cache, query i may see keys "
              "0 .. past + i",
        "ko": "인과 마스크가 캐시에 든 토큰을 셈에 넣지 않았습니다: 캐시에 키가 past개 있으면 쿼리 i는 0부터 past + i까지의 "
              "키를 볼 수 있습니다"},
    "mistake_rm_scale_d_model": {
        "en": "the scores were divided by sqrt(d_model): divide by sqrt(head_dim)",
        "ko": "점수를 sqrt(d_model)로 나눴습니다: sqrt(head_dim)으로 나누세요"},
    "mistake_rm_cache_repeated": {
        "en": "the cache holds the repeated heads (n_head of them): store k and v before repeat_kv, n_kv_head "
              "heads, which is the memory grouped-query attention saves",
        "ko": "캐시에 반복한 헤드(n_head개)를 넣었습니다: k, v는 repeat_kv 전에, 곧 n_kv_head개 헤드로 저장하세요. "
              "그룹 쿼리 어텐션이 아끼는 메모리가 바로 이것입니다"},
    "mistake_rm_cache_before_rope": {
        "en": "the cache holds the keys before RoPE: store them rotated, so that a cached key never needs its "
              "position again",
        "ko": "캐시에 RoPE 전의 키를 넣었습니다: 회전한 뒤의 키를 저장해야 캐시에 든 키의 위치를 다시 계산할 필요가 없습니다"},
    "mistake_rm_post_norm": {
        "en": "the norm came after the residual addition (post-norm): this model normalizes the sublayer's input, "
              "x + attention(rms_norm(x))",
        "ko": "잔차를 더한 뒤에 정규화했습니다(post-norm): 이 모델은 하위 층의 입력을 정규화합니다. 곧 "
              "x + attention(rms_norm(x))입니다"},
    "mistake_rm_no_residual": {
        "en": "a residual connection is missing: each sublayer's output is added to its input, x = x + f(norm(x))",
        "ko": "잔차 연결이 빠졌습니다: 하위 층마다 출력을 입력에 더해야 합니다(x = x + f(norm(x)))"},
    "mistake_rm_swiglu_swapped": {
        "en": "gate and up were swapped: silu goes on x @ W_gate, then times x @ W_up",
        "ko": "gate와 up이 뒤바뀌었습니다: silu는 x @ W_gate에 적용하고, 그 결과에 x @ W_up을 곱합니다"},
    "mistake_rm_cache_length_axis": {
        "en": "the cache's length was read from the wrong axis: cached keys are (B, G, S, D), so the number of cached "
              "tokens is shape[2] (time), not the key/value heads or another axis; the new tokens' positions start there",
        "ko": "캐시 길이를 엉뚱한 축에서 읽었습니다: 캐시된 키는 (B, G, S, D)이므로 캐시된 토큰 수는 시간 축인 shape[2]이지, "
              "키/값 헤드 수나 다른 축이 아닙니다. 새 토큰의 위치는 거기서 시작합니다"},
    "mistake_rm_tie_rightmost": {
        "en": "when the lowest-ranked pair occurs more than once in a piece, the rightmost one was merged first: "
              "merge the leftmost occurrence first (min over (rank, position))",
        "ko": "순위가 가장 낮은 쌍이 한 조각에 여러 번 나올 때 가장 오른쪽 것부터 합쳤습니다: 가장 왼쪽 것부터 "
              "합치세요 ((순위, 위치)의 최솟값)"},
    "mistake_rm_positions_restart": {
        "en": "the positions restarted at 0 for the new tokens: with a cache holding `past` tokens, the new ones "
              "sit at positions past, past + 1, ...",
        "ko": "새 토큰의 위치를 0부터 다시 셌습니다: 캐시에 토큰이 past개 있으면 새 토큰의 위치는 past, past + 1, ...입니다"},
    "mistake_rm_no_final_norm": {
        "en": "the final RMSNorm (norm_f.weight) is missing before the unembedding",
        "ko": "언임베딩 전에 마지막 RMSNorm(norm_f.weight)이 빠졌습니다"},
    "mistake_rm_kv_no_two": {
        "en": "only the keys were counted: the cache holds keys and values, a factor of 2",
        "ko": "키만 셌습니다: 캐시에는 키와 값이 함께 들어가니 2를 곱해야 합니다"},
    "mistake_rm_kv_missing_default": {
        "en": "this config has no {text} ({error}): some checkpoints leave fields out and mean their default; "
              "num_key_value_heads defaults to num_attention_heads (no grouped-query attention) and head_dim to "
              "hidden_size // num_attention_heads, so read them with config.get(...)",
        "ko": "이 설정에는 {text} 항목이 없습니다 ({error}): 체크포인트에 따라 항목을 빼고 기본값을 뜻하기도 합니다. "
              "num_key_value_heads의 기본값은 num_attention_heads(그룹 쿼리 어텐션 없음), head_dim의 기본값은 "
              "hidden_size // num_attention_heads이므로 config.get(...)으로 읽으세요"},
    "mistake_rm_kv_all_heads": {
        "en": "the query heads were counted (num_attention_heads): the cache holds num_key_value_heads heads",
        "ko": "쿼리 헤드 수(num_attention_heads)로 셌습니다: 캐시에 드는 헤드 수는 num_key_value_heads입니다"},
    "mistake_rm_kv_head_dim": {
        "en": "head_dim was taken as hidden_size / num_attention_heads although config.json gives head_dim "
              "(Qwen3-0.6B: 128, not 1024 / 16 = 64)",
        "ko": "config.json에 head_dim이 있는데 hidden_size / num_attention_heads로 계산했습니다 "
              "(Qwen3-0.6B는 1024 / 16 = 64가 아니라 128입니다)"},
    "mistake_rm_kv_bits": {
        "en": "the result is in bits: bytes_per_value is already in bytes (2 for bfloat16)",
        "ko": "결과가 비트 단위입니다: bytes_per_value가 이미 바이트 단위입니다 (bfloat16은 2)"},
    "mistake_rm_kv_no_layers": {
        "en": "the layers were not counted: every layer keeps its own keys and values",
        "ko": "층 수를 곱하지 않았습니다: 층마다 자기 키와 값을 따로 둡니다"},
})


# ----------------------------------------------------------------------------
# 1. bytes -> printable characters, and byte-level BPE


def _printable() -> list[int]:
    return list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))


def _byte_map(variant: str = "ok") -> dict[int, str]:
    keep = set(_printable())
    table, extra = {}, 0
    for b in range(256):
        if variant == "identity" or b in keep:
            table[b] = chr(b)
        elif variant == "offset":
            table[b] = chr(256 + b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@register
class BytesToUnicode(Check):
    step = "real_model.bytes_to_unicode"
    # the same table, ready-made (in transformers 4.x under models.gpt2 / qwen2, in 5.x under
    # convert_slow_tokenizer; an alphabet() sorted back into order is most of it too)
    forbidden = ("autograde.reference.hf.bytes_to_unicode",
                 "transformers.convert_slow_tokenizer.bytes_to_unicode",
                 "transformers.models.gpt2.tokenization_gpt2.bytes_to_unicode",
                 "transformers.models.qwen2.tokenization_qwen2.bytes_to_unicode",
                 "tokenizers.pre_tokenizers.ByteLevel.alphabet")
    mutants = {"mistake_rm_byte_identity": lambda: _byte_map("identity"),
               "mistake_rm_byte_offset": lambda: _byte_map("offset")}

    def cases(self, seed, hidden):
        return [Case("bytes_to_unicode()", ())]

    def reference(self):
        return _byte_map()          # the same 256 characters as tokenizers' ByteLevel.alphabet() (a test says so)


SPLIT_PATTERN = QWEN_SPLIT
# GPT-2's pre-tokenizer pattern: digits stay together, contractions only in lower case. A case with it
# fails code that ignores its `pattern` argument and splits with Qwen's pattern written in.
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
TRAIN_TEXT = [
    "언어 모델은 다음 토큰을 예측합니다. 토큰마다 벡터가 하나씩 있습니다.",
    "겨울에는 배가 맛있다고 합니다. 모델은 글자가 아니라 토큰을 읽습니다.",
    "The model reads tokens, not letters. Attention lets every token look back.",
    "A key and a value are cached for every token, in every layer: 28 layers, 8 heads.",
    "It's what they'll say: we've read 1234 tokens and 56 more!\n\nThen   a new paragraph.",
] * 8


@lru_cache(maxsize=1)
def _tokenizer():
    """A small byte-level BPE built the way Qwen's tokenizer.json is: NFC, split pattern, byte level."""
    return byte_level_bpe(TRAIN_TEXT, vocab_size=420)


@lru_cache(maxsize=8)
def _tokenizer_for(pattern: str, n_merges: int | None = None):
    """The same vocabulary behind another split pattern, or with only the first n_merges merges (the
    library's own encoder, built the way byte_level_bpe builds it)."""
    if pattern == SPLIT_PATTERN and n_merges is None:
        return _tokenizer()
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    tok = Tokenizer.from_str(_tokenizer().to_str())
    if n_merges is not None:
        tok.model = models.BPE(vocab=vocab_and_merges()[0], merges=list(_all_merges()[:n_merges]))           # normalizer and decoder stay
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


@lru_cache(maxsize=1)
def _all_merges() -> tuple[tuple[str, str], ...]:
    """The trained merges, once (the cases get fresh copies from vocab_and_merges)."""
    return tuple(vocab_and_merges()[1])


def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    import json

    model = json.loads(_tokenizer().to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _bpe(text, vocab, merges, pattern, *, split=True, nfc=True, leftmost=False, rightmost_tie=False):
    import regex

    table = _byte_map()
    rank = {pair: i for i, pair in enumerate(merges)}
    if nfc:
        text = unicodedata.normalize("NFC", text)
    ids = []
    for piece in (regex.findall(pattern, text) if split else [text]):
        symbols = [table[b] for b in piece.encode("utf-8")]
        while len(symbols) > 1:
            found = [(rank[(a, b)], i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if (a, b) in rank]
            if not found:
                break
            _, i = found[0] if leftmost else min(found, key=lambda f: (f[0], -f[1]) if rightmost_tie else f)
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        ids += [vocab[s] for s in symbols]
    return ids


SPACE_RUNS = "언어 모델은  다음    토큰을 예측합니다."   # pieces "   " + " 토큰을": ("Ġ", "Ġ") twice in one piece
FIXED_TEXTS = [
    ("Korean", "언어 모델은 다음 토큰을 예측합니다."),
    ("English", "The model reads tokens, not letters."),
    ("two spaces between words", "언어 모델은  다음 토큰을 예측합니다."),
    ("decomposed Hangul (NFD)", unicodedata.normalize("NFD", "겨울에는 배가 맛있다.")),
    ("digits, contractions, spaces", "It's 2025: we've read 1234 tokens!\n\n   Then  more."),
    ("one character", "a"),
    ("empty", ""),
]
WORDS = ["언어", "모델은", "토큰을", "겨울", "배가", "맛있다", "The", "model", "reads", "tokens", "it's",
         "we'll", "1234", "56", "!", "?!", ",", ".", "\n", "  ", "Attention", "layer", "벡터가", "키와", "값"]


@register
class BpeEncode(Check):
    step = "real_model.bpe_encode"
    depends = ("real_model.bytes_to_unicode",)
    mutants = {"mistake_rm_pattern_ignored": lambda text, vocab, merges, pattern: _bpe(text, vocab, merges, SPLIT_PATTERN),
               "mistake_rm_merges_ignored": lambda text, vocab, merges, pattern: _bpe(text, vocab, _all_merges(), pattern),
               "mistake_rm_no_nfc": lambda *a: _bpe(*a, nfc=False),
               "mistake_rm_no_split": lambda *a: _bpe(*a, split=False),
               "mistake_rm_leftmost_merge": lambda *a: _bpe(*a, leftmost=True),
               "mistake_rm_tie_rightmost": lambda *a: _bpe(*a, rightmost_tie=True)}
    # the library's encoders, and its BPE model's own merge loop (tokenizers.models.BPE(vocab, merges)
    # .tokenize(piece)), which is the step's work once the text is split and mapped
    forbidden = ("tokenizers.Tokenizer.encode", "tokenizers.Tokenizer.encode_batch",
                 "tokenizers.Tokenizer.encode_batch_fast", "tokenizers.Tokenizer.async_encode",
                 "tokenizers.Tokenizer.async_encode_batch", "tokenizers.Tokenizer.async_encode_batch_fast",
                 "tokenizers.models.Model.tokenize", "tokenizers.models.BPE.tokenize",
                 "transformers.models.gpt2.tokenization_gpt2.GPT2Tokenizer.bpe",
                 "transformers.models.qwen2.tokenization_qwen2.Qwen2Tokenizer.bpe")

    def cases(self, seed, hidden):
        vocab, merges = vocab_and_merges()
        if not hidden:
            return [Case(label, (text, vocab, merges, SPLIT_PATTERN)) for label, text in FIXED_TEXTS] + \
                [Case("GPT-2's split pattern (digits stay together)", (FIXED_TEXTS[4][1], vocab, merges, GPT2_SPLIT)),
                 Case("Korean, with only the first 40 merges", (FIXED_TEXTS[0][1], vocab, merges[:40], SPLIT_PATTERN)),
                 Case("runs of 2 and 4 spaces (the run of 3 has the same pair twice: leftmost first)",
                      (SPACE_RUNS, vocab, merges, SPLIT_PATTERN))]
        g = gen(seed)
        cases = []
        for i in range(4):
            n = int(torch.randint(3, 12, (1,), generator=g))
            words = [WORDS[int(j)] for j in torch.randint(len(WORDS), (n,), generator=g)]
            text = " ".join(words)
            if i == 1:
                text = unicodedata.normalize("NFD", text)
            cases.append(Case(f"random text {i + 1} ({len(text)} characters)", (text, vocab, merges, SPLIT_PATTERN)))
        words = [WORDS[int(j)] for j in torch.randint(len(WORDS), (8,), generator=g)]
        text = " ".join(words[:4]) + "!\n\n" + " ".join(words[4:])               # Qwen keeps "!\n\n" in one piece
        cases.append(Case(f"random text 5 ({len(text)} characters), GPT-2's split pattern",
                          (text, vocab, merges, GPT2_SPLIT)))
        n = int(torch.randint(20, len(merges) // 2, (1,), generator=g))
        cases.append(Case(f"random text 1 again, with only the first {n} merges", (cases[0].args[0], vocab, merges[:n],
                                                                                  SPLIT_PATTERN)))
        cases.append(Case("runs of 2 and 4 spaces (split apart; the run of 3 has the same pair twice)",
                          (SPACE_RUNS, vocab, merges, SPLIT_PATTERN)))
        return cases

    def reference(self, text, vocab, merges, pattern):
        full = len(merges) == len(_all_merges())
        if not full and tuple(tuple(m) for m in merges) != _all_merges()[:len(merges)]:
            raise ValueError("the cases only ever cut the merges list short")
        return _tokenizer_for(pattern, None if full else len(merges)).encode(text, add_special_tokens=False).ids

    def explain_raised(self, case, error, text):
        return "mistake_rm_raw_bytes" if error == "KeyError" else None


# ----------------------------------------------------------------------------
# 2. QK-norm, 3. GQA's repeat


def _qk_norm(x, weight, n_heads, eps, *, variant="ok"):
    B, T, _ = x.shape
    if variant == "whole":
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return fn.split_heads(h, n_heads) * weight
    heads = x.view(B, n_heads, T, -1) if variant == "bad_split" else fn.split_heads(x, n_heads)   # (B, H, T, D)
    if variant == "eps_outside":
        return weight * heads / (heads.pow(2).mean(-1, keepdim=True).sqrt() + eps)
    normed = heads * torch.rsqrt(heads.pow(2).mean(-1, keepdim=True) + eps)
    return normed if variant == "no_weight" else normed * weight


HF_FAMILIES = {"qwen3": "Qwen3", "qwen2": "Qwen2", "llama": "Llama", "mistral": "Mistral"}


def _hf(*names: str) -> tuple[str, ...]:
    """transformers' own pieces of these models ({P} the class prefix), as their modeling modules hold them
    and, for classes, as the package exports them. For Check.forbidden_names: refused by the grader's
    static pass by name, since importing a modeling module to set a tripwire takes seconds."""
    out = []
    for module, prefix in HF_FAMILIES.items():
        for name in (n.format(P=prefix) for n in names):
            out.append(f"transformers.models.{module}.modeling_{module}.{name}")
            if name[0].isupper():
                out += [f"transformers.{name}", f"transformers.models.{module}.{name}"]
    return tuple(out)


def _attention_inputs(g, B, T, H, D, dtype=torch.float32):
    x = torch.randn(B, T, H * D, generator=g, dtype=dtype) * 3
    weight = (1 + 0.3 * torch.randn(D, generator=g)).to(dtype)
    return x, weight


@register
class QKNorm(Check):
    step = "real_model.qk_norm"
    mutants = {"mistake_rm_qk_whole_vector": lambda *a: _qk_norm(*a, variant="whole"),
               "mistake_rm_qk_bad_split": lambda *a: _qk_norm(*a, variant="bad_split"),
               "mistake_rm_qk_eps_outside": lambda *a: _qk_norm(*a, variant="eps_outside"),
               "mistake_rm_qk_no_weight": lambda *a: _qk_norm(*a, variant="no_weight")}
    forbidden = ("torch.nn.functional.rms_norm", "torch.nn.RMSNorm")
    forbidden_names = _hf("{P}RMSNorm")

    def cases(self, seed, hidden):
        g = gen(seed + 11)
        if hidden:
            out = []
            for _ in range(3):
                B, T, H = (int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g)),
                           int(torch.randint(1, 5, (1,), generator=g)))
                D = 2 * int(torch.randint(1, 9, (1,), generator=g))
                x, w = _attention_inputs(g, B, T, H, D)
                out.append(Case(f"x {tuple(x.shape)}, {H} heads of {D}", (x, w, H, 1e-6)))
            return out
        x, w = _attention_inputs(g, 2, 5, 4, 8)
        x[0, 0, :8] = 0.0                                   # one head that is all zeros: eps matters there
        x[1, 2, 8:16] *= 100.0                              # one loud head: must not dampen the others
        one, w1 = _attention_inputs(g, 1, 1, 2, 16)
        return [Case("x (2, 5, 32), 4 heads of 8, a silent head and a loud head", (x, w, 4, 1e-6)),
                Case("one token, x (1, 1, 32), 2 heads of 16", (one, w1, 2, 1e-6)),
                Case("large eps 0.5", (x, w, 4, 0.5))]

    def reference(self, x, weight, n_heads, eps):
        return fn.rms_norm(fn.split_heads(x, n_heads), weight, eps)            # (B, H, T, D)

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict


@register
class RepeatKV(Check):
    step = "real_model.repeat_kv"
    forbidden_names = _hf("repeat_kv")
    mutants = {"mistake_rm_repeat_tiled": lambda x, n: x.repeat(1, n, 1, 1),
               "mistake_rm_repeat_axis": [lambda x, n: x.repeat_interleave(n, dim=2),
                                          lambda x, n: x.repeat_interleave(n, dim=0)]}

    def cases(self, seed, hidden):
        g = gen(seed + 12)
        if hidden:
            out = []
            for _ in range(3):
                B, G, T, D, n = (int(torch.randint(1, 3, (1,), generator=g)), int(torch.randint(2, 5, (1,), generator=g)),
                                 int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g)),
                                 int(torch.randint(2, 5, (1,), generator=g)))
                out.append(Case(f"x (B={B}, G={G}, T={T}, D={D}), n_rep={n}", (torch.randn(B, G, T, D, generator=g), n)))
            return out
        return [Case("x (1, 2, 3, 4), n_rep=2", (torch.randn(1, 2, 3, 4, generator=g), 2)),
                Case("Qwen3-0.6B's grouping: 8 key/value heads for 16 query heads, D=2",
                     (torch.randn(1, 8, 2, 2, generator=g), 2)),
                Case("n_rep=1 (multi-head attention): unchanged", (torch.randn(2, 3, 2, 2, generator=g), 1))]

    def reference(self, x, n_rep):
        return fn.repeat_kv(x, n_rep)                                           # (B, G * n_rep, T, D)

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict


# ----------------------------------------------------------------------------
# 4. attention with a cache, 5. the block, 6. the forward


def model_config(C=32, H=4, G=2, D=12, F_=48, V=64, L=2, eps=1e-6, theta=1000000.0) -> dict:
    """A Qwen3-shaped config in the names the notebook uses (head_dim * n_head != d_model, as in Qwen3).
    Some cases change eps (0.1, far above any real model's, so that a hard-coded 1e-6 shows), theta,
    the layer count and the grouping: code that ignores a field of cfg fails one of them."""
    return {"vocab_size": V, "d_model": C, "n_layer": L, "n_head": H, "n_kv_head": G, "head_dim": D, "d_ff": F_,
            "norm_eps": eps, "rope_theta": theta}


EPS_CHOICES = (1e-6, 1e-5, 0.1)
THETA_CHOICES = (10000.0, 500000.0, 1000000.0)


def _pick(g, options):
    return options[int(torch.randint(len(options), (1,), generator=g))]


def course_config(cfg: dict) -> fn.ModelConfig:
    return fn.ModelConfig.llama_style(
        vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
        n_kv_head=cfg["n_kv_head"], d_head=cfg["head_dim"], d_ff=cfg["d_ff"], norm_eps=cfg["norm_eps"],
        rope_theta=cfg["rope_theta"], qk_norm=True, tie_embeddings=True, max_seq_len=4096)


def random_weights(cfg: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights named as functional.py (and the notebook) names them, stored (in, out)."""
    C, H, G, D, Fd = cfg["d_model"], cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"], cfg["d_ff"]

    def mat(i, o):
        return torch.randn(i, o, generator=g) / math.sqrt(i)

    def gain(n):
        return 1 + 0.3 * torch.randn(n, generator=g)

    w = {"tok_emb": torch.randn(cfg["vocab_size"], C, generator=g), "norm_f.weight": gain(C)}
    for i in range(cfg["n_layer"]):
        p = f"blocks.{i}."
        w.update({p + "norm1.weight": gain(C), p + "norm2.weight": gain(C),
                  p + "attn.W_q": mat(C, H * D), p + "attn.W_k": mat(C, G * D), p + "attn.W_v": mat(C, G * D),
                  p + "attn.W_o": mat(H * D, C), p + "attn.q_norm.weight": gain(D), p + "attn.k_norm.weight": gain(D),
                  p + "ffn.W_gate": mat(C, Fd), p + "ffn.W_up": mat(C, Fd), p + "ffn.W_down": mat(Fd, C)})
    return w


def layer(weights: dict, i: int, part: str = "") -> dict[str, torch.Tensor]:
    prefix = f"blocks.{i}.{part}"
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float):
    """cos, sin: (T, D) for these positions, in the rotate-half layout."""
    cos, sin = fn.rope_cos_sin(positions[None], head_dim, theta)
    return cos[0], sin[0]


def _interleaved_rope(x, cos, sin):
    """The GPT-J / Meta-original layout: pairs (x0, x1), (x2, x3), ... with the same frequencies."""
    half = x.shape[-1] // 2
    c, s = cos[..., :half].repeat_interleave(2, -1), sin[..., :half].repeat_interleave(2, -1)
    pairs = x.unflatten(-1, (half, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2)
    return x * c + rotated * s


def _pairs_rope(x, cos, sin):
    """Neighbouring pairs rotated, with the rotate-half angle tables left as they are."""
    pairs = x.unflatten(-1, (x.shape[-1] // 2, 2))
    return x * cos + torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2) * sin


def _attention(x, w, cfg, cos, sin, past=None, *, variant="ok"):
    """One attention layer with a cache, written out so that each known mistake can be made."""
    H, G, D, eps = cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"], cfg["norm_eps"]
    q = fn.split_heads(x @ w["W_q"], H)                                   # (B, H, T, D)
    k = fn.split_heads(x @ w["W_k"], G)                                   # (B, G, T, D)
    v = fn.split_heads(x @ w["W_v"], G)

    def rotate(t):
        if variant == "interleaved":
            return _interleaved_rope(t, cos, sin)
        if variant == "pairs":
            return _pairs_rope(t, cos, sin)
        return fn.apply_rope(t, cos[None], sin[None])

    def norm(t, name):
        return t if variant == "no_qk_norm" else fn.rms_norm(t, w[name], eps)

    if variant == "rope_first":
        q, k = norm(rotate(q), "q_norm.weight"), norm(rotate(k), "k_norm.weight")
        k_stored = k
    else:
        q, k_unrotated = rotate(norm(q, "q_norm.weight")), norm(k, "k_norm.weight")
        k_stored = k = rotate(k_unrotated)
    if variant == "cache_before_rope":
        k_stored = k_unrotated
    if past is not None:
        k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)    # (B, G, S, D)
        k_stored, v_stored = torch.cat([past[0], k_stored], 2), v
    else:
        v_stored = v
    T, S = q.shape[2], k.shape[2]
    if variant in ("tiled", "scale_d_model", "no_mask", "mask_no_offset"):
        heads = _mistaken_attention(q, k, v, x.shape[-1], variant)       # (B, H, T, D)
    else:                                # query i sits at past + i: the reference's own attention
        heads = fn.grouped_query_attention(q, k, v, fn.causal_mask(T, S))  # (B, H, T, D)
    out = fn.merge_heads(heads) @ w["W_o"]                                # (B, T, C)
    if variant == "cache_repeated":
        return out, (fn.repeat_kv(k, H // G), fn.repeat_kv(v, H // G))   # (B, H, S, D) each
    return out, (k_stored, v_stored)


def _mistaken_attention(q, k, v, d_model: int, variant: str):
    """Grouped-query attention with one known mistake in it. q: (B, H, T, D), k, v: (B, G, S, D)."""
    H, G, T, S, D = q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3]
    if variant == "tiled":                                                # (k0, k1, k0, k1)
        k, v = k.repeat(1, H // G, 1, 1), v.repeat(1, H // G, 1, 1)      # (B, H, S, D)
    if variant == "scale_d_model":                 # the core divides by sqrt(D): this makes it sqrt(d_model)
        q = q * math.sqrt(D / d_model)
    mask = fn.causal_mask(T, S)
    if variant == "mask_no_offset":
        mask = torch.ones(T, S, dtype=torch.bool).tril()                # as if the cache were not there
    return fn.grouped_query_attention(q, k, v, None if variant == "no_mask" else mask)   # (B, H, T, D)


def _attention_case(label, g, cfg, B, T, past_len):
    w = layer(random_weights(cfg, g), 0, "attn.")
    x = torch.randn(B, T, cfg["d_model"], generator=g)
    cos, sin = rope_tables(torch.arange(past_len, past_len + T), cfg["head_dim"], cfg["rope_theta"])
    past = None
    if past_len:
        shape = (B, cfg["n_kv_head"], past_len, cfg["head_dim"])
        past = (torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))
    return Case(label, (x, w, cfg, cos, sin, past))


ATTENTION_MUTANTS = {
    "mistake_rm_no_qk_norm": "no_qk_norm", "mistake_rm_rope_before_norm": "rope_first",
    "mistake_rm_rope_interleaved": "interleaved", "mistake_rm_repeat_tiled": "tiled", "mistake_rm_no_mask": "no_mask",
    "mistake_rm_mask_no_offset": "mask_no_offset", "mistake_rm_scale_d_model": "scale_d_model",
    "mistake_rm_cache_repeated": "cache_repeated", "mistake_rm_cache_before_rope": "cache_before_rope",
}


@register
class GQAAttention(Check):
    step = "real_model.gqa_attention"
    depends = ("real_model.qk_norm", "real_model.repeat_kv")
    mutants = {key: (lambda *a, v=variant: _attention(*a, variant=v)) for key, variant in ATTENTION_MUTANTS.items()}
    mutants["mistake_rm_rope_interleaved"] = [mutants["mistake_rm_rope_interleaved"],
                                              lambda *a: _attention(*a, variant="pairs")]
    forbidden = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.multi_head_attention_forward")
    forbidden_names = _hf("repeat_kv", "rotate_half", "apply_rotary_pos_emb", "eager_attention_forward", "{P}Attention",
                          "{P}RMSNorm")

    def cases(self, seed, hidden):
        g = gen(seed + 13)
        if hidden:
            out = []
            for i in range(3):
                H, G = _pick(g, [(4, 2), (6, 3), (8, 2), (4, 1), (4, 4)])
                D = 2 * int(torch.randint(2, 9, (1,), generator=g))
                eps = _pick(g, EPS_CHOICES)
                cfg = model_config(C=int(torch.randint(8, 33, (1,), generator=g)), H=H, G=G, D=D, L=1, eps=eps)
                T, past = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(0, 6, (1,), generator=g))
                out.append(_attention_case(f"H={H}, G={G}, D={D}, norm_eps={eps:g}, {T} new tokens after {past} cached",
                                           g, cfg, 2, T, past))
            return out
        cfg = model_config(L=1)
        return [_attention_case("x (2, 6, 32), no cache", g, cfg, 2, 6, 0),
                _attention_case("one new token after 5 cached (a decode step)", g, cfg, 1, 1, 5),
                _attention_case("3 new tokens after 4 cached", g, cfg, 1, 3, 4),
                _attention_case("8 query heads share 1 key/value head, norm_eps=0.1, 2 new tokens after 3 cached",
                                g, model_config(H=8, G=1, D=8, L=1, eps=0.1), 1, 2, 3)]

    def reference(self, x, w, cfg, cos, sin, past=None):
        cache = fn.KVCache(1)
        cache.layers[0] = past
        T = x.shape[1]
        S = T + (0 if past is None else past[0].shape[2])
        out = fn.attention(x, w, course_config(cfg), fn.causal_mask(T, S)[None, None], (cos[None], sin[None]), cache, 0)
        return out, cache.layers[0]

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict


def _block(x, w, cfg, cos, sin, past=None, *, variant="ok"):
    eps = cfg["norm_eps"]
    attn = {k[5:]: v for k, v in w.items() if k.startswith("attn.")}

    def ffn(h):
        gate, up = h @ w["ffn.W_gate"], h @ w["ffn.W_up"]
        if variant == "swapped":
            gate, up = up, gate
        return (F.silu(gate) * up) @ w["ffn.W_down"]

    if variant == "post_norm":
        a, kv = _attention(x, attn, cfg, cos, sin, past)
        x = fn.rms_norm(x + a, w["norm1.weight"], eps)
        return fn.rms_norm(x + ffn(x), w["norm2.weight"], eps), kv
    a, kv = _attention(fn.rms_norm(x, w["norm1.weight"], eps), attn, cfg, cos, sin, past)
    x = a if variant == "no_residual_attn" else x + a
    f = ffn(fn.rms_norm(x, w["norm2.weight"], eps))
    return (f if variant == "no_residual_ffn" else x + f), kv


def _block_case(label, g, cfg, B, T, past_len):
    base = _attention_case(label, g, cfg, B, T, past_len)
    x, _, _, cos, sin, past = base.args
    return Case(label, (x, layer(random_weights(cfg, g), 0), cfg, cos, sin, past))


@register
class DecoderBlock(Check):
    step = "real_model.decoder_block"
    forbidden_names = _hf("{P}DecoderLayer", "{P}MLP", "{P}Attention", "eager_attention_forward")
    depends = ("real_model.gqa_attention",)
    mutants = {"mistake_rm_post_norm": lambda *a: _block(*a, variant="post_norm"),
               "mistake_rm_no_residual": [lambda *a: _block(*a, variant="no_residual_attn"),
                                          lambda *a: _block(*a, variant="no_residual_ffn")],
               "mistake_rm_swiglu_swapped": lambda *a: _block(*a, variant="swapped")}

    def cases(self, seed, hidden):
        g = gen(seed + 14)
        if hidden:
            out = []
            for _ in range(3):
                T, p = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(0, 5, (1,), generator=g))
                eps = _pick(g, EPS_CHOICES)
                out.append(_block_case(f"x (1, {T}, 24), {p} cached, norm_eps={eps:g}", g,
                                       model_config(C=24, D=8, F_=40, L=1, eps=eps), 1, T, p))
            return out
        cfg = model_config(L=1)
        return [_block_case("x (2, 5, 32), no cache", g, cfg, 2, 5, 0),
                _block_case("one new token after 4 cached", g, cfg, 1, 1, 4),
                _block_case("norm_eps=0.1, 4 query heads on 1 key/value head, 3 new tokens after 2 cached", g,
                            model_config(G=1, L=1, eps=0.1), 1, 3, 2)]

    def reference(self, x, w, cfg, cos, sin, past=None):
        cache = fn.KVCache(1)
        cache.layers[0] = past
        T = x.shape[1]
        S = T + (0 if past is None else past[0].shape[2])
        out = fn.block(x, w, course_config(cfg), fn.causal_mask(T, S)[None, None], (cos[None], sin[None]), cache, 0)
        return out, cache.layers[0]

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict


def _forward(ids, weights, cfg, cache=None, *, variant="ok"):
    axis = {"length_heads": 1, "length_batch": 0, "length_dim": 3}.get(variant, 2)   # the time axis is 2
    past = 0 if cache is None else cache[0][0].shape[axis]
    start = 0 if variant == "restart" else past
    cos, sin = rope_tables(torch.arange(start, start + ids.shape[1]), cfg["head_dim"], cfg["rope_theta"])
    x = weights["tok_emb"][ids]                                            # (B, T, C)
    new_cache = []
    for i in range(cfg["n_layer"]):
        x, kv = _block(x, layer(weights, i), cfg, cos, sin, None if cache is None else cache[i])
        new_cache.append(kv)
    if variant != "no_final_norm":
        x = fn.rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])
    return x @ weights["tok_emb"].T, new_cache


def _forward_case(label, g, cfg, B, T, past_len):
    weights = random_weights(cfg, g)
    ids = torch.randint(cfg["vocab_size"], (B, past_len + T), generator=g)
    cache = None
    if past_len:
        _, cache = reference_forward(ids[:, :past_len], weights, cfg)
    return Case(label, (ids[:, past_len:], weights, cfg, cache))


def reference_forward(ids, weights, cfg, cache=None):
    kv = fn.KVCache(cfg["n_layer"])
    if cache is not None:
        kv.layers = list(cache)
    logits = fn.forward(ids, weights, course_config(cfg), cache=kv)
    return logits, list(kv.layers)


@register
class Forward(Check):
    step = "real_model.forward"
    forbidden_names = _hf("{P}Model", "{P}ForCausalLM", "{P}DecoderLayer") + (
        "transformers.AutoModelForCausalLM", "transformers.AutoModel",
        "transformers.models.auto.modeling_auto.AutoModelForCausalLM", "transformers.models.auto.modeling_auto.AutoModel")
    depends = ("real_model.decoder_block",)
    mutants = {"mistake_rm_positions_restart": lambda *a: _forward(*a, variant="restart"),
               "mistake_rm_no_final_norm": lambda *a: _forward(*a, variant="no_final_norm"),
               "mistake_rm_cache_length_axis": [lambda *a, v=v: _forward(*a, variant=v)
                                                for v in ("length_heads", "length_batch", "length_dim")]}

    def cases(self, seed, hidden):
        g = gen(seed + 15)
        if hidden:
            out = []
            for _ in range(2):
                T, p = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(0, 8, (1,), generator=g))
                L, G = int(torch.randint(1, 4, (1,), generator=g)), _pick(g, (1, 2, 4))
                eps, theta = _pick(g, EPS_CHOICES), _pick(g, THETA_CHOICES)
                cfg = model_config(C=24, D=8, F_=40, L=L, G=G, eps=eps, theta=theta)
                out.append(_forward_case(f"{L} layers, G={G}, norm_eps={eps:g}, rope_theta={theta:g}: {T} new tokens "
                                         f"after {p} cached", g, cfg, 1, T, p))
            return out
        cfg = model_config()
        return [_forward_case("prefill: 2 x 7 tokens, no cache", g, cfg, 2, 7, 0),
                _forward_case("decode: one token after 6 cached", g, cfg, 1, 1, 6),
                _forward_case("3 tokens after 5 cached", g, cfg, 1, 3, 5),
                _forward_case("3 layers, 1 key/value head, norm_eps=0.1, rope_theta=10000: 4 tokens after 2 cached",
                              g, model_config(G=1, L=3, eps=0.1, theta=10000.0), 1, 4, 2),
                _forward_case("prefill with 1 layer: 1 x 5 tokens, no cache", g, model_config(L=1), 1, 5, 0)]

    def reference(self, ids, weights, cfg, cache=None):
        logits, new_cache = reference_forward(ids, weights, cfg, cache)
        return logits, new_cache

    def judge(self, case, output):
        verdict = super().judge(case, output)
        return dtype_kept(verdict, output, self.reference(*case.args, **case.kwargs)) if verdict.passed else verdict


# ----------------------------------------------------------------------------
# 7. KV-cache memory


# fields of real config.json files (as published with each model)
REAL_CONFIGS = {
    "Qwen/Qwen3-0.6B": {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
                        "num_key_value_heads": 8, "head_dim": 128},
    "meta-llama/Llama-3.2-1B": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                                "num_key_value_heads": 8, "head_dim": 64},
    "Qwen/Qwen2.5-0.5B-Instruct": {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                                   "num_key_value_heads": 2},
    "openai-community/gpt2 (MHA)": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
}


def _kv_bytes(config, n_tokens, bytes_per_value=2, *, variant="ok"):
    heads = config["num_attention_heads"]
    kv_heads = heads if variant == "all_heads" else config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    if variant == "head_dim":
        head_dim = config["hidden_size"] // heads
    layers = 1 if variant == "no_layers" else config["num_hidden_layers"]
    two = 1 if variant == "no_two" else 2
    bits = 8 if variant == "bits" else 1
    return layers * two * kv_heads * head_dim * bytes_per_value * n_tokens * bits


@register
class KVCacheBytes(Check):
    step = "real_model.kv_cache_bytes"
    mutants = {"mistake_rm_kv_no_two": lambda *a: _kv_bytes(*a, variant="no_two"),
               "mistake_rm_kv_all_heads": lambda *a: _kv_bytes(*a, variant="all_heads"),
               "mistake_rm_kv_head_dim": lambda *a: _kv_bytes(*a, variant="head_dim"),
               "mistake_rm_kv_bits": lambda *a: _kv_bytes(*a, variant="bits"),
               "mistake_rm_kv_no_layers": lambda *a: _kv_bytes(*a, variant="no_layers")}

    def cases(self, seed, hidden):
        if hidden:
            g = gen(seed + 16)
            out = []
            for i in range(4):
                H = int(torch.randint(1, 9, (1,), generator=g)) * 4
                G = [1, 2, 4, H][int(torch.randint(4, (1,), generator=g))]
                config = {"hidden_size": H * 32, "num_hidden_layers": int(torch.randint(1, 40, (1,), generator=g)),
                          "num_attention_heads": H, "num_key_value_heads": G}
                if i == 2:                       # a config from before grouped-query attention: no such field
                    del config["num_key_value_heads"]
                if i % 2:
                    config["head_dim"] = 2 * int(torch.randint(8, 129, (1,), generator=g))
                tokens = int(torch.randint(1, 200_000, (1,), generator=g))
                width = [1, 2, 4][int(torch.randint(3, (1,), generator=g))]
                out.append(Case(f"random config {i + 1}, {tokens} tokens, {width} bytes", (config, tokens, width)))
            return out
        # copies: a function that changes its config in place is told so, and cannot change the next check's
        return [Case(f"{name}, 4096 tokens in bfloat16", (dict(config), 4096, 2)) for name, config in REAL_CONFIGS.items()] + \
            [Case("Qwen/Qwen3-0.6B, one token in float32", (dict(REAL_CONFIGS["Qwen/Qwen3-0.6B"]), 1, 4))]

    def reference(self, config, n_tokens, bytes_per_value=2):
        return _kv_bytes(config, n_tokens, bytes_per_value)

    def explain_raised(self, case, error, text):
        if error == "KeyError" and text.strip("'\"") in ("num_key_value_heads", "head_dim"):
            return "mistake_rm_kv_missing_default"
        return None
