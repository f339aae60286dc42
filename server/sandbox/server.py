"""Running the sandbox: in a background thread (`SandboxServer`) or in the foreground (`serve_forever`)."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from datetime import datetime
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from .app import build_app
from .dialect import DOCUMENTED, Dialect, default_dialect
from .middleware import DROP_KEY

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
_DROP = "drop-connection"


class _DropAware:
    """uvicorn closes the connection without an answer when the app returns a value instead of None;
    that is how the `drop` fault leaves the client with no response at all."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        await self.app(scope, receive, send)
        if scope.get(DROP_KEY):
            return _DROP
        return None


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "should return None" not in record.getMessage()


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    # log_config=None: uvicorn must not install handlers on stdout, which is the MCP stdio transport.
    return uvicorn.Config(_DropAware(app), host=host, port=port, log_config=None, access_log=False,
                          log_level="warning", http="h11", ws="none", lifespan="off", timeout_graceful_shutdown=1)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted sockets; without it every answer
    # (headers and body are written separately) waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class SandboxServer:
    """The sandbox on a free loopback port, served from a background thread.

    >>> with SandboxServer(seed=7) as sandbox:
    ...     httpx.get(sandbox.url + "/_sandbox/info")
    """

    def __init__(self, seed: int = 7, api_key: str | None = None, host: str = LOOPBACK, port: int = 0,
                 progress_polls: int = 3, now: datetime | None = None, dialect: Dialect | None = None,
                 org_api_key: str | None = None, evaluation_reads: int = 2, judge_polls: int = 1,
                 v2: bool = True) -> None:
        """`dialect=None`: `CEKURA_LABS_SANDBOX_DIALECT`, else `dialect.EMBEDDED_DEFAULT`."""
        self.seed = seed
        self.host = host
        self.dialect: Dialect = dialect or default_dialect()
        self.app = build_app(seed=seed, api_key=api_key, progress_polls=progress_polls, now=now,
                             dialect=self.dialect, org_api_key=org_api_key, evaluation_reads=evaluation_reads,
                             judge_polls=judge_polls, v2=v2)
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return _url(self.host, self._port)

    def start(self) -> SandboxServer:
        """Bind, serve, and return once the socket accepts connections."""
        if self._thread is not None:
            return self
        self._socket = _bind(self.host, self._port)
        self._port = int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(_config(self.app, self.host, self._port))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"cekura-sandbox-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Cekura sandbox failed to start")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.app.state.store.faults.let_go()  # a held request would keep the shutdown waiting for it
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def serve_forever(host: str = LOOPBACK, port: int = 8000, seed: int = 7, api_key: str | None = None,
                  dialect: Dialect = DOCUMENTED, org_api_key: str | None = None) -> None:
    """Serve the sandbox in the foreground until interrupted (the `cekura-labs-mcp sandbox` command)."""
    app = build_app(seed=seed, api_key=api_key, dialect=dialect, org_api_key=org_api_key)
    sock = _bind(host, port)
    bound = int(sock.getsockname()[1])
    auth = "only the configured API key" if api_key else "any non-empty API key"
    org = " (and the organisation key)" if org_api_key else (" (keys starting with 'org-' are organisation-level)"
                                                             if api_key is None else "")
    print(f"Cekura sandbox (seed {seed}, {dialect} dialect) listening on {_url(host, bound)} — accepts {auth}{org}",
          file=sys.stderr, flush=True)
    uvicorn.Server(_config(app, host, bound)).run(sockets=[sock])
