"""The browser widgets (issue 20): window.llmCourse's tokenizer gives the same
ids as autograde/reference/tokenizer.py, and chapter 1's tokenizer playground
works over http and from file://, in both languages, on a phone and a wide
screen, with no console error and nothing fetched from another host.

The site, browser and server fixtures come from tests/test_site.py. Screenshots
of the playground (390 and 1280 px, English light and Korean dark)
are written under pytest's tmp dir (printed with -s), never committed.
"""
from __future__ import annotations

import json
import random

import pytest

from autograde.reference.tokenizer import ENDOFTEXT, BPETokenizer
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
def test_playground_fits_a_phone_and_screenshots(browser, server, tmp_path_factory):
    """At 390 px the playground, even with a long unbroken text and ids shown,
    does not widen the page and its text is at least 12 px. Screenshots at 390
    and 1280 px in each language (English light, Korean dark), for a person to look at."""
    from selenium.webdriver.common.by import By

    shots = tmp_path_factory.mktemp("widget-screenshots")
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
    assert all(LABELS["ko"][k] != LABELS["en"][k] for k in LABELS["en"] if k.startswith("tok.")
               and k not in ("tok.example",)), "an untranslated label"
