"""The contract of early-stopping rules: look at a trial's reports, maybe stop it."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stop:
    """Why a trial is stopped early."""

    reason: str
    """Short and stable, so stops can be counted by it: ``degenerate: always-no-answer``."""
    detail: str
    """One sentence with the numbers behind the decision."""

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})"


@dataclass
class History:
    """Every trial's reports, in order. A trial's budget so far is its number of reports."""

    reports: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    """Trials that ran to the end of their training."""

    @property
    def trained(self) -> int:
        """The most reports made by a trial that ran to the end of its training (0: none
        yet): where training ends, so where no rung may stop a trial."""
        return max((len(self.of(n)) for n in self.finished), default=0)

    def add(self, number: int, metrics: Mapping[str, float]) -> int:
        """Record trial ``number``'s next report; returns its budget (1 for the first)."""
        trial = self.reports.setdefault(number, [])
        trial.append(dict(metrics))
        return len(trial)

    def finish(self, number: int) -> None:
        """Trial ``number`` ran to the end of its training."""
        self.finished.add(number)

    def of(self, number: int) -> list[dict[str, float]]:
        return self.reports.get(number, [])

    def at(self, budget: int) -> dict[int, dict[str, float]]:
        """Trials that reached ``budget`` reports -> their metrics at that report."""
        return {n: r[budget - 1] for n, r in self.reports.items() if len(r) >= budget}


class StoppingRule(abc.ABC):
    """One reason to stop trials (a scheduler, a feasibility or a degenerate-run rule)."""

    @abc.abstractmethod
    def check(self, number: int, history: History) -> Stop | None:
        """Called right after trial ``number``'s latest report was added to ``history``."""
