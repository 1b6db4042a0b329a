"""Optuna's GP, learning from failed trials (``run.sampler: gp``, and GP's turns in
``gp-tpe``).

Optuna's GP ignores FAILED trials, and with nothing new where a trial failed its
acquisition keeps its maximum there: on ``curves``, where some combinations of hidden size
and attention heads always fail, it proposed the same failing combination in 21 of its
first 25 turns. So hpo's GP sees each failed trial as COMPLETE with the worst value of
each objective and constraint among the COMPLETE trials (pessimistic imputation), and its
models mark the neighbourhood bad.

Its turns take Optuna's GP through two faster paths to the same proposals
(:mod:`hpo.samplers._gp_speedups`).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, cast

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.samplers._gp_speedups import FasterGPSampler


class FailureAwareGPSampler(FasterGPSampler):
    """Optuna's GPSampler, fitted to the study as :class:`_FailedAsWorst` shows it."""

    slow = True  # see hpo.samplers.is_slow

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(_FailedAsWorst.of(study), trial, search_space)


class _FailedAsWorst:
    """The study as hpo's GP sees it: FAILED trials as COMPLETE ones with the worst
    objective and constraint values among the COMPLETE trials (module docstring). GP reads
    trials through ``Study._get_trials``; everything else is the study's own."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    @classmethod
    def of(cls, study: optuna.Study) -> optuna.Study:
        return cast(optuna.Study, cls(study))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        kept = [t for t in trials if states is None or t.state in states]
        if not complete or (states is not None and TrialState.COMPLETE not in states):
            return kept
        # GP's space holds only parameters that every COMPLETE trial has; a failed trial
        # without one of them (another branch of a conditional space) is left out.
        shared = set.intersection(*(set(t.params) for t in complete))
        failed = [t for t in trials
                  if t.state == TrialState.FAIL and t.params and shared <= t.params.keys()]
        if not failed:
            return kept
        worst_values = [
            (max if direction == StudyDirection.MINIMIZE else min)(t.values[i] for t in complete)
            for i, direction in enumerate(self._study.directions)
        ]
        worst_constraints = {
            key: max(t.constraints[key] for t in complete) for key in complete[0].constraints
        }
        return kept + [
            optuna.trial.create_trial(
                values=worst_values, params=t.params, distributions=t.distributions,
                constraints=worst_constraints or None)
            for t in failed
        ]
