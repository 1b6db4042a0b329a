"""Riding out a database that goes away briefly (a PostgreSQL restart, a network blip).

Every call a driver makes to the study's storage goes through :func:`retrying`: a lost or
refused connection is retried with backoff for up to :data:`RETRY_SECONDS`, then ends the
study with a one-line :class:`~hpo.errors.RunError` (exit 1; running the same command
again resumes it). Other database errors are raised at once. SQLAlchemy's
``pool_pre_ping`` replaces the pool's dead connections once the server is back.

:class:`RetryingRDBStorage` also has the driver's own few-transaction writes: a commit is
most of a write's cost, and Optuna makes one per parameter and per attribute (a trial
started with its attributes; its parameters together; its outcome's attributes together;
the budget counted without reading the trials).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import optuna
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import TrialState
from sqlalchemy import delete, exists, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from hpo.errors import RunError
from hpo.settings import redact

RETRY_SECONDS = 60.0
_FIRST_DELAY, _MAX_DELAY = 0.25, 5.0
T = TypeVar("T")

_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError)
# What Optuna's cache (wrapped around this storage) calls on it besides the public API.
_PRIVATE_CALLS = ("_create_new_trial", "_set_trial_param", "_get_best_trial_id",
                  "_get_trials", "_get_stale_trial_ids")  # fmt: skip
_last_warning: dict[str, float] = {}
# Dialects whose INSERT ... ON CONFLICT DO UPDATE writes many attributes in one statement.
_UPSERTS: dict[str, Callable[[Any], Any]] = {"postgresql": postgresql.insert}
if sqlite3.sqlite_version_info >= (3, 24, 0):
    _UPSERTS["sqlite"] = sqlite_dialect.insert


def is_transient(exc: BaseException) -> bool:
    """A connection problem: one anywhere in the chain of ``exc``'s causes and contexts
    (Optuna and MLflow wrap SQLAlchemy's errors in their own; a connection lost while
    SQLAlchemy eagerly loads a query's relations surfaces as a ``PendingRollbackError``
    raised while handling it)."""
    return _connection_problem(exc) is not None


def _connection_problem(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    cursor: BaseException | None = exc
    while cursor is not None and id(cursor) not in seen:
        if isinstance(cursor, _TRANSIENT):
            return cursor
        seen.add(id(cursor))
        cursor = cursor.__cause__ or cursor.__context__
    return None


def retrying(
    call: Callable[[], T],
    what: str,
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    label: str = "storage",
) -> T:
    """``call()``, retried while the database cannot be reached (``what`` names it, and
    ``label`` the warning printed meanwhile); ``transient`` tells which errors those are."""
    deadline = time.monotonic() + RETRY_SECONDS
    delay = _FIRST_DELAY
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            cause = _connection_problem(exc) or exc.__cause__ or exc
            problem = redact(str(cause).strip().splitlines()[0])
            if time.monotonic() + delay > deadline:
                raise RunError(
                    f"lost the connection to {what} for {RETRY_SECONDS:g} s ({problem}); "
                    "finished trials are kept, run the same command to resume"
                ) from None
            _warn(label, f"{label}: cannot reach {what} ({problem}); retrying")
        time.sleep(delay)
        delay = min(2 * delay, _MAX_DELAY)


def _warn(label: str, message: str) -> None:
    """At most one line every few seconds per ``label``, whichever thread hits the outage."""
    if time.monotonic() - _last_warning.get(label, -float("inf")) > _MAX_DELAY:
        _last_warning[label] = time.monotonic()
        print(message, file=sys.stderr, flush=True)


Attrs = tuple[Mapping[str, Any], Mapping[str, Any]]
"""User and system attributes of a trial."""


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose every call is :func:`retrying` (opening it is not:
    a database that cannot be reached at start is reported at once), with writes of
    hpo's own that take one transaction each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches: dict[int, list[Callable[[Any], None]]] = {}

    @contextlib.contextmanager
    def batched(self, trial_id: int) -> Iterator[None]:
        """The parameters and system attributes written to running trial ``trial_id``
        inside the block, written in one transaction at its end. Optuna writes each in a
        transaction of its own as it is sampled; the commit is most of a write's cost.
        Nothing is written if the block raises."""
        writes = self._batches[trial_id] = []
        try:
            yield
        finally:
            del self._batches[trial_id]
        if writes:
            self.write_batch(writes)

    def write_batch(self, writes: list[Callable[[Any], None]]) -> None:
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            for write in writes:
                write(session)

    def _defer(self, trial_id: int, write: Callable[[Any], None]) -> bool:
        """Keep ``write(session)`` for the end of trial ``trial_id``'s batch, if one is
        open; False if none is (write now)."""
        batch = self._batches.get(trial_id)
        if batch is not None:
            batch.append(write)
        return batch is not None

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: Any,
        previous_distribution: Any,
    ) -> None:
        if not self._defer(trial_id, lambda session: self._set_trial_param_without_commit(
                session, trial_id, param_name, param_value_internal, distribution,
                previous_distribution)):  # fmt: skip
            super()._set_trial_param(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            )

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        from optuna.storages._rdb import models

        if not self._defer(trial_id, lambda session: self._set_trial_attr_without_commit(
                session, models.TrialSystemAttributeModel, trial_id, key, value)):  # fmt: skip
            super().set_trial_system_attr(trial_id, key, value)

    def start_trial(self, study_id: int, attrs: Callable[[int], Attrs]) -> int:
        """Take the study's next trial (its oldest WAITING one, as ``Study.ask`` does, else
        a new one) and make it RUNNING with the user and system attributes ``attrs(its
        number)`` and, when this storage records heartbeats, its first heartbeat: all in
        one transaction, so a driver killed at any point leaves either no trial or one
        whose driver and heartbeat are known (:mod:`hpo.recovery` closes it)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        trial_model = models.TrialModel
        with _create_scoped_session(self.scoped_session) as session:
            # Locked, as Optuna does when it numbers a new trial.
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            trial = (
                session.query(trial_model)
                .filter(trial_model.study_id == study_id)
                .filter(trial_model.state == TrialState.WAITING)
                .order_by(trial_model.number)
                .with_for_update()
                .first()
            )
            if trial is None:
                trial = trial_model(study_id=study_id, number=None, state=TrialState.RUNNING)
                session.add(trial)
                session.flush()  # its id, which numbers it
                trial.number = trial.count_past_trials(session)
            trial.state, trial.datetime_start = TrialState.RUNNING, datetime.now()
            trial_id, number = int(trial.trial_id), int(trial.number)
            user, system = attrs(number)
            self._set_attrs_without_commit(session, trial_id, user, system)
            if self.heartbeat_interval is not None:
                session.add(models.TrialHeartbeatModel(trial_id=trial_id))
        return trial_id

    def set_trial_attrs(
        self, trial_id: int, user: Mapping[str, Any], system: Mapping[str, Any]
    ) -> None:
        """Several user and system attributes of a running trial in one transaction (one
        commit instead of one per attribute: the commit is most of a write's cost)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            state = (
                session.query(models.TrialModel.state)
                .filter(models.TrialModel.trial_id == trial_id)
                .scalar()
            )
            if state is None:
                raise KeyError(models.NOT_FOUND_MSG)
            self.check_trial_is_updatable(trial_id, state)
            self._set_attrs_without_commit(session, trial_id, user, system)

    def set_trial_started(self, trial_id: int, system: Mapping[str, Any]) -> None:
        """Running trial ``trial_id`` starts now: its start time becomes now, with the
        system attributes ``system``, in one transaction (a trial asked ahead of a free
        worker is handed to one: :mod:`hpo.execution._searcher`)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            self.check_trial_is_updatable(trial_id, trial.state)
            trial.datetime_start = datetime.now()
            self._set_attrs_without_commit(session, trial_id, {}, system)

    def set_constraints(self, attrs: Mapping[int, Mapping[str, Any]]) -> None:
        """Replace the constraint attributes (system attributes ``constraints`` and
        ``constraints:*``) of finished trials, trial id -> its new ones, in one transaction.
        Optuna refuses to write to a finished trial; hpo does it when a study resumes with
        other constraints (:func:`hpo.trials.rejudge`)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        attr = models.TrialSystemAttributeModel
        with _create_scoped_session(self.scoped_session, True) as session:
            for trial_id, system in attrs.items():
                session.execute(delete(attr).where(
                    attr.trial_id == trial_id,
                    (attr.key == _CONSTRAINTS_KEY) | attr.key.startswith(f"{_CONSTRAINTS_KEY}:")))
                self._set_attrs_without_commit(session, trial_id, {}, system)

    def count_trials(
        self, study_id: int, states: Sequence[TrialState], *, unless_true: Sequence[str] = ()
    ) -> int:
        """The study's trials in ``states``, except those with a user attribute of
        ``unless_true`` set to true: one query (reading the trials takes seven)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        trial, attr = models.TrialModel, models.TrialUserAttributeModel
        query = select(func.count()).select_from(trial).where(
            trial.study_id == study_id, trial.state.in_(states))
        if unless_true:
            query = query.where(~exists().where(
                attr.trial_id == trial.trial_id, attr.key.in_(unless_true),
                attr.value_json == json.dumps(True)))  # fmt: skip
        with _create_scoped_session(self.scoped_session) as session:
            return int(session.execute(query).scalar_one())

    def _set_attrs_without_commit(
        self, session: Any, trial_id: int, user: Mapping[str, Any], system: Mapping[str, Any]
    ) -> None:
        """One upsert statement per kind of attribute where the database has them (SQLite,
        PostgreSQL); Optuna's own write, which loads the whole trial for each attribute,
        elsewhere. The caller knows the trial is running."""
        from optuna.storages._rdb import models

        upsert = _UPSERTS.get(self.engine.name)
        for model, attrs in ((models.TrialUserAttributeModel, user),
                             (models.TrialSystemAttributeModel, system)):  # fmt: skip
            if not attrs:
                continue
            if upsert is None:
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, key, value)
                continue
            insert = upsert(model).values(
                [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                 for k, v in attrs.items()])  # fmt: skip
            session.execute(insert.on_conflict_do_update(
                index_elements=[model.trial_id, model.key],
                set_={"value_json": insert.excluded.value_json}))  # fmt: skip


def _retried(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return retrying(lambda: method(self, *args, **kwargs), redact(self.url))

    return call


for _name, _method in vars(optuna.storages.RDBStorage).items():
    if callable(_method) and (not _name.startswith("_") or _name in _PRIVATE_CALLS):
        _method = vars(RetryingRDBStorage).get(_name, _method)  # hpo's version, if any
        setattr(RetryingRDBStorage, _name, _retried(_method))
for _name in ("count_trials", "set_constraints", "set_trial_attrs", "start_trial",
              "write_batch"):
    setattr(RetryingRDBStorage, _name, _retried(vars(RetryingRDBStorage)[_name]))
