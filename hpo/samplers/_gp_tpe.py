"""Optuna's GP and hpo's TPE by turns (``run.sampler: gp-tpe``).

After the start-up trials, even turns (``startup_trials``, ``startup_trials + 2``, ...) are
the Gaussian process's: it fits the finished trials' objectives and constraints and
proposes where log expected hypervolume improvement, weighed by the chance of meeting the
constraints, is highest, a local refinement of the front. Odd turns are TPE's, which keeps
drawing across the whole front. Either learns from all trials, whoever proposed them. The
start-up trials are TPE's (random, as ``auto``'s).

On the four constrained benchmark problems this beat hpo's TPE on every seed at 50, 100
and 200 trials, by far where the feasible region is narrow, and GP alone at 50 and 100
trials but on ``bnh`` (``benchmarks/sample_efficiency.py``, docs/benchmarks.md). Half its
suggestions cost what GP's do, hundreds of ms and growing with the trials, against TPE's
few ms: meant for trials that take minutes. Parameters outside GP's space (conditional
ones) are TPE's in GP's turns too. GP learns from COMPLETE trials only, not from
early-stopped ones. It needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState


class GPTPESampler(optuna.samplers.BaseSampler):
    def __init__(self, tpe: optuna.samplers.BaseSampler, seed: int, startup_trials: int):
        self._tpe = tpe
        # TPE draws what GP's space leaves out; GP forwards before/after_trial to it.
        self._gp = optuna.samplers.GPSampler(
            seed=seed, independent_sampler=tpe, n_startup_trials=startup_trials,
            warn_independent_sampling=False)
        self._startup_trials = startup_trials

    def _turn(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        after_startup = trial.number - self._startup_trials
        return self._gp if after_startup >= 0 and after_startup % 2 == 0 else self._tpe

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._turn(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._turn(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._turn(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._gp.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._gp.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._gp.reseed_rng()  # and its independent sampler, the TPE
