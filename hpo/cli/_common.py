"""Options every command shares."""

from __future__ import annotations

import argparse


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (env HPO_STORAGE; default: SQLite file under "
        "$HPO_HOME, ./storage)",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default: SQLite "
        "file next to the Optuna storage)",
    )
