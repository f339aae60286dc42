"""Streamable HTTP for remote use: loopback by default, Host/Origin checks against DNS rebinding,
and a bearer token required whenever the server is bound beyond loopback."""

from __future__ import annotations

import hmac
import ipaddress
import sys
from typing import Any

from cekura_labs_mcp.server.config import Settings
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send


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


class BearerGate:
    """Refuses every request that does not carry `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"www-authenticate", b'Bearer realm="cekura-labs-mcp"')]})
            await send({"type": "http.response.body",
                        "body": b'{"error": "missing or wrong bearer token (CEKURA_LABS_HTTP_TOKEN)"}'})
            return
        await self._app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:].strip(), self._token)
        return False


def http_app(server: MCPServer[Any], settings: Settings, host: str, port: int) -> ASGIApp:
    app: ASGIApp = server.streamable_http_app(transport_security=transport_security(host, port), host=host)
    token = settings.http_bearer_token.get_secret_value() if settings.http_bearer_token else None
    if token:
        app = BearerGate(app, token)
    return app


def run_http(server: MCPServer[Any], settings: Settings, *, host: str, port: int) -> int:
    if not is_loopback(host) and settings.http_bearer_token is None:
        print("cekura-labs-mcp: refusing to listen on a non-loopback address without a bearer token; "
              "set CEKURA_LABS_HTTP_TOKEN (clients then send 'Authorization: Bearer <token>').", file=sys.stderr)
        return 2
    import uvicorn

    print(f"cekura-labs-mcp: streamable HTTP on http://{host}:{port}/mcp", file=sys.stderr)
    uvicorn.run(http_app(server, settings, host, port), host=host, port=port, log_level="warning")
    return 0
