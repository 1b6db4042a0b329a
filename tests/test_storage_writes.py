"""What a driver writes to the study's SQLite storage per trial, and how many commits it
takes (the commit is most of a write's cost: these are the orchestration overhead)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

from hpo.samplers import create_sampler
from hpo.settings import Settings
from hpo.spec import StudySpec, load_spec
from hpo.storage import open_storage
from hpo.trials import ask, budget_taken, counts_towards_budget, decide, tell

GOOD = {"f1": 10.0, "f2": 20.0, "c1": 3.0, "c2": 50.0, "hpo_final": True}


@pytest.fixture
def spec() -> StudySpec:
    # tpe, not auto: auto adds one commit, once per study, when it records its choice
    return load_spec("bnh", [("run.startup_trials", 3), ("run.sampler", "tpe")])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings.resolve(env={"HPO_HOME": str(tmp_path)})
    settings.prepare()
    return settings


def _study(settings: Settings, spec: StudySpec) -> optuna.Study:
    storage = open_storage(settings, create=True, spec=spec)
    return optuna.create_study(
        study_name="s", storage=storage, directions=spec.directions,
        sampler=create_sampler(spec), load_if_exists=True,
    )


@contextmanager
def _commits(study: optuna.Study) -> Iterator[list[int]]:
    """The transactions committed inside the block that wrote something."""
    engine = study._storage._backend.engine  # type: ignore[attr-defined]
    commits: list[int] = []
    writing = [False]

    def statement(conn: object, cursor: object, sql: str, *args: object) -> None:
        writing[0] |= sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))

    def commit(conn: object) -> None:
        if writing[0]:
            commits.append(1)
        writing[0] = False

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield commits
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


def test_a_trial_is_asked_in_two_commits_and_told_in_two(
    settings: Settings, spec: StudySpec
) -> None:
    study = _study(settings, spec)
    asked = []
    for _ in range(5):  # past the 3 random startup trials: TPE samples them jointly
        with _commits(study) as commits:
            trial, params = ask(study, spec, {"hpo.test": "yes"})
        assert len(commits) == 2, "one to start the trial with its attributes, one for params"
        with _commits(study) as commits:
            tell(study, trial, decide(spec, trial.number, params, GOOD))
        assert len(commits) == 2, "one for the outcome's attributes, one for its state and values"
        asked.append(params)

    # Everything reached the database: read it back through a storage of its own.
    stored = _study(settings, spec).get_trials()
    assert [t.params for t in stored] == asked
    assert all(t.state == TrialState.COMPLETE and t.values == [10.0, 20.0] for t in stored)
    assert all(t.user_attrs["hpo.test"] == "yes" and "seed" in t.user_attrs for t in stored)
    assert all(t.constraints == {"0": 3.0 - 25, "1": 7.7 - 50.0} for t in stored)
    relative = [t for t in stored if any(k.startswith("tpe:relative") for k in t.system_attrs)]
    assert [t.number for t in relative] == [3, 4], "constant liar shares TPE's joint samples"


def test_the_budget_counted_in_the_database_is_the_trials_counted(
    settings: Settings, spec: StudySpec
) -> None:
    study = _study(settings, spec)
    for result, crashed, retries in (
        (GOOD, False, 0),  # COMPLETE: counts
        ({"f1": 1.0, "hpo_step": 2}, False, 0),  # PRUNED: counts
        ({"hpo_error": "boom", "hpo_final": True}, False, 0),  # FAIL: counts
        (None, False, 0),  # interrupted: does not count, and is enqueued again...
        (None, True, 1),  # ... run as the next trial, crashed, retried: does not count
    ):
        trial, params = ask(study, spec)
        outcome = decide(spec, trial.number, params, result, crashed=crashed)
        outcome.max_retries = retries
        tell(study, trial, outcome)
    ask(study, spec)  # the retry, RUNNING: counts
    trials = study.get_trials()
    assert [t.user_attrs.get("retry_of") for t in trials] == [None] * 5 + [4]
    expected = sum(counts_towards_budget(t) or t.state == TrialState.RUNNING for t in trials)
    assert budget_taken(study) == expected == 4


def test_sqlite_databases_are_in_write_ahead_log_mode(settings: Settings) -> None:
    for name in ("optuna.db", "mlflow.db"):
        with sqlite3.connect(settings.home / name) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
