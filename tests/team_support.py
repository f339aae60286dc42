"""Team deployment in the tests: reviewers from a reviewers file, and one stateless streamable-HTTP server (what
each of a team's processes is) in a thread, with an MCP client per reviewer token."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.cekura.client import tls_context
from cekura_labs_mcp.server.cli import main
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.remote import http_app
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support import FAST_RETRY


def add(path: Path, name: str, *extra: str) -> str:
    """`cekura-labs-mcp reviewer add NAME`: the token is the only thing on stdout."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["reviewer", "add", name, "--file", str(path), *extra])
    assert code == 0, err.getvalue()
    return out.getvalue().strip()


@dataclass
class Team:
    url: str
    tokens: dict[str, str]
    seen: list[str]
    settings: Settings

    def client(self, name: str, mode: str = "legacy", **kwargs: Any) -> Client:
        async def keep(response: httpx2.Response) -> None:
            body = (await response.aread()).decode("utf-8", "replace")
            self.seen.append(f"{response.status_code} {dict(response.headers)} {body}")

        # The process's one TLS context: without `verify`, each client loads the CA bundle again (~0.06 s of CPU).
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.tokens.get(name, name)}"}, timeout=60,
                                  event_hooks={"response": [keep]}, verify=tls_context())
        return Client(streamable_http_client(self.url, http_client=http), mode=mode, **kwargs)


@contextmanager
def team_server(settings: Settings, scratch: Path, names: tuple[str, ...] = ("ana", "ben"),
                tokens: dict[str, str] | None = None) -> Iterator[Team]:
    """`tokens`: the reviewers another `team_server` on the same scratch folder made (a second process)."""
    path = scratch / "reviewers.json"
    tokens = tokens or {name: add(path, name) for name in names}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    configured = settings.model_copy(update={"reviewers_file": path})
    app = http_app(build_server(configured, retry=FAST_RETRY), configured, "127.0.0.1", port, stateless=True)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a bound against a hang, never a timing
    while not server.started:
        assert time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.01)
    try:
        yield Team(f"http://127.0.0.1:{port}/mcp", tokens, [], configured)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
