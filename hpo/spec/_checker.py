"""Typed access to a study document's fields, with errors naming file, field and value."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from hpo.errors import ConfigError
from hpo.spec._constraints import Constraint


class Checker:
    """Typed access to a document's fields with errors that name file, field and value."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, field=field)

    def mapping(
        self, value: Any, field: str, allowed: Iterable[str] | None = None
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {value!r}")
        if allowed is not None:
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                raise self.fail(
                    f"{field}.{unknown[0]}" if field else unknown[0],
                    f"unknown key (allowed: {', '.join(sorted(allowed))})",
                )
        return value

    def number(
        self, value: Any, field: str, *, integer: bool = False, minimum: float | None = None
    ) -> float:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or not math.isfinite(value):
            raise self.fail(
                field, f"expected {'an integer' if integer else 'a number'}, got {value!r}"
            )
        if minimum is not None and value < minimum:
            raise self.fail(field, f"{value!r} is below the minimum {minimum:g}")
        return value

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, got {value!r}")
        return value

    def metric(self, value: Any, field: str, metrics: Sequence[str]) -> str:
        """``value`` if the objective reports such a metric."""
        if value not in metrics:
            raise self.fail(
                field, f"unknown metric {value!r} (the objective reports: {', '.join(metrics)})"
            )
        return str(value)

    def conditions(self, value: Any, field: str, metrics: Sequence[str]) -> tuple[Constraint, ...]:
        """A list of ``METRIC >= N`` / ``METRIC <= N`` strings on reported metrics."""
        if not isinstance(value, list):
            raise self.fail(field, f"expected a list like ['exact >= 50.5'], got {value!r}")
        parsed: list[Constraint] = []
        for i, text in enumerate(value):
            try:
                condition = Constraint.parse(text)
            except ValueError as exc:
                raise self.fail(f"{field}[{i}]", str(exc)) from None
            self.metric(condition.metric, f"{field}[{i}]", metrics)
            for j, earlier in enumerate(parsed):
                if (earlier.metric, earlier.op) == (condition.metric, condition.op):
                    raise self.fail(
                        f"{field}[{i}]",
                        f"'{condition}' bounds {condition.metric} on the same side as "
                        f"{field}[{j}] '{earlier}'; keep one of them",
                    )
            parsed.append(condition)
        return tuple(parsed)
