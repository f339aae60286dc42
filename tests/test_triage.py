"""Triage of a score metric: half points count as failing under the pass mark."""

from __future__ import annotations

import pytest
from cekura_labs_mcp.server.config import Settings
from support import SandboxAdmin, call, connect

pytestmark = pytest.mark.anyio


async def test_scores_fail_below_the_pass_mark_half_points_included(settings: Settings,
                                                                     sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("empathy")
    truth = sandbox.truth(metric["id"])
    page = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent,
                                                                                 "page_size": 200})
    mine = {str(row["id"]) for row in page["results"]}
    actual = [float(t["actual"]) for c, t in truth.items() if c in mine and t["actual"] not in (None, "N/A")]
    async with connect(settings) as client:
        default = await call(client, "triage_failures", {"agent_id": agent, "metric_id": metric["id"]})
        strict = await call(client, "triage_failures", {"agent_id": agent, "metric_id": metric["id"],
                                                        "failing_value": "1.5"})
    assert default["failing_value"] == "below 3" and "most recent calls" in default["counted"]
    assert default["failing_total"] == sum(1 for v in actual if v < 3) > sum(1 for v in actual if v < 2)
    assert any(v == 2.5 for v in actual), "the seed has half-point scores under the mark"
    assert strict["failing_value"] == "1.5 or lower"
    assert strict["failing_total"] == sum(1 for v in actual if v <= 1.5)
