"""The command line's own behaviour (each command is tested with what it does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import hpo_env


@pytest.mark.parametrize("unbuffered", [True, False])
@pytest.mark.parametrize("command", ["ls", "--help"])
def test_a_reader_that_goes_away_is_not_an_error(
    tmp_path: Path, unbuffered: bool, command: str
) -> None:
    """``hpo ls | head``, ``hpo --help | head``: the reader closes the pipe before hpo
    writes; no traceback (``--help`` exits inside argparse)."""
    (tmp_path / "storage").mkdir()
    optuna.create_study(study_name="listed", storage=f"sqlite:///{tmp_path}/storage/optuna.db")
    env = hpo_env()
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen([sys.executable, "-m", "hpo", command], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()  # before hpo has started (it takes a second to import)
    _, stderr = process.communicate(timeout=120)
    # argparse ignores a failed write of its help (unbuffered: nothing left to flush)
    code = 0 if command == "--help" and unbuffered else 141
    assert (process.returncode, stderr.decode()) == (code, "")
