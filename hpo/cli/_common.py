"""Options every command shares."""

from __future__ import annotations

import argparse
from typing import Any


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


def add_spec_options(parser: argparse.ArgumentParser) -> None:
    """The options that select and define a study (``hpo study``, ``hpo preflight``)."""
    parser.add_argument(
        "study",
        metavar="NAME",
        help="search_spaces/NAME.yaml here, a bundled study, or a file path",
    )
    parser.add_argument("--trials", type=int, help="total finished trials to reach")
    parser.add_argument("--sampler", help="auto, tpe, gp, gp-tpe, nsga2 or random")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--concurrency", type=int, help="trials running at once")
    parser.add_argument("--cpus", type=float, help="CPUs per trial")
    parser.add_argument("--gpus", type=float, help="GPUs per trial (fractions allowed)")
    parser.add_argument(
        "--scheduler", help="early stopping: auto, moasha, asha, median or none"
    )
    parser.add_argument(
        "--backend", help="ray (default) or local (one trial at a time, in this process)"
    )
    parser.add_argument(
        "--health-after",
        type=int,
        metavar="N",
        help="finished trials after which a study with none feasible is unhealthy (20)",
    )
    parser.add_argument(
        "--stop-when-unhealthy",
        action="store_true",
        default=None,
        help="end the study (exit 1) when the health check fails, instead of warning",
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        help="run a trial whose process died (killed, out of memory) again, up to N times (0)",
    )
    parser.add_argument(
        "--constraint",
        action="append",
        dest="constraints",
        metavar="EXPR",
        help="replaces the file's constraints, e.g. 'exact >= 50.5' (repeat)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="assignments",
        metavar="FIELD=VALUE",
        help="override any field of the study file, e.g. "
        "parameters.learning_rate.high=1e-3 (repeat)",
    )
    parser.add_argument(
        "--study-name", help="name of the study and MLflow experiment (default: the file's name)"
    )
    parser.add_argument(
        "--address",
        help="run trials on an existing Ray cluster: auto or HEAD:6379 "
        "(default: RAY_ADDRESS, else start a local Ray)",
    )
    add_location_options(parser)


def spec_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``hpo.api.run`` / ``hpo.api.preflight`` from the options above."""
    from hpo.spec import parse_assignment

    return {
        "storage": args.storage,
        "tracking_uri": args.tracking_uri,
        "address": args.address,
        "study_name": args.study_name,
        "overrides": [parse_assignment(a) for a in args.assignments],
        "trials": args.trials,
        "sampler": args.sampler,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "cpus": args.cpus,
        "gpus": args.gpus,
        "constraints": args.constraints,
        "scheduler": args.scheduler,
        "backend": args.backend,
        "health_after": args.health_after,
        "stop_when_unhealthy": args.stop_when_unhealthy,
        "max_retries": args.max_retries,
    }
