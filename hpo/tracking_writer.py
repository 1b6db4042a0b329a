"""One thread that writes to MLflow, in order, off the driver's control loop.

Ray Tune calls the searcher (and so the tracker) between one trial's end and the next
one's start: an MLflow request made there is time the workers wait. The tracker queues
its writes here instead; one thread runs them in the order they were queued. A tracking
database or server that is briefly away is retried with the policy of the study storage
(:func:`hpo.storage_retry.retrying`); a write that still fails is a one-line warning and
the study goes on: tracking never stops a study. :meth:`TrackingWriter.flush` waits until
every queued write is done (before the parent run is ended, and at the end of a study).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from hpo.errors import RunError
from hpo.settings import redact
from hpo.storage_retry import is_transient, retrying

T = TypeVar("T")
_Job = tuple[Callable[[], Any], str, "Future[Any]"]

# MLflow logs a traceback for every database error it then raises: hpo reports those
# itself (retrying, then one line).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def mlflow_transient(exc: BaseException) -> bool:
    """A lost or refused connection to MLflow's database or server."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    if is_transient(exc) or isinstance(exc.__cause__, RequestsConnectionError):
        return True
    return isinstance(exc, MlflowException) and exc.error_code == "TEMPORARILY_UNAVAILABLE"


class TrackingWriter:
    """A queue of MLflow writes and the thread that runs them (``where`` names MLflow in
    messages, redacted)."""

    def __init__(self, where: str) -> None:
        self.where = redact(where)
        self.failures = 0
        self._away = False  # a write gave up on the connection: try the next ones once
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hpo-mlflow", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], T], what: str) -> Future[T | None]:
        """Queue ``write``; its future holds what it returned, or None if it failed."""
        future: Future[T | None] = Future()
        if not self._thread.is_alive():  # closed: write now
            future.set_result(self._call(write, what))
            return future
        self._queue.put((write, what, future))
        return future

    def flush(self) -> None:
        """Wait until every write queued so far is done."""
        if self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        """Flush, then stop the thread (later writes run in the caller's thread)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                write, what, future = job
                future.set_result(self._call(write, what))
            finally:
                self._queue.task_done()

    def _call(self, write: Callable[[], T], what: str) -> T | None:
        try:
            result = write() if self._away else retrying(
                write, f"MLflow at {self.where}", transient=mlflow_transient, label="tracking")
        except Exception as exc:  # a tracking failure never stops the study
            self._away = isinstance(exc, RunError) or mlflow_transient(exc)
            self.failures += 1
            problem = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            print(f"warning: MLflow: could not {what} ({type(exc).__name__}: {problem})",
                  file=sys.stderr, flush=True)  # fmt: skip
            return None
        self._away = False
        return result
