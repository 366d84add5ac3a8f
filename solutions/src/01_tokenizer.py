# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 1: a tokenizer from bytes up
#
# [Open in Colab]({{colab_url}}) · companion of chapter 1, *Tokens: what a model sees*
#
# You will build a byte-level BPE tokenizer one small function at a time, the
# way GPT-style tokenizers work, and check every function as soon as it exists:
#
# 1. the UTF-8 bytes of a string;
# 2. counting adjacent pairs of ids;
# 3. replacing one pair by a new id;
# 4. training: the merge loop, with the course's tie-break;
# 5. encoding new text by applying merges in rank order;
# 6. decoding ids back to text, even when a character is cut in half;
# 7. the regex pre-split (GPT-4's pattern);
# 8. special tokens such as `<|endoftext|>`, and why user text must never produce them.
#
# Afterwards you train your tokenizer on part of the course corpus and use the
# course's reference tokenizer to compare Korean with English, colour tokens by
# id and look at why a model cannot simply count a row of dots.
#
# Each step has a cell marked `YOUR CODE HERE`; the cell after it checks your
# function and prints ✅ or ❌ with a hint. Token ids are plain Python `int`s and
# a sequence of them is a `list[int]`; no tensors in this notebook.

# %% [markdown] lang="ko"
# # 노트북 1: 바이트부터 쌓아 올리는 토크나이저
#
# [Colab에서 열기]({{colab_url}}) · 1장 *토큰: 모델이 보는 세상*과 함께 보는 노트북
#
# GPT 계열 토크나이저와 같은 방식의 바이트 수준 BPE 토크나이저를 작은 함수
# 하나씩 만들어 갑니다. 함수를 하나 완성할 때마다 곧바로 검사합니다.
#
# 1. 문자열의 UTF-8 바이트
# 2. 이웃한 id 쌍 세기
# 3. 쌍 하나를 새 id로 바꾸기
# 4. 학습: 이 강좌의 동점 규칙을 따르는 병합 반복
# 5. 병합을 순위대로 적용해 새 텍스트 인코딩하기
# 6. 글자가 중간에 잘려도 id를 텍스트로 되돌리는 디코딩
# 7. 정규식 사전 분할 (GPT-4 패턴)
# 8. `<|endoftext|>` 같은 특수 토큰, 그리고 사용자 텍스트에서 특수 토큰이 나오면 안 되는 이유
#
# 다 만든 뒤에는 여러분의 토크나이저를 강좌 말뭉치 일부로 학습시켜 보고, 강좌의
# 참고 토크나이저로 한국어와 영어를 비교하고, 토큰을 id별 색으로 칠해 보고, 모델이
# 줄지어 선 점의 개수를 왜 그냥 세지 못하는지 살펴봅니다.
#
# 단계마다 `YOUR CODE HERE` 표시가 있는 셀을 채우면, 바로 다음 셀이 함수를
# 검사해 ✅ 또는 ❌와 힌트를 보여 줍니다. 토큰 id는 파이썬 `int`이고 id의 나열은
# `list[int]`입니다. 이 노트북에는 텐서가 나오지 않습니다.

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import regex
from tqdm.auto import tqdm
from autograde.notebook import setup, check
device = setup(COURSE_LANG)

# %% [markdown] lang="en"
# ## 1. Text as UTF-8 bytes
#
# Every character has a Unicode code point (`ord("배")` is 48,176, U+BC30), and
# UTF-8 stores a code point in one to four bytes: one for ASCII, three for a
# Hangul syllable. A byte-level tokenizer starts from these bytes, so ids 0 to
# 255 already spell any text in any language. Return the bytes of `text` as a
# list of ints.

# %% [markdown] lang="ko"
# ## 1. UTF-8 바이트로 본 텍스트
#
# 모든 문자에는 유니코드 코드 포인트가 있고(`ord("배")`는 48,176, 즉 U+BC30),
# UTF-8은 코드 포인트 하나를 1~4바이트로 저장합니다. ASCII는 1바이트, 한글 음절은
# 3바이트입니다. 바이트 수준 토크나이저는 이 바이트에서 출발하므로 0부터 255까지의 id 256개만으로도
# 어느 언어의 어떤 텍스트든 적을 수 있습니다. `text`의 바이트를 정수 리스트로
# 돌려주세요.

# %% kind="solution" id="utf8_bytes"
def utf8_bytes(text: str) -> list[int]:
    """"배" -> [235, 176, 176]"""
    ### BEGIN SOLUTION
    return list(text.encode("utf-8"))
    ### END SOLUTION

# %% kind="test" id="check_utf8_bytes"


# %% [markdown] lang="en"
# The same meaning, different costs: one Hangul syllable takes as many bytes as
# three English letters.

# %% [markdown] lang="ko"
# 같은 뜻이라도 드는 바이트가 다릅니다. 한글 한 음절이 영어 알파벳 세 글자만큼의
# 바이트를 차지합니다.

# %%
for word in ["배", "pear", "배가", "애, 겨울 배가 맛있단다!", "😀"]:
    data = utf8_bytes(word)
    print(f"{word!r:>16}  {len(word):2d} chars  {len(data):2d} bytes  {bytes(data).hex(' ')}")

# %% [markdown] lang="en"
# ## 2. Counting adjacent pairs
#
# BPE looks for the pair of neighbouring ids that occurs most often. Count every
# adjacent pair: `[1, 2, 3, 1, 2]` has the pairs `(1, 2)` twice, `(2, 3)` and
# `(3, 1)` once each. Pairs overlap, so `[1, 1, 1]` holds `(1, 1)` twice.
# Return a dict `{(a, b): count}` (a `collections.Counter` is a dict too).

# %% [markdown] lang="ko"
# ## 2. 이웃한 쌍 세기
#
# BPE는 나란히 붙은 id 쌍 가운데 가장 자주 나오는 것을 찾습니다. 이웃한 쌍을 모두
# 세세요. `[1, 2, 3, 1, 2]`에는 `(1, 2)`가 두 번, `(2, 3)`과 `(3, 1)`이 한 번씩
# 있습니다. 쌍은 서로 겹치므로 `[1, 1, 1]`에는 `(1, 1)`이 두 번 들어 있습니다.
# `{(a, b): 개수}` 꼴의 dict를 돌려주세요(`collections.Counter`도 dict입니다).

# %% kind="solution" id="count_pairs"
def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}"""
    ### BEGIN SOLUTION
    counts = {}
    for pair in zip(ids, ids[1:]):              # (ids[0], ids[1]), (ids[1], ids[2]), ...
        counts[pair] = counts.get(pair, 0) + 1
    return counts
    ### END SOLUTION

# %% kind="test" id="check_count_pairs"


# %% [markdown] lang="en"
# ## 3. Replacing one pair
#
# A merge turns every occurrence of a pair into one new id. Walk the list left
# to right; where `ids[i], ids[i + 1]` is the pair, write `new_id` and jump two
# places, otherwise copy `ids[i]` and move one. Occurrences never overlap:
# `[1, 1, 1]` with the pair `(1, 1)` becomes `[new_id, 1]`.

# %% [markdown] lang="ko"
# ## 3. 쌍 하나를 바꾸기
#
# 병합은 어떤 쌍이 나올 때마다 그 자리를 새 id 하나로 바꿉니다. 리스트를 왼쪽부터
# 훑으면서 `ids[i], ids[i + 1]`이 그 쌍이면 `new_id`를 적고 두 칸 건너뛰고,
# 아니면 `ids[i]`를 그대로 옮기고 한 칸 나아갑니다. 겹쳐서 바꾸는 일은 없으므로
# `[1, 1, 1]`에 쌍 `(1, 1)`을 적용하면 `[new_id, 1]`이 됩니다.

# %% kind="solution" id="merge_pair"
def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """[1, 2, 3, 1, 2], (1, 2), 9 -> [9, 3, 9];  [1, 1, 1], (1, 1), 7 -> [7, 1]"""
    ### BEGIN SOLUTION
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2                              # both ids of the pair are used up
        else:
            merged.append(ids[i])
            i += 1
    return merged
    ### END SOLUTION

# %% kind="test" id="check_merge_pair"


# %% [markdown] lang="en"
# ## 4. Training: the merge loop
#
# Training repeats three moves `n_merges` times on the UTF-8 bytes of `text`
# (no regex yet, that comes in step 7):
#
# 1. count the adjacent pairs of the current ids;
# 2. pick the most frequent pair $(a^*, b^*) = \arg\max_{(a,b)} \mathrm{count}(a, b)$;
# 3. give it the id $256 + k$ for the $k$-th merge (from 0) and replace it everywhere.
#
# **Ties.** When several pairs share the top count, the course takes the
# smallest pair, comparing `(id_a, id_b)` as tuples. Python's `max` and
# `Counter.most_common` return the *first* pair they meet instead, so write the
# choice out: `min(counts, key=lambda p: (-counts[p], p))`.
#
# Keep merging pairs that occur only once; stop early only when no pair is
# left (the text has become a single token). Return the merges in the order
# they were learned, as a list of `((id_a, id_b), new_id)`. With
# `progress=True`, wrap the loop in `tqdm(..., disable=not progress)` so that
# long runs show a progress bar.

# %% [markdown] lang="ko"
# ## 4. 학습: 병합 반복
#
# 학습은 `text`의 UTF-8 바이트 위에서 다음 세 동작을 `n_merges`번 되풀이합니다.
# (정규식은 아직 쓰지 않습니다. 7단계에서 나옵니다.)
#
# 1. 현재 id에서 이웃한 쌍을 셉니다.
# 2. 가장 많이 나온 쌍 $(a^*, b^*) = \arg\max_{(a,b)} \mathrm{count}(a, b)$를 고릅니다.
# 3. $k$번째 병합(0부터)이면 id $256 + k$를 주고, 그 쌍을 모두 새 id로 바꿉니다.
#
# **동점 처리.** 최다 빈도인 쌍이 여럿이면 이 강좌는 `(id_a, id_b)`를 튜플로
# 비교해 가장 작은 쌍을 고릅니다. 파이썬의 `max`나 `Counter.most_common`은 먼저
# 만난 쌍을 돌려주므로, 고르는 규칙을 직접 적어야 합니다:
# `min(counts, key=lambda p: (-counts[p], p))`.
#
# 한 번만 나오는 쌍도 계속 병합하고, 남은 쌍이 하나도 없을 때(텍스트 전체가 토큰
# 하나가 되었을 때)만 일찍 멈춥니다. 병합은 배운 순서대로
# `((id_a, id_b), new_id)`의 리스트로 돌려주세요. `progress=True`이면 반복문을
# `tqdm(..., disable=not progress)`로 감싸 오래 걸리는 학습에 진행 막대가
# 보이게 합니다.

# %% kind="solution" id="train_bpe"
def train_bpe(text: str, n_merges: int, progress: bool = False) -> list[tuple[tuple[int, int], int]]:
    """"hahaha haha", 3 -> [((104, 97), 256), ((256, 256), 257), ((32, 257), 258)]"""
    ### BEGIN SOLUTION
    ids = utf8_bytes(text)
    merges = []
    for k in tqdm(range(n_merges), desc="BPE merges", disable=not progress):
        counts = count_pairs(ids)
        if not counts:                          # a single token is left: nothing to merge
            break
        pair = min(counts, key=lambda p: (-counts[p], p))   # most frequent, then smallest pair
        new_id = 256 + k
        ids = merge_pair(ids, pair, new_id)
        merges.append((pair, new_id))
    return merges
    ### END SOLUTION

# %% kind="test" id="check_train_bpe"


# %% [markdown] lang="en"
# The chapter's worked example: three merges on `hahaha haha` learn "ha", then
# "haha", then " haha" (the third merge is a tie, won by the smaller pair
# `(32, 257)`).

# %% [markdown] lang="ko"
# 1장에서 손으로 풀어 본 예입니다. `hahaha haha`에서 병합 세 번은 "ha", "haha",
# " haha"를 차례로 배웁니다. 세 번째 병합은 동점이었고 더 작은 쌍 `(32, 257)`이
# 이겼습니다.

# %%
haha_merges = train_bpe("hahaha haha", 3)
haha_merges

# %% [markdown] lang="en"
# ## 5. Encoding new text
#
# To encode, start from the bytes and keep applying the merge with the
# **lowest rank** among the pairs present, until no adjacent pair has a merge.
# The rank of a merge is its new id: a merge learned later was learned on text
# where the earlier ones had already happened, so applying them in rank order
# replays training. Do not rely on the order of the `merges` list; build a dict
# `{pair: new_id}` and take, among the current pairs, the one with the smallest
# new id.

# %% [markdown] lang="ko"
# ## 5. 새 텍스트 인코딩하기
#
# 인코딩은 바이트에서 시작해, 지금 있는 쌍 가운데 **순위가 가장 낮은** 병합을
# 적용하는 일을 이웃한 쌍에 해당하는 병합이 더는 없을 때까지 되풀이합니다. 병합의
# 순위는 그 병합의 새 id입니다. 나중에 배운 병합은 앞선 병합이 이미 적용된
# 텍스트에서 배운 것이므로, 순위대로 적용해야 학습 과정을 그대로 다시 밟게 됩니다.
# `merges` 리스트의 순서는 믿지 마세요. `{쌍: 새 id}` dict를 만들고, 현재 있는
# 쌍 가운데 새 id가 가장 작은 것을 고르면 됩니다.

# %% kind="solution" id="encode"
def encode(text: str, merges: list[tuple[tuple[int, int], int]]) -> list[int]:
    """" hahaha" with the merges above -> [258, 256]"""
    ### BEGIN SOLUTION
    rank = {tuple(pair): new_id for pair, new_id in merges}   # pair -> new id, the id is the rank
    ids = utf8_bytes(text)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))
        if pair not in rank:                    # no adjacent pair has a merge
            break
        ids = merge_pair(ids, pair, rank[pair])
    return ids
    ### END SOLUTION

# %% kind="test" id="check_encode"


# %% [markdown] lang="en"
# The chapter's table, with the merges you just learned: unseen text such as
# `aha` falls back to smaller pieces, never to an unknown token.

# %% [markdown] lang="ko"
# 1장의 표를 방금 배운 병합으로 다시 만들어 봅니다. `aha`처럼 학습 때 본 적 없는
# 텍스트는 더 작은 조각으로 내려갈 뿐, 모르는 토큰이 되지 않습니다.

# %%
for text in ["hahahaha", " hahaha", "aha", " haha", "hahah"]:
    print(f"{text!r:>12} -> {encode(text, haha_merges)}")

# %% [markdown] lang="en"
# ## 6. Decoding, even half a character
#
# Each id stands for a byte string: ids below 256 are single bytes, and merge
# `(a, b) -> new_id` stands for the bytes of `a` followed by the bytes of `b`.
# Build that table in rank order (a merge may use an id made by an earlier
# merge), join the bytes of all ids, and decode **once** as UTF-8.
#
# A token may end in the middle of a Hangul syllable, and a model that stops
# generating there leaves half a character behind. Decoding must not crash on
# it: `errors="replace"` turns invalid bytes into U+FFFD, `�`.
#
# | bytes | text |
# | --- | --- |
# | `ED 95 9C` | `한` |
# | `ED 95` | `�` |
# | `95 9C` | `��` |

# %% [markdown] lang="ko"
# ## 6. 반쪽짜리 글자까지 디코딩하기
#
# id마다 바이트열이 하나씩 대응합니다. 256 미만의 id는 바이트 하나이고, 병합
# `(a, b) -> new_id`는 `a`의 바이트 뒤에 `b`의 바이트를 붙인 것입니다. 이 표를
# 순위 순서로 만드세요(어떤 병합은 앞선 병합이 만든 id를 씁니다). 그런 다음 모든
# id의 바이트를 이어 붙여 UTF-8로 **한 번에** 디코딩합니다.
#
# 토큰은 한글 음절 한가운데에서 끝날 수도 있고, 모델이 바로 거기서 생성을 멈추면
# 반쪽짜리 글자가 남습니다. 디코딩은 이런 경우에도 멈추면 안 됩니다.
# `errors="replace"`를 쓰면 잘못된 바이트가 U+FFFD, 즉 `�`로 바뀝니다.
#
# | 바이트 | 텍스트 |
# | --- | --- |
# | `ED 95 9C` | `한` |
# | `ED 95` | `�` |
# | `95 9C` | `��` |

# %% kind="solution" id="decode"
def decode(ids: list[int], merges: list[tuple[tuple[int, int], int]]) -> str:
    """[258, 256] with the merges above -> " hahaha";  [0xED, 0x95] -> "�" """
    ### BEGIN SOLUTION
    vocab = {i: bytes([i]) for i in range(256)}                 # id -> bytes
    for (a, b), new_id in sorted(merges, key=lambda m: m[1]):   # rank order
        vocab[new_id] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
    ### END SOLUTION

# %% kind="test" id="check_decode"


# %% [markdown] lang="en"
# A round trip gives the text back exactly; cutting the bytes of 한 short gives `�`.

# %% [markdown] lang="ko"
# 인코딩했다가 디코딩하면 원래 텍스트가 그대로 돌아옵니다. 한의 바이트를 중간에서
# 자르면 `�`가 나옵니다.

# %%
print(decode(encode("hahaha haha", haha_merges), haha_merges))
print(decode(utf8_bytes("한"), []), decode(utf8_bytes("한")[:2], []), decode(utf8_bytes("한국")[:5], []))

# %% [markdown] lang="en"
# ## 7. The regex pre-split
#
# Trained on raw text, BPE would also learn tokens that glue the end of one
# word to the start of the next. GPT-2 and GPT-4 style tokenizers first cut the
# text into chunks with a regular expression and never merge across chunks.
# This is GPT-4's pattern, the one the course's reference tokenizer uses:

# %% [markdown] lang="ko"
# ## 7. 정규식 사전 분할
#
# 날것의 텍스트로 학습하면 BPE는 한 단어의 끝과 다음 단어의 앞을 이어 붙인 토큰까지
# 배우게 됩니다. 그래서 GPT-2·GPT-4 계열 토크나이저는 먼저 정규식으로 텍스트를
# 조각내고, 조각의 경계를 넘어서는 병합하지 않습니다. 아래가 GPT-4의 패턴이며,
# 강좌의 참고 토크나이저도 이 패턴을 씁니다.

# %% kind="setup" id="split_pattern"
# The same string as autograde.reference.tokenizer.GPT4_SPLIT_PATTERN.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

# %% [markdown] lang="en"
# | piece | matches |
# | --- | --- |
# | `'(?i:[sdmt]\|ll\|ve\|re)` | English contractions: `'s`, `'ll` |
# | `[^\r\n\p{L}\p{N}]?+\p{L}+` | a run of letters with at most one non-letter in front, usually a space: `" 배가"` |
# | `\p{N}{1,3}` | one to three digits: `'202'`, `'4'` |
# | ` ?[^\s\p{L}\p{N}]++[\r\n]*` | a run of punctuation, with an optional space: `"!"`, `"...."` |
# | `\s*[\r\n]`, `\s+(?!\S)`, `\s+` | newlines and other whitespace |
#
# `\p{L}` (any letter) and `\p{N}` (any digit) are Unicode classes that Python's
# built-in `re` does not understand; the third-party `regex` module, imported in
# the first cell, does. Return `regex.findall(GPT4_SPLIT_PATTERN, text)`.

# %% [markdown] lang="ko"
# | 패턴의 부분 | 잡아내는 것 |
# | --- | --- |
# | `'(?i:[sdmt]\|ll\|ve\|re)` | 영어 축약형: `'s`, `'ll` |
# | `[^\r\n\p{L}\p{N}]?+\p{L}+` | 글자가 이어진 덩어리, 앞에 글자가 아닌 문자(대개 공백) 최대 하나: `" 배가"` |
# | `\p{N}{1,3}` | 숫자 1~3자리: `'202'`, `'4'` |
# | ` ?[^\s\p{L}\p{N}]++[\r\n]*` | 구두점 덩어리, 앞 공백 하나는 허용: `"!"`, `"...."` |
# | `\s*[\r\n]`, `\s+(?!\S)`, `\s+` | 줄바꿈과 그 밖의 공백 |
#
# `\p{L}`(모든 글자)와 `\p{N}`(모든 숫자)은 유니코드 범주인데, 파이썬 내장 `re`는
# 이를 알아듣지 못합니다. 첫 셀에서 import한 외부 모듈 `regex`는 알아듣습니다.
# `regex.findall(GPT4_SPLIT_PATTERN, text)`를 돌려주세요.

# %% kind="solution" id="pre_split"
def pre_split(text: str) -> list[str]:
    """"애, 겨울 배가 맛있단다!" -> ['애', ',', ' 겨울', ' 배가', ' 맛있단다', '!']"""
    ### BEGIN SOLUTION
    return regex.findall(GPT4_SPLIT_PATTERN, text)
    ### END SOLUTION

# %% kind="test" id="check_pre_split"


# %% [markdown] lang="en"
# Hangul syllables are letters (`\p{L}`), so a Korean word stays one chunk with
# its particles and endings and its leading space: the regex leaves `" 학교에서"`
# whole. Where to cut inside the chunk is left to BPE. The reference
# tokenizer, trained on the course corpus, splits off frequent particles and
# endings such as 에서, 를 and 습니다, while a rarer stem falls apart into
# syllables or even bytes (`<20 ec b9>` is a space and the first two bytes of 친):

# %% [markdown] lang="ko"
# 한글 음절은 글자(`\p{L}`)이므로 한국어 어절은 조사·어미와 앞 공백까지 붙은 채 한
# 조각으로 남습니다. 정규식은 `" 학교에서"`를 통째로 둡니다. 조각 안을
# 어디서 자를지는 BPE의 몫입니다. 강좌 말뭉치로 학습한 참고 토크나이저는 에서, 를,
# 습니다처럼 자주 나오는 조사와 어미를 따로 떼어 내고, 덜 흔한 어간은 음절이나
# 바이트 단위로 흩어 놓습니다(`<20 ec b9>`는 공백과 친의 앞 두 바이트입니다).

# %%
from autograde.figures import token_label
from autograde.reference.checkpoint import load_reference

ref_tok = load_reference().tokenizer
for sentence in ["학교에서 친구를 만났습니다.", "Hello world! It's 2024."]:
    for chunk in pre_split(sentence):
        pieces = [token_label(ref_tok, i) for i in ref_tok.encode(chunk)]
        print(f"{chunk!r:>14} -> {' + '.join(pieces)}")
    print()

# %% [markdown] lang="en"
# ## 8. Special tokens
#
# A special token such as `<|endoftext|>` is one id with a control meaning
# (a document boundary, the start of a chat turn), written as text only so
# that people can read it. If `encode` turned those 13 characters typed by a
# user into the real id, the user could forge a document boundary or a chat
# turn: an injection bug. So:
#
# - `special_tokens` maps each special string to its id, e.g. `{"<|endoftext|>": 2047}`;
# - `allowed` lists the special strings this call may encode (a set, list or tuple;
#   the checks pass a tuple);
# - a special string that appears in `text` and is **not** in `allowed` raises `ValueError`;
# - an allowed special string becomes its id;
# - every other piece of text goes through `pre_split`, and each chunk through your `encode`.
#
# To cut the text at the allowed specials and keep them, split with a
# capturing group. Two details matter. Put the longer strings first: the
# alternatives are tried from left to right, so if one special token were the
# start of another (`<|end|>` and `<|endoftext|>`), the short one would cut the
# long one in two. And split only when `allowed` is not empty: with nothing to
# join the pattern is `()`, which matches the empty string between every two
# characters, and every character would then be encoded on its own.
#
# ```python
# parts = [text]
# if allowed:
#     longest_first = sorted(allowed, key=len, reverse=True)
#     parts = regex.split("(" + "|".join(regex.escape(s) for s in longest_first) + ")", text)
# ```
#
# `parts` then alternates plain text and allowed special strings (some pieces
# may be empty strings, which encode to nothing).

# %% [markdown] lang="ko"
# ## 8. 특수 토큰
#
# `<|endoftext|>` 같은 특수 토큰은 문서 경계나 대화 발화의 시작처럼 제어 의미를 갖는
# id 하나이고, 사람이 읽을 수 있도록 텍스트로 적어 둔 것뿐입니다. 사용자가 입력한
# 그 13글자를 `encode`가 진짜 id로 바꿔 준다면, 사용자는 문서 경계나 대화의 발화를
# 위조할 수 있습니다. 인젝션 버그입니다. 그래서 규칙은 다음과 같습니다.
#
# - `special_tokens`는 특수 문자열을 id에 대응시킵니다. 예: `{"<|endoftext|>": 2047}`
# - `allowed`는 이번 호출에서 인코딩해도 되는 특수 문자열의 모음입니다(set, list, tuple
#   어느 것이든 됩니다. 검사는 tuple을 넘깁니다).
# - `text`에 나오는 특수 문자열이 `allowed`에 **없으면** `ValueError`를 냅니다.
# - 허용된 특수 문자열은 그 id가 됩니다.
# - 나머지 텍스트는 `pre_split`으로 조각내고, 조각마다 여러분의 `encode`로 인코딩합니다.
#
# 허용된 특수 문자열에서 텍스트를 자르면서 그 문자열도 남기려면 괄호로 묶은 패턴으로
# 나누면 됩니다. 이때 두 가지를 챙기세요. 먼저 긴 문자열을 앞에 둡니다. 정규식은
# 대안을 왼쪽부터 시도하므로, 한 특수 토큰이 다른 특수 토큰의 앞부분이라면
# (`<|end|>`와 `<|endoftext|>`) 짧은 쪽이 긴 쪽을 둘로 잘라 버립니다. 그리고
# `allowed`가 비어 있을 때는 나누지 않습니다. 이을 것이 없으면 패턴이 `()`가 되는데,
# 이 패턴은 글자와 글자 사이의 빈 문자열마다 걸리므로 모든 글자가 따로따로
# 인코딩됩니다.
#
# ```python
# parts = [text]
# if allowed:
#     longest_first = sorted(allowed, key=len, reverse=True)
#     parts = regex.split("(" + "|".join(regex.escape(s) for s in longest_first) + ")", text)
# ```
#
# 그러면 `parts`에는 일반 텍스트와 허용된 특수 문자열이 번갈아 들어 있습니다(빈
# 문자열 조각이 섞일 수 있는데, 인코딩하면 아무것도 나오지 않습니다).

# %% kind="solution" id="encode_with_specials"
def encode_with_specials(text: str, merges: list[tuple[tuple[int, int], int]],
                         special_tokens: dict[str, int], allowed: tuple[str, ...] | set[str]) -> list[int]:
    """"hi<|endoftext|>" with allowed=("<|endoftext|>",) -> [...ids of "hi"..., 2047]; not allowed -> ValueError"""
    ### BEGIN SOLUTION
    for special in special_tokens:
        if special in text and special not in allowed:
            raise ValueError(f"the special token {special!r} is not allowed in this text")
    parts = [text]
    if allowed:
        longest_first = sorted(allowed, key=len, reverse=True)
        parts = regex.split("(" + "|".join(regex.escape(s) for s in longest_first) + ")", text)
    ids = []
    for part in parts:
        if part in allowed:
            ids.append(special_tokens[part])
        else:
            for chunk in pre_split(part):       # merges never cross a chunk boundary
                ids.extend(encode(chunk, merges))
    return ids
    ### END SOLUTION

# %% kind="test" id="check_encode_with_specials"


# %% [markdown] lang="en"
# With the reference tokenizer's merges, your function now produces the same
# ids as the reference tokenizer, and a user who types `<|endoftext|>` gets an
# error instead of a forged boundary.

# %% [markdown] lang="ko"
# 참고 토크나이저의 병합을 넣으면 여러분의 함수가 참고 토크나이저와 똑같은 id를
# 냅니다. 그리고 사용자가 `<|endoftext|>`를 입력하면 위조된 경계 대신 오류가 납니다.

# %%
ref_merges = sorted(ref_tok.merges.items(), key=lambda kv: kv[1])    # [((a, b), new_id), ...]
text = "애, 겨울 배가 맛있단다!<|endoftext|>The model reads tokens."
mine = encode_with_specials(text, ref_merges, ref_tok.special_tokens, {"<|endoftext|>"})
print(mine)
print(mine == ref_tok.encode(text, allowed_special={"<|endoftext|>"}))
try:
    encode_with_specials("hi <|endoftext|>", ref_merges, ref_tok.special_tokens, set())
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] lang="en"
# ## 9. Explore: your tokenizer on the course corpus
#
# Train your `train_bpe` on a few KB of the course corpus, Korean and English
# together, and look at what it learns first.

# %% [markdown] lang="ko"
# ## 9. 살펴보기: 강좌 말뭉치로 학습한 여러분의 토크나이저
#
# 여러분의 `train_bpe`를 강좌 말뭉치 몇 KB, 한국어와 영어를 합친 텍스트로
# 학습시키고 무엇부터 배우는지 봅시다.

# %%
from autograde.reference.corpus import load_corpus
from autograde.reference.tokenizer import BPETokenizer

corpus = load_corpus()
sample = {lang: "\n".join(corpus[lang])[:2000] for lang in ("ko", "en")}
print({lang: f"{len(s)} chars, {len(utf8_bytes(s))} bytes" for lang, s in sample.items()})
my_merges = train_bpe(sample["ko"] + "\n" + sample["en"], 250, progress=True)

# %% [markdown] lang="en"
# The first merges. A label such as `<ec 9d>` is a byte string that is not yet a
# whole character: a Hangul syllable has to be glued back from its three bytes
# before it can join anything else. And since `train_bpe` has no pre-split,
# some merges swallow the space after a word (`"e␣"`, `"s␣"`), exactly what
# step 7 prevents.

# %% [markdown] lang="ko"
# 처음 배운 병합들입니다. `<ec 9d>`처럼 적힌 것은 아직 온전한 글자가 되지 못한
# 바이트열입니다. 한글 음절은 흩어진 3바이트부터 다시 붙어야 다른 무엇과 이어질 수
# 있습니다. 또 `train_bpe`에는 사전 분할이 없으므로 단어 뒤의 공백까지 삼킨
# 병합(`"e␣"`, `"s␣"`)도 보입니다. 7단계의 사전 분할이 막아 주는 바로 그 현상입니다.

# %%
my_tok = BPETokenizer(my_merges)          # only to print readable labels
for (a, b), new_id in my_merges[:24]:
    print(f"{new_id}: {token_label(my_tok, a)!r:>10} + {token_label(my_tok, b)!r:<10} -> {token_label(my_tok, new_id)!r}")

# %% [markdown] lang="en"
# How the text shrinks merge by merge. Applying the merges one after the other
# in rank order is exactly what `encode` does, so `merge_pair` alone draws the
# curve. Korean starts higher: a syllable is three bytes, while spaces and
# punctuation are one, so this sample begins near two tokens per character.

# %% [markdown] lang="ko"
# 병합을 하나씩 적용할 때 텍스트가 얼마나 줄어드는지 봅시다. 병합을 순위 순서대로
# 하나씩 적용하는 것은 `encode`가 하는 일과 같으므로 `merge_pair`만으로 곡선을 그릴 수
# 있습니다. 한국어는 더 높은 곳에서 출발합니다. 음절은 3바이트이고 공백과 구두점은
# 1바이트라서, 이 표본은 글자당 토큰 2개 가까이에서 시작합니다.

# %%
from autograde.figures import _pyplot
plt = _pyplot()                           # matplotlib with a Hangul font
# %matplotlib inline

names = {"en": {"ko": "Korean", "en": "English"}, "ko": {"ko": "한국어", "en": "영어"}}[COURSE_LANG]
fig, ax = plt.subplots(figsize=(7, 3.6))
for lang, color in (("ko", "#d62728"), ("en", "#1f77b4")):
    ids = utf8_bytes(sample[lang])
    per_char = [len(ids) / len(sample[lang])]
    for pair, new_id in tqdm(my_merges, desc=lang, leave=False):
        ids = merge_pair(ids, pair, new_id)
        per_char.append(len(ids) / len(sample[lang]))
    ax.plot(per_char, label=names[lang], color=color)
ax.set_xlabel("merges" if COURSE_LANG == "en" else "병합 수")
ax.set_ylabel("tokens per character" if COURSE_LANG == "en" else "글자당 토큰 수")
ax.legend()
plt.show()

# %% [markdown] lang="en"
# ## 10. Explore: Korean and English with the reference tokenizer
#
# The reference tokenizer has 2,048 ids, learned on the whole bilingual corpus.
# Here are the same six sentences in both languages, measured as tokens per
# character, $\rho = N_{\text{tok}} / N_{\text{char}}$ (right), next to the plain
# token counts (left).

# %% [markdown] lang="ko"
# ## 10. 살펴보기: 참고 토크나이저로 본 한국어와 영어
#
# 참고 토크나이저는 두 언어 말뭉치 전체로 학습한 id 2,048개를 가집니다. 같은 뜻의
# 여섯 문장을 두 언어로 적어 글자당 토큰 수 $\rho = N_{\text{tok}} / N_{\text{char}}$로
# 재어 봅니다(오른쪽). 왼쪽은 토큰 수 그대로입니다.

# %%
from autograde.figures import PARALLEL

counts = {"en": [len(ref_tok.encode(en)) for en, ko in PARALLEL],
          "ko": [len(ref_tok.encode(ko)) for en, ko in PARALLEL]}
chars = {"en": [len(en) for en, ko in PARALLEL], "ko": [len(ko) for en, ko in PARALLEL]}
xs = range(len(PARALLEL))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
for j, (lang, color) in enumerate((("en", "#1f77b4"), ("ko", "#d62728"))):
    shift = [x + (j - 0.5) * 0.4 for x in xs]
    ax1.bar(shift, counts[lang], 0.4, label=names[lang], color=color)
    ax2.bar(shift, [n / c for n, c in zip(counts[lang], chars[lang])], 0.4, label=names[lang], color=color)
ax1.set_ylabel("tokens" if COURSE_LANG == "en" else "토큰 수")
ax2.set_ylabel("tokens per character" if COURSE_LANG == "en" else "글자당 토큰 수")
for ax in (ax1, ax2):
    ax.set_xticks(list(xs), [str(x + 1) for x in xs])
    ax.set_xlabel("sentence" if COURSE_LANG == "en" else "문장")
    ax.legend()
plt.show()
for en, ko in PARALLEL[:2]:
    print(f"{len(ref_tok.encode(en)):3d} tokens / {len(en):3d} chars  {en}")
    print(f"{len(ref_tok.encode(ko)):3d} tokens / {len(ko):3d} chars  {ko}")

# %% [markdown] lang="en"
# Per character Korean costs more, but a Hangul syllable also carries more than
# an English letter: compare the token counts of a sentence pair, not only the
# ratio. Below, every token gets a colour from its id (hover for the id); the
# same id always has the same colour, and a token that is only part of a
# character is shown as its bytes.

# %% [markdown] lang="ko"
# 글자 하나당으로 보면 한국어가 더 많이 들지만, 한글 한 음절은 영어 알파벳 하나보다
# 많은 내용을 담습니다. 비율만 보지 말고 같은 뜻의 문장 쌍끼리 토큰 수를 비교해
# 보세요. 아래는 토큰마다 id로 정한 색을 입힌 것입니다(마우스를 올리면 id가
# 보입니다). 같은 id는 언제나 같은 색이고, 글자의 일부일 뿐인 토큰은 바이트로
# 보여 줍니다.

# %%
import html
from IPython.display import HTML, display

def colored_tokens(tok, text: str) -> HTML:
    spans = []
    for i in tok.encode(text):
        hue = (i * 137.508) % 360                 # golden angle: neighbouring ids get distant colours
        label = html.escape(token_label(tok, i))
        spans.append(f'<span title="id {i}" style="background: hsl({hue:.0f}, 75%, 82%); '
                     f'padding: 1px 2px; margin: 1px; border-radius: 3px; white-space: pre">{label}</span>')
    return HTML(f'<div style="font-family: monospace; line-height: 2">{"".join(spans)}</div>')

for en, ko in PARALLEL[:3]:
    display(colored_tokens(ref_tok, ko), colored_tokens(ref_tok, en))
display(colored_tokens(ref_tok, "학교에서 친구를 만났습니다. 학교까지 걸어갔습니다."))

# %% [markdown] lang="en"
# ## 11. Explore: why counting dots is hard
#
# A row of dots is a single punctuation chunk for the pre-split. What BPE then
# makes of it depends on whether its training text had long runs of dots. The
# course corpus has none, so the reference tokenizer spends one token per dot:

# %% [markdown] lang="ko"
# ## 11. 살펴보기: 점 세기가 어려운 이유
#
# 사전 분할의 눈에 줄지은 점은 구두점 조각 하나일 뿐입니다. 그다음 BPE가 이를 어떻게
# 자르는지는 학습 텍스트에 긴 점 덩어리가 있었는지에 달려 있습니다. 강좌 말뭉치에는
# 그런 덩어리가 없어서, 참고 토크나이저는 점 하나에 토큰 하나를 씁니다.

# %%
dots = "." * 37
print(pre_split(dots))
ids = ref_tok.encode(dots)
print(len(ids), "tokens, distinct ids:", sorted(set(ids)))
display(colored_tokens(ref_tok, dots))

# %% [markdown] lang="en"
# Thirty-seven copies of one id. Attention mixes tokens by weighted averages,
# and the average of 37 identical vectors is the same as the average of 36: the
# count has to be pieced together from position information, which small
# models do poorly.
#
# Tokenizers trained on web text have seen dot leaders and ellipses by the
# million and own long dot tokens. Train your `train_bpe` on a short table of
# contents with dot leaders and encode the same 37 dots again:

# %% [markdown] lang="ko"
# 같은 id 37개입니다. 어텐션은 토큰들을 가중 평균으로 섞는데, 똑같은 벡터 37개의
# 평균은 36개의 평균과 같습니다. 개수는 위치 정보에서 끌어내야 하고, 작은 모델은
# 그 일을 잘 해내지 못합니다.
#
# 웹 텍스트로 학습한 토크나이저는 목차의 점선이나 말줄임표를 수없이 보았기 때문에
# 긴 점 토큰을 가지고 있습니다. 점선이 들어간 짧은 목차로 여러분의 `train_bpe`를
# 학습시키고, 같은 점 37개를 다시 인코딩해 봅시다.

# %%
toc = "".join(f"Chapter {i} " + "." * (8 + 5 * i % 29) + f" {4 * i}\n" for i in range(1, 60))
print(toc[:120])
dot_merges = train_bpe(toc, 40)
dot_ids = encode(dots, dot_merges)
print(dot_ids, "->", [len(decode([i], dot_merges)) for i in dot_ids], "dots per token")

# %% [markdown] lang="en"
# Now 37 dots are four tokens worth 16, 16, 4 and 1 dots. To say "37" the model
# must know by heart how many dots each id stands for and add the numbers in a
# single forward pass, and one dot more or less reshuffles the pieces: the
# token count below jumps up and down as the row grows. Either way the model
# never sees the dots themselves, only ids. Chapter 8 shows the practical way
# out: let the model write `"." * 37` into code and have the interpreter count.

# %% [markdown] lang="ko"
# 이제 점 37개는 점 16개, 16개, 4개, 1개짜리 토큰 네 개입니다. "37"이라고 답하려면
# 모델은 id마다 점이 몇 개인지 외우고 있다가 순전파 한 번 안에서 그 수를 더해야
# 합니다. 게다가 점이 하나만 늘거나 줄어도 조각이 완전히 달라집니다. 아래 그래프에서
# 점이 늘어날 때 토큰 수가 오르내리는 것을 보세요. 어느 쪽이든 모델에게 보이는 것은
# 점이 아니라 id뿐입니다. 8장에서 다루는 실용적인 해법은 모델이 `"." * 37` 같은
# 코드를 쓰게 하고 세는 일은 인터프리터에 맡기는 것입니다.

# %%
lengths = list(range(1, 61))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3))
ax1.step(lengths, [len(ref_tok.encode("." * n)) for n in lengths], where="mid", color="#7f7f7f")
ax1.set_title("reference tokenizer" if COURSE_LANG == "en" else "참고 토크나이저")
ax2.step(lengths, [len(encode("." * n, dot_merges)) for n in lengths], where="mid", color="#ff7f0e")
ax2.set_title("trained on dot leaders" if COURSE_LANG == "en" else "점선 목차로 학습한 토크나이저")
for ax in (ax1, ax2):
    ax.set_xlabel("dots" if COURSE_LANG == "en" else "점의 개수")
    ax.set_ylabel("tokens" if COURSE_LANG == "en" else "토큰 수")
plt.show()
for n in (35, 36, 37, 38):
    print(n, "=", " + ".join(str(len(decode([i], dot_merges))) for i in encode("." * n, dot_merges)))
