"""The two kinds of failure hpo distinguishes, each with its own exit code."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad input from the user: a study file, a flag, a storage URL.

    Raised before anything is written anywhere. The CLI prints the message as one
    line and exits with code 2. Messages name the file, the field and the value.
    """

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RunError(Exception):
    """A failure while a study runs (storage gone, Ray failed to start, ...). Exit code 1."""

    exit_code = 1
