"""Rules that stop a trial on its own reports: degenerate runs and hopeless infeasibility."""

from __future__ import annotations

from collections.abc import Sequence

from hpo.spec import Constraint, DegenerateRule, InfeasibleStop
from hpo.stopping._base import History, Stop, StoppingRule

DEGENERATE = "degenerate"
"""Prefix of the reason of a trial stopped by a degenerate-run rule (``degenerate: NAME``)."""


class DegenerateStop(StoppingRule):
    """Stops a trial whose last ``patience`` reports all match a degenerate rule."""

    def __init__(self, rule: DegenerateRule) -> None:
        self.rule = rule

    def check(self, number: int, history: History) -> Stop | None:
        recent = history.of(number)[-self.rule.patience :]
        if len(recent) < self.rule.patience or not all(map(self.rule.matches, recent)):
            return None
        values = ", ".join(f"{c.metric} = {recent[-1][c.metric]:.4g}" for c in self.rule.when)
        budget = len(history.of(number))
        return Stop(f"{DEGENERATE}: {self.rule.name}", f"{values} at report {budget}")


class InfeasibleStopRule(StoppingRule):
    """Stops a trial that violates one constraint by more than the margin in each of its
    last ``patience`` reports, all at or after the grace period."""

    def __init__(self, constraints: Sequence[Constraint], settings: InfeasibleStop) -> None:
        self.constraints, self.settings = tuple(constraints), settings

    def check(self, number: int, history: History) -> Stop | None:
        reports = history.of(number)
        first = max(self.settings.grace_period, len(reports) - self.settings.patience + 1)
        if len(reports) - first + 1 < self.settings.patience:
            return None
        recent = reports[first - 1 :]
        for constraint in self.constraints:
            if all(
                constraint.metric in r and constraint.violation(r) > self.settings.margin
                for r in recent
            ):
                return Stop(
                    f"infeasible: {constraint}",
                    f"{constraint.metric} = {recent[-1][constraint.metric]:.4g} for "
                    f"{len(recent)} reports up to report {len(reports)}",
                )
        return None
