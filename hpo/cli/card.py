"""``hpo card NAME``: the study's experiment card (Markdown)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "card",
        help="write a study's experiment card",
        description="Write the study's experiment card (Markdown); regenerating it keeps "
        "the text of its Conclusions section.",
    )
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument("--hypothesis", metavar="TEXT",
                        help="the study's hypothesis (recorded with the study; default: the "
                        "study file's `hypothesis`)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="where to write (default: $HPO_HOME/studies/NAME/CARD.md)")
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import card

    path = card(args.study, hypothesis=args.hypothesis, out=args.out, storage=args.storage,
                tracking_uri=args.tracking_uri)
    print(f"card: {path}")
    return 0
