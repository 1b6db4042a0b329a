"""Shared fixtures: every test runs in its own directory with its own ./storage."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR / "support"))

RunHpo = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory; hpo's defaults put storage/ inside it."""
    for var in ("HPO_HOME", "HPO_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def hpo_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HPO_HOME", "HPO_STORAGE", "MLFLOW_TRACKING_URI")
    }
    # Test-only objectives (tests/support) must be importable by the driver and Ray workers.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS_DIR / "support"), env.get("PYTHONPATH")])
    )
    return env


@pytest.fixture
def run_hpo(workdir: Path) -> RunHpo:
    """Run the real ``hpo`` command line in ``workdir``."""

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hpo", *args],
            cwd=workdir,
            env=hpo_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
