"""Objectives by name: the ``hpo.objectives`` entry-point group, or ``module:Class``."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from hpo.objectives._base import Objective

ENTRY_POINT_GROUP = "hpo.objectives"


def available_objectives() -> list[str]:
    """Names registered through the ``hpo.objectives`` entry-point group."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def resolve_objective(name: str) -> type[Objective]:
    """Return the objective class registered as ``name`` (or importable as ``module:Class``).

    Raises ``LookupError`` with the names that are known when there is no such objective.
    """
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise LookupError(f"cannot import objective {name!r}: {exc}") from exc
    else:
        matches = entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not matches:
            known = ", ".join(available_objectives()) or "none"
            raise LookupError(f"unknown objective {name!r} (known: {known})")
        cls = next(iter(matches)).load()
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise LookupError(f"objective {name!r} is not a subclass of hpo.objectives.Objective")
    return cls
