"""``hpo study NAME``: run or resume a study."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from hpo.cli._common import add_spec_options, spec_options
from hpo.errors import RunError


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "study",
        help="run (or resume) a study",
        description="Run a study until it has --trials finished "
        "trials in total; running it again resumes.",
    )
    add_spec_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no live display")
    parser.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the checks made before the study starts (see `hpo preflight`)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="no report when the study finishes"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import run as run_study

    summary = run_study(
        args.study,
        show_progress=not args.no_progress,
        preflight=not args.no_preflight,
        **spec_options(args),
        report=False if args.no_report else None,
        command=shlex.join(["hpo", *args.argv]),
    )
    print(f"done: {summary.line(summary.finished)}")
    if summary.finished and not summary.complete and summary.failed:
        # Every trial ran (a failing trial never stops the study), but nothing came of it.
        raise RunError(
            f"no trial completed: {summary.failed} of the {summary.finished} finished trials "
            "failed (each trial's reason: its fail_reason attribute, the report, MLflow)"
        )
    return 0
