"""One ledger per backend (API URL and a fingerprint of the key, never the key), kept private on disk.

The same sandbox reached as 127.0.0.1 and as localhost is two backends to the server: what one spends does
not count in the other's window, the spend logs do not mix, and a review session does not resume across."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import LEGACY_LEDGER, Ledger, SpendRecord, key_fingerprint
from mcp import Client
from pg_cluster import ledger_of
from support import FAST_RETRY, SANDBOX_KEY, SandboxAdmin, call, connect

pytestmark = pytest.mark.anyio


def _other_name(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_url": settings.api_url.replace("127.0.0.1", "localhost")})


def _calls(sandbox: SandboxAdmin, n: int) -> list[int]:
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 200})
    return [r["id"] for r in rows["results"]][:n]


async def test_backends_keep_separate_windows_logs_and_sessions(ledger_settings: Settings,
                                                                sandbox: SandboxAdmin) -> None:
    settings = ledger_settings
    assert "127.0.0.1" in settings.api_url
    other = _other_name(settings)
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    ids = _calls(sandbox, 120)
    async with connect(settings) as client:
        await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[:60]})
        first = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
        log_a = await call(client, "spend_log", {})
    async with connect(other) as client:
        # 60 more would pass 100 in one shared window; this backend's window is its own.
        ran = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[60:120]})
        second = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
        log_b = await call(client, "spend_log", {})
    assert ran["confirmation"] == "none"
    assert log_a["window_calls"] == 60 and log_b["window_calls"] == 60
    assert [e["calls"] for e in log_b["entries"]] == [60] and [e["calls"] for e in log_a["entries"]] == [60]
    assert log_a["backend"] != log_b["backend"] and key_fingerprint(SANDBOX_KEY) in log_a["backend"]
    assert SANDBOX_KEY not in log_a["backend"]
    assert ledger_of(settings).location != ledger_of(other).location
    assert ledger_of(other).session(second["session_id"]).metric_id == metric
    assert [s["session_id"] for s in (first, second)] == [1, 1], "each backend began its own session"
    assert len(ledger_of(settings).audit_entries()) == 1


async def test_data_dir_and_ledger_files_are_private(settings: Settings, sandbox: SandboxAdmin) -> None:
    previous = os.umask(0o022)  # a usual umask: what we create must not depend on it
    try:
        async with connect(settings) as client:
            await call(client, "rerun_evaluation", {"agent_id": sandbox.info()["main_agent_id"],
                                                    "call_ids": _calls(sandbox, 3)})
    finally:
        os.umask(previous)
    data = Path(settings.data_dir)
    found = [data, *data.rglob("*")]
    assert any(p.name.endswith("-wal") for p in found) or any(p.suffix == ".sqlite3" for p in found)
    for path in found:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


async def test_an_existing_open_ledger_is_tightened(settings: Settings) -> None:
    ledger = Ledger(settings.ledger_path)
    ledger.close()
    os.chmod(settings.ledger_path, 0o644)
    os.chmod(settings.ledger_path.parent, 0o755)
    Ledger(settings.ledger_path).close()
    assert stat.S_IMODE(settings.ledger_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.ledger_path.parent.stat().st_mode) == 0o700


async def test_the_single_ledger_of_earlier_versions_is_taken_over_once(settings: Settings,
                                                                         sandbox: SandboxAdmin) -> None:
    legacy = Path(settings.data_dir) / LEGACY_LEDGER
    old = Ledger(legacy)
    old.record_spend(SpendRecord(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=range(7),
                                 metric_ids=[1], credits_estimated=1.4, decision="allowed", confirmation="none",
                                 outcome="succeeded"))
    old.close()
    async with connect(settings) as client:
        log = await call(client, "spend_log", {})
    assert [e["calls"] for e in log["entries"]] == [7]
    assert not legacy.exists() and list(legacy.parent.glob(f"{LEGACY_LEDGER}.moved-to-*"))
    async with connect(_other_name(settings)) as client:
        assert (await call(client, "spend_log", {}))["entries"] == []


async def test_the_embedded_sandbox_leaves_no_ledger_behind(settings: Settings) -> None:
    keyless = settings.model_copy(update={"api_key": None})
    async with Client(build_server(keyless, retry=FAST_RETRY)) as client:
        log = await call(client, "spend_log", {})
        assert log["entries"] == [] and "127.0.0.1" in log["backend"]
    assert list((Path(settings.data_dir) / "ledgers").glob("*.sqlite3*")) == []

