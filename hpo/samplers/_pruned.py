"""Multi-objective TPE that learns from early-stopped (PRUNED) trials, as BOHB does.

TPE models a "good" set (the best ``gamma(n)`` trials) against the rest. Optuna 5 ranks
PRUNED trials of a multi-objective study after every COMPLETE one, all tied (it accepts no
intermediate values there). Under early stopping that is a poor good set: while fewer
trials have completed than the good set holds, it is filled by the oldest stopped trials,
whatever they reached; later it holds every COMPLETE trial, and under asynchronous
successive halving those include the first trials of the study, which continued at each
rung because they met few rivals there, not because they were good. TPE then keeps
proposing near them.

:class:`PrunedAwareTPESampler` builds its model at one budget instead, as BOHB does
(Falkner et al., 2018): the furthest number of reports that at least ``min_trials``
trials reached. Once that many trials are COMPLETE, this is Optuna's own split of the
COMPLETE trials (the best by non-dominated sorting of their final values, infeasible ones
last), so a study without early stopping samples exactly as Optuna's TPE does. Before,
the trials that reached that budget are ranked on their reports there the way MO-ASHA
ranks them at a rung (:func:`hpo.stopping.rung_ranking`: extrapolated, constraints from
the infeasibility grace period on), and the best ``gamma`` of those form the good set.
Where the good set's size cuts a rank of that sorting, it takes the part of the rank that
dominates the most of the study's hypervolume (:func:`best_spread`), not its oldest
trials: early on, the first trials to reach a report are mostly large models leading on
accuracy, and by age alone the small models at the other end of the same rank rarely
made the good set.
Everything else is the bad set: trials stopped earlier, trials known to end badly (stopped
as degenerate, or violating a constraint at their end), and running ones (constant liar).

``min_trials`` is the study's ``run.startup_trials``. What each rule gained, and what was
tried and not kept, on ``curves`` and distill-squad: docs/benchmarks.md, "Early stopping".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import _solve_hssp
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.sampler import (
    _get_reference_point,
    _split_trials,
    default_gamma_multiobjective,
)
from optuna.trial import FrozenTrial, TrialState

from hpo.pareto import metrics_point, reference_point
from hpo.spec import Goal
from hpo.stopping import DEGENERATE, RungRanking
from hpo.trials import ATTR_REPORTS, ATTR_STOPPED


def _reports(trial: FrozenTrial) -> list[dict[str, float]]:
    return list(trial.user_attrs.get(ATTR_REPORTS) or [])


def _ends_badly(trial: FrozenTrial) -> bool:
    """Stopped as degenerate, or violating a constraint at its end (its last report, for a
    stopped trial): never good, whatever it reached before."""
    if str(trial.user_attrs.get(ATTR_STOPPED, "")).startswith(DEGENERATE):
        return True
    return any(value > 0 for value in trial.constraints.values())


def model_budget(reached: Iterable[int], min_trials: int) -> int:
    """The furthest budget (number of reports) that at least ``min_trials`` trials reached,
    given how far each got; the shortest reach if none is that common."""
    counts = sorted(reached, reverse=True)
    if not counts:
        return 0
    return counts[min(min_trials, len(counts)) - 1]


def split_trials(
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    gamma: Callable[[int], int],
    rank: RungRanking,
    min_trials: int,
    goals: Sequence[Goal],
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """TPE's good and bad sets, both by trial number (see the module docstring)."""
    finished = [t for t in trials if t.state != TrialState.RUNNING]
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    if len(complete) >= min_trials or len(complete) == len(finished):
        below, above = _split_trials(study, complete, gamma(len(complete)))
        above += [t for t in trials if t.state != TrialState.COMPLETE]
        return below, sorted(above, key=lambda t: t.number)
    judged = {t.number: _reports(t) for t in finished if _reports(t) and not _ends_badly(t)}
    if not judged:
        return _split_trials(study, list(trials), gamma(len(finished)))
    budget = model_budget(map(len, judged.values()), min_trials)
    values = rank.values(judged, budget)
    good = set(best_spread(values, rank.ranking(values, budget), gamma(len(values)), goals))
    return ([t for t in trials if t.number in good],
            [t for t in trials if t.number not in good])


def best_spread(values: Mapping[int, Mapping[str, float]], keys: Mapping[int, Any], size: int,
                goals: Sequence[Goal]) -> list[int]:
    """The ``size`` trials with the best ``keys``; where the cut falls inside a group of
    equal keys (a rank of the non-dominated sorting), the ones of that group that together
    dominate the most hypervolume, not the oldest: a rank's oldest trials may all sit at
    one end of it. Optuna breaks ties among COMPLETE trials so, with a reference point
    just beyond the group's worst values, which favours its knee; here it is the study's
    own (the goals' ``ref``, where they all declare one): the hypervolume the study is
    judged on."""
    ordered = sorted(keys, key=lambda n: (keys[n], n))
    if not 0 < size < len(ordered) or keys[ordered[size - 1]] != keys[ordered[size]]:
        return ordered[:size]
    cut = keys[ordered[size]]
    better = [n for n in ordered if keys[n] < cut]
    tied = [n for n in ordered if keys[n] == cut]
    points = np.array([metrics_point(values[n], goals) for n in tied])
    if not np.isfinite(points).all():
        return ordered[:size]
    reference = reference_point(goals)
    if reference is None:
        reference = _get_reference_point(points)
    else:
        points = np.minimum(points, reference)
    chosen = _solve_hssp(points, np.array(tied), size - len(better), reference)
    return better + [int(n) for n in chosen]


class PrunedAwareTPESampler(optuna.samplers.TPESampler):
    """TPE whose multi-objective good set is chosen at one budget (module docstring);
    single-objective studies are Optuna's TPE unchanged (it ranks PRUNED trials on their
    intermediate values, which hpo reports there)."""

    def __init__(self, rank: RungRanking, min_trials: int, goals: Sequence[Goal],
                 **options: Any) -> None:
        super().__init__(**options)
        self._rank, self._min_trials, self._goals = rank, min_trials, goals

    def _sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        # TPESampler._sample (Optuna 5.1) with hpo's split. The trials are those the ask
        # read when this trial started, running ones included (Optuna reads them again
        # with constant liar: one more storage read per trial for a few milliseconds).
        states = [TrialState.COMPLETE, TrialState.PRUNED]
        if self._constant_liar:
            states.append(TrialState.RUNNING)
        trials = study._get_trials(deepcopy=False, states=tuple(states), use_cache=True)
        trials = [t for t in trials if t.number != trial.number]
        gamma = self._gamma or default_gamma_multiobjective
        below, above = split_trials(study, trials, gamma, self._rank, self._min_trials,
                                    self._goals)
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        samples = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        chosen = self._compare(
            samples, self._compute_acquisition_func(samples, mpe_below, mpe_above))
        return {name: dist.to_external_repr(chosen[name]) for name, dist in search_space.items()}
