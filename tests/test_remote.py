"""Remote mode (streamable HTTP): no bearer token, no answer; the Host and Origin checks hold; each client
has its own MCP session (handshake-era protocol) or none at all (2026 protocol), a spend question reaches only
the client that asked, and neither the Cekura API key nor the bearer token shows in any answer."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.cekura.client import tls_context
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.remote import http_app, principal_of, run_http
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import SecretStr
from support import FAST_RETRY, HTTP, SANDBOX_KEY, TOOL_OUTPUTS, SandboxAdmin, ToolFailed, call

TOKEN = "remote-bearer-9d1c7a55e0"
OTHER = "remote-bearer-other-31b8e6f0c4"  # a second client's own token: state is kept per token
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Remote:
    url: str
    port: int
    seen: list[str]  # every response (status, headers, body) a client received, for the secret checks

    def client(self, token: str = TOKEN, **kwargs: Any) -> Client:
        async def keep(response: httpx2.Response) -> None:
            # An event stream is read by the transport as it comes (an elicitation waits inside it): only
            # its head here; the tool results it carries are checked through `call` (support.TOOL_OUTPUTS).
            streaming = response.headers.get("content-type", "").startswith("text/event-stream")
            body = "" if streaming else (await response.aread()).decode("utf-8", "replace")
            self.seen.append(f"{response.status_code} {dict(response.headers)} {body}")

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                  event_hooks={"response": [keep]}, verify=tls_context())  # CA bundle loaded once
        return Client(streamable_http_client(self.url, http_client=http), **kwargs)


@pytest.fixture
def remote(settings: Settings) -> Iterator[Remote]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    secured = settings.model_copy(update={"http_bearer_token": SecretStr(f"{TOKEN}, {OTHER}")})
    app = http_app(build_server(secured, retry=FAST_RETRY), secured, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a bound against a hang: two test workers on a loaded machine start slowly
    while not server.started:
        assert time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.01)
    try:
        yield Remote(f"http://127.0.0.1:{port}/mcp", port, [])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _post(remote: Remote, headers: dict[str, str]) -> httpx.Response:
    response = HTTP.post(remote.url, json=INIT, headers={**ACCEPT, **headers}, timeout=10)
    remote.seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    return response


def test_requests_without_the_bearer_token_are_refused(remote: Remote) -> None:
    host = {"Host": f"127.0.0.1:{remote.port}"}
    missing = _post(remote, host)
    wrong = _post(remote, {**host, "Authorization": "Bearer not-the-token"})
    basic = _post(remote, {**host, "Authorization": f"Basic {TOKEN}"})
    right = _post(remote, {**host, "Authorization": f"Bearer {TOKEN}"})
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "mcp-session-id" not in refused.headers
    assert right.status_code == 200 and right.headers.get("mcp-session-id")
    assert all(TOKEN not in seen and SANDBOX_KEY not in seen for seen in remote.seen)


def test_host_and_origin_checks_hold_even_with_the_token(remote: Remote) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert _post(remote, {**auth, "Host": "evil.example"}).status_code == 421
    assert _post(remote, {**auth, "Host": f"attacker.example:{remote.port}"}).status_code == 421
    assert _post(remote, {**auth, "Origin": "http://evil.example"}).status_code == 403
    assert _post(remote, {**auth, "Origin": f"http://localhost:{remote.port}"}).status_code == 200
    # Without the token, nothing is said about hosts or origins either.
    assert _post(remote, {"Host": "evil.example"}).status_code == 401


def test_a_session_id_alone_opens_nothing(remote: Remote) -> None:
    opened = _post(remote, {"Authorization": f"Bearer {TOKEN}"})
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    stolen = HTTP.post(remote.url, json=listing, headers={**ACCEPT, "mcp-session-id": session,
                                                           "mcp-protocol-version": "2025-06-18"}, timeout=10)
    assert stolen.status_code == 401
    made_up = HTTP.post(remote.url, json=listing, timeout=10,
                         headers={**ACCEPT, "Authorization": f"Bearer {TOKEN}", "mcp-session-id": "0" * 32,
                                  "mcp-protocol-version": "2025-06-18"})
    assert made_up.status_code in (400, 404) and TOKEN not in made_up.text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_clients_have_separate_sessions_and_see_no_secret(remote: Remote, sandbox: SandboxAdmin,
                                                               mode: str) -> None:
    agent = sandbox.info()["main_agent_id"]
    asked: dict[str, list[str]] = {"a": [], "b": []}

    def asker(name: str) -> Any:
        async def answer(_context: Any, params: ElicitRequestParams) -> ElicitResult:
            asked[name].append(params.message)
            return ElicitResult(action="decline")
        return answer

    async with remote.client(elicitation_callback=asker("a"), mode=mode) as a, \
            remote.client(elicitation_callback=asker("b"), mode=mode) as b:
        page = await call(a, "list_calls", {"agent_id": agent, "page_size": 2})
        assert len(page["calls"]) == 2
        # A's spend question goes to A's person only, and A's "no" decides nothing for B.
        with pytest.raises(ToolFailed, match="declined"):
            await call(a, "rerun_evaluation", {"agent_id": agent, "call_ids": "all"})
        assert len(asked["a"]) == 1 and asked["b"] == []
        with pytest.raises(ToolFailed, match="declined"):
            await call(b, "rerun_evaluation", {"agent_id": agent, "call_ids": "all"})
        assert len(asked["a"]) == 1 and len(asked["b"]) == 1
    sessions = {line.split("'mcp-session-id': '")[1][:32] for line in remote.seen if "'mcp-session-id': '" in line}
    if mode == "legacy":
        assert len(sessions) == 2, "each client got its own MCP session"
    else:
        assert sessions == set(), "the 2026 protocol keeps no session on the server: nothing to share"
    assert sandbox.requests("POST", "rerun_evaluation") == []
    assert all(TOKEN not in seen and SANDBOX_KEY not in seen for seen in remote.seen + TOOL_OUTPUTS)


def _confirmation_token(error: str) -> str:
    return error.split('confirmation_token="')[1].split('"')[0]


@pytest.mark.anyio
async def test_one_client_never_redeems_or_sees_anothers_state(remote: Remote, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 200})
    spend = {"agent_id": agent, "call_ids": [r["id"] for r in rows["results"]][:130]}
    async with remote.client(TOKEN) as a, remote.client(OTHER) as b:
        with pytest.raises(ToolFailed, match="confirmation_required") as asked:
            await call(a, "rerun_evaluation", spend)
        token = _confirmation_token(str(asked.value))
        # B replays A's token on the very same plan: unknown to B, and it does not burn A's token.
        with pytest.raises(ToolFailed, match="unknown or was already used"):
            await call(b, "rerun_evaluation", {**spend, "confirmation_token": token})
        assert sandbox.credits() == 0
        session_a = await call(a, "start_review", {"agent_id": agent, "metric_id": metric})
        session_b = await call(b, "start_review", {"agent_id": agent, "metric_id": metric})
        assert session_a["session_id"] != session_b["session_id"]
        log_b = await call(b, "spend_log", {})
        # The spend log is the organisation's: each client sees everyone's entries, each naming who asked.
        who_a, who_b = principal_of(TOKEN), principal_of(OTHER)
        assert [(e["decision"], e["by"]) for e in log_b["entries"]] == [("refused", who_b),
                                                                        ("needs_confirmation", who_a)]
        ran = await call(a, "rerun_evaluation", {**spend, "confirmation_token": token})
        assert ran["confirmation"] == "token" and sandbox.landed_credits() > 0
        log_a = await call(a, "spend_log", {})
        assert [(e["decision"], e["by"]) for e in log_a["entries"]] == [
            ("allowed", who_a), ("refused", who_b), ("needs_confirmation", who_a)]
        # The window is the account's, shared: B now sees A's 130 calls counted.
        assert log_b["window_calls"] == 0 and (await call(b, "spend_log", {}))["window_calls"] == 130
    assert all(OTHER not in seen for seen in remote.seen + TOOL_OUTPUTS)


def test_an_mcp_session_belongs_to_the_token_that_opened_it(remote: Remote) -> None:
    opened = _post(remote, {"Authorization": f"Bearer {TOKEN}"})
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    headers = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
    other = HTTP.post(remote.url, json=listing, headers={**headers, "Authorization": f"Bearer {OTHER}"}, timeout=10)
    assert other.status_code == 401


def test_listening_beyond_loopback_needs_a_token(settings: Settings) -> None:
    server = build_server(settings)
    said = io.StringIO()
    with redirect_stderr(said):
        code = run_http(server, settings, host="0.0.0.0", port=1)
    assert code == 2 and "CEKURA_LABS_HTTP_TOKEN" in said.getvalue()
