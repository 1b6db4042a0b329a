"""With a slow sampler and trials on Ray, the driver asks for the next trial while the
running ones run (hpo.execution._searcher): what storage, observers, the budget and an
interruption see of the trial asked ahead."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.execution import _searcher as _searcher_module
from hpo.execution._searcher import StudySearcher
from hpo.recovery import Heartbeat
from hpo.runner import restored_stopping
from hpo.samplers import create_sampler
from hpo.settings import Settings
from hpo.spec import StudySpec, load_spec
from hpo.storage import open_storage
from hpo.summary import StudySummary
from hpo.trials import SYSTEM_ASKED_AHEAD, Outcome

from .conftest import TESTS_DIR, RunHpo

pytest.importorskip("torch")  # gp-tpe, a slow sampler, is written in it

GOOD = {"f1": 10.0, "f2": 20.0, "c1": 3.0, "c2": 50.0, "hpo_final": True}


class Seen:
    """An observer: which trials it saw start and end."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []

    def trial_started(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        self.started.append(trial.number)

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def trial_finished(self, outcome: Outcome, summary: StudySummary) -> None:
        self.finished.append(outcome.number)


@pytest.fixture
def spec() -> StudySpec:
    return load_spec("bnh", [("run.trials", 4), ("run.sampler", "gp-tpe")])


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Where the study lives; with PostgreSQL the thread that asks ahead takes the study's
    lock on the server (an advisory lock), not a file's."""
    env = {"HPO_HOME": str(tmp_path)}
    if request.param == "postgresql":
        env["HPO_STORAGE"] = request.getfixturevalue("new_database")()
    settings = Settings.resolve(env=env)
    settings.prepare()
    return settings


def _searcher(settings: Settings, spec: StudySpec, seen: Seen) -> StudySearcher:
    study = optuna.create_study(
        study_name=spec.name, storage=open_storage(settings, create=True, spec=spec),
        directions=spec.directions, sampler=create_sampler(spec))  # fmt: skip
    return StudySearcher(study, spec, settings, [seen], restored_stopping(study, spec),
                         heartbeat=Heartbeat(study, spec.heartbeat_interval),
                         ask_ahead=True)  # fmt: skip


def _trials(searcher: StudySearcher, count: int) -> list[optuna.trial.FrozenTrial]:
    """The study's trials once there are ``count``, the last with its parameters (the next
    one is asked in a thread: created, then its parameters written)."""
    deadline = time.monotonic() + 60
    while len(trials := searcher.study.get_trials()) < count or not trials[count - 1].params:
        assert time.monotonic() < deadline, f"{len(trials)} trials, expected {count}"
        time.sleep(0.01)
    return trials


def _ahead(trial: optuna.trial.FrozenTrial) -> Any:
    return trial.system_attrs.get(SYSTEM_ASKED_AHEAD)


def test_the_next_trial_is_asked_ahead_waits_then_starts_when_handed_out(
    settings: Settings, spec: StudySpec
) -> None:
    seen = Seen()
    searcher = _searcher(settings, spec, seen)
    first = searcher.suggest("t0")  # not asked ahead: no trial has ended to time it by
    assert isinstance(first, dict) and first["number"] == 0
    searcher.on_trial_complete("t0", GOOD)  # a trial of milliseconds: ask ahead from now
    second = searcher.suggest("t1")
    assert isinstance(second, dict) and second["number"] == 1
    trials = _trials(searcher, 3)
    assert [_ahead(t) for t in trials] == [None, None, True]
    assert trials[2].state == TrialState.RUNNING and set(trials[2].params) == {"x", "y"}
    summary = StudySummary.of(trials, spec.goals)
    assert (summary.running, summary.waiting) == (1, 1)  # asked ahead: waiting, not running
    assert seen.started == [0, 1]  # MLflow and the progress see it once a worker has it

    time.sleep(0.3)
    handed_at = datetime.now()  # storage's clock: local, naive
    third = searcher.suggest("t2")
    assert isinstance(third, dict) and third["number"] == 2
    assert third["params"] == trials[2].params
    assert seen.started == [0, 1, 2]
    trials = _trials(searcher, 4)  # trial 2 is recorded as handed out before 3 is asked
    assert _ahead(trials[2]) is False and _ahead(trials[3]) is True
    assert trials[2].datetime_start >= handed_at  # its start is when a worker took it

    for trial_id in ("t1", "t2"):
        searcher.on_trial_complete(trial_id, GOOD)
    fourth = searcher.suggest("t3")
    assert isinstance(fourth, dict) and fourth["number"] == 3
    searcher.on_trial_complete("t3", GOOD)
    assert searcher.suggest("t4") == "FINISHED"  # the budget: nothing asked beyond it
    searcher.close_unfinished_if_any()
    study = searcher.study
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 4
    assert seen.finished == [0, 1, 2, 3] and not searcher.interrupted


def test_a_trial_asked_ahead_is_interrupted_with_the_running_ones_and_runs_again(
    settings: Settings, spec: StudySpec
) -> None:
    seen = Seen()
    searcher = _searcher(settings, spec, seen)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", GOOD)
    searcher.suggest("t1")
    asked = _trials(searcher, 3)[2]
    searcher.close_unfinished_if_any()  # the driver stops (Ctrl+C)
    assert searcher.interrupted
    study = searcher.study
    closed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in closed] == [1, 2]
    assert all(t.user_attrs.get("interrupted") for t in closed)
    assert seen.started == [0, 1] and seen.finished == [0, 1]  # no MLflow run for trial 2
    waiting = study.get_trials(states=(TrialState.WAITING,))  # enqueued to run on resume
    assert asked.params in [t.system_attrs["fixed_params"] for t in waiting]
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert not searcher.heartbeat._live  # type: ignore[union-attr]


def test_trials_much_longer_than_an_ask_are_not_asked_ahead(
    settings: Settings, spec: StudySpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for the sampler would cost such trials' workers little; asking ahead costs
    each trial the result of the one before it."""
    monkeypatch.setattr(_searcher_module, "ASK_AHEAD_SHARE", 1e6)  # as if trials took ages
    searcher = _searcher(settings, spec, Seen())
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", GOOD)
    searcher.suggest("t1")
    searcher.close_unfinished_if_any()  # waits for a trial being asked ahead, if any
    assert len(searcher.study.get_trials()) == 2 + 1  # and trial 1's configuration, enqueued


def test_a_gp_study_on_ray_never_has_more_trials_running_than_workers(
    workdir: Path, run_hpo: RunHpo
) -> None:
    """End to end: trials asked ahead, and storage's start and end times show no more
    than ``run.concurrency`` trials at once (a start time is when a worker took it)."""
    result = run_hpo("study", str(TESTS_DIR / "support" / "flaky.yaml"), "--sampler", "gp-tpe",
                     "--trials", "10", "--set", "objective.args.sleep=0.5",
                     "--set", "run.startup_trials=2")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(
        study_name="flaky", storage=f"sqlite:///{workdir / 'storage' / 'optuna.db'}")
    trials = study.get_trials()
    assert len(trials) == 10 and all(t.state.is_finished() for t in trials)
    assert sum(_ahead(t) is False for t in trials) >= 4  # from the first trial's end on
    assert not any(_ahead(t) for t in trials)
    for trial in trials:
        assert trial.datetime_start is not None and trial.datetime_complete is not None
        at_once = [t.number for t in trials if t.datetime_start <= trial.datetime_start
                   < t.datetime_complete]  # fmt: skip
        assert len(at_once) <= 2, f"running together at trial {trial.number}'s start: {at_once}"
