"""Optuna's GP as hpo runs it (``run.sampler: gp``, and GP's turns in ``gp-tpe``): it
learns from failed trials, and with trials running it believes their predicted outcomes.

**Failed trials.** Optuna's GP ignores FAILED trials, and with nothing new where a trial
failed its acquisition keeps its maximum there: on ``curves``, where some combinations of
hidden size and attention heads always fail, it proposed the same failing combination in
21 of its first 25 turns. So hpo's GP sees each failed trial as COMPLETE with the worst
value of each objective and constraint among the COMPLETE trials (pessimistic imputation),
and its models mark the neighbourhood bad.

**Running trials** (several objectives and constraints; a "Kriging believer"). Optuna's
batch acquisition draws 32 joint samples of what the running trials will give, objectives
and constraints, and averages the hypervolume improvement over the feasible ones, each
counted as feasible or not by one sample. With two workers on ``tnk`` (a thin feasible
band along the front) its turns proposed far fewer feasible trials than one at a time
(docs/benchmarks.md). hpo's GP instead takes each running trial to end at its models'
predicted means: those predicted to meet every constraint join the feasible front the
hypervolume improvement is measured against, and the acquisition is the one-at-a-time
one, constrained expected hypervolume improvement. Two workers asking ahead, seeds 0-9:
higher on ``tnk``, ``srn`` and ``constr`` at 200 trials on every seed, ``bnh`` unchanged;
one decomposition of the front per turn instead of one per sample.

Its turns take Optuna's GP through two faster paths to the same proposals
(:mod:`hpo.samplers._gp_speedups`).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, cast

import numpy as np
import optuna
import torch
from optuna._gp import acqf as optuna_acqf
from optuna._gp.gp import GPRegressor
from optuna._gp.search_space import SearchSpace
from optuna.distributions import BaseDistribution
from optuna.samplers._gp.sampler import (
    _MAX_QMC_SEED_VALUE,
    _get_constraint_vals_and_feasibility,
)
from optuna.study import StudyDirection
from optuna.study._constrained_optimization import _is_constrained_optimization
from optuna.trial import FrozenTrial, TrialState

from hpo.samplers._gp_speedups import FasterGPSampler


class HpoGPSampler(FasterGPSampler):
    """Optuna's GPSampler, fitted to the study as :class:`_FailedAsWorst` shows it, that
    believes running trials' predicted outcomes (module docstring)."""

    slow = True  # see hpo.samplers.is_slow

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(_FailedAsWorst.of(study), trial, search_space)

    def _get_acqf_and_best_params(
        self, completed_trials: list[FrozenTrial], gprs_list: list[GPRegressor],
        internal_search_space: SearchSpace, normalized_params: np.ndarray,
        normalized_params_of_running_trials: np.ndarray | None,
        standardized_score_vals: np.ndarray,
    ) -> tuple[optuna_acqf.BaseAcquisitionFunc, np.ndarray | None]:
        """Optuna's acquisition, or with trials running, several objectives and constraints,
        its one-at-a-time acquisition against the front with the running trials believed."""
        running = normalized_params_of_running_trials
        believes = (running is not None and standardized_score_vals.shape[-1] > 1
                    and _is_constrained_optimization(completed_trials))
        acqf, best_params = super()._get_acqf_and_best_params(
            completed_trials, gprs_list, internal_search_space, normalized_params,
            None if believes else running, standardized_score_vals)
        if not believes:
            return acqf, best_params
        assert running is not None and isinstance(acqf, optuna_acqf.LogCEHVI), type(acqf)
        if acqf._acqf is None:  # nothing feasible yet: only the chance of feasibility counts
            return acqf, best_params
        constraints = [(c._gpr, c._threshold) for c in acqf._constraints_acqf_list]
        with torch.no_grad():
            x = torch.from_numpy(running)
            feasible = torch.stack(
                [gpr.posterior(x)[0] >= threshold for gpr, threshold in constraints]).all(dim=0)
            believed = torch.stack([gpr.posterior(x)[0] for gpr in gprs_list], dim=-1)[feasible]
        if not len(believed):
            return acqf, best_params
        _, completed_feasible = _get_constraint_vals_and_feasibility(completed_trials)
        front = torch.cat([torch.from_numpy(standardized_score_vals[completed_feasible]),
                           believed])
        return optuna_acqf.LogCEHVI(
            gpr_list=gprs_list, search_space=internal_search_space, Y_feasible=front,
            n_qmc_samples=self._n_qmc_samples_ehvi,
            qmc_seed=self._rng.rng.randint(_MAX_QMC_SEED_VALUE),
            constraints_gpr_list=[gpr for gpr, _ in constraints],
            constraints_threshold_list=[threshold for _, threshold in constraints],
        ), best_params


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
