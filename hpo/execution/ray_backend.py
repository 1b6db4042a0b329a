"""Run trials as Ray Tune trials: resources per trial, concurrency, actor reuse.

Ray decides *where* trials run; the searcher decides *what* runs (Optuna) and how each
trial is recorded. Without ``address`` (or ``RAY_ADDRESS``) a local Ray is started and
stopped, even when a ``ray start`` cluster runs on this machine. With one, the driver
connects to that cluster and only disconnects at the end: the cluster keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from hpo.errors import ConfigError, RunError
from hpo.execution._searcher import StudySearcher
from hpo.execution._trainable import run_trial
from hpo.execution.ray_client import use_token_if_available
from hpo.settings import Settings
from hpo.spec import StudySpec

os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # hpo handles Ctrl+C itself
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Trials keep the driver's working directory: relative paths in a study file mean the same
# thing in every trial (on a local Ray).
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# Optuna storage and MLflow hold every result: Ray's own per-trial JSON, CSV and
# TensorBoard files would only cost the driver time on each result.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Ray Tune's INFO lines (also where the driver runs as a task: hpo.execution.ray_client),
# and its end-of-run warning that those files are missing, say nothing to hpo's users.
logging.getLogger("ray.tune").setLevel(logging.WARNING)
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


class _StopWhenInterrupted(tune.Stopper):
    def __init__(self, searcher: StudySearcher) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.searcher.interrupted


class _EarlyStopping(FIFOScheduler):
    """Ray's side of hpo's early stopping: each result goes to the searcher, which decides."""

    def __init__(self, searcher: StudySearcher) -> None:
        super().__init__()
        self.searcher = searcher

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return self.STOP if self.searcher.report(trial.trial_id, result) else self.CONTINUE


@contextmanager
def interruptible(searcher: StudySearcher) -> Iterator[None]:
    """First Ctrl+C (or SIGTERM): stop gracefully; the second one aborts."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if searcher.interrupted:
            raise KeyboardInterrupt
        searcher.interrupted = True

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_resources(spec: StudySpec) -> None:
    """A trial that can never be placed would wait forever: say so instead."""
    available = ray.cluster_resources()
    for key, need in (("CPU", spec.resources.cpus), ("GPU", spec.resources.gpus)):
        if need > available.get(key, 0.0):
            raise RunError(f"each trial asks for {need:g} {key} but the Ray cluster has "
                           f"{available.get(key, 0.0):g} (run.resources in {spec.source})")


def check_address(address: str | None, env: Mapping[str, str] = os.environ) -> None:
    """Accept ``auto``, ``HOST:PORT`` (the head's GCS port, 6379 by default) or
    ``ray://HOST:PORT`` (Ray Client, 10001 by default), from ``--address`` or else
    ``RAY_ADDRESS``."""
    field = "--address" if address else "RAY_ADDRESS"
    address = address or env.get("RAY_ADDRESS") or None
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}", field=field
        )


def ray_init_kwargs(
    address: str | None, env: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """How to reach Ray: a new local instance, or the cluster at ``address``.

    On a cluster, trial workers are started by the nodes' raylets, not by this process, so
    they do not inherit its environment: the driver's ``PYTHONPATH`` goes with the job,
    made absolute (hpo, the objectives and plug-ins must be at those paths on every node).
    """
    address = address or env.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "address": address or "local",
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if address is not None and paths:
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}
    return kwargs


def _connect(address: str | None) -> None:
    kwargs = ray_init_kwargs(address)
    if kwargs["address"] != "local":
        use_token_if_available()
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray" if kwargs["address"] == "local" else f"Ray at {kwargs['address']}"
        raise RunError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from None


class _NoSigtermWarning(logging.Filter):
    """``ray.init`` off the main thread warns that it leaves SIGTERM alone: hpo handles
    SIGTERM itself while trials run (:func:`interruptible`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


logging.getLogger("ray._private.worker").addFilter(_NoSigtermWarning())


class RayConnection:
    """Ray, reached in the background from the moment it is created.

    Starting a local Ray takes seconds (its processes start one after the other), which the
    study's own start (storage, MLflow, the objective's inputs) can overlap. Call
    :meth:`wait` before using Ray and :meth:`close` at the end, whatever happened in
    between: it stops the local Ray it started, or disconnects from a cluster. Where Ray is
    already initialized (a driver running as a Ray task) it is used and left as it is.
    """

    def __init__(self, address: str | None) -> None:
        self.own = not ray.is_initialized()
        self._error: Exception | None = None
        self._connected, self._closed = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._connect, args=(address,),
                                        name="hpo-ray", daemon=True)  # fmt: skip
        if self.own:
            self._thread.start()
        else:
            self._connected.set()

    def _connect(self, address: str | None) -> None:
        try:
            _connect(address)
        except Exception as exc:  # raised in the study's thread, by wait()
            self._error = exc
        finally:
            self._connected.set()
        # Linux ends a local Ray's processes when the *thread* that started them ends
        # (they are started with PR_SET_PDEATHSIG): this one lives until Ray is stopped.
        self._closed.wait()

    def wait(self) -> None:
        """Return once connected; ``RunError`` if Ray could not be started or reached."""
        self._connected.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if not self.own:
            return
        self._connected.wait()
        try:
            if ray.is_initialized():
                _stop_autoscaler_monitor()
                ray.shutdown()
        finally:
            self._closed.set()
            self._thread.join()


def _stop_autoscaler_monitor() -> None:
    """Kill a local Ray's autoscaler monitor before ``ray.shutdown``, which would stop it
    after the GCS: on SIGTERM the monitor tries to report to the GCS, so ``ray.shutdown``
    waits its full second for it, then kills it all the same. On a cluster we connected
    to, the driver has no processes of its own and this does nothing."""
    node = getattr(ray._private.worker, "_global_node", None)
    for process in getattr(node, "all_processes", {}).get("monitor", []):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            process.process.kill()
            process.process.wait(timeout=1)


def trial_resources(spec: StudySpec) -> dict[str, float]:
    """What Ray reserves for each trial, as the study asks (fractions of a GPU included)."""
    return {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}


def run_trials(
    searcher: StudySearcher,
    spec: StudySpec,
    settings: Settings,
    num_trials: int,
    connection: RayConnection,
) -> None:
    """Run ``num_trials`` trials through Ray Tune; returns when done or interrupted."""
    try:
        connection.wait()
        _check_resources(spec)
        trainable = tune.with_resources(run_trial, trial_resources(spec))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=_EarlyStopping(searcher),
                num_samples=num_trials,
                max_concurrent_trials=spec.concurrency,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(settings.home / "ray"),
                verbose=0,
                stop=_StopWhenInterrupted(searcher),
                failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            ),
        )
        with interruptible(searcher):
            tuner.fit()
    finally:
        searcher.close_unfinished_if_any()
