"""Triage over list rows that carry a metric's value but not its explanation: the server reads those calls
concurrently, never more at once than CEKURA_LABS_MAX_CONCURRENCY (the sandbox's request log shows it)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from mcp import Client
from support import FAST_RETRY, SandboxAdmin, ToolFailed, call

pytestmark = pytest.mark.anyio
V1 = "/observability/v1/call-logs-external/"
V2 = "/observability/v2/call-logs/"  # the documented dialect's (the client reads v2 first, v1 where v2 is 404)
LISTS = (V1, V2)
LIMIT = 3


def _failing_filter(dialect: str, metric_id: int) -> tuple[str, str]:
    """The list path and the filter that select the metric's FALSE results, in the dialect's words."""
    if dialect == "documented":
        return V2, json.dumps({"operator": "same_row", "conditions": [
            {"field": "metric_evaluations.metric.id", "op": "eq", "value": metric_id},
            {"field": "metric_evaluations.value", "op": "eq", "value": False}]})
    return V1, json.dumps({"field": "metric_value", "metric_id": metric_id, "op": "eq", "value": "FALSE"})


@dataclass
class NoListExplanations(httpx.AsyncBaseTransport):
    """List answers with each row's `evaluation` emptied: values only, as a list may come."""

    inner: httpx.AsyncBaseTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "GET" or request.url.path not in LISTS:
            return response
        data = json.loads(await response.aread())
        await response.aclose()
        for row in data.get("results", []):
            row["evaluation"] = ""
            for result in row.get("metrics") or []:
                result.pop("explanation", None)
        return httpx.Response(response.status_code, json=data, request=request)


def _peak(entries: list[dict[str, Any]]) -> int:
    edges = sorted([(e["started"], 1) for e in entries] + [(e["ended"], -1) for e in entries],
                   key=lambda edge: (edge[0], edge[1]))
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def _details(sandbox: SandboxAdmin, since: float) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests("GET") if r["path"].startswith(LISTS) and r["path"] not in LISTS
            and r["started"] >= since]


async def test_triage_reads_missing_explanations_concurrently_within_the_limit(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    bounded = settings.model_copy(update={"max_concurrency": LIMIT})
    server = build_server(bounded, retry=FAST_RETRY, transport=NoListExplanations(httpx.AsyncHTTPTransport()))
    async with Client(server) as client:
        with_explanations = await call(client, "list_calls", {"agent_id": agent, "metric_id": metric["id"],
                                                              "metric_value": "FALSE", "page_size": 5})
        assert all(row["why"] is None for row in with_explanations["calls"]), "the transport strips them"
        sandbox.api("POST", "/_sandbox/latency", json={"ms": 40})
        since = time.time()
        triage = await call(client, "triage_failures", {"agent_id": agent, "metric_id": metric["id"]})
        sandbox.api("POST", "/_sandbox/latency", json={"ms": 0})
    details = _details(sandbox, since)
    assert triage["read"] == triage["failing_total"] == len(details) > LIMIT
    assert triage["causes"] and triage["causes"][0]["count"] >= 3, "explanations were read from the details"
    assert len({r["path"] for r in details}) == len(details), "each call read once"
    peak = _peak([r for r in sandbox.stats()["requests"] if r["started"] >= since])
    assert 1 < peak <= LIMIT
    assert sandbox.stats()["max_in_flight"] <= LIMIT


async def test_triage_does_not_read_calls_when_the_list_has_explanations(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    async with Client(build_server(settings, retry=FAST_RETRY)) as client:
        triage = await call(client, "triage_failures", {"agent_id": agent, "metric_id": metric["id"]})
    assert triage["read"] > 0 and triage["causes"]
    assert _details(sandbox, 0.0) == []


async def test_a_call_that_cannot_be_read_fails_triage_with_a_clear_message(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    path, failing = _failing_filter(sandbox.info()["dialect"], metric["id"])
    victim = sandbox.api("GET", path, params={"agent_id": agent, "filters_v2": failing})["results"][0]["id"]
    sandbox.fault(f"{path}{victim}", "500", count=50)
    server = build_server(settings, retry=FAST_RETRY, transport=NoListExplanations(httpx.AsyncHTTPTransport()))
    async with Client(server) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "triage_failures", {"agent_id": agent, "metric_id": metric["id"]})
    message = str(failure.value)
    assert "[unavailable]" in message and "HTTP 500" in message and "Traceback" not in message
    victim_reads = [r for r in sandbox.requests("GET", f"{path}{victim}")]
    assert len(victim_reads) == FAST_RETRY.max_retries + 1
