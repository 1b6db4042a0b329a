"""The study's Pareto front measured again on held-out data.

The front is chosen on the metrics the trials reported on the evaluation data. The more
trials a study trains to the end, the more its front holds the ones whose evaluation was
lucky, so the front's metrics there, and its hypervolume, are optimistic (the winner's
curse). The objective re-measures each front trial's kept model on data no trial was
trained or selected on (:meth:`hpo.objectives.Objective.evaluate_held_out`), and each is
judged feasible again on those metrics: what the front is worth on new data.

A measurement becomes part of the study's record (:func:`record`): the study attribute
``held_out`` (read by the card and ``hpo status``), ``held_out.*`` metrics on each
measured trial's MLflow run, and the hypervolume and the front with its held-out columns
on the study's run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial

from hpo.errors import ConfigError, RunError
from hpo.objectives import Objective, resolve_objective
from hpo.pareto import hypervolume
from hpo.settings import Settings, redact
from hpo.spec import StudySpec, assign
from hpo.storage import PARENT_ATTR
from hpo.summary import StudySummary, front_rows
from hpo.trial_outputs import MODEL_DIR, model_dir
from hpo.trials import ATTR_METRICS, ATTR_RUN_ID

ATTR_HELD_OUT = "held_out"
"""Study attribute: the latest measurement (:meth:`HeldOutFront.as_record`)."""
PREFIX = "held_out."
"""Of the held-out columns (``hpo pareto``, the card) and MLflow metrics."""
_FIXED_COLUMNS = ("trial", "mlflow_run_id")


class _Point(NamedTuple):
    values: list[float]


@dataclass(frozen=True)
class HeldOutTrial:
    number: int
    metrics: Mapping[str, float]
    """The trial's final metrics, those the objective measured again replaced."""
    feasible: bool
    measured: tuple[str, ...]
    """The metrics measured again (the others, such as ``num_params``, are the trial's)."""


@dataclass(frozen=True)
class HeldOutFront:
    trials: tuple[HeldOutTrial, ...]
    """The study's feasible front (chosen on the evaluation data), by trial number."""
    hypervolume: float | None
    """Of the members still feasible, on their held-out metrics (``None`` without refs)."""
    hypervolume_reported: float | None
    """The study's own: of the front on the metrics its trials reported."""
    at: str
    """When it was measured (UTC, ISO 8601)."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """The held-out data chosen for this measurement (``--set``), beside the study's."""

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> HeldOutFront:
        trials = tuple(HeldOutTrial(t["number"], t["metrics"], t["feasible"],
                                    tuple(t["measured"])) for t in record["trials"])
        return cls(trials, record["hypervolume"], record["hypervolume_reported"], record["at"],
                   record.get("data", {}))

    def missing(self, front: Sequence[int]) -> list[int]:
        """The trials of ``front`` (numbers) this measurement did not cover: they joined
        the front after it."""
        covered = {t.number for t in self.trials}
        return [n for n in front if n not in covered]


def measure_front(study: optuna.Study, spec: StudySpec, settings: Settings,
                  data: Sequence[tuple[str, Any]] = ()) -> HeldOutFront:
    """Re-measure every front trial's model (see the module docstring). ``data``:
    ``(argument, value)`` pairs among the objective's ``held_out_args`` (``data.test``
    or ``objective.args.data.test``), for this measurement only.

    ConfigError when the objective keeps no models, ``data`` sets another argument, or
    there is no held-out data; RunError when a front trial's model is neither under this
    home nor in its MLflow run (``run.keep_models: none``).
    """
    kind = resolve_objective(spec.objective)
    if kind.evaluate_held_out is Objective.evaluate_held_out:
        raise ConfigError(f"study {study.study_name!r}: objective {spec.objective!r} keeps no "
                          "models to measure on held-out data")
    chosen = {name.removeprefix("objective.args."): value for name, value in data}
    try:
        objective = kind(**_arguments(study.study_name, spec, kind.held_out_args, chosen))
    except ValueError as exc:
        raise ConfigError(f"study {study.study_name!r}: {exc}") from None
    summary = StudySummary.of(study.get_trials(deepcopy=False), spec.goals)
    measured = []
    for trial in summary.front:
        try:
            with _kept_model(settings, study.study_name, trial) as directory:
                again = objective.evaluate_held_out(directory, settings.cache_dir)
        except ValueError as exc:
            raise ConfigError(f"study {study.study_name!r}: {exc}") from None
        metrics = {**trial.user_attrs.get(ATTR_METRICS, {}), **again}
        feasible = all(c.violation(metrics) <= 0 for c in spec.constraints)
        measured.append(HeldOutTrial(trial.number, metrics, feasible, tuple(again)))
    points = [_Point([t.metrics[g.metric] for g in spec.goals]) for t in measured if t.feasible]
    return HeldOutFront(tuple(measured), hypervolume(points, spec.goals), summary.hypervolume,
                        datetime.now(UTC).isoformat(timespec="seconds"), chosen)


@contextlib.contextmanager
def _kept_model(settings: Settings, study_name: str, trial: FrozenTrial) -> Iterator[Path]:
    """The trial's kept model: under this machine's home, else the ``model`` artifact of
    its MLflow run (logged for the front's trials when a study session ends), downloaded
    for the measurement, so a study shared between machines is measured from any."""
    directory = model_dir(settings, study_name, trial.number)
    if directory.is_dir():
        yield directory
        return
    run_id = trial.user_attrs.get(ATTR_RUN_ID)
    with tempfile.TemporaryDirectory(prefix="hpo-held-out-") as tmp:
        try:
            if not run_id:
                raise LookupError("no run")
            from mlflow.tracking import MlflowClient

            import hpo.tracking  # noqa: F401  (MLflow as hpo configures it: no progress bars)

            client = MlflowClient(tracking_uri=settings.tracking_uri)
            downloaded = Path(client.download_artifacts(run_id, MODEL_DIR, tmp))
        except Exception as exc:  # MLflow raises its own, requests' and OS errors
            raise RunError(
                f"trial {trial.number} of study {study_name!r} kept no model ({directory}; "
                f"its MLflow run has none either: {type(exc).__name__}): held-out metrics "
                "need run.keep_models front or all") from None
        yield downloaded


def _arguments(name: str, spec: StudySpec, allowed: Sequence[str],
               chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The study's objective arguments with the held-out data ``chosen``."""
    document = {"objective": {"args": copy.deepcopy(dict(spec.objective_args))}}
    for argument, value in chosen.items():
        if argument not in allowed:
            raise ConfigError(
                f"study {name!r}: --set {argument}: a measurement may only choose the held-out "
                f"data ({', '.join(allowed) or 'nothing'} for objective {spec.objective!r}); "
                "the other arguments are the study's")
        assign(document, f"objective.args.{argument}", value, f"study {name!r}")
    return document["objective"]["args"]


def recorded(study: optuna.Study) -> HeldOutFront | None:
    """The study's latest recorded measurement, if any."""
    record = study.user_attrs.get(ATTR_HELD_OUT)
    return HeldOutFront.from_record(record) if isinstance(record, dict) else None


def with_held_out(rows: Sequence[Mapping[str, Any]],
                  front: HeldOutFront) -> list[dict[str, Any]]:
    """Front rows (:func:`hpo.summary.front_rows`) with a ``held_out.<metric>`` column for
    each objective and constraint metric, and ``held_out.feasible``; empty cells for
    trials the measurement did not cover."""
    again = {t.number: t for t in front.trials}
    extended = []
    for row in rows:
        trial = again.get(row["trial"])
        metrics = [k for k in row if k not in _FIXED_COLUMNS and not k.startswith("params.")]
        columns: dict[str, Any] = {
            f"{PREFIX}{k}": None if trial is None else trial.metrics.get(k) for k in metrics}
        columns[f"{PREFIX}feasible"] = None if trial is None else trial.feasible
        extended.append({**row, **columns})
    return extended


def record(study: optuna.Study, spec: StudySpec, settings: Settings,
           front: HeldOutFront) -> None:
    """Keep ``front`` with the study, then log it to the study's MLflow runs (module
    docstring); RunError, after the study's record is written, when MLflow fails."""
    study.set_user_attr(ATTR_HELD_OUT, front.as_record())
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is None:  # the study was never tracked
        return
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows = front_rows([trials[t.number] for t in front.trials], spec.goals,
                      [c.metric for c in spec.constraints])
    try:
        _log(settings, parent, {n: t.user_attrs.get(ATTR_RUN_ID) for n, t in trials.items()},
             front, with_held_out(rows, front))
    except Exception as exc:  # MLflow raises its own, requests' and OS errors
        raise RunError(f"held-out metrics of study {study.study_name!r} are recorded with the "
                       f"study but not in MLflow ({redact(settings.tracking_uri)}): "
                       f"{type(exc).__name__}: {exc}") from None


def _log(settings: Settings, parent: str, runs: Mapping[int, str | None], front: HeldOutFront,
         rows: list[dict[str, Any]]) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from hpo.tracking import csv_text, log_files

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    now = int(time.time() * 1000)
    for trial in front.trials:
        run_id = runs.get(trial.number)
        if run_id:
            values = {**{m: trial.metrics[m] for m in trial.measured},
                      "feasible": float(trial.feasible)}
            client.log_batch(run_id, metrics=[
                Metric(f"{PREFIX}{k}", float(v), now, 0) for k, v in values.items()])
    if front.hypervolume is not None:
        client.log_metric(parent, f"{PREFIX}hypervolume", front.hypervolume, now)
    log_files(lambda path: client.log_artifact(parent, path), {
        "pareto_front_held_out.json": json.dumps(rows, indent=2, default=str),
        "pareto_front_held_out.csv": csv_text(rows),
    })
