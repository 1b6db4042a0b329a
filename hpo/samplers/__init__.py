"""Optuna samplers by name, built lazily.

``auto`` is multivariate TPE (grouped for conditional spaces, constant liar for parallel
trials): cheap per suggestion and at home in conditional spaces. ``gp`` stays available by
name but is not the default: with two objectives and two constraints (``bnh``) it took
0.6-1.1 s of CPU per suggestion at 15-30 trials, with greenlet's batched L-BFGS-B, and 3-7 s
of wall time on the shared 2-core machine (it fits one Gaussian process per objective and
constraint, and the cost grows with the trials), 4 to 40 times the 250 ms a 5-second trial
allows its sampler; hpo's TPE took 10-40 ms on average (``benchmarks/sample_efficiency.py``,
docs/benchmarks.md).

Every sampler reads constraint values that hpo stores on each trial, so feasibility
guides the search whichever is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from hpo.spec import StudySpec

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


SAMPLERS: dict[str, Callable[[int, StudySpec], optuna.samplers.BaseSampler]] = {
    "auto": _tpe,
    "tpe": _tpe,
    "gp": _gp,
    "nsga2": _nsga2,
    "random": _random,
}


def create_sampler(spec: StudySpec, session: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the study asks for, seeded from the study seed and the driver session.

    Session 0 (the first driver of the study) uses the study seed itself; every later
    session (a resume, another driver sharing the study) gets its own seed, so it does not
    replay the configurations an earlier session drew, and the run stays reproducible from
    the same sequence of commands.
    """
    seed = spec.seed if session == 0 else (spec.seed + 1_000_003 * session) % (2**31 - 1)
    return SAMPLERS[spec.sampler](seed, spec)


__all__ = ["SAMPLERS", "create_sampler"]
