"""Reaching Ray: a local instance started for the study, or a running cluster.

Without ``address`` (or ``RAY_ADDRESS``) a local Ray is started and stopped, even when a
``ray start`` cluster runs on this machine. With one, the driver connects to that cluster
and only disconnects at the end: the cluster keeps running.

Only ``ray`` itself is imported here, not Ray Tune: a study starts Ray before it imports
the heavier parts of the stack (Ray Tune, MLflow), which load while Ray's processes start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

import ray

from hpo.errors import ConfigError, RunError
from hpo.execution.ray_client import use_token_if_available

# Ray Tune's settings, set before Ray starts so that a local Ray's workers have them too.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # hpo handles Ctrl+C itself
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Trials keep the driver's working directory: relative paths in a study file mean the same
# thing in every trial (on a local Ray).
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# Optuna storage and MLflow hold every result: Ray's own per-trial JSON, CSV and
# TensorBoard files would only cost the driver time on each result.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# What Ray Tune gives each trial actor (ray-project/ray#28197); see ``started_here``.
os.environ.setdefault("PL_DISABLE_FORK", "1")
ZERO_GPUS_SEE_NONE = "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"
"""With 1, a trial given no GPU sees none (CUDA_VISIBLE_DEVICES and its kin set empty), as
its objective is told (``TrialContext.gpus == 0``). Ray 2.60 leaves such a worker the GPUs
its node sees (ray-project/ray#62492), where its use of them would go uncounted beside the
trials given fractions of them. A cluster's nodes need it in ``ray start``'s environment."""
os.environ.setdefault(ZERO_GPUS_SEE_NONE, "1")


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


class _WithoutNotice(logging.Filter):
    """Drops one of Ray's warnings that asks nothing of hpo's users."""

    def __init__(self, notice: str) -> None:
        super().__init__()
        self.notice = notice

    def filter(self, record: logging.LogRecord) -> bool:
        return self.notice not in record.getMessage()


# ``ray.init`` off the main thread warns that it leaves SIGTERM alone: hpo handles SIGTERM
# itself while trials run (:func:`hpo.execution.ray_backend.interruptible`).
logging.getLogger("ray._private.worker").addFilter(_WithoutNotice("SIGTERM handler is not set"))
# A local Ray turns token authentication on by itself (Ray 2.60: a token is made in
# ~/.ray/auth_token if there is none) and says so at every start, with how to opt out.
logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
    _WithoutNotice("Token authentication is enabled for this Ray cluster")
)


class RayConnection:
    """Ray, reached in the background from the moment it is created.

    Starting a local Ray takes seconds (its processes start one after the other), which the
    study's own start (importing Ray Tune and MLflow, the MLflow run, the objective's
    inputs) can overlap. Call
    :meth:`wait` before using Ray and :meth:`close` at the end, whatever happened in
    between: it stops the local Ray it started, or disconnects from a cluster. Where Ray is
    already initialized (a driver running as a Ray task) it is used and left as it is.
    """

    def __init__(self, address: str | None) -> None:
        self.own = not ray.is_initialized()
        self.started_here = self.own and ray_init_kwargs(address)["address"] == "local"
        """Ray's processes are this one's children: its workers start with this process's
        environment (the variables above included)."""
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
