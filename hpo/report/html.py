"""The report page: counts, health, Pareto-front table and the figures next to it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from hpo.report._data import StudyData
from hpo.report._style import Plot

_CSS = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; }
.health { background: #fdecea; border-left: 5px solid #d62728; padding: 0.6em 1em; }
.note { color: #666; font-style: italic; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.9em; margin-bottom: 2em; }
"""


def cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p class='note'>no feasible trial yet</p>"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(data: StudyData, plots: Sequence[Plot]) -> str:
    spec = data.spec
    counts = {"budget": spec.trials, **data.summary.as_dict()}
    stops = counts.pop("stopped_early")
    parts = [
        f"<h1>Study report: {escape(data.name)}</h1>",
        f"<p>Generated {datetime.now().isoformat(timespec='seconds')} - objective "
        f"<code>{escape(spec.objective)}</code>; "
        + ", ".join(f"{g.direction} <code>{escape(g.metric)}</code>" for g in spec.goals)
        + (f"; constraints: {escape('; '.join(map(str, spec.constraints)))}"
           if spec.constraints else "") + "</p>",
    ]
    if spec.description:
        parts.append(f"<p>{escape(spec.description)}</p>")
    if spec.hypothesis:
        parts.append(f"<p><b>Hypothesis:</b> {escape(spec.hypothesis)}</p>")
    health = data.health
    if health:
        parts.append(f"<div class='health'><b>Unhealthy study:</b> {escape(health)}</div>")
    parts += ["<h2>Trials</h2>", table([counts])]
    if stops:
        parts += ["<h3>Stopped early, by reason</h3>",
                  table([{"reason": r, "trials": n} for r, n in stops.items()])]
    parts += ["<h2>Pareto front (feasible)</h2>", table(data.front_rows())]
    parts.append("<h2>Figures</h2>")
    for plot in plots:
        parts.append(f"<h3>{escape(plot.title)}</h3>")
        if plot.path is None:
            parts.append(f"<p class='note'>{escape(plot.note)}</p>")
        else:
            parts.append(
                f"<figure><img src='{escape(plot.path.name)}' alt='{escape(plot.title)}'>"
                f"<figcaption>{escape(plot.caption)}</figcaption></figure>"
            )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>hpo report: {escape(data.name)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
