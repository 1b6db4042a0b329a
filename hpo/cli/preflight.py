"""``hpo preflight NAME``: check that a study can start, without starting it."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli._common import add_spec_options, spec_options


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "preflight",
        help="check that a study can run: imports, data, storage, tracking, disk, GPU",
        description="Run every check `hpo study` would need to pass (imports for real, "
        "data files parsed), write nothing, and list all problems at once (exit 2). "
        "Takes the same options as `hpo study`.",
    )
    add_spec_options(parser)
    parser.add_argument(
        "--fast", action="store_true", help="only the quick checks made at every study start"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import preflight

    report = preflight(args.study, full=not args.fast, **spec_options(args))
    for line in report.lines():
        print(line, flush=True)
    report.raise_for_problems()
    print(f"preflight: all {len(report.outcomes)} checks passed")
    return 0
