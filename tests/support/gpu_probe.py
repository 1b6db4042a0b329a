"""A test objective that records what its trial sees of its node and its GPUs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from hpo.objectives import Objective, Reporter, TrialContext


class GpuProbe(Objective):
    """Minimize ``x``; writes ``probe.json`` (CUDA_VISIBLE_DEVICES, Ray GPU ids, node) to
    the trial's output directory. Sleeps a little per step so concurrent trials overlap."""

    metrics: ClassVar[tuple[str, ...]] = ("a",)

    def __init__(self, steps: int = 4, sleep: float = 0.5) -> None:
        self.steps, self.sleep = steps, sleep

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        import ray

        (context.output_dir / "probe.json").write_text(json.dumps({
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "context_gpus": context.gpus,
            "node_id": ray.get_runtime_context().get_node_id(),
        }))
        x = float(params["x"])
        for step in range(1, self.steps + 1):
            time.sleep(self.sleep)
            report(step, {"a": x})
        return {"a": x}
