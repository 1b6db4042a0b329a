"""What runs inside a Ray Tune worker: build the objective, run it, stream its reports."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from hpo.objectives import TrialContext, resolve_objective
from hpo.trials import ERROR, FINAL, STEP


def run_trial(config: Mapping[str, Any]) -> None:
    """Ray function trainable. Exceptions become a final ``hpo_error`` result, so the
    driver records the reason and Ray neither retries nor logs a stack trace per trial."""
    try:
        cls = resolve_objective(config["objective"])
        objective = cls(**config["args"])
        output_dir = Path(config["output_dir"])
        output_dir.mkdir(parents=True, exist_ok=True)
        context = TrialContext(
            study_name=config["study"],
            number=config["number"],
            seed=config["seed"],
            cpus=config["cpus"],
            gpus=config["gpus"],
            output_dir=output_dir,
            cache_dir=Path(config["cache_dir"]),
        )

        def report(step: int, metrics: Mapping[str, float]) -> None:
            tune.report({**metrics, STEP: int(step)})

        final = dict(objective.run(config["params"], context, report))
        tune.report({**final, FINAL: True})
    except Exception as exc:  # a failing trial never kills a study
        last = traceback.extract_tb(exc.__traceback__)[-1:] or None
        where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        tune.report({ERROR: f"{type(exc).__name__}: {exc}{where}", FINAL: True})
