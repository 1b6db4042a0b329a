"""The feasible Pareto front and its hypervolume."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def minimized(values: Sequence[float], goals: Sequence[Goal]) -> list[float]:
    """Goal values turned so that smaller is better in each."""
    return [goal.minimized(v) for v, goal in zip(values, goals, strict=True)]


def metrics_point(metrics: Mapping[str, float], goals: Sequence[Goal]) -> list[float]:
    """The goals' metrics taken from ``metrics``, smaller is better in each (NaN where one
    is missing)."""
    return minimized([metrics.get(goal.metric, math.nan) for goal in goals], goals)


def nondominated(points: Sequence[Sequence[float]]) -> list[bool]:
    """Whether each point is dominated by no other (smaller is better in each coordinate;
    equal points do not dominate each other)."""
    if len(points) == 0:
        return []
    return [bool(keep) for keep in moocore.is_nondominated(_finite(points), keep_weakly=True)]


def nondominated_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """0 for the points no other point dominates, 1 for those dominated only by rank-0
    points, and so on."""
    if len(points) == 0:
        return []
    return [int(rank) for rank in moocore.pareto_rank(_finite(points))]


def _finite(points: Sequence[Sequence[float]]) -> np.ndarray:
    """The points as an array, infinities as the largest floats and NaN as the worst:
    moocore's sweeps (0.3.2) misorder infinite coordinates and some crash the interpreter
    on them (MO-ASHA ranks missing metrics and violations as infinite). Among finite and
    infinite points the dominance relation stays the same."""
    array = np.asarray(points, dtype=float)
    return np.nan_to_num(array, nan=np.finfo(float).max)


def pareto_front(trials: Sequence[FrozenTrial], goals: Sequence[Goal]) -> list[FrozenTrial]:
    """Feasible COMPLETE trials that no other feasible COMPLETE trial dominates, by number."""
    feasible = [t for t in trials if is_feasible(t) and t.values is not None]
    flags = nondominated([minimized(t.values, goals) for t in feasible])
    return sorted((t for t, keep in zip(feasible, flags, strict=True) if keep),
                  key=lambda t: t.number)


def reference_point(goals: Sequence[Goal]) -> np.ndarray | None:
    """The goals' ``ref`` values turned so that smaller is better (``None`` when a goal
    declares none): where the study's hypervolume is measured from."""
    refs = [goal.ref for goal in goals]
    if any(ref is None for ref in refs):
        return None
    return np.array(minimized([float(ref) for ref in refs if ref is not None], goals))


def hypervolume(front: Sequence[_Point], goals: Sequence[Goal]) -> float | None:
    """Hypervolume dominated by ``front`` up to the goals' reference point.

    ``None`` when a goal declares no ``ref``. Points worse than the reference in some
    objective contribute nothing.
    """
    ref = reference_point(goals)
    if ref is None:
        return None
    points = np.array([minimized(p.values, goals) for p in front if p.values is not None])
    if len(points) == 0:
        return 0.0
    points = points[np.all(points < ref, axis=1)]
    return float(moocore.hypervolume(points, ref=ref)) if len(points) else 0.0
