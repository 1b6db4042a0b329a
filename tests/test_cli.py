"""The command line's own behaviour (each command is tested with what it does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import hpo_env


@pytest.mark.parametrize("unbuffered", [True, False])
def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path, unbuffered: bool) -> None:
    """``hpo ls | head``: the reader closes the pipe before hpo writes; no traceback."""
    (tmp_path / "storage").mkdir()
    optuna.create_study(study_name="listed", storage=f"sqlite:///{tmp_path}/storage/optuna.db")
    env = hpo_env()
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen([sys.executable, "-m", "hpo", "ls"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()  # before hpo has started (it takes a second to import)
    _, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr.decode()) == (141, "")
