"""A Ray Tune searcher that asks and tells the Optuna study in storage.

Unlike Ray's bundled ``OptunaSearch`` it keeps no study in memory (the storage is the
truth, so resume and the dashboard see every trial), records early-stopped trials as
PRUNED rather than COMPLETE, and stores constraint values. Reports go through
:meth:`StudySearcher.report`, which also decides early stopping; the Ray scheduler and the
local backend both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpo.locking import study_lock
from hpo.settings import Settings
from hpo.spec import StudySpec
from hpo.stopping import EarlyStopping, Stop
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
    tell,
)


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
    ) -> None:
        super().__init__()
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
        self._live: dict[str, tuple[optuna.Trial, dict[str, Any]]] = {}
        self._stops: dict[str, Stop] = {}
        self._steps: dict[str, int] = {}
        self._where: dict[str, dict[str, Any]] = {}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        """The next trial's config; ``Searcher.FINISHED`` once the study's budget is taken.

        The budget is shared by every driver of the study: finished trials that count plus
        trials running anywhere. Counting and asking happen under the study's lock, so
        drivers started together never exceed it.
        """
        if self.interrupted:
            return None
        with study_lock(self.settings, self.study.study_name):
            if self.recover is not None:
                self.recover()
            if budget_taken(self.study) >= self.spec.trials:
                return Searcher.FINISHED
            trial, params = ask(self.study, self.spec, self.attrs_at_start)
        self._live[trial_id] = (trial, params)
        for observer in self.observers:
            observer.trial_started(trial, params)
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

    def report(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Pass an intermediate report on to the observers; True if the trial must stop."""
        if trial_id not in self._live:
            return False
        self._record_where(trial_id, result)
        if STEP not in result or result.get(FINAL):
            return False
        number = self._live[trial_id][0].number
        metrics = {
            k: float(v)
            for k, v in result.items()
            if k in self.spec.metrics and isinstance(v, int | float)
        }
        self._steps[trial_id] = int(result[STEP])
        for observer in self.observers:
            observer.trial_reported(number, int(result[STEP]), metrics)
        stop = self.stopping.report(number, metrics, last=bool(result.get(LAST)))
        if stop is not None:
            self._stops[trial_id] = stop
        return stop is not None

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self._live:
            return
        self._record_where(trial_id, result)
        where = self._where.pop(trial_id, {})
        trial, params = self._live.pop(trial_id)
        outcome = decide(
            self.spec, trial.number, params, result, crashed=error,
            interrupted=self.interrupted, stop=self._stops.pop(trial_id, None),
        )
        outcome.reports = self.stopping.history.of(trial.number)
        if outcome.state == TrialState.COMPLETE:
            self.stopping.finish(trial.number)
        outcome.steps = self._steps.pop(trial_id, None)
        outcome.attrs.update(where)
        if self.attrs_at_end is not None:
            outcome.attrs.update(self.attrs_at_end(trial.number))
        tell(self.study, trial, outcome)
        summary = StudySummary.of(self.study.get_trials(deepcopy=False), self.spec.goals)
        for observer in self.observers:
            observer.trial_finished(outcome, summary)

    def _record_where(self, trial_id: str, result: Mapping[str, Any] | None) -> None:
        """Note where the trial runs (:data:`hpo.trials.WHERE`), from the first result that
        says so (stored with its outcome)."""
        result = result or {}
        if trial_id not in self._where and isinstance(result.get(NODE), str):
            self._where[trial_id] = {attr: result[key] for key, attr in WHERE.items()
                                     if key in result}  # fmt: skip

    def close_unfinished_if_any(self) -> None:
        """Tell every trial Ray did not report back as interrupted (driver stopping)."""
        if self._live:
            self.interrupted = True
        for trial_id in list(self._live):
            self.on_trial_complete(trial_id)

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles its search algorithm with the experiment; nothing here is needed to
        resume (the study is), and the storage connection cannot be pickled."""
        return {}

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the Optuna storage already holds every trial."""
