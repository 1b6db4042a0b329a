"""Run trials one at a time in this process, without Ray.

For debugging an objective and for fast, deterministic runs of cheap objectives (tests,
the early-stopping benchmarks): the same searcher, early stopping and records as with Ray.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from hpo.execution._searcher import StudySearcher
from hpo.execution._trainable import StopTrial, from_node, run_objective
from hpo.execution.ray_backend import interruptible
from hpo.trials import FINAL


def run_trials_locally(searcher: StudySearcher, num_trials: int) -> None:
    """Run up to ``num_trials`` trials in turn; returns when the searcher has no more
    (the study's budget is taken) or when interrupted."""
    with interruptible(searcher):
        try:
            for index in range(num_trials):
                trial_id = f"local_{index:05d}"
                config = searcher.suggest(trial_id)
                if not isinstance(config, dict):  # interrupted, or the budget is taken
                    break
                searcher.on_trial_complete(trial_id, _run(searcher, trial_id, config))
        finally:
            searcher.close_unfinished_if_any()


def _run(searcher: StudySearcher, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; its last result (``{}`` if it sent none)."""
    last: dict[str, Any] = {}

    def send(result: dict[str, Any]) -> None:
        last.clear()
        last.update(result)
        if searcher.interrupted or (not result.get(FINAL) and searcher.report(trial_id, result)):
            raise StopTrial

    with contextlib.suppress(StopTrial):
        run_objective(config, from_node(send, socket.gethostname(), config["gpus"]))
    return last
