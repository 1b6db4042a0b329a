"""Opening a study's storage, and the study attributes every command reads.

Kept apart from :mod:`hpo.runner` so that commands that only read a study (``hpo status``,
``hpo ls``, ``hpo pareto``) do not import Ray and MLflow.
"""

from __future__ import annotations

import warnings

import optuna
from sqlalchemy.exc import SQLAlchemyError

from hpo.errors import ConfigError, RunError
from hpo.recovery import heartbeat_options
from hpo.settings import Settings, redact
from hpo.spec import StudySpec
from hpo.storage_retry import RetryingRDBStorage

SPEC_ATTR = "hpo_spec"
"""The study's specification, as run (a study user attribute)."""
PARENT_ATTR = "mlflow_parent_run_id"
"""The study's MLflow parent run (a study user attribute)."""
CONSTRAINTS_ATTR = "constraints"
"""The constraints the study's last driver session judges its trials by, as written (a
study user attribute): :func:`recorded_constraints`."""


def recorded_constraints(spec: StudySpec) -> list[str]:
    """``spec``'s constraints as :data:`CONSTRAINTS_ATTR` records them."""
    return [str(c) for c in spec.constraints]


def open_storage(
    settings: Settings, *, create: bool = False, spec: StudySpec | None = None
) -> RetryingRDBStorage:
    """The Optuna RDB storage; a database that cannot be reached is a runtime error.

    Without ``create``, a SQLite file that does not exist is a user error (nothing is
    created by commands that only read). With the ``spec`` of the study a driver runs, the
    storage can also tell trials whose heartbeats stopped (:mod:`hpo.recovery`).
    """
    path = settings.sqlite_path
    if not create and path is not None and not path.exists():
        raise ConfigError(f"no storage at {path}; run `hpo study` first or pass --storage")
    engine_kwargs = (
        {"connect_args": {"timeout": 60}}
        if settings.storage_url.startswith("sqlite")
        else {"pool_pre_ping": True}
    )
    heartbeat = heartbeat_options(spec) if spec is not None else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryingRDBStorage(
                settings.storage_url, engine_kwargs=engine_kwargs, **heartbeat
            )
    except (SQLAlchemyError, OSError) as exc:
        raise RunError(
            f"cannot open storage {redact(settings.storage_url)}: "
            f"{redact(str(exc).splitlines()[0])}"
        ) from None
