"""test_custom_code and convert_to_custom_code through a real MCP client against the sandbox."""

from __future__ import annotations

import pytest
from cekura_labs_mcp.server.config import Settings
from support import SandboxAdmin, ToolFailed, call, connect

pytestmark = pytest.mark.anyio

UNDER_FIVE = "Call Under Five Minutes"


def _calls(sandbox: SandboxAdmin, metric_id: int, count: int) -> list[int]:
    return sorted(int(c) for c in sandbox.truth(metric_id))[:count]


async def test_the_metric_own_code_reproduces_its_results(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named(UNDER_FIVE)
    call_ids = _calls(sandbox, sandbox.metric_named("one question")["id"], 6)
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids})
    assert report["ok"] == 6 and report["matches_current"] == 6, report
    assert report["confirmation"] == "not_needed" and report["judge_calls"] == 0
    assert sandbox.requests("POST") == [] and sandbox.credits() == 0
    first = report["calls"][0]
    assert first["result"] in ("TRUE", "FALSE") and "five-minute" in first["explanation"][0]
    assert first["duration_ms"] > 0 and report["median_ms"] is not None


async def test_a_typo_is_reported_with_its_line(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named(UNDER_FIVE)
    call_ids = _calls(sandbox, sandbox.metric_named("one question")["id"], 2)
    code = "limit = 300\nif call_duraton < limit:\n    _result = True\nelse:\n    _result = False\n_explanation = 'x'\n"
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids,
                                                         "code": code})
        broken = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids,
                                                         "code": "_result = (\n"})
    assert report["ok"] == 0
    assert report["calls"][0]["errors"] == [
        "NameError at line 2 (`if call_duraton < limit:`): name 'call_duraton' is not defined"]
    assert broken["compile_error"].startswith("SyntaxError at line 1") and broken["calls"] == []


async def test_an_infinite_loop_leaves_the_server_answering(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named(UNDER_FIVE)
    call_id = _calls(sandbox, sandbox.metric_named("one question")["id"], 1)
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_id,
                                                         "code": "while True:\n    pass\n"})
        after = await call(client, "list_metrics", {"agent_id": sandbox.info()["main_agent_id"]})
    assert report["calls"][0]["status"] == "cpu_limit"
    assert report["calls"][0]["errors"][0].startswith("CpuTimeLimit at line 1")
    assert after


async def test_refused_before_running(settings: Settings, sandbox: SandboxAdmin) -> None:
    judge_metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "test_custom_code", {"metric_id": judge_metric["id"], "call_ids": [1]})
    assert "has no custom_code" in str(failure.value)
