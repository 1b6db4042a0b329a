"""Parameters: parallel coordinates coloured by an objective, importance per objective."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.report._data import StudyData
from hpo.report._style import KIND_COLORS, Plot, metric_label, new_figure, save
from hpo.spec import Parameter

MIN_IMPORTANCE_TRIALS = 5
"""Complete trials below which parameter importance is not computed."""


def _axis(parameter: Parameter) -> tuple[Any, list[tuple[float, str]]]:
    """Map a value to [0, 1] on the parameter's axis, and the axis' tick labels."""
    dist = parameter.distribution
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        last = max(len(choices) - 1, 1)

        def place(value: Any) -> float:
            return choices.index(value) / last if value in choices else math.nan

        return place, [(i / last, str(c)) for i, c in enumerate(choices)]
    assert isinstance(dist, FloatDistribution | IntDistribution)
    log = bool(dist.log)
    low, high = (math.log10(dist.low), math.log10(dist.high)) if log else (dist.low, dist.high)
    span = (high - low) or 1.0

    def to_unit(value: Any) -> float:
        if value is None:
            return math.nan
        return ((math.log10(value) if log else float(value)) - low) / span

    ticks = [(f, low + f * span) for f in (0.0, 0.5, 1.0)]
    return to_unit, [(f, f"{10 ** v if log else v:.3g}") for f, v in ticks]


def parallel_figure(data: StudyData, folder: Path) -> Plot:
    goal = data.spec.goals[0]
    trials = [t for t in data.trials if t.state == TrialState.COMPLETE and t.values]
    if len(trials) < 2:
        return Plot("parallel_coordinates", "Parameters", "", None,
                    note=f"needs 2 complete trials, the study has {len(trials)}")
    parameters = [p for p in data.spec.parameters if any(p.name in t.params for t in trials)]
    values = [t.values[0] for t in trials]
    low, high = min(values), max(values)
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(low, high if high > low else low + 1)
    cmap = colormaps["viridis" if goal.direction == "maximize" else "viridis_r"]
    axes_maps = [_axis(p) for p in parameters]
    front = {t.number for t in data.summary.front}
    fig = new_figure(max(8.0, 1.2 * (len(parameters) + 1)), 5.0)
    ax = fig.subplots()
    for trial, value in sorted(zip(trials, values, strict=True),
                               key=lambda tv: (tv[0].number in front, tv[1])):
        ys = [place(trial.params.get(p.name)) for p, (place, _) in
              zip(parameters, axes_maps, strict=True)]
        ys.append((value - low) / ((high - low) or 1.0))
        on_front = trial.number in front
        ax.plot(range(len(ys)), ys, color=cmap(norm(value)), alpha=0.9 if on_front else 0.45,
                lw=2.4 if on_front else 1.0, zorder=3 if on_front else 2)
    for x, (_, ticks) in enumerate(axes_maps):
        ax.axvline(x, color="black", lw=0.6)
        for y, text in ticks:
            ax.text(x, y, f" {text}", fontsize=7, va="center", ha="left",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
    ax.axvline(len(parameters), color="black", lw=0.6)
    for y, v in ((0.0, low), (1.0, high)):
        ax.text(len(parameters), y, f" {v:.4g}", fontsize=7, va="center")
    ax.set_xticks(range(len(parameters) + 1))
    ax.set_xticklabels(
        [p.name + (" (log)" if getattr(p.distribution, "log", False) else "")
         for p in parameters] + [goal.metric], rotation=30, ha="right")
    ax.set_yticks([])
    ax.set_xlim(-0.3, len(parameters) + 0.6)
    ax.set_ylim(-0.05, 1.05)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, pad=0.01)
    bar.set_label(metric_label(goal.metric, goal))
    fig.suptitle(f"{data.name}: parameters of {len(trials)} complete trials, coloured by "
                 f"{goal.metric} (thick: Pareto front)")
    return Plot(
        "parallel_coordinates",
        "Parameters (parallel coordinates)",
        f"One line per complete trial, coloured by {goal.metric}; Pareto-front trials "
        "are thick. Log-scaled parameters have log axes; a gap means the parameter is "
        "inactive for that trial (conditional parameter).",
        save(fig, folder, "parallel_coordinates"),
        {"lines": len(trials), "axes": [p.name for p in parameters] + [goal.metric]},
    )


def _objective(index: int) -> Callable[[FrozenTrial], float]:
    return lambda trial: float(trial.values[index])


def importance_figure(data: StudyData, folder: Path) -> Plot:
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    complete = [t for t in data.trials if t.state == TrialState.COMPLETE and t.values]
    name, title = "param_importance", "Parameter importance per objective"
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return Plot(name, title, "", None, note=(
            f"not computed: needs at least {MIN_IMPORTANCE_TRIALS} complete trials, the "
            f"study has {len(complete)}"))
    goals = data.spec.goals
    importances: dict[str, dict[str, float]] = {}
    for i, goal in enumerate(goals):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                importances[goal.metric] = get_param_importances(
                    data.study, evaluator=PedAnovaImportanceEvaluator(),
                    target=_objective(i))
            except (ValueError, RuntimeError, optuna.exceptions.OptunaError) as exc:
                return Plot(name, title, "", None, note=f"not computed: {exc}")
    fig = new_figure(5.0 * len(goals), 0.5 + 0.45 * max(map(len, importances.values()), default=1))
    for ax, goal in zip(fig.subplots(1, len(goals), squeeze=False)[0], goals, strict=True):
        ranked = list(importances[goal.metric].items())[::-1]
        ax.barh([k for k, _ in ranked], [v for _, v in ranked], color=KIND_COLORS["feasible"])
        ax.set_title(f"{goal.metric} ({goal.direction})")
        ax.set_xlabel("importance (share of the total, PED-ANOVA)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{data.name}: parameter importance over {len(complete)} complete trials")
    return Plot(
        name, title,
        "Optuna's PED-ANOVA importance of each parameter for each objective, over the "
        "complete trials (normalized to sum to 1 per objective).",
        save(fig, folder, name),
        {"objectives": list(importances)},
    )
