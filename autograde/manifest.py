"""The notebook steps' manifest (autograde/steps.toml): one entry per graded step.

It is the single source of a step's function name, signature, points and need of the reference
model. The test cells' check(...) lines are generated from it (autograde/notebooks.py), the
grader plans a notebook's checks from it (autograde/grader/pipeline.py), and the registry gives
each check class its attributes from it (autograde/checks/registry.py).
"""
from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent / "steps.toml"

# Notebook names before December 2026, when the notebooks were renumbered so that chapter n has
# notebook n. A class released under an old name keeps its folders and gradebook entries: grading
# and checking look the old name up here (`current`), and the steps and notebooks are the same.
FORMER_NAMES = {
    "02_attention": "03_attention",
    "03_ffn_block": "04_ffn_block",
    "04_sampling": "05_sampling",
    "05_training": "06_training",
    "06_embeddings": "02_embeddings",
    "08_reasoning": "09_reasoning",
}


def current(assignment: str) -> str:
    """The notebook's name now: an old name (FORMER_NAMES) is mapped, any other name is returned as is."""
    return FORMER_NAMES.get(assignment, assignment)


@dataclass(frozen=True)
class Step:
    id: str
    assignment: str
    cell: str
    function: str
    signature: str
    points: int
    needs_model: bool


@dataclass(frozen=True)
class TestCell:
    assignment: str
    id: str
    steps: tuple[Step, ...]

    @property
    def points(self) -> int:
        return sum(s.points for s in self.steps)

    def source(self) -> str:
        """The cell's code: each step's visible check, then the hidden ones (nbgrader strips those
        from the student's copy)."""
        lines = [f'check("{s.id}", {s.function})' for s in self.steps]
        lines.append("### BEGIN HIDDEN TESTS")
        lines += [f'check("{s.id}", {s.function}, hidden=True)' for s in self.steps]
        lines.append("### END HIDDEN TESTS")
        return "\n".join(lines)


FIELDS = {"id": str, "assignment": str, "cell": str, "function": str, "signature": str, "points": int,
          "needs_model": bool}


@functools.lru_cache(maxsize=1)
def steps() -> dict[str, Step]:
    """step id -> Step, in the manifest's order. ValueError naming the entry for a malformed one."""
    data = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    out: dict[str, Step] = {}
    for i, entry in enumerate(data.get("step", [])):
        if set(entry) != set(FIELDS) or any(type(entry[k]) is not t for k, t in FIELDS.items()):
            raise ValueError(f"{MANIFEST.name}: step entry {i + 1} must have exactly {sorted(FIELDS)} "
                             f"with the right types, got {entry}")
        if entry["id"] in out:
            raise ValueError(f"{MANIFEST.name}: step {entry['id']!r} is listed twice")
        if not entry["signature"].startswith(entry["function"] + "("):
            raise ValueError(f"{MANIFEST.name}: the signature of {entry['id']!r} does not start with its function")
        out[entry["id"]] = Step(**entry)
    return out


def step(step_id: str) -> Step:
    found = steps().get(step_id)
    if found is None:
        raise KeyError(f"step {step_id!r} is not in {MANIFEST.name}")
    return found


def test_cells(assignment: str) -> list[TestCell]:
    """The assignment's graded test cells, in the manifest's order (an old name: its notebook's now)."""
    assignment = current(assignment)
    cells: dict[str, list[Step]] = {}
    for s in steps().values():
        if s.assignment == assignment:
            cells.setdefault(s.cell, []).append(s)
    return [TestCell(assignment, cell, tuple(members)) for cell, members in cells.items()]


def test_cell(assignment: str, cell_id: str) -> TestCell | None:
    return next((c for c in test_cells(assignment) if c.id == cell_id), None)


def assignments() -> list[str]:
    """The notebooks' current names (FORMER_NAMES maps the old ones)."""
    return sorted({s.assignment for s in steps().values()})


def renamed_note(assignment: str) -> str | None:
    """One line for an instructor who used an old name (None for a current or unknown name)."""
    if assignment not in FORMER_NAMES:
        return None
    return (f"note: {assignment} is now called {current(assignment)} (since December 2026, chapter n has "
            f"notebook n); graded with {current(assignment)}'s checks, kept under {assignment} in the gradebook")
