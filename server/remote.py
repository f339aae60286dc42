"""Streamable HTTP for remote use: loopback by default, Host/Origin checks against DNS rebinding,
and a bearer token required whenever the server is bound beyond loopback.

State is kept per bearer token: `CEKURA_LABS_HTTP_TOKEN` may list several tokens (comma-separated), one per
client. The gate names each request's client by a fingerprint of its token (never the token), and the ledger
keeps confirmation tokens, review sessions, regression checks and the spend log's entries per client: one
client never sees or redeems another's. An MCP session (handshake-era protocol) belongs to the token that
opened it; another token presenting its id is refused. The cost guard's window stays shared: it is the
account's money."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import sys
from collections.abc import Sequence
from typing import Any

from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import acting_for
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    hosts = [f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")]
    origins = [f"http://{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")]
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        hosts.append(f"{host}:{port}")
        origins.append(f"http://{host}:{port}")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


def bearer_tokens(settings: Settings) -> list[str]:
    """The configured bearer tokens: one per client, comma-separated in CEKURA_LABS_HTTP_TOKEN."""
    raw = settings.http_bearer_token.get_secret_value() if settings.http_bearer_token else ""
    return [token.strip() for token in raw.split(",") if token.strip()]


def principal_of(token: str) -> str:
    """Names a client by its token without holding the token."""
    return "bearer:" + hashlib.sha256(token.encode()).hexdigest()[:12]


class BearerGate:
    """Refuses every request that does not carry `Authorization: Bearer <one of the tokens>`, names the
    client (a fingerprint of its token) in the request's state, and keeps each MCP session to the token that
    opened it."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self._app = app
        self._tokens = [(token.encode(), principal_of(token)) for token in tokens]
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
            await send({"type": "http.response.body",
                        "body": b'{"error": "missing or wrong bearer token (CEKURA_LABS_HTTP_TOKEN)"}'})
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
        presented = value[7:].strip()
        found = None
        for token, principal in self._tokens:  # compare with every token, so timing tells nothing
            if hmac.compare_digest(presented, token):
                found = principal
        return found


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


class ClientState:
    """`ServerMiddleware`: every request reads and writes the ledger as the client the bearer gate named
    (locally, over stdio, there is one client and no name)."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        request = ctx.request
        scope = getattr(request, "scope", None)
        state = scope.get("state") if isinstance(scope, dict) else None
        principal = state.get(PRINCIPAL) if isinstance(state, dict) else None
        if not isinstance(principal, str):
            return await call_next(ctx)
        with acting_for(principal):
            return await call_next(ctx)


def http_app(server: MCPServer[Any], settings: Settings, host: str, port: int) -> ASGIApp:
    app: ASGIApp = server.streamable_http_app(transport_security=transport_security(host, port), host=host)
    tokens = bearer_tokens(settings)
    if tokens:
        app = BearerGate(app, tokens)
    return app


def run_http(server: MCPServer[Any], settings: Settings, *, host: str, port: int) -> int:
    if not is_loopback(host) and not bearer_tokens(settings):
        print("cekura-labs-mcp: refusing to listen on a non-loopback address without a bearer token; "
              "set CEKURA_LABS_HTTP_TOKEN (clients then send 'Authorization: Bearer <token>').", file=sys.stderr)
        return 2
    import uvicorn

    print(f"cekura-labs-mcp: streamable HTTP on http://{host}:{port}/mcp", file=sys.stderr)
    uvicorn.run(http_app(server, settings, host, port), host=host, port=port, log_level="warning")
    return 0
