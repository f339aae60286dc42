"""Streamable HTTP for remote use: loopback by default, Host/Origin checks against DNS rebinding,
and a bearer token required whenever the server is bound beyond loopback.

Each bearer token is a reviewer: `CEKURA_LABS_REVIEWERS_FILE` names them (name → SHA-256 of the token, see
`reviewers`); plain shared tokens in `CEKURA_LABS_HTTP_TOKEN` still work, named by a fingerprint. The gate names
each request's reviewer (never the token), and the ledger keeps confirmation tokens, review sessions and regression
checks per reviewer, and records who in the audit log (`spend_log` shows all of it, each entry naming who) and
reviews. An MCP session (stateful, handshake-era transport) belongs to the reviewer that opened it. With
`stateless` (and `--workers N`) no session is kept at all: every request carries its token, and any process on the
same ledger answers it. The cost guard's window stays shared: it is the account's money."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cekura_labs_mcp.server.gc_pause import collector_paused
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    # The MCP SDK and the ledger are imported where they are used: the parent of `serve --workers` only starts
    # uvicorn's worker processes (each imports them itself) and should not pay for them at start-up. The settings,
    # logging and reviewers too: uvicorn imports this module in each worker before it calls `worker_app`, which
    # imports them with the collector paused.
    from cekura_labs_mcp.server.config import Settings
    from cekura_labs_mcp.server.reviewers import ReviewerDirectory
    from mcp.server import MCPServer
    from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
    from mcp.server.request_state import RequestStateSecurity
    from mcp.server.transport_security import TransportSecuritySettings

PRINCIPAL = "cekura_labs_principal"
SESSION_HEADER = b"mcp-session-id"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_security(host: str, port: int) -> TransportSecuritySettings:
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = [f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")]
    origins = [f"http://{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")]
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        hosts.append(f"{host}:{port}")
        origins.append(f"http://{host}:{port}")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


def bearer_tokens(settings: Settings) -> list[str]:
    """Shared bearer tokens (comma-separated in CEKURA_LABS_HTTP_TOKEN), each named by a fingerprint."""
    raw = settings.http_bearer_token.get_secret_value() if settings.http_bearer_token else ""
    return [token.strip() for token in raw.split(",") if token.strip()]


def principal_of(token: str) -> str:
    """Names a client by its token without holding the token."""
    return "bearer:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def reviewer_directory(settings: Settings) -> ReviewerDirectory:
    """The reviewers file (each token a named reviewer) and any shared tokens."""
    from cekura_labs_mcp.server.logs import register_secret
    from cekura_labs_mcp.server.reviewers import ReviewerDirectory

    for token in bearer_tokens(settings):
        register_secret(token)
    return ReviewerDirectory(settings.reviewers_file, bearer_tokens(settings))


REFUSED = (b'{"error": "unauthorized: missing or unknown bearer token. Send \'Authorization: Bearer <your reviewer '
           b'token>\'; an administrator issues one with `cekura-labs-mcp reviewer add NAME` '
           b'(CEKURA_LABS_REVIEWERS_FILE)."}')


class BearerGate:
    """Refuses every request that does not carry `Authorization: Bearer <a reviewer's token>` (401, saying how to get
    one, never echoing what was sent), names the reviewer in the request's state, and keeps each MCP session (the
    stateful, handshake-era transport) to the reviewer that opened it."""

    def __init__(self, app: ASGIApp, directory: ReviewerDirectory) -> None:
        self._app = app
        self._directory = directory
        self._sessions: dict[bytes, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        principal = self._principal(scope)
        session = _header(scope, SESSION_HEADER)
        if principal is None or (session is not None and self._sessions.get(session, principal) != principal):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"www-authenticate", b'Bearer realm="cekura-labs-mcp"')]})
            await send({"type": "http.response.body", "body": REFUSED})
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal

        async def remember_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened = next((v for k, v in message.get("headers", []) if k.lower() == SESSION_HEADER), None)
                if opened is not None:
                    self._sessions.setdefault(bytes(opened), principal)
            await send(message)

        await self._app(scope, receive, remember_session)

    def _principal(self, scope: Scope) -> str | None:
        value = _header(scope, b"authorization")
        if value is None or value[:7].lower() != b"bearer ":
            return None
        presented = value[7:].strip().decode("latin-1")
        return self._directory.reviewer_of(presented) if presented else None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


class ClientState:
    """`ServerMiddleware`: every request reads and writes the ledger as the client the bearer gate named
    (locally, over stdio, there is one client and no name)."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        from cekura_labs_mcp.server.ledger import acting_for

        request = ctx.request
        scope = getattr(request, "scope", None)
        state = scope.get("state") if isinstance(scope, dict) else None
        principal = state.get(PRINCIPAL) if isinstance(state, dict) else None
        if not isinstance(principal, str):
            return await call_next(ctx)
        with acting_for(principal):
            return await call_next(ctx)


def reviewer_principal(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The reviewer the bearer gate named for this request (None over stdio, or without reviewers): what the
    SDK's sealed request state (a 2026-07-28 client's answer to a question, such as the person's yes to a spend)
    is bound to, so one reviewer's sealed answer never counts in another's request."""
    scope = getattr(ctx.request, "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    principal = state.get(PRINCIPAL) if isinstance(state, dict) else None
    return principal if isinstance(principal, str) else None


def request_state_security(settings: Settings) -> RequestStateSecurity:
    """How the SDK seals the request state a 2026-07-28 client carries between the rounds of one tool call (the
    spend question and the person's answer). Its default key is made per process, so a retry that a load balancer
    (or `--workers`) sends to another process is refused and the person's yes is lost. Every process of a
    deployment shares the Cekura key, so the sealing key is derived from it (whoever holds the Cekura key can spend
    on Cekura directly anyway: the derived key grants nothing more). Without a key the process runs its own
    sandbox, and a key of its own is right."""
    from mcp.server.request_state import RequestStateSecurity

    api_key = settings.api_key.get_secret_value() if settings.api_key else ""
    secret = (hashlib.sha256(b"cekura-labs-mcp request state\n" + api_key.encode()).hexdigest().encode()
              if api_key else secrets.token_bytes(32))
    return RequestStateSecurity(keys=[secret], bind_principal=reviewer_principal)


def http_app(server: MCPServer[Any], settings: Settings, host: str, port: int, *, stateless: bool = False) -> ASGIApp:
    """`stateless`: no MCP session is kept between requests (handshake-era clients too), so any process behind a
    load balancer can answer any request; everything a next request needs is in the ledger."""
    app: ASGIApp = server.streamable_http_app(transport_security=transport_security(host, port), host=host,
                                              stateless_http=stateless)
    directory = reviewer_directory(settings)
    if directory.configured:
        app = BearerGate(app, directory)
    return app


@dataclass(frozen=True)
class HttpOptions:
    host: str
    port: int
    workers: int = 1
    sandbox: bool = False
    read_only: bool = False


WORKER_OPTIONS = "CEKURA_LABS_HTTP_WORKER_OPTIONS"


def run_http(server: MCPServer[Any], settings: Settings, *, host: str, port: int, stateless: bool = False) -> int:
    """One process serving streamable HTTP."""
    if not _may_listen(settings, host):
        return 2
    import uvicorn

    print(f"cekura-labs-mcp: streamable HTTP on http://{host}:{port}/mcp"
          f"{' (stateless)' if stateless else ''}", file=sys.stderr)
    uvicorn.run(http_app(server, settings, host, port, stateless=stateless), host=host, port=port,
                log_level="warning")
    return 0


def prepare_http_workers(settings: Settings, options: HttpOptions) -> Callable[[], int]:
    """`serve --transport http --workers N`: N processes on one port, stateless (any of them answers any request),
    sharing the ledger (the data dir's SQLite file, or CEKURA_LABS_DATABASE_URL). Without a Cekura key one sandbox is
    started here and every worker talks to it, so they all see one Cekura. Returns the run (uvicorn's supervisor):
    what is started here is started while the caller starts (server/gc_pause.py)."""
    if not _may_listen(settings, options.host):
        return lambda: 2
    import uvicorn

    if settings.api_key is None or options.sandbox:
        from cekura_labs_mcp.server.sandbox import SandboxServer

        key = "sandbox-" + secrets.token_hex(8)
        sandbox = SandboxServer(seed=settings.sandbox_seed, api_key=key, dialect=settings.sandbox_dialect)
        sandbox.start()
        os.environ["CEKURA_API_URL"], os.environ["CEKURA_API_KEY"] = sandbox.url, key
        print(f"cekura-labs-mcp: no CEKURA_API_KEY (or --sandbox): the workers share one demo sandbox at "
              f"{sandbox.url}", file=sys.stderr)
    os.environ[WORKER_OPTIONS] = json.dumps({"host": options.host, "port": options.port,
                                             "read_only": options.read_only})

    def run() -> int:
        print(f"cekura-labs-mcp: streamable HTTP on http://{options.host}:{options.port}/mcp, {options.workers} "
              "stateless worker processes", file=sys.stderr)
        uvicorn.run("cekura_labs_mcp.server.remote:worker_app", factory=True, workers=options.workers,
                    host=options.host, port=options.port, log_level="warning")
        return 0

    return run


def worker_app() -> ASGIApp:
    """One worker of `prepare_http_workers` (uvicorn imports and calls this in each process): built with the
    collector paused, as `serve` builds its server (server/gc_pause.py)."""
    with collector_paused():
        from cekura_labs_mcp.server.app import build_server
        from cekura_labs_mcp.server.config import Settings
        from cekura_labs_mcp.server.logs import configure_logging, register_secret

        settings = Settings()
        configure_logging(settings.log_format, settings.log_level)
        register_secret(settings.api_key.get_secret_value() if settings.api_key else None)
        options = json.loads(os.environ.get(WORKER_OPTIONS, "{}"))
        host, port = str(options.get("host", "127.0.0.1")), int(options.get("port", 8765))
        server = build_server(settings, read_only=bool(options.get("read_only", False)))
        return http_app(server, settings, host, port, stateless=True)


def _may_listen(settings: Settings, host: str) -> bool:
    if not is_loopback(host) and not reviewer_directory(settings).configured:
        print("cekura-labs-mcp: refusing to listen on a non-loopback address without reviewers; set "
              "CEKURA_LABS_REVIEWERS_FILE (`cekura-labs-mcp reviewer add NAME` issues a token) or "
              "CEKURA_LABS_HTTP_TOKEN (clients then send 'Authorization: Bearer <token>').", file=sys.stderr)
        return False
    return True
