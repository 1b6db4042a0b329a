"""One lock per study, shared by every driver on the same storage.

Several ``hpo study`` drivers may run one study together. Some steps must then be taken
by one driver at a time: creating the study (and a new database's tables), deciding
whether the trial budget allows another trial (count, then ask) and which MLflow run is
the study's parent (look, then create). The lock lives where the drivers already meet:

* PostgreSQL: a transaction-level advisory lock (``pg_advisory_xact_lock``), released on
  commit, rollback or when the driver's connection dies, so a killed driver never leaves it
  held;
* SQLite: an exclusive ``flock`` on a file next to the database (SQLite is local to one
  machine anyway), released by the kernel when the process ends; one lock for all the
  studies in that file;
* other databases: no lock (a race on the last trial may run one trial too many).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from hpo.errors import RunError
from hpo.settings import Settings, redact
from hpo.storage_retry import retrying


@contextmanager
def study_lock(settings: Settings, study_name: str) -> Iterator[None]:
    """Hold the study's lock for the duration of the ``with`` block."""
    path = settings.sqlite_path
    if path is not None:
        with _file_lock(path.with_name(f"{path.name}.lock")):
            yield
    elif settings.storage_url.startswith("postgresql"):
        connection = _advisory_lock(settings.storage_url, _key(study_name))
        try:
            yield
        finally:
            # Ends the transaction: releases the lock. A server that went away meanwhile
            # has released it already (and the pool replaces the dead connection).
            with contextlib.suppress(OperationalError, InterfaceError):
                connection.close()
    else:
        yield


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _advisory_lock(url: str, key: int) -> sqlalchemy.Connection:
    """A connection in a transaction holding the advisory lock ``key`` (a server that went
    away is waited for, as for every storage call: see :mod:`hpo.storage_retry`)."""
    return retrying(lambda: _try_advisory_lock(url, key), redact(url))


def _try_advisory_lock(url: str, key: int) -> sqlalchemy.Connection:
    connection = None
    try:
        connection = _engine(url).connect()
        connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    except SQLAlchemyError as exc:
        if connection is not None:
            connection.close()
        if isinstance(exc, OperationalError | InterfaceError):
            raise
        raise RunError(
            f"cannot open storage {redact(url)}: {redact(str(exc).splitlines()[0])}"
        ) from None
    return connection


@functools.cache
def _engine(url: str) -> sqlalchemy.Engine:
    """One small pool per storage URL, apart from Optuna's (the lock holds a connection)."""
    return sqlalchemy.create_engine(url, pool_size=1, max_overflow=2, pool_pre_ping=True)


def _key(study_name: str) -> int:
    """A stable signed 64-bit advisory-lock key for the study name."""
    digest = hashlib.sha256(f"hpo.study:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
