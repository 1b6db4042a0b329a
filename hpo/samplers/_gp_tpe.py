"""Optuna's GP and hpo's TPE by turns (``run.sampler: gp-tpe``).

After the start-up trials, the Gaussian process and TPE propose by turns, GP first, until
trial :data:`GP_MOSTLY_FROM`; from there GP proposes three of every four trials. GP fits
the finished trials' objectives and constraints and proposes where log expected
hypervolume improvement, weighed by the chance of meeting the constraints, is highest, a
local refinement of the front; TPE keeps drawing across the whole front, which early on
keeps GP from settling on one part of it. Either learns from all trials, whoever proposed
them. The start-up trials are TPE's (random, as ``auto``'s).

On the four constrained benchmark problems (seeds 0-4, ``benchmarks/sample_efficiency.py``,
docs/benchmarks.md) this is well ahead of hpo's TPE and ahead of GP alone except on
``bnh`` and at 200 trials on ``srn`` and ``constr``, where GP, with nearly every trial on the
front, fills it more densely (by 0.001-0.003 of the true front's hypervolume). Giving GP
three turns in four from trial 50 on, rather than every other one, raised the median at
100 and 200 trials on ``tnk``, ``srn`` and ``constr`` (``tnk``: 0.908 and 0.992 against 0.892
and 0.983); three in four from the first turn lowered ``bnh``'s at 50 trials (0.955 against
0.983). A GP turn costs about 250 ms late in a 200-trial study on an idle 2-core machine
(:data:`GP_SEARCH`), a TPE turn 1 ms: meant for trials of seconds or more. Parameters outside
GP's space (conditional ones) are TPE's in GP's turns too. GP learns from COMPLETE trials,
not from early-stopped ones, and from failed ones as if they had ended with the worst
values seen; with constraints it takes running trials to end at its predicted means
(:mod:`hpo.samplers._gp`). It needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.samplers._gp import HpoGPSampler

GP_SEARCH = {"_n_preliminary_samples": 512, "_n_local_search": 4, "_n_qmc_samples_ehvi": 32}
"""How GP searches its acquisition function: cheaper than Optuna's (2048 preliminary points,
10 local searches, 128 QMC samples of the hypervolume improvement) and, in these turns, as
sample-efficient at a quarter of the cost (docs/benchmarks.md). Private attributes of Optuna
5's GPSampler (pinned below 6); tests/test_samplers.py checks that they still exist."""


GP_MOSTLY_FROM = 50
"""GP and TPE propose by turns until this trial number; from it on, GP three of every four
trials (module docstring)."""


class GPTPESampler(optuna.samplers.BaseSampler):
    slow = True  # its GP turns: see hpo.samplers.is_slow

    def __init__(self, tpe: optuna.samplers.BaseSampler, seed: int, startup_trials: int):
        self._tpe = tpe
        # TPE draws what GP's space leaves out; GP forwards before/after_trial to it.
        self._gp = HpoGPSampler(
            seed=seed, independent_sampler=tpe, n_startup_trials=startup_trials,
            warn_independent_sampling=False)
        for name, value in GP_SEARCH.items():
            setattr(self._gp, name, value)
        self._startup_trials = startup_trials

    def _turn(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        turn = trial.number - self._startup_trials
        period = 2 if trial.number < GP_MOSTLY_FROM else 4
        return self._gp if turn >= 0 and turn % period != period - 1 else self._tpe

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
