"""The cells of a notebook's single bilingual source (solutions/src/NN_name.py), for the notebook tests:
each cell starts with a `# %% ...` header (`kind="solution"`, `kind="test"`, `lang="ko"`, ...)."""
from pathlib import Path

import re

HEADER = re.compile(r"^# %%.*$", re.M)


def cells_of(source: Path, kind: str) -> list[tuple[str, str]]:
    """(header, body) of the source's cells whose header holds `kind`."""
    text = source.read_text(encoding="utf-8")
    return [(h, b) for h, b in zip(HEADER.findall(text), HEADER.split(text)[1:]) if kind in h]


def solution_text(source: Path) -> str:
    """The solution cells' code, in order, as one text."""
    return "\n".join(body for _, body in cells_of(source, 'kind="solution"'))


def solution_namespace(source: Path, setup: dict, text: str | None = None) -> dict:
    """The solution cells (or `text`, a student's version of them) run in a namespace that holds
    what the notebook's setup cell imports (`setup`)."""
    ns = dict(setup)
    exec(compile(solution_text(source) if text is None else text, str(source), "exec"), ns)
    return ns
