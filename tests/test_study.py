"""End to end: the real CLI with real Ray, Optuna SQLite storage and MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from hpo.provenance import cpu
from tests.conftest import TESTS_DIR, RunHpo, hpo_env
from tests.study_checks import counted, mlflow_runs

pytestmark = pytest.mark.integration

QA_METRICS = ("HasAns_exact", "NoAns_exact", "exact", "f1")


def _study(workdir: Path, name: str, *, read_only: bool = False) -> optuna.Study:
    path = f"{workdir}/storage/optuna.db"
    # Read-only while a driver may be creating the storage: Optuna would create its tables
    # too, and the driver's own creation could then fail (UNIQUE constraint failed).
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if read_only else f"sqlite:///{path}"
    return optuna.load_study(study_name=name, storage=url)


def _mlflow(workdir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir}/storage/mlflow.db")


def _runs(workdir: Path, name: str) -> tuple[list[mlflow.entities.Run], list[mlflow.entities.Run]]:
    return mlflow_runs(_mlflow(workdir), name)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return counted(study.get_trials())


def _assert_front_is_feasible_and_nondominated(
    front: list[dict], study: optuna.Study, objectives: list[tuple[str, str]]
) -> None:
    complete = [
        t
        for t in study.get_trials()
        if t.state == TrialState.COMPLETE and all(c <= 0 for c in t.constraints.values())
    ]

    def minimized(values: list[float]) -> list[float]:
        return [-v if d == "maximize" else v for v, (_, d) in zip(values, objectives, strict=True)]

    by_number = {t.number: t for t in study.get_trials()}
    assert front, "expected a non-empty feasible front"
    for row in front:
        trial = by_number[row["trial"]]
        assert trial.state == TrialState.COMPLETE
        assert trial.constraints and all(c <= 0 for c in trial.constraints.values())
        mine = minimized(trial.values)
        for other in complete:
            theirs = minimized(other.values)
            assert not (all(a <= b for a, b in zip(theirs, mine, strict=True)) and theirs != mine)
    # Every non-dominated feasible trial is on it: the same set Optuna itself reports.
    assert {row["trial"] for row in front} == {t.number for t in study.best_trials}


def test_curves_study_runs_tracks_and_resumes(workdir: Path, run_hpo: RunHpo) -> None:
    result = run_hpo("study", "curves", "--trials", "30")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "30/30 finished" in result.stdout
    # Nothing else for the user to sift: no notice from the local Ray (its token
    # authentication, its signal handlers), MLflow's new database or Optuna.
    assert result.stderr == ""
    study = _study(workdir, "curves")
    finished = _finished(study)
    assert len(finished) == 30 and len(study.get_trials()) == 30
    # Shape errors of the search space are FAIL trials with their reason; the study went on.
    failed = [t for t in finished if t.state == TrialState.FAIL]
    assert all("not divisible" in t.user_attrs["fail_reason"] for t in failed)
    # The default scheduler of a two-objective study is MO-ASHA.
    stops = {t.user_attrs.get("stopped", "") for t in finished if t.state == TrialState.PRUNED}
    assert any(reason.startswith("moasha: rung") for reason in stops), stops
    # Both constraint formats agree: Optuna's dict and the dashboard's legacy list.
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert list(trial.constraints.values()) == trial.system_attrs["constraints"]
        assert len(trial.constraints) == 2

    parents, children = _runs(workdir, "curves")
    assert len(parents) == 1 and len(children) == 30
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status != "RUNNING" for c in children)
    client = _mlflow(workdir)
    complete = next(c for c in children if c.data.tags["hpo.state"] == "COMPLETE")
    for metric in QA_METRICS:
        history = client.get_metric_history(complete.info.run_id, metric)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 21))
    assert complete.data.params["trial_number"] == complete.data.tags["hpo.trial"]
    # where it ran: the trial's attributes, also as tags of its run
    ran = study.trials[int(complete.data.tags["hpo.trial"])].user_attrs
    assert ran["cpu"] == cpu() and ran["node"].startswith(socket.gethostname() + ":")
    assert (complete.data.tags["hpo.cpu"], complete.data.tags["hpo.node"]) == (
        ran["cpu"], ran["node"])
    assert (ran["gpus"], complete.data.tags["hpo.gpus"]) == ([], "none")  # no GPU given
    assert "constraint.HasAns_exact" in complete.data.metrics
    hv = client.get_metric_history(parents[0].info.run_id, "hypervolume")
    assert max(m.step for m in hv) == 30
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"pareto_front.csv", "pareto_front.json"} <= artifacts

    pareto = run_hpo("pareto", "curves", "--format", "json")
    assert pareto.returncode == 0, pareto.stderr
    front = json.loads(pareto.stdout)
    _assert_front_is_feasible_and_nondominated(
        front, study, [("exact", "maximize"), ("num_params", "minimize")]
    )
    assert all(row["exact"] >= 50.5 and row["HasAns_exact"] >= 5 for row in front)
    assert {r["mlflow_run_id"] for r in front} <= {c.info.run_id for c in children}

    # Same command again: nothing to do, nothing duplicated.
    again = run_hpo("study", "curves", "--trials", "30")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_study(workdir, "curves").get_trials()) == 30
    parents, children = _runs(workdir, "curves")
    assert len(parents) == 1 and len(children) == 30

    status = json.loads(run_hpo("status", "curves", "--json").stdout)
    assert status["finished"] == 30
    assert status["ran_on"] == [
        {"host": socket.gethostname(), "cpu": cpu(), "gpus": "none", "trials": 30}]
    table = run_hpo("pareto", "curves")
    assert table.returncode == 0 and "exact" in table.stdout and "num_params" in table.stdout
    csv = run_hpo("pareto", "curves", "--format", "csv")
    assert len(csv.stdout.strip().splitlines()) == len(front) + 1
    held_out = run_hpo("pareto", "curves", "--held-out")  # curves keeps no models
    assert held_out.returncode == 2, held_out.stderr
    assert "objective 'curves' keeps no models to measure on held-out data" in held_out.stderr
    assert len(held_out.stderr.strip().splitlines()) == 1 and not held_out.stdout
    chosen = run_hpo("pareto", "curves", "--set", "data.test=test.json")  # without --held-out
    assert chosen.returncode == 2
    assert chosen.stderr == "hpo: error: --set chooses the held-out data: it needs --held-out\n"
    assert "curves" in run_hpo("ls").stdout


def test_bnh_with_nsga2(workdir: Path, run_hpo: RunHpo) -> None:
    result = run_hpo("study", "bnh", "--trials", "60", "--sampler", "nsga2", "--seed", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(workdir, "bnh")
    assert len(_finished(study)) == 60
    assert type(study.sampler).__name__ == "TPESampler"  # loading does not keep the sampler
    _parents, children = _runs(workdir, "bnh")
    assert len(children) == 60
    front = json.loads(run_hpo("pareto", "bnh", "--format", "json").stdout)
    _assert_front_is_feasible_and_nondominated(
        front, study, [("f1", "minimize"), ("f2", "minimize")]
    )
    assert all(row["c1"] <= 25 and row["c2"] >= 7.7 for row in front)
    status = json.loads(run_hpo("status", "bnh", "--json").stdout)
    assert status["pareto_size"] == len(front) and status["hypervolume"] > 0


def test_failing_trials_are_recorded_and_the_study_carries_on(
    workdir: Path, run_hpo: RunHpo
) -> None:
    result = run_hpo("study", str(TESTS_DIR / "support" / "flaky.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(workdir, "flaky")
    trials = study.get_trials()
    assert len(trials) == 16
    for trial in trials:
        x = trial.params["x"]
        if x > 0.8:
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs["fail_reason"].startswith("RuntimeError: diverged at x=")
        elif x < 0.15:
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs["fail_reason"] == "metric 'a' is nan"
        else:
            assert trial.state == TrialState.COMPLETE
    assert any(t.state == TrialState.FAIL for t in trials)
    _parents, children = _runs(workdir, "flaky")
    failed = [c for c in children if c.data.tags["hpo.state"] == "FAIL"]
    assert failed and all(c.info.status == "FAILED" and c.data.tags["hpo.reason"] for c in failed)


def test_a_study_whose_every_trial_failed_exits_1_after_running_them_all(
    workdir: Path, run_hpo: RunHpo
) -> None:
    # x > 0.8 raises in the objective: every trial fails.
    result = run_hpo("study", str(TESTS_DIR / "support" / "flaky.yaml"), "--trials", "3",
                     "--backend", "local", "--set", "parameters.x.low=0.85", "--no-progress",
                     "--no-report")  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.startswith("hpo: failed: no trial completed: 3 of the 3 finished")
    assert len(result.stderr.strip().splitlines()) == 1
    trials = _study(workdir, "flaky").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # none stopped the study
    assert all(t.user_attrs["fail_reason"].startswith("RuntimeError: diverged") for t in trials)


def _start(workdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=workdir,
        env=hpo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_finished(
    workdir: Path, name: str, count: int, driver: subprocess.Popen[str], timeout: float = 480
) -> None:
    """Until ``count`` trials finished; the driver's output if it ends or the time runs out
    (a loaded two-core machine can take minutes to start Ray)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            if len(_finished(_study(workdir, name, read_only=True))) >= count:
                return
        except (KeyError, Exception):  # storage or study not created yet
            pass
        time.sleep(0.5)
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)
    output, _ = driver.communicate(timeout=60)
    raise AssertionError(
        f"{name}: fewer than {count} finished trials after {timeout}s; driver exit "
        f"{driver.returncode}, its output:\n{output[-3000:]}"
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_study_resumes_to_exactly_n(
    workdir: Path, run_hpo: RunHpo, sig: signal.Signals
) -> None:
    args = (
        "study",
        "curves",
        "--trials",
        "10",
        "--set",
        "objective.args.step_seconds=0.1",
        "--set",
        "objective.args.steps=10",
    )
    driver = _start(workdir, *args)
    _wait_for_finished(workdir, "curves", 3, driver)
    before = {
        t.number: (t.state, t.params, t.values) for t in _finished(_study(workdir, "curves"))
    }
    driver.send_signal(sig)
    output, _ = driver.communicate(timeout=120)
    if sig == signal.SIGKILL:  # what the killed driver had started (its Ray) dies too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    if sig == signal.SIGINT:
        assert driver.returncode == 130, output[-3000:]
        assert "interrupted" in output
    else:
        assert driver.returncode == -signal.SIGKILL

    result = run_hpo(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(workdir, "curves")
    assert len(_finished(study)) == 10
    after = {t.number: (t.state, t.params, t.values) for t in study.get_trials()}
    assert all(after[n] == before[n] for n in before)  # earlier trials untouched
    interrupted = [t for t in study.get_trials() if t.user_attrs.get("interrupted")]
    assert interrupted, "expected trials running at the interruption"
    # Interrupted trials' configurations were run again; a trial killed after it was asked
    # but before it drew its parameters has none, and a fresh draw replaces it.
    rerun = {json.dumps(t.params, sort_keys=True) for t in _finished(study)}
    assert all(json.dumps(t.params, sort_keys=True) in rerun for t in interrupted if t.params)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    parents, children = _runs(workdir, "curves")
    assert len(parents) == 1
    assert all(c.info.status != "RUNNING" for c in children)
    assert parents[0].info.status == "FINISHED"


def test_auto_gives_slow_trials_gp_tpe(workdir: Path, run_hpo: RunHpo) -> None:
    """Trials of 5 s: from the first trial after the start-up ones, auto is gp-tpe (whose
    first turn is GP's), read from the trials' times in SQLite; the choice is stored."""
    result = run_hpo("study", str(TESTS_DIR / "support" / "flaky.yaml"), "--sampler", "auto",
                     "--backend", "local", "--trials", "3", "--set", "objective.args.sleep=5",
                     "--set", "run.startup_trials=2")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    chose = r"gp-tpe from trial 2 \(trials take 5(\.\d+)? s \(median\), at least 5 s\)"
    assert re.search(f"sampler auto: {chose}", result.stdout), result.stdout
    study = _study(workdir, "flaky")
    choice = study._storage.get_study_system_attrs(study._study_id)["hpo:auto_sampler"]
    assert choice["sampler"] == "gp-tpe" and choice["trial"] == 2
    proposed_by_gp = [t.number for t in study.trials
                      if any(k.startswith("gp:") for k in t.system_attrs)]  # fmt: skip
    assert proposed_by_gp == [2]
    card = run_hpo("card", "flaky")
    assert card.returncode == 0, card.stderr[-3000:]
    text = (workdir / "storage" / "studies" / "flaky" / "CARD.md").read_text()
    assert re.search(f"- `sampler`: auto: {chose}", text), text
