"""MLflow: one parent run per study, one nested child run per trial.

All logging happens in the driver: trials stream results to it anyway, and the driver
is the one place that knows how each trial ended. Intermediate metrics are buffered and
written with ``log_batch``, not one request per value. Once the study runs, every write
goes through one :class:`~hpo.tracking_writer.TrackingWriter` thread, in order, so the
trials never wait for MLflow (and MLflow being away is retried, never the study's end).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunInfo, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from hpo.locking import study_lock
from hpo.pareto import is_feasible
from hpo.provenance import CONFIG_FILE, UNKNOWN, GitState, describe_gpus, trial_config
from hpo.settings import Settings, redact
from hpo.spec import Constraint, StudySpec
from hpo.storage import PARENT_ATTR
from hpo.summary import StudySummary, front_rows
from hpo.tracking_writer import TrackingWriter
from hpo.trial_outputs import MODEL_DIR, model_dir
from hpo.trials import ATTR_GPUS, ATTR_METRICS, ATTR_RUN_ID, ATTR_SEED, WHERE, Outcome, judge

TAG_STUDY, TAG_ROLE, TAG_TRIAL = "hpo.study", "hpo.role", "hpo.trial"
TAG_COMMIT, TAG_MODEL = "hpo.git_commit", "hpo.model"
_END_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAIL: "FAILED",
}
_FLUSH_SECONDS = 2.0
_SUMMARY_SECONDS = 1.0
"""The study's summary metrics and front are logged at most this often (and at the end)."""
_MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch

for _noisy in ("alembic",):  # mlflow.store.db.utils: see hpo.tracking_writer
    logging.getLogger(_noisy).setLevel(logging.WARNING)
# With a tracking server MLflow prints "View run ... at: URL" for every run it ends.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# Artifact transfers (models logged, or downloaded for held-out metrics) draw progress bars
# on stderr.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Tracker:
    """Writes a study and its trials to MLflow."""

    def __init__(self, spec: StudySpec, settings: Settings, study: optuna.Study) -> None:
        self.spec, self.settings, self.study = spec, settings, study
        self.git_commit = UNKNOWN
        # Drivers sharing the study agree on one experiment and one parent run (and do not
        # race on creating the tables of a new MLflow database).
        with study_lock(settings, study.study_name):
            self.client = MlflowClient(tracking_uri=settings.tracking_uri)
            self.experiment_id = self._experiment(study.study_name, settings)
            self.parent_id = self._parent_run(study, settings)
        self.writer = TrackingWriter(settings.tracking_uri)
        self._children: dict[int, Future[RunInfo | None]] = {}
        """Each running trial's child run, once the writer has created it."""
        self._pending: dict[int, list[Metric]] = {}
        self._last_flush = time.monotonic()
        self._front: tuple[int, ...] | None = None
        self._summary: StudySummary | None = None
        """The latest summary, while it is not logged yet."""
        self._last_summary = -math.inf

    def _experiment(self, name: str, settings: Settings) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        # A tracking server chooses (and serves) the artifact location; otherwise they go
        # under HPO_HOME rather than MLflow's default ./mlruns of the current directory.
        location = (
            None
            if _is_server(settings.tracking_uri)
            else (settings.artifact_root / name).as_uri()
        )
        return str(self.client.create_experiment(name, artifact_location=location))

    def _parent_run(self, study: optuna.Study, settings: Settings) -> str:
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is None:
            found = self.client.search_runs(
                [self.experiment_id],
                f"tags.`{TAG_STUDY}` = '{study.study_name}' and tags.`{TAG_ROLE}` = 'study'",
                max_results=1,
            )
            run_id = found[0].info.run_id if found else None
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=study.study_name,
                tags={
                    TAG_STUDY: study.study_name,
                    TAG_ROLE: "study",
                    "mlflow.note.content": self.spec.description,
                },
            )
            run_id = run.info.run_id
            self._log_study(run_id, study.study_name, settings)
            study.set_user_attr(PARENT_ATTR, run_id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        return str(run_id)

    def _log_study(self, run_id: str, name: str, settings: Settings) -> None:
        spec = self.spec
        params = {
            "objective": spec.objective,
            "sampler": spec.sampler,
            "seed": spec.seed,
            "concurrency": spec.concurrency,
            "cpus_per_trial": spec.resources.cpus,
            "gpus_per_trial": spec.resources.gpus,
            "objectives": ", ".join(f"{g.direction} {g.metric}" for g in spec.goals),
            "constraints": "; ".join(map(str, spec.constraints)) or "none",
            "study_file": spec.source,
        }
        params.update({f"args.{k}": v for k, v in spec.objective_args.items()})
        self.client.log_batch(
            run_id,
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag("hpo.storage", redact(settings.storage_url))],
        )
        self.client.log_text(
            run_id, json.dumps(spec.raw, indent=2, default=str), "study_resolved.json"
        )

    def record_inputs(self, inputs: Mapping[str, str]) -> None:
        """Tag the parent run with what the objective prepared (data source, teacher, ...)."""
        if inputs:
            tags = [RunTag(f"hpo.input.{k}", redact(v)[:5000]) for k, v in inputs.items()]
            self.writer.submit(lambda: self.client.log_batch(self.parent_id, tags=tags),
                               "tag the study's run with its inputs")  # fmt: skip

    def record_provenance(self, record: Mapping[str, Any], git: GitState) -> None:
        """Environment, commit(s) and inputs of this session on the parent run: tags (they
        may change on resume; params may not), ``environment.json`` and, when the working
        tree has uncommitted changes, ``git.diff``."""
        self.git_commit = git.commit
        env = record["environment"]
        tags = {
            TAG_COMMIT: git.commit,
            "hpo.git_dirty": str(git.dirty).lower(),
            "hpo.git_commits": ",".join(record["commits"]),
            "hpo.host": env["host"],
            "hpo.cpu": env["cpu"],
            "hpo.python": env["python"],
            **{f"hpo.version.{k}": v for k, v in env["packages"].items()},
        }
        if env.get("gpus"):
            tags["hpo.gpu"] = "; ".join(env["gpus"])
        if env.get("cuda"):
            tags["hpo.cuda"] = env["cuda"]
        run_tags = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        what = "record the study's provenance"
        self.writer.submit(lambda: self.client.log_batch(self.parent_id, tags=run_tags), what)
        self.writer.submit(
            lambda: self.client.log_dict(self.parent_id, dict(record), "environment.json"), what
        )
        if git.diff:
            diff = git.diff
            self.writer.submit(
                lambda: self.client.log_text(self.parent_id, diff, "git.diff"), what
            )

    def record_health(self, diagnosis: str) -> None:
        """Tag the parent run with the health check's diagnosis."""
        self.writer.submit(
            lambda: self.client.set_tag(self.parent_id, "hpo.health", diagnosis[:5000]),
            "tag the study's run with its health",
        )

    # -- trials ---------------------------------------------------------------------------
    def trial_started(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        number, seed = trial.number, trial.user_attrs[ATTR_SEED]
        tags = {
            "mlflow.parentRunId": self.parent_id,
            TAG_STUDY: self.spec.name,
            TAG_ROLE: "trial",
            TAG_TRIAL: str(number),
            TAG_COMMIT: self.git_commit,
        }

        def create() -> RunInfo:
            run = self.client.create_run(
                self.experiment_id, run_name=f"trial-{number:04d}", tags=tags
            )
            return run.info

        self._children[number] = self.writer.submit(create, f"create the run of trial {number}")
        config = trial_config(self.spec, number, params, seed, self.git_commit)
        logged = {**params, "trial_number": number, "seed": seed}

        def log_config(run: RunInfo) -> None:
            # Into the run's artifact store directly: MlflowClient.log_dict would read the
            # whole run back to find it.
            repo = get_artifact_repository(run.artifact_uri, self.settings.tracking_uri)
            log_files(repo.log_artifact, {CONFIG_FILE: json.dumps(config, indent=2)})
            self.client.log_batch(
                run.run_id, params=[Param(k, str(v)) for k, v in logged.items()]
            )

        self._child(number, "log the configuration of", log_config)

    def _child(self, number: int, what: str, write: Callable[[RunInfo], object]) -> None:
        """Queue ``write(run)`` for trial ``number``'s child run (skipped if that run could
        not be created)."""
        created = self._children[number]

        def call() -> None:
            run = created.result()  # done: the writer runs its queue in order
            if run is not None:
                write(run)

        self.writer.submit(call, f"{what} trial {number}")

    def trial_attrs(self, number: int) -> dict[str, Any]:
        """The attributes to record on trial ``number`` when it ends: its MLflow run id
        (waits for the writer to have created the run, normally long done)."""
        created = self._children.get(number)
        run = created.result() if created is not None else None
        return {} if run is None else {ATTR_RUN_ID: run.run_id}

    def record_verdicts(
        self, constraints: Sequence[Constraint], trials: Sequence[FrozenTrial]
    ) -> None:
        """After the study's constraints changed to ``constraints``
        (:func:`hpo.trials.rejudge`), which the tracker goes by from now on: them as the
        study run's tag ``hpo.constraints``, and on each finished trial's run its constraint
        values, ``feasible`` and ``hpo.feasible`` by them (later values of the same metrics:
        MLflow shows the latest); the study's summary by them is logged next."""
        self.spec = dataclasses.replace(self.spec, constraints=tuple(constraints))
        self._summary = StudySummary.of(trials, self.spec.goals)
        written = "; ".join(map(str, constraints)) or "none"
        self.writer.submit(
            lambda: self.client.set_tag(self.parent_id, "hpo.constraints", written),
            "tag the study run with its constraints")  # fmt: skip
        now = int(time.time() * 1000)
        for trial in trials:
            run_id = trial.user_attrs.get(ATTR_RUN_ID)
            if run_id is None or trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                continue
            values = judge(self.spec, trial.user_attrs.get(ATTR_METRICS, {})) or []
            metrics = [Metric(key, v, now, 0)
                       for key, v in zip(_constraint_keys(constraints), values, strict=False)]
            if trial.state == TrialState.COMPLETE:
                metrics.append(Metric("feasible", float(is_feasible(trial)), now, 0))
            tags = [RunTag("hpo.feasible", str(is_feasible(trial)).lower())]
            self.writer.submit(
                functools.partial(self.client.log_batch, run_id, metrics=metrics, tags=tags),
                f"record the new verdict of trial {trial.number}")  # fmt: skip

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.setdefault(number, []).extend(
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if math.isfinite(value)
        )
        if time.monotonic() - self._last_flush > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Queue the buffered intermediate metrics of every running trial."""
        for number in list(self._pending):
            for chunk in self._chunks(self._pending.pop(number)):

                def log(run: RunInfo, chunk: list[Metric] = chunk) -> None:
                    self.client.log_batch(run.run_id, metrics=chunk)

                self._child(number, "log the metrics of", log)
        self._last_flush = time.monotonic()

    @staticmethod
    def _chunks(metrics: list[Metric]) -> list[list[Metric]]:
        return [metrics[i : i + _MAX_BATCH] for i in range(0, len(metrics), _MAX_BATCH)]

    def trial_finished(self, outcome: Outcome, summary: StudySummary) -> None:
        if outcome.number in self._children:
            self._close_child(outcome)
            del self._children[outcome.number]
        self._summary = summary
        if time.monotonic() - self._last_summary >= _SUMMARY_SECONDS:
            self._log_summary()

    def _close_child(self, outcome: Outcome) -> None:
        """Its last metrics, final metrics and tags (one request when they fit), then its
        status."""
        metrics = {f"final.{k}": v for k, v in outcome.metrics.items() if math.isfinite(v)}
        metrics.update(zip(_constraint_keys(self.spec.constraints), outcome.constraints or [],
                           strict=False))
        if outcome.state == TrialState.COMPLETE:
            metrics["feasible"] = float(outcome.feasible)
        now = int(time.time() * 1000)
        tags = [
            RunTag("hpo.state", outcome.state.name),
            RunTag("hpo.feasible", str(outcome.feasible).lower()),
        ]
        if outcome.reason:
            tags.append(RunTag("hpo.reason", outcome.reason[:5000]))
        if outcome.stop is not None:
            tags.append(RunTag("hpo.stopped", outcome.stop.reason[:5000]))
        where = {attr: outcome.attrs[attr] for attr in WHERE.values() if attr in outcome.attrs}
        if ATTR_GPUS in where:
            where[ATTR_GPUS] = describe_gpus(where[ATTR_GPUS])
        tags += [RunTag(f"hpo.{attr}", value) for attr, value in where.items()]
        final = [Metric(k, v, now, 0) for k, v in metrics.items()]
        chunks = self._chunks(self._pending.pop(outcome.number, []) + final) or [[]]
        status = "KILLED" if outcome.interrupted else _END_STATUS[outcome.state]

        def end(run: RunInfo) -> None:
            for chunk in chunks[:-1]:
                self.client.log_batch(run.run_id, metrics=chunk)
            self.client.log_batch(run.run_id, metrics=chunks[-1], tags=tags)
            self.client.set_terminated(run.run_id, status)

        self._child(outcome.number, "end the run of", end)

    def _log_summary(self) -> None:
        """Queue the latest summary's metrics, and the front when it changed."""
        summary, self._summary = self._summary, None
        if summary is None:
            return
        self._last_summary = time.monotonic()
        values: dict[str, float] = {
            "feasible_trials": summary.feasible, "pareto_size": len(summary.front),
        }
        if summary.hypervolume is not None:
            values["hypervolume"] = summary.hypervolume
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, summary.finished) for k, v in values.items()]
        self.writer.submit(
            lambda: self.client.log_batch(self.parent_id, metrics=metrics),
            "log the study's summary metrics",
        )
        numbers = tuple(t.number for t in summary.front)
        if numbers != self._front:
            self._front = numbers
            self.writer.submit(lambda: self.log_front(summary), "log the Pareto front")

    def log_front(self, summary: StudySummary) -> None:
        """Rewrite the parent's ``pareto_front.csv`` / ``.json`` artifacts."""
        rows = front_rows(
            summary.front, self.spec.goals, [c.metric for c in self.spec.constraints]
        )
        log_files(lambda path: self.client.log_artifact(self.parent_id, path), {
            "pareto_front.json": json.dumps(rows, indent=2, default=str),
            "pareto_front.csv": csv_text(rows),
        })  # fmt: skip

    def log_models(self, study: optuna.Study, summary: StudySummary) -> None:
        """Log the ``model/`` of each Pareto-front trial as its run's ``model`` artifact
        (once), and remove it from runs whose trial has left the front."""
        self.writer.flush()  # the trials' run ids are recorded
        front = {t.number for t in summary.front}
        runs = {t.number: t.user_attrs.get(ATTR_RUN_ID) for t in study.get_trials(deepcopy=False)}
        logged = self.client.search_runs(
            [self.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_id}' and tags.`{TAG_MODEL}` = 'logged'",
            max_results=10_000,
        )
        done = set()
        for run in logged:
            number = int(run.data.tags.get(TAG_TRIAL, -1))
            if number in front:
                done.add(number)
                continue
            repo = get_artifact_repository(run.info.artifact_uri, self.settings.tracking_uri)
            with contextlib.suppress(NotImplementedError, OSError):
                repo.delete_artifacts(MODEL_DIR)
            self.client.set_tag(run.info.run_id, TAG_MODEL, "removed: left the Pareto front")
        for number in sorted(front - done):
            path = model_dir(self.settings, self.spec.name, number)
            run_id = runs.get(number)
            if run_id and path.is_dir() and any(path.iterdir()):
                self.client.log_artifacts(run_id, str(path), MODEL_DIR)
                self.client.set_tag(run_id, TAG_MODEL, "logged")

    # -- life cycle -----------------------------------------------------------------------
    def close_orphans(self, study: optuna.Study) -> int:
        """End child runs left RUNNING whose trial is no longer running (crashed driver)."""
        self.writer.flush()  # this driver's own runs of finished trials are ended
        running = {
            t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        }
        closed = 0
        for run in self.client.search_runs(
            [self.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_id}' and attributes.status = 'RUNNING'",
            max_results=10_000,
        ):
            if int(run.data.tags.get(TAG_TRIAL, -1)) not in running:
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed += 1
        return closed

    def close(self, *, interrupted: bool) -> None:
        """Write what is queued, end the runs still open, then stop the writer."""
        self.flush()
        self._log_summary()
        for number in list(self._children):
            self._child(number, "end the run of",
                        lambda run: self.client.set_terminated(run.run_id, "KILLED"))  # fmt: skip
        self._children.clear()
        self.writer.flush()
        # The parent is shared: the last driver of the study to finish ends it.
        if not self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            status = "KILLED" if interrupted else "FINISHED"
            self.writer.submit(lambda: self.client.set_terminated(self.parent_id, status),
                               "end the study's run")  # fmt: skip
        self.writer.close()


def _constraint_keys(constraints: Sequence[Constraint]) -> list[str]:
    """Each constraint's metric on a trial's run: ``constraint.METRIC``, its value Optuna's
    (<= 0 when met); ``constraint.METRIC.min`` and ``.max`` where a metric is bounded on
    both sides."""
    ranged = {c.metric for c in constraints if c.op == ">="} & {
        c.metric for c in constraints if c.op == "<="}
    return [f"constraint.{c.metric}"
            + ("" if c.metric not in ranged else ".min" if c.op == ">=" else ".max")
            for c in constraints]


def _is_server(tracking_uri: str) -> bool:
    return tracking_uri.split("://", 1)[0].lower() in ("http", "https")


def log_files(log_artifact: Callable[[str], object], files: Mapping[str, str]) -> None:
    """Write ``files`` (name: text) to a temporary directory and log each one."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            path = Path(tmp) / name
            path.write_text(text)
            log_artifact(str(path))


def csv_text(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
