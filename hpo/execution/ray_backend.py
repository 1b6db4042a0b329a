"""Run trials as Ray Tune trials: resources per trial, concurrency, actor reuse.

Ray decides *where* trials run; the searcher decides *what* runs (Optuna) and how each
trial is recorded. How Ray is reached is :mod:`hpo.execution.ray_connection`.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import ray
from ray import tune
from ray.tune.execution import class_cache  # Tune's trial actor classes
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from hpo.errors import RunError
from hpo.execution._searcher import StudySearcher
from hpo.execution._trainable import run_trial
from hpo.execution.ray_connection import RayConnection
from hpo.settings import Settings
from hpo.spec import StudySpec

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


@contextmanager
def _actors_without_runtime_env(started_here: bool) -> Iterator[None]:
    """On a Ray started by this process, trial actors without a runtime environment.

    Ray Tune gives each trial actor one, of environment variables (``PL_DISABLE_FORK``,
    and ``RAY_CHDIR_TO_TRIAL_DIR``, cloud credentials and Ray Train settings when the
    driver has them). An actor with a runtime environment cannot use the workers Ray keeps
    ready: each gets a new process, set up by Ray's runtime-environment agent (1.1-1.8 s
    instead of 0.2-0.5 s on 2 cores), and Tune starts several while trials are short. The
    workers of a Ray started here have the driver's environment already.
    """
    if not started_here or not all(
        hasattr(class_cache, name) for name in ("DEFAULT_ENV_VARS", "ENV_VARS_TO_PROPAGATE")
    ):
        yield
        return
    saved = class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE
    class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, set()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = saved


def _check_resources(spec: StudySpec) -> None:
    """A trial that can never be placed would wait forever: say so instead."""
    available = ray.cluster_resources()
    for key, need in (("CPU", spec.resources.cpus), ("GPU", spec.resources.gpus)):
        if need > available.get(key, 0.0):
            raise RunError(f"each trial asks for {need:g} {key} but the Ray cluster has "
                           f"{available.get(key, 0.0):g} (run.resources in {spec.source})")


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
        with interruptible(searcher), _actors_without_runtime_env(connection.started_here):
            tuner.fit()
    finally:
        searcher.close_unfinished_if_any()
