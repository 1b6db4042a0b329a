"""Early stopping and the health check, end to end: the real CLI, Ray, Optuna and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from objectives.curves import collapses, latency_ms
from tests.conftest import RunHpo
from tests.test_study import _assert_front_is_feasible_and_nondominated, _mlflow, _runs, _study

pytestmark = pytest.mark.integration


def test_curves_study_stops_degenerate_and_hopeless_trials(
    workdir: Path, run_hpo: RunHpo
) -> None:
    """Without a scheduler, so only the rules act: degenerate runs stop within their first
    reports with the reason recorded; a constraint the big models can never meet stops them
    after grace + patience reports;
    PRUNED trials stay off the Pareto front; MLflow and `hpo status` say why."""
    result = run_hpo(
        "study", "curves", "--trials", "40", "--seed", "3", "--scheduler", "none",
        "--constraint", "exact >= 50.5", "--constraint", "HasAns_exact >= 5",
        "--constraint", "latency_ms <= 10",
        "--set", "stopping.infeasible={grace_period: 2, patience: 2, margin: 0.5}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(workdir, "curves")
    trials = study.get_trials()
    assert len(trials) == 40

    degenerate = [t for t in trials if t.state != TrialState.FAIL and collapses(t.params)]
    assert degenerate, "the seed should sample some collapsing configurations"
    for trial in degenerate:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["stopped"] == "degenerate: always-no-answer"
        assert trial.user_attrs["fail_reason"].startswith("degenerate: always-no-answer (")
        assert len(trial.user_attrs["reports"]) <= 3 and trial.user_attrs["steps"] <= 3
        # The last intermediate values are kept, and constraint values for the sampler.
        assert trial.user_attrs["metrics"]["NoAns_exact"] >= 99
        assert trial.constraints and max(trial.constraints.values()) > 0

    slow = [t for t in trials if t.user_attrs.get("stopped") == "infeasible: latency_ms <= 10"]
    assert slow, "models slower than 10 ms should be stopped as infeasible"
    for trial in slow:
        reports = trial.user_attrs["reports"]
        assert len(reports) == 3  # grace 2 + patience 2 - 1
        assert all(r["latency_ms"] > 10.5 for r in reports[1:])
        assert latency_ms(trial.params["n_layers"], trial.params["hidden_size"]) > 10

    front = json.loads(run_hpo("pareto", "curves", "--format", "json").stdout)
    _assert_front_is_feasible_and_nondominated(
        front, study, [("exact", "maximize"), ("num_params", "minimize")]
    )
    pruned = {t.number for t in trials if t.state == TrialState.PRUNED}
    assert pruned and not pruned & {row["trial"] for row in front}

    _parents, children = _runs(workdir, "curves")
    stopped_runs = [c for c in children if c.data.tags["hpo.state"] == "PRUNED"]
    assert len(stopped_runs) == len(pruned)
    assert all(c.info.status == "KILLED" and c.data.tags["hpo.stopped"] for c in stopped_runs)

    status = run_hpo("status", "curves")
    assert "stopped early, by reason:" in status.stdout
    assert "degenerate: always-no-answer" in status.stdout
    counts = json.loads(run_hpo("status", "curves", "--json").stdout)["stopped_early"]
    assert sum(counts.values()) == len(pruned)
    assert counts["degenerate: always-no-answer"] == len(degenerate)


def test_a_trial_violating_a_constraint_only_at_its_end_is_complete_not_stopped(
    workdir: Path, run_hpo: RunHpo
) -> None:
    """The infeasibility rule would first fire on report 20 of 20 (grace 19, patience 2):
    the trials' training is over by then, so they end COMPLETE and infeasible, not PRUNED
    as stopped early (on a real GPU, distill-squad students with 3 evaluations were)."""
    result = run_hpo(
        "study", "curves", "--trials", "8", "--seed", "1", "--scheduler", "none",
        "--constraint", "exact >= 99",
        "--set", "stopping.infeasible={grace_period: 19, patience: 2, margin: 0}",
        "--set", "stopping.degenerate={}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(workdir, "curves").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    for trial in trials:
        assert len(trial.user_attrs["reports"]) == 20 and "stopped" not in trial.user_attrs
        assert max(trial.constraints.values()) > 0  # infeasible, and recorded as such
    status = json.loads(run_hpo("status", "curves", "--json").stdout)
    assert not status["stopped_early"]


def test_health_check_explains_a_study_where_nothing_is_feasible(
    workdir: Path, run_hpo: RunHpo
) -> None:
    """The featurization bug makes every model answer everything: the health check says
    so loudly, with the study file's hint, on the console and the MLflow parent run."""
    result = run_hpo(
        "study", "curves", "--trials", "8", "--health-after", "5", "--backend", "local",
        "--set", "noans_featurization_bug=true", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    warning = next(line for line in result.stdout.splitlines() if "UNHEALTHY" in line)
    assert "0 of 5 trials feasible" in warning
    assert "5/5 are never-no-answer (NoAns_exact <= 1)" in warning
    assert "check how unanswerable questions are featurized" in warning
    assert result.stdout.count("UNHEALTHY") == 1  # said once, not after every trial
    assert "8/8 finished" in result.stdout
    parents, _children = _runs(workdir, "curves")
    assert parents[0].data.tags["hpo.health"] in warning


def test_stop_when_unhealthy_ends_the_study(workdir: Path, run_hpo: RunHpo) -> None:
    result = run_hpo(
        "study", "curves", "--trials", "20", "--health-after", "4", "--backend", "local",
        "--constraint", "exact >= 101", "--stop-when-unhealthy", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert "stopped because it is unhealthy: 0 of 4 trials feasible" in error
    assert "4/4 violate exact >= 101" in error
    status = json.loads(run_hpo("status", "curves", "--json").stdout)
    assert status["finished"] == 4 and status["running"] == 0
    client = _mlflow(workdir)
    parents, children = _runs(workdir, "curves")
    assert "0 of 4 trials feasible" in parents[0].data.tags["hpo.health"]
    assert all(c.info.status != "RUNNING" for c in children)
    assert client.get_run(parents[0].info.run_id).info.status == "KILLED"
