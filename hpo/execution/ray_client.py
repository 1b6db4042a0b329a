"""Drive a study from outside a Ray cluster through Ray Client (``ray://HOST:PORT``).

Ray Client forwards each Ray call to the cluster. Ray Tune, connected that way, ships its
control loop to the head node, and hpo's searcher with it; but the searcher holds the
study's storage, its lock, its heartbeats and the MLflow run, which do not travel. So hpo
runs the whole driver (storage, tracking, searcher and Ray Tune) as one task on the node
that serves the Ray Client connection, and streams its output back here.

The driver there uses the study's storage and tracking URIs and the study file's paths as
they are: point them at servers the cluster reaches (PostgreSQL, an MLflow server) or at a
file system the head node shares, and use absolute paths.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from hpo.errors import RunError

T = TypeVar("T")

_POLL_S = 0.5
"""How often the driver on the cluster sends its output and checks for the user's Ctrl+C,
and the client prints what it sent."""
_CONNECT_ATTEMPTS = 3
_CONNECT_BACKOFF_S = 2.0

def is_client_address(address: str | None) -> bool:
    return bool(address) and str(address).startswith("ray://")


def use_token_if_available() -> None:
    """Authenticate as ``ray start`` does: with the cluster token when one exists here.

    ``ray start`` turns token authentication on whenever a token exists on its machine
    (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``), but a driver or a Ray Client joining the
    cluster only sends it when ``RAY_AUTH_MODE=token`` (without it, ``ray.init`` on the
    very machine of a ``ray start --head`` fails with "Failed to connect to Ray
    cluster"); a cluster without authentication ignores the token.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    setup_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = setup_log.level
    setup_log.setLevel(logging.ERROR)  # its advice is for cluster operators, not this user
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_log.setLevel(level)


class _Mailbox:
    """Between the client and the driver on the cluster: the user's Ctrl+C one way (a Ray
    worker does not see signals sent to it: Ray handles SIGINT itself), the driver's output
    the other. Ray Client does not promise to forward what a task prints
    (ray-project/ray#19106), so hpo carries the driver's output itself."""

    def __init__(self) -> None:
        self.interrupts = 0
        self.output: list[tuple[bool, str]] = []  # (for stderr, text), in order

    def interrupt(self) -> None:
        self.interrupts += 1

    def exchange(self, output: list[tuple[bool, str]]) -> int:
        """The driver's side: post its new output, learn how many Ctrl+C there were."""
        self.output += output
        return self.interrupts

    def take_output(self) -> list[tuple[bool, str]]:
        output, self.output = self.output, []
        return output


class _ToClient(io.TextIOBase):
    """The driver's ``sys.stdout`` or ``sys.stderr`` on the cluster: what it writes waits
    in ``pending`` (shared by both streams, to keep their order) for the next exchange.
    No lock: a signal handler may print in the middle of a write (a deque's appends and
    pops are atomic)."""

    def __init__(self, pending: deque[tuple[bool, str]], stderr: bool) -> None:
        self._pending, self._stderr = pending, stderr

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending.append((self._stderr, text))
        return len(text)


@contextlib.contextmanager
def _every_poll(action: Callable[[], object], name: str) -> Iterator[None]:
    """``action()`` on a thread of its own every ``_POLL_S`` while the block runs, and once
    more after it (with what the last interval left)."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(_POLL_S):
            action()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        action()


class _Link:
    """The driver's end of the :class:`_Mailbox`: each :meth:`exchange` sends the driver's
    output and turns each new Ctrl+C into one on the driver's main thread, as a local
    driver gets it (first: graceful stop; second: abort), until the driver is ``over``."""

    def __init__(self, mailbox: Any) -> None:
        self._mailbox, self._seen, self.over = mailbox, 0, False
        self._pending: deque[tuple[bool, str]] = deque()
        self.stdout = _ToClient(self._pending, stderr=False)
        self.stderr = _ToClient(self._pending, stderr=True)

    def exchange(self) -> None:
        output = [self._pending.popleft() for _ in range(len(self._pending))]
        count = ray.get(self._mailbox.exchange.remote(output))
        if count > self._seen and not self.over:
            self._seen = count
            _thread.interrupt_main()


def _in_directory(cwd: str, mailbox: Any, driver: Callable[..., T],
                  args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """On the cluster: run ``driver`` from the client's directory when the node has it (so
    relative paths mean the same on a shared file system), its output sent to the client
    (the last of it before the client learns the driver is done), interruptible by it."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    link = _Link(mailbox)
    with _every_poll(link.exchange, "hpo-client-link"), \
            contextlib.redirect_stdout(link.stdout), contextlib.redirect_stderr(link.stderr):
        try:
            return driver(*args, **kwargs)
        finally:
            link.over = True


def _write(output: Sequence[tuple[bool, str]]) -> None:
    """The driver's output, here, each part on the stream it was written to."""
    for stderr, text in output:
        (sys.stderr if stderr else sys.stdout).write(text)
    if output:
        sys.stdout.flush()
        sys.stderr.flush()


_STOPPED = object()
"""What :func:`_result` returns when the driver stopped on an interrupt."""


def _result(ref: Any) -> Any:
    """The driver's return value, ``_STOPPED``, or its exception raised here as it was."""
    try:
        return ray.get(ref)
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, KeyboardInterrupt | TaskCancelledError):
            return _STOPPED
        raise (cause if isinstance(cause, Exception) else exc) from None


def _wait_interruptibly(ref: Any, mailbox: Any) -> Any:
    """The driver's result (:func:`_result`), passing the user's Ctrl+C on to it (first:
    graceful stop; second: abort; third: the task is killed)."""
    ctrl_c = 0
    while True:
        try:
            return _result(ref)
        except KeyboardInterrupt:  # the user's, here
            ctrl_c += 1
            if ctrl_c == 3:
                ray.cancel(ref, force=True)
                raise
            print("hpo: passing Ctrl+C on to the driver on the cluster", file=sys.stderr,
                  flush=True)
            ray.get(mailbox.interrupt.remote())


def _connect(address: str, runtime_env: dict[str, Any]) -> None:
    """Open the Ray Client session, retrying a session the cluster failed to start.

    For each client the head starts a server process of its own on a port from a small
    range; when that start fails (a port taken meanwhile, a slow start on a loaded head)
    the connection is refused with "Initialization failure from server", and a new
    attempt gets a new server.
    """
    use_token_if_available()
    for attempt in range(1, _CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address, runtime_env=runtime_env, log_to_driver=True,
                     logging_level=logging.ERROR)
            return
        except ConnectionAbortedError as exc:  # the server side of the session failed
            lines = [line for line in str(exc).splitlines() if line.strip()]
            problem = lines[0] + (f" ({lines[-1].strip()})" if len(lines) > 1 else "")
            if attempt == _CONNECT_ATTEMPTS:
                raise RunError(f"cannot reach the Ray cluster at {address}: {problem}; "
                               f"gave up after {attempt} attempts") from None
            print(f"hpo: the Ray cluster at {address} failed to start a client session "
                  f"({problem}); retrying", file=sys.stderr, flush=True)
            time.sleep(_CONNECT_BACKOFF_S * attempt)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RunError(f"cannot reach the Ray cluster at {address}: "
                           f"{str(exc).splitlines()[0]}") from None


def run_on_cluster(
    address: str, runtime_env: dict[str, Any], driver: Callable[..., T], /, *args: Any,
    **kwargs: Any,
) -> T:
    """Run ``driver(*args, **kwargs)`` on the node serving ``address`` and return its result.

    Its output streams here; its exceptions are raised here as they are. Ctrl+C is passed
    on to it (first: graceful stop; second: abort; third: the task is killed).
    """
    from ray.air.util.node import _force_on_current_node

    _connect(address, runtime_env)
    try:
        # num_cpus=0: the driver only waits on trials; on the node Ray Client serves from
        # (the head), as Ray Tune itself places its loop under Ray Client.
        on_head = cast(dict[str, Any], _force_on_current_node())
        mailbox: Any = ray.remote(_Mailbox).options(num_cpus=0, **on_head).remote()
        task: Any = ray.remote(_in_directory).options(
            num_cpus=0, max_retries=0, name="hpo driver", **on_head
        )
        ref = task.remote(os.getcwd(), mailbox, driver, args, kwargs)
        # The output is written by a thread of its own: the main thread only waits for the
        # driver, where the user's Ctrl+C lands as it always did (never inside those calls).
        with _every_poll(lambda: _write(ray.get(mailbox.take_output.remote())),
                         "hpo-driver-output"):  # fmt: skip
            result = _wait_interruptibly(ref, mailbox)
        if result is _STOPPED:
            raise KeyboardInterrupt
        return cast(T, result)
    finally:
        ray.shutdown()
