"""Objectives used only by tests (importable as ``hpo_test_objectives:Name``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from hpo.objectives import Objective, Reporter, TrialContext


class Flaky(Objective):
    """Minimize (x, 1 - x) on [0, 1]; raises above 0.8, returns NaN below 0.15."""

    metrics: ClassVar[tuple[str, ...]] = ("a", "b")

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        x = float(params["x"])
        report(1, {"a": x})
        time.sleep(self.sleep)
        if x > 0.8:
            raise RuntimeError(f"diverged at x={x:.3f}")
        return {"a": float("nan") if x < 0.15 else x, "b": 1 - x}
