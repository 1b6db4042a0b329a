"""A Ray Tune searcher that asks and tells the Optuna study in storage.

Unlike Ray's bundled ``OptunaSearch`` it keeps no study in memory (the storage is the
truth, so resume and the dashboard see every trial), records early-stopped trials as
PRUNED rather than COMPLETE, and stores constraint values. Reports go through
:meth:`StudySearcher.report`, which also decides early stopping; the Ray scheduler and the
local backend both call it.

Ray Tune asks for a trial in its control loop, once a worker is free, and the worker waits
for the answer. Most samplers answer in milliseconds; a GP takes tenths of a second
(``hpo.samplers.is_slow``), which kept 5-second trials' workers idle 7% of the time. So,
where trials run on Ray (``ask_ahead``), the sampler is slow and its asks take
:data:`ASK_AHEAD_SHARE` of a trial or more, the searcher asks for the next trial in a
thread of its own as soon as it has handed one out, while the workers are busy, and hands
it out when Tune asks. The trial asked ahead is RUNNING in storage from then on, so the
sampler knows its parameters are taken (GP and TPE model running trials) and it holds its
unit of the budget, but it is marked as waiting (:data:`hpo.trials.SYSTEM_ASKED_AHEAD`,
counted as waiting, not running); its start time is reset when a worker takes it. If the
study stops first, it is closed as interrupted and runs again on resume, as the running
trials do. The price: its parameters were chosen without the result of the trial that
finished just before it started, which on the harder benchmark problems cost ``gp-tpe``
0.5-3% of the true front's hypervolume (docs/benchmarks.md); so trials much longer than
an ask, where waiting for the sampler costs the workers little, do without.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpo.locking import study_lock
from hpo.recovery import Heartbeat
from hpo.samplers import is_slow
from hpo.settings import Settings
from hpo.spec import Constraint, StudySpec
from hpo.stopping import EarlyStopping, Stop, create_stopping
from hpo.storage import CONSTRAINTS_ATTR, recorded_constraints
from hpo.summary import StudySummary
from hpo.trials import (
    FINAL,
    LAST,
    NODE,
    STEP,
    WHERE,
    Outcome,
    ask,
    budget_taken,
    decide,
    hand_over,
    tell,
)

Asked = tuple[optuna.Trial, dict[str, Any]]
"""A trial in storage and its parameters."""

ASK_AHEAD_SHARE = 0.01
"""A slow sampler's asks (mean of the last 10) taking this share of a trial (median of the
last 20 this driver ran, from hand-out to end) or more: ask ahead. A judgement, not a
measured optimum: waiting cost the workers more than the asks' share (on 5-second trials
``gp-tpe`` without asking ahead left them idle 6.5% of the time), and below 1% the few
trials more that asking ahead buys in the same time are worth less than what it costs
each trial's choice (docs/benchmarks.md, "Asking ahead")."""


@dataclass
class _Running:
    """A trial this driver has handed to a worker, until it ends."""

    trial: optuna.Trial
    params: dict[str, Any]
    handed_at: float = field(default_factory=time.monotonic)
    steps: int | None = None
    """The step of its last intermediate report."""
    stop: Stop | None = None
    """Why early stopping stopped it, once it has."""
    where: dict[str, Any] | None = None
    """Where it runs (:data:`hpo.trials.WHERE`), from the first result that says so
    (stored with its outcome)."""

    def note_where(self, result: Mapping[str, Any] | None) -> None:
        if self.where is None and result and isinstance(result.get(NODE), str):
            self.where = {attr: result[key] for key, attr in WHERE.items() if key in result}


class Observer(Protocol):
    """Something that follows trials as they start, report and end (MLflow, progress)."""

    def trial_started(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None: ...

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None: ...

    def trial_finished(self, outcome: Outcome, summary: StudySummary) -> None: ...


class StudySearcher(Searcher):
    def __init__(
        self,
        study: optuna.Study,
        spec: StudySpec,
        settings: Settings,
        observers: Sequence[Observer],
        stopping: EarlyStopping,
        recover: Callable[[], object] | None = None,
        attrs_at_start: Mapping[str, Any] | None = None,
        attrs_at_end: Callable[[int], Mapping[str, Any]] | None = None,
        heartbeat: Heartbeat | None = None,
        ask_ahead: bool = False,
    ) -> None:
        super().__init__()
        self.heartbeat = heartbeat
        """Beats for each trial from the moment it is asked until it is told."""
        self._asker = ThreadPoolExecutor(1, "hpo-ask-ahead") if ask_ahead else None
        """Asks for the next trial ahead of a free worker, with a slow sampler (module
        docstring); None: never."""
        self._ahead: Future[Asked | None] | None = None
        self._ask_seconds: deque[float] = deque(maxlen=10)
        self._trial_seconds: deque[float] = deque(maxlen=20)
        self.recover = recover
        """Closes trials whose driver is gone, under the lock, before each ask."""
        self.attrs_at_start = dict(attrs_at_start or {})
        """User attributes recorded on every trial this driver asks (its git commit)."""
        self.attrs_at_end = attrs_at_end
        """More user attributes of trial ``number`` recorded when it ends (its MLflow run),
        written with its outcome: one storage transaction for all of them."""
        self.study, self.spec, self.settings = study, spec, settings
        self.observers = list(observers)
        self.stopping = stopping
        self.interrupted = False
        self.superseded: StudySpec | None = None
        """The study as another driver changed its constraints, once it has: this driver
        then asks for no more trials, its early stopping goes by them from then on, and
        :func:`hpo.runner.run_study` judges its trials again by them once they have ended."""
        self._running: dict[str, _Running] = {}
        """By Ray Tune's trial id."""

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        """The next trial's config (the one asked ahead, if any); ``Searcher.FINISHED``
        once the study's budget is taken."""
        if self.interrupted:
            return None
        ahead = self._take_ahead()
        asked = ahead or self._ask()
        if asked is None:
            return Searcher.FINISHED
        trial, params = asked
        self._running[trial_id] = _Running(trial, params)
        for observer in self.observers:
            observer.trial_started(trial, params)
        if self._asker is not None and self._worth_asking_ahead():
            self._ahead = self._asker.submit(self._ask, True, trial if ahead else None)
        elif ahead is not None:
            hand_over(self.study, trial)
        return {
            "study": self.study.study_name,
            "objective": self.spec.objective,
            "args": dict(self.spec.objective_args),
            "params": params,
            "number": trial.number,
            "seed": trial.user_attrs["seed"],
            "cpus": self.spec.resources.cpus,
            "gpus": self.spec.resources.gpus, "cache_dir": str(self.settings.cache_dir),
            "output_dir": str(
                self.settings.study_dir(self.study.study_name) / "trials" / f"{trial.number:04d}"
            ),
        }

    def _ask(self, ahead: bool = False, handed: optuna.Trial | None = None) -> Asked | None:
        """A new trial, or None once the study's budget is taken. ``ahead``: asked ahead of
        a free worker, in the asking thread, where ``handed`` is the trial asked ahead
        before it, which a worker has just taken (recorded here first, off Tune's loop).

        The budget is shared by every driver of the study: finished trials that count plus
        trials running anywhere. Counting and asking happen under the study's lock, so
        drivers started together never exceed it.
        """
        if handed is not None:
            hand_over(self.study, handed)
        with study_lock(self.settings, self.study.study_name):
            if self.recover is not None:
                self.recover()
            if budget_taken(self.study) >= self.spec.trials or self._superseded():
                return None
            started = time.monotonic()
            trial, params = ask(self.study, self.spec, self.attrs_at_start, ahead)
            self._ask_seconds.append(time.monotonic() - started)
        if self.heartbeat is not None:
            self.heartbeat.start(trial)
        return trial, params

    def _superseded(self) -> bool:
        """Has another driver changed the study's constraints since this one started?"""
        recorded = self.study.user_attrs.get(CONSTRAINTS_ATTR)
        if recorded is not None and recorded != recorded_constraints(self.superseded or self.spec):
            self.superseded = replace(
                self.spec, constraints=tuple(map(Constraint.parse, recorded)))
            self.stopping = create_stopping(self.superseded, self.stopping.history)
        return self.superseded is not None

    def _worth_asking_ahead(self) -> bool:
        """Ask the next trial ahead (module docstring)? Not before a trial has ended here."""
        return bool(self._trial_seconds) and is_slow(self.study.sampler) and (
            statistics.fmean(self._ask_seconds)
            >= ASK_AHEAD_SHARE * statistics.median(self._trial_seconds))

    def _take_ahead(self) -> Asked | None:
        """The trial asked ahead, if any, once asked (its errors are raised here)."""
        ahead, self._ahead = self._ahead, None
        return None if ahead is None else ahead.result()

    def report(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Pass an intermediate report on to the observers; True if the trial must stop."""
        running = self._running.get(trial_id)
        if running is None:
            return False
        running.note_where(result)
        if STEP not in result or result.get(FINAL):
            return False
        number = running.trial.number
        metrics = {
            k: float(v)
            for k, v in result.items()
            if k in self.spec.metrics and isinstance(v, int | float)
        }
        running.steps = int(result[STEP])
        for observer in self.observers:
            observer.trial_reported(number, int(result[STEP]), metrics)
        stop = self.stopping.report(number, metrics, last=bool(result.get(LAST)))
        if stop is not None:
            running.stop = stop
        return stop is not None

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        running = self._running.pop(trial_id, None)
        if running is None:
            return
        running.note_where(result)
        trial = running.trial
        self._trial_seconds.append(time.monotonic() - running.handed_at)
        outcome = decide(
            self.spec, trial.number, running.params, result, crashed=error,
            interrupted=self.interrupted, stop=running.stop,
        )
        outcome.reports = self.stopping.history.of(trial.number)
        if outcome.state == TrialState.COMPLETE:
            self.stopping.finish(trial.number)
        outcome.steps = running.steps
        outcome.attrs.update(running.where or {})
        if self.attrs_at_end is not None:
            outcome.attrs.update(self.attrs_at_end(trial.number))
        tell(self.study, trial, outcome)
        if self.heartbeat is not None:
            self.heartbeat.stop(trial.number)
        summary = StudySummary.of(self.study.get_trials(deepcopy=False), self.spec.goals)
        for observer in self.observers:
            observer.trial_finished(outcome, summary)

    def close_unfinished_if_any(self) -> None:
        """Tell every trial Ray did not report back as interrupted (driver stopping), and
        the trial asked ahead, if any: no worker took it (nobody saw it start)."""
        ahead = None
        if self._ahead is not None and self._ahead.exception() is None:  # else: no trial
            ahead = self._take_ahead()
        if self._asker is not None:
            self._asker.shutdown()
        if self._running or ahead is not None:
            self.interrupted = True
        for trial_id in list(self._running):
            self.on_trial_complete(trial_id)
        if ahead is not None:
            trial, params = ahead
            tell(self.study, trial, decide(self.spec, trial.number, params, None))
            if self.heartbeat is not None:
                self.heartbeat.stop(trial.number)

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles its search algorithm with the experiment; nothing here is needed to
        resume (the study is), and the storage connection cannot be pickled."""
        return {}

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the Optuna storage already holds every trial."""
