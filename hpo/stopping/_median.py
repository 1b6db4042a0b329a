"""The median stopping rule (as Optuna's MedianPruner): after the grace period, stop a
trial whose best value so far is worse than the median of the other trials' values at the
same report, once ``min_trials`` other trials have reached that report."""

from __future__ import annotations

import math
import statistics

from hpo.spec import Goal
from hpo.stopping._base import History, Stop, StoppingRule


class MedianStop(StoppingRule):
    def __init__(self, goal: Goal, grace_period: int, min_trials: int) -> None:
        self.goal, self.grace_period, self.min_trials = goal, grace_period, min_trials

    def check(self, number: int, history: History) -> Stop | None:
        reports = history.of(number)
        budget = len(reports)
        if budget < self.grace_period:
            return None
        goal = self.goal
        others = [
            goal.minimized(m[goal.metric])
            for n, m in history.at(budget).items()
            if n != number and not math.isnan(m.get(goal.metric, math.nan))
        ]
        if len(others) < self.min_trials:
            return None
        own = [goal.minimized(r[goal.metric]) for r in reports if goal.metric in r]
        best = min((v for v in own if not math.isnan(v)), default=math.inf)
        median = statistics.median(others)
        if best <= median:
            return None
        return Stop(
            f"median: {goal.metric}",
            f"best {goal.metric} so far {goal.minimized(best):.4g} is worse than the median "
            f"{goal.minimized(median):.4g} of {len(others)} trials at report {budget}",
        )
