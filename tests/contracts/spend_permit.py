# mypy: warn-unused-ignores
"""Type contract, checked by mypy --strict in tests/test_quality.py (never imported): a spending method of
the client cannot be called without a `SpendPermit`. The first line turns on warnings for an unused
`type: ignore`, so if a call below ever type-checked (the permit made optional, or dropped), the quality
test would fail."""

from __future__ import annotations

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.guard import SpendPermit


async def spend_without_the_guard(client: CekuraClient) -> None:
    await client.rerun_evaluation(agent_id=1, call_logs=[1])  # type: ignore[call-arg]
    await client.evaluate_metrics(agent_id=1, project_id=None, call_logs=[1], metrics=[])  # type: ignore[call-arg]
    await client.evaluate_llm_judge_metric(  # type: ignore[call-arg]
        metric_id=1, data={}, description="", eval_type=None, enum_values=None)


async def spend_with_a_made_up_permit(client: CekuraClient) -> None:
    await client.rerun_evaluation(object(), agent_id=1, call_logs=[1])  # type: ignore[arg-type]


async def spend_with_the_guards_permit(client: CekuraClient, permit: SpendPermit) -> None:
    await client.rerun_evaluation(permit, agent_id=1, call_logs=[1])
