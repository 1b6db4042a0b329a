"""Trials whose driver is gone: found and run again.

A driver records, for each trial it runs, its ``host:pid`` and (every
``run.heartbeat_interval`` seconds, from a background thread) a heartbeat in the study's
storage. A RUNNING trial is taken for interrupted when its driver is a dead process on this
host, or when its last heartbeat is older than :data:`GRACE_INTERVALS` intervals (a driver
on another host or container that was killed). Such trials are closed as FAIL marked
``interrupted`` (not counted towards the budget) and their configurations enqueued again,
exactly as when a study is interrupted with Ctrl+C.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.spec import StudySpec
from hpo.trials import SYSTEM_DRIVER, decide, tell

GRACE_INTERVALS = 3
"""Heartbeats a trial may miss before it is taken for interrupted."""

# hpo asks and tells trials itself (not through study.optimize) and beats for them here.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def heartbeat_options(spec: StudySpec) -> dict[str, Any]:
    """``RDBStorage`` arguments that let it tell stale trials."""
    interval = spec.heartbeat_interval
    return {"heartbeat_interval": interval, "grace_period": GRACE_INTERVALS * interval}


class Recovery:
    """Closes the study's RUNNING trials whose driver is gone (see the module docstring).

    ``recover()`` checks at most once per heartbeat interval unless ``force``d; the caller
    holds the study's lock (drivers must not close the same trial twice). ``after`` is
    called when trials were closed (their MLflow runs are then closed too).
    """

    def __init__(
        self, study: optuna.Study, spec: StudySpec, after: Callable[[], object] | None = None
    ) -> None:
        self.study, self.spec, self.after = study, spec, after
        self._last = -float("inf")

    def recover(self, *, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now - self._last < self.spec.heartbeat_interval:
            return 0
        self._last = now
        stale = set(_stale_trial_ids(self.study))
        recovered = 0
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen._trial_id in stale or _driver_is_dead(frozen.system_attrs):
                trial = optuna.Trial(self.study, frozen._trial_id)
                outcome = decide(self.spec, frozen.number, _configuration(frozen), None)
                recovered += tell(self.study, trial, outcome)
        if recovered and self.after is not None:
            self.after()
        return recovered


def _configuration(frozen: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters the trial runs (to run again): those it suggested, and those it was
    enqueued with, which a trial killed before suggesting them has not recorded yet."""
    return {**frozen.system_attrs.get("fixed_params", {}), **frozen.params}


def _stale_trial_ids(study: optuna.Study) -> list[int]:
    storage: Any = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is None:
        return []
    return list(storage._get_stale_trial_ids(study._study_id))


def _driver_is_dead(system_attrs: Mapping[str, Any]) -> bool:
    """The trial's driver ran on this host and its process is gone."""
    host, _, pid = str(system_attrs.get(SYSTEM_DRIVER, "")).rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Records a heartbeat for each trial this driver asked, from the moment it is asked
    (its trial may wait for a worker: :mod:`hpo.execution._searcher`), then every interval,
    until it ends; all from a daemon thread, so the driver's loop does not wait for them."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.study, self.interval = study, interval
        self._live: dict[int, int] = {}  # trial number -> trial id
        self._new: list[int] = []  # trial ids not beaten yet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hpo-heartbeat", daemon=True)
        self._thread.start()

    def start(self, trial: optuna.Trial) -> None:
        with self._lock:
            self._live[trial.number] = trial._trial_id
            self._new.append(trial._trial_id)
        self._wake.set()

    def stop(self, number: int) -> None:
        with self._lock:
            self._live.pop(number, None)

    def _beat(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            with self._lock:
                trial_ids, self._new = self._new, []
                if time.monotonic() >= due:  # every live trial's beat
                    trial_ids = list(self._live.values())
                    due = time.monotonic() + self.interval
            for trial_id in trial_ids:
                self._record(trial_id)

    def _record(self, trial_id: int) -> None:
        # A missed beat is harmless (the grace period spans several); the storage's own
        # errors reach the driver through its next call.
        with contextlib.suppress(Exception):
            self.study._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
