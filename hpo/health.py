"""The study's health check: when trials keep ending infeasible, say so loudly, and why."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.pareto import is_feasible
from hpo.spec import StudySpec
from hpo.summary import StudySummary
from hpo.trials import ATTR_FAIL_REASON, ATTR_METRICS, Outcome, counts_towards_budget

log = logging.getLogger("hpo")


def diagnose(trials: Sequence[FrozenTrial], spec: StudySpec) -> str | None:
    """A diagnosis when at least ``spec.health_after`` trials finished and none is
    feasible; ``None`` otherwise. Counts, over the finished trials' last metrics, each
    degenerate pattern of the study (with its hint), failures and violated constraints."""
    finished = [t for t in trials if counts_towards_budget(t)]
    if len(finished) < spec.health_after or any(is_feasible(t) for t in finished):
        return None
    n = len(finished)
    metrics = [t.user_attrs.get(ATTR_METRICS, {}) for t in finished]
    parts = [f"0 of {n} trials feasible"]
    for rule in spec.stopping.degenerate:
        matching = sum(1 for m in metrics if rule.matches(m))
        if matching:
            hint = f": {rule.hint}" if rule.hint else ""
            parts.append(f"{matching}/{n} are {rule}{hint}")
    failed = [t for t in finished if t.state == TrialState.FAIL]
    if failed:
        reasons = Counter(str(t.user_attrs.get(ATTR_FAIL_REASON)) for t in failed)
        reason = reasons.most_common(1)[0][0]
        parts.append(f"{len(failed)}/{n} failed (most often: {reason})")
    for constraint in spec.constraints:
        violating = sum(
            1 for m in metrics if constraint.metric in m and constraint.violation(m) > 0
        )
        if violating:
            parts.append(f"{violating}/{n} violate {constraint}")
    return "; ".join(parts)


class HealthCheck:
    """Observer that runs :func:`diagnose` as trials finish and, the first time the study
    is unhealthy, calls ``warn`` with the diagnosis (and ``stop`` with it, if given)."""

    def __init__(
        self,
        study: optuna.Study,
        spec: StudySpec,
        warn: Sequence[Callable[[str], None]],
        stop: Callable[[str], None] | None = None,
    ) -> None:
        self.study, self.spec, self.warn, self.stop = study, spec, list(warn), stop
        self.diagnosis: str | None = None

    def trial_started(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        return None

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def trial_finished(self, outcome: Outcome, summary: StudySummary) -> None:
        if self.diagnosis is not None or summary.feasible:
            return
        if summary.finished < self.spec.health_after:
            return
        self.diagnosis = diagnose(self.study.get_trials(deepcopy=False), self.spec)
        if self.diagnosis is None:
            return
        log.warning("study %s is unhealthy: %s", self.spec.name, self.diagnosis)
        for warn in self.warn:
            warn(self.diagnosis)
        if self.stop is not None:
            self.stop(self.diagnosis)
