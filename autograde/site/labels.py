"""The site's labels: every Korean and English string the hooks and the
browser widgets put on a page, one entry per language with the same keys.

`{name}` placeholders are filled in by the page's script (course/assets/llm-course/),
except `{step_...}`: the build writes there the number of a notebook step, read from
that step's heading in solutions/src/ (NOTEBOOK_STEPS), so a renumbered notebook
renumbers its widgets' notes.
"""
from __future__ import annotations

# placeholder: (notebook, the step's English heading after "# ## N. ")
NOTEBOOK_STEPS = {
    "step_encode": ("01_tokenizer", "Encoding new text"),
    "step_presplit": ("01_tokenizer", "The regex pre-split"),
    "step_mha": ("03_attention", "Multi-head attention with grouped-query heads"),
    "step_heads": ("03_attention", "What does the trained model look at?"),
    "step_temperature": ("05_sampling", "Temperature"),
    "step_draw": ("05_sampling", "Drawing the next token"),
    "step_kv_model": ("07_real_model", "The whole model, with a KV cache"),
    "step_kv_memory": ("07_real_model", "How much memory the cache takes"),
}

LABELS = {
    "en": {
        "colab": "Open in Colab",
        "download": "Download notebook",
        "notebook": "notebook {n}",
        # shared by the model widgets (attention, sampling, generation)
        "model.loading": "Loading the reference model…",
        "model.error": "The model could not run: {error}",
        "model.empty": "Type some text first: the model needs at least one token.",
        "model.cut": "The text is {n} tokens; the model's context window is {window}, so only the last {window} are used.",
        "model.special": "“<|endoftext|>” typed here is ordinary text ({n} tokens), not the special token.",
        "model.invalid": "The text holds {n} broken characters (half of a UTF-16 pair); each is read as "
                         "the replacement character \ufffd.",
        "model.console": "The same model runs behind llmCourse.logits(ids) and llmCourse.generate(ids, {...}) "
                         "in the browser console.",
        # the attention viewer (chapter 3)
        "att.title": "Attention viewer",
        "att.example": "애, 겨울 배가 맛있단다!",
        "att.input": "Sentence",
        "att.layer": "Layer",
        "att.head": "Head",
        "att.query": "Token",
        "att.heat_label": "Attention weights of the chosen layer and head: one row per token, one column per "
                          "earlier token it may read",
        "att.cell": "{query} → {key}: {pct}",
        "att.reads": "Token {n} “{token}” (layer {layer}, head {head}) reads:",
        "att.too_many": "The viewer draws the first {max} of {n} tokens; the rest is cut.",
        "att.note": "The reference model's own attention weights, computed in your browser. {notebook} builds "
                    "this attention step by step (step {step_mha}) and looks at these heads in "
                    "step {step_heads}.",
        "att.noscript": "The attention viewer needs JavaScript.",
        # the next-token and sampling playground (chapter 5)
        "samp.title": "Next-token and sampling playground",
        "samp.example": "The model reads",
        "samp.input": "Prompt",
        "samp.temperature": "Temperature",
        "samp.top_k": "Top-k",
        "samp.top_p": "Top-p",
        "samp.off": "off",
        "samp.table": "The ten most likely next tokens",
        "samp.col_token": "Token",
        "samp.col_before": "Probability (temperature only)",
        "samp.col_after": "After top-k and top-p",
        "samp.cut_mark": "cut",
        "samp.summary": "{kept} of {vocab} tokens are kept; they held {mass} of the probability and are "
                        "renormalized to 100%.",
        "samp.greedy": "Temperature 0 is greedy decoding: the most likely token every time (the sliders do not matter).",
        "samp.cold": "Near temperature 0 almost all probability goes to the top token: sampling is nearly greedy.",
        "samp.top_p_one": "Top-p 1 cuts nothing.",
        "samp.seed": "Seed",
        "samp.max_new": "New tokens",
        "samp.generate": "Generate",
        "samp.bad_seed": "The seed must be a whole number from 0 to 4294967295.",
        "samp.bad_max": "New tokens must be a whole number from 1 to 64.",
        "samp.generated": "Seed {seed}: {n} new tokens. The same seed gives the same text.",
        "samp.note": "The sampler applies temperature, then top-k, then top-p, like {notebook} "
                     "(steps {step_temperature} to {step_draw}). "
                     "Draws use a small seeded generator (mulberry32), so a seed here does not give torch's text; "
                     "greedy decoding gives exactly `course generate --greedy`.",
        "samp.noscript": "The sampling playground needs JavaScript.",
        # generation step by step (chapter 7)
        "gen.title": "Generation step by step",
        "gen.example": "The model reads tokens",
        "gen.input": "Prompt",
        "gen.prefill": "Prefill",
        "gen.step": "Next token",
        "gen.reset": "Start over",
        "gen.table": "The KV cache, per layer (float32)",
        "gen.col_layer": "Layer",
        "gen.col_bytes": "Bytes",
        "gen.total": "All layers",
        "gen.prefilled": "Prefill: {n} tokens in one forward pass ({ms} ms); the cache holds {n} positions.",
        "gen.decoded": "Decode step {step}: one token in, “{token}” out ({ms} ms); the cache holds {n} positions.",
        "gen.full": "The cache holds {window} positions, the model's whole context window; generation stops here.",
        "gen.note": "Decoding is greedy, so the tokens match `course generate --greedy`. {notebook} builds "
                    "the model with a KV cache in step {step_kv_model} and measures its memory in "
                    "step {step_kv_memory}.",
        "gen.noscript": "The generation widget needs JavaScript.",
        # the tokenizer playground (chapter 1)
        "tok.title": "Tokenizer playground",
        "tok.example": "Hello world! It's 2024.",
        "tok.input": "Text to tokenize",
        "tok.special": "Turn <|endoftext|> into the special token, as trusted code would",
        "tok.show_ids": "Show ids under the tokens",
        "tok.tokens": "Tokens",
        "tok.ids": "Ids",
        "tok.stats": "{tokens} tokens · {chars} characters · {bytes} bytes · {bpt} bytes per token",
        "tok.compare": "The chapter's Korean example “{text}”: {tokens} tokens, {bpt} bytes per token.",
        "tok.token_label": "token {n}: {text}, id {id}",
        "tok.bytes_of": "bytes {hex} of “{char}”",
        "tok.special_label": "special token {text}, id {id}",
        "tok.empty": "Type some text to see its tokens.",
        "tok.too_long": "Only the first {max} characters are tokenized here.",
        "tok.special_as_text": "“<|endoftext|>” typed as text is ordinary characters: {n} ordinary tokens, "
                               "never the special id {id}. Tick the box above to see the special token.",
        "tok.note": "The same tokenizer as the reference model and the graders (encoding: step {step_encode} of "
                    "{notebook}; the regex pre-split: step {step_presplit}). Try it in the browser console too: "
                    "llmCourse.encode(\"...\"), llmCourse.decode([...]).",
        "tok.error": "The tokenizer could not run: {error}",
        "tok.noscript": "The tokenizer playground needs JavaScript.",
    },
    "ko": {
        "colab": "Colab에서 열기",
        "download": "노트북 내려받기",
        "notebook": "노트북 {n}",
        "model.loading": "참고 모델을 불러오는 중입니다…",
        "model.error": "모델을 실행하지 못했습니다: {error}",
        "model.empty": "먼저 텍스트를 입력하세요. 모델에는 토큰이 하나 이상 있어야 합니다.",
        "model.cut": "텍스트가 토큰 {n}개입니다. 모델의 컨텍스트 창은 {window}개라서 마지막 {window}개만 씁니다.",
        "model.special": "여기에 입력한 “<|endoftext|>”는 특수 토큰이 아니라 보통 텍스트(토큰 {n}개)입니다.",
        "model.invalid": "텍스트에 깨진 문자(UTF-16 쌍에서 짝이 없는 한쪽)가 {n}개 있습니다. 각각 대체 문자 \ufffd로 읽습니다.",
        "model.console": "브라우저 콘솔의 llmCourse.logits(ids)와 llmCourse.generate(ids, {...}) 뒤에서도 "
                         "같은 모델이 돌아갑니다.",
        "att.title": "어텐션 들여다보기",
        "att.example": "애, 겨울 배가 맛있단다!",
        "att.input": "문장",
        "att.layer": "층",
        "att.head": "헤드",
        "att.query": "토큰",
        "att.heat_label": "고른 층과 헤드의 어텐션 가중치: 행은 토큰, 열은 그 토큰이 읽을 수 있는 앞쪽 토큰",
        "att.cell": "{query} → {key}: {pct}",
        "att.reads": "{n}번째 토큰 “{token}”이(가) 앞쪽 토큰에서 읽어 오는 비율 (층 {layer}, 헤드 {head}):",
        "att.too_many": "토큰 {n}개 가운데 앞의 {max}개만 그립니다. 나머지는 잘립니다.",
        "att.note": "참고 모델의 실제 어텐션 가중치를 브라우저에서 계산한 것입니다. {notebook}에서 이 어텐션을 "
                    "단계별로 만들고({step_mha}단계), {step_heads}단계에서 이 헤드들을 들여다봅니다.",
        "att.noscript": "어텐션 들여다보기는 JavaScript가 있어야 동작합니다.",
        "samp.title": "다음 토큰과 샘플링 놀이터",
        "samp.example": "겨울에는 배가",
        "samp.input": "프롬프트",
        "samp.temperature": "온도",
        "samp.top_k": "top-k",
        "samp.top_p": "top-p",
        "samp.off": "끔",
        "samp.table": "가장 확률이 높은 다음 토큰 10개",
        "samp.col_token": "토큰",
        "samp.col_before": "확률 (온도만 적용)",
        "samp.col_after": "top-k와 top-p 적용 후",
        "samp.cut_mark": "잘림",
        "samp.summary": "어휘 집합의 토큰 {vocab}개 가운데 {kept}개가 남습니다. 남은 토큰은 확률의 {mass}를 "
                        "차지하며, 합이 100%가 되도록 다시 정규화합니다.",
        "samp.greedy": "온도 0은 탐욕적 디코딩입니다. 매번 가장 확률이 높은 토큰을 고릅니다(슬라이더는 상관없습니다).",
        "samp.cold": "온도가 0에 가까우면 확률이 거의 모두 1위 토큰에 몰려서, 샘플링이 탐욕적 디코딩과 거의 같아집니다.",
        "samp.top_p_one": "top-p가 1이면 아무것도 잘리지 않습니다.",
        "samp.seed": "시드",
        "samp.max_new": "새 토큰 수",
        "samp.generate": "생성하기",
        "samp.bad_seed": "시드는 0부터 4294967295까지의 정수여야 합니다.",
        "samp.bad_max": "새 토큰 수는 1부터 64까지의 정수여야 합니다.",
        "samp.generated": "시드 {seed}: 새 토큰 {n}개. 같은 시드는 같은 텍스트를 냅니다.",
        "samp.note": "샘플러는 {notebook}({step_temperature}~{step_draw}단계)처럼 온도, top-k, top-p 순서로 "
                     "적용합니다. 뽑기에는 시드를 받는 "
                     "작은 난수 생성기(mulberry32)를 써서, 같은 시드라도 torch와 같은 텍스트가 나오지는 않습니다. "
                     "탐욕적 디코딩은 `course generate --greedy`와 정확히 같습니다.",
        "samp.noscript": "샘플링 놀이터는 JavaScript가 있어야 동작합니다.",
        "gen.title": "한 단계씩 생성하기",
        "gen.example": "모델은 토큰을",
        "gen.input": "프롬프트",
        "gen.prefill": "프리필",
        "gen.step": "다음 토큰",
        "gen.reset": "처음부터",
        "gen.table": "층별 KV 캐시 (float32)",
        "gen.col_layer": "층",
        "gen.col_bytes": "바이트",
        "gen.total": "모든 층",
        "gen.prefilled": "프리필: 토큰 {n}개를 순전파 한 번에 처리했습니다({ms} ms). 캐시에 위치 {n}개가 있습니다.",
        "gen.decoded": "디코드 단계 {step}: 토큰 하나를 넣어 “{token}”을(를) 얻었습니다({ms} ms). 캐시에 위치 {n}개가 있습니다.",
        "gen.full": "캐시가 모델의 컨텍스트 창 전체인 위치 {window}개를 채웠습니다. 생성은 여기서 멈춥니다.",
        "gen.note": "탐욕적 디코딩이라 토큰이 `course generate --greedy`와 같습니다. "
                    "{notebook}의 {step_kv_model}단계에서 KV 캐시가 있는 모델을 만들고, {step_kv_memory}단계에서 캐시의 메모리를 잽니다.",
        "gen.noscript": "한 단계씩 생성하기는 JavaScript가 있어야 동작합니다.",
        "tok.title": "토크나이저 놀이터",
        "tok.example": "애, 겨울 배가 맛있단다!",
        "tok.input": "토큰으로 나눌 텍스트",
        "tok.special": "<|endoftext|>를 특수 토큰으로 바꾸기 (신뢰할 수 있는 코드가 하듯이)",
        "tok.show_ids": "토큰 아래에 id 표시하기",
        "tok.tokens": "토큰",
        "tok.ids": "id",
        "tok.stats": "토큰 {tokens}개 · 글자 {chars}개 · {bytes}바이트 · 토큰당 {bpt}바이트",
        "tok.compare": "이 장의 영어 예문 “{text}”: 토큰 {tokens}개, 토큰당 {bpt}바이트.",
        "tok.token_label": "{n}번째 토큰: {text}, id {id}",
        "tok.bytes_of": "“{char}”의 바이트 {hex}",
        "tok.special_label": "특수 토큰 {text}, id {id}",
        "tok.empty": "텍스트를 입력하면 토큰이 보입니다.",
        "tok.too_long": "여기서는 앞의 {max}글자만 토큰으로 나눕니다.",
        "tok.special_as_text": "텍스트로 입력한 “<|endoftext|>”는 보통 글자입니다. 보통 토큰 {n}개가 되고, "
                               "특수 id {id}는 나오지 않습니다. 특수 토큰을 보려면 위의 칸을 체크하세요.",
        "tok.note": "참고 모델과 채점기가 쓰는 바로 그 토크나이저입니다 (인코딩: {notebook}의 {step_encode}단계, "
                    "정규식 사전 분할: {step_presplit}단계). 브라우저 콘솔에서도 써 보세요: "
                    "llmCourse.encode(\"...\"), llmCourse.decode([...]).",
        "tok.error": "토크나이저를 실행하지 못했습니다: {error}",
        "tok.noscript": "토크나이저 놀이터는 JavaScript가 있어야 동작합니다.",
    },
}
