"""Shared studies on a real PostgreSQL and a real ``mlflow server`` backed by it.

Needs ``HPO_TEST_POSTGRES`` (a URL with a password, of a role allowed to create
databases; `.ci/run` starts PostgreSQL and sets it). Each test gets fresh databases,
dropped afterwards. Without the variable the tests are skipped, except in CI where that
is a failure.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import NewDatabase, RunHpo, database_factory, hpo_env
from tests.study_checks import counted, mlflow_runs

pytestmark = pytest.mark.integration

CURVES = ("--backend", "local", "--no-progress", "--set", "objective.args.steps=6")


@dataclass(frozen=True)
class MlflowServer:
    uri: str  # http://127.0.0.1:PORT
    backend: str  # its PostgreSQL database, which MLflow can also use directly


@pytest.fixture(scope="module")
def mlflow_server(
    postgres: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on PostgreSQL, serving artifacts, bound to 127.0.0.1."""
    factory = database_factory(postgres)
    backend = next(factory)()
    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=hpo_env(),
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not become healthy"
            time.sleep(0.5)
        # The first request creates the server's tables: done here, not in the first test.
        mlflow.MlflowClient(tracking_uri=uri).search_experiments()
        yield MlflowServer(uri, backend)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        next(factory, None)


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return counted(study.get_trials())


def test_study_on_postgres_with_mlflow_server(
    run_hpo: RunHpo, new_database: NewDatabase, mlflow_server: MlflowServer, workdir: Path
) -> None:
    storage = new_database()
    where = ("--storage", storage, "--tracking-uri", mlflow_server.uri)
    result = run_hpo("study", "curves", "--trials", "6", *CURVES, *where)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "View run" not in result.stdout  # MLflow's per-run URL lines are silenced

    study = optuna.load_study(study_name="curves", storage=storage)
    assert len(_counted(study)) == 6
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.uri)
    (parent,), children = mlflow_runs(client, "curves")
    assert len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    # Artifacts go to the server, not to this driver's HPO_HOME.
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "pareto_front.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert not (workdir / "storage" / "mlartifacts").exists()

    status = run_hpo("status", "curves", "--storage", storage)
    assert status.returncode == 0, status.stderr
    assert re.search(r"^finished\s+6$", status.stdout, re.M), status.stdout
    password = make_url(storage).password
    for output in (result.stdout, result.stderr, status.stdout, status.stderr):
        assert password not in output


def test_two_drivers_share_one_study(
    new_database: NewDatabase, mlflow_server: MlflowServer, workdir: Path
) -> None:
    storage = new_database()
    command = [
        sys.executable, "-m", "hpo", "study", "curves", "--study-name", "shared",
        "--trials", "8", "--concurrency", "1", "--scheduler", "none",
        "--set", "objective.args.step_seconds=0.2", *CURVES,
        "--storage", storage, "--tracking-uri", mlflow_server.uri,
    ]  # fmt: skip
    homes = [workdir / "a", workdir / "b"]
    for home in homes:
        home.mkdir()
    drivers = [
        subprocess.Popen(command, cwd=home, env=hpo_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for home in homes
    ]  # fmt: skip
    outputs = [driver.communicate(timeout=600) for driver in drivers]
    for driver, (out, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err[-3000:]
        assert make_url(storage).password not in out + err

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert len(_counted(study)) == 8
    assert len(trials) == 8, [(t.number, t.state) for t in trials]  # none asked beyond it
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(8))
    by_driver: dict[str, int] = {}
    for t in trials:
        pid = t.system_attrs["hpo:driver"].rpartition(":")[2]
        by_driver[pid] = by_driver.get(pid, 0) + 1
    assert set(by_driver) == {str(d.pid) for d in drivers}, by_driver  # both did some

    client = mlflow.MlflowClient(tracking_uri=mlflow_server.uri)
    (parent,), children = mlflow_runs(client, "shared")
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["hpo.trial"]) for c in children) == numbers
    assert [r.info.status for r in (parent, *children) if r.info.status == "RUNNING"] == []
    experiment = client.get_experiment_by_name("shared")
    deleted = client.search_runs(
        [experiment.experiment_id], run_view_type=mlflow.entities.ViewType.DELETED_ONLY
    )
    assert deleted == []  # no duplicate parent was created and thrown away


def test_passwords_never_shown(
    run_hpo: RunHpo, new_database: NewDatabase, mlflow_server: MlflowServer, workdir: Path
) -> None:
    storage, tracking = new_database(), mlflow_server.backend  # MLflow straight on PostgreSQL
    password = make_url(storage).password
    assert password
    where = ("--storage", storage, "--tracking-uri", tracking)
    results = [
        run_hpo("study", "curves", "--study-name", "secret", "--trials", "3", *CURVES, *where),
        run_hpo("status", "secret", *where),
        run_hpo("ls", *where),
    ]
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    unreachable = make_url(storage).set(port=1).render_as_string(hide_password=False)
    failed = [
        run_hpo("study", "curves", *CURVES, "--storage", unreachable),  # refused by preflight
        run_hpo("status", "curves", "--storage", unreachable),  # a runtime error
    ]
    for result, code in zip(failed, (2, 1), strict=True):
        assert result.returncode == code and "***" in result.stderr, result.stderr
    for result in [*results, *failed]:
        assert password not in result.stdout + result.stderr

    client = mlflow.MlflowClient(tracking_uri=tracking)
    (parent,), children = mlflow_runs(client, "secret")
    assert len(children) == 3
    assert parent.data.tags["hpo.storage"] == make_url(storage).render_as_string()
    for run in (parent, *children):
        recorded = [*run.data.params.items(), *run.data.tags.items()]
        assert not [kv for kv in recorded if password in f"{kv[0]}={kv[1]}"], run.info.run_name

    written = [p for p in (workdir / "storage").rglob("*") if p.is_file()]
    assert written  # the study wrote its files under HPO_HOME; none holds the password
    assert [p for p in written if password.encode() in p.read_bytes()] == []
