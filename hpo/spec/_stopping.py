"""The ``stopping:`` section of a study file: scheduler, feasibility and degenerate rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpo.spec._checker import Checker
from hpo.spec._model import SCHEDULERS, DegenerateRule, Goal, InfeasibleStop, Stopping

_KEYS = {
    "scheduler",
    "metric",
    "grace_period",
    "reduction_factor",
    "max_budget",
    "min_trials",
    "extrapolate",
    "infeasible",
    "degenerate",
}


def parse_stopping(
    check: Checker, raw: Any, goals: Sequence[Goal], metrics: Sequence[str]
) -> Stopping:
    """Validate ``stopping:``; absent means the defaults (auto scheduler, infeasible stop)."""
    body = check.mapping(raw if raw is not None else {}, "stopping", _KEYS)
    scheduler = body.get("scheduler", "auto")
    if scheduler not in SCHEDULERS:
        raise check.fail(
            "stopping.scheduler",
            f"unknown scheduler {scheduler!r} (known: {', '.join(SCHEDULERS)})",
        )
    if scheduler == "auto":
        scheduler = "moasha" if len(goals) > 1 else "asha"
    metric = body.get("metric")
    if metric is not None and metric not in [goal.metric for goal in goals]:
        raise check.fail(
            "stopping.metric",
            f"{metric!r} is not an objective of the study "
            f"({', '.join(goal.metric for goal in goals)})",
        )
    defaults = Stopping()
    max_budget = body.get("max_budget")
    extrapolate = body.get("extrapolate", scheduler == "moasha")
    if not isinstance(extrapolate, bool):
        raise check.fail("stopping.extrapolate", f"expected true or false, got {extrapolate!r}")
    return Stopping(
        scheduler=scheduler,
        metric=metric,
        grace_period=_count(check, body, "grace_period", defaults.grace_period),
        reduction_factor=float(
            check.number(
                body.get("reduction_factor", defaults.reduction_factor),
                "stopping.reduction_factor",
                minimum=1.5,
            )
        ),
        max_budget=None if max_budget is None else _count(check, body, "max_budget", 1),
        min_trials=_count(check, body, "min_trials", defaults.min_trials),
        extrapolate=extrapolate,
        infeasible=_infeasible(check, body.get("infeasible", {})),
        degenerate=_degenerate(check, body.get("degenerate") or {}, metrics),
    )


def _count(check: Checker, body: dict[str, Any], key: str, default: int, prefix: str = "") -> int:
    field = f"stopping.{prefix}{key}"
    return int(check.number(body.get(key, default), field, integer=True, minimum=1))


def _infeasible(check: Checker, raw: Any) -> InfeasibleStop | None:
    if raw is None or raw is False:
        return None
    body = check.mapping(raw, "stopping.infeasible", {"grace_period", "patience", "margin"})
    defaults = InfeasibleStop()
    return InfeasibleStop(
        grace_period=_count(check, body, "grace_period", defaults.grace_period, "infeasible."),
        patience=_count(check, body, "patience", defaults.patience, "infeasible."),
        margin=float(
            check.number(body.get("margin", defaults.margin), "stopping.infeasible.margin",
                         minimum=0)
        ),
    )


def _degenerate(
    check: Checker, raw: Any, metrics: Sequence[str]
) -> tuple[DegenerateRule, ...]:
    rules = []
    for name, body in check.mapping(raw, "stopping.degenerate").items():
        field = f"stopping.degenerate.{name}"
        body = check.mapping(body, field, {"when", "hint", "patience"})
        when = body.get("when")
        conditions = check.conditions([when] if isinstance(when, str) else when,
                                      f"{field}.when", metrics)
        if not conditions:
            raise check.fail(f"{field}.when", "expected at least one condition")
        rules.append(
            DegenerateRule(
                name=str(name),
                when=tuple(conditions),
                hint=check.text(body.get("hint", ""), f"{field}.hint"),
                patience=int(
                    check.number(body.get("patience", 1), f"{field}.patience", integer=True,
                                 minimum=1)
                ),
            )
        )
    return tuple(rules)
