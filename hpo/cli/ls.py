"""``hpo ls``: studies in the storage."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser("ls", help="list the studies in the storage")
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import list_studies

    studies = list_studies(storage=args.storage)
    if not studies:
        print("no studies")
    for row in studies:
        started = row["started"].strftime("%Y-%m-%d %H:%M") if row["started"] else "-"
        print(
            f"{row['study']:<24} {row['trials']:>6} trials  "
            f"{'/'.join(row['directions']):<20} started {started}"
        )
    return 0
