"""The contract between hpo and a training objective.

An objective is a class registered under a name (see ``_registry``). hpo builds it
once per trial, inside the trial's worker process, from the fixed ``args`` of the
study file, then calls :meth:`Objective.run` with the trial's parameters.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class TrialContext:
    """What an objective may know about the trial it runs in."""

    study_name: str
    number: int
    """Optuna trial number."""
    seed: int
    """Seed of this trial, derived from the study seed and the trial number."""
    cpus: float
    gpus: float
    """The trial's share of GPUs (``run.resources.gpus``). With 0, run on the CPU: hpo
    records such a trial as having run on none. On the Ray hpo starts it also sees none
    (``CUDA_VISIBLE_DEVICES`` empty); on a cluster only where its nodes were started with
    ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1`` (Ray 2.60 otherwise leaves it the node's GPUs,
    its use of them uncounted), and with the local backend it sees what the driver sees."""
    output_dir: Path
    """A directory owned by this trial (``<study_dir>/trials/NNNN``); created before
    :meth:`Objective.run` is called. hpo writes the trial's resolved configuration there
    (``config.json``). An objective that produces a model writes it (weights and config)
    to ``output_dir / "model"``: hpo keeps it for Pareto-front trials, logs it as the
    ``model`` artifact of the trial's MLflow run, and deletes it for the others
    (``run.keep_models``: front, all or none)."""
    cache_dir: Path
    """Shared by the study's trials (and by other studies): what :meth:`Objective.prepare`
    built, keyed by content so that different settings never collide."""


class Reporter(Protocol):
    """Reports intermediate metrics; call it any number of times with increasing steps.
    ``last=True`` says training is over (the report of the final evaluation): the report
    is recorded, but no early-stopping rule stops the trial there, since it has done all
    its work; it ends COMPLETE, feasible or not."""

    def __call__(self, step: int, metrics: Mapping[str, float], *, last: bool = False) -> None:
        ...


class Objective(abc.ABC):
    """Base class of objectives.

    Subclasses take their fixed arguments (``objective.args`` in the study file) as
    keyword arguments of ``__init__`` and raise ``ValueError`` for a bad value; an
    unknown argument is rejected by hpo before the class is built.
    """

    metrics: ClassVar[tuple[str, ...]] = ()
    """Names of every metric :meth:`run` reports or returns. Objectives and constraints
    of a study may only name these."""

    measured_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics measured on the machine (wall-clock timings): they vary between runs of
    the same configuration, so ``hpo reproduce`` shows them without comparing them."""

    parameters: ClassVar[tuple[str, ...] | None] = None
    """Hyperparameter names the objective understands; ``None`` accepts any name."""

    requires: ClassVar[tuple[str, ...]] = ()
    """Modules the objective imports when it runs (e.g. ``("torch",)``); checked before a
    study starts (see :meth:`required_modules`)."""

    def __init__(self, **args: Any) -> None:
        if args:
            raise TypeError(f"unexpected arguments {sorted(args)}")

    def prepare(self, cache_dir: Path) -> Mapping[str, str]:
        """Build what every trial shares (datasets, features, a teacher model) once, in the
        driver, before trials start; store it under ``cache_dir``.

        Returns facts about the inputs (e.g. ``{"data": "synthetic, offline default"}``):
        hpo prints each on one line and records them as tags of the study's MLflow run and
        in the study's provenance. Data identity belongs here (path + sha256, hub id +
        revision, or generator + seed + sha256): ``hpo reproduce`` warns when it changed.
        """
        return {}

    def required_modules(self, choices: Mapping[str, Sequence[Any]]) -> Sequence[str]:
        """Modules needed with these arguments; ``choices`` maps each parameter of the
        study to the values it can take (empty for a continuous one). Default: ``requires``.
        """
        return self.requires

    def preflight(self, cache_dir: Path, *, full: bool = True) -> list[str]:
        """Problems with the objective's inputs, one line each naming the field and value
        (a data file missing or unreadable, a model path that does not exist, ...).

        Called before a study starts, in the driver: nothing may be written, nothing
        trained. ``full=False`` (at every study start) asks for cheap checks only;
        ``full=True`` (``hpo preflight``) may read and parse the inputs.
        """
        return []

    def metric_names(self) -> Sequence[str]:
        """Metrics produced with these arguments (override when they depend on them)."""
        return self.metrics

    @abc.abstractmethod
    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        """Train and evaluate one configuration; return the final metrics.

        Raise any exception to fail the trial: the study carries on.
        """

    held_out_args: ClassVar[tuple[str, ...]] = ()
    """Arguments (dotted, within the objective's) that choose only the held-out data, so
    that ``hpo pareto --held-out --set`` may give them when measuring an existing study
    (e.g. a test file it was created without); every other argument is the study's."""

    def evaluate_held_out(self, model_dir: Path, cache_dir: Path) -> Mapping[str, float]:
        """Metrics of a trial's kept model (``model_dir``, its ``model/``) on held-out data:
        data it was neither trained nor selected on. A study's Pareto front is the best of
        many noisy evaluations on the evaluation data, so its metrics there are optimistic;
        these are not. Return the metrics that depend on the data (the rest stay the
        trial's); raise ``ValueError`` naming the setting when there is no held-out data.
        Default: the objective keeps no models (NotImplementedError).
        """
        raise NotImplementedError(f"objective {type(self).__name__} has no held-out evaluation")
