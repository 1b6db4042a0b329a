"""Fault injection: a trial process, a driver or the database dies during a study.

Each test asserts what a user relies on afterwards: exactly N finished trials, failures
recorded with their reason, and no MLflow run left RUNNING.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.conftest import TESTS_DIR, NewDatabase, RunHpo, hpo_env
from tests.study_checks import counted, load_trials, mlflow_runs

pytestmark = pytest.mark.integration

SQLITE = "sqlite:///{}/storage/optuna.db"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def _assert_mlflow_consistent(
    workdir: Path, name: str, trials: list, tracking: str | None = None
) -> dict[int, str]:
    """One parent run, FINISHED; exactly one child per trial, none RUNNING, each the run
    its trial records. Child status by trial."""
    uri = tracking or f"sqlite:///{workdir}/storage/mlflow.db"
    parents, runs = mlflow_runs(mlflow.MlflowClient(tracking_uri=uri), name)
    assert [p.info.status for p in parents] == ["FINISHED"]
    numbers = sorted(int(r.data.tags["hpo.trial"]) for r in runs)
    assert numbers == sorted(t.number for t in trials)  # one each, none duplicated
    children = {int(r.data.tags["hpo.trial"]): r.info.status for r in runs}
    assert "RUNNING" not in children.values(), children
    # A trial records its run when it ends (not one whose driver was killed under it).
    recorded = {t.number: t.user_attrs.get("mlflow_run_id") for t in trials
                if not t.user_attrs.get("interrupted")}  # fmt: skip
    ids = {int(r.data.tags["hpo.trial"]): r.info.run_id for r in runs}
    assert recorded == {number: ids[number] for number in recorded}
    return children


def _start(workdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args], cwd=workdir, env=hpo_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _states(storage: str) -> list[str]:
    """The trials' states, read without creating anything (the driver creates the study)."""
    engine = sqlalchemy.create_engine(storage)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sqlalchemy.text("SELECT state FROM trials")).scalars())
    except sqlalchemy.exc.SQLAlchemyError:  # no database or no tables yet
        return []
    finally:
        engine.dispose()


def _wait_for(
    driver: subprocess.Popen[str], storage: str, count: int, states: tuple[str, ...] = FINISHED
) -> None:
    """Until ``count`` trials are in one of ``states``."""
    deadline = time.monotonic() + 180
    while sum(state in states for state in _states(storage)) < count:
        assert driver.poll() is None, driver.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"fewer than {count} {states} trials after 180 s"
        time.sleep(0.2)


def test_trial_process_killed_is_failed_then_retried_up_to_max(
    workdir: Path, run_hpo: RunHpo
) -> None:
    # Trial 1 and its first retry kill their Ray worker process (SIGKILL) mid-run: with
    # --max-retries 1 the retry is run once, then its failure stands.
    study_file = str(TESTS_DIR / "support" / "self_killing.yaml")
    result = run_hpo("study", study_file, "--trials", "4", "--max-retries", "1",
                     "--set", "objective.args.crashes=2", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "done: 4/4 finished" in result.stdout

    trials = load_trials(SQLITE.format(workdir), "self_killing")
    assert len(counted(trials)) == 4 and len(trials) == 5
    crashed, retry = trials[1], trials[2]
    died = "the trial's worker process died (killed, out of memory or crashed)"
    assert crashed.state == TrialState.FAIL and crashed.user_attrs["fail_reason"] == died
    assert crashed.user_attrs["retried"] is True  # not counted: its retry is
    assert retry.params == crashed.params
    assert (retry.user_attrs["retry_of"], retry.user_attrs["attempt"]) == (1, 1)
    assert retry.state == TrialState.FAIL and retry.user_attrs["fail_reason"] == died
    assert "retried" not in retry.user_attrs  # max retries reached: this failure counts
    assert [t.state for t in (trials[0], *trials[3:])] == [TrialState.COMPLETE] * 3

    children = _assert_mlflow_consistent(workdir, "self_killing", trials)
    assert (children[1], children[2]) == ("FAILED", "FAILED")


def test_driver_on_another_host_killed_its_trials_are_rerun_by_heartbeat(
    workdir: Path, run_hpo: RunHpo
) -> None:
    # Every trial runs its 5 s in full (no early stopping), so one is surely running when
    # the driver is killed.
    args = ("study", "curves", "--trials", "4", "--backend", "local", "--no-progress",
            "--no-report", "--set", "objective.args.steps=20",
            "--set", "objective.args.step_seconds=0.25", "--set", "run.heartbeat_interval=1",
            "--scheduler", "none", "--set", "stopping.infeasible=null",
            "--set", "stopping.degenerate={}")
    storage = SQLITE.format(workdir)
    driver = _start(workdir, *args)
    _wait_for(driver, storage, 1)
    _wait_for(driver, storage, 1, ("RUNNING",))
    time.sleep(1.5)  # the trial beats
    driver.kill()
    driver.communicate(timeout=60)
    # As if that driver had run on another machine: its pid means nothing here, only the
    # trial's heartbeat (now stopped) tells that it is gone.
    study = optuna.load_study(study_name="curves", storage=storage)
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1
    study._storage.set_trial_system_attr(running[0]._trial_id, "hpo:driver", "elsewhere:1")
    time.sleep(3.5)  # the grace period: 3 heartbeat intervals

    result = run_hpo(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = load_trials(storage, "curves")
    assert len(counted(trials)) == 4
    stale = trials[running[0].number]
    assert stale.state == TrialState.FAIL and stale.user_attrs["interrupted"] is True
    assert [t.params for t in counted(trials)].count(stale.params) == 1  # run again
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    children = _assert_mlflow_consistent(workdir, "curves", trials)
    assert children[stale.number] == "KILLED"


def _killed_in_ask(workdir: Path, commit: int, *options: str) -> None:
    script = TESTS_DIR / "support" / "killed_in_ask.py"
    child = subprocess.run([sys.executable, str(script), "curves", str(commit), *options],
                           cwd=workdir, env=hpo_env(), capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert child.returncode == -9, child.stderr[-3000:]


def test_driver_killed_while_asking_leaves_no_trial_that_holds_the_budget(
    workdir: Path, run_hpo: RunHpo
) -> None:
    # A driver killed between two storage commits of its ask must leave no RUNNING trial
    # that no driver owns: recovery must be able to close every trial it leaves.
    _killed_in_ask(workdir, 0)  # after a whole ask: the trial has its params
    # Closes that trial (dead driver) and enqueues its re-run, which it takes in its first
    # write, then dies.
    _killed_in_ask(workdir, 1, "--recover")
    # A new trial, killed at its first write; as if on another host: only its heartbeat
    # can tell that its driver is gone.
    _killed_in_ask(workdir, 1, "--host", "elsewhere")
    time.sleep(3.5)  # the grace period: 3 heartbeat intervals of 1 s
    storage = SQLITE.format(workdir)
    asked = load_trials(storage, "curves")
    assert [t.state for t in asked] == [TrialState.FAIL] + [TrialState.RUNNING] * 2
    assert asked[1].system_attrs.get("fixed_params") == asked[0].params != {}
    # Taken with the driver that runs it, in the write that made it RUNNING.
    drivers = [t.system_attrs.get("hpo:driver", "none") for t in asked[1:]]
    assert drivers[0].startswith(f"{socket.gethostname()}:") and drivers[1] == "elsewhere:1"

    result = run_hpo("study", "curves", "--trials", "3", "--backend", "local", "--no-progress",
                     "--no-report", "--set", "objective.args.steps=3",
                     "--set", "run.heartbeat_interval=1")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = load_trials(storage, "curves")
    assert len(counted(trials)) == 3, [(t.number, t.state, t.user_attrs) for t in trials]
    assert all(t.user_attrs.get("interrupted") for t in trials[:3])
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert [t.params for t in counted(trials)].count(asked[0].params) == 1  # run again


def _pg_ctl(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "15", "main", action, *(["-m", "fast"] * (action == "stop"))],
                   check=True, timeout=60)  # fmt: skip


def test_database_restart_during_study_is_ridden_out(
    workdir: Path, run_hpo: RunHpo, new_database: NewDatabase
) -> None:
    if os.geteuid() != 0 or not Path("/usr/bin/pg_ctlcluster").exists():
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster")
    # Optuna and MLflow (its SQLAlchemy store) on the same server. Trials of 4 s (no early
    # stopping) whose metrics are logged every 2 s: MLflow is written to during the outage.
    storage, tracking = new_database(), new_database()
    args = ("study", "curves", "--trials", "6", "--backend", "local", "--no-progress",
            "--no-report", "--set", "objective.args.steps=8",
            "--set", "objective.args.step_seconds=0.5", "--scheduler", "none",
            "--set", "stopping.infeasible=null", "--set", "stopping.degenerate={}",
            "--storage", storage, "--tracking-uri", tracking)  # fmt: skip
    driver = _start(workdir, *args)
    try:
        _wait_for(driver, storage, 2)
        _pg_ctl("stop")  # the server is away for a few seconds, during a trial
        time.sleep(3)
    finally:
        _pg_ctl("start")
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output[-3000:]
    assert "storage: cannot reach" in output and "retrying" in output  # it did go away
    # MLflow's writer retries too ("tracking: cannot reach ..."), but only when one of its
    # writes falls inside the 3-second outage, which timing does not guarantee; the MLflow
    # consistency checks below hold either way.
    assert "Traceback" not in output, output[output.find("Traceback") - 1500 :][:4000]
    assert "warning: MLflow" not in output, output[-3000:]

    trials = load_trials(storage, "curves")
    assert len(counted(trials)) == 6 and len(trials) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    _assert_mlflow_consistent(workdir, "curves", trials, tracking)
