"""The client's spending methods need the guard's permit: at run time too, and for exactly what was counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.guard import ConfirmationRequired, CostGuard, GuardRefusal, SpendPermit, SpendPlan
from cekura_labs_mcp.server.ledger import Ledger, PostgresLedger, Window
from pydantic import SecretStr
from support import SANDBOX_KEY, SandboxAdmin

pytestmark = pytest.mark.anyio


def _plan(call_ids: tuple[int, ...], **extra: object) -> SpendPlan:
    return SpendPlan(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=call_ids,
                     judge_metric_ids=(1,), code_metric_ids=(), credits=0.2 * len(call_ids), credits_per_call=0.2,
                     **extra)  # type: ignore[arg-type]


def test_only_the_guard_mints_permits() -> None:
    with pytest.raises(TypeError, match="only the cost guard"):
        SpendPermit(object(), audit_id=1, confirmation="none", window=Window(), endpoint="rerun_evaluation",
                    call_ids=[1], requests=1)


async def test_spending_without_a_permit_sends_nothing(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    async with CekuraClient(sandbox.url, SecretStr(SANDBOX_KEY)) as client:
        with pytest.raises(TypeError, match="SpendPermit"):
            await client.rerun_evaluation(None, agent_id=agent, call_logs=[1])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="SpendPermit"):
            await client.evaluate_llm_judge_metric(  # type: ignore[arg-type]
                "yes", 1, data={}, description="", eval_type=None, enum_values=None)
    assert sandbox.requests("POST") == [] and sandbox.credits() == 0


async def test_a_permit_covers_exactly_its_plan(tmp_path: Path, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 3})
    ids = tuple(sorted(r["id"] for r in rows["results"]))
    guard = CostGuard(Ledger(tmp_path / "ledger.sqlite3"))
    permit = await guard.authorize(_plan(ids[:2]), token=None, approval="not_asked")
    async with CekuraClient(sandbox.url, SecretStr(SANDBOX_KEY)) as client:
        with pytest.raises(GuardRefusal, match="not in the set"):
            await client.rerun_evaluation(permit, agent_id=agent, call_logs=ids)
        with pytest.raises(GuardRefusal, match="allowed rerun_evaluation, not evaluate_metrics"):
            await client.evaluate_metrics(permit, agent_id=agent, project_id=None, call_logs=ids[:2], metrics=[])
        assert sandbox.requests("POST") == []
        await client.rerun_evaluation(permit, agent_id=agent, call_logs=ids[:2])
        with pytest.raises(GuardRefusal, match="used up"):
            await client.rerun_evaluation(permit, agent_id=agent, call_logs=ids[:2])
    assert len(sandbox.requests("POST", "rerun_evaluation")) == 1


async def test_window_is_shared_by_guards_on_one_ledger(ledger_location: Path | PostgresLedger) -> None:
    """Two guards (two servers) on the same ledger: the second sees the first's allowance at once."""
    path = ledger_location
    first, second = CostGuard(Ledger(path)), CostGuard(Ledger(path))
    await first.authorize(_plan(tuple(range(1, 61))), token=None, approval="not_asked")
    assert second.window() == Window(calls=60, credits=12.0)
    assert second.needs_confirmation(_plan(tuple(range(100, 150))))

    await second.authorize(_plan(tuple(range(200, 230))), token=None, approval="not_asked")
    with pytest.raises(ConfirmationRequired, match="already evaluated 90 calls"):
        await first.authorize(_plan(tuple(range(300, 330))), token=None, approval="not_asked")
    assert first.window().calls == second.window().calls == 90
