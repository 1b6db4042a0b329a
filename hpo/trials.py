"""Asking the Optuna study for trials and telling it their outcomes.

The study in storage is the source of truth: every trial is created by ``ask`` there
and closed by ``tell`` there, whatever ran it. This module knows nothing of Ray.

Constraint values are stored twice, with the same values: through Optuna 5's
``Trial.set_constraint`` (keys "0", "1", ... in declaration order) and as the legacy
``constraints`` list that optuna-dashboard reads. Optuna merges both into one dict
(same keys, same values), so samplers, ``study.best_trials`` and the dashboard agree.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.study._tell import _tell_with_warning
from optuna.trial import TrialState

from hpo.errors import ConfigError
from hpo.spec import Parameter, StudySpec
from hpo.stopping import Stop
from hpo.storage_retry import Attrs, RetryingRDBStorage

# Both constraint formats carry identical values by construction (see module docstring).
warnings.filterwarnings("ignore", message="Overwrite an old format constraint")

# Keys of the result dicts a trial sends back while it runs.
STEP = "hpo_step"
FINAL = "hpo_final"
LAST = "hpo_last"
"""On the report of a trial's last evaluation (``report(..., last=True)``)."""
ERROR = "hpo_error"
NODE = "hpo_node"
"""Where the trial runs: ``hostname`` (local backend) or ``hostname:ray-node-id``."""
CPU = "hpo_cpu"
"""The CPU of the machine the trial runs on (:func:`hpo.provenance.cpu`)."""
GPUS = "hpo_gpus"
"""The models of the GPUs the trial was given (:func:`hpo.provenance.trial_gpus`)."""

# Trial attributes hpo writes.
ATTR_METRICS = "metrics"
ATTR_SEED = "seed"
ATTR_FAIL_REASON = "fail_reason"
ATTR_INTERRUPTED = "interrupted"
ATTR_RUN_ID = "mlflow_run_id"
ATTR_STOPPED = "stopped"
"""Short reason of an early stop (``degenerate: always-no-answer``); the full text is in
``fail_reason``."""
ATTR_REPORTS = "reports"
"""The metrics early stopping looked at, one dict per report (restored on resume)."""
ATTR_STEPS = "steps"
"""The last step the trial reported: the training it cost."""
ATTR_NODE = "node"
"""The machine (and Ray node) that ran the trial, as sent in its results (:data:`NODE`)."""
ATTR_CPU = "cpu"
"""That machine's CPU (:data:`CPU`): what ``hpo reproduce`` compares with its own."""
ATTR_GPUS = "gpus"
"""The GPU models the trial could use (:data:`GPUS`; ``[]``: none), compared likewise."""
WHERE = {NODE: ATTR_NODE, CPU: ATTR_CPU, GPUS: ATTR_GPUS}
"""Where a trial ran: the result keys its worker sends -> the trial attributes they become."""
ATTR_RETRIED = "retried"
"""On a crashed trial whose configuration was enqueued again (``run.max_retries``): it does
not count towards the budget, its retry does."""
ATTR_RETRY_OF = "retry_of"
"""On a retry: the number of the crashed trial it runs again."""
ATTR_ATTEMPT = "attempt"
"""On a retry: 1 for the first retry, 2 for the second, ..."""
SYSTEM_DRIVER = "hpo:driver"
SYSTEM_ASKED_AHEAD = "hpo:asked_ahead"
"""On a trial asked before a worker was free for it (:mod:`hpo.execution._searcher`): True
while it waits for one, False once it has one."""
LEGACY_CONSTRAINTS = "constraints"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def trial_seed(study_seed: int, number: int) -> int:
    """Seed of trial ``number``: distinct per trial, reproducible from the study seed."""
    return (study_seed * 1_000_003 + number * 7_919 + 1) % (2**31 - 1)


def driver_id() -> str:
    """This process, as recorded on the trials it runs (host:pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


NOT_COUNTED = (ATTR_INTERRUPTED, ATTR_RETRIED)
"""User attributes that, set true, keep a finished trial out of the budget."""


def counts_towards_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count, except those closed because their driver went away and
    crashed ones that were retried."""
    return trial.state in FINISHED and not any(trial.user_attrs.get(k) for k in NOT_COUNTED)


def budget_taken(study: optuna.Study) -> int:
    """Trials that use up the study's budget: finished and counted, or running (any
    driver). Two counting queries with hpo's storage, instead of reading the trials."""
    storage = hpo_storage(study)
    if storage is None:
        return sum(counts_towards_budget(t) or t.state == TrialState.RUNNING
                   for t in study.get_trials(deepcopy=False))  # fmt: skip
    return storage.count_trials(study._study_id, (TrialState.RUNNING,)) + storage.count_trials(
        study._study_id, FINISHED, unless_true=NOT_COUNTED
    )


def is_waiting(trial: optuna.trial.FrozenTrial) -> bool:
    """Enqueued, or asked ahead of a free worker and waiting for one (RUNNING in Optuna,
    so that the samplers treat its parameters as taken)."""
    return trial.state == TrialState.WAITING or (
        trial.state == TrialState.RUNNING and bool(trial.system_attrs.get(SYSTEM_ASKED_AHEAD)))


def ask(
    study: optuna.Study, spec: StudySpec, attrs: Mapping[str, Any] | None = None,
    ahead: bool = False,
) -> tuple[optuna.Trial, dict[str, Any]]:
    """Create a trial in storage (or take the next enqueued one) together with its seed,
    its driver and ``attrs`` (user attributes), then sample its active parameters in
    declaration order and store them together (with hpo's storage: two transactions in
    all, whatever the number of parameters). ``ahead``: no worker is free for it yet
    (:func:`hand_over` when one is)."""
    user = dict(attrs or {})
    system: dict[str, Any] = {SYSTEM_DRIVER: driver_id()}
    if ahead:
        system[SYSTEM_ASKED_AHEAD] = True
    trial = _start(study, lambda number: ({ATTR_SEED: trial_seed(spec.seed, number), **user},
                                          system))  # fmt: skip
    params: dict[str, Any] = {}
    storage = hpo_storage(study)
    with storage.batched(trial._trial_id) if storage else contextlib.nullcontext():
        for parameter in spec.parameters:
            if parameter.is_active(params):
                params[parameter.name] = _suggest(trial, parameter)
    return trial, params


def hand_over(study: optuna.Study, trial: optuna.Trial) -> None:
    """A trial asked ahead has a worker: it starts now (its start time in storage is reset,
    so its duration is its run's) and no longer waits."""
    storage = hpo_storage(study)
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another driver
        if storage is None:  # closed it: its outcome will not be recorded either
            study._storage.set_trial_system_attr(trial._trial_id, SYSTEM_ASKED_AHEAD, False)
        else:
            storage.set_trial_started(trial._trial_id, {SYSTEM_ASKED_AHEAD: False})


def _start(study: optuna.Study, attrs: Callable[[int], Attrs]) -> optuna.Trial:
    """``study.ask()``, with the attributes ``attrs(trial number)`` recorded in the same
    transaction of hpo's storage: a driver killed in between would leave a RUNNING trial
    that no driver owns and recovery cannot tell from a live one, holding a unit of the
    budget for ever. Other storages (in memory: nothing outlives the driver) get them
    after."""
    storage = hpo_storage(study)
    if storage is None:
        trial = study.ask()
        set_attrs(trial, *attrs(trial.number))
        return trial
    trial_id = storage.start_trial(study._study_id, attrs)
    # As study.ask: read the storage afresh once (the new trial, those finished meanwhile);
    # the sampler reads this snapshot while it samples the trial.
    study._thread_local.cached_all_trials = study._storage.get_all_trials(
        study._study_id, deepcopy=False
    )
    return optuna.Trial(study, trial_id)  # the sampler's before_trial, enqueued params


def hpo_storage(study: optuna.Study) -> RetryingRDBStorage | None:
    """The hpo storage under ``study`` (Optuna wraps it in a cache of finished trials);
    None for another kind (an in-memory study)."""
    storage = getattr(study._storage, "_backend", study._storage)  # Optuna's cache wraps it
    return storage if isinstance(storage, RetryingRDBStorage) else None


def set_attrs(
    trial: optuna.Trial, user: Mapping[str, Any], system: Mapping[str, Any] | None = None
) -> None:
    """Record user (and system) attributes on a running trial: in one transaction with
    hpo's storage (one commit instead of one per attribute), else one by one."""
    system = system or {}
    storage = hpo_storage(trial.study)
    if storage is not None:
        storage.set_trial_attrs(trial._trial_id, user, system)
    else:
        for key, value in user.items():
            trial.storage.set_trial_user_attr(trial._trial_id, key, value)
        for key, value in system.items():
            trial.storage.set_trial_system_attr(trial._trial_id, key, value)
    frozen = trial._cached_frozen_trial  # what trial.user_attrs returns
    frozen.user_attrs.update(user)
    frozen.system_attrs.update(system)


def _suggest(trial: optuna.Trial, parameter: Parameter) -> Any:
    dist = parameter.distribution
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(
            parameter.name, dist.low, dist.high, step=dist.step, log=dist.log
        )
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(parameter.name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, CategoricalDistribution)
    return trial.suggest_categorical(parameter.name, dist.choices)


@dataclass
class Outcome:
    """How a trial ended, decided from what it sent back."""

    number: int
    state: TrialState
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    values: list[float] | None = None
    constraints: list[float] | None = None
    reason: str | None = None
    interrupted: bool = False
    stop: Stop | None = None
    reports: list[dict[str, float]] = field(default_factory=list)
    steps: int | None = None
    single_objective: str | None = None
    """The metric of a single-objective study (its reports become intermediate values)."""
    max_retries: int = 0
    """For a crashed trial: how many times its configuration may be run again."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """More user attributes to record with it (where it ran, its MLflow run)."""

    @property
    def feasible(self) -> bool:
        return self.state == TrialState.COMPLETE and all(c <= 0 for c in self.constraints or [])


def decide(
    spec: StudySpec,
    number: int,
    params: dict[str, Any],
    result: Mapping[str, Any] | None,
    *,
    crashed: bool = False,
    interrupted: bool = False,
    stop: Stop | None = None,
) -> Outcome:
    """Turn the last result a trial sent into its Optuna state.

    * an exception in the objective, a crashed worker, a missing or non-finite objective
      or constraint metric: FAIL, with the reason;
    * stopped before its final result (early stopping, for the reason in ``stop``): PRUNED,
      with the constraint values of its last report when it has them;
    * stopped because the study was interrupted: FAIL marked ``interrupted``, which does
      not count towards the budget (the trial is run again on resume);
    * otherwise COMPLETE with its objective values and constraint values.
    """
    metrics = {
        k: float(v)
        for k, v in (result or {}).items()
        if k in spec.metrics and isinstance(v, int | float) and not isinstance(v, bool)
    }
    outcome = Outcome(number, TrialState.FAIL, params, metrics)
    if len(spec.goals) == 1:
        outcome.single_objective = spec.goals[0].metric
    if crashed:
        outcome.reason = "the trial's worker process died (killed, out of memory or crashed)"
        outcome.max_retries = spec.max_retries
    elif result is not None and result.get(ERROR):
        outcome.reason = str(result[ERROR])
    elif result is None or not result.get(FINAL):
        if interrupted or result is None:
            outcome.reason, outcome.interrupted = "interrupted: the study was stopped", True
        else:
            outcome.state, outcome.stop = TrialState.PRUNED, stop
            outcome.reason = str(stop or "stopped early")
            outcome.constraints = judge(spec, metrics)
    else:
        outcome.reason = _missing_or_bad(spec, metrics)
        if outcome.reason is None:
            outcome.state = TrialState.COMPLETE
            outcome.values = [metrics[goal.metric] for goal in spec.goals]
            outcome.constraints = judge(spec, metrics)
    return outcome


def judge(spec: StudySpec, metrics: Mapping[str, float]) -> list[float] | None:
    """The study's constraint values on ``metrics`` (<= 0: satisfied); None when one of
    their metrics is missing or not finite (a trial stopped before it reported them)."""
    if all(math.isfinite(metrics.get(c.metric, math.nan)) for c in spec.constraints):
        return [c.violation(metrics) for c in spec.constraints]
    return None


def rejudge(spec: StudySpec, storage: RetryingRDBStorage, study_id: int) -> int:
    """Judge the study's COMPLETE and PRUNED trials again, on the final (last reported)
    metrics they stored, by the constraints of ``spec``, and store the values in place of
    theirs: after a resume that changed the constraints, every part of hpo reads one set.
    Checks every trial before writing anything (one transaction); the number re-judged.

    Raises :class:`ConfigError` (field ``constraints``) when a COMPLETE trial lacks a metric
    a constraint needs."""
    values: dict[int, list[float] | None] = {}
    for trial in storage.get_all_trials(
        study_id, deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
    ):
        metrics = trial.user_attrs.get(ATTR_METRICS, {})
        values[trial._trial_id] = judge(spec, metrics)
        if values[trial._trial_id] is None and trial.state == TrialState.COMPLETE:
            lacking = next(c for c in spec.constraints
                           if not math.isfinite(metrics.get(c.metric, math.nan)))  # fmt: skip
            raise ConfigError(
                f"trial {trial.number} of study {spec.name!r} has no {lacking.metric!r} "
                f"metric to judge {str(lacking)!r} by; keep the constraints the study had or "
                "use --study-name for a new study",
                source=spec.source, field="constraints")  # fmt: skip
    storage.set_constraints(
        {trial_id: _constraint_attrs(v) for trial_id, v in values.items()})
    return len(values)


def _constraint_attrs(values: list[float] | None) -> dict[str, Any]:
    """The system attributes that carry a trial's constraint values (module docstring)."""
    if values is None:
        return {}
    return {LEGACY_CONSTRAINTS: values,
            **{f"{_CONSTRAINTS_KEY}:{i}": value for i, value in enumerate(values)}}


def _missing_or_bad(spec: StudySpec, metrics: Mapping[str, float]) -> str | None:
    needed = [goal.metric for goal in spec.goals] + [c.metric for c in spec.constraints]
    for metric in dict.fromkeys(needed):
        if metric not in metrics:
            return f"metric {metric!r} was not returned"
        if not math.isfinite(metrics[metric]):
            return f"metric {metric!r} is {metrics[metric]}"
    return None


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> bool:
    """Record the outcome on the trial in storage and close it; False if it was closed
    already (another driver took it for interrupted: see :mod:`hpo.recovery`).

    A single-objective study also gets the objective's value at each report as Optuna
    intermediate values, which its samplers use to rank PRUNED trials (multi-objective
    Optuna treats PRUNED trials as worse than COMPLETE ones and has no such values).
    """
    try:
        _tell(study, trial, outcome)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    user: dict[str, Any] = {
        ATTR_METRICS: {k: v for k, v in outcome.metrics.items() if math.isfinite(v)},
        **outcome.attrs,
    }
    if outcome.reason is not None:
        user[ATTR_FAIL_REASON] = outcome.reason
    attempt = int(trial.user_attrs.get(ATTR_ATTEMPT, 0))
    retry = outcome.state == TrialState.FAIL and attempt < outcome.max_retries
    if outcome.interrupted:
        user[ATTR_INTERRUPTED] = True
    if retry:
        user[ATTR_RETRIED] = True
    if outcome.stop is not None:
        user[ATTR_STOPPED] = outcome.stop.reason
    if outcome.reports:
        user[ATTR_REPORTS] = _finite(outcome.reports)
    if outcome.steps is not None:
        user[ATTR_STEPS] = outcome.steps
    set_attrs(trial, user, _constraint_attrs(outcome.constraints))
    metric = outcome.single_objective
    if metric is not None and not outcome.interrupted:
        for budget, report in enumerate(outcome.reports, start=1):
            if metric in report and math.isfinite(report[metric]):
                trial.report(report[metric], budget)
    # Study.tell without reading the finished trial back to return it.
    _tell_with_warning(
        study, trial, outcome.values if outcome.state == TrialState.COMPLETE else None,
        outcome.state)  # fmt: skip
    if outcome.interrupted:  # run again as it was (a retry stays that retry)
        links = {k: v for k, v in trial.user_attrs.items() if k in (ATTR_RETRY_OF, ATTR_ATTEMPT)}
        study.enqueue_trial(outcome.params, user_attrs=links, skip_if_exists=False)
    elif retry:
        study.enqueue_trial(
            outcome.params,
            user_attrs={ATTR_RETRY_OF: outcome.number, ATTR_ATTEMPT: attempt + 1},
            skip_if_exists=False,
        )


def _finite(reports: list[dict[str, float]]) -> list[dict[str, float]]:
    """JSON-safe copies (NaN and infinities dropped)."""
    return [{k: v for k, v in r.items() if math.isfinite(v)} for r in reports]
