"""All checks by step id ("attention.sdpa", ...), loaded from autograde/checks/steps/."""
from __future__ import annotations

import importlib
import pkgutil
import threading

from autograde.checks.core import Check

CHECKS: dict[str, Check] = {}
_LOADING = threading.Lock()
_loaded = False


MANIFEST_FIELDS = {"function": "function", "points": "points", "needs_reference": "needs_model"}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: one instance per step id, its function, points and need of the reference
    model taken from the manifest (autograde/steps.toml), which no class may contradict."""
    from autograde import manifest

    if not cls.step or cls.step in CHECKS:
        raise ValueError(f"check step {cls.step!r} is empty or registered twice")
    entry = manifest.step(cls.step)
    for attribute, field in MANIFEST_FIELDS.items():
        value = getattr(entry, field)
        if attribute in cls.__dict__ and cls.__dict__[attribute] != value:
            raise ValueError(f"{cls.__name__}.{attribute} = {cls.__dict__[attribute]!r} contradicts "
                             f"{manifest.MANIFEST.name} ({field} = {value!r}); remove it from the class")
        setattr(cls, attribute, value)
    CHECKS[cls.step] = cls()
    return cls


def _load_all() -> None:
    """Import every step module once. (CHECKS may already hold the checks of a module that was
    imported directly, so emptiness says nothing; the lock keeps grading threads from seeing
    a half-filled registry.)"""
    global _loaded
    import autograde.checks.steps as steps

    with _LOADING:
        if _loaded:
            return
        for info in pkgutil.iter_modules(steps.__path__):
            importlib.import_module(f"autograde.checks.steps.{info.name}")
        _loaded = True


def get_check(step: str) -> Check:
    _load_all()
    if step not in CHECKS:
        raise KeyError(f"no check named {step!r}; known: {sorted(CHECKS)}")
    return CHECKS[step]


def all_checks() -> dict[str, Check]:
    _load_all()
    return dict(CHECKS)
