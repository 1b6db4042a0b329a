"""A sampler error costs one trial its model, not the study.

Optuna lets a sampler's exception propagate out of ``study.ask`` and the first suggestion,
which would end an hpo study (exit 1) and leave the trial RUNNING until recovery. Samplers
fail in ways hpo cannot rule out up front: a Gaussian process on a space or history it
was not built for, a numerical corner of a model. :class:`FallbackOnError` runs the study's
sampler and, when it raises, draws the rest of that trial's parameters at random instead
(seeded), prints one warning line naming the trial and the error (passwords in URLs
hidden), and records the error on the trial as the user attribute
:data:`ATTR_SAMPLER_ERROR` (the dashboard shows it). The next trial asks the study's
sampler again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.samplers._slow import is_slow
from hpo.settings import redact

ATTR_SAMPLER_ERROR = "sampler_error"
"""User attribute of a trial whose sampler raised: the error, in one line."""

FALLBACK_SEED = 7_919_993
"""Added to the sampler's seed for the fallback's own random draws."""

T = TypeVar("T")


class FallbackOnError(optuna.samplers.BaseSampler):
    def __init__(self, sampler: optuna.samplers.BaseSampler, name: str, seed: int) -> None:
        self.sampler, self._name = sampler, name
        # Not ``seed`` itself: samplers draw their random start-up trials from it, and the
        # first fallback would replay trial 0.
        self._random = optuna.samplers.RandomSampler(seed=(seed + FALLBACK_SEED) % 2**31)
        self._failed: set[int] = set()
        """Numbers of the running trials whose sampler raised: the rest of their parameters
        are drawn at random."""

    @property
    def slow(self) -> bool:
        return is_slow(self.sampler)

    def _guard(
        self, study: optuna.Study, trial: FrozenTrial, call: Callable[[], T],
        fallback: Callable[[], T],
    ) -> T:
        if trial.number in self._failed:
            return fallback()
        try:
            return call()
        except Exception as error:  # any sampler bug; BaseException (Ctrl+C) goes through
            what = _one_line(error)
            _warn(f"trial {trial.number}: sampler {self._name!r} raised {what}; the rest of "
                  "its parameters are drawn at random")
            study._storage.set_trial_user_attr(trial._trial_id, ATTR_SAMPLER_ERROR, what)
            self._failed.add(trial.number)
            return fallback()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._guard(
            study, trial, lambda: self.sampler.infer_relative_search_space(study, trial), dict)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._guard(
            study, trial, lambda: self.sampler.sample_relative(study, trial, search_space), dict)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        def draw(sampler: optuna.samplers.BaseSampler) -> Any:
            return sampler.sample_independent(study, trial, param_name, param_distribution)

        return self._guard(study, trial, lambda: draw(self.sampler), lambda: draw(self._random))

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._guard(study, trial, lambda: self.sampler.before_trial(study, trial), _nothing)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._failed.discard(trial.number)
        try:
            self.sampler.after_trial(study, trial, state, values)
        except Exception as error:
            _warn(f"trial {trial.number}: sampler {self._name!r} raised {_one_line(error)} "
                  "as the trial ended; ignored")

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
        self._random.reseed_rng()


def _nothing() -> None:
    return None


def _one_line(error: Exception) -> str:
    return redact(" ".join(f"{type(error).__name__}: {error}".split()))


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)
