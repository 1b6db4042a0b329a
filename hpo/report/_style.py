"""Axis labels with units and the figure file format, shared by the figures."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.spec import Goal

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
KIND_COLORS = {
    "front": "#d62728",
    "feasible": "#1f77b4",
    "infeasible": "#ff7f0e",
    "pruned": "#7f7f7f",
}


@dataclass
class Plot:
    """One figure of the report: its file (``None`` when it could not be drawn, with
    ``note`` saying why) and what it drew, for the HTML and for tests."""

    name: str
    title: str
    caption: str
    path: Path | None
    drawn: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def unit(metric: str) -> str:
    """A display unit guessed from common metric names ('' when unknown)."""
    if metric.endswith("_ms"):
        return "ms"
    if metric.endswith("params"):
        return "parameters"
    if re.search(r"exact|f1|accuracy", metric, re.IGNORECASE):
        return "%"
    return ""


def metric_label(metric: str, goal: Goal | None = None) -> str:
    """``exact (%) - higher is better``."""
    text = f"{metric} ({unit(metric)})" if unit(metric) else metric
    if goal is not None:
        text += " - higher is better" if goal.direction == "maximize" else " - lower is better"
    return text


def scale_axis(ax: Axes, axis: str, metric: str, values: list[float]) -> None:
    """Log scale for parameter counts spanning more than a decade, engineering ticks."""
    from matplotlib.ticker import EngFormatter

    positive = [v for v in values if v > 0]
    if unit(metric) != "parameters":
        return
    if positive and max(positive) / min(positive) > 10 and len(positive) == len(values):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(EngFormatter())


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot's global state (rendered by Agg when saved)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, folder: Path, name: str) -> Path:
    """Write ``folder/name.png``."""
    path = folder / f"{name}.png"
    fig.savefig(path, format="png", dpi=DPI)
    return path
