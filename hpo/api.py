"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpo.errors import ConfigError
from hpo.preflight import Report, run_preflight
from hpo.settings import Settings, redact
from hpo.spec import StudySpec, build_spec, load_spec
from hpo.storage import PARENT_ATTR, SPEC_ATTR, open_storage
from hpo.summary import StudySummary, front_rows

# Ray, MLflow and pandas are imported by the functions that use them: commands that only
# read a study start in a fraction of the time.
if TYPE_CHECKING:
    import pandas as pd

    from hpo.dashboard import Dashboard
    from hpo.held_out import HeldOutFront
    from hpo.report import Report as StudyReport
    from hpo.reproduce import Reproduction

_FLAG_FIELDS = {
    "trials": "run.trials",
    "sampler": "run.sampler",
    "seed": "run.seed",
    "concurrency": "run.concurrency",
    "cpus": "run.resources.cpus",
    "gpus": "run.resources.gpus",
    "constraints": "constraints",
    "scheduler": "stopping.scheduler",
    "backend": "run.backend",
    "health_after": "run.health_after",
    "stop_when_unhealthy": "run.stop_when_unhealthy",
    "report": "run.report",
    "max_retries": "run.max_retries",
}


def resolve_spec(
    study: str,
    *,
    overrides: Sequence[tuple[str, Any]] = (),
    study_name: str | None = None,
    **flags: Any,
) -> StudySpec:
    """Load a study file with ``--set``-style overrides, then the named flags on top
    (``trials=``, ``sampler=``, ``seed=``, ``concurrency=``, ``cpus=``, ``gpus=``,
    ``constraints=[...]``, ``scheduler=``, ``backend=``, ``health_after=``,
    ``stop_when_unhealthy=``, ``max_retries=``); ``None`` leaves the file's value."""
    unknown = set(flags) - set(_FLAG_FIELDS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    from_flags = [(_FLAG_FIELDS[k], v) for k, v in flags.items() if v is not None]
    return load_spec(study, [*overrides, *from_flags], study_name=study_name)


def run(
    study: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    show_progress: bool = True,
    preflight: bool = True,
    overrides: Sequence[tuple[str, Any]] = (),
    study_name: str | None = None,
    command: str | None = None,
    **flags: Any,
) -> StudySummary:
    """Run or resume a study until it has its budget of finished trials; the fast preflight
    checks run first unless ``preflight=False``. ``command`` (the command line, recorded
    with the study for its card) is redacted before it is stored.

    >>> summary = hpo.run("curves", trials=30)          # doctest: +SKIP
    """
    from hpo.execution.ray_client import is_client_address, run_on_cluster
    from hpo.execution.ray_connection import check_address, ray_init_kwargs
    from hpo.runner import run_study

    spec = resolve_spec(study, overrides=overrides, study_name=study_name, **flags)
    if address and spec.backend == "local":
        raise ConfigError(f"--address {address!r} needs the ray backend, not --backend local")
    if spec.backend != "local":
        check_address(address)
    settings = Settings.resolve(storage, tracking_uri)
    options: dict[str, Any] = {"address": address, "show_progress": show_progress,
                               "preflight": preflight, "command": command}
    client_address = address or os.environ.get("RAY_ADDRESS")
    if spec.backend != "local" and is_client_address(client_address):
        # Ray Client: the whole driver runs on the cluster (hpo.execution.ray_client)
        env = ray_init_kwargs(client_address).get("runtime_env", {})
        return run_on_cluster(str(client_address), env, run_study, spec, settings, **options)
    return run_study(spec, settings, **options)


def preflight(
    study: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    full: bool = True,
    overrides: Sequence[tuple[str, Any]] = (),
    study_name: str | None = None,
    **flags: Any,
) -> Report:
    """Check that the study can start (same options as :func:`run`), writing nothing.

    ``report.problems`` lists what would stop it; ``report.raise_for_problems()`` raises
    ``ConfigError`` with all of them. ``full=False``: only the checks made at study start.
    """
    spec = resolve_spec(study, overrides=overrides, study_name=study_name, **flags)
    return run_preflight(spec, Settings.resolve(storage, tracking_uri), full=full,
                         address=address)


def load(study_name: str, *, storage: str | None = None) -> tuple[optuna.Study, StudySpec]:
    """An existing study and the specification it was created with."""
    settings = Settings.resolve(storage)
    store = open_storage(settings)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(store)]
    if study_name not in names:
        raise ConfigError(
            f"no study {study_name!r} in {redact(settings.storage_url)} "
            f"(studies: {', '.join(names) or 'none'})"
        )
    study = optuna.load_study(study_name=study_name, storage=store)
    spec = build_spec(study.user_attrs[SPEC_ATTR], study_name, f"study {study_name!r}")
    return study, spec


def status(study_name: str, *, storage: str | None = None) -> StudySummary:
    """Where the study stands: counts by state, feasible, Pareto front, hypervolume."""
    study, spec = load(study_name, storage=storage)
    return StudySummary.of(study.get_trials(deepcopy=False), spec.goals)


def pareto_front(study_name: str, *, storage: str | None = None) -> pd.DataFrame:
    """The feasible Pareto front: one row per trial (params, objectives, constraint
    metrics, MLflow run id)."""
    study, spec = load(study_name, storage=storage)
    front = StudySummary.of(study.get_trials(deepcopy=False), spec.goals).front
    rows = front_rows(front, spec.goals, [c.metric for c in spec.constraints])
    import pandas as pd

    return pd.DataFrame(rows)


def held_out_front(
    study_name: str,
    *,
    storage: str | None = None,
    data: Sequence[tuple[str, Any]] = (),
    record: bool = True,
) -> HeldOutFront:
    """The feasible front's models measured again on held-out data, and the hypervolume
    of the front there (see :mod:`hpo.held_out`). ``data``: ``--set``-style pairs choosing
    the held-out data (the objective's ``held_out_args``, e.g. ``("data.test", PATH)``)
    where the study's arguments name none. ``record``: keep the measurement with the
    study (the card, ``hpo status``) and log it to its MLflow runs."""
    from hpo import held_out

    study, spec = load(study_name, storage=storage)
    settings = Settings.resolve(storage)
    front = held_out.measure_front(study, spec, settings, data)
    if record:
        held_out.record(study, spec, settings, front)
    return front


def reproduce(
    study_name: str,
    trial: int,
    *,
    storage: str | None = None,
    output_dir: str | Path | None = None,
) -> Reproduction:
    """Run trial ``trial`` again from what the study recorded (objective, args, params,
    seed, resources), in this process and outside the study (nothing is written to its
    storage or MLflow; outputs go to ``output_dir``, default
    ``<study_dir>/reproduce/NNNN``). Returns recorded vs reproduced metrics."""
    from hpo.reproduce import reproduce_trial

    study, spec = load(study_name, storage=storage)
    settings = Settings.resolve(storage)
    return reproduce_trial(
        study, spec, settings, trial, None if output_dir is None else Path(output_dir)
    )


def list_studies(*, storage: str | None = None) -> list[dict[str, Any]]:
    """Every study in the storage with its trial counts."""
    store = open_storage(Settings.resolve(storage))
    rows = []
    for s in optuna.study.get_all_study_summaries(store, include_best_trial=False):
        rows.append(
            {
                "study": s.study_name,
                "trials": s.n_trials,
                "directions": [d.name.lower() for d in s.directions],
                "started": s.datetime_start,
                "mlflow_run_id": s.user_attrs.get(PARENT_ATTR),
            }
        )
    return rows


def open_dashboard(
    study_name: str,
    *,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> Dashboard:
    """optuna-dashboard on the study's storage, bound to ``host:port`` (port 0: any free
    one); ``.url`` is the study's page, ``.serve_forever()`` answers requests."""
    from hpo.dashboard import Dashboard

    load(study_name, storage=storage)  # an unknown study is a one-line ConfigError
    store = open_storage(Settings.resolve(storage))
    study_id = store.get_study_id_from_name(study_name)
    return Dashboard.bind(store, study_id, host=host, port=port)


def report(
    study_name: str,
    *,
    out: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    log: bool = True,
) -> StudyReport:
    """Write the study's HTML report and PNG figures (default: its ``report/`` folder) and
    log them to its MLflow parent run under ``report/``."""
    from hpo.report import write_report

    settings = Settings.resolve(storage, tracking_uri)
    return write_report(study_name, settings, out=Path(out) if out else None, log=log)


def card(
    study_name: str,
    *,
    hypothesis: str | None = None,
    out: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Write the study's experiment card (default: ``CARD.md`` in its folder), keeping
    the Conclusions section of an existing card; returns its path."""
    from hpo.report import write_card

    settings = Settings.resolve(storage, tracking_uri)
    return write_card(
        study_name, settings, hypothesis=hypothesis, out=Path(out) if out else None
    )
