"""Per-category learning curves of a few selected trials (front and stopped ones)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.report._data import StudyData
from hpo.report._style import Plot, metric_label, new_figure, save
from hpo.trials import ATTR_REPORTS, ATTR_RUN_ID, ATTR_STOPPED

FRONT_TRIALS = 4
STOPPED_TRIALS = 4
_CATEGORY = re.compile(r"^(HasAns|NoAns)_")
_STYLES = ("-", "--", ":", "-.")


def categories(data: StudyData) -> list[str]:
    """The first objective and its per-category metrics (``exact``: ``HasAns_exact``,
    ``NoAns_exact``), else every per-category metric, else the first objective."""
    first = data.spec.goals[0].metric
    found = [m for m in data.spec.metrics if _CATEGORY.match(m)]
    same = [m for m in found if _CATEGORY.sub("", m) == first]
    return [first, *same] if same else found or [first]


def select(data: StudyData) -> list[tuple[FrozenTrial, str]]:
    """Front trials spread along the front, then stopped trials, one per stop reason
    first; each with a label."""
    front = list(data.summary.front)
    if len(front) > FRONT_TRIALS:
        step = (len(front) - 1) / (FRONT_TRIALS - 1)
        front = [front[round(i * step)] for i in range(FRONT_TRIALS)]
    chosen = [(t, "Pareto front") for t in front]
    stopped = [t for t in data.trials if t.state == TrialState.PRUNED]
    by_reason: dict[str, list[FrozenTrial]] = {}
    for trial in stopped:
        by_reason.setdefault(str(trial.user_attrs.get(ATTR_STOPPED, "stopped")), []).append(trial)
    picks: list[FrozenTrial] = []
    while len(picks) < STOPPED_TRIALS and any(by_reason.values()):
        for group in by_reason.values():
            if group and len(picks) < STOPPED_TRIALS:
                picks.append(group.pop(len(group) // 2))
    chosen += [(t, f"stopped: {t.user_attrs.get(ATTR_STOPPED, '?')}") for t in picks]
    return chosen


def history(data: StudyData, trial: FrozenTrial, metrics: list[str]) -> dict[str, list[float]]:
    """A trial's reports of ``metrics``: from its ``reports`` attribute, else from its
    MLflow child run's metric histories."""
    reports = trial.user_attrs.get(ATTR_REPORTS) or []
    found = {m: [float(r[m]) for r in reports if m in r] for m in metrics}
    run_id = trial.user_attrs.get(ATTR_RUN_ID)
    if all(found.values()) or run_id is None or not data.parent_tags:
        return found
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=data.settings.tracking_uri)
    return {
        m: [p.value for p in sorted(client.get_metric_history(run_id, m), key=lambda p: p.step)]
        for m in metrics
    }


def curves_figure(data: StudyData, folder: Path) -> Plot:
    from matplotlib.ticker import MaxNLocator

    name, title = "learning_curves", "Learning curves"
    metrics = categories(data)
    chosen = [(t, label, history(data, t, metrics)) for t, label in select(data)]
    chosen = [c for c in chosen if any(c[2].values())]
    if not chosen:
        return Plot(name, title, "", None, note="no trial reported intermediate metrics")
    columns = min(4, len(chosen))
    rows = -(-len(chosen) // columns)
    fig = new_figure(3.6 * columns, 2.9 * rows + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    bounds = [c for c in data.spec.constraints if c.metric in metrics]
    longest = max(len(ys) for _, _, curves in chosen for ys in curves.values())
    drawn: dict[str, Any] = {"trials": [], "metrics": metrics}
    for ax, (trial, label, curves) in zip(axes, chosen, strict=False):
        for i, metric in enumerate(metrics):
            ys = curves.get(metric, [])
            ax.plot(range(1, len(ys) + 1), ys, _STYLES[i % len(_STYLES)], marker=".",
                    color=f"C{i}", label=metric_label(metric))
        for bound in bounds:
            color = f"C{metrics.index(bound.metric)}"
            ax.axhline(bound.bound, color=color, lw=0.8, ls=":", alpha=0.8)
        ax.set_title(f"trial {trial.number} - {label}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("evaluation (report) number", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, longest + 0.5)
        drawn["trials"].append(trial.number)
    for ax in axes[::columns]:
        ax.set_ylabel(", ".join(metric_label(m) for m in metrics[:1]) if len(metrics) == 1
                      else "metric value (%)" if all("%" in metric_label(m) for m in metrics)
                      else "metric value")
    for ax in axes[len(chosen):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(metrics), fontsize=8)
    fig.suptitle(f"{data.name}: learning curves of Pareto-front and early-stopped trials")
    return Plot(
        name, title,
        f"{', '.join(metrics)} at each report of a few Pareto-front trials and of trials "
        "stopped early (one per stop reason first)"
        + ("; dotted lines: constraint bounds." if bounds else "."),
        save(fig, folder, name),
        drawn,
    )
