"""``hpo pareto NAME``: the feasible Pareto front."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, cast

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser("pareto", help="print the feasible Pareto front")
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--held-out", action="store_true",
                        help="also measure each front trial's kept model on held-out data "
                        "(held_out.* columns), print the front's hypervolume there, and "
                        "record both with the study and in MLflow")
    parser.add_argument("--set", action="append", default=[], dest="assignments",
                        metavar="FIELD=VALUE",
                        help="with --held-out: the held-out data, where the study names none, "
                        "e.g. data.test=PATH (repeat)")
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import held_out_front, pareto_front
    from hpo.errors import ConfigError
    from hpo.spec import parse_assignment

    if args.assignments and not args.held_out:
        raise ConfigError("--set chooses the held-out data: it needs --held-out")
    data = [parse_assignment(a) for a in args.assignments]
    front = pareto_front(args.study, storage=args.storage)
    measured = held_out_front(args.study, storage=args.storage, data=data) \
        if args.held_out else None
    if measured is not None and not front.empty:
        import pandas as pd

        from hpo.held_out import with_held_out

        front = pd.DataFrame(with_held_out(
            cast(list[dict[str, Any]], front.to_dict(orient="records")), measured))
    if args.format == "json":
        rows = front.to_dict(orient="records")
        print(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2))
    elif args.format == "csv":
        print(front.to_csv(index=False), end="")
    elif front.empty:
        print("no feasible trial yet")
    else:
        print(front.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        if measured is not None:
            print(f"hypervolume: {_number(measured.hypervolume_reported)} as reported, "
                  f"{_number(measured.hypervolume)} held out")
    return 0


def _number(value: float | None) -> str:
    return "n/a (a goal declares no ref)" if value is None else f"{value:.6g}"


def _plain(value: Any) -> Any:
    """JSON-safe scalars (NaN -> null, numpy -> Python)."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value
