"""``hpo report NAME``: HTML report and PNG figures, logged to the study's MLflow run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="write a study's HTML report and figures",
        description="Write report.html and PNG figures (Pareto front, hypervolume, "
        "parameters, learning curves, importance) into the study's report/ folder and "
        "log them to its MLflow parent run.",
    )
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder to write to (default: $HPO_HOME/studies/NAME/report)")
    parser.add_argument("--no-log", action="store_true", help="do not log to MLflow")
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import report

    result = report(args.study, out=args.out, storage=args.storage,
                    tracking_uri=args.tracking_uri, log=not args.no_log)
    for plot in result.plots:
        print(f"{plot.name}: {plot.path or plot.note}")
    logged = (f"; logged to MLflow run {result.mlflow_run_id} under report/"
              if result.mlflow_run_id else "")
    print(f"report: {result.html}{logged}")
    return 0
