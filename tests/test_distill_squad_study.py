"""distill-squad end to end on the offline default (real Ray, Optuna, MLflow, torch)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import mlflow
import optuna
import pytest
from dashboard_browser import running_dashboard
from optuna.trial import TrialState

from tests.conftest import RunHpo, hpo_env

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad_v2"


@pytest.mark.timeout(1800)  # trains the teacher once, then 6 students, on the CPU
def test_offline_default_study(workdir: Path, run_hpo: RunHpo) -> None:
    result = run_hpo("study", "distill-squad", "--trials", "6", "--seed", "3", timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "offline default" in result.stdout  # the CLI says which data it used
    study = optuna.load_study(study_name="distill-squad",
                              storage=f"sqlite:///{workdir}/storage/optuna.db")
    finished = [t for t in study.trials if t.state != TrialState.RUNNING]
    assert len(finished) == 6
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    assert complete, [t.user_attrs.get("fail_reason") for t in finished]
    for trial in complete:
        metrics = trial.user_attrs["metrics"]
        for key in ("exact", "f1", "HasAns_exact", "NoAns_exact", "num_params",
                    "trainable_params", "latency_ms", "exact_over_no_answer"):
            assert key in metrics
        assert metrics["exact"] == pytest.approx(metrics["exact_over_no_answer"] + 50.0)
        if trial.params.get("mode") == "lora":
            assert metrics["trainable_params"] < metrics["num_params"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir}/storage/mlflow.db")
    experiment = client.get_experiment_by_name("distill-squad")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("hpo.role") == "study")
    assert "synthetic" in parent.data.tags["hpo.input.data"]
    child = next(r for r in runs if r.data.tags.get("hpo.state") == "COMPLETE")
    history = client.get_metric_history(child.info.run_id, "HasAns_exact")
    assert len(history) == 6  # evaluated every 1/6 of training
    for trial in finished:  # early stops are recorded with their reason (MO-ASHA, rules)
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["stopped"].startswith(("moasha", "degenerate", "infeasible"))
    for component in ("loss", "loss_squad"):
        assert client.get_metric_history(child.info.run_id, component)
    pareto = json.loads(run_hpo("pareto", "distill-squad", "--format", "json").stdout)
    assert all(row["HasAns_exact"] >= 5 and row["NoAns_exact"] >= 5 for row in pareto)
    # the report was written when the study finished; the card names data and commands
    report = workdir / "storage" / "studies" / "distill-squad" / "report"
    for name in ("report.html", "pareto_front.png", "learning_curves.png"):
        assert (report / name).stat().st_size > 0
    assert run_hpo("card", "distill-squad").returncode == 0
    card = (report.parent / "CARD.md").read_text()
    assert "synthetic" in card.split("## Data")[1]
    assert "hpo study distill-squad --trials 6 --seed 3" in card
    results = card.split("## Results: Pareto front\n\n")[1].split("\n\n")[0]
    assert len(results.splitlines()) == 2 + len(pareto) or not pareto
    # optuna-dashboard serves the study: every trial, with the constraint values it shows
    with running_dashboard("distill-squad", "--port", "0", cwd=workdir, env=hpo_env()) as board:
        api = board.url.replace("/dashboard/studies/", "/api/studies/")
        with urllib.request.urlopen(api, timeout=60) as response:
            served = json.load(response)
    assert len(served["trials"]) == 6
    assert all(t["constraints"] for t in served["trials"] if t["state"] == "Complete")


@pytest.mark.slow
@pytest.mark.timeout(6000)
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/squad_v2 is missing")
def test_real_squad_with_minilm(workdir: Path, run_hpo: RunHpo) -> None:
    result = run_hpo(
        "study", "distill-squad", "--trials", "8", "--study-name", "distill-real",
        "--set", f"data.train={SHARED / 'train-v2.0.json'}",
        "--set", f"data.eval={SHARED / 'dev-v2.0.json'}",
        "--set", "backbone=minilm", "--set", "max_seq_length=192", "--set", "doc_stride=64",
        "--set", "max_query_length=32", "--set", "data.limit_train=800",
        "--set", "teacher_epochs=1", "--set", "teacher_learning_rate=5e-5",
        "--set", "epochs=1", "--set", "evaluations=2", "--set", "batch_size=16",
        "--set", "parameters.hidden_size.choices=[384]",
        "--set", "parameters.n_layers.high=3", "--set", "parameters.n_heads.choices=[6, 12]",
        timeout=5400,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sha256:4ca9e178" in result.stdout and "47.9" in result.stdout
    study = optuna.load_study(study_name="distill-real",
                              storage=f"sqlite:///{workdir}/storage/optuna.db")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete
    for trial in complete:
        metrics = trial.user_attrs["metrics"]
        assert 0 <= metrics["HasAns_exact"] <= 100 and 0 <= metrics["NoAns_exact"] <= 100
        assert metrics["num_params"] > 1e6
