"""Multi-objective TPE that learns from PRUNED trials the way Optuna does in one objective.

Optuna's TPE splits the finished trials into a "good" and a "bad" set: the best
COMPLETE trials first, then PRUNED trials ranked by the last intermediate value they
reported at their furthest step (further first), then infeasible trials. Multi-objective
Optuna studies accept no intermediate values, so every PRUNED trial there ties with every
other, in trial-number order: when early stopping leaves fewer feasible COMPLETE trials
than the good set holds, the oldest stopped trials fill it, whatever they reached.

:class:`PrunedAwareTPESampler` ranks them with what hpo records on every stopped trial:
the number of reports it made (its step) first, then the non-dominated rank of its last
metrics among the trials stopped at the same step. COMPLETE trials still come first and
infeasible ones (a constraint violated, at the last report for a stopped trial) last, by
total violation, as in Optuna. A feasible stopped trial that cannot be judged (stopped as
degenerate, an objective metric missing or not finite) always stays in the bad set.
Without feasible PRUNED trials the split is Optuna's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.sampler import _split_trials, default_gamma_multiobjective
from optuna.trial import FrozenTrial, TrialState

from hpo.pareto import nondominated_ranks
from hpo.stopping import DEGENERATE
from hpo.trials import ATTR_METRICS, ATTR_REPORTS, ATTR_STEPS, ATTR_STOPPED

if TYPE_CHECKING:
    from hpo.spec import Goal

def _reached(trial: FrozenTrial) -> int:
    """How far a trial got: its number of reports (the budget early stopping counts)."""
    reports = trial.user_attrs.get(ATTR_REPORTS)
    return len(reports) if reports else int(trial.user_attrs.get(ATTR_STEPS, 0))


def _infeasible(trial: FrozenTrial) -> bool:
    """Optuna ranks such trials itself, after all others, by their total violation."""
    return any(value > 0 for value in trial.constraints.values())


def _judged(trial: FrozenTrial, goals: Sequence[Goal]) -> list[float] | None:
    """A stopped trial's last objective values, smaller is better; None if it cannot be
    judged on them (see the module docstring)."""
    if str(trial.user_attrs.get(ATTR_STOPPED, "")).startswith(DEGENERATE):
        return None
    metrics = trial.user_attrs.get(ATTR_METRICS) or {}
    values = [float(metrics.get(goal.metric, math.nan)) for goal in goals]
    if not all(math.isfinite(v) for v in values):
        return None
    return [goal.minimized(v) for v, goal in zip(values, goals, strict=True)]


def rank_pruned(
    trials: Sequence[FrozenTrial], goals: Sequence[Goal]
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """PRUNED trials best first (further step, then non-dominated rank at that step, then
    number), and those that cannot be judged."""
    judged: dict[int, list[tuple[FrozenTrial, list[float]]]] = {}
    unjudged = []
    for trial in trials:
        values = _judged(trial, goals)
        if values is None:
            unjudged.append(trial)
        else:
            judged.setdefault(_reached(trial), []).append((trial, values))
    ranked: list[FrozenTrial] = []
    for step in sorted(judged, reverse=True):
        group = judged[step]
        ranks = nondominated_ranks([values for _, values in group])
        order = sorted(range(len(group)), key=lambda i: (ranks[i], group[i][0].number))
        ranked.extend(group[i][0] for i in order)
    return ranked, unjudged


def split_trials(
    study: optuna.Study, trials: list[FrozenTrial], n_below: int, goals: Sequence[Goal]
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """Optuna's good/bad split with feasible PRUNED trials ranked by :func:`rank_pruned`.

    Optuna sorts PRUNED trials by a score that ties for all of them in a multi-objective
    study, stably: the order they are handed in is their rank. Those that cannot be judged
    are kept out of it and added to the bad set. Trials violating a constraint (at their
    last report, for PRUNED ones) are left to Optuna, which ranks them after all others.
    """
    pruned = [t for t in trials if t.state == TrialState.PRUNED and not _infeasible(t)]
    if not pruned:
        return _split_trials(study, trials, n_below)
    ranked, unjudged = rank_pruned(pruned, goals)
    ids = {t.number for t in pruned}
    rest = [t for t in trials if t.number not in ids]
    below, above = _split_trials(study, rest + ranked, n_below)
    return below, sorted(above + unjudged, key=lambda t: t.number)


class PrunedAwareTPESampler(optuna.samplers.TPESampler):
    """TPE whose multi-objective good/bad split ranks PRUNED trials (module docstring);
    single-objective studies are Optuna's TPE unchanged."""

    def __init__(self, goals: Sequence[Goal], **options: Any) -> None:
        super().__init__(**options)
        self._goals = list(goals)

    def _sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        # TPESampler._sample (Optuna 5.0) with hpo's split. The trials are those the ask
        # read when this trial started, running ones included (Optuna reads them again
        # with constant liar: one more storage read per trial for a few milliseconds).
        states = [TrialState.COMPLETE, TrialState.PRUNED]
        if self._constant_liar:
            states.append(TrialState.RUNNING)
        trials = study._get_trials(deepcopy=False, states=tuple(states), use_cache=True)
        trials = [t for t in trials if t.number != trial.number]
        gamma = self._gamma or default_gamma_multiobjective
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        below, above = split_trials(study, trials, gamma(finished), self._goals)
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        samples = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        chosen = self._compare(
            samples, self._compute_acquisition_func(samples, mpe_below, mpe_above))
        return {name: dist.to_external_repr(chosen[name]) for name, dist in search_space.items()}
