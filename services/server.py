"""Run the app under uvicorn until SIGINT or SIGTERM (``qcat serve``, ``qcat demo``)."""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from qcat.errors import ConfigError
from services.app import create_app
from services.service import Service
from services.settings import ServiceSettings

#: Seconds running responses get to finish after a stop signal before they are cut.
GRACEFUL_SHUTDOWN_S = 5
#: uvicorn's HTTP/1.1 implementation. httptools hands a response body to the socket as
#: it is; h11 joins it into new bytes first, a copy of every block of a large image
#: answer, which are views on the file's mapping (``services/sia/cutout_pixels.py``).
HTTP_PROTOCOL = "httptools"


def server_config(app: Starlette, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: the HTTP implementation qcat serves with."""
    return uvicorn.Config(app, http=HTTP_PROTOCOL, **options)


class _Server(uvicorn.Server):
    """uvicorn's server, announcing its URL once it listens, and returning on a signal.

    uvicorn re-raises a captured SIGINT/SIGTERM after shutting down, which
    would kill the process before the caller stops its workers; here the
    signal just makes :meth:`run` return.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol must be named: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on connections whose socket says IPPROTO_TCP, and accepted connections
    # inherit it from this socket. Without it, every response on a kept-alive
    # connection waits ~40 ms for the client's delayed ACK of its headers.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(
    service: Service,
    sock: socket.socket,
    *,
    on_ready: Callable[[], None],
    log_level: str = "info",
) -> None:
    """Serve ``service`` on ``sock`` until SIGINT/SIGTERM; ``on_ready`` once it accepts requests."""
    config = server_config(
        create_app(service),
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    _Server(config, on_ready).run(sockets=[sock])


def serve_data_dir(
    data_dir: Path,
    *,
    host: str,
    port: int,
    workers: int,
    worker_memory_limit: str,
    announce: Callable[[str], None],
    settings: ServiceSettings | None = None,
) -> None:
    """``qcat serve``: start the workers and the service, serve until a stop signal, stop all.

    ``announce`` gets the TAP URL once the server accepts requests.
    """
    try:
        sock = bind(host, port)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    with sock:
        url = base_url(sock) + "/tap"
        with Service.start(
            data_dir, workers=workers, worker_memory_limit=worker_memory_limit, settings=settings
        ) as service:
            # What start-up made (modules, the catalog, the warmed-up plans) lives as long
            # as the process: the collector need not walk it again and again while serving.
            gc.collect()
            gc.freeze()
            try:
                run_server(service, sock, on_ready=lambda: announce(url))
            finally:
                gc.unfreeze()  # or the interpreter's last collection never frees them
