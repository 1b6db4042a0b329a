"""`hpo report` and `hpo card` on one small finished `curves` study (real Optuna, MLflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hpo.report import StudyData
from hpo.report.pareto import pareto_figure
from hpo.settings import Settings
from tests.conftest import hpo_env

pytestmark = pytest.mark.integration

STUDY = ("study", "curves", "--trials", "12", "--seed", "2", "--backend", "local",
         "--set", "objective.args.steps=6", "--no-progress")
FIGURES = ("pareto_front", "hypervolume", "parallel_coordinates", "learning_curves",
           "param_importance")


def hpo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, env=hpo_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 12-trial study (seed 2: Pareto-front, infeasible, stopped and failed
    trials) and the output of the `hpo study` that ran it."""
    cwd = tmp_path_factory.mktemp("report")
    result = hpo(cwd, *STUDY)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, result.stdout


def status(cwd: Path) -> dict:
    return json.loads(hpo(cwd, "status", "curves", "--json").stdout)


def test_study_writes_its_report_when_it_finishes(finished: tuple[Path, str]) -> None:
    cwd, stdout = finished
    report = cwd / "storage" / "studies" / "curves" / "report" / "report.html"
    assert f"report: {report}" in stdout
    assert all((report.parent / f"{name}.png").stat().st_size for name in FIGURES)


def test_report_writes_figures_and_logs_them_to_mlflow(finished: tuple[Path, str]) -> None:
    cwd, _ = finished
    result = hpo(cwd, "report", "curves", "--out", "out")
    assert result.returncode == 0, result.stderr
    html = (cwd / "out" / "report.html").read_text()
    for name in FIGURES:
        png = (cwd / "out" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        assert f"src='{name}.png'" in html
    counts = status(cwd)
    assert f"<td>{counts['pareto_size']}</td>" in html
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd}/storage/mlflow.db")
    parent = client.get_experiment_by_name("curves")
    run = client.search_runs([parent.experiment_id], "tags.`hpo.role` = 'study'")[0]
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report")}
    assert logged == {"report.html", *(f"{name}.png" for name in FIGURES)}
    assert f"logged to MLflow run {run.info.run_id}" in result.stdout


def test_pareto_figure_shows_front_infeasible_and_stopped_apart(
    finished: tuple[Path, str], tmp_path: Path
) -> None:
    cwd, _ = finished
    settings = Settings.resolve(env={"HPO_HOME": str(cwd / "storage")})
    plot = pareto_figure(StudyData.load("curves", settings), tmp_path)
    counts = status(cwd)
    assert plot.drawn["front"] == counts["pareto_size"] == 3
    assert plot.drawn["feasible"] == counts["feasible"] - counts["pareto_size"]
    assert plot.drawn["infeasible"] == counts["complete"] - counts["feasible"] == 4
    assert plot.drawn["pruned"] == counts["pruned"] == 2
    assert plot.drawn["legend"][0] == "Pareto front (feasible): 3"
    assert "infeasible (violates a constraint): 4" in plot.drawn["legend"]
    assert "stopped early (last report): 2" in plot.drawn["legend"]


def test_card_records_the_study_and_keeps_conclusions(finished: tuple[Path, str]) -> None:
    cwd, _ = finished
    result = hpo(cwd, "card", "curves", "--hypothesis", "Four layers are enough.")
    assert result.returncode == 0, result.stderr
    path = cwd / "storage" / "studies" / "curves" / "CARD.md"
    card = path.read_text()
    assert card.startswith("# Experiment card: curves\n")
    assert "## Hypothesis\n\nFour layers are enough.\n" in card
    counts = status(cwd)
    table = card.split("## Results: Pareto front\n\n")[1].split("\n\n")[0].splitlines()
    assert len(table) == 2 + counts["pareto_size"]  # header, separator, one row per trial
    assert " ".join(["hpo", *STUDY]) in card
    problems = card.split("## Problems met")[1].split("\n## ")[0]
    for reason, n in counts["stopped_early"].items():
        assert f"- {n} x {reason}" in problems
    assert "is not divisible by" in problems  # the failed trials' error
    assert "- `steps`: 6" in card  # the model: objective arguments
    (machine,) = counts["ran_on"]  # what `hpo status` says: where every trial ran
    assert (f"## Where the trials ran\n\n- {machine['trials']} trials on {machine['host']}: "
            f"{machine['cpu']}; GPUs: none\n") in card
    edited = card.replace("_Not written yet._", "Layers matter more than heads.\n\n- a list")
    path.write_text(edited)
    assert hpo(cwd, "card", "curves").returncode == 0
    regenerated = path.read_text()
    assert "Layers matter more than heads.\n\n- a list\n" in regenerated
    assert "Four layers are enough." in regenerated  # the hypothesis was recorded
    assert regenerated == edited


def test_report_failure_does_not_fail_the_study_and_no_report_skips_it(
    finished: tuple[Path, str],
) -> None:
    cwd, _ = finished
    small = ("study", "curves", "--study-name", "small", "--backend", "local",
             "--set", "objective.args.steps=2", "--no-progress")
    folder = cwd / "storage" / "studies" / "small"
    folder.mkdir(parents=True)
    (folder / "report").write_text("not a folder")
    result = hpo(cwd, *small, "--trials", "2")
    assert result.returncode == 0, result.stderr
    assert "warning: no report (FileExistsError" in result.stdout
    (folder / "report").unlink()
    result = hpo(cwd, *small, "--trials", "3", "--no-report")
    assert result.returncode == 0 and "report" not in result.stdout
    assert not (folder / "report").exists()
    # 3 trials: too few for parameter importance, which the report says
    result = hpo(cwd, "report", "small")
    assert result.returncode == 0, result.stderr
    assert "param_importance: not computed: needs at least 5 complete trials" in result.stdout
    assert "needs at least 5 complete trials, the study has" in (
        folder / "report" / "report.html").read_text()


def test_bad_input(finished: tuple[Path, str]) -> None:
    cwd, _ = finished
    result = hpo(cwd, "report", "nosuch")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hpo: error: no study 'nosuch' in" in result.stderr
    result = hpo(cwd, *STUDY, "--study-name", "bad", "--set", "run.report=maybe")
    assert result.returncode == 2
    assert "run.report: expected true or false, got 'maybe'" in result.stderr
