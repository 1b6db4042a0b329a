"""The study lock (hpo.locking) excludes other holders, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from hpo.locking import study_lock
from hpo.settings import Settings


def _storages(tmp_path: Path) -> list[tuple[str, bool]]:
    """Storage URLs, and whether other studies' locks are independent there."""
    urls = [(f"sqlite:///{tmp_path / 'optuna.db'}", False)]  # SQLite: one lock per file
    if os.environ.get("HPO_TEST_POSTGRES"):
        urls.append((os.environ["HPO_TEST_POSTGRES"], True))
    return urls


def _events_while_holding(settings: Settings) -> list[str]:
    """Hold study a's lock while threads take study a's and study b's."""
    events: list[str] = []

    def take(name: str) -> None:
        with study_lock(settings, name):
            events.append(f"took {name}")

    threads = [threading.Thread(target=take, args=(name,)) for name in ("a", "b")]
    with study_lock(settings, "a"):
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        events.append("released a")
    for thread in threads:
        thread.join(timeout=30)
    return events


def test_study_lock_is_exclusive(tmp_path: Path) -> None:
    for url, per_study in _storages(tmp_path):
        settings = Settings(home=tmp_path, storage_url=url, tracking_uri="unused")
        events = _events_while_holding(settings)
        assert events.index("released a") < events.index("took a"), url
        assert (events.index("took b") < events.index("released a")) == per_study, url


def test_unreachable_postgres_is_a_one_line_redacted_error(tmp_path: Path) -> None:
    from hpo.errors import RunError

    url = "postgresql://hpo:s3cret-pw@127.0.0.1:1/none"
    settings = Settings(home=tmp_path, storage_url=url, tracking_uri="unused")
    with pytest.raises(RunError) as error, study_lock(settings, "a"):
        pass
    assert "s3cret-pw" not in str(error.value) and "hpo:***@" in str(error.value)
