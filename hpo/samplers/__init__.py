"""Optuna samplers by name, built lazily; ``auto`` picks one from the study's shape.

``auto`` chooses:

* ``gp`` (Gaussian-process Bayesian optimization, constraint-aware) when the budget is at
  most ``GP_MAX_TRIALS`` trials and no parameter is conditional: most sample-efficient
  where each trial is expensive and the budget small;
* ``tpe`` (multivariate, grouped for conditional spaces, constant liar for parallel
  trials) otherwise: cheap per suggestion and handles conditional spaces.

Every sampler reads constraint values that hpo stores on each trial, so feasibility
guides the search whichever is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from hpo.spec import StudySpec

GP_MAX_TRIALS = 100


def _tpe(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=spec.has_conditions, constant_liar=True
    )


def _gp(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed)


def _nsga2(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(
        seed=seed, population_size=min(50, max(8, spec.trials // 5))
    )


def _random(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def auto_choice(spec: StudySpec) -> str:
    """The sampler ``auto`` stands for in this study."""
    return "gp" if spec.trials <= GP_MAX_TRIALS and not spec.has_conditions else "tpe"


def _auto(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return SAMPLERS[auto_choice(spec)](seed, spec)


SAMPLERS: dict[str, Callable[[int, StudySpec], optuna.samplers.BaseSampler]] = {
    "auto": _auto,
    "tpe": _tpe,
    "gp": _gp,
    "nsga2": _nsga2,
    "random": _random,
}


def create_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The sampler the study asks for, seeded with the study seed."""
    return SAMPLERS[spec.sampler](spec.seed, spec)


__all__ = ["GP_MAX_TRIALS", "SAMPLERS", "auto_choice", "create_sampler"]
