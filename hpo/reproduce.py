"""Run one recorded trial again, outside its study, and compare what it gives.

Everything comes from the study's storage (its recorded definition, the trial's
parameters and seed), not from the study file as it is today. The trial runs in this
process (as the local backend runs trials), writes its outputs to
``<study_dir>/reproduce/NNNN`` and nothing to the study's storage or MLflow. An
early-stopped trial is run up to the step it was stopped at and its last report compared.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import ConfigError
from hpo.execution._trainable import StopTrial, run_objective
from hpo.objectives import resolve_objective
from hpo.provenance import PROVENANCE_ATTR, UNKNOWN, cpu, describe_gpus, git_state, trial_gpus
from hpo.settings import Settings
from hpo.spec import StudySpec
from hpo.trial_outputs import ATTR_GIT_COMMIT
from hpo.trials import (
    ATTR_CPU,
    ATTR_FAIL_REASON,
    ATTR_GPUS,
    ATTR_INTERRUPTED,
    ATTR_METRICS,
    ATTR_SEED,
    ATTR_STEPS,
    FINAL,
    FINISHED,
    STEP,
    decide,
    trial_seed,
)

MATCH, DIFFERS, MEASURED = "match", "differs", "measured, not compared"


@dataclass(frozen=True)
class Row:
    name: str
    recorded: Any
    reproduced: Any
    status: str


@dataclass
class Reproduction:
    """Recorded vs reproduced outcome of one trial."""

    study: str
    number: int
    state: str
    seed: int
    output_dir: Path
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return all(row.status != DIFFERS for row in self.rows)

    @property
    def differing(self) -> list[Row]:
        return [row for row in self.rows if row.status == DIFFERS]


def finished_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """The trial, if it exists and finished for a reason of its own (else ConfigError)."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        span = f"trials 0-{max(trials)}" if trials else "no trials"
        raise ConfigError(f"study {study.study_name!r} has no trial {number} ({span})")
    trial = trials[number]
    if trial.state not in FINISHED:
        raise ConfigError(f"trial {number} of {study.study_name!r} is {trial.state.name}; "
                          "only finished trials can be reproduced")
    if trial.user_attrs.get(ATTR_INTERRUPTED):
        raise ConfigError(f"trial {number} of {study.study_name!r} was interrupted (it ran "
                          "again under another number); nothing to reproduce")
    return trial


def reproduce_trial(
    study: optuna.Study,
    spec: StudySpec,
    settings: Settings,
    number: int,
    output_dir: Path | None = None,
) -> Reproduction:
    trial = finished_trial(study, number)
    seed = int(trial.user_attrs.get(ATTR_SEED, trial_seed(spec.seed, number)))
    out = output_dir or settings.study_dir(spec.name) / "reproduce" / f"{number:04d}"
    shutil.rmtree(out, ignore_errors=True)
    result = Reproduction(spec.name, number, trial.state.name, seed, out)
    provenance = study.user_attrs.get(PROVENANCE_ATTR) or {}
    result.warnings.extend(_changed_code(trial, provenance))
    result.warnings.extend(_changed_cpu(trial, provenance))
    result.warnings.extend(_changed_gpus(trial, spec.resources.gpus))
    result.warnings.extend(_changed_inputs(spec, settings, provenance))
    config = {
        "study": spec.name, "objective": spec.objective, "args": dict(spec.objective_args),
        "params": dict(trial.params), "number": number, "seed": seed,
        "cpus": spec.resources.cpus, "gpus": spec.resources.gpus,
        "cache_dir": str(settings.cache_dir), "output_dir": str(out),
    }
    stop_at = trial.user_attrs.get(ATTR_STEPS) if trial.state == TrialState.PRUNED else None
    last: dict[str, Any] = {}

    def send(message: dict[str, Any]) -> None:
        last.clear()
        last.update(message)
        if not message.get(FINAL) and stop_at is not None and message[STEP] >= stop_at:
            raise StopTrial

    with contextlib.suppress(StopTrial):
        run_objective(config, send)
    outcome = decide(spec, number, dict(trial.params), last)
    measured = set(resolve_objective(spec.objective).measured_metrics)
    result.rows.append(_row("state", trial.state.name, outcome.state.name))
    if trial.state == TrialState.FAIL or outcome.state == TrialState.FAIL:
        result.rows.append(_row("error", trial.user_attrs.get(ATTR_FAIL_REASON),
                                outcome.reason))
    recorded = trial.user_attrs.get(ATTR_METRICS, {})
    for metric in spec.metrics:
        if metric in recorded or metric in outcome.metrics:
            before, after = recorded.get(metric), outcome.metrics.get(metric)
            if before is None and after is not None and not math.isfinite(after):
                before = after  # non-finite values are not recorded
            row = _row(metric, before, after)
            if metric in measured:
                row = Row(metric, before, after, MEASURED)
            result.rows.append(row)
    return result


def _row(name: str, recorded: Any, reproduced: Any) -> Row:
    same = recorded == reproduced or (
        isinstance(recorded, float) and isinstance(reproduced, float)
        and math.isnan(recorded) and math.isnan(reproduced)
    )
    return Row(name, recorded, reproduced, MATCH if same else DIFFERS)


def _changed_code(trial: FrozenTrial, provenance: Mapping[str, Any]) -> list[str]:
    recorded = trial.user_attrs.get(ATTR_GIT_COMMIT) or provenance.get("git_commit", UNKNOWN)
    repo = Path(provenance.get("git_repo") or ".")
    now = git_state(repo if repo.is_dir() else Path.cwd())
    if recorded == now.commit:
        return [f"uncommitted changes in {now.repo}"] if now.dirty else []
    return [f"the code is at commit {now.commit}, the trial ran at {recorded}"]


def _changed_cpu(trial: FrozenTrial, provenance: Mapping[str, Any]) -> list[str]:
    """A warning when this machine's CPU is not the one the trial ran on (its attribute
    ``cpu``; for trials recorded before hpo kept it, none of those the study's sessions,
    their drivers', ran on). Another CPU can dispatch to other vector kernels, which round
    differently: a long training drifts apart."""
    now = cpu()
    if trial.user_attrs.get(ATTR_CPU):
        ran_on = trial.user_attrs[ATTR_CPU]
        where = f"trial {trial.number} ran on {ran_on}"
        recorded = [ran_on]
    else:
        recorded = sorted({s["cpu"] for s in provenance.get("sessions", []) if s.get("cpu")})
        where = f"the study ran on {' and '.join(recorded)}"
    if not recorded or now in recorded:
        return []
    return [f"{where}, this machine is {now}: floating-point results can differ"]


def _changed_gpus(trial: FrozenTrial, given: float) -> list[str]:
    """A warning when the GPU models the reproduction, given ``given`` GPUs as the trial
    was, can use here are not those the trial could (its attribute ``gpus``; trials
    recorded before hpo kept it are not compared): another model runs other kernels, and a
    GPU where the trial had none, or the reverse, moves the training to another device."""
    if not isinstance(trial.user_attrs.get(ATTR_GPUS), list):
        return []
    ran, now = trial.user_attrs[ATTR_GPUS], trial_gpus(given)
    if set(ran) == set(now):
        return []
    ran_on = f"ran on {describe_gpus(ran)}" if ran else "ran without a GPU"
    here = f"has {describe_gpus(now)}" if now else "has no GPU"
    return [f"trial {trial.number} {ran_on}, this machine {here}: "
            "floating-point results can differ"]


def _changed_inputs(
    spec: StudySpec, settings: Settings, provenance: Mapping[str, Any]
) -> list[str]:
    """Prepare the objective's inputs (from the cache when built) and compare their
    identity with the recorded one."""
    from hpo.runner import prepare_objective

    recorded = provenance.get("inputs", {})
    current = prepare_objective(spec, settings)
    return [f"input {key!r} was {recorded[key]!r}, is now {value!r}"
            for key, value in current.items() if key in recorded and recorded[key] != value]
