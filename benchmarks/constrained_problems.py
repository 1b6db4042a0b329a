"""Classic constrained bi-objective test problems with known Pareto fronts, as hpo objectives.

Importable as ``constrained_problems:TNK`` (``SRN``, ``CONSTR``) once ``benchmarks/`` is on
``sys.path`` (``benchmarks/sample_efficiency.py`` puts it there). Each class evaluates its
problem and gives its true Pareto front analytically (``pareto_front``), in the objectives'
own units (both minimized). Definitions and Pareto-optimal sets follow K. Deb,
*Multi-Objective Optimization using Evolutionary Algorithms*, Wiley 2001, section 14.1
(and the same problems in pymoo, ``pymoo/problems/multi/{tnk,srn}.py``):

* TNK: M. Tanaka et al., "GA-based decision support system for multicriteria
  optimization", IEEE SMC 1995;
* SRN: N. Srinivas and K. Deb, "Multiobjective optimization using nondominated sorting in
  genetic algorithms", Evolutionary Computation 2(3), 1994;
* CONSTR: Deb 2001, section 14.1.1 (the "constr-ex" problem).

``STUDIES`` holds, per problem, the hpo study document: parameters, objectives with the
hypervolume reference point (a little beyond the front's nadir), and the constraints in
hpo's ``"METRIC >= NUMBER"`` grammar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from hpo.objectives import Objective, Reporter, TrialContext

Array = npt.NDArray[np.float64]


class _Problem(Objective):
    """Two objectives ``f1``, ``f2`` and constraint metrics ``c1``, ``c2``; one report.

    ``evaluate`` works on floats and on arrays alike; ``pareto_set`` gives Pareto-optimal
    decision vectors (x1, x2), ``pareto_front`` their (f1, f2), non-dominated ones only.
    """

    metrics: ClassVar[tuple[str, ...]] = ("f1", "f2", "c1", "c2")

    @staticmethod
    def evaluate(x1: Any, x2: Any) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def pareto_set(n: int) -> tuple[Array, Array]:
        raise NotImplementedError

    @classmethod
    def pareto_front(cls, n: int = 4000) -> Array:
        metrics = cls.evaluate(*cls.pareto_set(n))
        return nondominated(np.column_stack((metrics["f1"], metrics["f2"])))

    def run(
        self, params: Mapping[str, Any], context: TrialContext, report: Reporter
    ) -> Mapping[str, float]:
        metrics = {k: float(v) for k, v in
                   self.evaluate(float(params["x1"]), float(params["x2"])).items()}
        report(0, metrics, last=True)
        return metrics


class TNK(_Problem):
    """Tanaka: minimize ``f1 = x1``, ``f2 = x2`` over [0, pi]^2, subject to
    ``c1 = x1² + x2² - 1 - 0.1 cos(16 atan(x1 / x2)) >= 0`` and
    ``c2 = (x1 - 0.5)² + (x2 - 0.5)² <= 0.5``. The front is disconnected: the parts of the
    wavy boundary of ``c1`` (radius ``sqrt(1 + 0.1 cos 16 phi)`` at angle phi from the x2
    axis) inside the disc of ``c2`` that no other such point dominates.
    """

    @staticmethod
    def evaluate(x1: Any, x2: Any) -> dict[str, Any]:
        wave = x1**2 + x2**2 - 1 - 0.1 * np.cos(16 * np.arctan2(x1, x2))
        return {"f1": x1, "f2": x2, "c1": wave, "c2": (x1 - 0.5) ** 2 + (x2 - 0.5) ** 2}

    @staticmethod
    def pareto_set(n: int) -> tuple[Array, Array]:
        phi = np.linspace(0.0, math.pi / 2, 5 * n)
        radius = np.sqrt(1 + 0.1 * np.cos(16 * phi))
        x1, x2 = radius * np.sin(phi), radius * np.cos(phi)
        inside = (x1 - 0.5) ** 2 + (x2 - 0.5) ** 2 <= 0.5
        front = nondominated(np.column_stack((x1[inside], x2[inside])))  # f = x
        return front[:, 0], front[:, 1]


class SRN(_Problem):
    """Srinivas and Deb: minimize ``f1 = 2 + (x1 - 2)² + (x2 - 1)²`` and
    ``f2 = 9 x1 - (x2 - 1)²`` over [-20, 20]^2, subject to ``c1 = x1² + x2² <= 225`` and
    ``c2 = x1 - 3 x2 <= -10``. Deb's Pareto-optimal set is ``x1 = -2.5``, ``x2`` in
    [2.5, sqrt(225 - 6.25)] (f1 from 24.5 to 212.4); the front goes on at both ends, which
    count inside our reference point (230, 0): along ``c2``'s line from (-2.5, 2.5) to
    (1.1, 3.7) (f1 down to 10.1, where f2 reaches 2.6) and along ``c1``'s circle beyond
    (-2.5, 14.8) (f1 up to 223, where f2 is smallest). A random sample of 10^6 points of
    the square adds less than 3e-5 of the front's hypervolume (the front is sampled)."""

    @staticmethod
    def evaluate(x1: Any, x2: Any) -> dict[str, Any]:
        return {
            "f1": 2 + (x1 - 2) ** 2 + (x2 - 1) ** 2,
            "f2": 9 * x1 - (x2 - 1) ** 2,
            "c1": x1**2 + x2**2,
            "c2": x1 - 3 * x2,
        }

    @staticmethod
    def pareto_set(n: int) -> tuple[Array, Array]:
        top = math.sqrt(225 - 2.5**2)
        deb = np.linspace(2.5, top, n)
        along_c2 = np.linspace(2.5, 3.7, n)
        end = math.atan2(top, -2.5)
        arc = np.linspace(end, end + 1.0, n)
        x1 = np.concatenate((3 * along_c2 - 10, np.full(n, -2.5), 15 * np.cos(arc)))
        x2 = np.concatenate((along_c2, deb, 15 * np.sin(arc)))
        return x1, x2


class CONSTR(_Problem):
    """Deb's CONSTR: minimize ``f1 = x1`` and ``f2 = (1 + x2) / x1`` over x1 in [0.1, 1],
    x2 in [0, 5], subject to ``c1 = x2 + 9 x1 >= 6`` and ``c2 = 9 x1 - x2 >= 1``.
    Pareto-optimal set: ``x2 = 6 - 9 x1`` for x1 in [7/18, 2/3], then ``x2 = 0`` for x1 in
    [2/3, 1]."""

    @staticmethod
    def evaluate(x1: Any, x2: Any) -> dict[str, Any]:
        return {"f1": x1, "f2": (1 + x2) / x1, "c1": x2 + 9 * x1, "c2": 9 * x1 - x2}

    @staticmethod
    def pareto_set(n: int) -> tuple[Array, Array]:
        x1 = np.linspace(7 / 18, 1.0, n)
        return x1, np.where(x1 < 2 / 3, 6 - 9 * x1, 0.0)


def nondominated(points: Array) -> Array:
    """The rows of ``points`` that no other row dominates (both minimized), sorted by f1
    (a sweep: fine for two objectives, unlike :func:`hpo.pareto.nondominated`'s n²)."""
    ordered = points[np.lexsort((points[:, 1], points[:, 0]))]
    best = np.minimum.accumulate(ordered[:, 1])
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:, 1] < best[:-1]
    return ordered[keep]


def _study(name: str, x1: tuple[float, float], x2: tuple[float, float],
           ref: tuple[float, float], constraints: list[str]) -> dict[str, Any]:
    return {
        "description": f"{name}, a classic constrained bi-objective test problem (Deb 2001)",
        "objective": {"name": f"constrained_problems:{name}", "args": {}},
        "parameters": {
            "x1": {"type": "float", "low": x1[0], "high": x1[1]},
            "x2": {"type": "float", "low": x2[0], "high": x2[1]},
        },
        "objectives": [
            {"metric": "f1", "direction": "minimize", "ref": ref[0]},
            {"metric": "f2", "direction": "minimize", "ref": ref[1]},
        ],
        "constraints": constraints,
    }


STUDIES: dict[str, dict[str, Any]] = {
    "tnk": _study("TNK", (0.0, math.pi), (0.0, math.pi), (1.2, 1.2), ["c1 >= 0", "c2 <= 0.5"]),
    "srn": _study("SRN", (-20.0, 20.0), (-20.0, 20.0), (230.0, 0.0), ["c1 <= 225", "c2 <= -10"]),
    "constr": _study("CONSTR", (0.1, 1.0), (0.0, 5.0), (1.1, 10.0), ["c1 >= 6", "c2 >= 1"]),
}
"""hpo study documents; the reference points lie a little beyond each front's nadir
(TNK about (1.04, 1.04), CONSTR (1, 9), SRN (223, -25) with f2 cut at 0 where the front
reaches 2.6)."""

__all__ = ["CONSTR", "SRN", "STUDIES", "TNK", "nondominated"]
