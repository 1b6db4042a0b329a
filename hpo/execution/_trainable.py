"""What runs a trial, in a Ray worker or in the driver: build the objective, run it,
send its reports and its final metrics."""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hpo.objectives import TrialContext, resolve_objective
from hpo.provenance import cpu, trial_gpus
from hpo.trials import CPU, ERROR, FINAL, GPUS, LAST, NODE, STEP

Send = Callable[[dict[str, Any]], None]


def run_objective(config: Mapping[str, Any], send: Send) -> None:
    """Run the trial described by ``config`` (from the searcher's ``suggest``).

    Exceptions become a final ``hpo_error`` result, so the driver records the reason and
    Ray neither retries nor logs a stack trace per trial. ``send`` may raise to stop the
    trial early (Ray does so when a trial is stopped; so does the local backend).
    """
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

        def report(step: int, metrics: Mapping[str, float], *, last: bool = False) -> None:
            send({**metrics, STEP: int(step), **({LAST: True} if last else {})})

        final = dict(objective.run(config["params"], context, report))
    except StopTrial:
        raise
    except Exception as exc:  # a failing trial never kills a study
        last = traceback.extract_tb(exc.__traceback__)[-1:] or None
        where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        send({ERROR: f"{type(exc).__name__}: {exc}{where}", FINAL: True})
        return
    send({**final, FINAL: True})


class StopTrial(Exception):
    """Raised by ``send`` to stop a trial run in the driver (the local backend)."""


def from_node(send: Send, node: str, gpus: float) -> Send:
    """``send`` with where the trial runs (the node, its CPU, the models of the ``gpus``
    GPUs it was given) added to every result."""
    where = {NODE: node, CPU: cpu(), GPUS: trial_gpus(gpus)}
    return lambda result: send({**result, **where})


def run_trial(config: Mapping[str, Any]) -> None:
    """Ray function trainable."""
    import ray
    from ray import tune

    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()}"
    run_objective(config, from_node(tune.report, node, config["gpus"]))
