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
- model_js(): the reference model's config and weights (float32, base64) as
  a script, assets/llm-course/model-<hash>.js, that assigns them to
  window.llmCourseData.model. The name carries the checkpoint's hash, so a
  retrained model is a new file (no stale copy from a browser's cache) and
  the build writes it from the checkpoint every time.
- embed(): the HTML of a widget, in the page's language (labels from
  autograde/site/labels.py), with its stylesheet and scripts; a chapter asks
  for one with a line `<div data-llm-widget="NAME"></div>` (tokenizer,
  attention, sampling, generation).

Why the model runs in plain JavaScript (course/assets/llm-course/model.js)
and not in onnxruntime-web or transformers.js: the site must work opened as
files, and from file:// a page can neither fetch() a .onnx/.json file nor
start the WebAssembly workers those libraries load by URL; they are also not
installed here and would add megabytes of runtime for a 1M-parameter model.
The reference architecture (RMSNorm, RoPE, grouped-query attention, SwiGLU,
tied embeddings) is about 200 lines of JavaScript that mirrors
autograde/reference/functional.py step by step, reads its weights from a
<script>, and is compared with the Python forward pass in the browser tests.

The JavaScript itself (window.llmCourse, the widgets' code and CSS) lives in
course/assets/llm-course/ and is copied like the other site assets.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import posixpath
import re
from pathlib import Path

import regex

from autograde.errors import CourseError
from autograde.site.labels import LABELS, NOTEBOOK_STEPS

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
# the model's weights

# what model.js implements; the export refuses a checkpoint that needs more
MODEL_SUPPORT = {"position": ("rope",), "norm": ("rmsnorm",), "ffn": ("swiglu",), "bias": (False,),
                 "qkv_bias": (False,), "qk_norm": (False,), "rope_scaling": (None,), "d_head": (None,)}


def checkpoint_hash(directory=None) -> str:
    """sha256 of the checkpoint's config and weights: the model file's name
    changes exactly when the model does."""
    from autograde.reference.checkpoint import CONFIG_FILE, REFERENCE_DIR, WEIGHTS_FILE

    directory = Path(directory or REFERENCE_DIR)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            digest.update((directory / name).read_bytes())
        except OSError as exc:
            raise CourseError(f"{directory / name} cannot be read ({exc.strerror}); "
                              "run `course train-reference` to create the reference model") from None
    return digest.hexdigest()


def model_data_path(directory=None) -> str:
    """Where the model's script lies in each language's site."""
    return f"{ASSET_DIR}/model-{checkpoint_hash(directory)[:12]}.js"


def model_data(directory=None) -> dict:
    """The config, and every weight as float32 little-endian bytes in one
    base64 string, with each tensor's name, shape and offset (in floats)."""
    import numpy as np

    from autograde.reference.checkpoint import REFERENCE_DIR, load_checkpoint

    directory = Path(directory or REFERENCE_DIR)
    ref = load_checkpoint(directory)
    cfg = ref.model.cfg.to_dict()
    for key, allowed in MODEL_SUPPORT.items():
        if cfg[key] not in allowed:
            raise CourseError(f"the browser model (course/assets/llm-course/model.js) supports {key} "
                              f"{' or '.join(map(repr, allowed))}, but the checkpoint has {key}={cfg[key]!r}")
    tensors, chunks, offset = [], [], 0
    for name, tensor in sorted(ref.model.state_dict().items()):
        array = np.ascontiguousarray(tensor.detach().cpu().float().numpy(), dtype="<f4")
        tensors.append({"name": name, "shape": list(array.shape), "offset": offset})
        chunks.append(array.tobytes())
        offset += array.size
    return {"config": cfg, "sha256": checkpoint_hash(directory), "tensors": tensors,
            "weights": base64.b64encode(b"".join(chunks)).decode("ascii")}


def model_js(directory=None) -> str:
    """assets/llm-course/model-<hash>.js: the reference model as a script."""
    from autograde.reference.checkpoint import REFERENCE_DIR

    directory = Path(directory or REFERENCE_DIR)
    return _model_js(str(directory), checkpoint_hash(directory))


@functools.lru_cache(maxsize=2)
def _model_js(directory: str, sha256: str) -> str:
    """One export per checkpoint and process (both languages' builds use it);
    keyed on the hash, so a changed checkpoint is exported again."""
    data = json.dumps(model_data(directory), ensure_ascii=True, separators=(",", ":"))
    return ("// Generated by `course build` from the reference checkpoint "
            "(autograde/site/widgets.py); do not edit.\n"
            f"(window.llmCourseData = window.llmCourseData || {{}}).model = {data};\n")


# ----------------------------------------------------------------------------
# embedding a widget in a page

# name: (label prefix, scripts in order after the data; the model's data loads only
# for widgets whose scripts include model.js)
WIDGETS = {
    "tokenizer": ("tok", ["llm-course.js", "tokenizer-widget.js"]),
    "attention": ("att", ["llm-course.js", "model.js", "model-widgets.js"]),
    "sampling": ("samp", ["llm-course.js", "model.js", "model-widgets.js"]),
    "generation": ("gen", ["llm-course.js", "model.js", "model-widgets.js"]),
}
# The attention viewer draws at most this many tokens (the heat map of the
# first tokens is exact: a causal model's early rows do not see later tokens).
MAX_VIEW_TOKENS = 32
NOTEBOOK_NAME = re.compile(r"(\d+)_[A-Za-z0-9_\-]+")


def _labels(prefix: str, lang: str, notebook: str | None) -> dict[str, str]:
    """The widget's labels without their prefix, the shared model.* ones, and
    the link text of the page's notebook ("notebook 2", from its file name)."""
    labels = LABELS[lang]
    out = {k.split(".", 1)[1]: v for k, v in labels.items() if k.startswith(prefix + ".")}
    if prefix != "tok":
        shared = {k.split(".", 1)[1]: v for k, v in labels.items() if k.startswith("model.")}
        if shared.keys() & out.keys():   # one label would hide the other on the page
            raise CourseError(f"labels {sorted(shared.keys() & out.keys())} exist as model.* and {prefix}.*")
        out.update(shared)
    match = NOTEBOOK_NAME.fullmatch(notebook or "")
    if match:
        out["notebook"] = labels["notebook"].format(n=int(match.group(1)))
    return {key: _fill_steps(text, notebook) for key, text in out.items()}


STEP_PLACEHOLDER = re.compile(r"\{(step_[a-z_]+)\}")
STEP_HEADING = re.compile(r"^# ## (\d+)\. (.+)$", re.M)
SOURCES = Path(__file__).resolve().parents[2] / "solutions" / "src"


@functools.cache
def notebook_steps(notebook: str) -> dict[str, int]:
    """A notebook's numbered step headings, {English title: number}, from its
    source (the first heading of each number is the English one)."""
    try:
        text = (SOURCES / f"{notebook}.py").read_text(encoding="utf-8")
    except OSError as exc:
        raise CourseError(f"{SOURCES / notebook}.py cannot be read ({exc.strerror}): the widgets quote its "
                          "step numbers") from None
    steps: dict[str, int] = {}
    for number, title in STEP_HEADING.findall(text):
        if int(number) not in steps.values():
            steps[title.strip()] = int(number)
    return steps


def _fill_steps(text: str, notebook: str | None) -> str:
    """Write the number of each `{step_...}` (labels.NOTEBOOK_STEPS) into a label.
    A step of another notebook than the page's is refused: the note would send
    the reader to the wrong notebook."""
    def number(match: re.Match) -> str:
        key = match.group(1)
        if key not in NOTEBOOK_STEPS:
            raise CourseError(f"label placeholder {{{key}}} is not in labels.NOTEBOOK_STEPS")
        where, title = NOTEBOOK_STEPS[key]
        if where != notebook:
            raise CourseError(f"label placeholder {{{key}}} names a step of {where}, but the widget's page "
                              f"links to {notebook}")
        steps = notebook_steps(where)
        if title not in steps:
            raise CourseError(f"labels.NOTEBOOK_STEPS[{key!r}]: solutions/src/{where}.py has no step heading "
                              f"'# ## N. {title}' (its steps: {', '.join(steps) or 'none'})")
        return str(steps[title])

    return STEP_PLACEHOLDER.sub(number, text)


def _tokenizer_body(labels: dict, e) -> str:
    return (
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
    )


def _text_box(prefix: str, labels: dict, e, rows: int = 2) -> str:
    return (f'<label class="llmc-label" for="llmc-{prefix}-input">{e(labels[prefix + ".input"])}</label>'
            f'<textarea id="llmc-{prefix}-input" class="llmc-input" rows="{rows}" spellcheck="false" '
            f'autocomplete="off" maxlength="{MAX_CHARS}">{e(labels[prefix + ".example"])}</textarea>')


def _select(prefix: str, name: str, labels: dict, e) -> str:
    return (f'<label class="llmc-field"><span>{e(labels[f"{prefix}.{name}"])}</span>'
            f'<select class="llmc-{name}"></select></label>')


def _slider(name: str, labels: dict, e, lo, hi, step, value) -> str:
    return (f'<label class="llmc-field llmc-slider"><span>{e(labels[f"samp.{name}"])} '
            f'<output class="llmc-{name}-value"></output></span>'
            f'<input type="range" class="llmc-{name}" min="{lo}" max="{hi}" step="{step}" value="{value}"></label>')


def _loading(labels: dict, e) -> str:
    """The message line, saying the model is loading until the widget's script replaces it."""
    return f'<p class="llmc-message" role="status">{e(labels["model.loading"])}</p>'


def _attention_body(labels: dict, e) -> str:
    return (
        _text_box("att", labels, e)
        + '<div class="llmc-options">'
        + "".join(_select("att", n, labels, e) for n in ("layer", "head", "query"))
        + '</div>' + _loading(labels, e)
        + f'<div class="llmc-heat" role="img" aria-label="{e(labels["att.heat_label"])}"></div>'
        '<p class="llmc-reads-title"></p><ol class="llmc-reads"></ol>'
    )


def _sampling_body(labels: dict, e) -> str:
    return (
        _text_box("samp", labels, e)
        + '<div class="llmc-options">'
        + _slider("temperature", labels, e, 0, 2, 0.05, 1)
        + _slider("top_k", labels, e, 0, 50, 1, 0)
        + _slider("top_p", labels, e, 0.05, 1, 0.05, 1)
        + '</div>' + _loading(labels, e)
        + '<p class="llmc-summary" aria-live="polite"></p>'
        f'<table class="llmc-dist"><caption>{e(labels["samp.table"])}</caption><thead><tr>'
        f'<th scope="col">{e(labels["samp.col_token"])}</th><th scope="col">{e(labels["samp.col_before"])}</th>'
        f'<th scope="col">{e(labels["samp.col_after"])}</th></tr></thead><tbody></tbody></table>'
        '<div class="llmc-options">'
        f'<label class="llmc-field"><span>{e(labels["samp.seed"])}</span>'
        '<input type="number" class="llmc-seed" min="0" max="4294967295" step="1" value="42" inputmode="numeric"></label>'
        f'<label class="llmc-field"><span>{e(labels["samp.max_new"])}</span>'
        '<input type="number" class="llmc-max-new" min="1" max="64" step="1" value="24" inputmode="numeric"></label>'
        f'<button type="button" class="md-button md-button--primary llmc-generate">{e(labels["samp.generate"])}</button>'
        '</div><p class="llmc-output" aria-live="polite"></p>'
    )


def _generation_body(labels: dict, e) -> str:
    return (
        _text_box("gen", labels, e)
        + '<div class="llmc-options">'
        f'<button type="button" class="md-button md-button--primary llmc-prefill">{e(labels["gen.prefill"])}</button>'
        f'<button type="button" class="md-button llmc-step" disabled>{e(labels["gen.step"])}</button>'
        f'<button type="button" class="md-button llmc-reset" disabled>{e(labels["gen.reset"])}</button>'
        '</div>' + _loading(labels, e)
        + '<p class="llmc-status" aria-live="polite"></p>'
        '<p class="llmc-output"></p>'
        f'<table class="llmc-cache"><caption>{e(labels["gen.table"])}</caption><thead><tr>'
        f'<th scope="col">{e(labels["gen.col_layer"])}</th><th scope="col">K</th><th scope="col">V</th>'
        f'<th scope="col">{e(labels["gen.col_bytes"])}</th></tr></thead><tbody></tbody></table>'
        '<div class="llmc-fill" aria-hidden="true"><div></div></div>'
    )


BODIES = {"tokenizer": _tokenizer_body, "attention": _attention_body, "sampling": _sampling_body,
          "generation": _generation_body}


def embed(name: str, lang: str, page_uri: str, notebook: str | None = None, loaded: set | None = None) -> str:
    """The HTML that replaces `<div data-llm-widget="name"></div>` on the page
    `page_uri` (site path such as chapters/01-tokens.html). `notebook` is the
    page's notebook (its front matter), which the widget links to. `loaded`:
    the scripts earlier widgets of the page already load (each loads once)."""
    loaded = set() if loaded is None else loaded
    if name not in WIDGETS:
        raise CourseError(f"unknown widget {name!r} (known: {', '.join(sorted(WIDGETS))})")
    prefix, scripts = WIDGETS[name]
    if notebook is None and name == "tokenizer":
        notebook = "01_tokenizer"
    if not notebook or not NOTEBOOK_NAME.fullmatch(notebook):
        raise CourseError(f"the {name} widget links to its chapter's notebook, but the page names none "
                          f"(front matter `notebook:`, got {notebook!r})")
    here = posixpath.dirname(page_uri) or "."

    def rel(path: str) -> str:
        return html.escape(posixpath.relpath(path, here))

    labels = LABELS[lang]
    other = "ko" if lang == "en" else "en"
    attrs = {
        "data-labels": json.dumps(_labels(prefix, lang, notebook), ensure_ascii=False),
        "data-notebook": posixpath.relpath(f"notebooks/{notebook}.html", here),
    }
    if name == "tokenizer":
        attrs.update({"data-other-example": LABELS[other]["tok.example"], "data-max-chars": str(MAX_CHARS)})
    if name == "attention":
        attrs["data-max-view"] = str(MAX_VIEW_TOKENS)
    attr_text = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
    e = html.escape
    data = [TOKENIZER_DATA] + ([model_data_path()] if "model.js" in scripts else [])
    sources = [rel(d) for d in data] + [rel(f"{ASSET_DIR}/{s}") for s in scripts]
    # defer: the chapter's text shows before the data (5 MB for the model) has loaded
    script_tags = "".join(f'<script src="{src}" defer></script>' for src in sources if src not in loaded)
    style = "" if loaded else f'<link rel="stylesheet" href="{rel(f"{ASSET_DIR}/widgets.css")}">'
    loaded.update(sources)
    return (
        style +
        f'<div class="llmc llmc-{name}" data-search-exclude {attr_text}>'
        f'<p class="llmc-title">{e(labels[prefix + ".title"])}</p>'
        + BODIES[name](labels, e)
        + f'<p class="llmc-note"></p>'
        f'<noscript><p>{e(labels[prefix + ".noscript"])}</p></noscript>'
        f'</div>{script_tags}'
    )


def embed_widgets(html_text: str, lang: str, page_uri: str, notebook: str | None = None) -> str:
    """Replace every widget marker of a rendered page by its widget."""
    loaded: set = set()
    return WIDGET_MARKER.sub(lambda m: embed(m.group(1), lang, page_uri, notebook, loaded), html_text)
