"""Binh and Korn (1997): a classic constrained bi-objective test problem.

Minimize ``f1 = 4x² + 4y²`` and ``f2 = (x - 5)² + (y - 5)²`` over x in [0, 5] and
y in [0, 3], subject to ``c1 = (x - 5)² + y² <= 25`` and ``c2 = (x - 8)² + (y + 3)² >= 7.7``.
Its true Pareto front is known (:func:`pareto_front`), which makes it the reference check
of the multi-objective, constrained path of hpo.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from hpo.objectives import Objective, Reporter, TrialContext

BOUNDS: dict[str, tuple[float, float]] = {"x": (0.0, 5.0), "y": (0.0, 3.0)}
REFERENCE_POINT = (140.0, 50.0)
"""Hypervolume reference point in (f1, f2), slightly beyond the front's nadir (136, 50)."""


def evaluate(x: float, y: float) -> dict[str, float]:
    """The two objectives and the two constraint functions at (x, y)."""
    return {
        "f1": 4 * x**2 + 4 * y**2,
        "f2": (x - 5) ** 2 + (y - 5) ** 2,
        "c1": (x - 5) ** 2 + y**2,
        "c2": (x - 8) ** 2 + (y + 3) ** 2,
    }


def is_feasible(metrics: Mapping[str, float]) -> bool:
    """Whether ``c1 <= 25`` and ``c2 >= 7.7`` (the constraints of ``search_spaces/bnh.yaml``)."""
    return metrics["c1"] <= 25 and metrics["c2"] >= 7.7


def pareto_front(n: int = 1000) -> npt.NDArray[np.float64]:
    """``n`` points of the true Pareto front in (f1, f2), ordered by increasing f1.

    The optimal set is x = y in [0, 3] followed by x in [3, 5] with y = 3; x is spaced
    evenly over [0, 5].
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    x = np.linspace(0.0, 5.0, n)
    y = np.minimum(x, 3.0)
    return np.column_stack((4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2))


def _coordinate(params: Mapping[str, Any], name: str) -> float:
    low, high = BOUNDS[name]
    value = params.get(name)
    if isinstance(value, Real) and not isinstance(value, bool) and low <= float(value) <= high:
        return float(value)
    raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


class BinhKornObjective(Objective):
    """The Binh and Korn problem as an objective: one report, at step 0."""

    metrics: ClassVar[tuple[str, ...]] = ("f1", "f2", "c1", "c2")
    parameters: ClassVar[tuple[str, ...] | None] = ("x", "y")

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        unknown = sorted(set(params) - set(BOUNDS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; known: {list(BOUNDS)}")
        metrics = evaluate(_coordinate(params, "x"), _coordinate(params, "y"))
        report(0, metrics, last=True)
        return metrics
