"""Read-only site pages for the student notebooks.

`course build` turns exercises/<lang>/<name>/<name>.ipynb into
course/<lang>/notebooks/<name>.md (generated, not committed): the prose as
Markdown (without the notebook's own Colab link: the page has a button),
the code as Python blocks, with `notebook: <name>` front matter so
the site hook adds the Colab and download buttons. Headings get stable ids
(step-1, step-2, ...) that are the same in both languages.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

HEADING = re.compile(r"^(#{2,3})\s+(.*?)\s*$", re.M)
# The notebook's own "Open in Colab" link (useful inside Jupyter); on the site
# the hook's button under the title already offers it, so the page drops it.
COLAB_LINK = re.compile(r"\[[^\]]*\]\(https://colab\.research\.google\.com/[^)]*\)(?:\s*·\s*)?(\w?)")


def without_colab_link(text: str) -> str:
    """The text without its Colab link; what followed it at a line's start is capitalized."""
    def drop(m: re.Match) -> str:
        at_line_start = m.start() == 0 or text[m.start() - 1] == "\n"
        return m.group(1).upper() if at_line_start else m.group(1)

    return COLAB_LINK.sub(drop, text)


def notebook_markdown(nb: nbformat.NotebookNode, name: str) -> str:
    parts = [f"---\nnotebook: {name}\n---\n"]
    counter = 0

    def with_id(match: re.Match) -> str:
        nonlocal counter
        counter += 1
        return f"{match.group(1)} {match.group(2)} {{#step-{counter}}}"

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(HEADING.sub(with_id, without_colab_link(cell.source.strip())))
        elif cell.cell_type == "code" and cell.source.strip():
            parts.append("```python\n" + cell.source.strip() + "\n```")
    return "\n\n".join(parts) + "\n"


def write_pages(root: Path) -> list[Path]:
    written = []
    for path in sorted((root / "exercises").glob("*/*/*.ipynb")):
        lang, name = path.parts[-3], path.stem
        out = root / "course" / lang / "notebooks" / f"{name}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(notebook_markdown(nbformat.read(path, as_version=4), name), encoding="utf-8")
        written.append(out)
    return written
