"""The Python API mirrors the CLI (real Ray, SQLite and MLflow, in this process)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psutil
import pytest
import ray

import hpo
from tests.conftest import hpo_env

pytestmark = pytest.mark.integration


def assert_ray_stopped() -> None:
    """The local Ray a study started is gone: disconnected, none of its processes left
    (the autoscaler monitor included), and the thread that started it has ended."""
    assert not ray.is_initialized()
    left = [" ".join(p.cmdline()[:2]) for p in psutil.Process().children(recursive=True)]
    assert left == []
    assert "hpo-ray" not in [t.name for t in threading.enumerate()]


def test_run_then_inspect_from_python(workdir: Path) -> None:
    summary = hpo.run("bnh", trials=8, seed=2, sampler="random", show_progress=False,
                      study_name="bnh-api")
    assert summary.finished == 8 and summary.complete == 8
    front = hpo.pareto_front("bnh-api")
    assert list(front.columns[:3]) == ["trial", "params.x", "params.y"]
    assert {"f1", "f2", "c1", "c2", "mlflow_run_id"} <= set(front.columns)
    assert len(front) == len(summary.front) > 0
    assert (front["c1"] <= 25).all() and (front["c2"] >= 7.7).all()
    assert [s["study"] for s in hpo.list_studies()] == ["bnh-api"]
    study, spec = hpo.load("bnh-api")
    assert spec.trials == 8 and spec.sampler == "random" and len(study.trials) == 8
    assert hpo.status("bnh-api").hypervolume == summary.hypervolume
    assert (workdir / "storage" / "optuna.db").is_file()
    assert_ray_stopped()


def test_gpus_the_cluster_does_not_have_is_a_clear_runtime_error(workdir: Path) -> None:
    # preflight=False: the GPU preflight check would stop it first (tests/test_preflight.py)
    with pytest.raises(hpo.RunError, match="asks for 1 GPU but the Ray cluster has 0"):
        hpo.run("bnh", trials=2, gpus=1, show_progress=False, preflight=False)
    assert_ray_stopped()


def test_ray_started_for_a_study_that_fails_before_its_trials_is_stopped(
    workdir: Path,
) -> None:
    """Ray starts while the study gets ready; a failure meanwhile still stops it."""
    with pytest.raises(hpo.RunError, match="could not prepare its inputs"):
        hpo.run("bnh", trials=2, show_progress=False,
                overrides=[("objective.name", "hpo_test_objectives:FailsToPrepare")])
    assert_ray_stopped()


def test_trials_on_a_ray_started_here_have_no_runtime_env_but_its_variables(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a runtime environment of their own, trial actors can use the workers Ray
    keeps ready; what Ray Tune would put in it they have all the same (inherited)."""
    monkeypatch.setenv("PYTHONPATH", hpo_env()["PYTHONPATH"])  # the workers' objective
    hpo.run("bnh", trials=2, show_progress=False,
            overrides=[("objective.name", "hpo_test_objectives:WorkerEnvironment")])
    trials = workdir / "storage" / "studies" / "bnh" / "trials"
    seen = [json.loads((trials / f"{n:04d}" / "worker.json").read_text()) for n in (0, 1)]
    assert seen == [{"runtime_env": "{}", "PL_DISABLE_FORK": "1", "cwd": str(workdir)}] * 2


def test_a_resumed_study_does_not_replay_earlier_configurations(workdir: Path) -> None:
    """Each driver session seeds its sampler differently (same study seed otherwise)."""
    options = {"backend": "local", "show_progress": False, "report": False,
               "overrides": [("objective.args.steps", 2)]}  # fmt: skip
    hpo.run("curves", trials=3, **options)
    hpo.run("curves", trials=6, **options)
    study, _ = hpo.load("curves")
    configurations = {repr(sorted(t.params.items())) for t in study.get_trials()}
    assert len(study.get_trials()) == 6 and len(configurations) == 6
    assert study.user_attrs["driver_sessions"] == 2
