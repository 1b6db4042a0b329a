"""``run.sampler: auto``: hpo's TPE, or ``gp-tpe`` where the trials are slow enough for GP.

``gp-tpe`` is the more sample-efficient on every constrained benchmark problem
(docs/benchmarks.md), but a GP turn costs tenths of a second late in a 200-trial study (on
an idle 2-core machine 90-130 ms per trial on average over 200 trials, single turns up to
about 470 ms), a TPE turn about 1 ms. On Ray the driver asks GP for the next trial while
the running ones run (:mod:`hpo.execution._searcher`), so workers do not wait for it: on
5-second trials (issue 7.1's benchmark, 200 trials, 2 at a time) worker utilization was
0.983 with ``gp-tpe`` (0.935 before the driver asked ahead), and on 1-second trials
``gp-tpe`` cost no more per trial than ``tpe``. It still takes the driver's CPU, so ``auto``
keeps it for trials of :data:`GP_TRIAL_SECONDS` or more, where its cost one trial at a time
is under 5% of a trial, the share issue 7.2 allows a sampler, and with two workers too
(74-117 ms per trial on average over 200 trials, 132-192 ms over the last 50, on the five
benchmark problems, idle; docs/benchmarks.md).

So with several objectives and torch installed (Optuna's GP is written in it), ``auto``
starts as hpo's TPE (the start-up trials are random either way) and decides once, at the
first trial after the start-up ones: ``gp-tpe`` when the COMPLETE trials so far took
:data:`GP_TRIAL_SECONDS` or more (median, from their start and end times in storage) and
early stopping cannot act on them (no scheduler, or no trial reported more than once: a
trial's last report is never a rung), TPE otherwise: GP learns only from trials that ran
to the end, where hpo's TPE also learns from stopped ones, ranked at the budget they
reached. The choice and its reason are printed once and stored on the study
(:data:`CHOICE_ATTR`), so a resume and every driver sharing the study keep it, whatever
their machine's speed. Otherwise ``auto`` is hpo's TPE throughout (``hpo.samplers``).
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.samplers._slow import is_slow

if TYPE_CHECKING:
    from hpo.spec import StudySpec

GP_TRIAL_SECONDS = 5.0
"""COMPLETE trials at least this long (median, when ``auto`` decides) make it choose
``gp-tpe``."""

CHOICE_ATTR = "hpo:auto_sampler"
"""Study system attribute: ``{"sampler": "gp-tpe" or "tpe", "reason": ..., "trial": N}``."""


GP_MODULES = ("torch",)
"""What ``gp`` and ``gp-tpe`` import beyond hpo's dependencies (Optuna's GP is written in
torch)."""


def can_choose_gp(spec: StudySpec) -> bool:
    """Whether ``auto`` may choose ``gp-tpe`` for this study, given slow enough trials."""
    return len(spec.directions) > 1 and all(
        importlib.util.find_spec(module) is not None for module in GP_MODULES)


def choose(study: optuna.Study, stops_early: bool) -> tuple[str, str] | None:
    """``auto``'s sampler for ``study`` and why (``stops_early``: the study has a
    scheduler); None while no trial has completed."""
    from hpo.trials import ATTR_REPORTS  # hpo.trials imports hpo.spec, which imports us

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    reports = max((len(t.user_attrs.get(ATTR_REPORTS, ())) for t in finished), default=0)
    if stops_early and reports > 1:
        return "tpe", (f"trials report up to {reports} times and are stopped early; GP learns "
                       "only from those that finish")  # fmt: skip
    seconds = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in finished
        if t.state == TrialState.COMPLETE and t.datetime_start and t.datetime_complete
    ]
    if not seconds:
        return None
    median = statistics.median(seconds)
    if median < GP_TRIAL_SECONDS:
        return "tpe", f"trials take {median:.3g} s (median), under {GP_TRIAL_SECONDS:g} s"
    return "gp-tpe", f"trials take {median:.3g} s (median), at least {GP_TRIAL_SECONDS:g} s"


def auto_choice(study: optuna.Study) -> str | None:
    """What ``auto`` chose for ``study`` and why, in words; None before it chose."""
    choice = study._storage.get_study_system_attrs(study._study_id).get(CHOICE_ATTR)
    return _described(choice) if isinstance(choice, dict) else None


def _described(choice: dict[str, Any]) -> str:
    return f"{choice['sampler']} from trial {choice['trial']} ({choice['reason']})"


class AutoSampler(optuna.samplers.BaseSampler):
    def __init__(
        self, tpe: optuna.samplers.BaseSampler, gp_tpe: Callable[[], optuna.samplers.BaseSampler],
        startup_trials: int, stops_early: bool,
    ) -> None:
        self._tpe, self._make_gp_tpe = tpe, gp_tpe
        """``gp_tpe()`` builds ``gp-tpe`` on this same TPE (its start-up trials are TPE's)."""
        self._startup_trials, self._stops_early = startup_trials, stops_early
        self._chosen: optuna.samplers.BaseSampler | None = None

    @property
    def slow(self) -> bool:
        """Whether it chose ``gp-tpe``."""
        return is_slow(self._chosen)

    def _sampler(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._chosen is not None or trial.number < self._startup_trials:
            return self._chosen or self._tpe
        choice = study._storage.get_study_system_attrs(study._study_id).get(CHOICE_ATTR)
        if choice is None:
            decided = choose(study, self._stops_early)
            if decided is None:
                return self._tpe  # asked again at the next trial
            choice = {"sampler": decided[0], "reason": decided[1], "trial": trial.number}
            study._storage.set_study_system_attr(study._study_id, CHOICE_ATTR, choice)
            print(f"sampler auto: {_described(choice)}", flush=True)
        self._chosen = self._make_gp_tpe() if choice["sampler"] == "gp-tpe" else self._tpe
        return self._chosen

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._sampler(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._sampler(study, trial).sample_independent(
            study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler(study, trial).before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        (self._chosen or self._tpe).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        (self._chosen or self._tpe).reseed_rng()
