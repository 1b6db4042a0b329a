"""Objectives used only by tests (importable as ``hpo_test_objectives:Name``)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
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


class SelfKilling(Objective):
    """Minimize (x, 1 - x) over ``steps`` reports; trial ``crash_trial``, and each later
    trial run with the same parameters (a retry), kills its own process with SIGKILL after
    its first report, ``crashes`` times in all (counted in a file of the cache dir)."""

    metrics: ClassVar[tuple[str, ...]] = ("a", "b")

    def __init__(
        self, crash_trial: int = 1, crashes: int = 1, steps: int = 3, step_seconds: float = 0.0
    ) -> None:
        self.crash_trial, self.crashes = crash_trial, crashes
        self.steps, self.step_seconds = steps, step_seconds

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        x = float(params["x"])
        for step in range(1, self.steps + 1):
            time.sleep(self.step_seconds)
            report(step, {"a": x, "b": 1 - x})
            if step == 1 and self._must_crash(params, context):
                os.kill(os.getpid(), signal.SIGKILL)
        return {"a": x, "b": 1 - x}

    def _must_crash(self, params: Mapping[str, Any], context: TrialContext) -> bool:
        record = context.cache_dir / f"crashes-{context.study_name}.json"
        state = json.loads(record.read_text()) if record.exists() else {"params": None, "n": 0}
        ours = context.number == self.crash_trial or state["params"] == dict(params)
        if not ours or state["n"] >= self.crashes:
            return False
        record.write_text(json.dumps({"params": dict(params), "n": state["n"] + 1}))
        return True


class FailsToPrepare(Objective):
    """The metrics of ``bnh``; building its shared inputs fails (no trial ever runs)."""

    metrics: ClassVar[tuple[str, ...]] = ("f1", "f2", "c1", "c2")

    def prepare(self, cache_dir: Path) -> Mapping[str, str]:
        raise OSError(f"no space left on device: {cache_dir}")

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        raise AssertionError("never run")


class WorkerEnvironment(Objective):
    """The metrics of ``bnh`` (a feasible point); writes what the trial's process sees to
    ``worker.json`` in its output directory: its Ray runtime environment, the environment
    variable Ray Tune gives trial actors, and the working directory."""

    metrics: ClassVar[tuple[str, ...]] = ("f1", "f2", "c1", "c2")

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        import ray

        seen = {"runtime_env": ray.get_runtime_context().get_runtime_env_string(),
                "PL_DISABLE_FORK": os.environ.get("PL_DISABLE_FORK"), "cwd": os.getcwd()}
        (context.output_dir / "worker.json").write_text(json.dumps(seen))
        return {"f1": 0.0, "f2": 50.0, "c1": 0.0, "c2": 50.0}
