"""optuna-dashboard served on a study's storage (``hpo dashboard``, ``hpo.open_dashboard``).

The dashboard reads the storage directly: its Pareto-front plot draws COMPLETE trials
only, greys the infeasible ones (from the legacy ``constraints`` system attribute that
hpo.trials writes) and leaves PRUNED and FAILED trials out.
"""

from __future__ import annotations

import errno
import socket
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from hpo.errors import ConfigError, RunError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """One line per HTTP request is noise in a terminal; errors still reach stderr."""


def _server_class(host: str) -> type[WSGIServer]:
    from socketserver import ThreadingMixIn

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return Server


class Dashboard:
    """optuna-dashboard bound to ``host:port``; it answers once ``serve_forever`` runs.

    >>> with hpo.open_dashboard("curves", port=8080) as board:   # doctest: +SKIP
    ...     print(board.url)
    ...     board.serve_forever()          # until Ctrl-C, or board.shutdown() elsewhere
    """

    def __init__(self, server: WSGIServer, study_id: int) -> None:
        self._server = server
        self.study_id = study_id

    @classmethod
    def bind(
        cls,
        storage: optuna.storages.BaseStorage,
        study_id: int,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
    ) -> Dashboard:
        """Build the dashboard app on ``storage`` and bind its socket (port 0: any free port)."""
        import optuna_dashboard

        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is not a TCP port (0-65535)", field="--port")
        app = optuna_dashboard.wsgi(storage)
        try:
            server = make_server(
                host, port, app, server_class=_server_class(host), handler_class=_Handler
            )
        except socket.gaierror:
            raise ConfigError(f"unknown host {host!r}", field="--host") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RunError(
                    f"port {port} on {host} is already in use; pick another with --port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    f"{host!r} is not an address of this machine", field="--host"
                ) from None
            raise RunError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        return cls(server, study_id)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The study's page (its Pareto front is on it for multi-objective studies)."""
        return f"{self.root_url}/dashboard/studies/{self.study_id}"

    def serve_forever(self) -> None:
        """Answer requests until ``shutdown()`` is called from another thread (or Ctrl-C)."""
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown()

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
