"""The Pareto-front figure: front, dominated feasible, infeasible and stopped trials."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.pareto import is_feasible
from hpo.report._data import StudyData
from hpo.report._style import KIND_COLORS, Plot, metric_label, new_figure, save, scale_axis
from hpo.trials import ATTR_METRICS, ATTR_STOPPED

LABELS = {
    "front": "Pareto front (feasible)",
    "feasible": "feasible, dominated",
    "infeasible": "infeasible (violates a constraint)",
    "pruned": "stopped early (last report)",
}
_MARKERS = {"front": "o", "feasible": "o", "infeasible": "s", "pruned": "x"}


def classify(data: StudyData) -> dict[str, list[tuple[FrozenTrial, list[float]]]]:
    """Trials by kind with their goal values; a stopped trial is placed at its last
    reported values (FAILED trials and stopped ones without such values are left out)."""
    front = {t.number for t in data.summary.front}
    metrics = [g.metric for g in data.spec.goals]
    kinds: dict[str, list[tuple[FrozenTrial, list[float]]]] = {k: [] for k in LABELS}
    for trial in data.trials:
        if trial.state == TrialState.COMPLETE and trial.values is not None:
            kind = (
                "front" if trial.number in front
                else "feasible" if is_feasible(trial) else "infeasible"
            )
            kinds[kind].append((trial, list(trial.values)))
        elif trial.state == TrialState.PRUNED:
            last = trial.user_attrs.get(ATTR_METRICS, {})
            if all(m in last for m in metrics):
                kinds["pruned"].append((trial, [float(last[m]) for m in metrics]))
    return kinds


def _clusters(
    points: list[tuple[FrozenTrial, list[float]]], xi: int, yi: int
) -> list[tuple[tuple[float, float], list[int]]]:
    """Front points close together (2% of the x range, 1% in y) share one label."""
    xs = [v[xi] for _, v in points]
    width = (max(xs) - min(xs)) or 1.0
    clusters: list[tuple[tuple[float, float], list[int]]] = []
    for trial, v in sorted(points, key=lambda p: p[1][xi]):
        if clusters:
            (x, y), numbers = clusters[-1]
            if abs(v[xi] - x) < 0.02 * width and abs(v[yi] - y) <= 0.01 * abs(y):
                numbers.append(trial.number)
                continue
        clusters.append(((v[xi], v[yi]), [trial.number]))
    return clusters


def pareto_figure(data: StudyData, folder: Path) -> Plot:
    goals = data.spec.goals
    kinds = classify(data)
    pairs = list(combinations(range(len(goals)), 2)) or [(-1, 0)]
    columns = min(len(pairs), 3)
    rows = -(-len(pairs) // columns)
    fig = new_figure(6.4 * columns if columns > 1 else 7.5, 5.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (xi, yi) in zip(axes, pairs, strict=False):
        for kind in ("pruned", "infeasible", "feasible", "front"):
            points = kinds[kind]
            xs = [t.number if xi < 0 else v[xi] for t, v in points]
            ys = [v[yi] for _, v in points]
            ax.scatter(
                xs, ys,
                label=f"{LABELS[kind]}: {len(points)}",
                marker=_MARKERS[kind],
                s=60 if kind == "front" else 22,
                c=KIND_COLORS[kind],
                alpha=1.0 if kind == "front" else 0.55,
                **({"edgecolors": "black", "linewidths": 0.6} if kind == "front" else {}),
                zorder=4 if kind == "front" else 2,
            )
        if len(goals) == 2 and kinds["front"]:
            line = sorted((v[xi], v[yi]) for _, v in kinds["front"])
            ax.plot(*zip(*line, strict=True), color=KIND_COLORS["front"], lw=1, zorder=3)
            for (x, y), numbers in _clusters(kinds["front"], xi, yi):
                ax.annotate(", ".join(f"#{n}" for n in numbers), (x, y), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
        for bound in data.spec.constraints:
            for axis, index in (("x", xi), ("y", yi)):
                if index >= 0 and goals[index].metric == bound.metric:
                    line = ax.axvline if axis == "x" else ax.axhline
                    line(bound.bound, color="black", ls=":", lw=1, label=f"constraint {bound}")
        all_values = [v for kind in kinds.values() for _, v in kind]
        if xi >= 0:
            ax.set_xlabel(metric_label(goals[xi].metric, goals[xi]))
            scale_axis(ax, "x", goals[xi].metric, [v[xi] for v in all_values])
        else:
            ax.set_xlabel("trial number")
        ax.set_ylabel(metric_label(goals[yi].metric, goals[yi]))
        scale_axis(ax, "y", goals[yi].metric, [v[yi] for v in all_values])
        ax.grid(alpha=0.3)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(handles[::-1], labels[::-1], loc="best", fontsize=8, framealpha=0.9)
    failed = data.summary.failed
    fig.suptitle(
        f"{data.name}: Pareto front of {data.summary.finished} finished trials"
        + (f" ({failed} failed, not shown)" if failed else "")
    )
    counts = {kind: len(points) for kind, points in kinds.items()}
    drawn: dict[str, Any] = {**counts, "legend": [f"{LABELS[k]}: {n}" for k, n in counts.items()]}
    stops = sorted({str(t.user_attrs.get(ATTR_STOPPED)) for t, _ in kinds["pruned"]})
    return Plot(
        "pareto_front",
        "Pareto front",
        "Red: the feasible Pareto front (trial numbers next to the points); blue: feasible "
        "but dominated; orange: complete but violating a constraint; grey crosses: trials "
        "stopped early, at their last reported values"
        + (f" (reasons: {', '.join(stops)})." if stops else "."),
        save(fig, folder, "pareto_front"),
        drawn,
    )
