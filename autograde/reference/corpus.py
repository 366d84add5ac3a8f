"""The bilingual training corpus: the course's own text, versioned.

`build_corpus` turns the chapters (course/en, course/ko) and the extra prose
(data/corpus/extra/{en,ko}/*.txt) into two plain-text files, one document per
block, documents separated by <|endoftext|>. The result is committed with a
manifest (character counts and a SHA-256 per language) so that a trained model
can name exactly which corpus it was trained on, even after chapters change.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import regex

from autograde.reference.tokenizer import ENDOFTEXT

CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "corpus"
LANGUAGES = ("en", "ko")
SEPARATOR = f"\n{ENDOFTEXT}\n"

_FRONT_MATTER = regex.compile(r"\A---\n.*?\n---\n", regex.S)
_FENCE = regex.compile(r"^(```|~~~).*?^\1\s*$", regex.S | regex.M)
_DISPLAY_MATH = regex.compile(r"\$\$.*?\$\$", regex.S)
_INLINE_MATH = regex.compile(r"\$[^$\n]+\$")
_HEADING_ID = regex.compile(r"\s*\{#[^}]*\}")
_IMAGE = regex.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = regex.compile(r"\[([^\]]+)\]\([^)]*\)")
_HTML = regex.compile(r"<[^>]+>")
_SNIPPET = regex.compile(r"^--8<--.*$", regex.M)
_ADMONITION = regex.compile(r'^\s*(?:!!!|\?\?\?\+?)\s*\w+(?:\s+"([^"]*)")?\s*$', regex.M)
_MARKUP = regex.compile(r"^\s*(#+|[-*+]|\d+\.|>)\s+", regex.M)
_TABLE_RULE = regex.compile(r"^\s*\|?[\s:|-]+\|[\s:|-]*$", regex.M)


def markdown_to_prose(text: str) -> str:
    """Strip markdown down to the sentences a reader would read aloud."""
    text = _FRONT_MATTER.sub("", text)
    text = _FENCE.sub("", text)
    text = _DISPLAY_MATH.sub("", text)
    text = _INLINE_MATH.sub("", text)   # a tiny model learns words better without LaTeX
    text = _SNIPPET.sub("", text)
    text = _HEADING_ID.sub("", text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _HTML.sub("", text)
    text = _ADMONITION.sub(lambda m: m.group(1) or "", text)
    text = _TABLE_RULE.sub("", text)
    text = _MARKUP.sub("", text)
    text = text.replace("|", " ").replace("**", "").replace("`", "")
    # one line per paragraph: the pages are hard-wrapped at ~80 columns
    paragraphs = [" ".join(block.split()) for block in regex.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p).strip()


def collect_documents(course_dir: Path, extra_dir: Path, lang: str) -> list[str]:
    docs = []
    # the written pages only: not generated tables (figures/) or notebook pages
    pages = [*(course_dir / lang).glob("*.md"), *(course_dir / lang / "chapters").glob("*.md")]
    for path in sorted(pages):
        prose = markdown_to_prose(path.read_text(encoding="utf-8"))
        if prose:
            docs.append(prose)
    for path in sorted((extra_dir / lang).glob("*.txt")):
        text = path.read_text(encoding="utf-8").strip()
        if text:
            docs.append(text)
    return docs


def build_corpus(course_dir: Path, extra_dir: Path = CORPUS_DIR / "extra", out_dir: Path = CORPUS_DIR) -> dict:
    """Write {lang}.txt and manifest.json; return the manifest."""
    manifest = {"format": "course-corpus", "languages": {}}
    for lang in LANGUAGES:
        docs = collect_documents(Path(course_dir), Path(extra_dir), lang)
        text = SEPARATOR.join(docs) + "\n"
        (Path(out_dir) / f"{lang}.txt").write_text(text, encoding="utf-8")
        manifest["languages"][lang] = {
            "documents": len(docs),
            "characters": sum(len(d) for d in docs),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    (Path(out_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_corpus(corpus_dir: Path = CORPUS_DIR) -> dict[str, list[str]]:
    """Documents per language, as committed."""
    out = {}
    for lang in LANGUAGES:
        text = (Path(corpus_dir) / f"{lang}.txt").read_text(encoding="utf-8")
        out[lang] = [d.strip() for d in text.split(ENDOFTEXT) if d.strip()]
    return out


def corpus_fingerprint(corpus_dir: Path = CORPUS_DIR) -> str:
    h = hashlib.sha256()
    for lang in LANGUAGES:
        h.update((Path(corpus_dir) / f"{lang}.txt").read_bytes())
    return h.hexdigest()
