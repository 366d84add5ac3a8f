"""All checks by step id ("attention.sdpa", ...), loaded from autograde/checks/steps/."""
from __future__ import annotations

import importlib
import pkgutil

from autograde.checks.core import Check

CHECKS: dict[str, Check] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: one instance per step id."""
    if not cls.step or cls.step in CHECKS:
        raise ValueError(f"check step {cls.step!r} is empty or registered twice")
    CHECKS[cls.step] = cls()
    return cls


def _load_all() -> None:
    import autograde.checks.steps as steps

    for info in pkgutil.iter_modules(steps.__path__):
        importlib.import_module(f"autograde.checks.steps.{info.name}")


def get_check(step: str) -> Check:
    if not CHECKS:
        _load_all()
    if step not in CHECKS:
        raise KeyError(f"no check named {step!r}; known: {sorted(CHECKS)}")
    return CHECKS[step]


def all_checks() -> dict[str, Check]:
    if not CHECKS:
        _load_all()
    return dict(CHECKS)
