# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] lang="en"
# # Notebook 7: your code runs a real model
#
# [Open in Colab]({{colab_url}}) · companion of chapter 7, *A token's journey*
#
# Chapter 7 followed one token through a model. Here you write that journey
# for a real open-weight model, Qwen3-0.6B (Apache-2.0, 596 million
# parameters), and run its weights with your own code:
#
# 1. `bytes_to_unicode` and `bpe_encode`: the byte-level BPE tokenizer, which must give the real tokenizer's ids;
# 2. `qk_norm`: RMSNorm on every query and key head (Qwen3's QK-norm);
# 3. `repeat_kv`: grouped-query attention's sharing of key/value heads;
# 4. `gqa_attention`: one attention layer, with RoPE and a KV cache;
# 5. `decoder_block`: the whole layer, pre-norm, with SwiGLU;
# 6. `forward`: the model, prefill and decode with the cache;
# 7. `kv_cache_bytes`: how much memory the cache takes, from `config.json`.
#
# Then you compare your logits with the `transformers` library's, measure
# prefill against decode, and chat in Korean.
#
# **Which model runs.** Qwen3-0.6B when its files are on this machine (the
# Hugging Face cache, or a directory named by the environment variable
# `COURSE_REAL_MODEL`), or when you set `DOWNLOAD = True` below (about 1.5 GB;
# on Colab pick a GPU runtime). Otherwise every cell runs on a tiny random
# model of the same architecture, built offline in a second, and says so:
# the checks, the comparisons and the timings still mean something there,
# but its chat is noise. The graded checks never need the real weights.

# %% [markdown] lang="ko"
# # 노트북 7: 여러분의 코드로 실제 모델 돌리기
#
# [Colab에서 열기]({{colab_url}}) · 7장 *토큰의 여정*과 함께 보는 노트북
#
# 7장에서는 토큰 하나가 모델 안을 지나가는 길을 따라갔습니다. 이번에는 그 길을 실제
# 공개 가중치 모델인 Qwen3-0.6B(Apache-2.0, 파라미터 5억 9,600만 개)에 맞춰 직접
# 쓰고, 그 가중치를 여러분의 코드로 돌립니다.
#
# 1. 바이트 수준 BPE 토크나이저 `bytes_to_unicode`와 `bpe_encode`: 실제 토크나이저와 같은 id가 나와야 합니다
# 2. 쿼리 헤드와 키 헤드마다 RMSNorm을 적용하는 `qk_norm` (Qwen3의 QK-norm)
# 3. 그룹 쿼리 어텐션에서 키/값 헤드를 나눠 쓰게 하는 `repeat_kv`
# 4. RoPE와 KV 캐시를 갖춘 어텐션 층 하나, `gqa_attention`
# 5. SwiGLU까지 들어간 사전 정규화 층 전체, `decoder_block`
# 6. 캐시로 프리필과 디코드를 하는 모델 전체, `forward`
# 7. `config.json`만 보고 캐시가 차지할 메모리를 구하는 `kv_cache_bytes`
#
# 그다음 여러분의 로짓을 `transformers` 라이브러리의 로짓과 비교하고, 프리필과
# 디코드의 속도를 재고, 한국어로 대화해 봅니다.
#
# **어떤 모델이 돌아가나요?** 이 컴퓨터에 Qwen3-0.6B 파일이 있으면(Hugging Face 캐시,
# 또는 환경 변수 `COURSE_REAL_MODEL`이 가리키는 디렉터리) 그 모델을 씁니다. 아래에서
# `DOWNLOAD = True`로 바꾸면 내려받습니다(약 1.5GB, Colab에서는 GPU 런타임을 고르세요).
# 그렇지 않으면 모든 셀이 구조는 같고 가중치만 무작위인 작은 모델로 돌아가며, 그
# 사실을 출력합니다. 작은 모델은 인터넷 없이 1초 만에 만들어집니다. 검사와 비교와
# 시간 측정은 작은 모델에서도 의미가 있지만, 대화 결과는 뜻 없는 글자의 나열일
# 뿐입니다. 채점하는 검사에는 실제 가중치가 전혀 필요 없습니다.

# %% kind="setup" id="setup"
COURSE_LANG = "en"
# Installs the course package when it is missing (for example in a fresh Colab runtime).
import importlib.util, subprocess, sys
if importlib.util.find_spec("autograde") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "llm-course @ git+https://github.com/{{repository}}@{{branch}}"], check=True)

import math
import unicodedata
import regex
import torch
import torch.nn.functional as F
from autograde.notebook import setup, check
setup(COURSE_LANG)

# %% [markdown] lang="en"
# ## 0. The model
#
# This cell picks the model and loads it with the course's loader
# (`autograde/reference/hf_load.py`, the code behind `course generate
# --model`). `CFG` holds the sizes your functions read, and `WEIGHTS` the
# tensors, named as the course names them: `tok_emb`, `blocks.0.attn.W_q`,
# ..., with every matrix stored (in, out) so that you multiply from the right.

# %% [markdown] lang="ko"
# ## 0. 모델 고르기
#
# 이 셀이 모델을 고르고, 이 강좌의 로더(`autograde/reference/hf_load.py`, `course
# generate --model` 뒤에서 도는 코드)로 불러옵니다. `CFG`에는 여러분의 함수가 읽을
# 크기가, `WEIGHTS`에는 텐서가 들어 있습니다. 텐서 이름은 이 강좌에서 쓰는 이름
# (`tok_emb`, `blocks.0.attn.W_q`, ...)을 따르고, 행렬은 모두 (입력, 출력) 모양이라
# 오른쪽에서 곱합니다.

# %%
import os
import tempfile
import time
from pathlib import Path
from autograde.reference.hf_load import load_checkpoint_dir, pick_device
from autograde.reference.tiny_real import build_tiny_qwen3

REAL_ID = "Qwen/Qwen3-0.6B"
DOWNLOAD = False                 # True: fetch Qwen3-0.6B from the Hugging Face Hub (network, about 1.5 GB)


def find_real_model() -> Path | None:
    """COURSE_REAL_MODEL, else the Hugging Face cache (or the Hub when DOWNLOAD is True)."""
    given = os.environ.get("COURSE_REAL_MODEL", "")
    if given:
        return None if given == "tiny" else Path(given)
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(REAL_ID, local_files_only=not DOWNLOAD,
                                      allow_patterns=["*.json", "*.safetensors", "*.jinja"]))
    except Exception:
        return None


device = pick_device("auto")
MODEL_DIR = find_real_model()
REAL = MODEL_DIR is not None
if not REAL:
    MODEL_DIR = build_tiny_qwen3(Path(tempfile.mkdtemp()) / "tiny-qwen3")
DTYPE = torch.bfloat16 if (REAL and device.type == "cuda") else torch.float32
loaded = load_checkpoint_dir(MODEL_DIR, device, DTYPE)
c = loaded.model.cfg
CFG = {"vocab_size": c.vocab_size, "d_model": c.d_model, "n_layer": c.n_layer, "n_head": c.n_head,
       "n_kv_head": c.n_kv_head, "head_dim": c.head_dim, "d_ff": c.d_ff, "norm_eps": c.norm_eps,
       "rope_theta": c.rope_theta}
WEIGHTS = dict(loaded.model.state_dict())
n_params = sum(t.numel() for t in WEIGHTS.values())
TEXT = {"en": {"real": "Running the real {name}: {n:,} parameters, {dtype} on {device}.",
               "tiny": "Qwen3-0.6B's files are not on this machine: running a tiny random model of the same "
                       "architecture ({n:,} parameters, {dtype} on {device}). Its outputs are noise.",
               "same_ids": "same ids as the model's tokenizer: {same}  ({n} tokens) {text!r}",
               "logits": "largest logit difference {diff:.2e}, relative {rel:.2e} (tolerance {tol:g})",
               "no_hf": "transformers is not installed: the comparison is skipped",
               "cache_same": "prefill {p} tokens, then {d} one at a time: largest difference from one full "
                             "forward {diff:.2e}",
               "kv_row": "{name:28s} {gqa:>9.1f} MiB   (as multi-head attention: {mha:>9.1f} MiB)",
               "kv_measured": "cache after {t} tokens: measured {measured:,} bytes, formula {formula:,} bytes",
               "prefill": "prefill: {n} tokens in {s:.3f} s ({tps:,.0f} tokens/s)",
               "decode": "decode:  {n} tokens in {s:.3f} s ({tps:,.1f} tokens/s)",
               "tiny_chat": "(a tiny random model: the reply below is noise, only the mechanics are real)"},
        "ko": {"real": "실제 {name} 모델을 돌립니다: 파라미터 {n:,}개, {device}에서 {dtype}.",
               "tiny": "이 컴퓨터에 Qwen3-0.6B 파일이 없어, 구조가 같은 작은 무작위 모델을 돌립니다 "
                       "(파라미터 {n:,}개, {device}에서 {dtype}). 출력은 아무 뜻이 없습니다.",
               "same_ids": "모델의 토크나이저와 같은 id인가: {same}  (토큰 {n}개) {text!r}",
               "logits": "로짓의 가장 큰 차이 {diff:.2e}, 상대 차이 {rel:.2e} (허용 오차 {tol:g})",
               "no_hf": "transformers가 설치되어 있지 않아 비교를 건너뜁니다",
               "cache_same": "토큰 {p}개를 프리필하고 {d}개를 하나씩 디코드: 한 번에 돌린 결과와의 가장 큰 "
                             "차이 {diff:.2e}",
               "kv_row": "{name:28s} {gqa:>9.1f} MiB   (멀티헤드 어텐션이라면 {mha:>9.1f} MiB)",
               "kv_measured": "토큰 {t}개 뒤의 캐시: 잰 값 {measured:,}바이트, 식으로 구한 값 {formula:,}바이트",
               "prefill": "프리필: 토큰 {n}개, {s:.3f}초 (초당 {tps:,.0f}토큰)",
               "decode": "디코드: 토큰 {n}개, {s:.3f}초 (초당 {tps:,.1f}토큰)",
               "tiny_chat": "(작은 무작위 모델이라 아래 답은 아무 뜻이 없고, 돌아가는 과정만 진짜입니다)"}}[COURSE_LANG]
model_name = os.environ.get("COURSE_REAL_MODEL") or REAL_ID
print(TEXT["real" if REAL else "tiny"].format(name=model_name, n=n_params, dtype=str(DTYPE).removeprefix("torch."),
                                              device=device.type))
print(CFG)

# %% [markdown] lang="en"
# ## 1. The tokenizer: bytes, then merges
#
# Notebook 1's tokenizer merged byte ids. Qwen's tokenizer (like GPT-2's
# and Llama 3's) stores its vocabulary as *strings*, so it first writes each
# byte as one printable character: the 188 bytes that already print as
# themselves (`!` to `~`, `¡` to `¬`, `®` to `ÿ`) keep their own character,
# and the other 68 (space, newline, control bytes, ...) get the characters
# `chr(256)`, `chr(257)`, ... in the order of their byte values. The space,
# byte 32, becomes `Ġ`, which is why tokens in such vocabularies start with
# `Ġ`. Write `bytes_to_unicode()`, the dict from each byte 0..255 to its character.

# %% [markdown] lang="ko"
# ## 1. 토크나이저: 먼저 바이트, 그다음 병합
#
# 노트북 1의 토크나이저는 바이트 id를 합쳤습니다. Qwen의 토크나이저는 GPT-2나
# Llama 3처럼 어휘를 *문자열*로 저장하므로, 먼저 바이트 하나를 보이는 글자 하나로
# 씁니다. 이미 제 모습으로 찍히는 바이트 188개(`!`~`~`, `¡`~`¬`, `®`~`ÿ`)는 자기
# 글자를 그대로 쓰고, 나머지 68개(공백, 줄바꿈, 제어 바이트 등)는 바이트 값 순서대로
# `chr(256)`, `chr(257)`, ... 글자를 받습니다. 32번 바이트인 공백은 `Ġ`가 됩니다. 이런
# 어휘의 토큰이 `Ġ`로 시작하는 까닭입니다. 바이트 0~255를 각자의 글자로 옮기는 사전을
# 돌려주는 `bytes_to_unicode()`를 작성하세요.

# %% kind="solution" id="bytes_to_unicode"
def bytes_to_unicode() -> dict[int, str]:
    """byte 0..255 -> one printable character; bytes that print keep their own character"""
    ### BEGIN SOLUTION
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, next_free = {}, 256
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(next_free)
            next_free += 1
    return table
    ### END SOLUTION

# %% kind="test" id="check_bytes_to_unicode"


# %% [markdown] lang="en"
# Now the encoder. The real tokenizer does three things before looking
# up any id:
#
# 1. **normalize** the text to NFC, so that Hangul typed as separate jamo
#    (`ᄀ` + `ᅧ` + `ᄋ`...) becomes the same syllables (`겨`) as everywhere else;
# 2. **split** it with the pre-tokenizer's regular expression `pattern`
#    (`regex.findall(pattern, text)`: words with the space before them,
#    single digits, runs of punctuation, runs of whitespace), so that no
#    merge ever crosses from one piece into the next;
# 3. in each piece, write its UTF-8 bytes through `bytes_to_unicode()`, then
#    merge: among the neighbouring pairs that appear in `merges`, merge the
#    one with the **lowest rank** (its index in `merges`), and repeat until
#    no pair of the piece is in `merges`.
#
# The ids are then `vocab[symbol]` for each symbol left. Return one list
# for the whole text. Special tokens such as `<|im_start|>` are not part of
# this step: the real tokenizer cuts them out of the text before these three
# steps, and the chat cell below lets the library do that.

# %% [markdown] lang="ko"
# 이제 인코더입니다. 실제 토크나이저는 id를 찾기 전에 세 가지를 합니다.
#
# 1. 글을 NFC로 **정규화**합니다. 자모를 하나씩 입력한 한글(`ᄀ` + `ᅧ` + `ᄋ`...)도
#    다른 곳과 같은 음절(`겨`)이 됩니다.
# 2. 사전 토크나이저의 정규식 `pattern`으로 글을 **나눕니다**
#    (`regex.findall(pattern, text)`: 앞 공백을 붙인 단어, 숫자 한 자리, 이어진
#    문장 부호, 이어진 공백). 그래서 어떤 병합도 한 조각에서 다음 조각으로 넘어가지
#    않습니다.
# 3. 조각마다 UTF-8 바이트를 `bytes_to_unicode()`로 옮긴 다음 병합합니다. 이웃한 쌍
#    가운데 `merges`에 있으면서 **순위가 가장 낮은** 쌍(`merges` 안의 인덱스가
#    가장 작은 쌍)을 합치고, 조각 안에 `merges`에 있는 쌍이 더 없을 때까지
#    되풀이합니다.
#
# 남은 기호마다 `vocab[기호]`가 id입니다. 글 전체의 id를 리스트 하나로 돌려주세요.
# `<|im_start|>` 같은 특수 토큰은 이 단계에 없습니다. 실제 토크나이저는 위의 세
# 단계 전에 특수 토큰을 글에서 먼저 잘라 내고, 아래 대화 셀에서는 그 일을
# 라이브러리에 맡깁니다.

# %% kind="solution" id="bpe_encode"
def bpe_encode(text: str, vocab: dict[str, int], merges: list[tuple[str, str]], pattern: str) -> list[int]:
    """NFC, split by pattern, bytes -> characters, lowest-rank merges first, then ids"""
    ### BEGIN SOLUTION
    byte_char = bytes_to_unicode()
    rank = {pair: i for i, pair in enumerate(merges)}
    ids = []
    for piece in regex.findall(pattern, unicodedata.normalize("NFC", text)):
        symbols = [byte_char[b] for b in piece.encode("utf-8")]
        while len(symbols) > 1:
            pairs = [(rank[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in rank]
            if not pairs:
                break
            _, i = min(pairs)                                   # the lowest rank, leftmost on a tie
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        ids += [vocab[s] for s in symbols]
    return ids
    ### END SOLUTION

# %% kind="test" id="check_bpe_encode"


# %% [markdown] lang="en"
# Your encoder with the model's own vocabulary, merges and split pattern
# (read from its `tokenizer.json`), against the model's tokenizer on Korean
# and English text. On plain text the two agree exactly. They can only
# differ where the library does more than these three steps: special
# tokens, and a tokenizer whose `ignore_merges` is true (Llama 3's: a word
# already in the vocabulary is taken whole; Qwen's is false). The last line
# shows the pieces of a short Korean text: a token can hold part of a
# syllable's three UTF-8 bytes, which prints as `�` on its own.

# %% [markdown] lang="ko"
# 모델 자신의 어휘, 병합 목록, 분할 패턴(`tokenizer.json`에서 읽습니다)을 넣은
# 여러분의 인코더를 모델의 토크나이저와 한국어, 영어 글에서 비교합니다. 평범한
# 글에서는 둘이 정확히 같습니다. 둘이 달라질 수 있는 것은 라이브러리가 이 세 단계
# 말고 더 하는 일이 있을 때뿐입니다. 특수 토큰이 그렇고, `ignore_merges`가 참인
# 토크나이저도 그렇습니다(Llama 3의 토크나이저는 참이라서 어휘에 이미 있는 단어를
# 통째로 씁니다. Qwen은 거짓입니다).
# 마지막 줄은 짧은 한국어 글의 조각을 보여 줍니다. 한 음절은 UTF-8로 3바이트라서,
# 토큰 하나가 음절의 바이트 일부만 가질 수도 있고, 그런 토큰은 혼자서는 `�`로 찍힙니다.

# %%
import json

spec = json.loads((MODEL_DIR / "tokenizer.json").read_text(encoding="utf-8"))
VOCAB = spec["model"]["vocab"]
MERGES = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in spec["model"]["merges"]]
steps = spec["pre_tokenizer"].get("pretokenizers", [spec["pre_tokenizer"]])
PATTERN = next(s["pattern"]["Regex"] for s in steps if s["type"] == "Split")
tokenizer = loaded.tokenizer
for text in ["언어 모델은 다음 토큰을 예측합니다.", "겨울에는 배가 맛있다고 합니다!",
             "The model reads tokens, not letters: 1,234 of them.", "KV 캐시는 28개 층마다 키와 값을 저장합니다."]:
    mine = bpe_encode(text, VOCAB, MERGES, PATTERN)
    print(TEXT["same_ids"].format(same=mine == tokenizer.encode(text, add_special_tokens=False), n=len(mine), text=text))
print([tokenizer.decode([i]) for i in bpe_encode("언어 모델은", VOCAB, MERGES, PATTERN)])

# %% [markdown] lang="en"
# ## 2. QK-norm
#
# Qwen3 adds one thing to Llama's attention: before RoPE, every query head
# and every key head is normalized on its own with RMSNorm, over its
# `head_dim` values, with a learned weight of shape `(head_dim,)`:
#
# $$
# \operatorname{RMSNorm}(x) = \frac{x}{\sqrt{\frac{1}{D} \sum_{i=1}^{D} x_i^2 + \epsilon}} \odot w
# $$
#
# It keeps the attention scores from growing without bound during training.
# `qk_norm` receives the projection `x @ W_q` (or `x @ W_k`), shape
# `(B, T, n_heads * D)`, splits it into heads, `(B, n_heads, T, D)`, and
# normalizes each head. Compute the norm in float32 and cast back (as the
# model does in half precision). Write `rms_norm` first: the block uses it too.

# %% [markdown] lang="ko"
# ## 2. QK-norm
#
# Qwen3는 Llama의 어텐션에 한 가지를 더합니다. RoPE 전에 쿼리 헤드와 키 헤드를
# 하나씩 따로 RMSNorm으로 정규화합니다. 정규화는 헤드의 `head_dim`개 값에 걸쳐
# 하고, 학습된 가중치의 모양은 `(head_dim,)`입니다.
#
# $$
# \operatorname{RMSNorm}(x) = \frac{x}{\sqrt{\frac{1}{D} \sum_{i=1}^{D} x_i^2 + \epsilon}} \odot w
# $$
#
# 학습 중에 어텐션 점수가 끝없이 커지는 것을 막아 줍니다. `qk_norm`은 투영 결과
# `x @ W_q`(또는 `x @ W_k`)를 `(B, T, n_heads * D)` 모양으로 받아 헤드로 나누고
# (`(B, n_heads, T, D)`), 헤드마다 정규화합니다. 노름은 float32로 계산한 뒤 원래
# dtype으로 되돌리세요(반정밀도에서 모델이 하는 방식입니다). 블록에서도 쓰니
# `rms_norm`부터 작성하세요.

# %% kind="solution" id="qk_norm"
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis, computed in float32"""
    ### BEGIN SOLUTION
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)
    ### END SOLUTION


def qk_norm(x: torch.Tensor, weight: torch.Tensor, n_heads: int, eps: float) -> torch.Tensor:
    """(B, T, n_heads * D) projection -> (B, n_heads, T, D), every head RMS-normalized on its own"""
    ### BEGIN SOLUTION
    B, T, _ = x.shape
    heads = x.view(B, T, n_heads, -1).transpose(1, 2)          # (B, H, T, D)
    return rms_norm(heads, weight, eps)
    ### END SOLUTION

# %% kind="test" id="check_qk_norm"


# %% [markdown] lang="en"
# ## 3. Grouped-query attention shares key/value heads
#
# Qwen3-0.6B has 16 query heads but only 8 key/value heads: each key/value
# head serves two neighbouring query heads. The cache then stores 8 heads
# instead of 16, half the memory. To compute the scores, each key/value head
# is repeated for the query heads of its group: `(B, G, T, D)` becomes
# `(B, G * n_rep, T, D)` with heads `k0, k0, k1, k1, ...` (not
# `k0, k1, k0, k1`) for `n_rep = 2`.

# %% [markdown] lang="ko"
# ## 3. 그룹 쿼리 어텐션은 키/값 헤드를 나눠 씁니다
#
# Qwen3-0.6B는 쿼리 헤드가 16개지만 키/값 헤드는 8개뿐입니다. 키/값 헤드 하나가 이웃한
# 쿼리 헤드 두 개를 맡습니다. 그래서 캐시에는 헤드 16개 대신 8개만 들어가고 메모리가
# 절반으로 줄어듭니다. 점수를 계산할 때는 키/값 헤드를 자기 그룹의 쿼리 헤드 수만큼
# 반복합니다. `n_rep = 2`이면 `(B, G, T, D)`가 `(B, G * n_rep, T, D)`가 되고, 헤드
# 순서는 `k0, k1, k0, k1`이 아니라 `k0, k0, k1, k1, ...`입니다.

# %% kind="solution" id="repeat_kv"
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, G, T, D) -> (B, G * n_rep, T, D): each key/value head repeated for its n_rep query heads"""
    ### BEGIN SOLUTION
    B, G, T, D = x.shape
    return x[:, :, None].expand(B, G, n_rep, T, D).reshape(B, G * n_rep, T, D)
    ### END SOLUTION

# %% kind="test" id="check_repeat_kv"


# %% [markdown] lang="en"
# ## 4. One attention layer, with RoPE and a cache
#
# `gqa_attention(x, w, cfg, cos, sin, past)` is one layer's attention for
# the `T` new tokens in `x`, `(B, T, C)`:
#
# 1. `q = qk_norm(x @ w["W_q"], w["q_norm.weight"], n_head, eps)`, the same for `k`
#    with `W_k`, `k_norm.weight` and `n_kv_head`; `v` is `x @ w["W_v"]` split into
#    `n_kv_head` heads (no norm);
# 2. RoPE on `q` and `k`, after the norm, in the **rotate-half** layout that
#    Hugging Face checkpoints use: dimension `i` turns with dimension
#    `i + D/2`, $x \cos + \operatorname{rotate\_half}(x) \sin$ with
#    $\operatorname{rotate\_half}(x_1, x_2) = (-x_2, x_1)$. `cos` and `sin`,
#    `(T, D)`, already hold the angles of the new tokens' positions;
# 3. `past`, when given, is the `(k, v)` of the tokens before, each
#    `(B, n_kv_head, past_len, D)`: put the new `k`, `v` after them;
# 4. scores $q k^\top / \sqrt{D}$ with `D = head_dim` against every key
#    (`repeat_kv` to `n_head` heads), causal: the new token `i` sits at position
#    `past_len + i` and sees keys `0 .. past_len + i`;
# 5. softmax, times the values, heads merged back to `(B, T, n_head * D)`, times `w["W_o"]`.
#
# Return the output `(B, T, C)` and the layer's new cache `(k, v)`, both
# `(B, n_kv_head, past_len + T, D)`: keys after RoPE, heads before the repeat.

# %% [markdown] lang="ko"
# ## 4. RoPE와 캐시를 갖춘 어텐션 층 하나
#
# `gqa_attention(x, w, cfg, cos, sin, past)`는 한 층의 어텐션으로, `x`(`(B, T, C)`)에
# 든 새 토큰 `T`개를 처리합니다.
#
# 1. `q = qk_norm(x @ w["W_q"], w["q_norm.weight"], n_head, eps)`. `k`도 `W_k`,
#    `k_norm.weight`, `n_kv_head`로 똑같이 구합니다. `v`는 `x @ w["W_v"]`를
#    `n_kv_head`개 헤드로 나누기만 합니다(정규화 없음).
# 2. 정규화한 **뒤에** `q`와 `k`에 RoPE를 적용합니다. Hugging Face 체크포인트가 쓰는
#    **rotate-half** 방식으로, `i`번 차원이 `i + D/2`번 차원과 짝을 지어 돕니다.
#    $\operatorname{rotate\_half}(x_1, x_2) = (-x_2, x_1)$일 때
#    $x \cos + \operatorname{rotate\_half}(x) \sin$입니다. `cos`와 `sin`(`(T, D)`)에는
#    새 토큰들 위치의 각도가 이미 들어 있습니다.
# 3. 주어진 `past`는 앞선 토큰들의 `(k, v)`이고, 모양은 둘 다
#    `(B, n_kv_head, past_len, D)`입니다. 새 `k`, `v`를 그 뒤에 붙입니다.
# 4. `repeat_kv`로 `n_head`개 헤드까지 늘린 모든 키와의 점수
#    $q k^\top / \sqrt{D}$를 구합니다. `D`는 `head_dim`입니다. 인과 마스크를 씌웁니다.
#    새 토큰 `i`의 위치는 `past_len + i`이고, `0`부터 `past_len + i`까지의 키를 봅니다.
# 5. 소프트맥스를 거쳐 값과 곱하고, 헤드를 다시 합쳐 `(B, T, n_head * D)`로 만든 뒤
#    `w["W_o"]`를 곱합니다.
#
# 출력 `(B, T, C)`와 이 층의 새 캐시 `(k, v)`를 돌려주세요. 캐시는 둘 다
# `(B, n_kv_head, past_len + T, D)`이고, 키는 RoPE를 적용한 뒤의 값, 헤드는 반복하기
# 전의 개수입니다.

# %% kind="solution" id="gqa_attention"
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis"""
    ### BEGIN SOLUTION
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)
    ### END SOLUTION


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D) rotated by the angles of cos, sin (T, D)"""
    ### BEGIN SOLUTION
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)
    ### END SOLUTION


def gqa_attention(x: torch.Tensor, w: dict, cfg: dict, cos: torch.Tensor, sin: torch.Tensor,
                  past: tuple | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(B, T, C) new tokens -> (B, T, C), and the layer's cache (k, v), each (B, G, past_len + T, D)"""
    ### BEGIN SOLUTION
    B, T, _ = x.shape
    H, G, eps = cfg["n_head"], cfg["n_kv_head"], cfg["norm_eps"]
    q = qk_norm(x @ w["W_q"], w["q_norm.weight"], H, eps)              # (B, H, T, D)
    k = qk_norm(x @ w["W_k"], w["k_norm.weight"], G, eps)              # (B, G, T, D)
    v = (x @ w["W_v"]).view(B, T, G, -1).transpose(1, 2)               # (B, G, T, D)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if past is not None:
        k = torch.cat([past[0], k], dim=2)                              # (B, G, S, D)
        v = torch.cat([past[1], v], dim=2)                              # (B, G, S, D)
    S = k.shape[2]
    scores = q @ repeat_kv(k, H // G).transpose(-2, -1) / math.sqrt(q.shape[-1])      # (B, H, T, S)
    visible = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)  # query i: keys <= past + i
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")).float(), dim=-1).to(q.dtype)
    out = (probs @ repeat_kv(v, H // G)).transpose(1, 2).reshape(B, T, -1)            # (B, T, H * D)
    return out @ w["W_o"], (k, v)
    ### END SOLUTION

# %% kind="test" id="check_gqa_attention"


# %% [markdown] lang="en"
# ## 5. The decoder block
#
# One layer of the model: pre-norm, each sublayer reads a normalized copy of
# the residual stream and adds its output back,
#
# $$
# h = x + \operatorname{Attn}(\operatorname{RMSNorm}_1(x)), \qquad
# \text{out} = h + \operatorname{SwiGLU}(\operatorname{RMSNorm}_2(h)),
# $$
#
# with $\operatorname{SwiGLU}(u) = (\operatorname{silu}(u W_{\text{gate}}) \odot u W_{\text{up}}) W_{\text{down}}$.
# `w` holds one layer's weights: `norm1.weight`, `attn.W_q`, ...,
# `norm2.weight`, `ffn.W_gate`, `ffn.W_up`, `ffn.W_down`. Pass the `attn.`
# weights to your `gqa_attention` without their prefix, and return the
# block's output with the cache it gave.

# %% [markdown] lang="ko"
# ## 5. 디코더 블록
#
# 모델의 층 하나입니다. 사전 정규화 방식이라 하위 층마다 잔차 스트림을 정규화한 사본을
# 읽고, 출력을 잔차 스트림에 다시 더합니다.
#
# $$
# h = x + \operatorname{Attn}(\operatorname{RMSNorm}_1(x)), \qquad
# \text{out} = h + \operatorname{SwiGLU}(\operatorname{RMSNorm}_2(h)),
# $$
#
# 여기서 $\operatorname{SwiGLU}(u) = (\operatorname{silu}(u W_{\text{gate}}) \odot u W_{\text{up}}) W_{\text{down}}$입니다.
# `w`에는 층 하나의 가중치 `norm1.weight`, `attn.W_q`, ..., `norm2.weight`,
# `ffn.W_gate`, `ffn.W_up`, `ffn.W_down`이 들어 있습니다. `attn.` 가중치는 접두사를
# 떼고 여러분의 `gqa_attention`에 넘기고, 블록의 출력과 어텐션이 돌려준 캐시를
# 돌려주세요.

# %% kind="solution" id="decoder_block"
def swiglu(x: torch.Tensor, W_gate: torch.Tensor, W_up: torch.Tensor, W_down: torch.Tensor) -> torch.Tensor:
    """(silu(x W_gate) * (x W_up)) W_down"""
    ### BEGIN SOLUTION
    return (F.silu(x @ W_gate) * (x @ W_up)) @ W_down
    ### END SOLUTION


def decoder_block(x: torch.Tensor, w: dict, cfg: dict, cos: torch.Tensor, sin: torch.Tensor,
                  past: tuple | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(B, T, C) -> (B, T, C), and this layer's cache"""
    ### BEGIN SOLUTION
    eps = cfg["norm_eps"]
    attn_weights = {name[len("attn."):]: t for name, t in w.items() if name.startswith("attn.")}
    a, kv = gqa_attention(rms_norm(x, w["norm1.weight"], eps), attn_weights, cfg, cos, sin, past)
    h = x + a                                                           # (B, T, C)
    f = swiglu(rms_norm(h, w["norm2.weight"], eps), w["ffn.W_gate"], w["ffn.W_up"], w["ffn.W_down"])
    return h + f, kv
    ### END SOLUTION

# %% kind="test" id="check_decoder_block"


# %% [markdown] lang="en"
# ## 6. The whole model, with a KV cache
#
# `forward(ids, weights, cfg, cache)` runs the model on the new token ids
# `(B, T)`. `cache` is `None` (nothing before: the **prefill**) or the list
# that the previous call returned, one `(k, v)` per layer. Then:
#
# 1. the new tokens' positions start after the cached ones: `past_len`,
#    `past_len + 1`, ...; their RoPE angles are position times
#    $\theta^{-2i/D}$ for $i = 0 .. D/2 - 1$ (`cfg["rope_theta"]`), the
#    half-size table repeated twice along the last axis to `(T, D)`;
# 2. `x = weights["tok_emb"][ids]`, then every layer's `decoder_block`
#    with its weights (the names under `blocks.{i}.`, prefix removed) and its
#    part of the cache;
# 3. a final `rms_norm` with `norm_f.weight`, and the logits `x @ tok_emb.T`:
#    Qwen3-0.6B ties its unembedding to the embedding table.
#
# Return the logits `(B, T, V)` and the new cache. Calling it once on a
# prompt, then once per new token with the cache, must give the same logits
# as one call on everything: that is what makes the decode step cheap.

# %% [markdown] lang="ko"
# ## 6. KV 캐시를 갖춘 모델 전체
#
# `forward(ids, weights, cfg, cache)`는 새 토큰 id `(B, T)`로 모델을 돌립니다.
# `cache`는 `None`(앞선 토큰이 없음: **프리필**)이거나, 앞선 호출이 돌려준 리스트로
# 층마다 `(k, v)`가 하나씩 들어 있습니다.
#
# 1. 새 토큰의 위치는 캐시에 든 토큰 다음부터 `past_len`, `past_len + 1`, ...
#    순으로 셉니다. RoPE 각도는 위치에 $\theta^{-2i/D}$
#    ($i = 0 .. D/2 - 1$, `cfg["rope_theta"]`)를 곱한 값이고, 이 절반 크기 표를
#    마지막 축을 따라 두 번 이어 붙여 `(T, D)`로 만듭니다.
# 2. `x = weights["tok_emb"][ids]`로 시작해, 층마다 그 층의 가중치(`blocks.{i}.` 아래
#    이름에서 접두사를 뗀 것)와 캐시의 제 몫으로 `decoder_block`을 부릅니다.
# 3. 마지막으로 `norm_f.weight`로 `rms_norm`을 하고 로짓 `x @ tok_emb.T`를 구합니다.
#    Qwen3-0.6B는 언임베딩을 임베딩 표와 묶어(tied) 씁니다.
#
# 로짓 `(B, T, V)`와 새 캐시를 돌려주세요. 프롬프트로 한 번 부르고, 그 뒤 새 토큰마다
# 캐시와 함께 한 번씩 부른 결과가 전체를 한 번에 넣은 결과와 같아야 합니다. 디코드
# 단계가 싼 까닭이 바로 이것입니다.

# %% kind="solution" id="forward"
def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (T, D) for these positions, rotate-half layout"""
    ### BEGIN SOLUTION
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)  # (D/2,)
    angles = positions.float()[:, None] * inv_freq[None, :]                                               # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)                                                          # (T, D)
    return angles.cos(), angles.sin()
    ### END SOLUTION


def forward(ids: torch.Tensor, weights: dict, cfg: dict, cache: list | None = None) -> tuple[torch.Tensor, list]:
    """(B, T) new token ids -> logits (B, T, V), and the cache with these tokens added"""
    ### BEGIN SOLUTION
    past_len = 0 if cache is None else cache[0][0].shape[2]
    positions = torch.arange(past_len, past_len + ids.shape[1], device=ids.device)      # (T,)
    cos, sin = rope_tables(positions, cfg["head_dim"], cfg["rope_theta"])
    x = weights["tok_emb"][ids]                                                          # (B, T, C)
    new_cache = []
    for i in range(cfg["n_layer"]):
        prefix = f"blocks.{i}."
        w = {name[len(prefix):]: t for name, t in weights.items() if name.startswith(prefix)}
        x, kv = decoder_block(x, w, cfg, cos, sin, None if cache is None else cache[i])
        new_cache.append(kv)
    x = rms_norm(x, weights["norm_f.weight"], cfg["norm_eps"])
    return x @ weights["tok_emb"].T, new_cache                                          # (B, T, V)
    ### END SOLUTION

# %% kind="test" id="check_forward"


# %% [markdown] lang="en"
# Chapter 7's table of shapes, measured on this model: one prompt of five
# tokens through the first layer with your functions, then the logits.

# %% [markdown] lang="ko"
# 7장의 텐서 모양 표를 이 모델에서 직접 재 봅니다. 토큰 다섯 개짜리 프롬프트 하나를
# 여러분의 함수로 첫 층에 통과시키고, 마지막에 로짓까지 구합니다.

# %%
with torch.no_grad():
    five = torch.tensor([tokenizer.encode("언어 모델은 토큰을", add_special_tokens=False)[:5]], device=device)
    layer0 = {name[len("blocks.0."):]: t for name, t in WEIGHTS.items() if name.startswith("blocks.0.")}
    cos, sin = rope_tables(torch.arange(five.shape[1], device=device), CFG["head_dim"], CFG["rope_theta"])
    x = WEIGHTS["tok_emb"][five]
    h = rms_norm(x, layer0["norm1.weight"], CFG["norm_eps"])
    q = qk_norm(h @ layer0["attn.W_q"], layer0["attn.q_norm.weight"], CFG["n_head"], CFG["norm_eps"])
    k = qk_norm(h @ layer0["attn.W_k"], layer0["attn.k_norm.weight"], CFG["n_kv_head"], CFG["norm_eps"])
    keys = repeat_kv(apply_rope(k, cos, sin), CFG["n_head"] // CFG["n_kv_head"])
    scores = apply_rope(q, cos, sin) @ keys.transpose(-2, -1) / math.sqrt(CFG["head_dim"])
    out, (k_cached, v_cached) = decoder_block(x, layer0, CFG, cos, sin)
    logits, _ = forward(five, WEIGHTS, CFG)
for name, t in [("ids", five), ("x = tok_emb[ids]", x), ("q", q), ("k", k), ("scores", scores),
                ("cache k, v", k_cached), ("block output", out), ("logits", logits)]:
    print(f"{name:18s} {tuple(t.shape)}")

# %% [markdown] lang="en"
# Your pieces, assembled, are now the real model's forward pass. Compare
# your logits with those of `transformers`, which reads the same checkpoint
# with its own code. In float32 on the CPU the largest difference must stay
# under $10^{-4}$ of the largest logit. In bfloat16 on a GPU each of the 28
# layers rounds to 8 bits of mantissa, and the two programs round in
# different places: there the tolerance is 5% of the largest logit
# (`TOLERANCE` below; a stated bound, not yet measured on a GPU by the course).
# Then check the cache: a prefill of part of the text followed by one token
# at a time gives the logits of one full call.

# %% [markdown] lang="ko"
# 여러분의 조각을 조립한 것이 이제 실제 모델의 순전파입니다. 같은 체크포인트를 자기
# 코드로 읽는 `transformers`의 로짓과 비교해 봅시다. CPU의 float32에서는 가장 큰
# 차이가 가장 큰 로짓의 $10^{-4}$배보다 작아야 합니다. GPU의 bfloat16에서는 28개 층이
# 저마다 가수 8비트로 반올림하고, 두 프로그램이 반올림하는 자리도 다릅니다. 그래서
# 허용 오차는 가장 큰 로짓의 5%입니다(아래 `TOLERANCE`. 정해 둔 한계일 뿐, 이 강좌가
# 아직 GPU에서 재 본 값은 아닙니다). 이어서 캐시를 확인합니다. 글의 앞부분을
# 프리필하고 나머지를 한 토큰씩 넣은 로짓이 전체를 한 번에 넣은 로짓과 같아야 합니다.

# %%
ids = torch.tensor([tokenizer.encode("언어 모델은 다음 토큰을 예측합니다. The model reads tokens.",
                                     add_special_tokens=False)], device=device)
TOLERANCE = 1e-4 if DTYPE == torch.float32 else 5e-2
with torch.no_grad():
    mine, _ = forward(ids, WEIGHTS, CFG)
    try:
        import transformers
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(
            MODEL_DIR, dtype=DTYPE, attn_implementation="eager").to(device).eval()
        theirs = hf_model(ids).logits
        diff = float((mine.float() - theirs.float()).abs().max())
        print(TEXT["logits"].format(diff=diff, rel=diff / float(theirs.float().abs().max()), tol=TOLERANCE))
        del hf_model
    except ImportError:
        print(TEXT["no_hf"])
    P = ids.shape[1] // 2
    logits, cache = forward(ids[:, :P], WEIGHTS, CFG)                  # prefill
    steps = [logits]
    for t in range(P, ids.shape[1]):                                    # decode, one token at a time
        logits, cache = forward(ids[:, t:t + 1], WEIGHTS, CFG, cache)
        steps.append(logits)
    print(TEXT["cache_same"].format(p=P, d=ids.shape[1] - P,
                                    diff=float((torch.cat(steps, 1).float() - mine.float()).abs().max())))

# %% [markdown] lang="en"
# ## 7. How much memory the cache takes
#
# Each layer keeps a key and a value for every token, in each of its
# key/value heads:
#
# $$
# \text{bytes} = L \times 2 \times G \times D \times b \times T
# $$
#
# with $L$ layers (`num_hidden_layers`), $G$ key/value heads
# (`num_key_value_heads`, equal to `num_attention_heads` when the field is
# missing: plain multi-head attention), $D$ = `head_dim` (when `config.json`
# gives it; otherwise `hidden_size / num_attention_heads`), $b$ bytes per
# value and $T$ tokens. Write `kv_cache_bytes(config, n_tokens, bytes_per_value)`
# with the field names of `config.json`, and return an int.

# %% [markdown] lang="ko"
# ## 7. 캐시가 차지하는 메모리
#
# 층마다 토큰 하나에 키와 값을 하나씩, 키/값 헤드마다 따로 저장합니다.
#
# $$
# \text{bytes} = L \times 2 \times G \times D \times b \times T
# $$
#
# $L$은 층 수(`num_hidden_layers`), $G$는 키/값 헤드 수(`num_key_value_heads`, 이
# 필드가 없으면 보통의 멀티헤드 어텐션이라 `num_attention_heads`와 같습니다),
# $D$는 `head_dim`(`config.json`에 있으면 그 값, 없으면
# `hidden_size / num_attention_heads`), $b$는 값 하나의 바이트 수, $T$는 토큰 수입니다.
# `config.json`의 필드 이름 그대로 `kv_cache_bytes(config, n_tokens, bytes_per_value)`를
# 작성하고 int를 돌려주세요.

# %% kind="solution" id="kv_cache_bytes"
def kv_cache_bytes(config: dict, n_tokens: int, bytes_per_value: int = 2) -> int:
    """L x 2 (keys and values) x kv heads x head_dim x bytes x tokens"""
    ### BEGIN SOLUTION
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return config["num_hidden_layers"] * 2 * kv_heads * head_dim * bytes_per_value * n_tokens
    ### END SOLUTION

# %% kind="test" id="check_kv_cache_bytes"


# %% [markdown] lang="en"
# Three real models' `config.json` fields, for a 32,768-token context in
# bfloat16, next to what the same model would need with one key/value head
# per query head. Then the cache your `forward` built, measured, against the formula.

# %% [markdown] lang="ko"
# 실제 모델 세 개의 `config.json` 필드로 bfloat16, 컨텍스트 32,768토큰일 때의
# 캐시를 구하고, 같은 모델이 쿼리 헤드마다 키/값 헤드를 하나씩 둔다면 얼마가 드는지
# 나란히 놓습니다. 그다음 여러분의 `forward`가 만든 캐시를 직접 재어 식과 비교합니다.

# %%
REAL_CONFIGS = {
    "Qwen/Qwen3-0.6B": {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
                        "num_key_value_heads": 8, "head_dim": 128},
    "meta-llama/Llama-3.2-1B": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                                "num_key_value_heads": 8, "head_dim": 64},
    "Qwen/Qwen2.5-0.5B-Instruct": {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                                   "num_key_value_heads": 2},
}
for name, config in REAL_CONFIGS.items():
    as_mha = {**config, "num_key_value_heads": config["num_attention_heads"]}
    print(TEXT["kv_row"].format(name=name, gqa=kv_cache_bytes(config, 32768) / 2**20,
                                mha=kv_cache_bytes(as_mha, 32768) / 2**20))
model_config = json.loads((MODEL_DIR / "config.json").read_text())
measured = sum(t.numel() * t.element_size() for kv in cache for t in kv)
print(TEXT["kv_measured"].format(t=ids.shape[1], measured=measured,
                                 formula=kv_cache_bytes(model_config, ids.shape[1], WEIGHTS["tok_emb"].element_size())))

# %% [markdown] lang="en"
# ## 8. Prefill against decode, measured
#
# Chapter 7 said that the prefill reads the whole prompt in one pass, many
# tokens per matrix product, while each decode step brings one token and
# must still read every weight. Here is the measurement with your `forward`:
# tokens per second for a prompt of `PROMPT_LEN` tokens, then for
# `NEW_TOKENS` decode steps.

# %% [markdown] lang="ko"
# ## 8. 프리필과 디코드, 직접 재기
#
# 7장에서 프리필은 프롬프트 전체를 한 번에 읽어 행렬 곱 하나에 토큰을 여럿 태우지만,
# 디코드 단계는 토큰을 하나만 가져오면서도 가중치를 모두 읽어야 한다고 했습니다.
# 여러분의 `forward`로 재 봅시다. 먼저 `PROMPT_LEN`개 토큰짜리 프롬프트를 프리필할
# 때, 그다음 디코드 단계를 `NEW_TOKENS`번 돌 때의 초당 토큰 수를 잽니다.

# %%
PROMPT_LEN, NEW_TOKENS = 128, 16


def timed(call):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


corpus_ids = tokenizer.encode(" ".join(["언어 모델은 다음 토큰을 예측합니다. The model reads tokens."] * 20),
                              add_special_tokens=False)
prompt = torch.tensor([corpus_ids[:PROMPT_LEN]], device=device)
with torch.no_grad():
    forward(prompt[:, :8], WEIGHTS, CFG)                                      # warm-up
    (logits, cache), seconds = timed(lambda: forward(prompt, WEIGHTS, CFG))
    print(TEXT["prefill"].format(n=PROMPT_LEN, s=seconds, tps=PROMPT_LEN / seconds))
    token = logits[:, -1:].argmax(-1)
    start = time.perf_counter()
    for _ in range(NEW_TOKENS):
        (logits, cache), _ = timed(lambda: forward(token, WEIGHTS, CFG, cache))
        token = logits[:, -1:].argmax(-1)
    seconds = time.perf_counter() - start
    print(TEXT["decode"].format(n=NEW_TOKENS, s=seconds, tps=NEW_TOKENS / seconds))
print(TEXT["kv_measured"].format(t=PROMPT_LEN + NEW_TOKENS, measured=sum(t.numel() * t.element_size()
                                                                        for kv in cache for t in kv),
                                 formula=kv_cache_bytes(model_config, PROMPT_LEN + NEW_TOKENS,
                                                        WEIGHTS["tok_emb"].element_size())))

# %% [markdown] lang="en"
# ## 9. A chat in Korean
#
# A chat model reads a conversation written in its chat template: each turn
# between `<|im_start|>` and `<|im_end|>`, then `<|im_start|>assistant` for
# the reply it must continue. The model's tokenizer renders the template
# (special tokens included), and your `forward` writes the reply, greedily,
# one token at a time with the cache, until the model writes `<|im_end|>`.
# Qwen3 thinks aloud between `<think>` and `</think>` first unless told
# not to: `enable_thinking=False` gives a short direct answer.

# %% [markdown] lang="ko"
# ## 9. 한국어로 대화하기
#
# 대화 모델은 대화 템플릿으로 적힌 대화를 읽습니다. 각 차례는 `<|im_start|>`와
# `<|im_end|>` 사이에 적고, 마지막에 `<|im_start|>assistant`를 붙여 모델이 이어 쓸
# 답의 자리를 만듭니다. 템플릿은 모델의 토크나이저가 특수 토큰까지 넣어 만들어 주고,
# 답은 여러분의 `forward`가 캐시와 함께 한 토큰씩 탐욕적으로 씁니다. 모델이
# `<|im_end|>`를 쓰면 멈춥니다. Qwen3는 따로 말하지 않으면 먼저 `<think>`와 `</think>`
# 사이에 생각을 적습니다. `enable_thinking=False`로 하면 생각 없이 짧게 바로 답합니다.

# %%
def reply(question: str, max_new_tokens: int = 60) -> str:
    messages = [{"role": "user", "content": question}]
    ids = torch.tensor([tokenizer.encode_chat(messages, enable_thinking=False)], device=device)
    stop = set(loaded.stop_ids) | {tokenizer.token_id("<|im_end|>")}
    new = []
    with torch.no_grad():
        logits, cache = forward(ids, WEIGHTS, CFG)
        for _ in range(max_new_tokens):
            token = int(logits[0, -1].argmax())
            if token in stop:
                break
            new.append(token)
            logits, cache = forward(torch.tensor([[token]], device=device), WEIGHTS, CFG, cache)
    return tokenizer.decode(new)


if not REAL:
    print(TEXT["tiny_chat"])
answer = reply("한국의 수도는 어디인가요? 한 문장으로 답해 주세요.", 60 if REAL else 12)
print(answer if REAL else repr(answer))
