"""The ``auto`` sampler learns from stopped (PRUNED) trials of a multi-objective study.

Real Optuna studies in SQLite, filled through hpo's own ask/tell. The good set TPE models
is chosen at one budget (BOHB's rule): while few trials are COMPLETE, among the trials
that reached the furthest report that ``startup_trials`` of them reached, ranked on their
reports there; once that many are COMPLETE, among the COMPLETE trials only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from hpo.samplers import create_sampler, good_trials, tpe_options
from hpo.samplers._pruned import best_spread, model_budget, split_trials
from hpo.spec import StudySpec, build_spec
from hpo.stopping import Stop, rung_ranking
from hpo.trials import Outcome, ask, decide, tell

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

STUDY = {
    "objective": {"name": "curves"},
    "parameters": {"alpha_ce": {"type": "float", "low": 0.0, "high": 1.0}},
    "objectives": [{"metric": "exact", "direction": "maximize"},
                   {"metric": "num_params", "direction": "minimize"}],
    "constraints": ["exact >= 50"],
    "run": {"seed": 0},  # startup_trials: 10
}
GOOD_X = 0.5
DEGENERATE_X = 0.2
INFEASIBLE_X = 0.05


def _stopped(spec: StudySpec, study: optuna.Study, x: float, exact: float, reports: int,
             reason: str) -> None:
    study.enqueue_trial({"alpha_ce": x})
    trial, params = ask(study, spec)
    metrics = {"exact": exact, "num_params": 1e6}
    outcome = decide(spec, trial.number, params, metrics, stop=Stop(reason, "test"))
    outcome.reports = [metrics] * reports
    outcome.steps = reports
    assert tell(study, trial, outcome) and outcome.state == optuna.trial.TrialState.PRUNED


def _complete(spec: StudySpec, study: optuna.Study, x: float, exact: float) -> None:
    study.enqueue_trial({"alpha_ce": x})
    trial, params = ask(study, spec)
    metrics = {"exact": exact, "num_params": 1e6, "hpo_final": True}
    outcome: Outcome = decide(spec, trial.number, params, metrics)
    outcome.reports, outcome.steps = [metrics] * 20, 20
    assert tell(study, trial, outcome) and outcome.feasible


def _new_study(tmp: Path) -> tuple[optuna.Study, StudySpec]:
    spec = build_spec(STUDY, "pruned", "pruned.yaml")
    study = optuna.create_study(storage=f"sqlite:///{tmp / 'optuna.db'}",
                                directions=spec.directions, sampler=create_sampler(spec))
    return study, spec


def _split(study: optuna.Study, spec: StudySpec) -> tuple[list[float], list[float]]:
    """The good and bad sets' alpha_ce values, as the sampler splits the finished trials."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    below, above = split_trials(study, trials, good_trials, rung_ranking(spec),
                                spec.startup_trials, spec.goals)
    assert len(below) + len(above) == len(trials)
    return [t.params["alpha_ce"] for t in below], [t.params["alpha_ce"] for t in above]


@pytest.fixture(scope="module")
def few_complete(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, StudySpec]:
    """One COMPLETE trial: the model is built at the furthest report 10 trials reached."""
    study, spec = _new_study(tmp_path_factory.mktemp("few"))
    for i in range(4):  # reached furthest, best metrics, but degenerate / infeasible
        _stopped(spec, study, DEGENERATE_X + 0.01 * i, 95, 10, "degenerate: always-no-answer")
        _stopped(spec, study, INFEASIBLE_X + 0.01 * i, 40, 10, "infeasible: exact >= 50")
    for i in range(16):  # stopped at the first rung, far from the good region
        _stopped(spec, study, 0.8 + 0.0125 * i, 55 + i, 2, "moasha: rung 2")
    _complete(spec, study, GOOD_X, 80)
    for i in range(-9, 10):  # stopped later, at a further rung, best near the COMPLETE one
        if i:
            _stopped(spec, study, GOOD_X + 0.02 * i, 75 - abs(i), 6, "moasha: rung 6")
    return study, spec


def test_the_model_budget_is_the_furthest_report_enough_trials_reached() -> None:
    assert model_budget([20, 6, 6, 2, 2, 2], 3) == 6
    assert model_budget([20, 6, 6, 2, 2, 2], 1) == 20
    assert model_budget([20, 6, 6, 2, 2, 2], 10) == 2  # too few anywhere: the most trials
    assert model_budget([], 10) == 0


def test_with_few_complete_trials_the_good_set_is_the_best_at_the_model_budget(
    few_complete: tuple[optuna.Study, StudySpec],
) -> None:
    # 19 trials reached report 6 (the COMPLETE one and 18 stopped there): the best
    # good_trials(19) = 3 of them there; not the trials that went further but were stopped
    # as degenerate or infeasible, nor those stopped at report 2
    good, bad = _split(*few_complete)
    assert sorted(good) == pytest.approx([GOOD_X - 0.02, GOOD_X, GOOD_X + 0.02])
    assert len(bad) == 4 + 4 + 16 + 16


def test_suggestions_avoid_degenerate_infeasible_and_first_rung_trials(
    few_complete: tuple[optuna.Study, StudySpec],
) -> None:
    """30 independent suggestions (a new seed each, no trial left running): none where
    trials were stopped as degenerate or infeasible or at the first rung, some near the
    best trials. Optuna's own TPE, where every PRUNED trial ties, takes the oldest stopped
    trials for good ones: the degenerate ones."""
    study, spec = few_complete

    def suggestions(sampler: Callable[[int], optuna.samplers.BaseSampler]) -> list[float]:
        xs = []
        for seed in range(30):
            study.sampler = sampler(seed)
            trial, params = ask(study, spec)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not a trial TPE reads
            xs.append(params["alpha_ce"])
        return xs

    ours = suggestions(lambda seed: create_sampler(replace(spec, seed=seed)))
    assert not [x for x in ours if abs(x - DEGENERATE_X - 0.015) < 0.05], ours
    assert not [x for x in ours if abs(x - INFEASIBLE_X - 0.015) < 0.05], ours
    assert not [x for x in ours if x > 0.79], ours  # stopped at report 2
    assert len([x for x in ours if abs(x - GOOD_X) < 0.1]) >= 3, ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gamma is deprecated
        optunas = suggestions(lambda seed: optuna.samplers.TPESampler(seed=seed,
                                                                      **tpe_options(spec)))
    assert len([x for x in optunas if abs(x - DEGENERATE_X - 0.015) < 0.05]) >= 20, optunas


def test_with_enough_complete_trials_an_early_survivor_leaves_the_good_set(
    tmp_path: Path,
) -> None:
    """Under asynchronous successive halving the first trials continue at each rung (few
    rivals there) and complete, mediocre or not. Once startup_trials (10) trials are
    COMPLETE, the good set is Optuna's split of the COMPLETE ones: the best 15% of them,
    not every COMPLETE trial ahead of all stopped ones (which put the early mediocre one,
    x = 0.9, in the good set for good: 10 COMPLETE of 70 finished, a good set of 11)."""
    study, spec = _new_study(tmp_path)
    _complete(spec, study, 0.9, 60)  # the early survivor
    for i in range(60):  # stopped at the first rung
        _stopped(spec, study, 0.05 + 0.005 * i, 50 + 0.1 * i, 2, "moasha: rung 2")
    for i in range(9):
        _complete(spec, study, GOOD_X + 0.01 * i, 70 + i)
    good, bad = _split(study, spec)
    assert good == pytest.approx([0.57, 0.58])  # good_trials(10) = 2: exact 77 and 78
    assert 0.9 in bad
    # without stopped trials, the split is Optuna's own
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    below, _ = split_trials(study, complete, good_trials, rung_ranking(spec), 10,
                            spec.goals)
    ours = optuna.samplers._tpe.sampler._split_trials(study, complete, good_trials(10))[0]
    assert [t.number for t in below] == [t.number for t in ours]


def test_a_rank_cut_by_the_good_set_keeps_its_spread_not_its_oldest_trials() -> None:
    """Six trials on one non-dominated front (exact up, size up), the four oldest at the
    large end; a good set of 3 cut inside that rank takes the subset that dominates the
    most of the study's hypervolume (reference point: exact 0, 1e6 parameters), not the
    oldest three, which all sit at the large end. distill-squad: the first trials to reach
    a report are large students, early leaders on exact; by age alone the small ones
    rarely entered the good set and the sampler stopped proposing them."""
    goals = [{**goal, "ref": ref} for goal, ref in zip(STUDY["objectives"], [0, 1e6], strict=True)]
    spec = build_spec({**STUDY, "objectives": goals}, "pruned", "pruned.yaml")
    front = {0: (76, 444_290), 1: (75, 312_706), 2: (74, 246_018), 3: (73, 197_570),
             4: (66, 122_658), 5: (60, 89_698)}
    values = {n: {"exact": e, "num_params": p} for n, (e, p) in front.items()}
    keys = {n: (False, 0, 0) for n in front} | {6: (False, 1, 0)}
    values[6] = {"exact": 50, "num_params": 500_000}
    chosen = best_spread(values, keys, 3, spec.goals)
    assert len(chosen) == 3 and 5 in chosen and not {0, 1, 2} <= set(chosen), chosen
    assert best_spread(values, keys, 7, spec.goals) == [0, 1, 2, 3, 4, 5, 6]  # no cut
    assert best_spread(values, {n: (False, n, 0) for n in values}, 3, spec.goals) == [0, 1, 2]
