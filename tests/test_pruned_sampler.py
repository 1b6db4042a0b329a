"""The ``auto`` sampler learns from stopped (PRUNED) trials of a multi-objective study.

A real Optuna study in SQLite, filled through hpo's own ask/tell: one COMPLETE trial, many
trials stopped at the first rung far from it, later trials stopped at a further rung near
it with good metrics, and trials that reached furthest with the best metrics but were
stopped as degenerate or infeasible.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.samplers import create_sampler
from hpo.samplers._pruned import split_trials
from hpo.spec import StudySpec, build_spec
from hpo.stopping import Stop
from hpo.trials import Outcome, ask, decide, tell

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

STUDY = {
    "objective": {"name": "curves"},
    "parameters": {"alpha_ce": {"type": "float", "low": 0.0, "high": 1.0}},
    "objectives": [{"metric": "exact", "direction": "maximize"},
                   {"metric": "num_params", "direction": "minimize"}],
    "constraints": ["exact >= 50"],
    "run": {"seed": 0},
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


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, StudySpec]:
    spec = build_spec(STUDY, "pruned", "pruned.yaml")
    storage = f"sqlite:///{Path(tmp_path_factory.mktemp('pruned')) / 'optuna.db'}"
    study = optuna.create_study(storage=storage, directions=spec.directions,
                                sampler=create_sampler(spec))
    for i in range(4):  # reached furthest, best metrics, but degenerate / infeasible
        _stopped(spec, study, DEGENERATE_X + 0.01 * i, 95, 10, "degenerate: always-no-answer")
        _stopped(spec, study, INFEASIBLE_X + 0.01 * i, 40, 10, "infeasible: exact >= 50")
    for i in range(16):  # stopped at the first rung, far from the good region
        _stopped(spec, study, 0.8 + 0.0125 * i, 55 + i, 2, "moasha: rung 2")
    _complete(spec, study, GOOD_X, 80)
    for i in range(5):  # stopped later, at a further rung, near the COMPLETE trial
        _stopped(spec, study, GOOD_X - 0.04 + 0.02 * i, 70 + i, 6, "moasha: rung 6")
    return study, spec


def test_good_set_takes_complete_first_then_the_furthest_best_stopped_trials(
    study: tuple[optuna.Study, StudySpec],
) -> None:
    optuna_study, spec = study
    trials = optuna_study.get_trials(deepcopy=False, states=FINISHED)
    below, above = split_trials(optuna_study, trials, 5, spec.goals)  # 15% of 30
    xs = sorted(t.params["alpha_ce"] for t in below)
    assert xs == pytest.approx([0.48, 0.5, 0.5, 0.52, 0.54])  # the COMPLETE one and the
    # four best at rung 6 (exact 71-74), not the one with exact 70
    assert len(below) + len(above) == len(trials)
    assert [t.user_attrs["stopped"] for t in above[:8]] == [
        "degenerate: always-no-answer", "infeasible: exact >= 50"] * 4


def test_suggestions_follow_good_stopped_trials_not_degenerate_or_infeasible_ones(
    study: tuple[optuna.Study, StudySpec],
) -> None:
    optuna_study, spec = study
    xs = [ask(optuna_study, spec)[1]["alpha_ce"] for _ in range(6)]  # RUNNING: constant liar
    near_good = [x for x in xs if abs(x - GOOD_X) < 0.15]
    assert len(near_good) >= 5, xs
    assert not [x for x in xs if abs(x - DEGENERATE_X) < 0.1 or x < INFEASIBLE_X + 0.1], xs
