"""Hypervolume and Pareto-front size as trials finished."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from optuna.trial import FrozenTrial

from hpo.pareto import hypervolume, is_feasible, minimized, nondominated
from hpo.report._data import StudyData
from hpo.report._style import KIND_COLORS, Plot, new_figure, save
from hpo.trials import counts_towards_budget


def front_history(data: StudyData) -> tuple[list[float | None], list[int]]:
    """Hypervolume and front size after each finished trial, in order of completion."""
    goals = data.spec.goals
    finished = sorted(
        (t for t in data.trials if counts_towards_budget(t)),
        key=lambda t: (t.datetime_complete or datetime.max, t.number),
    )
    front: list[FrozenTrial] = []
    volumes: list[float | None] = []
    sizes: list[int] = []
    for trial in finished:
        if is_feasible(trial) and trial.values is not None:
            candidates = [*front, trial]
            keep = nondominated([minimized(p.values, goals) for p in candidates])
            front = [p for p, k in zip(candidates, keep, strict=True) if k]
        volumes.append(hypervolume(front, goals))
        sizes.append(len(front))
    return volumes, sizes


def hypervolume_figure(data: StudyData, folder: Path) -> Plot:
    from matplotlib.ticker import MaxNLocator

    volumes, sizes = front_history(data)
    xs = list(range(1, len(sizes) + 1))
    fig = new_figure(7.5, 4.2)
    ax = fig.subplots()
    refs = ", ".join(f"{g.metric} = {g.ref:g}" for g in data.spec.goals if g.ref is not None)
    if volumes and volumes[-1] is not None:
        ax.step(xs, [v or 0.0 for v in volumes], where="post", color=KIND_COLORS["front"], lw=2,
                label="hypervolume (left)")
        ax.set_ylabel("hypervolume (objective units multiplied)")
    else:
        ax.text(0.5, 0.5, "no hypervolume: give every objective a `ref`",
                transform=ax.transAxes, ha="center")
    right = ax.twinx()
    right.step(xs, sizes, where="post", color=KIND_COLORS["feasible"], lw=1, ls="--",
               label="Pareto-front size (right)")
    right.set_ylabel("Pareto-front size (trials)")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("finished trials (in order of completion)")
    ax.grid(alpha=0.3)
    handles = [*ax.get_legend_handles_labels()[0], *right.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    fig.suptitle(f"{data.name}: hypervolume of the feasible Pareto front over trials\n"
                 f"(reference point: {refs or 'none'})", fontsize=11)
    return Plot(
        "hypervolume",
        "Hypervolume over trials",
        "Hypervolume dominated by the feasible Pareto front after each finished trial "
        "(objectives' reference point), and the front's size.",
        save(fig, folder, "hypervolume"),
        {"final_hypervolume": volumes[-1] if volumes else None, "points": len(xs)},
    )
