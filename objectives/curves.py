"""Simulated training curves of a distilled SQuAD 2.0 question-answering student.

A fast, deterministic stand-in for the distill-squad study: tests, demos and early-stopping
benchmarks run on it. Each run follows a small latent model of a QA student:

* ``skill`` - the share of answerable questions it answers correctly when it answers;
* ``discrimination`` - the share of unanswerable questions it recognises;
* ``abstention`` - a bias towards predicting "no answer" for everything. It starts at 0.3,
  decays as training goes on and, in the degenerate region (:func:`collapses`), goes to 1
  within two or three reports: the "always no answer" cluster (``exact`` = 100 x the
  share of unanswerable questions, 50.07 on the official dev set).

``HasAns_exact = (1 - abstention) * skill`` and
``NoAns_exact = abstention + (1 - abstention) * discrimination`` (in percent). Measurement
noise is binomial-like (largest near 50%, none at 0 or 100), so degenerate runs are flat.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from hpo.objectives import Objective, Reporter, TrialContext

VOCAB_SIZE = 30522
MAX_POSITIONS = 512
LR_OPTIMUM = 1.6e-4
"""Learning rate with the best asymptote (log10 about -3.8)."""
START_ABSTENTION = 0.3
COLLAPSE_RATE = 2.5
"""Per-report decay rate of what is left of a collapsing run's answers."""


@dataclass(frozen=True)
class StudentConfig:
    """Hyperparameters of one student, defaults filled in (see :data:`DEFAULTS`)."""

    learning_rate: float = 5e-5
    n_layers: int = 6
    n_heads: int = 12
    hidden_size: int = 768
    dropout: float = 0.1
    attention_dropout: float = 0.1
    qa_dropout: float = 0.1
    alpha_ce: float = 0.5
    temperature: float = 2.0


DEFAULTS = StudentConfig()
PARAMETERS = tuple(field.name for field in fields(StudentConfig))
_INTS = ("n_layers", "n_heads", "hidden_size")


def _check(name: str, value: object, ok: bool, want: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {want}, got {value!r}")


def _number(name: str, value: object, *, integer: bool = False) -> float:
    """``value`` as a finite float (an integer if ``integer``); bools are rejected."""
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        want = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return float(value)


def resolve_params(params: Mapping[str, Any]) -> StudentConfig:
    """Fill defaults into ``params`` and validate every value; raise ``ValueError`` if bad."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; known: {list(PARAMETERS)}")
    values: dict[str, Any] = {}
    for name in PARAMETERS:
        raw = params.get(name, getattr(DEFAULTS, name))
        number = _number(name, raw, integer=name in _INTS)
        values[name] = int(number) if name in _INTS else number
    cfg = StudentConfig(**values)
    _check("learning_rate", cfg.learning_rate, cfg.learning_rate > 0, "> 0")
    for name in _INTS:
        _check(name, getattr(cfg, name), getattr(cfg, name) >= 1, ">= 1")
    for name in ("dropout", "attention_dropout", "qa_dropout"):
        _check(name, getattr(cfg, name), 0 <= getattr(cfg, name) < 1, "in [0, 1)")
    _check("alpha_ce", cfg.alpha_ce, 0 <= cfg.alpha_ce <= 1, "in [0, 1]")
    _check("temperature", cfg.temperature, cfg.temperature > 0, "> 0")
    return cfg


def collapses(params: Mapping[str, Any]) -> bool:
    """Whether a run with these hyperparameters collapses to "always no answer".

    Deterministic in the parameters, not the seed. Three causes, together about 22% of the
    space of ``search_spaces/curves.yaml``: a learning rate above 3e-3 (training diverges
    onto the null span), ``qa_dropout`` above 0.45 (the span head cannot learn) and a tiny
    model (<= 2 layers of width 128) trained with a learning rate below 1e-5.
    """
    return _collapses(resolve_params(params))


def _collapses(cfg: StudentConfig) -> bool:
    tiny = cfg.n_layers <= 2 and cfg.hidden_size <= 128 and cfg.learning_rate < 1e-5
    return cfg.learning_rate > 3e-3 or cfg.qa_dropout > 0.45 or tiny


def num_params(n_layers: int, hidden_size: int) -> int:
    """BERT-style parameter count: embeddings, encoder layers and the span (QA) head."""
    h = hidden_size
    embeddings = (VOCAB_SIZE + MAX_POSITIONS + 2) * h + 2 * h  # + token types, LayerNorm
    return embeddings + n_layers * (12 * h * h + 13 * h) + 2 * h + 2


def latency_ms(n_layers: int, hidden_size: int) -> float:
    """Noise-free inference latency of one batch, in milliseconds (~30 ms for 12 x 768)."""
    return 1.5 + 0.15 * n_layers + 3.8e-6 * n_layers * hidden_size**2


def capacity(cfg: StudentConfig) -> float:
    """Size term in [0, 1]: deeper and wider is better, with diminishing returns."""
    depth = 1 - math.exp(-cfg.n_layers / 2)
    width = 1 - math.exp(-cfg.hidden_size / 180)
    heads = 0.95 + 0.05 * min(1.0, math.log2(cfg.n_heads) / 3)
    head_dim = cfg.hidden_size / cfg.n_heads
    heads *= 1 - 0.1 * max(0.0, 1 - head_dim / 32)
    return depth * width * heads


def quality(cfg: StudentConfig) -> float:
    """Training-recipe term in (0, 1]: learning rate, dropouts and distillation."""
    offset = math.log10(cfg.learning_rate / LR_OPTIMUM)
    lr = math.exp(-0.5 * (offset / (1.0 if offset > 0 else 2.2)) ** 2)
    drop = (1 - 0.5 * (cfg.dropout - 0.1) ** 2) * (1 - 0.3 * (cfg.attention_dropout - 0.1) ** 2)
    drop *= 1 - 0.4 * (cfg.qa_dropout - 0.1) ** 2
    soft = math.sin(0.8 * math.pi * cfg.alpha_ce)  # best near alpha_ce = 0.6
    temp = math.exp(-0.5 * (math.log(cfg.temperature / 2.8) / 0.6) ** 2)  # best at 2-4
    return lr * drop * (0.95 + 0.05 * soft * temp)


def _seed(seed: int, cfg: StudentConfig) -> list[int]:
    digest = hashlib.sha256(repr(astuple(cfg)).encode()).digest()
    return [seed % 2**63, int.from_bytes(digest[:8], "little")]


class CurvesObjective(Objective):
    """Learning curves of a simulated QA student, deterministic given (params, seed).

    Each of the ``steps`` reports follows a fixed slice of training (like an epoch), so a
    good learning rate converges within about 20 reports and a tiny one does not.
    ``noise`` is the standard deviation, in points, of the measurement noise of a metric at
    50% (and of a per-run offset); ``noise=0`` gives noise-free curves. ``latency_ms`` gets
    a relative jitter of ``0.04 * noise``.
    """

    metrics: ClassVar[tuple[str, ...]] = (
        "exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1",
        "num_params", "latency_ms", "train_loss",
    )  # fmt: skip
    parameters: ClassVar[tuple[str, ...] | None] = PARAMETERS
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    def __init__(
        self,
        *,
        steps: int = 20,
        step_seconds: float = 0.0,
        noise: float = 0.5,
        noans_fraction: float = 0.5007,
        noans_featurization_bug: bool = False,
    ) -> None:
        super().__init__()
        self.steps = int(_number("steps", steps, integer=True))
        _check("steps", steps, self.steps >= 1, "an integer >= 1")
        self.step_seconds = _number("step_seconds", step_seconds)
        _check("step_seconds", step_seconds, self.step_seconds >= 0, ">= 0")
        self.noise = _number("noise", noise)
        _check("noise", noise, self.noise >= 0, ">= 0")
        self.noans_fraction = _number("noans_fraction", noans_fraction)
        _check("noans_fraction", noans_fraction, 0 < self.noans_fraction < 1, "in (0, 1)")
        ok = isinstance(noans_featurization_bug, bool)
        _check("noans_featurization_bug", noans_featurization_bug, ok, "true or false")
        self.noans_featurization_bug = noans_featurization_bug

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        cfg = resolve_params(params)
        if cfg.hidden_size % cfg.n_heads:
            raise ValueError(
                f"hidden size {cfg.hidden_size} is not divisible by {cfg.n_heads} attention heads"
            )
        rng = np.random.default_rng(_seed(context.seed, cfg))
        offsets = self.noise / 100 * rng.standard_normal(2)  # seed-to-seed variation
        run_offset = (float(offsets[0]), float(offsets[1]))
        metrics: dict[str, float] = {}
        for step in range(1, self.steps + 1):
            if self.step_seconds > 0:
                time.sleep(self.step_seconds)
            metrics = self._metrics(cfg, step, run_offset, rng)
            report(step, metrics, last=step == self.steps)
        return metrics

    def _metrics(
        self,
        cfg: StudentConfig,
        step: int,
        run_offset: tuple[float, float],
        rng: np.random.Generator,
    ) -> dict[str, float]:
        """Metrics after ``step`` reports' worth of training (draws from ``rng``)."""
        has, noans, loss = self._latents(cfg, step, run_offset)
        has_exact = self._measure(100 * has, rng)
        noans_exact = self._measure(100 * noans, rng)
        has_f1 = min(100.0, has_exact + 0.3 * has_exact * (1 - has_exact / 100))
        p = self.noans_fraction
        jitter = math.exp(0.04 * self.noise * rng.standard_normal())
        return {
            "exact": (1 - p) * has_exact + p * noans_exact,
            "f1": (1 - p) * has_f1 + p * noans_exact,
            "HasAns_exact": has_exact,
            "HasAns_f1": has_f1,
            "NoAns_exact": noans_exact,
            "NoAns_f1": noans_exact,
            "num_params": float(num_params(cfg.n_layers, cfg.hidden_size)),
            "latency_ms": latency_ms(cfg.n_layers, cfg.hidden_size) * jitter,
            "train_loss": loss * math.exp(0.01 * self.noise * rng.standard_normal()),
        }

    def _latents(
        self, cfg: StudentConfig, step: int, run_offset: tuple[float, float]
    ) -> tuple[float, float, float]:
        """Noise-free (HasAns accuracy, NoAns accuracy, train loss) after ``step`` reports."""
        cap, q = capacity(cfg), quality(cfg)
        skill_inf = (0.15 + 0.62 * cap) * q + run_offset[0]
        disc_inf = (0.2 + 0.54 * cap) * q + run_offset[1]
        tau = min(60.0, max(0.8, 2.0 * math.sqrt(LR_OPTIMUM / cfg.learning_rate)))
        progress = 1 - math.exp(-step / tau)
        skill = min(1.0, max(0.0, skill_inf)) * progress
        disc = min(1.0, max(0.0, disc_inf)) * progress
        abst_inf = 0.03 + 0.5 * max(0.0, cfg.qa_dropout - 0.1) ** 2
        abst = abst_inf + (START_ABSTENTION - abst_inf) * (1 - progress)
        loss = 0.6 + 3.0 * (1 - skill_inf) + 5.3 * math.exp(-step / tau)
        if _collapses(cfg):
            decay = math.exp(-COLLAPSE_RATE * (step - 1))
            abst = 1 - 0.07 * decay
            skill *= decay  # with the featurization bug the run degenerates instead
            loss = 4.2 + 1.7 * decay
        if self.noans_featurization_bug:
            abst, disc = 0.0, 0.0
        return (1 - abst) * skill, abst + (1 - abst) * disc, loss

    def _measure(self, percent: float, rng: np.random.Generator) -> float:
        """Add binomial-like noise (std ``noise`` points at 50%) and clip to [0, 100]."""
        p = min(1.0, max(0.0, percent / 100))
        noisy = percent + self.noise * 2 * math.sqrt(p * (1 - p)) * rng.standard_normal()
        return min(100.0, max(0.0, noisy))
