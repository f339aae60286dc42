"""Auto-improve starts are in the spend log, and a second start for the same metric and Lab set while one runs
answers the running one (the sandbox's request log counts what was really started)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.guard import AutoImproveClaim, AutoImproveRuns, GuardRefusal
from cekura_labs_mcp.server.ledger import Ledger, PostgresLedger
from support import SandboxAdmin, ToolFailed, call, connect

pytestmark = pytest.mark.anyio


def _starts(sandbox: SandboxAdmin) -> list[dict[str, object]]:
    return sandbox.requests("POST", "process_feedbacks/")


async def test_a_second_start_returns_the_running_one(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")["id"]
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 2})
    async with connect(settings) as client:
        for row in rows["results"]:
            await call(client, "create_test_set_from_call", {"call_log_id": row["id"], "metrics": [{
                "metric": metric, "expected_value": True,
                "feedback": "At 00:12 the agent asked one question at a time; this should pass."}]})
        first = await call(client, "process_feedbacks", {"metric_id": metric})
        again = await call(client, "process_feedbacks", {"metric_id": metric})
        assert len(_starts(sandbox)) == 1
        assert again["progress_id"] == first["progress_id"] and again["already_running"] is True
        assert first["already_running"] is False and "nothing new was started" in again["next_step"]
        log = await call(client, "spend_log", {})
        [entry] = [e for e in log["entries"] if e["operation"] == "process_feedbacks"]
        assert entry["outcome"] == "running" and entry["detail"] == first["progress_id"]
        done = await call(client, "poll_progress", {"progress_id": first["progress_id"], "metric_id": metric,
                                                    "wait_seconds": 60})
        assert done["done"] is True
        log = await call(client, "spend_log", {})
        assert [e["outcome"] for e in log["entries"] if e["operation"] == "process_feedbacks"] == ["finished"]
        # Finished: the next start is a new run.
        third = await call(client, "process_feedbacks", {"metric_id": metric})
    assert third["progress_id"] != first["progress_id"] and third["already_running"] is False
    assert len(_starts(sandbox)) == 2


async def test_a_start_is_not_repeated_when_the_running_one_cannot_be_checked(
        settings: Settings, sandbox: SandboxAdmin) -> None:
    """A progress read that fails (Cekura's 5xx or a rate limit outlasting the retries) says nothing about the
    run: it must not be taken for a finished one and start a second run beside it."""
    metric = sandbox.metric_named("one question")["id"]
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 2})
    async with connect(settings) as client:
        for row in rows["results"]:
            await call(client, "create_test_set_from_call", {"call_log_id": row["id"], "metrics": [{
                "metric": metric, "expected_value": True,
                "feedback": "At 00:12 the agent asked one question at a time; this should pass."}]})
        first = await call(client, "process_feedbacks", {"metric_id": metric})
        sandbox.fault("/test_framework/metric-reviews/process_feedbacks_progress", "500", count=20)
        with pytest.raises(ToolFailed) as refused:
            await call(client, "process_feedbacks", {"metric_id": metric})
        assert first["progress_id"] in str(refused.value) and "nothing was started" in str(refused.value)
        assert len(_starts(sandbox)) == 1
        httpx.delete(f"{sandbox.url}/_sandbox/faults").raise_for_status()
        again = await call(client, "process_feedbacks", {"metric_id": metric})
    assert again["progress_id"] == first["progress_id"] and again["already_running"] is True
    assert len(_starts(sandbox)) == 1


async def test_two_sessions_starting_at_once_start_one_run(ledger_location: Path | PostgresLedger) -> None:
    """Two services on one ledger (two sessions sharing a data dir, or a team's processes on one database) ask at
    the same moment: one start is sent, the other is told a start is in flight; a start for another Lab set is its
    own run."""
    path = ledger_location
    sent: list[tuple[int, ...]] = []
    gate = anyio.Event()

    async def begin(claim: AutoImproveClaim) -> str:
        sent.append(claim.test_set_ids)
        progress_id = f"p-{len(sent)}"
        await gate.wait()
        return progress_id

    async def running(_progress_id: str) -> bool:
        return True

    outcomes: list[str] = []

    async def one(ledger: Ledger, sets: list[int]) -> None:
        try:
            started = await AutoImproveRuns(ledger).start(metric_id=5, test_set_ids=sets, begin=begin,
                                                          running=running)
            outcomes.append(f"started {started.progress_id}")
        except GuardRefusal as exc:  # the expected outcome for one of the two same-set starts
            outcomes.append(type(exc).__name__)

    async with anyio.create_task_group() as group:
        group.start_soon(one, Ledger(path), [2, 1])
        group.start_soon(one, Ledger(path), [1, 2])
        group.start_soon(one, Ledger(path), [3])
        await anyio.sleep(0)
        while len(sent) < 2 or len(outcomes) < 1:
            await anyio.sleep(0.01)
        gate.set()
    assert sorted(sent) == [(1, 2), (3,)]
    assert sorted(outcomes) == ["GuardRefusal", "started p-1", "started p-2"]
    again = await AutoImproveRuns(Ledger(path)).start(metric_id=5, test_set_ids=[1, 2], begin=begin, running=running)
    assert again.already_running and len(sent) == 2
