"""Where a study stands: counts by state, feasibility, Pareto front, hypervolume."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.pareto import hypervolume, is_feasible, pareto_front
from hpo.provenance import UNKNOWN, describe_gpus
from hpo.spec import Goal
from hpo.trials import (
    ATTR_CPU,
    ATTR_GPUS,
    ATTR_INTERRUPTED,
    ATTR_METRICS,
    ATTR_NODE,
    ATTR_RUN_ID,
    ATTR_STOPPED,
    FINISHED,
    counts_towards_budget,
    is_waiting,
)


@dataclass(frozen=True)
class StudySummary:
    finished: int
    """Trials that count towards the budget (COMPLETE + PRUNED + FAIL, not interrupted)."""
    complete: int
    pruned: int
    failed: int
    interrupted: int
    running: int
    waiting: int
    feasible: int
    front: tuple[FrozenTrial, ...]
    hypervolume: float | None
    stops: Mapping[str, int] = field(default_factory=dict)
    """Trials stopped early, by reason (most frequent first)."""

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], goals: Sequence[Goal]) -> StudySummary:
        states = Counter(t.state for t in trials)
        waiting = sum(1 for t in trials if is_waiting(t))  # enqueued or asked ahead
        interrupted = sum(1 for t in trials if t.user_attrs.get(ATTR_INTERRUPTED))
        front = pareto_front(trials, goals)
        return cls(
            finished=sum(1 for t in trials if counts_towards_budget(t)),
            complete=states[TrialState.COMPLETE],
            pruned=states[TrialState.PRUNED],
            failed=sum(t.state == TrialState.FAIL and counts_towards_budget(t) for t in trials),
            interrupted=interrupted,
            running=states[TrialState.RUNNING] + states[TrialState.WAITING] - waiting,
            waiting=waiting,
            feasible=sum(1 for t in trials if is_feasible(t)),
            front=tuple(front),
            hypervolume=hypervolume(front, goals),
            stops=dict(
                Counter(
                    t.user_attrs[ATTR_STOPPED]
                    for t in trials
                    if t.state == TrialState.PRUNED and ATTR_STOPPED in t.user_attrs
                ).most_common()
            ),
        )

    def line(self, budget: int) -> str:
        """One line for logs and the live display."""
        hv = "n/a" if self.hypervolume is None else f"{self.hypervolume:.6g}"
        return (
            f"{self.finished}/{budget} finished | running {self.running} | complete "
            f"{self.complete} | pruned {self.pruned} | failed {self.failed} | feasible "
            f"{self.feasible} | pareto {len(self.front)} | hypervolume {hv}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "finished": self.finished,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "interrupted": self.interrupted,
            "running": self.running,
            "waiting": self.waiting,
            "feasible": self.feasible,
            "pareto_size": len(self.front),
            "hypervolume": self.hypervolume,
            "stopped_early": dict(self.stops),
        }


def machines(trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """Finished trials by the machine they ran on, most first: host, CPU and the GPU
    models they were given, as their workers recorded them (unknown for trials recorded
    before hpo kept it)."""
    counts = Counter(
        (str(t.user_attrs[ATTR_NODE]).split(":")[0], t.user_attrs.get(ATTR_CPU, UNKNOWN),
         describe_gpus(t.user_attrs[ATTR_GPUS]) if ATTR_GPUS in t.user_attrs else UNKNOWN)
        for t in trials if t.state in FINISHED and ATTR_NODE in t.user_attrs)  # fmt: skip
    return [{"host": host, "cpu": cpu, "gpus": gpus, "trials": n}
            for (host, cpu, gpus), n in counts.most_common()]  # fmt: skip


def machine_line(machine: Mapping[str, Any]) -> str:
    """One of :func:`machines` in words."""
    return f"{machine['host']}: {machine['cpu']}; GPUs: {machine['gpus']}"


def front_rows(
    front: Sequence[FrozenTrial], goals: Sequence[Goal], constraint_metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One flat row per Pareto trial: number, params, objectives, constraint metrics, run id."""
    rows = []
    for trial in front:
        metrics = trial.user_attrs.get(ATTR_METRICS, {})
        row: dict[str, Any] = {"trial": trial.number}
        row.update({f"params.{k}": v for k, v in trial.params.items()})
        row.update(
            {goal.metric: value for goal, value in zip(goals, trial.values or [], strict=True)}
        )
        row.update({m: metrics.get(m) for m in constraint_metrics if m not in row})
        row["mlflow_run_id"] = trial.user_attrs.get(ATTR_RUN_ID)
        rows.append(row)
    return rows
