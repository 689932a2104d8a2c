"""Run a sandbox with uvicorn in a background thread: ``with serve() as url: ...``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ConfigurationError
from ._sandbox import MISSING_EXTRA, Sandbox

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["serve"]

log = logging.getLogger("batchkit.sandbox")

STARTUP_TIMEOUT = 10.0


@contextlib.contextmanager
def serve(
    sandbox: Sandbox | None = None, *, host: str = "127.0.0.1", port: int = 0, **config_overrides: Any
) -> Iterator[str]:
    """Serve ``sandbox`` (or a new one built from ``config_overrides``) on ``host:port``; yield its base URL.

    ``port=0`` picks a free port. The server runs in a daemon thread, installs no signal handlers and
    prints nothing; on exit it stops accepting, finishes or cancels in-flight requests (at most a second)
    and returns.

    >>> with serve(pending_seconds=0) as url:  # doctest: +SKIP
    ...     url
    'http://127.0.0.1:54321'
    """
    if sandbox is None:
        sandbox = Sandbox(**config_overrides)
    elif config_overrides:
        msg = "pass either a Sandbox or config overrides to serve(), not both (use sandbox.configure(...))"
        raise TypeError(msg)
    try:
        from ._app import build_app
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ConfigurationError(MISSING_EXTRA) from exc
    if importlib.util.find_spec("uvicorn") is None:
        raise ConfigurationError(MISSING_EXTRA)
    app = build_app(sandbox)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    server = _make_server(app, host)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"batchkit-sandbox-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.stop()
            thread.join(timeout=2)
            sock.close()
            msg = f"the sandbox did not start on {host}:{bound_port}"
            raise RuntimeError(msg)
        time.sleep(0.002)
    url = f"http://{_url_host(host)}:{bound_port}"
    sandbox.url = url
    log.info("sandbox: serving on %s", url)
    try:
        yield url
    finally:
        server.stop()
        thread.join(timeout=5)
        sock.close()
        sandbox.url = None
        log.info("sandbox: stopped %s", url)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when it sees it, and
    # without TCP_NODELAY every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


class _StoppableServer(Protocol):
    started: bool

    def run(self, sockets: list[socket.socket] | None = None) -> None: ...

    def stop(self) -> None: ...


def _make_server(app: ASGIApp, host: str) -> _StoppableServer:
    """A uvicorn server that stops at once when told from another thread (no 0.1 s polling on exit)."""
    import uvicorn

    class _Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self._loop: asyncio.AbstractEventLoop | None = None
            self._wake: asyncio.Event | None = None

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            counter = 0
            while not await self.on_tick(counter):
                counter = (counter + 1) % 864_000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.1)

        def stop(self) -> None:
            self.should_exit = True
            loop, wake = self._loop, self._wake
            if loop is not None and wake is not None:
                with contextlib.suppress(RuntimeError):  # the loop may already be closed
                    loop.call_soon_threadsafe(wake.set)

    config = uvicorn.Config(
        app,
        host=host,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http="h11",
        ws="none",
        loop="asyncio",
        interface="asgi3",
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    return _Server(config)
