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


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0


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
