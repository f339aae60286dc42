"""Team deployment, identity: each bearer token is a named reviewer from the reviewers file (digests only), the
audit log and reviews record who, a wrong token gets a clear 401, and no token reaches a log, a result or an
error. Served stateless, as several processes would serve it."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from cekura_labs_mcp.server.cli import main
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.reviewers import ReviewerDirectory, digest_of, read_reviewers
from support import HTTP, LOG_SINK, SANDBOX_KEY, TOOL_OUTPUTS, SandboxAdmin, ToolFailed, call
from team_support import Team, add, team_server

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


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


@pytest.fixture
def team(settings: Settings, tmp_path: Path) -> Iterator[Team]:
    with team_server(settings, tmp_path) as running:
        yield running


def test_a_wrong_token_gets_a_clear_401_that_echoes_nothing(team: Team) -> None:
    wrong = "clr_wrong-token-0b8f2c9e7a"
    for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Basic {team.tokens['ana']}"}):
        refused = HTTP.post(team.url, json=INIT, headers={**ACCEPT, **headers}, timeout=10)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "reviewer add" in refused.json()["error"]
        assert wrong not in refused.text and team.tokens["ana"] not in refused.text
    right = HTTP.post(team.url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {team.tokens['ana']}"},
                       timeout=10)
    assert right.status_code == 200 and "mcp-session-id" not in right.headers, "stateless: no session to stick to"


@pytest.mark.anyio
async def test_the_ledger_records_which_reviewer_did_what(team: Team, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    async with team.client("ana") as ana, team.client("ben") as ben:
        with pytest.raises(ToolFailed, match="confirmation_required"):
            await call(ana, "rerun_evaluation", {"agent_id": agent, "call_ids": "all"})
        picked = await call(ben, "next_review", {"agent_id": agent, "metric_id": metric})
        call_id = picked["call"]["id"]
        await call(ben, "record_review", {"agent_id": agent, "metric_id": metric, "call_id": call_id, "agree": True})
        # The spend log is the organisation's: Ben sees Ana's spend, under her name.
        for reviewer in (ana, ben):
            logged = (await call(reviewer, "spend_log", {}))["entries"]
            assert [(e["decision"], e["by"]) for e in logged] == [("needs_confirmation", "ana")]
    db = sqlite3.connect(team.settings.ledger_path)
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


@pytest.mark.anyio
async def test_a_toolset_loaded_through_one_process_is_listed_by_another(team: Team, tmp_path: Path) -> None:
    with team_server(team.settings, tmp_path, tokens=team.tokens) as other:
        async with team.client("ana") as first, other.client("ana") as second, other.client("ben") as third:
            await call(first, "load_toolset", {"name": "spend"})
            assert "rerun_evaluation" in {t.name for t in (await second.list_tools()).tools}
            assert "rerun_evaluation" not in {t.name for t in (await third.list_tools()).tools}, "Ana's, not Ben's"
