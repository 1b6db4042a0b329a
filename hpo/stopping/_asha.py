"""Asynchronous successive halving (ASHA) on one metric or on several objectives.

Rungs sit at ``grace_period * reduction_factor**k`` reports, below ``max_budget`` and
below the end of training (the most reports of a trial that ran to its end: a rung at a
trial's last report would stop it with all its training done, and keep it off the Pareto
front). A trial reaching a rung continues only if fewer than ``max(1, n //
reduction_factor)`` of the n trials that reached that rung so far (itself included) rank
strictly better there; otherwise it is stopped. Nothing waits: early trials are judged
against fewer peers.

The multi-objective version (MO-ASHA) ranks by non-dominated sorting of the objectives at
the rung; within a rank, trials that report exactly the values of an earlier trial rank
after the others (distill-squad: LoRA students of the teacher's size start at the
teacher's exact, 76.25; as tied equals on the front they all passed the rungs, and in one
60-trial study a third of the compute went to such copies of the teacher). Trials that
violate a constraint there rank after every trial that does not,
and among themselves by non-dominated sorting of (total violation, objectives), so a small
model that is still infeasible early in training is not judged on accuracy alone.
Constraints count from the report where the infeasibility rule starts judging them (its
grace period): at an earlier rung every trial is ranked on its objectives alone, except
that a report matching a degenerate-run rule ranks after all others. Why: a small model
that learns slowly is still at the no-answer baseline at the first report (distill-squad:
a one-head student at exact 49.5 after 1/6 of training ends at 65), so it would rank
after every larger one and never reach the front it belongs to; among the objectives
alone the smallest model is never dominated. But where learning students start below
the baseline (real SQuAD 2.0 with a weak teacher), the always-no-answer one, at the
baseline, would dominate them on the objectives alone: it is recognised instead.

With ``extrapolate`` (the default for MO-ASHA) the ranking sees each trial's metrics
extended along the line through its last two reports to the end of training (the most
reports any trial has made, or ``max_budget``), not the metrics at the rung. Why: early
values favour runs that learn fast rather than runs that end well (on ``curves`` the rank
correlation of ``exact`` at report 2 with the final ``exact`` is negative for random
configurations: a learning rate above the optimum learns faster and ends lower), and a
static objective such as the parameter count, final from the first report, then decides
the ranking alone, so large models are stopped and the sampler stops proposing them. For
a learning curve with diminishing returns (concave when rising, convex when falling) the
line lies beyond the curve, so the extrapolation is an optimistic estimate of the final
value: a trial is stopped only when even that estimate ranks outside the best
``1 / reduction_factor``. A static metric has no slope and stays as it is; at a rung at
the first report there is no slope and the values are used as they are.

Whatever its rank, a trial continues at a rung when its metrics there (not extrapolated)
meet every constraint and no trial that ran to its end (once one has) weakly dominates
them with its final metrics: it would already widen the front of the finished trials, and training
rarely makes it worse. Why: late in a study many good trials compete for a third of a
rung's places, and a trial already beyond the front was stopped there (curves, 40 seeds:
hypervolume kept 0.974 -> 0.985 of ``none``'s, better on 27 seeds, for 3.14x -> 3.05x less
compute; docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpo.pareto import metrics_point, nondominated_ranks
from hpo.spec import Constraint, DegenerateRule, Goal
from hpo.stopping._base import History, Stop, StoppingRule

Ranking = Callable[[Mapping[int, Mapping[str, float]], int], dict[int, Any]]
"""Trials' metrics at a rung, and the rung's report -> a sort key per trial (smaller is
better)."""


@dataclass(frozen=True)
class RungRanking:
    """How the trials that reached a budget rank there: MO-ASHA at a rung, and the sampler
    choosing its good set among stopped trials (:mod:`hpo.samplers._pruned`)."""

    ranking: Ranking
    extrapolate: bool = False
    """Rank on values extrapolated to the end of training (see module)."""
    max_budget: int | None = None
    """The end of training when no trial has reported that far yet."""
    front_point: Callable[[Mapping[str, float]], list[float] | None] | None = None
    """Metrics -> the objectives, smaller is better, where they meet every constraint
    (else ``None``): lets a trial that already widens the finished trials' front continue
    (see module)."""

    def values(
        self, reports: Mapping[int, Sequence[Mapping[str, float]]], budget: int
    ) -> dict[int, dict[str, float]]:
        """Each trial with at least ``budget`` of ``reports`` -> the metrics it is ranked on
        there (extrapolated with ``extrapolate``)."""
        reached = {n: r[:budget] for n, r in reports.items() if len(r) >= budget}
        if self.extrapolate:
            horizon = max(self.max_budget or 0, *map(len, reports.values()))
            return {n: extrapolated(r, horizon) for n, r in reached.items()}
        return {n: dict(r[-1]) for n, r in reached.items()}

    def keys(
        self, reports: Mapping[int, Sequence[Mapping[str, float]]], budget: int
    ) -> dict[int, Any]:
        """Each trial with at least ``budget`` of ``reports`` -> its sort key there (smaller
        is better)."""
        return self.ranking(self.values(reports, budget), budget)

    def widens_front(self, number: int, history: History) -> bool:
        """Whether trial ``number``'s latest metrics are feasible and weakly dominated by
        no final metrics of the finished trials (at least one)."""
        if self.front_point is None or not history.finished:
            return False
        point = self.front_point(history.of(number)[-1])
        if point is None:
            return False
        finals = (self.front_point(history.of(n)[-1]) for n in history.finished)
        return not any(
            final is not None and all(f <= p for f, p in zip(final, point, strict=True))
            for final in finals
        )


class ASHA(StoppingRule):
    def __init__(
        self,
        name: str,
        rank: RungRanking,
        grace_period: int,
        reduction_factor: float,
        max_budget: int | None = None,
    ) -> None:
        self.name, self.rank = name, rank
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
        keys = self.rank.keys(history.reports, budget)
        better = sum(1 for key in keys.values() if key < keys[number])
        quota = max(1, int(len(keys) // self.reduction_factor))
        if better < quota or self.rank.widens_front(number, history):
            return None
        return Stop(
            f"{self.name}: rung {budget}",
            f"{better} of the {len(keys)} trials at report {budget} rank better"
            f"{' (extrapolated)' if self.rank.extrapolate else ''}; the best {quota} continue",
        )


def extrapolated(reports: Sequence[Mapping[str, float]], horizon: int) -> dict[str, float]:
    """The last report's metrics extended along the line through the last two reports to
    report ``horizon`` (the metrics as they are with one report, or for a metric missing
    from the one before)."""
    last = dict(reports[-1])
    if len(reports) < 2:
        return last
    before, remaining = reports[-2], max(0, horizon - len(reports))
    return {
        k: v + (v - before[k]) * remaining if k in before else v for k, v in last.items()
    }


def _ranked_point(metrics: Mapping[str, float], goals: Sequence[Goal]) -> list[float]:
    """The goals' minimized point, a missing or NaN value ranking worst (infinite)."""
    return [math.inf if math.isnan(v) else v for v in metrics_point(metrics, goals)]


def by_metric(goal: Goal) -> Ranking:
    """Rank on one objective."""

    def ranking(reached: Mapping[int, Mapping[str, float]], budget: int) -> dict[int, Any]:
        return {n: _ranked_point(m, (goal,))[0] for n, m in reached.items()}

    return ranking


def feasible_point(
    goals: Sequence[Goal], constraints: Sequence[Constraint]
) -> Callable[[Mapping[str, float]], list[float] | None]:
    """Metrics -> the goals' minimized point where every goal is reported and every
    constraint met, else ``None``."""

    def point(metrics: Mapping[str, float]) -> list[float] | None:
        values = metrics_point(metrics, goals)
        if any(math.isnan(v) for v in values) or any(
            c.metric not in metrics or c.violation(metrics) > 0 for c in constraints
        ):
            return None
        return values

    return point


def by_objectives(
    goals: Sequence[Goal],
    constraints: Sequence[Constraint],
    judged_from: int = 1,
    degenerate: Sequence[DegenerateRule] = (),
) -> Ranking:
    """Rank feasible trials by non-dominated sorting, then infeasible ones; constraints
    count at rungs from report ``judged_from`` on, before it only the ``degenerate``
    rules do (see module). Within a rank, a trial whose values repeat an earlier trial's
    exactly ranks after those that do not: a copy widens no front."""

    def violation(metrics: Mapping[str, float]) -> float:
        return sum(
            max(0.0, c.violation(metrics)) if c.metric in metrics else math.inf
            for c in constraints
        )

    def ranking(reached: Mapping[int, Mapping[str, float]], budget: int) -> dict[int, Any]:
        keys: dict[int, Any] = {}
        if budget >= judged_from:
            violations = {n: violation(m) for n, m in reached.items()}
        else:
            violations = {
                n: math.inf if any(rule.matches(m) for rule in degenerate) else 0.0
                for n, m in reached.items()
            }
        for infeasible in (False, True):
            group = sorted(n for n, v in violations.items() if (v > 0) == infeasible)
            points = [
                ([violations[n]] if infeasible else []) + _ranked_point(reached[n], goals)
                for n in group
            ]
            copies: Counter[tuple[float, ...]] = Counter()
            for n, rank, p in zip(group, nondominated_ranks(points), points, strict=True):
                keys[n] = (infeasible, rank, copies[tuple(p)])
                copies[tuple(p)] += 1
        return keys

    return ranking
