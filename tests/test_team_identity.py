"""Team deployment, identity: each bearer token is a named reviewer from the reviewers file (digests only), the
audit log and reviews record who, a wrong token gets a clear 401, and no token reaches a log, a result or an
error. Served stateless, as several processes would serve it."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
import uvicorn
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.cli import main
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.remote import http_app
from cekura_labs_mcp.server.reviewers import ReviewerDirectory, digest_of, read_reviewers
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support import FAST_RETRY, LOG_SINK, SANDBOX_KEY, TOOL_OUTPUTS, SandboxAdmin, ToolFailed, call

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def add(path: Path, name: str, *extra: str) -> str:
    """`cekura-labs-mcp reviewer add NAME`: the token is the only thing on stdout."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["reviewer", "add", name, "--file", str(path), *extra])
    assert code == 0, err.getvalue()
    return out.getvalue().strip()


def test_reviewer_add_prints_the_token_once_and_stores_only_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "team" / "reviewers.json"
    ana, ben = add(path, "ana"), add(path, "ben")
    stored = path.read_text()
    assert ana != ben and ana not in stored and ben not in stored
    assert read_reviewers(path) == {"ana": digest_of(ana), "ben": digest_of(ben)}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    said = io.StringIO()
    with redirect_stderr(said):
        assert main(["reviewer", "add", "ana", "--file", str(path)]) == 2
    assert "already exists" in said.getvalue() and "--replace" in said.getvalue()
    renewed = add(path, "ana", "--replace")
    directory = ReviewerDirectory(path)
    assert directory.reviewer_of(renewed) == "ana" and directory.reviewer_of(ana) is None
    assert directory.reviewer_of(ben) == "ben"
    with redirect_stderr(io.StringIO()):
        assert main(["reviewer", "remove", "ben", "--file", str(path)]) == 0
    assert directory.reviewer_of(ben) is None, "the file is read again when it changes"


def test_a_malformed_reviewers_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "reviewers.json"
    path.write_text(json.dumps({"reviewers": {"ana": "not-a-digest"}}))
    with pytest.raises(LabsError, match="gives reviewer 'ana' no SHA-256 hex digest"):
        ReviewerDirectory(path)
    path.write_text("{")
    with pytest.raises(LabsError, match="cannot be read"):
        ReviewerDirectory(path)


@dataclass
class Team:
    url: str
    tokens: dict[str, str]
    seen: list[str]
    ledger_path: Path

    def client(self, token: str) -> Client:
        async def keep(response: httpx2.Response) -> None:
            body = (await response.aread()).decode("utf-8", "replace")
            self.seen.append(f"{response.status_code} {dict(response.headers)} {body}")

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                  event_hooks={"response": [keep]})
        return Client(streamable_http_client(self.url, http_client=http), mode="legacy")


@pytest.fixture
def team(settings: Settings, tmp_path: Path) -> Iterator[Team]:
    path = tmp_path / "reviewers.json"
    tokens = {name: add(path, name) for name in ("ana", "ben")}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    configured = settings.model_copy(update={"reviewers_file": path})
    app = http_app(build_server(configured, retry=FAST_RETRY), configured, "127.0.0.1", port, stateless=True)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.01)
    try:
        yield Team(f"http://127.0.0.1:{port}/mcp", tokens, [], configured.ledger_path)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_a_wrong_token_gets_a_clear_401_that_echoes_nothing(team: Team) -> None:
    wrong = "clr_wrong-token-0b8f2c9e7a"
    for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Basic {team.tokens['ana']}"}):
        refused = httpx.post(team.url, json=INIT, headers={**ACCEPT, **headers}, timeout=10)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "reviewer add" in refused.json()["error"]
        assert wrong not in refused.text and team.tokens["ana"] not in refused.text
    right = httpx.post(team.url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {team.tokens['ana']}"},
                       timeout=10)
    assert right.status_code == 200 and "mcp-session-id" not in right.headers, "stateless: no session to stick to"


@pytest.mark.anyio
async def test_the_ledger_records_which_reviewer_did_what(team: Team, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    async with team.client(team.tokens["ana"]) as ana, team.client(team.tokens["ben"]) as ben:
        with pytest.raises(ToolFailed, match="confirmation_required"):
            await call(ana, "rerun_evaluation", {"agent_id": agent, "call_ids": "all"})
        picked = await call(ben, "next_review", {"agent_id": agent, "metric_id": metric})
        call_id = picked["call"]["id"]
        await call(ben, "record_review", {"agent_id": agent, "metric_id": metric, "call_id": call_id, "agree": True})
        assert [e["decision"] for e in (await call(ana, "spend_log", {}))["entries"]] == ["needs_confirmation"]
        assert (await call(ben, "spend_log", {}))["entries"] == []
    db = sqlite3.connect(team.ledger_path)
    try:
        owners = {row[0] for row in db.execute("SELECT owner FROM audit").fetchall()}
        voters = db.execute("SELECT s.owner, r.call_id, r.vote_state FROM reviews r JOIN review_sessions s"
                            " ON s.id = r.session_id").fetchall()
    finally:
        db.close()
    assert owners == {"ana"}
    assert voters == [("ben", call_id, "sent")]
    everything = team.seen + TOOL_OUTPUTS + [LOG_SINK.getvalue()]
    for token in team.tokens.values():
        assert all(token not in text for text in everything)
    assert all(SANDBOX_KEY not in text for text in everything)
