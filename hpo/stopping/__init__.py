"""When to stop trials early: schedulers (ASHA, MO-ASHA, median) and rules on a trial's
own reports (degenerate runs, hopeless infeasibility). Pure logic, no Ray: the execution
backend feeds reports in and stops the trials it is told to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hpo.spec import StudySpec
from hpo.stopping._asha import ASHA, RungRanking, by_metric, by_objectives, feasible_point
from hpo.stopping._base import History, Stop, StoppingRule
from hpo.stopping._median import MedianStop
from hpo.stopping._rules import DEGENERATE, DegenerateStop, InfeasibleStopRule


class EarlyStopping:
    """Keeps every trial's reports and asks the rules, in order, after each report:
    degenerate-run rules, then the infeasibility rule, then the scheduler.

    The history keeps every metric reported, not only those the rules look at: rules built
    later for other constraints (a study resumed with them, a driver another one
    superseded) judge the same reports."""

    def __init__(self, rules: Sequence[StoppingRule], history: History | None = None) -> None:
        self.rules = list(rules)
        self.history = History() if history is None else history

    def report(
        self, number: int, metrics: Mapping[str, float], *, last: bool = False
    ) -> Stop | None:
        """Record trial ``number``'s next report; a ``Stop`` if it should stop now. Never at
        the end of training (``last``, or as many reports as a trial that ran to its end
        made): the trial has done its work, and stopping it would only keep it off the
        Pareto front and count it as stopped early."""
        budget = self.history.add(number, metrics)
        if last or 0 < self.history.trained <= budget:
            return None
        for rule in self.rules:
            stop = rule.check(number, self.history)
            if stop is not None:
                return stop
        return None

    def finish(self, number: int) -> None:
        """Trial ``number`` ran to the end of its training (it was not stopped)."""
        self.history.finish(number)

    def restore(self, number: int, reports: Sequence[Mapping[str, float]]) -> None:
        """Bring back a finished trial's reports (a resumed study judges new trials
        against every earlier one); :meth:`finish` it too if it ran to its end."""
        for metrics in reports:
            self.history.add(number, metrics)


def rung_ranking(spec: StudySpec) -> RungRanking:
    """How MO-ASHA ranks the trials at a rung: on the objectives, constraints from the
    infeasibility grace period on (degenerate-looking reports last before it)."""
    settings = spec.stopping
    judged_from = settings.infeasible.grace_period if settings.infeasible else 1
    ranking = by_objectives(spec.goals, spec.constraints, judged_from, settings.degenerate)
    return RungRanking(ranking, settings.extrapolate, settings.max_budget,
                       feasible_point(spec.goals, spec.constraints))


def create_stopping(spec: StudySpec, history: History | None = None) -> EarlyStopping:
    """The study's rules, from its ``stopping:`` section; ``history``: the reports so far
    (a driver's, when the study's constraints changed under it)."""
    settings = spec.stopping
    rules: list[StoppingRule] = [DegenerateStop(rule) for rule in settings.degenerate]
    if settings.infeasible is not None and spec.constraints:
        rules.append(InfeasibleStopRule(spec.constraints, settings.infeasible))
    goal = next(
        (g for g in spec.goals if g.metric == settings.metric), spec.goals[0]
    )
    if settings.scheduler == "median":
        rules.append(MedianStop(goal, settings.grace_period, settings.min_trials))
    elif settings.scheduler in ("asha", "moasha"):
        rank = (
            rung_ranking(spec)
            if settings.scheduler == "moasha"
            else RungRanking(by_metric(goal), settings.extrapolate, settings.max_budget)
        )
        rules.append(
            ASHA(settings.scheduler, rank, settings.grace_period, settings.reduction_factor,
                 settings.max_budget)
        )
    return EarlyStopping(rules, history)


__all__ = [
    "ASHA",
    "DEGENERATE",
    "DegenerateStop",
    "EarlyStopping",
    "History",
    "InfeasibleStopRule",
    "MedianStop",
    "RungRanking",
    "Stop",
    "StoppingRule",
    "create_stopping",
    "rung_ranking",
]
