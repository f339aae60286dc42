"""The cost guard, through real MCP sessions. Each way around it is tried, and the sandbox's credit
counter (not the server's own word) proves what was spent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.sandbox.dialect import DOCUMENTED
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import SecretStr
from support import FAST_RETRY, HTTP, ORG_KEY, SandboxAdmin, ToolFailed, call, connect

pytestmark = pytest.mark.anyio


def _agent_calls(sandbox: SandboxAdmin, n: int) -> list[int]:
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 200})
    ids = [r["id"] for r in rows["results"]]
    assert len(ids) >= n
    return ids[:n]


def _cost_per_call(sandbox: SandboxAdmin, agent: int | None = None) -> float:
    """What evaluating one call of the agent (default: the main one) costs: the `metric_cost` of every metric
    assigned to it, as the metric list gives it (0.2 an LLM judge, 0 custom code, 0.6 the documented dialect's
    predefined Hallucination)."""
    agent = agent if agent is not None else sandbox.info()["main_agent_id"]
    metrics = sandbox.api("GET", "/test_framework/v1/metrics/")
    return round(sum(float(m["metric_cost"]) for m in metrics if agent in m["agents"]), 6)


def _spent(sandbox: SandboxAdmin) -> float:
    """The sandbox's credit counter once every evaluation it accepted has landed (the documented dialect charges
    an evaluation when its results land, a few reads later; the spec dialect at once)."""
    sandbox.api("POST", "/_sandbox/evaluations/finish")
    return sandbox.credits()


def _token(error: str) -> str:
    return error.split('confirmation_token="')[1].split('"')[0]


async def test_small_rerun_spends_exactly_the_estimate(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 10)
    async with connect(settings) as client:
        result = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
    assert result["calls"] == 10 and result["confirmation"] == "none"
    expected = round(10 * _cost_per_call(sandbox), 4)
    assert result["credits_estimated"] == pytest.approx(expected)
    assert _spent(sandbox) == pytest.approx(expected)
    assert sorted(sandbox.requests("POST", "rerun_evaluation")[0]["body"]["call_logs"]) == sorted(ids)


async def test_above_threshold_needs_token_and_token_is_bound(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 120)
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as needs:
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        text = str(needs.value)
        assert "confirmation_required" in text and "120 call(s)" in text and "credits" in text
        token = _token(text)
        assert _spent(sandbox) == 0 and sandbox.requests("POST", "rerun_evaluation") == []
        # A token for another set of calls is refused (and burnt).
        with pytest.raises(ToolFailed, match="different set"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[:-1],
                                                    "confirmation_token": token})
        with pytest.raises(ToolFailed) as again:
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        token = _token(str(again.value))
        result = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids,
                                                         "confirmation_token": token})
        assert result["confirmation"] == "token" and result["calls"] == 120
        spent = _spent(sandbox)
        assert spent == pytest.approx(120 * _cost_per_call(sandbox))
        # Single use: the same token does not open the guard twice.
        with pytest.raises(ToolFailed, match=r"single use|unknown"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids,
                                                    "confirmation_token": token})
        with pytest.raises(ToolFailed, match="unknown"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids,
                                                    "confirmation_token": "made-up-by-the-model"})
    assert _spent(sandbox) == spent
    assert len(sandbox.requests("POST", "rerun_evaluation")) == 1


async def test_expired_token_is_refused(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 101)
    now = [1_000_000.0]
    server = build_server(settings, retry=FAST_RETRY, clock=lambda: now[0])
    async with Client(server) as client:
        with pytest.raises(ToolFailed) as needs:
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        now[0] += settings.confirmation_ttl_seconds + 1
        with pytest.raises(ToolFailed, match="expired"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids,
                                                    "confirmation_token": _token(str(needs.value))})
    assert _spent(sandbox) == 0


async def test_all_is_resolved_counted_and_never_sent_blind(settings: Settings, sandbox: SandboxAdmin) -> None:
    info = sandbox.info()
    agent = info["main_agent_id"]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as needs:
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": "all"})
        total = next(a["call_count"] for a in info["agents"] if a["id"] == agent)
        assert f"{total} call(s)" in str(needs.value)
        result = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": "all",
                                                         "confirmation_token": _token(str(needs.value))})
    sent = sandbox.requests("POST", "rerun_evaluation")
    assert len(sent) == 1 and isinstance(sent[0]["body"]["call_logs"], list)
    assert len(sent[0]["body"]["call_logs"]) == result["calls"] == total


async def test_zero_matches_never_opens_the_guard(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match="nothing to evaluate"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": "all",
                                                    "timestamp_from": "2020-01-01T00:00:00Z",
                                                    "timestamp_to": "2020-01-02T00:00:00Z"})
    assert _spent(sandbox) == 0 and sandbox.requests("POST", "rerun_evaluation") == []


async def test_a_count_of_zero_from_the_api_does_not_open_the_guard(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    """Cekura's `count` has been seen at 0 while results exist: the server counts rows itself."""

    class ZeroCount(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            if request.method == "GET" and "call-logs" in request.url.path and "progress" not in request.url.path:
                await response.aread()
                data = json.loads(response.content)
                if isinstance(data, dict) and "count" in data:
                    data["count"] = 0
                    return httpx.Response(200, json=data)
            return response

    agent = sandbox.info()["main_agent_id"]
    server = build_server(settings, retry=FAST_RETRY, transport=ZeroCount())
    async with Client(server) as client:
        with pytest.raises(ToolFailed, match="confirmation_required"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": "all"})
    assert _spent(sandbox) == 0


async def test_splitting_into_batches_does_not_evade_the_guard(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 150)
    async with connect(settings) as client:
        await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[:60]})
        spent = _spent(sandbox)
        with pytest.raises(ToolFailed, match="already evaluated 60 calls"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[60:120]})
    assert _spent(sandbox) == spent
    # The window lives in the ledger: a restarted server still remembers the first batch.
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match="confirmation_required"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[100:150]})
    assert _spent(sandbox) == spent


async def test_evaluate_metrics_estimate_counts_every_assigned_metric(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    ids = _agent_calls(sandbox, 5)
    async with connect(settings) as client:
        result = await call(client, "evaluate_metrics", {"agent_id": agent, "call_ids": ids,
                                                         "metrics": [metric["id"]]})
    # We asked for one metric; Cekura runs them all, and the estimate says so.
    assert result["credits_estimated"] == pytest.approx(5 * _cost_per_call(sandbox))
    assert _spent(sandbox) == pytest.approx(result["credits_estimated"])
    assert {r["metric"] for r in result["results"]} == {metric["id"]}


async def test_unknown_call_ids_are_refused_before_spending(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = [*_agent_calls(sandbox, 3), 88_888_888]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match="call_ids"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
    assert _spent(sandbox) == 0


def _answer(accept: bool, seen: list[str]) -> Any:
    async def elicit(_context: Any, params: ElicitRequestParams) -> ElicitResult:
        seen.append(params.message)
        if accept:
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")

    return elicit


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_elicitation_asks_the_person(settings: Settings, sandbox: SandboxAdmin, mode: str) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 130)
    declined: list[str] = []
    async with connect(settings, mode=mode, elicitation_callback=_answer(False, declined)) as client:
        with pytest.raises(ToolFailed, match="declined"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
    assert len(declined) == 1 and "130 call(s)" in declined[0] and "credits" in declined[0]
    assert _spent(sandbox) == 0
    accepted: list[str] = []
    async with connect(settings, mode=mode, elicitation_callback=_answer(True, accepted)) as client:
        result = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    assert result["confirmation"] == "elicitation" and len(accepted) == 1
    assert _spent(sandbox) == pytest.approx(130 * _cost_per_call(sandbox))


async def test_every_decision_is_audited(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 110)
    async with connect(settings) as client:
        await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[:5]})
        with pytest.raises(ToolFailed):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        with pytest.raises(ToolFailed):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids, "confirmation_token": "x"})
    entries = list(reversed(Ledger(settings.ledger_path).audit_entries()))
    assert [(e["decision"], e["outcome"]) for e in entries] == [
        ("allowed", "succeeded"), ("needs_confirmation", "not_sent"), ("refused", "not_sent")]
    assert entries[0]["call_count"] == 5 and entries[0]["credits_estimated"] > 0
    assert json.loads(entries[1]["call_ids"]) == sorted(ids)


async def test_project_wide_estimate_counts_each_calls_own_metrics(settings: Settings, sandbox: SandboxAdmin) -> None:
    info = sandbox.info()
    ids = []
    for agent in info["agents"]:
        rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent["id"]})
        ids += [r["id"] for r in rows["results"][:3]]
    async with connect(settings) as client:
        result = await call(client, "evaluate_metrics", {"project_id": info["project_id"], "call_ids": ids,
                                                         "metrics": []})
    per_call = {a["id"]: _cost_per_call(sandbox, a["id"]) for a in info["agents"]}
    assert len(set(per_call.values())) > 1, "the two agents' calls should cost differently"
    expected = sum(3 * cost for cost in per_call.values())
    assert result["credits_estimated"] == pytest.approx(expected)
    assert _spent(sandbox) == pytest.approx(expected)


async def test_filters_with_explicit_ids_are_refused_not_guessed(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 3)
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match='call_ids="all"'):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids, "success": False})
    assert _spent(sandbox) == 0 and sandbox.requests("POST", "rerun_evaluation") == []


async def test_ids_of_another_agent_are_refused(settings: Settings, sandbox: SandboxAdmin) -> None:
    info = sandbox.info()
    other = next(a["id"] for a in info["agents"] if a["id"] != info["main_agent_id"])
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": other})["results"]
    foreign = rows[0]["id"]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match=str(foreign)):
            await call(client, "rerun_evaluation", {"agent_id": info["main_agent_id"], "call_ids": [foreign]})
    assert _spent(sandbox) == 0


async def test_spend_log_shows_every_decision(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 105)
    async with connect(settings) as client:
        await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids[:4]})
        with pytest.raises(ToolFailed):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        log = await call(client, "spend_log", {})
    assert log["window_calls"] == 4 and log["threshold"] == 100
    assert [(e["decision"], e["calls"], e["outcome"]) for e in log["entries"]] == [
        ("needs_confirmation", 105, "not_sent"), ("allowed", 4, "succeeded")]
    assert log["entries"][1]["credits_estimated"] == pytest.approx(_spent(sandbox))


# ---- estimates before every spend (issue 17.2) and costs from metric_cost (issue 10.7) ----------------------


async def test_estimate_only_spends_nothing_and_counts_what_a_run_then_sends(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    info = sandbox.info()
    agent = info["main_agent_id"]
    selection = {"agent_id": agent, "call_ids": "all", "success": False}
    async with connect(settings) as client:
        estimate = await call(client, "rerun_evaluation", {**selection, "estimate_only": True})
        assert _spent(sandbox) == 0 and sandbox.requests("POST", "rerun_evaluation") == []
        assert estimate["spent"] is False and estimate["confirmation"] == "not_sent" and estimate["results"] == []
        figures = estimate["estimate"]
        assert 0 < figures["calls"] <= 100 and not figures["needs_confirmation"]
        ran = await call(client, "rerun_evaluation", selection)
    sent = sandbox.requests("POST", "rerun_evaluation")
    assert len(sent) == 1 and sorted(sent[0]["body"]["call_logs"]) == figures["call_ids"]
    assert figures["credits"] == pytest.approx(_spent(sandbox)) == pytest.approx(ran["credits_estimated"])
    assigned = {m["id"] for m in info["metrics"] if agent in m["agent_ids"]}
    assert {m["id"] for m in figures["metrics"]} == assigned
    assert sum(m["credits"] for m in figures["metrics"]) * figures["calls"] == pytest.approx(figures["credits"])


async def test_estimate_above_the_limit_asks_nothing_and_the_question_carries_its_figures(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    ids = _agent_calls(sandbox, 130)
    asked: list[str] = []
    async with connect(settings, elicitation_callback=_answer(False, asked)) as client:
        estimate = await call(client, "evaluate_metrics", {"agent_id": agent, "call_ids": ids, "metrics": [],
                                                           "estimate_only": True})
        assert asked == [] and _spent(sandbox) == 0
        figures = estimate["estimate"]
        assert figures["needs_confirmation"] and "130 calls" in figures["why"]
        with pytest.raises(ToolFailed, match="declined"):
            await call(client, "evaluate_metrics", {"agent_id": agent, "call_ids": ids, "metrics": []})
    assert len(asked) == 1 and f"about {figures['credits']:g} credits" in asked[0]
    assert "130 call(s)" in asked[0] and "credits remaining" in asked[0]
    assert _spent(sandbox) == 0


async def test_a_costly_judge_loop_under_100_calls_needs_confirmation(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    """50 calls x 10 judge calls is below 100 calls, but above what 100 calls of the agent cost."""
    metric = sandbox.metric_named("one question")
    agent = next(a for a in metric["agent_ids"] if a is not None)
    per_call = _cost_per_call(sandbox, agent)
    loop = "for _ in range(10):\n    evaluate_llm_judge_metric(data)\n_result = True\n_explanation = 'x'\n"
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 50})
    ids = [r["id"] for r in rows["results"]][:50]
    assert 100 * per_call < 50 * 10 * 0.2, "the sandbox's agent should make this loop cost more than 100 calls"
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as needs:
            await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": ids, "code": loop,
                                                    "judge_calls_per_call": 10})
    assert "credits is above the limit" in str(needs.value)
    assert sandbox.requests("POST", "evaluate_llm_judge_metric") == [] and _spent(sandbox) == 0


async def test_every_spending_tool_takes_estimate_only(settings: Settings, sandbox: SandboxAdmin) -> None:
    """The regression check and Python-metric tests estimate exactly what their real run then sends, spending
    nothing; the estimate of a judge-calling test counts its judge calls."""
    from test_validation import _review_and_patch

    async with connect(settings) as client:
        agent, metric, _picked = await _review_and_patch(client, sandbox)
        spent, sent = _spent(sandbox), len(sandbox.requests("POST", "evaluate_metrics"))
        check = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"],
                                                       "estimate_only": True})
        assert check["status"] == "estimate" and check["confirmation"] == "not_sent"
        assert _spent(sandbox) == spent and len(sandbox.requests("POST", "evaluate_metrics")) == sent
        figures = check["estimate"]
        await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        request = sandbox.requests("POST", "evaluate_metrics")[-1]
        assert sorted(request["body"]["call_logs"]) == figures["call_ids"] and figures["calls"] >= 20
        assert _spent(sandbox) - spent == pytest.approx(figures["credits"])

        judged = sandbox.metric_named("one question")
        ids = _agent_calls(sandbox, 3)
        code = "r = evaluate_llm_judge_metric(data)\n_result = r['result'] == 5\n_explanation = r['explanation']\n"
        before = _spent(sandbox)
        test = await call(client, "test_custom_code", {"metric_id": judged["id"], "call_ids": ids, "code": code,
                                                       "estimate_only": True})
        assert test["calls"] == [] and test["judge_calls"] == 0 and test["confirmation"] == "not_sent"
        assert test["estimate"]["calls"] == 3 and test["estimate"]["credits"] == pytest.approx(0.6)
        assert sandbox.requests("POST", "evaluate_llm_judge_metric") == [] and _spent(sandbox) == before
        ran = await call(client, "test_custom_code", {"metric_id": judged["id"], "call_ids": ids, "code": code})
    assert ran["judge_calls"] == len(sandbox.requests("POST", "evaluate_llm_judge_metric")) == 3
    assert _spent(sandbox) - before == pytest.approx(test["estimate"]["credits"])


@pytest.mark.parametrize("sandbox_server", [DOCUMENTED], indirect=True)  # billing info is the documented API's
async def test_the_credits_remaining_are_in_the_estimate_and_the_question(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    """With an organisation-level key Cekura's billing info answers: the balance is shown before any spend; with
    a project key it answers 403, and the figures say the balance is unknown instead of guessing it."""
    info = sandbox.info()
    org = settings.model_copy(update={"api_key": SecretStr(ORG_KEY), "project_id": info["project_id"]})
    HTTP.post(f"{sandbox.url}/_sandbox/billing", json={"credits_remaining": 1234.5}, timeout=10).raise_for_status()
    ids = _agent_calls(sandbox, 120)
    asked: list[str] = []
    selection = {"agent_id": info["main_agent_id"], "call_ids": ids}
    async with connect(org, elicitation_callback=_answer(False, asked)) as client:
        estimate = await call(client, "rerun_evaluation", {**selection, "estimate_only": True})
        with pytest.raises(ToolFailed, match="declined"):
            await call(client, "rerun_evaluation", selection)
    assert estimate["estimate"]["credits_remaining"] == pytest.approx(1234.5)
    assert "credits remaining: 1234.5" in asked[0]
    async with connect(settings) as client:
        unknown = await call(client, "rerun_evaluation", {**selection, "estimate_only": True})
    assert unknown["estimate"]["credits_remaining"] is None and _spent(sandbox) == 0
