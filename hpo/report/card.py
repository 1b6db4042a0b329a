"""The experiment card: a Markdown record of one study whose Conclusions the user writes."""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from hpo.report._data import ATTR_COMMANDS, ATTR_HYPOTHESIS, StudyData
from hpo.samplers import auto_choice
from hpo.settings import Settings, redact
from hpo.summary import machine_line, machines
from hpo.trials import ATTR_FAIL_REASON, ATTR_INTERRUPTED

CARD_FILE = "CARD.md"
CONCLUSIONS = "## Conclusions"
_PLACEHOLDER = (
    "<!-- Write your conclusions here: this section is kept verbatim when the card is "
    "regenerated. -->\n\n_Not written yet._\n"
)


def write_card(
    name: str, settings: Settings, *, hypothesis: str | None = None, out: Path | None = None
) -> Path:
    """Write (or regenerate) the card at ``out`` (default ``<study_dir>/CARD.md``), keeping
    the text of its Conclusions section. ``hypothesis`` is recorded with the study."""
    data = StudyData.load(name, settings)
    if hypothesis:
        data.study.set_user_attr(ATTR_HYPOTHESIS, hypothesis)
    path = out or data.study_dir / CARD_FILE
    previous = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, conclusions(previous) or _PLACEHOLDER))
    return path


def conclusions(card: str) -> str | None:
    """The text of a card's Conclusions section, verbatim (``None`` if it has none)."""
    _, found, rest = card.partition(f"\n{CONCLUSIONS}\n")
    if not found:
        return None
    body, _, _ = rest.partition("\n## ")
    return body


def render(data: StudyData, conclusions_text: str) -> str:
    spec, study = data.spec, data.study
    hypothesis = study.user_attrs.get(ATTR_HYPOTHESIS) or spec.hypothesis
    sections = [
        f"# Experiment card: {data.study_dir.name}\n\n"
        f"- **Id:** `{data.study_dir.name}` (folder `{data.study_dir}`)\n"
        f"- **Study:** `{data.name}` in `{redact(data.settings.storage_url)}`; MLflow parent "
        f"run `{data.parent_run_id}` in `{redact(data.settings.tracking_uri)}`\n"
        f"- **Trials:** {_counts(data)}\n",
        _section("Goal", spec.description or "_No description in the study file._"),
        _section("Hypothesis", hypothesis or "_Not stated: set `hypothesis:` in the study "
                 "file or pass `hpo card --hypothesis TEXT`._"),
        f"{CONCLUSIONS}\n{conclusions_text}",
        _section("Results: Pareto front", _results(data)),
        _section("Commands that ran the study", _commands(data)),
        _section("Where the trials ran", _machines(data)),
        _section("Problems met", _problems(data)),
        _section("Model", f"Objective `{spec.objective}` with arguments:\n\n"
                 + _bullets(dict(spec.objective_args))),
        _section("Data", _data_identity(data)),
        _section("Parameters and ranges", _parameters(data)),
        _section("Source", _source(data)),
        _section("Resulting models", _models(data)),
    ]
    return "\n".join(sections)


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.rstrip()}\n"


def _counts(data: StudyData) -> str:
    counts = data.summary.as_dict()
    return (
        f"{counts['finished']} finished of {data.spec.trials} ({counts['complete']} complete, "
        f"{counts['pruned']} stopped early, {counts['failed']} failed), {counts['feasible']} "
        f"feasible, Pareto front {counts['pareto_size']}, hypervolume "
        f"{_number(counts['hypervolume'])}"
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value).replace("|", "\\|")


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _results(data: StudyData) -> str:
    table = _table(data.front_rows())
    if not table:
        return "_No feasible trial._"
    held_out = data.held_out
    if held_out is None:
        return table
    still = sum(t.feasible for t in held_out.trials)
    chosen = "".join(f" --set {k}={redact(str(v))}" for k, v in held_out.data.items())
    text = (f"Held out (`held_out.*`, `hpo pareto {data.name} --held-out{chosen}` at "
            f"{held_out.at}): hypervolume {_number(held_out.hypervolume)} against "
            f"{_number(held_out.hypervolume_reported)} as the trials reported; {still} of "
            f"{len(held_out.trials)} front trials still feasible.")
    missing = held_out.missing([t.number for t in data.summary.front])
    if missing:
        text += (f" Trials {', '.join(map(str, missing))} joined the front since: measure "
                 "again to cover them.")
    return f"{table}\n\n{text}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _bullets(values: Mapping[str, Any]) -> str:
    if not values:
        return "_none recorded_"
    return "\n".join(
        f"- `{k}`: " + (f"`{json.dumps(v, default=str)}`" if isinstance(v, dict | list)
                        else redact(str(v)))
        for k, v in values.items()
    )


def _commands(data: StudyData) -> str:
    recorded = data.study.user_attrs.get(ATTR_COMMANDS) or []
    if not recorded:
        return "_Not recorded (the study ran before hpo recorded its commands)._"
    lines = []
    for entry in recorded:
        entry = entry if isinstance(entry, dict) else {"command": str(entry)}
        where = " ".join(f"{k}: {entry[k]}" for k in ("at", "cwd") if entry.get(k))
        lines.append(f"# {where}\n{redact(str(entry.get('command')))}" if where
                     else redact(str(entry.get("command"))))
    return "```bash\n" + "\n".join(lines) + "\n```"


def _machines(data: StudyData) -> str:
    lines = [f"- {row['trials']} trial{'s' * (row['trials'] != 1)} on {machine_line(row)}"
             for row in machines(data.trials)]  # fmt: skip
    return "\n".join(lines) or "_Not recorded (the study ran before hpo recorded it)._"


def _problems(data: StudyData) -> str:
    failed = Counter(
        str(t.user_attrs.get(ATTR_FAIL_REASON, "unknown"))
        for t in data.trials
        if t.state == TrialState.FAIL and not t.user_attrs.get(ATTR_INTERRUPTED)
    )
    parts = ["**Failed trials, by error:**\n\n" + (
        "\n".join(f"- {n} x {reason}" for reason, n in failed.most_common()) or "- none")]
    parts.append("**Stopped early, by reason:**\n\n" + (
        "\n".join(f"- {n} x {reason}" for reason, n in data.summary.stops.items()) or "- none"))
    if data.summary.interrupted:
        parts.append(f"**Interrupted** (re-run on resume): {data.summary.interrupted}")
    parts.append(f"**Health:** {data.health or 'no warning'}")
    return "\n\n".join(parts)


def _data_identity(data: StudyData) -> str:
    parts = ["Inputs the objective reported (MLflow parent tags `hpo.input.*`):\n\n"
             + _bullets(data.inputs)]
    provenance = data.provenance
    for key, value in provenance.items():
        if key in ("git", "source"):
            continue
        body = _bullets(value) if isinstance(value, dict) else f"- `{value}`"
        parts.append(f"Recorded provenance, `{key}`:\n\n{body}")
    if not provenance:
        parts.append("_No provenance recorded with the study._")
    return "\n\n".join(parts)


def _parameters(data: StudyData) -> str:
    rows = []
    for parameter in data.spec.parameters:
        dist = parameter.distribution
        if isinstance(dist, CategoricalDistribution):
            kind, values = "categorical", ", ".join(map(str, dist.choices))
        else:
            kind = type(dist).__name__.removesuffix("Distribution").lower()
            values = f"[{dist.low:g}, {dist.high:g}]"  # type: ignore[attr-defined]
            if getattr(dist, "log", False):
                values += " log"
            if getattr(dist, "step", None) not in (None, 1):
                values += f" step {dist.step:g}"  # type: ignore[attr-defined]
        when = "; ".join(f"{k} in {list(v)}" for k, v in parameter.when.items())
        rows.append({"parameter": parameter.name, "type": kind, "range": values,
                     "when": when})
    fixed = {
        "objectives": "; ".join(f"{g.direction} {g.metric} (ref {g.ref})" for g in
                                data.spec.goals),
        "constraints": "; ".join(map(str, data.spec.constraints)) or "none",
        "sampler": ": ".join(filter(None, [data.spec.sampler, auto_choice(data.study)])),
        "seed": data.spec.seed,
        "scheduler": data.spec.stopping.scheduler,
    }
    return _table(rows) + "\n\n" + _bullets(fixed)


def _source(data: StudyData) -> str:
    git = data.provenance.get("git") or data.provenance.get("source")
    if isinstance(git, dict) and git:
        return "Recorded with the study:\n\n" + _bullets(git)
    if isinstance(git, str) and git:
        return f"Recorded with the study: `{git}`"
    folder = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "_Not recorded with the study, and no git repository at card time._"
    return (f"`{commit}`: `git rev-parse HEAD` of `{folder}` **at card time** (not "
            "recorded with the study; the study may have run on other code).")


def _models(data: StudyData) -> str:
    lines = []
    for trial in data.summary.front:
        model = data.study_dir / "trials" / f"{trial.number:04d}" / "model"
        lines.append(f"- trial {trial.number}: `{model}`" if model.is_dir()
                     else f"- trial {trial.number}: not kept")
    return "Pareto-front trials:\n\n" + ("\n".join(lines) or "- none (no feasible trial)")
