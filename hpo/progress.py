"""The live view of a running study."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import optuna
from rich.console import Console
from rich.live import Live
from rich.text import Text

from hpo.summary import StudySummary
from hpo.trials import Outcome


class Progress:
    """Follows a study: a live line on a terminal, one line per finished trial otherwise."""

    def __init__(
        self, name: str, budget: int, summary: StudySummary, console: Console | None = None
    ) -> None:
        self.name, self.budget, self.summary = name, budget, summary
        self.console = console or Console(stderr=False, highlight=False, soft_wrap=True)
        self.started = time.monotonic()
        self.warning: str | None = None
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=False
            )
            self._live.start()

    def _line(self) -> Text:
        elapsed = time.monotonic() - self.started
        return Text(f"[{self.name}] {self.summary.line(self.budget)} | {elapsed:.0f}s")

    def _render(self) -> Text:
        text = self._line()
        if self.warning:
            text.append(f"\nUNHEALTHY: {self.warning}", style="bold red")
        return text

    def warn(self, text: str) -> None:
        """Show a problem with the study loudly, above the live line and kept in it."""
        self.warning = text
        self.console.print(f"UNHEALTHY STUDY: {text}", style="bold red", markup=False)

    def trial_started(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        return None

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def trial_finished(self, outcome: Outcome, summary: StudySummary) -> None:
        self.summary = summary
        if self._live is not None:
            self._live.update(self._render())
        else:
            what = outcome.state.name + ("" if outcome.reason is None else f" ({outcome.reason})")
            self.console.print(f"trial {outcome.number}: {what}", markup=False)
            self.console.print(self._line(), markup=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
