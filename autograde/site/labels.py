"""The site's labels: every Korean and English string the hooks and the
browser widgets put on a page, one entry per language with the same keys.

`{name}` placeholders are filled in by the page's script (course/assets/llm-course/).
"""
from __future__ import annotations

LABELS = {
    "en": {
        "colab": "Open in Colab",
        "download": "Download notebook",
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
        "tok.note": "The same tokenizer as the reference model and the graders (encoding: step 5 of "
                    "{notebook}; the regex pre-split: step 7). Try it in the browser console too: "
                    "llmCourse.encode(\"...\"), llmCourse.decode([...]).",
        "tok.notebook": "notebook 1",
        "tok.error": "The tokenizer could not run: {error}",
        "tok.noscript": "The tokenizer playground needs JavaScript.",
    },
    "ko": {
        "colab": "Colab에서 열기",
        "download": "노트북 내려받기",
        "tok.title": "토크나이저 놀이터",
        "tok.example": "애, 겨울 배가 맛있단다!",
        "tok.input": "토큰으로 나눌 텍스트",
        "tok.special": "<|endoftext|>를 특수 토큰으로 바꾸기 (신뢰하는 코드처럼)",
        "tok.show_ids": "토큰 아래에 id 보이기",
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
        "tok.note": "참고 모델과 채점기가 쓰는 바로 그 토크나이저입니다 (인코딩: {notebook}의 5단계, "
                    "정규식 사전 분할: 7단계). 브라우저 콘솔에서도 써 보세요: "
                    "llmCourse.encode(\"...\"), llmCourse.decode([...]).",
        "tok.notebook": "노트북 1",
        "tok.error": "토크나이저를 실행하지 못했습니다: {error}",
        "tok.noscript": "토크나이저 놀이터는 JavaScript가 있어야 동작합니다.",
    },
}
