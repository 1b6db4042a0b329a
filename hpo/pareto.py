"""The feasible Pareto front and its hypervolume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import moocore
import numpy as np
from optuna.trial import FrozenTrial, TrialState

from hpo.spec import Goal


class _Point(Protocol):
    @property
    def values(self) -> list[float] | None: ...


def is_feasible(trial: FrozenTrial) -> bool:
    """COMPLETE with every constraint value <= 0 (no constraints: feasible)."""
    return trial.state == TrialState.COMPLETE and all(
        value <= 0 for value in trial.constraints.values()
    )


def _minimized(values: Sequence[float], goals: Sequence[Goal]) -> list[float]:
    return [
        -v if goal.direction == "maximize" else v for v, goal in zip(values, goals, strict=True)
    ]


def pareto_front(trials: Sequence[FrozenTrial], goals: Sequence[Goal]) -> list[FrozenTrial]:
    """Feasible COMPLETE trials that no other feasible COMPLETE trial dominates, by number."""
    feasible = [t for t in trials if is_feasible(t) and t.values is not None]
    points = [_minimized(t.values, goals) for t in feasible]

    def dominated(i: int) -> bool:
        return any(
            all(a <= b for a, b in zip(other, points[i], strict=True)) and other != points[i]
            for other in points
        )

    return sorted((t for i, t in enumerate(feasible) if not dominated(i)), key=lambda t: t.number)


def hypervolume(front: Sequence[_Point], goals: Sequence[Goal]) -> float | None:
    """Hypervolume dominated by ``front`` up to the goals' reference point.

    ``None`` when a goal declares no ``ref``. Points worse than the reference in some
    objective contribute nothing.
    """
    if any(goal.ref is None for goal in goals):
        return None
    ref = np.array(_minimized([goal.ref for goal in goals if goal.ref is not None], goals))
    points = np.array([_minimized(p.values, goals) for p in front if p.values is not None])
    if len(points) == 0:
        return 0.0
    points = points[np.all(points < ref, axis=1)]
    return float(moocore.hypervolume(points, ref=ref)) if len(points) else 0.0
