"""``hpo study NAME``: run or resume a study."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from hpo.cli._common import add_location_options
from hpo.spec import parse_assignment


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "study",
        help="run (or resume) a study",
        description="Run a study until it has --trials finished "
        "trials in total; running it again resumes.",
    )
    parser.add_argument(
        "study",
        metavar="NAME",
        help="search_spaces/NAME.yaml here, a bundled study, or a file path",
    )
    parser.add_argument("--trials", type=int, help="total finished trials to reach")
    parser.add_argument("--sampler", help="auto, tpe, gp, nsga2 or random")
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
    parser.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--no-progress", action="store_true", help="no live display")
    parser.add_argument(
        "--no-report", action="store_true", help="no report when the study finishes"
    )
    add_location_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hpo.api import run as run_study

    summary = run_study(
        args.study,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        address=args.address,
        show_progress=not args.no_progress,
        study_name=args.study_name,
        overrides=[parse_assignment(a) for a in args.assignments],
        trials=args.trials,
        sampler=args.sampler,
        seed=args.seed,
        concurrency=args.concurrency,
        cpus=args.cpus,
        gpus=args.gpus,
        constraints=args.constraints,
        scheduler=args.scheduler,
        backend=args.backend,
        health_after=args.health_after,
        stop_when_unhealthy=args.stop_when_unhealthy,
        report=False if args.no_report else None,
        command=shlex.join(["hpo", *args.argv]),
    )
    print(f"done: {summary.line(summary.finished)}")
    return 0
