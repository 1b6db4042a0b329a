"""Two of Optuna's GP internals replaced, during hpo's GP turns, by faster equivalents that
give the same proposals (``tests/test_samplers.py`` checks both against Optuna's).

* **Two-objective box decomposition.** The hypervolume improvement needs the region no
  finished trial dominates cut into boxes. Optuna's general algorithm loops in Python,
  about 10 ms per call on a dense front of 150 points; with trials running, Optuna's
  batch acquisition decomposes once per QMC sample (32 per turn with ``gp-tpe``'s
  settings), which was half of a late GP turn on ``bnh`` with two workers before hpo's GP
  believed running trials instead where there are constraints (:mod:`hpo.samplers._gp`).
  In two dimensions the boxes are the front's staircase: :func:`two_objective_box_bounds`,
  microseconds.
* **The CPU-device guard.** Optuna runs the whole turn inside ``torch.device("cpu")``
  (against a CUDA default device: Optuna's issue 6113), a mode that costs a Python call on
  every torch operation: a fifth of a GP turn on ``curves`` with two workers. Where the
  default device is the CPU already, the guard changes nothing, and it is left out.

Both are private to Optuna 5 (pinned below 6). The swap is undone after each turn, so
Optuna's own GPSampler elsewhere in the process runs as released; hpo runs one GP turn at a
time (:mod:`hpo.execution._searcher`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import optuna
import optuna._gp.acqf as optuna_acqf
import optuna.samplers._gp.sampler as optuna_gp_sampler
import torch

OPTUNA_BOX_BOUNDS = optuna_acqf.get_non_dominated_box_bounds
OPTUNA_TORCH = optuna_gp_sampler.torch


def two_objective_box_bounds(
    loss_vals: np.ndarray, ref_point: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Optuna's ``get_non_dominated_box_bounds`` (lower and upper corners of the boxes that
    tile the region below ``ref_point`` no point of ``loss_vals`` dominates; minimized):
    the same boxes in the same order, from one pass over the points sorted by the second
    objective. Other numbers of objectives go to Optuna's."""
    if loss_vals.shape[-1] != 2:
        return OPTUNA_BOX_BOUNDS(loss_vals, ref_point)
    by_second = loss_vals[np.lexsort((loss_vals[:, 0], loss_vals[:, 1]))]
    best_first_before = np.minimum.accumulate(np.concatenate(([np.inf], by_second[:-1, 0])))
    front = by_second[by_second[:, 0] < best_first_before]  # second ascending, first descending
    lower = np.full((len(front) + 1, 2), -np.inf)
    lower[1:, 1] = front[:, 1]
    upper = np.empty((len(front) + 1, 2))
    upper[0, 0], upper[1:, 0] = ref_point[0], front[:, 0]
    upper[:-1, 1], upper[-1, 1] = front[:, 1], ref_point[1]
    return lower, upper


class _TorchOnCPUAlready:
    """``torch`` as Optuna's GP sampler module sees it while the default device is the CPU:
    its ``torch.device("cpu")`` guard (the only use of ``torch.device`` there) enters
    nothing."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def device(device: str) -> contextlib.AbstractContextManager[None]:
        assert device == "cpu", device
        return contextlib.nullcontext()


_TORCH_ON_CPU_ALREADY = cast(Any, _TorchOnCPUAlready())


@contextlib.contextmanager
def faster_gp_turn() -> Iterator[None]:
    """One GP turn with both faster paths (module docstring)."""
    optuna_acqf.get_non_dominated_box_bounds = two_objective_box_bounds
    if torch.get_default_device().type == "cpu":
        optuna_gp_sampler.torch = _TORCH_ON_CPU_ALREADY
    try:
        yield
    finally:
        optuna_acqf.get_non_dominated_box_bounds = OPTUNA_BOX_BOUNDS
        optuna_gp_sampler.torch = OPTUNA_TORCH


class FasterGPSampler(optuna.samplers.GPSampler):
    """Optuna's GPSampler whose turns take both faster paths: the same proposals."""

    def sample_relative(self, *args: Any) -> dict[str, Any]:
        with faster_gp_turn():
            return super().sample_relative(*args)
