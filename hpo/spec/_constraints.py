"""Outcome constraints: ``"exact >= 50.5"`` parsed by a tiny grammar, never evaluated."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

_GRAMMAR = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_./-]*)\s*(?P<op>>=|<=)\s*"
    r"(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Constraint:
    """``metric >= bound`` or ``metric <= bound`` on a reported metric."""

    metric: str
    op: Literal[">=", "<="]
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse ``"METRIC >= NUMBER"`` or ``"METRIC <= NUMBER"``; ValueError otherwise."""
        match = _GRAMMAR.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"{text!r} is not a constraint; write 'METRIC >= NUMBER' or 'METRIC <= NUMBER'"
            )
        bound = float(match["bound"])
        if not math.isfinite(bound):
            raise ValueError(f"{text!r}: the bound must be a finite number")
        op: Literal[">=", "<="] = ">=" if match["op"] == ">=" else "<="
        return cls(match["metric"], op, bound)

    def violation(self, metrics: Mapping[str, float]) -> float:
        """Optuna's convention: <= 0 when satisfied, the size of the violation otherwise."""
        value = float(metrics[self.metric])
        return self.bound - value if self.op == ">=" else value - self.bound

    def __str__(self) -> str:
        """Exact, so that it parses back to the same constraint (studies record them so)."""
        exact = self.bound.is_integer() and abs(self.bound) < 1e16
        return f"{self.metric} {self.op} {int(self.bound) if exact else self.bound!r}"
