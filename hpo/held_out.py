"""The study's Pareto front measured again on held-out data.

The front is chosen on the metrics the trials reported on the evaluation data. The more
trials a study trains to the end, the more its front holds the ones whose evaluation was
lucky, so the front's metrics there, and its hypervolume, are optimistic (the winner's
curse). The objective re-measures each front trial's kept model on data no trial was
trained or selected on (:meth:`hpo.objectives.Objective.evaluate_held_out`), and each is
judged feasible again on those metrics: what the front is worth on new data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import optuna

from hpo.errors import ConfigError, RunError
from hpo.objectives import Objective, resolve_objective
from hpo.pareto import hypervolume
from hpo.settings import Settings
from hpo.spec import StudySpec
from hpo.summary import StudySummary
from hpo.trial_outputs import model_dir
from hpo.trials import ATTR_METRICS


class _Point(NamedTuple):
    values: list[float]


@dataclass(frozen=True)
class HeldOutTrial:
    number: int
    metrics: Mapping[str, float]
    """The trial's final metrics, those the objective measured again replaced."""
    feasible: bool


@dataclass(frozen=True)
class HeldOutFront:
    trials: tuple[HeldOutTrial, ...]
    """The study's feasible front (chosen on the evaluation data), by trial number."""
    hypervolume: float | None
    """Of the members still feasible, on their held-out metrics (``None`` without refs)."""
    hypervolume_reported: float | None
    """The study's own: of the front on the metrics its trials reported."""


def measure_front(study: optuna.Study, spec: StudySpec, settings: Settings) -> HeldOutFront:
    """Re-measure every front trial's model (see the module docstring).

    ConfigError when the objective keeps no models or has no held-out data;
    RunError when a front trial kept no model (``run.keep_models: none``).
    """
    objective = resolve_objective(spec.objective)(**spec.objective_args)
    if type(objective).evaluate_held_out is Objective.evaluate_held_out:
        raise ConfigError(f"study {study.study_name!r}: objective {spec.objective!r} keeps no "
                          "models to measure on held-out data")
    summary = StudySummary.of(study.get_trials(deepcopy=False), spec.goals)
    measured = []
    for trial in summary.front:
        directory = model_dir(settings, study.study_name, trial.number)
        if not directory.is_dir():
            raise RunError(f"trial {trial.number} of study {study.study_name!r} kept no model "
                           f"({directory}): held-out metrics need run.keep_models front or all")
        try:
            again = objective.evaluate_held_out(directory, settings.cache_dir)
        except ValueError as exc:
            raise ConfigError(f"study {study.study_name!r}: {exc}") from None
        metrics = {**trial.user_attrs.get(ATTR_METRICS, {}), **again}
        feasible = all(c.violation(metrics) <= 0 for c in spec.constraints)
        measured.append(HeldOutTrial(trial.number, metrics, feasible))
    points = [_Point([t.metrics[g.metric] for g in spec.goals]) for t in measured if t.feasible]
    return HeldOutFront(tuple(measured), hypervolume(points, spec.goals), summary.hypervolume)

