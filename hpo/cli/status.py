"""``hpo status NAME``: trial counts, feasibility, Pareto size, hypervolume."""

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
    from hpo.summary import StudySummary

    study, spec = load(args.study, storage=args.storage)
    summary = StudySummary.of(study.get_trials(deepcopy=False), spec.goals)
    data = {"study": args.study, "budget": spec.trials, **summary.as_dict()}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        stops = data.pop("stopped_early")
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {'n/a' if value is None else value}")
        if stops:
            print("stopped early, by reason:")
            for reason, count in stops.items():
                print(f"  {count:>5}  {reason}")
    return 0
