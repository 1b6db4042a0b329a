"""``hpo pareto NAME``: the feasible Pareto front."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser("pareto", help="print the feasible Pareto front")
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import pareto_front

    front = pareto_front(args.study, storage=args.storage)
    if args.format == "json":
        rows = front.to_dict(orient="records")
        print(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2))
    elif args.format == "csv":
        print(front.to_csv(index=False), end="")
    elif front.empty:
        print("no feasible trial yet")
    else:
        print(front.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    return 0


def _plain(value: Any) -> Any:
    """JSON-safe scalars (NaN -> null, numpy -> Python)."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value
