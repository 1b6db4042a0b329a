"""``hpo reproduce NAME TRIAL``: run a recorded trial again and compare its metrics."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "reproduce",
        help="re-run one trial from what was recorded and compare its metrics",
        description="Re-run trial TRIAL of study NAME from its recorded definition, "
        "parameters and seed, in this process and outside the study (nothing is written to "
        "its storage or MLflow). Prints recorded vs reproduced metrics. Exit 0 when all "
        "match exactly, 1 when any differs, 2 for an unknown study or trial.",
    )
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument("trial", metavar="TRIAL", type=int, help="trial number")
    parser.add_argument(
        "--output-dir", metavar="DIR", help="where the trial writes (default: "
        "<study_dir>/reproduce/NNNN under the storage home)"
    )
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import reproduce

    result = reproduce(args.study, args.trial, storage=args.storage,
                       output_dir=args.output_dir)
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"trial {result.number} of {result.study!r} ({result.state}, seed {result.seed}) "
          f"re-run in {result.output_dir}")
    table = [("", "recorded", "reproduced", "")] + [
        (row.name, _text(row.recorded), _text(row.reproduced), row.status)
        for row in result.rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[3]]).rstrip())
    differing = result.differing
    if differing:
        print(f"DIFFERS: {len(differing)} of {len(result.rows)} rows "
              f"({', '.join(row.name for row in differing)})")
        return 1
    print("all recorded values reproduced exactly")
    return 0


def _text(value: Any) -> str:
    """Exact text of a value (repr of floats: every digit that matters)."""
    return "-" if value is None else repr(value) if isinstance(value, float) else str(value)
