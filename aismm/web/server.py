"""The HTTP face's server: uvicorn in a thread of the resident process.

uvicorn runs the app on its own event loop in a daemon thread, so the serve loop (hook socket,
outbox, timers, watcher) never waits on a client; git's work runs in ``git http-backend``
processes and the API's in uvicorn's thread pool. :meth:`HttpServer.stop` stops accepting,
lets running requests finish (pushes included, even those whose client went away) and returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import uvicorn

from aismm.core.errors import UsageError
from aismm.infra.hub import Hub
from aismm.web.app import build

__all__ = ["DEFAULT", "HttpServer", "parse_address"]

DEFAULT = "127.0.0.1:8470"
GRACE = 60  # seconds a stopping server waits for running requests


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair, or a UsageError."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--http {text}: not HOST:PORT; give one like {DEFAULT} (port 0 picks "
                         "a free one)")
    return host, int(port)


class HttpServer:
    """The app of one hub served on ``host:port`` until :meth:`stop`."""

    def __init__(self, hub: Hub, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise UsageError(f"--http {host}:{port}: cannot listen ({exc.strerror or exc}); "
                             "pick another port") from exc
        self.sock.listen(2048)
        self.app, self.backend = build(hub)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="off", ws="none", timeout_graceful_shutdown=GRACE,
                                timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="aismm-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        await self.server.serve(sockets=[self.sock])
        # pushes whose client went away: let them finish before the loop closes
        if self.backend.running:
            await asyncio.wait(set(self.backend.running), timeout=GRACE)

    def stop(self) -> None:
        """Stop accepting; wait for running requests and pushes; return."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(GRACE * 2 + 5)
        self.sock.close()
