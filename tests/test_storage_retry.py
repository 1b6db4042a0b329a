"""Which storage errors a driver rides out (retries) and which it raises at once."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError

from hpo.storage_retry import retrying


def _lost_during_eager_load() -> None:
    """What Optuna raises when the server goes away while SQLAlchemy loads a query's
    relations: the lost connection is the context of a PendingRollbackError, which
    Optuna wraps in its own error."""
    try:
        try:
            raise OperationalError("SELECT", {}, Exception("terminating connection"))
        except OperationalError:
            # as SQLAlchemy raises it: with the lost connection as its context
            raise PendingRollbackError("Can't reconnect until rolled back")  # noqa: B904
    except PendingRollbackError as exc:
        raise optuna.exceptions.StorageInternalError("during the commit") from exc


def test_a_connection_lost_while_loading_relations_is_retried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            _lost_during_eager_load()
        return "trials"

    assert retrying(flaky, "postgresql://db") == "trials" and len(calls) == 3
    warning = capsys.readouterr().err
    assert "storage: cannot reach postgresql://db" in warning
    assert "terminating connection" in warning  # the lost connection, not what it caused


def test_other_database_errors_are_raised_at_once() -> None:
    calls = []

    def invalid() -> None:
        calls.append(1)
        raise optuna.exceptions.StorageInternalError("during the commit") from IntegrityError(
            "INSERT", {}, Exception("duplicate key")
        )

    with pytest.raises(optuna.exceptions.StorageInternalError):
        retrying(invalid, "postgresql://db")
    assert len(calls) == 1
