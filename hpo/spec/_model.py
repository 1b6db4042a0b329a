"""The validated, immutable form of a study file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from optuna.distributions import BaseDistribution

from hpo.spec._constraints import Constraint


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter: an Optuna distribution, present only when ``when`` holds."""

    name: str
    distribution: BaseDistribution
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """Parent parameter -> values for which this parameter exists."""

    def is_active(self, params: Mapping[str, Any]) -> bool:
        return all(name in params and params[name] in values for name, values in self.when.items())


@dataclass(frozen=True)
class Goal:
    """An optimized metric (an "objective" in Optuna's words)."""

    metric: str
    direction: Literal["maximize", "minimize"]
    ref: float | None = None
    """Hypervolume reference point: the worst value that still counts."""

    def minimized(self, value: float) -> float:
        """``value`` turned so that smaller is better."""
        return -value if self.direction == "maximize" else value


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0


BACKENDS = ("ray", "local")
"""Where trials run: Ray Tune, or one at a time in the driver (debugging, cheap objectives)."""

KEEP_MODELS = ("front", "all", "none")
"""Which trials keep the model they wrote to ``output_dir/model``: Pareto front (default),
every trial, or none."""

SCHEDULERS = ("auto", "moasha", "asha", "median", "none")
"""Early-stopping schedulers by name; ``auto`` = moasha with several objectives, else asha."""


@dataclass(frozen=True)
class DegenerateRule:
    """A trivial solution runs can collapse into, recognised by conditions on metrics
    (e.g. always-no-answer: ``HasAns_exact <= 1`` and ``NoAns_exact >= 99``)."""

    name: str
    when: tuple[Constraint, ...]
    """All of these hold for a matching report."""
    hint: str = ""
    """What to check when many trials match (shown by the health check)."""
    patience: int = 1
    """Consecutive matching reports before a trial is stopped."""

    def matches(self, metrics: Mapping[str, float]) -> bool:
        return all(c.metric in metrics and c.violation(metrics) <= 0 for c in self.when)

    def __str__(self) -> str:
        return f"{self.name} ({' and '.join(map(str, self.when))})"


@dataclass(frozen=True)
class InfeasibleStop:
    """Stop a trial whose reports violate a constraint by more than ``margin`` for
    ``patience`` consecutive reports, counting from report ``grace_period``."""

    grace_period: int = 3
    patience: int = 2
    margin: float = 0.0


@dataclass(frozen=True)
class Stopping:
    """When to stop trials early. Budgets count a trial's reports (its evaluations)."""

    scheduler: str = "none"
    """Resolved: moasha, asha, median or none."""
    metric: str | None = None
    """asha and median: the objective they compare (default: the first)."""
    grace_period: int = 1
    reduction_factor: float = 3.0
    max_budget: int | None = None
    """No rung at or beyond this many reports (the end of a trial is not a rung)."""
    min_trials: int = 5
    """median: trials that must have reached a report before it compares there."""
    extrapolate: bool = False
    """asha, moasha: rank on values extrapolated to the end of training (see
    :mod:`hpo.stopping._asha`); on by default for moasha."""
    infeasible: InfeasibleStop | None = InfeasibleStop()
    degenerate: tuple[DegenerateRule, ...] = ()


@dataclass(frozen=True)
class StudySpec:
    """Everything that defines a study, validated."""

    name: str
    source: str
    """The file it came from, for messages."""
    objective: str
    objective_args: Mapping[str, Any]
    parameters: tuple[Parameter, ...]
    goals: tuple[Goal, ...]
    constraints: tuple[Constraint, ...]
    metrics: tuple[str, ...]
    """Every metric the objective reports."""
    trials: int
    concurrency: int
    resources: Resources
    seed: int
    sampler: str
    backend: str = "ray"
    startup_trials: int = 10
    """Random trials before TPE models the results (Optuna's default: 10); a conditional
    space with several branches may need more, so that every branch is tried."""
    stopping: Stopping = Stopping()
    health_after: int = 20
    """Finished trials after which a study with no feasible trial is reported unhealthy."""
    stop_when_unhealthy: bool = False
    keep_models: str = "front"
    """front, all or none (see :data:`KEEP_MODELS`)."""
    report: bool = True
    """Write the report (``hpo report``) when the study finishes."""
    max_retries: int = 0
    """Times a trial whose process died (SIGKILL, out of memory) is run again."""
    heartbeat_interval: int = 10
    """Seconds between a driver's heartbeats for its running trials; a trial without one
    for 3 intervals is taken for interrupted (its driver is gone) and run again."""
    description: str = ""
    hypothesis: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The resolved document (after overrides), as recorded with the study."""

    @property
    def directions(self) -> list[Literal["maximize", "minimize"]]:
        return [goal.direction for goal in self.goals]

    @property
    def has_conditions(self) -> bool:
        return any(parameter.when for parameter in self.parameters)
