"""The objective of ``benchmarks/overhead.py``: sleep a fixed time, return two metrics.

Importable as ``overhead_objective:Sleep`` once ``benchmarks/`` is on ``PYTHONPATH`` (the
benchmark puts it there for itself and its Ray workers). Every run appends its start and
end times to the file named by ``HPO_BENCH_LOG``, so the time spent inside the objective
is measured the same way for hpo and its peers, whichever process runs the trial.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from hpo.objectives import Objective, Reporter, TrialContext

LOG_ENV = "HPO_BENCH_LOG"


def work(x: float, y: float, sleep: float) -> tuple[float, float]:
    """The trial itself: sleep, then a trivial bi-objective value (minimize both)."""
    started = time.time()
    if sleep > 0:
        time.sleep(sleep)
    ended = time.time()
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as file:  # one short append per trial: atomic enough
            file.write(f"{started:.6f} {ended:.6f}\n")
    return x * x + y, (1 - x) ** 2 + y


class Sleep(Objective):
    """Sleep ``sleep`` seconds; minimize ``a`` and ``b`` over ``x, y`` in [0, 1]."""

    metrics: ClassVar[tuple[str, ...]] = ("a", "b")

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = float(sleep)

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        a, b = work(float(params["x"]), float(params["y"]), self.sleep)
        return {"a": a, "b": b}
