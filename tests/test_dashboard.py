"""``hpo dashboard``: the real optuna-dashboard on a finished study, in real headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_browser import (
    CHROMIUM,
    Dashboard,
    artifacts_dir,
    browser_page,
    open_pareto_front,
    running_dashboard,
    screenshot_pareto_front,
)

import hpo
from hpo.cli import build_parser
from tests.conftest import TESTS_DIR, hpo_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished curves study (seed 0): feasible, infeasible and pruned trials."""
    workdir = tmp_path_factory.mktemp("dashboard")
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "study", "curves", "--trials", "12",
         "--backend", "local", "--set", "steps=4"],
        cwd=workdir, env=hpo_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return workdir


@pytest.fixture(scope="module")
def dashboard(study_dir: Path) -> Iterator[Dashboard]:
    with running_dashboard("curves", "--port", "0", cwd=study_dir, env=hpo_env()) as board:
        yield board


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(response.status)


def test_binds_loopback_only_and_prints_the_study_page(dashboard: Dashboard) -> None:
    assert dashboard.url.startswith("http://127.0.0.1:")
    assert dashboard.url.endswith("/dashboard/studies/1")
    assert _get(dashboard.url) == 200
    port = int(dashboard.url.split(":")[2].split("/")[0])
    # Another loopback address of this machine: refused unless bound to all interfaces.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port)):
        pass


def test_pareto_front_in_the_browser(dashboard: Dashboard, study_dir: Path) -> None:
    if not CHROMIUM.exists():
        reason = "no /usr/bin/chromium (Debian package chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    status = hpo.status("curves", storage=f"sqlite:///{study_dir / 'storage' / 'optuna.db'}")
    infeasible = status.complete - status.feasible
    assert status.pruned and infeasible and len(status.front), "study lacks a kind of trial"

    with browser_page() as page:
        drawn = open_pareto_front(page, dashboard.url)
        shot = screenshot_pareto_front(page, artifacts_dir(TESTS_DIR.parent) / "dashboard.png")

    # Every COMPLETE trial is drawn once, infeasible ones apart; PRUNED/FAILED are not drawn.
    assert drawn == {
        "front": len(status.front),
        "feasible_dominated": status.feasible - len(status.front),
        "infeasible": infeasible,
        "not_drawn": 0,
    }
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 5000


def test_port_in_use_is_one_line_exit_1(dashboard: Dashboard, study_dir: Path) -> None:
    port = dashboard.url.split(":")[2].split("/")[0]
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "dashboard", "curves", "--port", port],
        cwd=study_dir, env=hpo_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"hpo: failed: port {port} on 127.0.0.1 is already in use; pick another with --port"
    )


def test_unknown_study_exit_2(study_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "dashboard", "nope", "--port", "0"],
        cwd=study_dir, env=hpo_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("hpo: error: no study 'nope' in sqlite:///")
    assert len(done.stderr.strip().splitlines()) == 1


def test_defaults_are_loopback_and_port_8080() -> None:
    args = build_parser().parse_args(["dashboard", "curves"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)


# Last: it stops the module's shared dashboard.
def test_ctrl_c_stops_cleanly(dashboard: Dashboard) -> None:
    assert dashboard.stop() == 0
    assert "Traceback" not in dashboard.stderr
    assert dashboard.stderr.strip().endswith("hpo: dashboard stopped")
