"""Asynchronous successive halving (ASHA) on one metric or on several objectives.

Rungs sit at ``grace_period * reduction_factor**k`` reports, below ``max_budget``. A trial
reaching a rung continues only if fewer than ``max(1, n // reduction_factor)`` of the n
trials that reached that rung so far (itself included) rank strictly better there;
otherwise it is stopped. Nothing waits: early trials are judged against fewer peers.

The multi-objective version (MO-ASHA) ranks by non-dominated sorting of the objectives at
the rung. Trials that violate a constraint there rank after every trial that does not,
and among themselves by non-dominated sorting of (total violation, objectives), so a small
model that is still infeasible early in training is not judged on accuracy alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hpo.pareto import minimized, nondominated_ranks
from hpo.spec import Constraint, Goal
from hpo.stopping._base import History, Stop, StoppingRule

Ranking = Callable[[Mapping[int, Mapping[str, float]]], dict[int, Any]]
"""Trials' metrics at a rung -> a sort key per trial (smaller is better)."""


class ASHA(StoppingRule):
    def __init__(
        self,
        name: str,
        ranking: Ranking,
        grace_period: int,
        reduction_factor: float,
        max_budget: int | None = None,
    ) -> None:
        self.name, self.ranking = name, ranking
        self.grace_period, self.reduction_factor = grace_period, reduction_factor
        self.max_budget = max_budget

    def is_rung(self, budget: int) -> bool:
        if self.max_budget is not None and budget >= self.max_budget:
            return False
        level, k = self.grace_period, 0
        while level < budget:
            k += 1
            level = round(self.grace_period * self.reduction_factor**k)
        return level == budget

    def check(self, number: int, history: History) -> Stop | None:
        budget = len(history.of(number))
        if not self.is_rung(budget):
            return None
        reached = history.at(budget)
        keys = self.ranking(reached)
        better = sum(1 for key in keys.values() if key < keys[number])
        quota = max(1, int(len(reached) // self.reduction_factor))
        if better < quota:
            return None
        return Stop(
            f"{self.name}: rung {budget}",
            f"{better} of the {len(reached)} trials at report {budget} rank better; "
            f"the best {quota} continue",
        )


def _worst_if_nan(value: float) -> float:
    return math.inf if math.isnan(value) else value


def by_metric(goal: Goal) -> Ranking:
    """Rank on one objective."""

    def ranking(reached: Mapping[int, Mapping[str, float]]) -> dict[int, Any]:
        return {
            n: _worst_if_nan(goal.minimized(m.get(goal.metric, math.nan)))
            for n, m in reached.items()
        }

    return ranking


def by_objectives(goals: Sequence[Goal], constraints: Sequence[Constraint]) -> Ranking:
    """Rank feasible trials by non-dominated sorting, then infeasible ones (see module)."""

    def point(metrics: Mapping[str, float]) -> list[float]:
        values = [metrics.get(goal.metric, math.nan) for goal in goals]
        return [_worst_if_nan(v) for v in minimized(values, goals)]

    def violation(metrics: Mapping[str, float]) -> float:
        return sum(
            max(0.0, c.violation(metrics)) if c.metric in metrics else math.inf
            for c in constraints
        )

    def ranking(reached: Mapping[int, Mapping[str, float]]) -> dict[int, Any]:
        keys: dict[int, Any] = {}
        violations = {n: violation(m) for n, m in reached.items()}
        for infeasible in (False, True):
            group = [n for n, v in violations.items() if (v > 0) == infeasible]
            points = [
                ([violations[n]] if infeasible else []) + point(reached[n]) for n in group
            ]
            for n, rank in zip(group, nondominated_ranks(points), strict=True):
                keys[n] = (infeasible, rank)
        return keys

    return ranking
