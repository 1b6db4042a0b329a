"""Optuna samplers by name, built lazily.

``auto`` is ``tpe`` or, once the trials prove to take 5 s or more and early stopping cannot
act on them, ``gp-tpe`` (several objectives, torch installed: :mod:`hpo.samplers._auto`).

``tpe`` is multivariate TPE (grouped for conditional spaces, constant liar for parallel
trials): cheap per suggestion and at home in conditional spaces. For two or more
objectives it is tuned (:func:`tpe_options`): its "good" set is the best 15% of the
finished trials (Optuna's multi-objective default: 10%) and it picks each suggestion among
12 candidates drawn from that set (default: 24), a wider, less greedy search that covers
more of the front. Over 10 seeds of ``benchmarks/sample_efficiency.py`` it beat or matched
Optuna's TPE, NSGA-II and random samplers on all five problems at 50, 100 and 200 trials,
where the defaults trailed univariate TPE on ``srn`` and NSGA-II on ``curves`` at 200
trials (docs/benchmarks.md). Single-objective studies keep Optuna's defaults.
With several objectives and early stopping it chooses its good set at one budget, as
BOHB does (:mod:`hpo.samplers._pruned`): among the COMPLETE trials once
``run.startup_trials`` of them exist, before that among the trials that reached the
furthest report that many did, ranked there as MO-ASHA ranks them at a rung.
``gp`` (Optuna's GP, learning from failed trials: :mod:`hpo.samplers._gp`) is available by
name. It fits one Gaussian process per objective and constraint, and its cost grows with
the trials: with two objectives and two constraints (``bnh``, greenlet's batched L-BFGS-B)
213 ms per suggestion on average over the first 50 on an idle 2-core Zen 5, 750 ms over
200 (1.3 s at the end), against the 250 ms a 5-second trial allows its sampler; several
seconds on a loaded machine. It is more sample-efficient than ``tpe`` on ``bnh`` and
``constr`` (and ``tnk`` at 50 trials, ``srn`` at 200), far less on ``srn`` at 50 and 100
trials, where it fills one part of the front, and it stalls on ``tnk``
(``benchmarks/sample_efficiency.py``, docs/benchmarks.md). hpo's TPE takes milliseconds.
``gp-tpe`` (:mod:`hpo.samplers._gp_tpe`) gives GP and hpo's TPE turns: more
sample-efficient than TPE on the constrained problems, and than GP at 50 and 100 trials
but on ``bnh``, at a fraction of GP's cost per trial; for trials of seconds or more.

``run.startup_trials`` (default 10, Optuna's) random trials come before TPE models the
results.

Every sampler reads constraint values that hpo stores on each trial, so feasibility
guides the search whichever is chosen.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from hpo.samplers._auto import GP_MODULES, AutoSampler, auto_choice, can_choose_gp
from hpo.samplers._fallback import ATTR_SAMPLER_ERROR, FallbackOnError
from hpo.samplers._slow import is_slow

if TYPE_CHECKING:
    from hpo.spec import StudySpec

GOOD_FRACTION = 0.15
"""Multi-objective TPE: the share of finished trials (best ranks first) that form the
"good" density."""
EI_CANDIDATES = 12
"""Multi-objective TPE: candidates drawn from the good density per suggestion."""


def good_trials(finished: int) -> int:
    """How many of ``finished`` trials TPE models as good (multi-objective studies)."""
    return math.ceil(GOOD_FRACTION * finished)


def tpe_options(spec: StudySpec) -> dict[str, Any]:
    """TPESampler keyword arguments besides the seed (see the module docstring)."""
    options: dict[str, Any] = {
        "multivariate": True, "group": spec.has_conditions, "constant_liar": True,
        "n_startup_trials": spec.startup_trials}
    if len(spec.directions) > 1:
        options.update(gamma=good_trials, n_ei_candidates=EI_CANDIDATES)
    return options


def _tpe(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    # hpo.spec imports this module; hpo.stopping and hpo.samplers._pruned import hpo.spec
    from hpo.samplers._pruned import PrunedAwareTPESampler
    from hpo.stopping import rung_ranking

    with warnings.catch_warnings():
        # ``gamma`` is deprecated since Optuna 4.9 and slated for removal in 6.0 (pinned
        # below it in pyproject.toml); the warning would reach every study's log.
        warnings.filterwarnings("ignore", "`gamma`", FutureWarning)
        # ``group`` (conditional spaces) is experimental in Optuna: said once here, not in
        # every study's output.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if len(spec.directions) > 1:
            return PrunedAwareTPESampler(
                rung_ranking(spec), spec.startup_trials, spec.goals, seed=seed,
                **tpe_options(spec))
        return optuna.samplers.TPESampler(seed=seed, **tpe_options(spec))


def _gp_sampler(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    from hpo.samplers._gp import HpoGPSampler

    return HpoGPSampler(seed=seed)


def _gp_tpe_sampler(
    seed: int, spec: StudySpec, tpe: optuna.samplers.BaseSampler | None = None
) -> optuna.samplers.BaseSampler:
    from hpo.samplers._gp_tpe import GPTPESampler

    return GPTPESampler(tpe or _tpe(seed, spec), seed, spec.startup_trials)


def _auto_sampler(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    tpe = _tpe(seed, spec)
    if not can_choose_gp(spec):
        return tpe
    return AutoSampler(tpe, lambda: _gp_tpe_sampler(seed, spec, tpe), spec.startup_trials,
                       stops_early=spec.stopping.scheduler != "none")


def _nsga2(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(
        seed=seed, population_size=min(50, max(8, spec.trials // 5))
    )


def _random(seed: int, spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


SAMPLER_MODULES: dict[str, tuple[str, ...]] = {"gp": GP_MODULES, "gp-tpe": GP_MODULES}
"""Modules a sampler imports beyond hpo's dependencies, checked by preflight before a
study starts rather than at the first GP suggestion."""

SAMPLERS: dict[str, Callable[[int, StudySpec], optuna.samplers.BaseSampler]] = {
    "auto": _auto_sampler,
    "tpe": _tpe,
    "gp": _gp_sampler,
    "gp-tpe": _gp_tpe_sampler,
    "nsga2": _nsga2,
    "random": _random,
}


def create_sampler(spec: StudySpec, session: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the study asks for, seeded from the study seed and the driver session,
    in :class:`FallbackOnError` (a trial whose sampler raises is drawn at random).

    Session 0 (the first driver of the study) uses the study seed itself; every later
    session (a resume, another driver sharing the study) gets its own seed, so it does not
    replay the configurations an earlier session drew, and the run stays reproducible from
    the same sequence of commands.
    """
    seed = spec.seed if session == 0 else (spec.seed + 1_000_003 * session) % (2**31 - 1)
    return FallbackOnError(SAMPLERS[spec.sampler](seed, spec), spec.sampler, seed)


__all__ = [
    "ATTR_SAMPLER_ERROR",
    "SAMPLERS",
    "SAMPLER_MODULES",
    "FallbackOnError",
    "auto_choice",
    "create_sampler",
    "good_trials",
    "is_slow",
    "tpe_options",
]
