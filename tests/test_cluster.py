"""Trials on an existing Ray cluster: a real two-node cluster (two raylets) on this machine.

The cluster is started with ``ray start`` in its own temp dir and process groups, without
the test's PYTHONPATH (so trial workers import hpo and the test objectives only through
the job's runtime environment), and every node declares one logical GPU so that the
fractional-GPU path runs for real (CUDA_VISIBLE_DEVICES is set by Ray; no CUDA is used).
Teardown kills only the process groups started here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest

from hpo.errors import ConfigError, RunError
from hpo.execution import ray_client, ray_connection
from hpo.execution.ray_backend import trial_resources
from hpo.execution.ray_connection import check_address, ray_init_kwargs
from hpo.provenance import cpu
from hpo.spec import load_spec
from tests.conftest import TESTS_DIR, RunHpo, hpo_env
from tests.study_checks import mlflow_runs

RAY = str(Path(sys.executable).parent / "ray")
# Token authentication, as docker/compose.yaml sets it up: the same mode and token in every
# process of the cluster. (Left implicit, `ray start --head` turns it on when
# ~/.ray/auth_token exists and a joining `ray start` does not.)
CLUSTER_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_start(*args: str, temp_dir: str, groups: list[int]) -> None:
    # started by hand: without the GPU isolation hpo gives the Ray it starts
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "RAY_ADDRESS", ray_connection.ZERO_GPUS_SEE_NONE)}
    process = subprocess.Popen(
        [RAY, "start", "--num-cpus", "1", "--num-gpus", "1", "--temp-dir", temp_dir,
         "--disable-usage-stats", *args],
        env={**env, **CLUSTER_ENV}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    groups.append(process.pid)  # the daemons it spawns stay in this process group
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 0, out[-3000:]


@dataclass(frozen=True)
class Cluster:
    gcs: str  # HOST:PORT, as `--address` takes it
    client: str  # ray://HOST:PORT, the head's Ray Client server


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A running head node (with its Ray Client server) plus one worker node."""
    temp_dir = tempfile.mkdtemp(prefix="hpo-rc-", dir="/tmp")  # short: unix socket paths
    gcs, client = f"127.0.0.1:{_free_port()}", f"ray://127.0.0.1:{_free_port()}"
    groups: list[int] = []
    try:
        _ray_start("--head", "--port", gcs.split(":")[1], "--include-dashboard=false",
                   "--ray-client-server-port", client.rsplit(":", 1)[1],
                   "--node-ip-address", "127.0.0.1", temp_dir=temp_dir, groups=groups)
        _ray_start("--address", gcs, "--node-ip-address", "127.0.0.1",
                   temp_dir=temp_dir, groups=groups)
        yield Cluster(gcs, client)
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _gpu_probe_study(
    address: str, run_hpo: RunHpo, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[optuna.trial.FrozenTrial]]:
    # The driver has the token but not RAY_AUTH_MODE, as on a machine where `ray start`
    # found ~/.ray/auth_token: hpo sends the token all the same (bare `ray.init` does not).
    monkeypatch.setenv("RAY_AUTH_TOKEN", CLUSTER_ENV["RAY_AUTH_TOKEN"])
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    result = run_hpo("study", str(TESTS_DIR / "support" / "gpu_probe.yaml"), "--no-progress",
                     "--trials", "4", "--concurrency", "2", "--address", address)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="gpu_probe",
                              storage=f"sqlite:///{workdir / 'storage' / 'optuna.db'}")
    return result.stdout, study.get_trials()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_trials_run_on_both_nodes_with_their_gpu_share(
    cluster: Cluster, run_hpo: RunHpo, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, trials = _gpu_probe_study(cluster.gcs, run_hpo, workdir, monkeypatch)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    nodes = {t.user_attrs["node"] for t in trials}
    assert len(nodes) == 2, nodes  # hostname:node-id of each raylet
    for trial in trials:
        probe = json.loads(
            (workdir / "storage" / "studies" / "gpu_probe" / "trials" / f"{trial.number:04d}"
             / "probe.json").read_text())
        assert trial.user_attrs["node"].endswith(":" + probe["node_id"])
        assert trial.user_attrs["cpu"] == cpu()  # the two nodes share this machine's CPU
        assert probe["context_gpus"] == 0.25
        assert probe["ray_gpu_ids"] == ["0"]  # the one GPU of its node, shared by fractions
        assert probe["cuda_visible_devices"] == "0"


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_ray_client_address_runs_the_driver_on_the_cluster(
    cluster: Cluster, run_hpo: RunHpo, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout, trials = _gpu_probe_study(cluster.client, run_hpo, workdir, monkeypatch)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len({t.user_attrs["node"] for t in trials}) == 2
    # the driver ran on the head, as a Ray task; hpo sent its output back to this client as
    # the driver printed it (what Ray Client forwards, when it does, is prefixed by Ray)
    report = workdir / "storage" / "studies" / "gpu_probe" / "report" / "report.html"
    assert stdout.splitlines().count(f"report: {report}") == 1 and report.is_file()
    assert "done: 4/4 finished" in stdout
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'storage' / 'mlflow.db'}")
    parents, children = mlflow_runs(client, "gpu_probe")
    assert [r.info.status for r in parents + children] == ["FINISHED"] * 5


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_ctrl_c_reaches_the_driver_on_the_cluster(cluster: Cluster, workdir: Path) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-m", "hpo", "study", str(TESTS_DIR / "support" / "gpu_probe.yaml"),
         "--trials", "20", "--address", cluster.client],
        cwd=workdir, env={**hpo_env(), **CLUSTER_ENV}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    assert driver.stdout is not None
    lines = []
    for line in driver.stdout:  # until a trial has finished on the cluster
        lines.append(line)
        if "trial 0: COMPLETE" in line:
            break
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=300)
    output = "".join(lines) + output
    assert driver.returncode == 130, output[-3000:]
    assert "passing Ctrl+C on to the driver on the cluster" in output
    # the driver stopped as a local one does: nothing left running, anywhere
    study = optuna.load_study(study_name="gpu_probe",
                              storage=f"sqlite:///{workdir / 'storage' / 'optuna.db'}")
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert len(study.get_trials()) < 20
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'storage' / 'mlflow.db'}")
    parents, children = mlflow_runs(client, "gpu_probe")
    assert [r.info.status for r in parents] == ["KILLED"]
    assert children and all(r.info.status != "RUNNING" for r in children)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_trial_given_no_gpu_sees_none_on_a_ray_started_here(
    run_hpo: RunHpo, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray 2.60 leaves a task given no GPU the GPUs its node's processes see; on the Ray
    hpo starts, a trial given none sees none, as its objective is told (``gpus == 0``)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the driver's machine shows a GPU
    result = run_hpo("study", str(TESTS_DIR / "support" / "gpu_probe.yaml"), "--no-progress",
                     "--trials", "2", "--gpus", "0", "--set", "objective.args.sleep=0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = workdir / "storage" / "studies" / "gpu_probe" / "trials"
    probes = [json.loads((trials / f"{n:04d}" / "probe.json").read_text()) for n in (0, 1)]
    assert [(p["cuda_visible_devices"], p["ray_gpu_ids"], p["context_gpus"]) for p in probes] \
        == [("", [], 0.0)] * 2  # fmt: skip


def test_fractional_gpus_reach_ray_unchanged() -> None:
    spec = load_spec(str(TESTS_DIR / "support" / "gpu_probe.yaml"),
                     [("run.resources.gpus", 0.25), ("run.resources.cpus", 0.5)])
    assert trial_resources(spec) == {"cpu": 0.5, "gpu": 0.25}


def test_cluster_jobs_carry_the_drivers_pythonpath() -> None:
    local = ray_init_kwargs(None, env={"PYTHONPATH": "/src"})
    assert local["address"] == "local" and "runtime_env" not in local  # never joins a cluster
    joined = ray_init_kwargs("10.0.0.5:6379", env={"PYTHONPATH": f"/src{os.pathsep}plugins"})
    assert joined["address"] == "10.0.0.5:6379"
    assert joined["runtime_env"] == {  # relative entries mean nothing on a worker
        "env_vars": {"PYTHONPATH": f"/src{os.pathsep}{Path('plugins').absolute()}"}
    }
    from_env = ray_init_kwargs(None, env={"RAY_ADDRESS": "auto"})
    assert from_env["address"] == "auto" and "runtime_env" not in from_env


def test_ray_that_cannot_be_started_fails_the_study_where_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray starts on its own thread; its failure is raised in the study's thread, by
    ``wait``, as it was raised there, and ``close`` then has nothing to stop."""
    failures = [RunError("cannot start or reach Ray at 10.0.0.5:6379: timed out"),
                TypeError("unexpected")]  # fmt: skip
    for failure in failures:
        def fail(address: str | None, failure: Exception = failure) -> None:
            raise failure

        monkeypatch.setattr(ray_connection, "_connect", fail)
        connection = ray_connection.RayConnection("10.0.0.5:6379")
        with pytest.raises(type(failure), match=str(failure)):
            connection.wait()
        connection.close()
        assert not connection._thread.is_alive()


@pytest.mark.parametrize("address", ["ray://head", "head", "head:port"])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="--address"):
        check_address(address, env={})
    with pytest.raises(ConfigError, match="RAY_ADDRESS"):
        check_address(None, env={"RAY_ADDRESS": address})
    check_address("auto", env={})
    check_address("10.0.0.5:6379", env={"RAY_ADDRESS": address})  # the flag wins
    check_address("ray://10.0.0.5:10001", env={})


@pytest.mark.parametrize(
    "extra", [["ray://127.0.0.1"], ["127.0.0.1:1", "--backend", "local"]]
)
def test_unusable_address_exits_2_before_writing(
    run_hpo: RunHpo, workdir: Path, extra: list[str]
) -> None:
    result = run_hpo("study", "curves", "--address", *extra)
    assert result.returncode == 2
    assert "--address" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (workdir / "storage").exists()


def test_local_backend_records_the_host(run_hpo: RunHpo, workdir: Path) -> None:
    result = run_hpo("study", "curves", "--trials", "1", "--backend", "local", "--no-progress",
                     "--set", "objective.args.steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="curves",
                              storage=f"sqlite:///{workdir / 'storage' / 'optuna.db'}")
    assert study.trials[0].user_attrs["node"] == socket.gethostname()
    assert study.trials[0].user_attrs["cpu"] == cpu()


def test_a_trial_records_the_gpus_it_was_given(
    run_hpo: RunHpo, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine with GPUs (here an ``nvidia-smi`` that lists two models), a trial given
    a GPU records the model CUDA shows it, a trial given none records none (its objective
    runs on the CPU), and ``hpo reproduce`` warns where the GPUs it would use differ."""
    from tests.test_core_units import NVIDIA_SMI_L

    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 9\ncat <<'EOF'\n{NVIDIA_SMI_L}EOF\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-b2f0")  # as Ray or a scheduler sets it
    a100 = "NVIDIA A100-SXM4-40GB"
    for name, given in (("on-gpu", "1"), ("on-cpu", "0")):
        result = run_hpo("study", "curves", "--study-name", name, "--trials", "1", "--backend",
                         "local", "--no-progress", "--no-preflight",  # torch has no CUDA here
                         "--set", "objective.args.steps=2", "--set", f"run.resources.gpus={given}")
        assert result.returncode == 0, result.stderr[-3000:]
    storage = f"sqlite:///{workdir / 'storage' / 'optuna.db'}"
    ran = {name: optuna.load_study(study_name=name, storage=storage).trials[0].user_attrs
           for name in ("on-gpu", "on-cpu")}  # fmt: skip
    assert (ran["on-gpu"]["gpus"], ran["on-cpu"]["gpus"]) == ([a100], [])
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'storage' / 'mlflow.db'}")
    tags = {name: [run.data.tags["hpo.gpus"] for run in mlflow_runs(client, name)[1]]
            for name in ("on-gpu", "on-cpu")}  # fmt: skip
    assert tags == {"on-gpu": [a100], "on-cpu": ["none"]}
    status = run_hpo("status", "on-gpu").stdout
    assert f"ran on, by machine:\n      1  {socket.gethostname()}: {cpu()}; GPUs: {a100}\n" \
        in status  # fmt: skip

    def gpu_warnings(name: str) -> list[str]:
        result = run_hpo("reproduce", name, "0")
        assert result.returncode == 0, result.stderr[-3000:]
        return [line for line in result.stdout.splitlines() if "this machine has" in line]

    assert gpu_warnings("on-gpu") == gpu_warnings("on-cpu") == []  # the same GPU here
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # CUDA's default order: H100 or A100
    (warning,) = gpu_warnings("on-gpu")
    assert warning == (f"warning: trial 0 ran on {a100}, this machine has {a100} or NVIDIA "
                       "H100 80GB HBM3: floating-point results can differ")
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])  # no nvidia-smi
    (warning,) = gpu_warnings("on-gpu")
    assert warning == (f"warning: trial 0 ran on {a100}, this machine has no GPU: "
                       "floating-point results can differ")
    assert gpu_warnings("on-cpu") == []


def _refusing(times: int, calls: list[str]) -> Callable[..., None]:
    """A ``ray.init`` whose first ``times`` sessions the cluster fails to start."""

    def init(address: str, **_: object) -> None:
        calls.append(address)
        if len(calls) <= times:
            raise ConnectionAbortedError(
                "Initialization failure from server:\nTraceback (most recent call last):\n"
                "RuntimeError: Starting Ray client server failed.\n")

    return init


def test_a_session_the_cluster_failed_to_start_is_retried(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ray_client, "_CONNECT_BACKOFF_S", 0.0)
    calls: list[str] = []
    monkeypatch.setattr(ray_client.ray, "init", _refusing(1, calls))
    ray_client._connect("ray://head:10001", {})
    assert calls == ["ray://head:10001"] * 2
    assert "failed to start a client session" in capsys.readouterr().err

    calls.clear()
    monkeypatch.setattr(ray_client.ray, "init", _refusing(3, calls))
    with pytest.raises(RunError, match=r"Starting Ray client server failed.*after 3 attempts"):
        ray_client._connect("ray://head:10001", {})
    assert len(calls) == 3


def test_the_drivers_output_reaches_the_client_in_order_on_its_own_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the driver on the cluster prints is held in one queue for both streams (until
    the client takes it through the mailbox) and written here where it was printed."""
    pending: deque[tuple[bool, str]] = deque()
    out = ray_client._ToClient(pending, stderr=False)
    err = ray_client._ToClient(pending, stderr=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        print("trial 0: COMPLETE")
        print("hpo: warning", file=sys.stderr)
        print("report: x.html", flush=True)
    in_order = [(stderr, "".join(text for _, text in chunks))
                for stderr, chunks in itertools.groupby(pending, key=lambda chunk: chunk[0])]
    assert in_order == [(False, "trial 0: COMPLETE\n"), (True, "hpo: warning\n"),
                        (False, "report: x.html\n")]  # fmt: skip
    ray_client._write(pending)
    captured = capsys.readouterr()
    assert captured.out == "trial 0: COMPLETE\nreport: x.html\n"
    assert captured.err == "hpo: warning\n"
