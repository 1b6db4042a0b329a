"""Provenance of every trial, `hpo reproduce`, and the models kept for the Pareto front.

Two finished studies shared by the tests of this module: a `curves` study run inside a
git repository (with uncommitted changes, resumed from a second commit), and a tiny
offline distill-squad study (real torch training on the CPU).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo.pareto import pareto_front
from hpo.provenance import cpu
from hpo.spec import bundled_study_dir, load_spec
from hpo.trial_outputs import models_to_drop
from objectives.distill_squad import synthetic
from tests.conftest import hpo_env

pytestmark = pytest.mark.integration


def hpo(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, env=hpo_env(),
                          capture_output=True, text=True, timeout=timeout)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def study_in(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/storage/optuna.db")


def mlflow_runs(cwd: Path, name: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cwd}/storage/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    return list(client.search_runs([experiment.experiment_id]))


def artifacts(cwd: Path, run: mlflow.entities.Run) -> set[str]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cwd}/storage/mlflow.db")
    return {a.path for a in client.list_artifacts(run.info.run_id)}


# -- curves, in a git repository ----------------------------------------------------------
@pytest.fixture(scope="module")
def curves(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """8 trials of `curves`: 5 at a first commit, 3 resumed at a second, both dirty."""
    repo = tmp_path_factory.mktemp("curves-repo")
    git(repo, "init", "-q")
    (repo / "search_spaces").mkdir()
    (repo / "search_spaces" / "curves.yaml").write_text(
        (bundled_study_dir() / "curves.yaml").read_text())
    (repo / "notes.txt").write_text("first\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "notes.txt").write_text("first\nuncommitted line\n")
    base = ["study", "curves", "--backend", "local", "--set", "objective.args.steps=6",
            "--no-progress"]
    result = hpo(repo, *base, "--trials", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    git(repo, "commit", "-qam", "second")
    second = git(repo, "rev-parse", "HEAD")
    (repo / "notes.txt").write_text("first\nuncommitted line\nanother uncommitted line\n")
    result = hpo(repo, *base, "--trials", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    return repo, [first, second]


def _first(study: optuna.Study, state: TrialState) -> FrozenTrial:
    trials = study.get_trials(states=(state,))
    assert trials, f"the fixture study has no {state.name} trial"
    return trials[0]


@pytest.mark.parametrize("state", [TrialState.COMPLETE, TrialState.PRUNED])
def test_reproduce_matches_exactly(curves: tuple[Path, list[str]], state: TrialState) -> None:
    repo, _ = curves
    trial = _first(study_in(repo, "curves"), state)
    runs_before = len(mlflow_runs(repo, "curves"))
    result = hpo(repo, "reproduce", "curves", str(trial.number))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert lines["state"].split()[1:] == [state.name, state.name, "match"]
    for metric, value in trial.user_attrs["metrics"].items():  # the last recorded report
        assert lines[metric].split()[1:] == [repr(value), repr(value), "match"]
    assert "differs" not in result.stdout
    assert (repo / "storage/studies/curves/reproduce" / f"{trial.number:04d}").is_dir()
    # outside the study: no trial and no MLflow run added
    assert len(study_in(repo, "curves").trials) == 8
    assert len(mlflow_runs(repo, "curves")) == runs_before


def test_reproduce_warns_when_the_commit_changed(curves: tuple[Path, list[str]]) -> None:
    repo, (first, second) = curves
    study = study_in(repo, "curves")
    early = study.trials[0]
    assert early.user_attrs["git_commit"] == first
    result = hpo(repo, "reproduce", "curves", "0")
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert f"warning: the code is at commit {second}, the trial ran at {first}" in warnings


def _set_trial_cpu(repo: Path, number: int, value: str | None) -> None:
    """Rewrite (``None``: remove) a finished trial's recorded ``cpu``, as a trial run on
    another machine (or before hpo recorded it) would have it; Optuna refuses to change a
    finished trial, so straight in its SQLite file."""
    db = sqlite3.connect(repo / "storage" / "optuna.db")
    with contextlib.closing(db), db:
        (trial_id,) = db.execute("SELECT trial_id FROM trials WHERE number = ?",
                                 (number,)).fetchone()
        db.execute("DELETE FROM trial_user_attributes WHERE trial_id = ? AND key = 'cpu'",
                   (trial_id,))
        if value is not None:
            db.execute("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                       "VALUES (?, 'cpu', ?)", (trial_id, json.dumps(value)))


def test_reproduce_warns_on_another_cpu(curves: tuple[Path, list[str]]) -> None:
    """The trial's own CPU decides (on a cluster, trials run on other machines than the
    driver); for a trial recorded without one, the CPUs of the study's sessions."""
    repo, _ = curves
    study = study_in(repo, "curves")
    recorded = study.user_attrs["provenance"]
    assert {s["cpu"] for s in recorded["sessions"]} == {cpu()}
    assert {t.user_attrs["cpu"] for t in study.trials} == {cpu()}
    imaginary = "Imaginary CPU (avx2; 2 logical CPUs)"
    differ = f"this machine is {cpu()}: floating-point results can differ"

    def warnings() -> list[str]:
        result = hpo(repo, "reproduce", "curves", "0")
        assert result.returncode == 0, result.stdout + result.stderr  # a warning only
        return [line for line in result.stdout.splitlines() if "floating-point" in line]

    assert warnings() == []
    study.set_user_attr("provenance", {
        **recorded, "sessions": [{**s, "cpu": imaginary} for s in recorded["sessions"]]})
    try:
        assert warnings() == []  # the drivers ran elsewhere, the trial here
        _set_trial_cpu(repo, 0, None)
        assert warnings() == [f"warning: the study ran on {imaginary}, {differ}"]
        study.set_user_attr("provenance", recorded)
        _set_trial_cpu(repo, 0, imaginary)
        assert warnings() == [f"warning: trial 0 ran on {imaginary}, {differ}"]
    finally:
        study.set_user_attr("provenance", recorded)
        _set_trial_cpu(repo, 0, cpu())


def test_unknown_trial_or_study_exits_2(curves: tuple[Path, list[str]]) -> None:
    repo, _ = curves
    result = hpo(repo, "reproduce", "curves", "99")
    assert result.returncode == 2
    assert result.stderr.strip() == "hpo: error: study 'curves' has no trial 99 (trials 0-7)"
    assert hpo(repo, "reproduce", "nope", "0").returncode == 2
    assert not (repo / "storage/studies/curves/reproduce/0099").exists()


def test_provenance_on_optuna_and_mlflow_parent(curves: tuple[Path, list[str]]) -> None:
    repo, (first, second) = curves
    provenance = study_in(repo, "curves").user_attrs["provenance"]
    assert provenance["git_commit"] == second and provenance["git_dirty"] is True
    assert provenance["commits"] == [first, second]  # resumed from another commit: both kept
    assert len(provenance["sessions"]) == 2
    env = provenance["environment"]
    for package in ("optuna", "mlflow", "ray"):
        assert env["packages"][package] == metadata.version(package)
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu"] == cpu()

    runs = mlflow_runs(repo, "curves")
    parent = next(r for r in runs if r.data.tags.get("hpo.role") == "study")
    tags = parent.data.tags
    assert tags["hpo.git_commit"] == second and tags["hpo.git_dirty"] == "true"
    assert tags["hpo.git_commits"] == f"{first},{second}"
    assert tags["hpo.version.optuna"] == metadata.version("optuna")
    assert tags["hpo.cpu"] == cpu()
    assert {"environment.json", "git.diff"} <= artifacts(repo, parent)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo}/storage/mlflow.db")
    diff = Path(client.download_artifacts(parent.info.run_id, "git.diff")).read_text()
    assert "+another uncommitted line" in diff
    environment = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "environment.json")).read_text())
    assert environment["environment"]["packages"]["mlflow"] == metadata.version("mlflow")


def test_config_json_per_trial_and_on_its_run(curves: tuple[Path, list[str]]) -> None:
    repo, (first, second) = curves
    study = study_in(repo, "curves")
    runs = {r.data.tags["hpo.trial"]: r for r in mlflow_runs(repo, "curves")
            if r.data.tags.get("hpo.role") == "trial"}
    parent = next(r for r in mlflow_runs(repo, "curves") if r.data.tags.get("hpo.role") == "study")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo}/storage/mlflow.db")
    for trial in study.trials:
        path = repo / "storage/studies/curves/trials" / f"{trial.number:04d}" / "config.json"
        config = json.loads(path.read_text())
        assert config["params"] == trial.params
        assert config["seed"] == trial.user_attrs["seed"]
        assert config["objective"] == {"name": "curves", "args": {"steps": 6}}
        assert config["resources"] == {"cpus": 1.0, "gpus": 0.0}
        assert config["git_commit"] == (first if trial.number < 5 else second)
        assert config["spec"]["run"]["keep_models"] == "front"
        run = runs[str(trial.number)]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["hpo.git_commit"] == config["git_commit"]
        logged = client.download_artifacts(run.info.run_id, "config.json")
        assert json.loads(Path(logged).read_text()) == config


def test_reproduce_a_failed_trial_shows_its_error(tmp_path: Path) -> None:
    flaky = Path(__file__).parent / "support" / "flaky.yaml"  # raises for x > 0.8
    result = hpo(tmp_path, "study", str(flaky), "--trials", "6", "--backend", "local",
                 "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    trial = _first(study_in(tmp_path, "flaky"), TrialState.FAIL)
    result = hpo(tmp_path, "reproduce", "flaky", str(trial.number))
    assert result.returncode == 0, result.stdout + result.stderr
    error = next(line for line in result.stdout.splitlines() if line.startswith("error"))
    reason = trial.user_attrs["fail_reason"]
    assert reason.startswith("RuntimeError: diverged at x=")
    assert error.split(None, 1)[1] == f"{reason}  {reason}  match"


def test_bad_keep_models_is_one_line_exit_2(tmp_path: Path) -> None:
    result = hpo(tmp_path, "study", "curves", "--backend", "local",
                 "--set", "run.keep_models=best")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "curves.yaml: run.keep_models: 'best' is not one of front, all, none")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "storage").exists()


# -- distill-squad: models of the Pareto front ----------------------------------------------
TINY_DISTILL = """\
objective:
  name: distill-squad
  args:
    data: {synthetic_train: 300, synthetic_eval: 100}
    teacher_epochs: 1
    epochs: 1
    evaluations: 2
parameters:
  learning_rate: {type: float, low: 1e-3, high: 1e-2, log: true}
  n_layers: {type: int, low: 1, high: 3}
  hidden_size: {type: categorical, choices: [32]}
  n_heads: {type: categorical, choices: [2]}
objectives:
  - {metric: exact, direction: maximize}
  - {metric: num_params, direction: minimize}
stopping: {scheduler: none}
run: {trials: 3, seed: 3, backend: local}
"""


@pytest.fixture(scope="module")
def distill(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 tiny distill-squad students on the offline default (about a minute on 2 CPUs)."""
    cwd = tmp_path_factory.mktemp("distill")
    (cwd / "search_spaces").mkdir()
    (cwd / "search_spaces" / "tiny-distill.yaml").write_text(TINY_DISTILL)
    result = hpo(cwd, "study", "tiny-distill", "--no-progress", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd


@pytest.mark.timeout(1200)
def test_distill_squad_front_keeps_models(distill: Path) -> None:
    study = study_in(distill, "tiny-distill")
    spec = load_spec(str(distill / "search_spaces" / "tiny-distill.yaml"))
    front = {t.number for t in pareto_front(study.trials, spec.goals)}
    others = {t.number for t in study.trials} - front
    assert front and others, (front, others)
    runs = {int(r.data.tags["hpo.trial"]): r for r in mlflow_runs(distill, "tiny-distill")
            if r.data.tags.get("hpo.role") == "trial"}
    for trial in study.trials:
        model = distill / "storage/studies/tiny-distill/trials" / f"{trial.number:04d}" / "model"
        logged = artifacts(distill, runs[trial.number])
        if trial.number in front:
            assert {p.name for p in model.iterdir()} == {"weights.pt", "config.json"}
            assert "model" in logged
        else:
            assert not model.exists()
            assert "model" not in logged
    parent = next(r for r in mlflow_runs(distill, "tiny-distill")
                  if r.data.tags.get("hpo.role") == "study")
    data = parent.data.tags["hpo.input.data"]
    assert f"synthetic-squad-v2 v{synthetic.GENERATOR_VERSION} seed 0 train sha256:" in data
    assert "300 questions" in data
    assert parent.data.tags["hpo.git_commit"] == "unknown"  # not a git repository


@pytest.mark.timeout(1200)
def test_distill_squad_reproduces_exactly_on_cpu(distill: Path) -> None:
    study = study_in(distill, "tiny-distill")
    trial = _first(study, TrialState.COMPLETE)
    result = hpo(distill, "reproduce", "tiny-distill", str(trial.number))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    for metric in ("exact", "HasAns_exact", "NoAns_exact", "loss", "num_params"):
        value = repr(trial.user_attrs["metrics"][metric])
        assert lines[metric].split()[1:] == [value, value, "match"]
    assert lines["latency_ms"].endswith("measured, not compared")
    reproduced = distill / "storage/studies/tiny-distill/reproduce" / f"{trial.number:04d}"
    assert (reproduced / "model" / "weights.pt").is_file()


@pytest.mark.parametrize(("keep", "dropped"), [("front", {1, 3}), ("all", set()),
                                               ("none", {0, 1, 2, 3})])
def test_which_models_are_dropped(keep: str, dropped: set[int]) -> None:
    assert models_to_drop(keep, finished=[0, 1, 2, 3], front=[0, 2]) == dropped
