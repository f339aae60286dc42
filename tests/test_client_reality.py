"""The client against the sandbox's `documented` dialect (what Cekura's docs and skills show): v2 call-log
endpoints with a remembered v1 fallback, an organisation-level key's `project_id`, fresh results read by id
after an asynchronous evaluation, the judge endpoint polled, the proposal with its trigger and scores, the
auto-improve question answered, history/restore, billing and metric costs."""

from __future__ import annotations

import anyio
import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.results import read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import ProjectRequiredError
from pydantic import SecretStr
from support import FAST_RETRY, ORG_KEY, SANDBOX_KEY, SandboxAdmin, ToolFailed, call, connect, guard_permit

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("sandbox_server", ["documented"], indirect=True)]
V1 = "/observability/v1/call-logs-external/"
V2 = "/observability/v2/call-logs/"


def _client(sandbox: SandboxAdmin, key: str = SANDBOX_KEY, project_id: int | None = None) -> CekuraClient:
    return CekuraClient(sandbox.url, SecretStr(key), timeout=5.0, retry=FAST_RETRY, project_id=project_id)


def _v2(sandbox: SandboxAdmin, enabled: bool) -> None:
    sandbox._http.post("/_sandbox/v2", json={"enabled": enabled}).raise_for_status()


async def test_v2_is_used_where_the_deployment_has_it(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    async with _client(sandbox) as client:
        page = await client.list_calls(agent_id=agent, page_size=5)
        await client.get_call(page.results[0].id)
        assert (client.generation("list"), client.generation("detail")) == ("v2", "v2")
    assert sandbox.requests("GET", V1) == []
    assert len(sandbox.requests("GET", V2)) == 2


async def test_a_deployment_without_v2_is_read_through_v1_and_remembered(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    _v2(sandbox, False)
    try:
        async with _client(sandbox) as client:
            first = await client.list_calls(agent_id=agent, page_size=5)
            again = await client.list_calls(agent_id=agent, page_size=5, page=2)
            call_id = first.results[0].id
            detail = await client.get_call(call_id)
            await client.get_call(first.results[1].id)
            assert (client.generation("list"), client.generation("detail")) == ("v1", "v1")
    finally:
        _v2(sandbox, True)
    assert detail.id == call_id and again.results
    probes = [r for r in sandbox.requests("GET", V2, probes=True) if r["status"] == 404]
    assert len(probes) == 2, "one v2 probe per endpoint, then v1 for the client's lifetime"
    assert len(sandbox.requests("GET", V1)) == 4


async def test_an_organisation_key_needs_project_id_and_gets_it_from_the_settings(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    info = sandbox.info()
    agent = info["main_agent_id"]
    org = settings.model_copy(update={"api_key": SecretStr(ORG_KEY)})
    async with connect(org) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "list_calls", {"agent_id": agent, "page_size": 5})
        named = await call(client, "list_calls", {"agent_id": agent, "project_id": info["project_id"],
                                                  "page_size": 5})
    text = str(failure.value)
    assert "`project_id`" in text and "CEKURA_PROJECT_ID" in text and "Traceback" not in text
    assert named["calls"]
    async with connect(org.model_copy(update={"project_id": info["project_id"]})) as client:
        configured = await call(client, "list_calls", {"agent_id": agent, "page_size": 5})
    assert [c["id"] for c in configured["calls"]] == [c["id"] for c in named["calls"]]
    async with _client(sandbox, key=ORG_KEY) as raw:
        with pytest.raises(ProjectRequiredError):
            await raw.list_calls(agent_id=agent)


async def test_after_a_rerun_the_new_results_are_polled_by_id_one_request_per_poll(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    async with _client(sandbox) as client:
        ids = [r.id for r in (await client.list_calls(agent_id=agent, page_size=3)).results]
        before = await client.calls_by_ids(ids, agent_id=agent)
        permit = await guard_permit("rerun_evaluation", tuple(ids))
        answer = await client.rerun_evaluation(permit, agent_id=agent, call_logs=ids)
        stamps = {i: before[i].updated_at for i in ids}
        fresh: dict[int, str | None] = {}
        polls: list[int] = []
        for _ in range(20):  # bounded: the documented sandbox lands results after a few reads
            now = await client.calls_by_ids(ids, agent_id=agent)
            fresh = {i: now[i].updated_at for i in ids if now[i].updated_at != stamps[i] and now[i].success is not None}
            polls.append(len(fresh))
            if len(fresh) == len(ids):
                break
            await anyio.sleep(0.05)
    assert {c.id for c in answer} == set(ids)
    assert polls[0] < len(ids), "right after the POST the results are not the new ones yet"
    assert len(fresh) == len(ids), "every re-run call got a new updated_at and a success again"
    reads = [r for r in sandbox.requests("GET", V2) if r["query"].get("call_ids")]
    assert all(len(r["query"]["call_ids"].split(",")) == len(ids) for r in reads), "one request per poll"
    for row in now.values():
        result = row.metric(metric["id"])
        assert result is not None and read_result(result).readable


async def test_the_judge_endpoint_is_polled_for_its_verdict(sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    async with _client(sandbox) as client:
        started = await client.start_llm_judge_evaluation(
            await guard_permit("evaluate_llm_judge_metric"), metric["id"],
            data={"transcript": "Main Agent: Your name? And your date of birth?"},
            description="Fail if the agent asks two questions in one turn.", eval_type="binary", enum_values=None)
        assert isinstance(started, str), "the documented judge answers a progress id"
        verdict = await client.wait_for_judge(started, poll_interval=0.02, patience_seconds=10)
    assert verdict.result in (0, 5) and verdict.explanation
    assert sandbox.requests("GET", "evaluate_metric_progress")


async def test_billing_and_metric_costs_are_read(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    async with _client(sandbox, key=ORG_KEY) as client:
        billing = await client.billing_info()
    async with _client(sandbox) as client:
        metrics = await client.list_metrics(agent_id=agent)
    assert billing.credits_remaining is not None and billing.credits_remaining > 0
    costs = {m.name: m.metric_cost for m in metrics}
    assert all(c is not None for c in costs.values())
    assert {m.metric_cost for m in metrics if m.type == "custom_code"} <= {0.0}
    assert any(c and c > 0 for c in costs.values())
