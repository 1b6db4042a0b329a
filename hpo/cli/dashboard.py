"""``hpo dashboard NAME``: optuna-dashboard on the study's storage, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any

from hpo.cli._common import add_location_options


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dashboard", help="browse a study in optuna-dashboard (Pareto front, trials)"
    )
    parser.add_argument("study", metavar="NAME", help="study name")
    parser.add_argument(
        "--port", type=int, default=8080, help="TCP port (default: 8080; 0: any free port)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    add_location_options(parser)
    parser.set_defaults(handler=run)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from hpo.api import open_dashboard
    from hpo.settings import Settings, redact

    with open_dashboard(args.study, storage=args.storage, host=args.host, port=args.port) as board:
        print(board.url, flush=True)
        print(
            f"hpo: optuna-dashboard for study {args.study!r} on "
            f"{redact(Settings.resolve(args.storage).storage_url)}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGTERM, _stop)
        try:
            board.serve_forever()
        except KeyboardInterrupt:
            print("hpo: dashboard stopped", file=sys.stderr)
    return 0
