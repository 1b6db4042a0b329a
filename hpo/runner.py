"""Run or resume a study: the one place that wires storage, tracking, progress and Ray."""

from __future__ import annotations

import os
import sys
import warnings
from datetime import datetime
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from hpo.errors import ConfigError, RunError
from hpo.execution.ray_connection import RayConnection
from hpo.health import HealthCheck
from hpo.locking import study_lock
from hpo.objectives import resolve_objective
from hpo.preflight import run_preflight
from hpo.progress import Progress
from hpo.provenance import PROVENANCE_ATTR, study_provenance
from hpo.recovery import Heartbeat, Recovery
from hpo.samplers import create_sampler
from hpo.settings import Settings, redact
from hpo.spec import StudySpec
from hpo.stopping import EarlyStopping, create_stopping
from hpo.storage import CONSTRAINTS_ATTR, SPEC_ATTR, open_storage, recorded_constraints
from hpo.storage_retry import RetryingRDBStorage
from hpo.summary import StudySummary
from hpo.trial_outputs import ATTR_GIT_COMMIT, TrialOutputs
from hpo.trials import ATTR_REPORTS, counts_towards_budget, hpo_storage, rejudge

if TYPE_CHECKING:
    from hpo.execution._searcher import Observer
    from hpo.tracking import Tracker

optuna.logging.set_verbosity(optuna.logging.WARNING)

SESSIONS_ATTR = "driver_sessions"
"""How many drivers have opened the study so far (each seeds its sampler differently)."""


def load_study(spec: StudySpec, storage: RetryingRDBStorage) -> tuple[optuna.Study, bool]:
    """Create the study, or load it and check it still means the same thing; a study
    resumed with other constraints has its finished trials judged again by them (then the
    second value is True).

    Called under the study's lock: each call is a new driver session of the study.
    """
    names = {s.study_name: s for s in optuna.study.get_all_study_summaries(storage)}
    existing = names.get(spec.name)
    constraints, rejudged = recorded_constraints(spec), False
    if existing is not None:
        stored = [d.name.lower() for d in existing.directions]
        recorded = existing.user_attrs.get(SPEC_ATTR, {}).get("objectives")
        wanted = [{"metric": g.metric, "direction": g.direction} for g in spec.goals]
        if stored != spec.directions or (
            recorded is not None
            and [{"metric": o["metric"], "direction": o["direction"]} for o in recorded] != wanted
        ):
            raise ConfigError(
                f"study {spec.name!r} in this storage optimizes "
                f"{recorded or stored}, not {wanted}; use --study-name for a new "
                "study",
                source=spec.source,
                field="objectives",
            )
        before = existing.user_attrs.get(CONSTRAINTS_ATTR)
        if before != constraints:
            count, rejudged = rejudge(spec, storage, existing._study_id), True
            print(f"constraints changed ({_listed(before)} -> {_listed(constraints)}): "
                  f"{count} finished trials judged again by the new ones", flush=True)
    session = int(existing.user_attrs.get(SESSIONS_ATTR, 0)) if existing is not None else 0
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=spec.directions,
        sampler=create_sampler(spec, session),
        load_if_exists=True,
    )
    study.set_user_attr(SESSIONS_ATTR, session + 1)
    if existing is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([goal.metric for goal in spec.goals])
    study.set_user_attr(SPEC_ATTR, dict(spec.raw))
    study.set_user_attr(CONSTRAINTS_ATTR, constraints)
    return study, rejudged


def _listed(constraints: list[str] | None) -> str:
    return "none recorded" if constraints is None else ", ".join(constraints) or "none"


def prepare_objective(spec: StudySpec, settings: Settings) -> dict[str, str]:
    """Let the objective build its shared inputs once, before any trial starts."""
    objective = resolve_objective(spec.objective)(**spec.objective_args)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        return {str(k): str(v) for k, v in objective.prepare(settings.cache_dir).items()}
    except (ConfigError, RunError):
        raise
    except Exception as exc:
        raise RunError(f"objective {spec.objective!r} could not prepare its inputs: "
                       f"{type(exc).__name__}: {exc}") from exc


def restored_stopping(study: optuna.Study, spec: StudySpec) -> EarlyStopping:
    """The study's early stopping, knowing the reports of every trial finished so far."""
    stopping = create_stopping(spec)
    for trial in study.get_trials(deepcopy=False):
        if counts_towards_budget(trial):
            stopping.restore(trial.number, trial.user_attrs.get(ATTR_REPORTS, []))
            if trial.state == TrialState.COMPLETE:
                stopping.finish(trial.number)
    return stopping


def record_command(study: optuna.Study, command: str) -> None:
    """Append the command line (redacted) that ran the study to its ``commands``."""
    entry = {"command": redact(command), "cwd": os.getcwd(),
             "at": datetime.now().isoformat(timespec="seconds")}
    study.set_user_attr("commands", [*study.user_attrs.get("commands", []), entry])


def write_report(spec: StudySpec, settings: Settings) -> None:
    """The study's report; a failure is a one-line warning, never the study's failure."""
    try:
        from hpo.report import write_report as write

        print(f"report: {write(spec.name, settings).html}", flush=True)
    except Exception as exc:
        print(f"warning: no report ({type(exc).__name__}: {redact(str(exc))}); "
              f"retry with `hpo report {spec.name}`", flush=True)


def run_study(
    spec: StudySpec,
    settings: Settings,
    *,
    address: str | None = None,
    show_progress: bool = True,
    preflight: bool = True,
    command: str | None = None,
) -> StudySummary:
    """Run the study until it has ``spec.trials`` finished trials, resuming what exists.

    Returns the final summary; raises ``KeyboardInterrupt`` after a clean stop when the
    user interrupted it (finished trials are kept, running ones are re-run on resume), and
    ``RunError`` when the study stopped because it was unhealthy (``stop_when_unhealthy``).
    With ``preflight``, the fast preflight checks run first: ``ConfigError`` listing every
    problem, and nothing written, when one fails.
    """
    if preflight:
        report = run_preflight(spec, settings, full=False, address=address)
        for warning in report.warnings:
            print(f"preflight: warning: {warning}", file=sys.stderr, flush=True)
        report.raise_for_problems()
    settings.prepare()
    with study_lock(settings, spec.name):  # drivers starting together create it once
        study, rejudged = load_study(spec, open_storage(settings, create=True, spec=spec))
    if command is not None:
        record_command(study, command)
    # Recovery (below) closes trials as interrupted, which never count: whether trials
    # remain to run is known now, and Ray starts while the study gets ready to run them.
    finished = sum(map(counts_towards_budget, study.get_trials(deepcopy=False)))
    needs_ray = spec.trials > finished and spec.backend != "local"
    connection = RayConnection(address) if needs_ray else None
    try:
        return _run(study, spec, settings, connection, show_progress=show_progress,
                    rejudged=rejudged)
    finally:
        if connection is not None:
            connection.close()


def _run(
    study: optuna.Study,
    spec: StudySpec,
    settings: Settings,
    connection: RayConnection | None,
    *,
    show_progress: bool,
    rejudged: bool = False,
) -> StudySummary:
    """``run_study`` once the study is loaded: trials on Ray through ``connection``, or in
    this process without one. ``rejudged``: its trials were judged by new constraints."""
    # Imported here, while Ray starts: Ray Tune and MLflow take seconds to load.
    from hpo.execution._searcher import StudySearcher
    from hpo.execution.local_backend import run_trials_locally
    from hpo.execution.ray_backend import run_trials
    from hpo.tracking import Tracker

    tracker = Tracker(spec, settings, study)
    if rejudged:
        tracker.record_verdicts(spec.constraints, study.get_trials(deepcopy=False))
    recovery = Recovery(study, spec, after=lambda: tracker.close_orphans(study))
    with study_lock(settings, spec.name):
        recovery.recover(force=True)
    tracker.close_orphans(study)
    summary = StudySummary.of(study.get_trials(deepcopy=False), spec.goals)
    remaining = spec.trials - summary.finished
    if remaining > 0:
        inputs = prepare_objective(spec, settings)
        for key, value in inputs.items():
            print(f"{key}: {value}", flush=True)
        tracker.record_inputs(inputs)
        record, git = study_provenance(spec, inputs, study.user_attrs.get(PROVENANCE_ATTR))
        study.set_user_attr(PROVENANCE_ATTR, record)
        tracker.record_provenance(record, git)
    progress = Progress(spec.name, spec.trials, summary) if show_progress else None
    unhealthy: list[str] = []

    def stop_unhealthy(diagnosis: str) -> None:
        unhealthy.append(diagnosis)
        searcher.interrupted = True

    def show(text: str) -> None:
        print(f"UNHEALTHY STUDY: {text}", flush=True)

    health = HealthCheck(
        study,
        spec,
        [progress.warn if progress else show, tracker.record_health],
        stop_unhealthy if spec.stop_when_unhealthy else None,
    )
    outputs = TrialOutputs(study, spec, settings, tracker.git_commit)
    observers: list[Observer] = [outputs, tracker, health]
    if progress is not None:
        observers.append(progress)
    heartbeat = Heartbeat(study, spec.heartbeat_interval)
    searcher = StudySearcher(study, spec, settings, observers, restored_stopping(study, spec),
                             recover=recovery.recover,
                             attrs_at_start={ATTR_GIT_COMMIT: tracker.git_commit},
                             attrs_at_end=tracker.trial_attrs, heartbeat=heartbeat,
                             ask_ahead=spec.backend != "local")  # fmt: skip
    # The searcher ends the study when its budget is taken; retried crashes take more runs.
    runs = remaining * (1 + spec.max_retries)
    superseded = None
    try:
        if remaining > 0 and spec.backend == "local":
            run_trials_locally(searcher, runs)
        elif remaining > 0:
            assert connection is not None, "run_study starts Ray whenever trials remain"
            run_trials(searcher, spec, settings, runs, connection)
        if searcher.superseded is not None:
            study, superseded = _judge_by_new_constraints(
                study, spec, settings, tracker, searcher.superseded)
    finally:
        heartbeat.close()
        if progress is not None:
            progress.close()
        summary = StudySummary.of(study.get_trials(deepcopy=False), spec.goals)
        if spec.keep_models != "none":
            tracker.log_models(study, summary)
        tracker.close(interrupted=searcher.interrupted)
    if superseded is not None:
        raise RunError(superseded)
    if unhealthy:
        raise RunError(f"study {spec.name!r} stopped because it is unhealthy: {unhealthy[0]}")
    if searcher.interrupted:
        raise KeyboardInterrupt
    if spec.report and summary.finished >= spec.trials:
        write_report(spec, settings)
    return summary


def _judge_by_new_constraints(
    study: optuna.Study, spec: StudySpec, settings: Settings, tracker: Tracker,
    theirs: StudySpec,
) -> tuple[optuna.Study, str]:
    """Another driver changed the study's constraints to those of ``theirs`` while this one
    ran, which then asked for no more trials: its trials that ended since are judged again
    by them, as that driver judged the others, so every part of hpo reads one set. The
    study read afresh (Optuna caches finished trials) and the line to end with."""
    storage = hpo_storage(study)
    assert storage is not None, "a driver's study is in hpo's storage"
    with study_lock(settings, spec.name):
        rejudge(theirs, storage, study._study_id)
    study = optuna.load_study(study_name=spec.name, storage=storage, sampler=study.sampler)
    tracker.record_verdicts(theirs.constraints, study.get_trials(deepcopy=False))
    change = f"{_listed(recorded_constraints(spec))} -> {_listed(recorded_constraints(theirs))}"
    return study, (f"another driver changed the constraints of study {spec.name!r} ({change}) "
                   "while this one ran: it asked for no more trials and judged its own again "
                   "by the new ones; run it again with them to go on")
