"""``hpo status NAME``: trial counts, feasibility, Pareto size, hypervolume, early stops
by reason, and the machines the trials ran on."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser("status", help="where a study stands")
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import load
    from hpo.held_out import recorded
    from hpo.summary import StudySummary, machine_line, machines

    study, spec = load(args.study, storage=args.storage)
    trials = study.get_trials(deepcopy=False)
    summary = StudySummary.of(trials, spec.goals)
    data = {"study": args.study, "budget": spec.trials, **summary.as_dict()}
    data["ran_on"] = machines(trials)
    held_out = recorded(study)
    if held_out is not None:  # hpo pareto --held-out measured the front
        data["hypervolume_held_out"] = held_out.hypervolume
        data["held_out_measured_at"] = held_out.at
        # front trials that joined the front after the measurement
        data["held_out_unmeasured"] = held_out.missing([t.number for t in summary.front])
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        stops, ran_on = data.pop("stopped_early"), data.pop("ran_on")
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {_text(value)}")
        if stops:
            print("stopped early, by reason:")
            for reason, count in stops.items():
                print(f"  {count:>5}  {reason}")
        if ran_on:
            print("ran on, by machine:")
            for row in ran_on:
                print(f"  {row['trials']:>5}  {machine_line(row)}")
    return 0


def _text(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)
