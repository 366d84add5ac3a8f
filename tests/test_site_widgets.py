"""The browser widgets (issue 20): window.llmCourse's tokenizer gives the same
ids as autograde/reference/tokenizer.py and its model (model.js) the same
logits, attention weights, KV cache and greedy text as autograde/reference/;
chapter 1's tokenizer playground and the model widgets of chapters 3, 5 and 6
work over http and from file://, in both languages, on a phone and a wide
screen, with no console error and nothing fetched from another host.

The site, browser and server fixtures come from tests/test_site.py. Screenshots
of every widget (390 and 1280 px, English light and Korean dark) and the
measured times (timings.json) are written to .widget-screenshots/ (git-ignored,
printed with -s), never committed.
"""
from __future__ import annotations

import contextlib
import json
import random
import re
import time

import pytest

from autograde.reference.tokenizer import ENDOFTEXT, BPETokenizer
from autograde.site.labels import LABELS
from autograde.site.widgets import MAX_CHARS
from test_site import LANGS, ROOT, browser, reader_browser, server, site  # noqa: F401  (fixtures)
from test_site_offline import PHONE, console_errors, settle

CHAPTER = "chapters/01-tokens.html"
TOKENIZER = ROOT / "autograde" / "data" / "reference" / "tokenizer.json"


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.load(TOKENIZER)


# ----------------------------------------------------------------------------
# the strings both tokenizers must agree on

FIXED = [
    "", " ", "Hello world! It's 2024.", "애, 겨울 배가 맛있단다!", " 갔습니다", "학교에서 문장에서 먹었습니다",
    "strawberry", " strawberry", "모델은 토큰을 읽습니다.", "한국 AI", "12345", "3.14159 + 2,718 = 5.86",
    "." * 37, "...!!!???", "hi <|endoftext|>", "<|endoftext|>", "a<|endoftext|>b<|endoftext|>",
    "<|endoftext", "|endoftext|>", "<|endoftext|><|endoftext|>", "😀", "👩‍👩‍👧‍👦 family", "🇰🇷🇺🇸", "naïve café",
    "I'm, you're, he'll, we've, she'd, IT'S, They'RE, ſ's", "'s", "'ſ", "\n", "\n\n\n", "a\r\nb", "  leading",
    "trailing   ", "tab\there", "\t\t\n  \n", "nbsp\u00a0here", "nel\u0085line", "bom\ufeffhere", "zwsp\u200bhere",
    "ideographic\u3000space", "line\u2028sep", "x\u000by\u000cz", "한글English섞어서123", "漢字とかな、カタカナ",
    "Привет, мир!", "مرحبا بالعالم", "नमस्ते दुनिया", "e\u0301 combining", "ㄱㄴㄷ ㅏㅑ 자모", "Ⅻ ½ ² ٣ 〇",
    "def f(x):\n    return x ** 2  # 제곱", "https://example.com/a?b=c&d=e", "$$\\sum_i x_i$$", "   \n\t x",
]
POOLS = [
    "가나다라마바사아자차카타파하한국어모델토큰의은는이가을를에서까지습니다갔겠밟뷁",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789", ".,;:!?'\"()[]{}<>|/\\-_=+*&^%$#@~`",
    " \t\n\r\u00a0\u0085\u3000\u2028", "😀🎉👍🏽❤️🇰🇷✨🤖", "ſéüßçñøÅ漢字かなカナ",
]


def test_strings() -> list[str]:
    """At least 300 strings: the fixed ones, seeded mixes of the pools, and a
    few strings of random code points."""
    rng = random.Random(20)
    out = list(FIXED)
    while len(out) < 280:
        n = rng.randint(1, 40)
        pools = rng.sample(POOLS, rng.randint(1, 4))
        text = "".join(rng.choice(rng.choice(pools)) for _ in range(n))
        if rng.random() < 0.1:
            text = text[: n // 2] + ENDOFTEXT + text[n // 2:]
        out.append(text)
    while len(out) < 320:
        cps = [rng.choice([rng.randint(0x20, 0x2FFF), rng.randint(0xAC00, 0xD7A3), rng.randint(0xE000, 0x10FFFF)])
               for _ in range(rng.randint(1, 12))]
        out.append("".join(map(chr, cps)))
    return out


test_strings.__test__ = False   # a helper, not a test


def python_results(tok: BPETokenizer, strings: list[str]) -> list[dict]:
    rows = []
    for s in strings:
        try:
            encoded = tok.encode(s)
        except Exception:
            encoded = None   # special-token text: refused
        rows.append({"all": tok.encode(s, allowed_special="all"), "ordinary": tok.encode_ordinary(s),
                     "plain": encoded})
    return rows


BROWSER_RUN = """
const [strings, idLists] = arguments;
const api = window.llmCourse, tok = api.tokenizer;
const rows = strings.map(s => {
  let plain;
  try { plain = api.encode(s); } catch (e) { plain = e.name === 'TokenizerError' ? null : 'wrong error: ' + e; }
  const ordinary = api.encodeOrdinary(s);
  return {all: api.encode(s, {allowedSpecial: 'all'}), ordinary, plain, back: api.decode(ordinary)};
});
return {rows, decoded: idLists.map(ids => api.decode(ids)), vocab: tok.vocabSize};
"""


@pytest.mark.browser
def test_browser_tokenizer_equals_python(browser, server, site, tok):
    """One page load, one call: the ids of 320 strings, decode round trips, and
    decode of random id lists (half characters become U+FFFD the same way)."""
    strings = test_strings()
    assert len(strings) >= 300
    rng = random.Random(7)
    id_lists = [[rng.randrange(tok.vocab_size) for _ in range(rng.randint(1, 8))] for _ in range(60)]
    id_lists += [[237], [237, 149], [149, 156], [237, 149, 156, 237], [tok.special_tokens[ENDOFTEXT]]]

    browser.get(f"{server}/en/{CHAPTER}")
    settle(browser)
    got = browser.execute_script(BROWSER_RUN, strings, id_lists)
    want = python_results(tok, strings)
    assert got["vocab"] == tok.vocab_size
    for s, g, w in zip(strings, got["rows"], want):
        assert (g["all"], g["ordinary"], g["plain"]) == (w["all"], w["ordinary"], w["plain"]), repr(s)
        assert g["back"] == s, repr(s)
    assert got["decoded"] == [tok.decode(ids) for ids in id_lists]
    assert sum(w["plain"] is None for w in want) >= 10   # the refusal was exercised
    assert console_errors(browser) == []


# ----------------------------------------------------------------------------
# the playground on the page

PAGE_STATE = """
const root = document.querySelector('.llmc-tokenizer');
const base = location.href.slice(0, location.href.indexOf('/' + arguments[0] + '/'));
return {
  ready: root.classList.contains('llmc-ready'), readyMs: Number(root.dataset.readyMs),
  input: root.querySelector('.llmc-input').value,
  tokens: [...root.querySelectorAll('.llmc-tok')].map(t => ({label: t.getAttribute('aria-label'),
           text: t.querySelector('.llmc-tok-text').textContent, tab: t.tabIndex,
           special: t.classList.contains('llmc-tok-special'), bytes: t.classList.contains('llmc-tok-bytes')})),
  ids: root.querySelector('.llmc-ids code').textContent,
  stats: root.querySelector('.llmc-stats').textContent,
  message: root.querySelector('.llmc-message').hidden ? '' : root.querySelector('.llmc-message').textContent,
  compare: root.querySelector('.llmc-compare').textContent,
  note: root.querySelector('.llmc-note a').getAttribute('href'),
  foreign: performance.getEntriesByType('resource').map(r => r.name).filter(u => !u.startsWith(base)),
  apiIds: window.llmCourse.encodeOrdinary(root.querySelector('.llmc-input').value),
};
"""
EXAMPLE = {"en": "Hello world! It's 2024.", "ko": "애, 겨울 배가 맛있단다!"}


def open_playground(drv, url: str, lang: str, wait_for_page: bool = True) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url)
    if wait_for_page:   # math and diagrams too, so that their console errors count
        settle(drv)
    WebDriverWait(drv, 30).until(lambda d: d.execute_script(
        "const r = document.querySelector('.llmc-tokenizer'); return r && r.classList.contains('llmc-ready')"))
    return drv.execute_script(PAGE_STATE, lang)


def type_text(drv, text: str, replace: bool = True) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.CSS_SELECTOR, ".llmc-input")
    if replace:
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
    drv.execute_script("arguments[0].setRangeText(arguments[1], arguments[0].value.length, arguments[0].value.length, 'end');"
                       "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", box, text)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "file"])
def test_playground_shows_the_tokens_of_the_chapter_example(browser, reader_browser, server, site, tok, scheme):
    """The chapter's example, its ids (also through window.llmCourse), count,
    bytes and the other language's example; ids for keyboard and screen reader;
    nothing fetched from another host; over http also typing (check_typing).
    From file:// in Chromium as a reader runs it (no file-access flag)."""
    base = server if scheme == "http" else site.as_uri()
    browser = browser if scheme == "http" else reader_browser
    console_errors(browser)
    for lang in LANGS:
        other = "ko" if lang == "en" else "en"
        state = open_playground(browser, f"{base}/{lang}/{CHAPTER}", lang)
        ids = tok.encode_ordinary(EXAMPLE[lang])
        assert state["input"] == EXAMPLE[lang]
        assert state["apiIds"] == ids
        assert json.loads(state["ids"]) == ids
        assert [t["text"].replace("\u00b7", " ") for t in state["tokens"] if not t["bytes"]] == \
            [tok.decode([i]) for i in ids if tok.decode([i]) == tok.decode_bytes([i]).decode("utf-8", "ignore")]
        assert all(t["tab"] == 0 and str(i) in t["label"] for t, i in zip(state["tokens"], ids))
        n_bytes = len(EXAMPLE[lang].encode("utf-8"))
        assert f"{len(ids)}" in state["stats"] and f"{n_bytes}" in state["stats"]
        other_ids = tok.encode_ordinary(EXAMPLE[other])
        assert EXAMPLE[other] in state["compare"] and str(len(other_ids)) in state["compare"]
        assert state["note"] == "../notebooks/01_tokenizer.html"
        assert state["message"] == "" and state["foreign"] == []
        print(f"{scheme} {lang}: playground ready {state['readyMs']} ms after navigation start")
        if scheme == "http":
            check_typing(browser, tok, lang)
    assert console_errors(browser) == []


def check_typing(browser, tok, lang: str) -> None:
    """Typed special-token text stays ordinary (and says so) until the box is
    ticked; half characters show their bytes and name the character; empty text
    gets a message."""
    from selenium.webdriver.common.by import By

    text = " 갔습니다 😀 <|endoftext|>"
    type_text(browser, text)
    state = browser.execute_script(PAGE_STATE, lang)
    assert json.loads(state["ids"]) == tok.encode_ordinary(text)
    assert "2047" in state["message"] and not any(t["special"] for t in state["tokens"])
    parts = [t for t in state["tokens"] if t["bytes"]]
    assert parts and any("갔" in t["label"] for t in parts) and any("😀" in t["label"] for t in parts)
    assert all(len(h) == 2 for t in parts for h in t["text"].split())   # shown as hex bytes

    browser.find_element(By.CSS_SELECTOR, ".llmc-special").click()
    state = browser.execute_script(PAGE_STATE, lang)
    assert json.loads(state["ids"]) == tok.encode(text, allowed_special="all")
    assert [t["text"] for t in state["tokens"] if t["special"]] == [ENDOFTEXT] and state["message"] == ""
    assert any("2047" in t["label"] for t in state["tokens"] if t["special"])
    browser.find_element(By.CSS_SELECTOR, ".llmc-special").click()

    type_text(browser, "")
    state = browser.execute_script(PAGE_STATE, lang)
    assert state["tokens"] == [] and state["message"]

    long_text = "가나 다 " * (MAX_CHARS // 5 + 1)   # too long: says what is cut
    type_text(browser, long_text)
    state = browser.execute_script(PAGE_STATE, lang)
    assert str(MAX_CHARS) in state["message"] and json.loads(state["ids"]) == tok.encode(long_text[:MAX_CHARS])


FIT = """
const root = document.querySelector('.llmc-tokenizer'), box = root.getBoundingClientRect();
const texts = [...root.querySelectorAll('*')].filter(e => e.childNodes.length && [...e.childNodes].some(
  n => n.nodeType === 3 && n.textContent.trim()) && e.checkVisibility());
return {scroll: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth,
        right: box.right, minFont: Math.min(...texts.map(e => parseFloat(getComputedStyle(e).fontSize)))};
"""


@pytest.mark.browser
@pytest.mark.slow
def test_playground_fits_a_phone_and_screenshots(browser, server):
    """At 390 px the playground, even with a long unbroken text and ids shown,
    does not widen the page and its text is at least 12 px. Screenshots at 390
    and 1280 px in each language (English light, Korean dark), for a person to look at."""
    from selenium.webdriver.common.by import By

    shots = SHOTS
    shots.mkdir(exist_ok=True)
    sample = {"en": " The model reads tokens, not letters 😀 12345", "ko": " 모델은 글자가 아니라 토큰을 읽습니다 😀 12345"}

    def shoot(name: str) -> None:
        root = browser.find_element(By.CSS_SELECTOR, ".llmc-tokenizer")
        # scrolling down from the top: below the sticky header, no "back to top" button
        browser.execute_script("window.scrollTo(0, 0);"
                               "window.scrollTo(0, arguments[0].getBoundingClientRect().top - 90)", root)
        root.screenshot(str(shots / f"tokenizer-{name}.png"))

    def width(px: int) -> None:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {**PHONE, "width": px, "height": 1200, "mobile": px < 600, "deviceScaleFactor": 1})

    try:
        for lang in LANGS:
            width(390)
            if lang == "ko":   # Korean in the dark scheme, English in the light one
                browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
                browser.get(f"{server}/{lang}/{CHAPTER}")
                browser.execute_script("localStorage.clear()")   # Material keeps the last palette there
            open_playground(browser, f"{server}/{lang}/{CHAPTER}", lang, wait_for_page=False)
            scheme = browser.execute_script("return document.body.getAttribute('data-md-color-scheme')")
            assert scheme == ("slate" if lang == "ko" else "default")
            type_text(browser, sample[lang], replace=False)
            browser.find_element(By.CSS_SELECTOR, ".llmc-show-ids").click()
            shoot(f"{lang}-390-{scheme}")
            width(1280)
            shoot(f"{lang}-1280-{scheme}")
            width(390)
            type_text(browser, "https://example.com/" + "a" * 300 + " " + "가" * 200, replace=False)
            fit = browser.execute_script(FIT)
            assert fit["scroll"] <= fit["viewport"] and fit["right"] <= fit["viewport"] + 0.5, (lang, fit)
            assert fit["minFont"] >= 12, (lang, fit)
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    print(f"screenshots: {shots}")


# ----------------------------------------------------------------------------
# Python side: the export and the pattern translation


def test_site_ships_the_reference_tokenizer(site):
    from autograde.site.widgets import tokenizer_js

    for lang in LANGS:
        shipped = (site / lang / "assets" / "llm-course" / "tokenizer-data.js").read_text(encoding="utf-8")
        assert shipped == tokenizer_js()
    chapter = (site / "ko" / CHAPTER).read_text(encoding="utf-8")
    assert 'src="../assets/llm-course/tokenizer-data.js"' in chapter and "토크나이저 놀이터" in chapter
    other = (site / "en" / "chapters" / "02-embeddings.html").read_text(encoding="utf-8")
    assert "tokenizer-data.js" not in other   # data loads only where a widget is


def test_site_ships_the_reference_model_only_where_a_model_widget_is(site):
    """model-<hash>.js is the export of the committed checkpoint; the pages with
    a model widget load it (once), chapter 1's tokenizer page and the others do not."""
    from autograde.site.widgets import model_data_path, model_js

    name = model_data_path()
    for lang in LANGS:
        assert (site / lang / name).read_text(encoding="utf-8") == model_js()
        assert [p.name for p in (site / lang / "assets" / "llm-course").iterdir()
                if re.fullmatch(r"model-[0-9a-f]{12}\.js", p.name)] == [name.split("/")[-1]]   # no stale copy
        for page in MODEL_PAGES.values():
            assert (site / lang / page).read_text(encoding="utf-8").count(f'src="../{name}"') == 1
        for page in (CHAPTER, "chapters/02-embeddings.html", "index.html"):
            assert name.split("/")[-1] not in (site / lang / page).read_text(encoding="utf-8"), page


def test_model_export_follows_the_checkpoint(tmp_path):
    """Another checkpoint is another file name and its own weights, bit for bit;
    an architecture model.js does not implement is refused by name."""
    import base64

    import numpy as np
    import torch

    from autograde.errors import CourseError
    from autograde.reference.checkpoint import save_checkpoint
    from autograde.reference.model import ModelConfig, Transformer
    from autograde.site.widgets import model_data, model_data_path, model_js

    tok = BPETokenizer.load(TOKENIZER)
    small = Transformer(ModelConfig.llama_style(vocab_size=tok.vocab_size, d_model=16, n_layer=1, n_head=2,
                                                n_kv_head=1, d_ff=24, max_seq_len=16, tie_embeddings=True))
    save_checkpoint(small, tok, tmp_path / "small")
    assert model_data_path(tmp_path / "small") != model_data_path()
    data = model_data(tmp_path / "small")
    weights = np.frombuffer(base64.b64decode(data["weights"]), dtype="<f4")
    for t in data["tensors"]:
        n = int(np.prod(t["shape"]))
        got = torch.from_numpy(weights[t["offset"]:t["offset"] + n].copy()).view(t["shape"])
        assert torch.equal(got, small.state_dict()[t["name"]]), t["name"]
    assert data["config"]["d_model"] == 16
    before, name = model_js(tmp_path / "small"), model_data_path(tmp_path / "small")
    small.reset_parameters(seed=1)                        # retrained, same directory
    save_checkpoint(small, tok, tmp_path / "small")
    assert model_data_path(tmp_path / "small") != name and model_js(tmp_path / "small") != before
    gpt2 = Transformer(ModelConfig.gpt2_style(vocab_size=tok.vocab_size, d_model=16, n_layer=1, n_head=2,
                                              n_kv_head=2, d_ff=24, max_seq_len=16))
    save_checkpoint(gpt2, tok, tmp_path / "gpt2")
    with pytest.raises(CourseError, match="position"):
        model_data(tmp_path / "gpt2")
    with pytest.raises(CourseError, match="train-reference"):
        model_data_path(tmp_path / "missing")


def test_export_follows_the_checkpoint(tmp_path):
    """A retrained tokenizer is what the page gets: the export is made from the file."""
    from autograde.site.widgets import tokenizer_data, tokenizer_js

    small = BPETokenizer.train("hello hello world 안녕 안녕", vocab_size=262)
    small.save(tmp_path / "tokenizer.json")
    data = json.loads(tokenizer_js(tmp_path / "tokenizer.json").split(".tokenizer = ", 1)[1].rstrip().rstrip(";"))
    assert data == tokenizer_data(small)
    assert len(data["merges"]) == 3 * len(small.merges) and data["special_tokens"] == {ENDOFTEXT: 261}


def test_pattern_translation_spells_out_pythons_classes():
    from autograde.errors import CourseError
    from autograde.site.widgets import js_pattern

    js = js_pattern(r"\s+")
    assert "\\u{85}" in js and "\\u{FEFF}" not in js     # Python's \s, not JavaScript's
    assert js_pattern(r"(?i:s)") == "(?:[\\u{53}\\u{73}\\u{17F}])"   # s, S and the long s
    assert js_pattern(r"a?+b++") == "a?b+"
    for bad in (r"\d+", r"(a)", r"[a", r"\w"):
        with pytest.raises(CourseError):
            js_pattern(bad)


def test_labels_exist_in_both_languages():
    from autograde.site.labels import LABELS

    assert LABELS["en"].keys() == LABELS["ko"].keys()
    assert all(LABELS["ko"][k] != LABELS["en"][k] for k in LABELS["en"]
               if k not in ("tok.example", "att.example", "att.cell")), "an untranslated label"


def test_widget_notes_quote_the_notebooks_step_numbers(monkeypatch):
    """A widget's note names notebook steps by number; the numbers come from
    the steps' headings in solutions/src/, both languages get the same ones,
    and a heading that is renamed away fails the build by name."""
    from autograde.errors import CourseError
    from autograde.site import labels, widgets

    for prefix, notebook in (("tok", "01_tokenizer"), ("att", "03_attention"), ("samp", "05_sampling"),
                             ("gen", "07_real_model")):
        notes = {lang: widgets._labels(prefix, lang, notebook)["note"] for lang in LANGS}
        assert "{step_" not in notes["en"] + notes["ko"]
        assert re.findall(r"\d+", notes["en"]) == re.findall(r"\d+", notes["ko"]), notes
    source = (ROOT / "solutions" / "src" / "03_attention.py").read_text(encoding="utf-8")
    assert "# ## 6. Multi-head attention with grouped-query heads" in source
    assert "(step 6)" in widgets._labels("att", "en", "03_attention")["note"]
    assert "(6단계)" in widgets._labels("att", "ko", "03_attention")["note"]

    monkeypatch.setitem(labels.NOTEBOOK_STEPS, "step_mha", ("03_attention", "Multi-head attention, renamed"))
    with pytest.raises(CourseError, match="has no step heading '# ## N. Multi-head attention, renamed'"):
        widgets._labels("att", "en", "03_attention")
    with pytest.raises(CourseError, match="names a step of 01_tokenizer, but the widget's page links to 02_embeddings"):
        widgets._labels("tok", "en", "02_embeddings")


# ----------------------------------------------------------------------------
# the model in the browser (model.js) and its widgets (chapters 3, 5 and 6)

MODEL_PAGES = {"attention": "chapters/03-attention.html", "sampling": "chapters/05-sampling.html",
               "generation": "chapters/07-token-journey.html"}
# screenshots and timings of a test run, for a person to look at (git-ignored)
SHOTS = ROOT / ".widget-screenshots"
PROMPTS = [
    "애, 겨울 배가 맛있단다!", "The model reads", "Hello world! It's 2024.", "모델은 토큰을", "a", " ", "배",
    "학교에서 문장에서 먹었습니다", "The reference model is small enough to run in a browser.", "한국 AI 모델",
    "겨울에는 배가", "Attention is a soft lookup: 쿼리, 키, 값", "12345 + 678 = ", "😀 emoji 이모지",
    "def f(x):\n    return x", "\n\n", "Once upon a time", "그래서 우리는", "strawberry has three r",
    "혼합 mixed 텍스트 text 123", "<|endoftext|> as text", "가나다라마바사" * 5,
    "The model reads tokens, not letters. " * 6,            # about 60 tokens
]
# past the model's window (128 tokens) and the attention viewer's 32, and one unbroken run for the phone
LONG = "https://example.com/" + "a" * 300 + " " + "가" * 200
GREEDY = [("The model reads", 24), ("겨울에는 배가", 24), ("The model reads tokens, not letters. " * 15, 8)]

MODEL_RUN = """
const [prompts, greedy, attentionText] = arguments;
const api = window.llmCourse;
const logits = prompts.map(p => api.logits(api.encodeOrdinary(p)));
const continued = greedy.map(([p, n]) => api.decode(api.generate(api.encodeOrdinary(p), {greedy: true, maxNewTokens: n})));
const ids = api.encodeOrdinary(prompts[0]);
const opts = {maxNewTokens: 12, temperature: 0.9, topK: 40, topP: 0.95};
const seeded = [api.generate(ids, {...opts, seed: 7}), api.generate(ids, {...opts, seed: 7}),
                api.generate(ids, {...opts, seed: 8})];
const refusals = [() => api.generate(ids, {seed: -1}), () => api.generate(ids, {temperature: 0}),
                  () => api.generate(ids, {topP: 1.5}), () => api.generate([], {}), () => api.logits([api.model.V])]
  .map(f => { try { f(); return null; } catch (e) { return e.name; } });
const attention = api.model.forward(api.encodeOrdinary(attentionText), {record: true}).attention
  .map(layer => layer.map(head => Array.from(head)));
const everyPosition = Array.from(api.model.forward(api.encodeOrdinary(attentionText), {allLogits: true}).logits);
const gen = api.Generator(api.encodeOrdinary(attentionText), {greedy: true});
gen.step(); gen.step(); gen.step();
// the tiled matrix product on shapes the model never has (rows and columns not multiples of 4)
const shapes = [[1, 3, 1], [5, 7, 6], [4, 9, 4], [7, 2, 9], [8, 16, 13]];
const products = shapes.map(([T, I, O]) => {
  const x = Array.from({length: T * I}, (_, n) => Math.fround(Math.sin(n + 1)));
  const wt = Array.from({length: O * I}, (_, n) => Math.fround(Math.cos(3 * n + 2)));
  return {T, I, O, x, wt, out: Array.from(api.matmul(Float32Array.from(x), Float32Array.from(wt), T, I, O))};
});
// a 64-token forward pass: warm up, then the median of 5
const ids64 = api.encodeOrdinary("The model reads tokens, not letters. 모델은 글자가 아니라 토큰을 읽습니다. ".repeat(6)).slice(0, 64);
api.logits(ids64);
const times = [];
for (let i = 0; i < 5; i++) { const t0 = performance.now(); api.logits(ids64); times.push(performance.now() - t0); }
times.sort((a, b) => a - b);
return {products, logits, continued, seeded, refusals, attention, everyPosition, cache: {length: gen.cache.length, bytes: gen.cache.nbytes()},
        n64: ids64.length, ms64: times[2], sha: api.model.sha256};
"""


RECORDED: dict = {}   # this run's figures


def record_timing(name: str, value) -> None:
    """Keep a measured figure of this run in .widget-screenshots/timings.json (and print it)."""
    SHOTS.mkdir(exist_ok=True)
    RECORDED[name] = value
    (SHOTS / "timings.json").write_text(json.dumps(RECORDED, indent=2, ensure_ascii=False) + "\n")
    print(f"{name}: {value}")


@contextlib.contextmanager
def one_torch_thread():
    """torch's own thread pool on a shared 2-core machine spins against the
    browser: a 24-token generation takes 5 s instead of 0.4 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference():
    from autograde.reference.checkpoint import load_reference

    return load_reference()


@pytest.mark.browser
def test_browser_model_equals_python(browser, server, site, reference, capsys):
    """One page load, one call: the last position's logits of 23 prompts within
    1e-4 of the Python model; greedy text equal to `course generate --greedy`
    (cli.main in-process, a prompt past the window included); the same seed
    the same text; bad arguments refused with ModelError; the attention weights
    and the KV cache's size equal Python's. Measures a 64-token forward pass."""
    from autograde.site.widgets import checkpoint_hash

    browser.get(f"{server}/en/{MODEL_PAGES['sampling']}")
    browser.execute_async_script("window.llmCourse.ready.then(() => arguments[arguments.length - 1]())")
    text = EXAMPLE["ko"]
    got = browser.execute_script(MODEL_RUN, PROMPTS, GREEDY, text)
    assert got["sha"] == checkpoint_hash()
    tok, model = reference.tokenizer, reference.model
    with one_torch_thread():
        check_model_against_python(got, tok, model, text, capsys)
    with capsys.disabled():
        print()
        record_timing("logits_max_abs_difference", got["worst"])
        record_timing(f"forward_{got['n64']}_tokens_ms (http, median of 5)", round(got["ms64"], 1))
    assert got["n64"] == 64
    assert console_errors(browser) == []


def check_model_against_python(got: dict, tok, model, text: str, capsys) -> None:
    import torch

    from autograde import cli
    from autograde.reference.functional import KVCache
    from autograde.reference.sampling import generate

    for case in got["products"]:        # the matmul's edge tiles against float64
        T, I, O = case["T"], case["I"], case["O"]
        x = torch.tensor(case["x"], dtype=torch.float64).reshape(T, I)
        w = torch.tensor(case["wt"], dtype=torch.float64).reshape(O, I).T
        want = (x @ w).float().flatten()
        assert torch.allclose(torch.tensor(case["out"], dtype=torch.float32), want, rtol=1e-6, atol=1e-7), (T, I, O)
    worst = 0.0
    with torch.no_grad():
        for prompt, logits in zip(PROMPTS, got["logits"]):
            want = model(torch.tensor([tok.encode_ordinary(prompt)]))[0, -1]
            assert len(logits) == want.shape[0]
            worst = max(worst, float((torch.tensor(logits) - want).abs().max()))
    assert worst < 1e-4
    (prompt, n), text_out = GREEDY[0], got["continued"][0]      # the command itself, in-process
    capsys.readouterr()
    assert cli.main(["generate", prompt, "--greedy", "--max-new-tokens", str(n)]) == 0
    assert capsys.readouterr().out == prompt + text_out + "\n"
    for (prompt, n), text_out in zip(GREEDY[1:], got["continued"][1:]):   # the function it calls
        assert tok.decode(generate(model, tok.encode(prompt), n, greedy=True)) == text_out
    a, b, c = got["seeded"]
    assert a == b and a != c and len(a) == 12
    assert got["refusals"] == ["ModelError"] * 5

    ids = tok.encode_ordinary(text)
    for block in model.blocks:
        block.attn.keep_weights = True
    try:
        with torch.no_grad():
            every = model(torch.tensor([ids]))[0]                          # (T, V): every position's logits
        assert torch.allclose(torch.tensor(got["everyPosition"]).view(every.shape), every, atol=1e-4)
        want = [block.attn.last_weights[0] for block in model.blocks]       # (H, T, T) per layer
    finally:
        for block in model.blocks:
            block.attn.keep_weights = False
    for layer, heads in enumerate(got["attention"]):
        for h, flat in enumerate(heads):
            assert torch.allclose(torch.tensor(flat).view(len(ids), len(ids)), want[layer][h], atol=1e-5)
    cache = KVCache(model.cfg.n_layer)
    with torch.no_grad():
        model(torch.tensor([ids]), cache=cache)                          # prefill
        model(torch.tensor([[0]]), cache=cache)                          # two decode steps
        model(torch.tensor([[0]]), cache=cache)
    assert got["cache"] == {"length": cache.length, "bytes": cache.nbytes()}
    got["worst"] = worst


WIDGET_STATE = """
const root = document.querySelector('.llmc-' + arguments[0]);
const base = location.href.slice(0, location.href.indexOf('/' + arguments[1] + '/'));
const msg = root.querySelector('.llmc-message');
return {
  ready: root.classList.contains('llmc-ready'), readyMs: Number(root.dataset.readyMs),
  message: msg.hidden ? '' : msg.textContent,
  note: root.querySelector('.llmc-note a').getAttribute('href'),
  foreign: performance.getEntriesByType('resource').map(r => r.name).filter(u => !u.startsWith(base)),
  scripts: [...document.scripts].map(s => s.getAttribute('src')).filter(s => s && s.includes('llm-course/model')),
  // attention
  cells: [...root.querySelectorAll('.llmc-heat-cell:not(.llmc-heat-masked)')].length,
  query: root.querySelector('.llmc-query') && root.querySelector('.llmc-query').value,
  reads: [...root.querySelectorAll('.llmc-read-pct')].map(e => e.textContent),
  // sampling
  rows: [...root.querySelectorAll('.llmc-dist tbody tr')].map(r => ({token: r.cells[0].textContent,
         cut: r.classList.contains('llmc-cut'), after: r.cells[2].textContent})),
  summary: root.querySelector('.llmc-summary') && root.querySelector('.llmc-summary').textContent,
  generated: root.dataset.generated ? JSON.parse(root.dataset.generated) : null,
  // generation
  ids: root.dataset.ids ? JSON.parse(root.dataset.ids) : null,
  cache: root.dataset.cache ? JSON.parse(root.dataset.cache) : null,
  status: root.querySelector('.llmc-status') && root.querySelector('.llmc-status').textContent,
  stepDisabled: root.querySelector('.llmc-step') ? root.querySelector('.llmc-step').disabled : null,
};
"""


def open_widget(drv, url: str, kind: str, lang: str) -> dict:
    drv.get(url)
    settle(drv)
    return widget_state(drv, kind, lang)


def widget_state(drv, kind: str, lang: str) -> dict:
    """The widget's state once it is ready and no redraw or generation is pending."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 30).until(lambda d: d.execute_script(
        "const r = document.querySelector('.llmc-' + arguments[0]);"
        "return r && r.classList.contains('llmc-ready') && !r.hasAttribute('data-busy')", kind))
    return drv.execute_script(WIDGET_STATE, kind, lang)


def set_text(drv, kind: str, text: str) -> None:
    drv.execute_script("const box = document.querySelector('.llmc-' + arguments[0] + ' .llmc-input');"
                       "box.value = arguments[1]; box.dispatchEvent(new Event('input', {bubbles: true}))", kind, text)


def set_slider(drv, name: str, value) -> None:
    drv.execute_script("const s = document.querySelector('.llmc-' + arguments[0]); s.value = arguments[1];"
                       "s.dispatchEvent(new Event('input', {bubbles: true}))", name, str(value))


def click(drv, selector: str) -> None:
    """A click through the DOM: at 390 px Material's sticky header may cover the button."""
    drv.execute_script("document.querySelector(arguments[0]).click()", selector)


def filled(label: str, text: str) -> dict | None:
    """The values a page filled into `label`'s {placeholders} to make `text` (None: not that label)."""
    names = re.findall(r"\{(\w+)\}", label)
    pattern = re.escape(label)
    for name in names:
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>.+?)", 1)
    match = re.fullmatch(pattern, text)
    return match and {k: filled.ANY if k == "mass" else v for k, v in match.groupdict().items()}


filled.ANY = "any"


def check_attention(drv, lang: str, state: dict, tok, labels: dict) -> None:
    """The 배 sentence: its 배 token is the chosen one, the heat map has one cell
    per (token, earlier token); bad input gets messages."""
    from autograde.site.widgets import MAX_VIEW_TOKENS

    ids = tok.encode_ordinary(EXAMPLE["ko"])
    assert state["cells"] == len(ids) * (len(ids) + 1) // 2
    assert "배" in tok.decode([ids[int(state["query"])]]) and state["reads"]
    set_text(drv, "attention", "")
    state = widget_state(drv, "attention", lang)
    assert state["message"] == labels["model.empty"] and state["cells"] == 0
    drv.execute_script("const box = document.querySelector('.llmc-attention .llmc-input');"
                       "box.value = '\\uD83D 배 \\uDE00'; box.dispatchEvent(new Event('input', {bubbles: true}))")
    state = widget_state(drv, "attention", lang)
    n = len(tok.encode_ordinary("\ufffd 배 \ufffd"))           # what the browser reads: U+FFFD twice
    assert state["message"] == labels["model.invalid"].format(n=2) and state["cells"] == n * (n + 1) // 2
    set_text(drv, "attention", LONG + " <|endoftext|>")
    state = widget_state(drv, "attention", lang)
    assert str(MAX_VIEW_TOKENS) in state["message"] and "<|endoftext|>" in state["message"]
    assert state["cells"] == MAX_VIEW_TOKENS * (MAX_VIEW_TOKENS + 1) // 2


def check_sampling(drv, lang: str, state: dict, tok, labels: dict) -> None:
    """Ten rows; top-k 5 cuts the rest; temperature 0 (by keyboard) is greedy and
    near 0 says so; top-p 1 says it cuts nothing; the same seed gives the same
    text as llmCourse.generate; bad seeds, empty and over-window prompts get messages."""
    from selenium.webdriver.common.keys import Keys

    assert len(state["rows"]) == 10 and not any(r["cut"] for r in state["rows"])
    assert labels["samp.top_p_one"] in state["message"]
    set_slider(drv, "top_k", 5)
    state = widget_state(drv, "sampling", lang)
    assert [r["cut"] for r in state["rows"]] == [False] * 5 + [True] * 5
    assert filled(labels["samp.summary"], state["summary"]) == {"kept": "5", "vocab": "2,048", "mass": filled.ANY}
    assert all(r["after"] == labels["samp.cut_mark"] for r in state["rows"][5:]), state["rows"]
    set_slider(drv, "top_p", 0.5)
    set_slider(drv, "temperature", 0.05)
    state = widget_state(drv, "sampling", lang)
    assert labels["samp.cold"] in state["message"] and labels["samp.top_p_one"] not in state["message"]
    drv.find_element("css selector", ".llmc-temperature").send_keys(Keys.HOME)   # keyboard: temperature 0
    state = widget_state(drv, "sampling", lang)
    assert labels["samp.greedy"] in state["message"] and sum(not r["cut"] for r in state["rows"]) == 1
    set_slider(drv, "temperature", 0.8)
    drv.execute_script("document.querySelector('.llmc-seed').value = '11';"
                       "document.querySelector('.llmc-max-new').value = '8'")
    click(drv, ".llmc-generate")
    first = widget_state(drv, "sampling", lang)["generated"]
    click(drv, ".llmc-generate")
    again = widget_state(drv, "sampling", lang)["generated"]
    api = drv.execute_script("const api = window.llmCourse, p = document.querySelector('.llmc-sampling .llmc-input');"
                             "return api.generate(api.encodeOrdinary(p.value), {seed: 11, temperature: 0.8, topK: 5,"
                             " topP: 0.5, maxNewTokens: 8})")
    assert first == again == api and len(first) == 8
    drv.execute_script("document.querySelector('.llmc-seed').value = '-3'")
    click(drv, ".llmc-generate")
    assert labels["samp.bad_seed"] in widget_state(drv, "sampling", lang)["message"]
    set_text(drv, "sampling", "")
    state = widget_state(drv, "sampling", lang)
    assert labels["model.empty"] in state["message"] and state["rows"] == []
    set_text(drv, "sampling", LONG)
    state = widget_state(drv, "sampling", lang)
    assert str(len(tok.encode_ordinary(LONG))) in state["message"] and "128" in state["message"]
    assert len(state["rows"]) == 10


def check_generation(drv, lang: str, state: dict, tok, labels: dict, reference) -> None:
    """Prefill and two decode steps give the greedy tokens of Python's generate
    and a cache of (prompt + 2) positions, 2 KiB each; an over-window prompt is
    cut, fills the cache and stops; an empty one gets a message."""
    from autograde.reference.sampling import generate

    click(drv, ".llmc-reset")                   # after the screenshots' steps: start over
    state = widget_state(drv, "generation", lang)
    assert state["stepDisabled"] and state["cache"] == {"length": 0, "bytes": 0} and state["ids"] is None
    click(drv, ".llmc-prefill")
    click(drv, ".llmc-step")
    click(drv, ".llmc-step")
    state = widget_state(drv, "generation", lang)
    prompt = tok.encode_ordinary(labels["gen.example"])
    with one_torch_thread():
        assert state["ids"] == generate(reference.model, prompt, 3, greedy=True)
    per_token = 2 * 4 * reference.model.cfg.n_layer * reference.model.cfg.n_kv_head * reference.model.cfg.head_dim
    assert state["cache"] == {"length": len(prompt) + 2, "bytes": (len(prompt) + 2) * per_token}
    assert str(len(prompt) + 2) in state["status"]
    set_text(drv, "generation", "")
    click(drv, ".llmc-prefill")
    assert widget_state(drv, "generation", lang)["message"] == labels["model.empty"]
    set_text(drv, "generation", LONG)
    click(drv, ".llmc-prefill")
    state = widget_state(drv, "generation", lang)
    assert "128" in state["message"] and state["stepDisabled"] and state["cache"]["length"] == 128


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "file"])
def test_model_widgets_work_fit_a_phone_and_handle_bad_input(browser, reader_browser, server, site, tok, reference,
                                                             scheme):
    """Each model widget, loaded once per scheme (English in the light scheme
    over http, Korean in the dark scheme from file:// in a reader's Chromium),
    on a 390 px phone: ready, linked to its chapter's notebook, the model's
    numbers, bad input answered in the page's language, no horizontal scroll
    and no text under 12 px even with a long unbroken prompt, no console error,
    nothing from another host. Screenshots at 390 and 1280 px go to
    .widget-screenshots/; the time to interactive is printed and recorded."""
    lang, dark = ("en", False) if scheme == "http" else ("ko", True)
    base = server if scheme == "http" else site.as_uri()
    drv = browser if scheme == "http" else reader_browser
    labels = LABELS[lang]
    notebooks = {"attention": "03_attention", "sampling": "05_sampling", "generation": "07_real_model"}
    drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
    # Material keeps the last palette in localStorage (other tests chose one). Cleared from a page of
    # the site itself: CDP's clearDataForOrigin did not reach file:// pages' storage (the dark run
    # once found the light palette left by an earlier test)
    drv.get(f"{base}/{lang}/index.html")
    drv.execute_script("localStorage.clear()")
    console_errors(drv)
    try:
        for kind, page in MODEL_PAGES.items():
            phone_width(drv, 390)
            state = open_widget(drv, f"{base}/{lang}/{page}", kind, lang)
            assert state["ready"] and state["foreign"] == []
            assert state["note"] == f"../notebooks/{notebooks[kind]}.html"
            assert len(state["scripts"]) == len(set(state["scripts"])) == 3   # model-<hash>.js, model.js, widgets
            record_timing(f"{kind} widget interactive ({scheme}, {lang}), ms after navigation start",
                          state["readyMs"])
            screenshots(drv, kind, lang, dark)
            check = {"attention": check_attention, "sampling": check_sampling}.get(kind)
            if check:
                check(drv, lang, state, tok, labels)
            else:
                check_generation(drv, lang, state, tok, labels, reference)
            check_fit(drv, kind, lang)
            assert console_errors(drv) == [], kind
    finally:
        drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def phone_width(drv, px: int) -> None:
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {**PHONE, "width": px, "height": 1400, "mobile": px < 600, "deviceScaleFactor": 1})


def screenshots(drv, kind: str, lang: str, dark: bool) -> None:
    """The widget at 390 and 1280 px (after a generation, for the two that generate)."""
    scheme = drv.execute_script("return document.body.getAttribute('data-md-color-scheme')")
    assert scheme == ("slate" if dark else "default")
    if kind == "generation":
        for button in (".llmc-prefill", ".llmc-step", ".llmc-step"):
            click(drv, button)
    if kind == "sampling":
        drv.execute_script("document.querySelector('.llmc-max-new').value = '12'")
        click(drv, ".llmc-generate")
    widget_state(drv, kind, lang)
    SHOTS.mkdir(exist_ok=True)
    for px in (390, 1280):
        phone_width(drv, px)
        root = drv.find_element("css selector", f".llmc-{kind}")
        drv.execute_script("window.scrollTo(0, 0);"
                           "window.scrollTo(0, arguments[0].getBoundingClientRect().top - 90)", root)
        root.screenshot(str(SHOTS / f"{kind}-{lang}-{px}-{scheme}.png"))
    phone_width(drv, 390)


def check_fit(drv, kind: str, lang: str) -> None:
    """After the checks, which leave LONG in the widget (one unbroken run of letters)."""
    assert drv.execute_script("return document.querySelector('.llmc-' + arguments[0] + ' .llmc-input').value",
                              kind).startswith(LONG)
    got = drv.execute_script(FIT_WIDGET, kind)
    assert got["scroll"] <= got["viewport"] and got["right"] <= got["viewport"] + 0.5, (lang, kind, got)
    assert got["minFont"] >= 12, (lang, kind, got)


FIT_WIDGET = FIT.replace("document.querySelector('.llmc-tokenizer')", "document.querySelector('.llmc-' + arguments[0])")


def test_korean_widget_labels_use_the_term_table():
    from test_content import violations

    found = [f"{key}: {v}" for key, text in LABELS["ko"].items() for v in violations(text)]
    assert not found, "\n".join(found)
