"""Shared fixtures: every test runs in its own directory with its own ./storage."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR / "support"))


def pytest_configure(config: pytest.Config) -> None:
    """Started as a background job of a non-interactive shell (`.ci/run &`), pytest
    inherits SIGINT ignored, and so would every hpo it starts: Python then installs no
    KeyboardInterrupt handler and the Ctrl+C tests hang. Restore what a terminal gives; an
    ignored signal stays ignored across exec, a handled one is reset to its default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


RunHpo = Callable[..., subprocess.CompletedProcess[str]]
NewDatabase = Callable[[], str]


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


LOW_DISK_WARNING = re.compile(r"^preflight: warning: disk: .*\n", re.MULTILINE)
"""What every study prints on a machine low on disk: the machine's state, not the behaviour
under test (tests/test_preflight.py tests the check), so ``run_hpo`` leaves it out of the
stderr that tests compare."""


@pytest.fixture
def run_hpo(workdir: Path) -> RunHpo:
    """Run the real ``hpo`` command line in ``workdir``."""

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "hpo", *args],
            cwd=workdir,
            env=hpo_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        done.stderr = LOW_DISK_WARNING.sub("", done.stderr)
        return done

    return run


# -- PostgreSQL (tests/test_postgres.py, tests/test_crashes.py) ---------------------------
@pytest.fixture(scope="module")
def postgres() -> str:
    """The server URL from the environment (a database on it to connect to first)."""
    url = os.environ.get("HPO_TEST_POSTGRES")
    if not url:
        reason = "HPO_TEST_POSTGRES is not set (e.g. postgresql://hpo:pw@127.0.0.1/postgres)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run must start PostgreSQL and set it")
        pytest.skip(reason)
    assert make_url(url).password, "HPO_TEST_POSTGRES needs a password (redaction is tested)"
    return url


def database_factory(postgres: str) -> Iterator[NewDatabase]:
    import psycopg

    admin = make_url(postgres).set(drivername="postgresql")
    created: list[str] = []

    def new() -> str:
        name = f"hpo_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return admin.set(database=name).render_as_string(hide_password=False)

    yield new
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
        for name in created:
            # After a server restart a superuser's process (autovacuum) may be connected
            # to the database for a moment; this role cannot end it, so wait for it.
            for attempt in range(20):
                try:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except psycopg.errors.InsufficientPrivilege:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)


@pytest.fixture
def new_database(postgres: str) -> Iterator[NewDatabase]:
    """Creates fresh databases for this test; drops them after it."""
    yield from database_factory(postgres)
