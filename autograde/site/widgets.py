"""The browser widgets of the site (issue 20): what `course build` generates
for them and how a chapter embeds one.

- tokenizer_js(): the reference tokenizer (autograde/data/reference/tokenizer.json)
  as a script, assets/llm-course/tokenizer-data.js, that assigns it to
  window.llmCourseData.tokenizer. A <script> loads from file://, where fetch()
  of a JSON file does not; the build writes it from the checkpoint every time,
  so a retrained tokenizer reaches the page with no hand-copied file.
- js_pattern(): the pre-split regex in JavaScript's dialect. Python's `regex`
  module and the browser disagree on what \\s, \\p{L} and \\p{N} contain (\\x85
  and U+FEFF, and their Unicode versions differ), so the classes are written
  out as explicit code point ranges computed here from `regex` itself.
- embed(): the HTML of a widget, in the page's language (labels from
  autograde/site/labels.py), with its stylesheet and scripts; a chapter asks
  for one with a line `<div data-llm-widget="tokenizer"></div>`.

The JavaScript itself (window.llmCourse, the widgets' code and CSS) lives in
course/assets/llm-course/ and is copied like the other site assets.
"""
from __future__ import annotations

import functools
import html
import json
import posixpath
import re

import regex

from autograde.errors import CourseError
from autograde.site.labels import LABELS

ASSET_DIR = "assets/llm-course"
TOKENIZER_DATA = f"{ASSET_DIR}/tokenizer-data.js"
WIDGET_MARKER = re.compile(r'<div data-llm-widget="([^"]*)"></div>')
# The playground tokenizes at most this many characters per keystroke: inside
# one chunk, every merge that applies rescans the whole chunk (as in the Python
# reference), and a pasted run of letters with no space is one chunk; 2,000
# keeps the worst case (6,000 bytes of Hangul) far under a second.
MAX_CHARS = 2_000


# ----------------------------------------------------------------------------
# the pre-split pattern, in JavaScript


@functools.cache
def _all_chars() -> str:
    """Every code point but the surrogates, in order."""
    return "".join(map(chr, [*range(0xD800), *range(0xE000, 0x110000)]))


@functools.cache
def _class_members(python_class: str) -> str:
    """The contents of a JS character class (no brackets) matching exactly the
    code points that `python_class` matches in Python's regex module."""
    def cp(pos: int) -> int:   # position in _all_chars() -> code point
        return pos if pos < 0xD800 else pos + 0x800

    ranges = []
    for m in regex.finditer(f"(?:{python_class})+", _all_chars()):
        a, b = cp(m.start()), cp(m.end() - 1)
        if a < 0xD800 <= b:   # a run across the surrogate gap (none in practice)
            ranges += [(a, 0xD7FF), (0xE000, b)]
        else:
            ranges.append((a, b))
    esc = "\\u{%X}".__mod__
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


CLASSES = {r"\p{L}": r"\p{L}", r"\p{N}": r"\p{N}", r"\s": r"\s"}
PLAIN_ESCAPES = {r"\r", r"\n", r"\t", r"\f", r"\v"}


def js_pattern(pattern: str) -> str:
    """Translate the tokenizer's split pattern into a JavaScript RegExp source
    (for the flags "gu") that splits every string the same way.

    Handled: the classes \\p{L}, \\p{N}, \\s (in or out of [...]), \\S outside
    [...], \\r \\n \\t \\f \\v, a case-insensitive group (?i:...) of literals and
    classes (each letter becomes the set `regex` matches for it, e.g. s -> sSſ),
    and possessive quantifiers ?+ ++ *+, which become greedy ones. In GPT-4's
    pattern that changes nothing: `[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+` cannot succeed by
    giving back its optional non-letter (the letter run would then start on it),
    and `[^\\s\\p{L}\\p{N}]++[\\r\\n]*` cannot need to give back a punctuation mark
    (what follows matches the empty string). The browser tests compare the two
    tokenizers on several hundred strings. Anything else is refused with
    CourseError, so that a new pattern cannot silently split differently.
    """
    out, i, in_class, ignore_case_depth, depth = [], 0, False, None, 0
    while i < len(pattern):
        ch = pattern[i]
        two, five = pattern[i:i + 2], pattern[i:i + 5]
        if five in CLASSES:
            members = _class_members(CLASSES[five])
            out.append(members if in_class else f"[{members}]")
            i += 5
        elif two in CLASSES:
            members = _class_members(CLASSES[two])
            out.append(members if in_class else f"[{members}]")
            i += 2
        elif two == r"\S" and not in_class:
            out.append(f"[^{_class_members(CLASSES[chr(92) + 's'])}]")
            i += 2
        elif two in PLAIN_ESCAPES:
            out.append(two)
            i += 2
        elif ch == "\\":
            raise CourseError(f"the tokenizer's split pattern uses {pattern[i:i + 6]!r}, "
                              "which autograde/site/widgets.py cannot translate to JavaScript")
        elif in_class:
            if ch == "]":
                in_class = False
                out.append(ch)
            elif ch == "^" and out[-1] == "[":
                out.append(ch)
            else:
                out.append(_literal(ch, ignore_case_depth is not None))
            i += 1
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
        elif pattern.startswith("(?i:", i):
            if ignore_case_depth is not None:
                raise CourseError("nested (?i:...) groups in the split pattern are not supported")
            depth += 1
            ignore_case_depth = depth
            out.append("(?:")
            i += 4
        elif pattern.startswith("(?!", i) or pattern.startswith("(?:", i) or pattern.startswith("(?=", i):
            depth += 1
            out.append(pattern[i:i + 3])
            i += 3
        elif ch == "(":
            raise CourseError("the split pattern has a capturing group; findall() would then return groups")
        elif ch == ")":
            if depth == ignore_case_depth:
                ignore_case_depth = None
            depth -= 1
            out.append(ch)
            i += 1
        elif ch in "?+*}" and pattern[i + 1:i + 2] == "+":
            out.append(ch)     # possessive -> greedy (see the docstring)
            i += 2
        elif ch.isalnum() and ignore_case_depth is not None:
            out.append(f"[{_literal(ch, True)}]")
            i += 1
        else:
            out.append(ch)
            i += 1
    if in_class or depth:
        raise CourseError(f"the tokenizer's split pattern is not balanced: {pattern!r}")
    return "".join(out)


def _literal(ch: str, ignore_case: bool) -> str:
    """One literal character of the pattern, for use inside a JS class."""
    if ignore_case and ch.isalpha():
        return _class_members(f"(?i:{regex.escape(ch)})")
    if ch.isascii() and (ch.isalnum() or ch in " _'"):
        return ch
    return "\\u{%X}" % ord(ch)


# ----------------------------------------------------------------------------
# the tokenizer's data


def tokenizer_data(tok) -> dict:
    """What the browser's tokenizer needs: the merges in rank order, the special
    tokens and the split pattern in both dialects."""
    merges = sorted(tok.merges.items(), key=lambda kv: kv[1])
    return {
        "pattern": js_pattern(tok.pattern),
        "python_pattern": tok.pattern,
        "merges": [x for (a, b), new_id in merges for x in (a, b, new_id)],
        "special_tokens": dict(tok.special_tokens),
        "vocab_size": tok.vocab_size,
    }


def tokenizer_js(path=None) -> str:
    """assets/llm-course/tokenizer-data.js: the reference tokenizer as a script."""
    from autograde.reference.checkpoint import REFERENCE_DIR, TOKENIZER_FILE
    from autograde.reference.tokenizer import BPETokenizer

    tok = BPETokenizer.load(path or REFERENCE_DIR / TOKENIZER_FILE)
    data = json.dumps(tokenizer_data(tok), ensure_ascii=True, separators=(",", ":"))
    return ("// Generated by `course build` from the reference tokenizer "
            "(autograde/site/widgets.py); do not edit.\n"
            f"(window.llmCourseData = window.llmCourseData || {{}}).tokenizer = {data};\n")


# ----------------------------------------------------------------------------
# embedding a widget in a page

WIDGETS = {
    # name: (scripts after the data, in order), data scripts
    "tokenizer": ["llm-course.js", "tokenizer-widget.js"],
}


def embed(name: str, lang: str, page_uri: str) -> str:
    """The HTML that replaces `<div data-llm-widget="name"></div>` on the page
    `page_uri` (site path such as chapters/01-tokens.html)."""
    if name not in WIDGETS:
        raise CourseError(f"unknown widget {name!r} (known: {', '.join(sorted(WIDGETS))})")
    here = posixpath.dirname(page_uri) or "."

    def rel(path: str) -> str:
        return html.escape(posixpath.relpath(path, here))

    labels = LABELS[lang]
    other = "ko" if lang == "en" else "en"
    widget_labels = {k.split(".", 1)[1]: v for k, v in labels.items() if k.startswith("tok.")}
    notebook = rel("notebooks/01_tokenizer.html")
    attrs = {
        "data-labels": json.dumps(widget_labels, ensure_ascii=False),
        "data-other-example": LABELS[other]["tok.example"],
        "data-max-chars": str(MAX_CHARS),
        "data-notebook": notebook,
    }
    attr_text = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
    e = html.escape
    scripts = "".join(f'<script src="{rel(f"{ASSET_DIR}/{s}")}"></script>' for s in WIDGETS[name])
    return (
        f'<link rel="stylesheet" href="{rel(f"{ASSET_DIR}/widgets.css")}">'
        f'<div class="llmc llmc-tokenizer" data-search-exclude {attr_text}>'
        f'<p class="llmc-title">{e(labels["tok.title"])}</p>'
        f'<label class="llmc-label" for="llmc-tok-input">{e(labels["tok.input"])}</label>'
        f'<textarea id="llmc-tok-input" class="llmc-input" rows="3" spellcheck="false" autocomplete="off" '
        f'maxlength="{MAX_CHARS * 2}">{e(labels["tok.example"])}</textarea>'
        f'<div class="llmc-options">'
        f'<label class="llmc-check"><input type="checkbox" class="llmc-special"> {e(labels["tok.special"])}</label>'
        f'<label class="llmc-check"><input type="checkbox" class="llmc-show-ids"> {e(labels["tok.show_ids"])}</label>'
        f'</div>'
        f'<p class="llmc-stats" aria-live="polite"></p>'
        f'<p class="llmc-message" role="status"></p>'
        f'<div class="llmc-tokens" role="list" aria-label="{e(labels["tok.tokens"])}"></div>'
        f'<p class="llmc-ids"><span class="llmc-ids-label">{e(labels["tok.ids"])}</span> <code></code></p>'
        f'<p class="llmc-compare"></p>'
        f'<p class="llmc-note"></p>'
        f'<noscript><p>{e(labels["tok.noscript"])}</p></noscript>'
        f'</div>'
        f'<script src="{rel(TOKENIZER_DATA)}"></script>{scripts}'
    )


def embed_widgets(html_text: str, lang: str, page_uri: str) -> str:
    """Replace every widget marker of a rendered page by its widget."""
    return WIDGET_MARKER.sub(lambda m: embed(m.group(1), lang, page_uri), html_text)
