"""``hpo`` command line: parsing only; each command lives in its own module."""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from hpo.cli import card, dashboard, ls, pareto, preflight, report, reproduce, status, study
from hpo.errors import ConfigError, RunError
from hpo.settings import redact

COMMANDS = (study, pareto, status, ls, dashboard, report, card, reproduce, preflight)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """Usage errors: one line, exit 2 (argparse prints the whole usage otherwise)."""
        self.exit(2, f"hpo: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hpo",
        description="Multi-objective hyperparameter optimization on Ray Tune, Optuna and MLflow.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        except SystemExit:  # argparse's --help and usage errors: their output too
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # a reader that went away shows here, not as Python exits
        return code
    except BrokenPipeError:
        if not _reader_gone():
            raise
        # ``hpo ls | head``: not an error; what is left to print (Python flushes stdout
        # again as it exits) goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command ended by SIGPIPE


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return False


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"hpo: error: {redact(str(exc))}", file=sys.stderr)
        return ConfigError.exit_code
    except RunError as exc:
        print(f"hpo: failed: {redact(str(exc))}", file=sys.stderr)
        return RunError.exit_code
    except KeyboardInterrupt:
        print(
            "hpo: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
