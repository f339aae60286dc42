"""list_calls, get_call and list_metrics through a real MCP client session against the sandbox."""

from __future__ import annotations

import json

import pytest
from cekura_labs_mcp.server.cekura.models import MetricResult
from cekura_labs_mcp.server.cekura.results import read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.tools import ALL_TOOLS
from cekura_labs_mcp.tools.toolsets import TOOLSETS
from support import SandboxAdmin, ToolFailed, call, connect

# Cekura answers in more than one shape: these run against both sandbox dialects (tests/conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.both_dialects]

EXPECTED_TOOLS = {
    "list_calls", "get_call", "list_metrics", "mark_metric_vote", "create_test_set_from_call",
    "process_feedbacks", "poll_progress", "patch_metric", "rollback_metric", "rerun_evaluation", "evaluate_metrics",
}


async def test_tools_are_listed_with_truthful_annotations(settings: Settings) -> None:
    async with connect(settings) as client:
        for toolset in TOOLSETS:
            await call(client, "load_toolset", {"name": toolset.name})
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= EXPECTED_TOOLS
    for name in ("list_calls", "get_call", "list_metrics", "poll_progress"):
        assert tools[name].annotations is not None and tools[name].annotations.read_only_hint is True
    for name in ("rerun_evaluation", "evaluate_metrics", "patch_metric"):
        ann = tools[name].annotations
        assert ann is not None and ann.read_only_hint is False and ann.destructive_hint is True
    for tool in tools.values():
        assert tool.output_schema is not None, f"{tool.name} has no structured output"
        assert tool.description and len(tool.description) > 80
        assert "plan" not in tool.input_schema["properties"] and "approval" not in tool.input_schema["properties"]


async def test_list_calls_compact_page_counts_and_order(settings: Settings, sandbox: SandboxAdmin) -> None:
    info = sandbox.info()
    agent = info["main_agent_id"]
    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        page = await call(client, "list_calls", {"agent_id": agent, "metric_id": metric["id"], "page_size": 50})
    raw = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 50})
    assert page["count"] == raw["count"] > 50
    assert len(page["calls"]) == 50 and page["has_more"] is True
    assert [c["id"] for c in page["calls"]] == [r["id"] for r in raw["results"]]
    stamps = [c["at"] for c in page["calls"]]
    assert stamps == sorted(stamps, reverse=True)
    assert all(c["value"] in {"TRUE", "FALSE", "N/A"} for c in page["calls"])
    assert all(c["why"] and len(c["why"]) <= 140 for c in page["calls"])
    assert page["metric"].startswith(f"{metric['id']}: ")
    # The point of the tool: a page a model can afford to read.
    assert len(json.dumps(page)) * 5 < len(json.dumps(raw))


async def test_list_calls_sends_the_documented_filter_and_never_answers_unfiltered(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        failed = await call(client, "list_calls", {"agent_id": agent, "metric_id": metric["id"],
                                                   "metric_value": "FALSE", "page_size": 200})
        unreviewed = await call(client, "list_calls", {"agent_id": agent, "reviewed": False, "page_size": 10})
    sent = [r for r in sandbox.requests("GET", "call-logs") if "filters_v2" in r["query"]]
    assert json.loads(sent[0]["query"]["filters_v2"]) == {"operator": "same_row", "conditions": [
        {"field": "metric_evaluations.metric.id", "op": "eq", "value": metric["id"]},
        {"field": "metric_evaluations.value", "op": "eq", "value": False}]}
    assert json.loads(sent[-1]["query"]["filters_v2"]) == {"field": "is_reviewed", "op": "eq", "value": False}
    # Whether the sandbox's dialect filters it or refuses it (400), the answer holds only failing calls, all of
    # them, and says when the filter was applied here instead.
    refused = sent[0]["status"] == 400
    assert (failed["filter_note"] is not None) == refused
    if refused:
        assert "refused the filter" in failed["filter_note"] and "all calls" in failed["filter_note"]
    every = _all_rows(sandbox, agent)
    failing = [r for r in every if _value_of(r, metric["id"]) == "FALSE"]
    assert failed["count"] == len(failed["calls"]) == len(failing) > 0
    assert {c["value"] for c in failed["calls"]} == {"FALSE"}
    assert unreviewed["calls"] and all(c["reviewed"] is False for c in unreviewed["calls"])


def _all_rows(sandbox: SandboxAdmin, agent: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    page = 1
    while True:
        answer = sandbox.api("GET", "/observability/v1/call-logs-external/",
                             params={"agent_id": agent, "page_size": 200, "page": page})
        rows += answer["results"]
        if not answer["next"]:
            return rows
        page += 1


def _value_of(row: dict[str, object], metric_id: int) -> str | None:
    evaluation = row["evaluation"]
    entries = json.loads(evaluation) if isinstance(evaluation, str) else evaluation
    metrics = entries["metrics"] if isinstance(entries, dict) else entries or []
    entry = next((m for m in metrics if m["id"] == metric_id), None)
    return None if entry is None else read_result(MetricResult.model_validate(entry)).text


@pytest.mark.parametrize(("args", "field"), [
    ({"page_size": 500}, "page_size"),
    ({}, "agent_id"),
    ({"page": 0}, "page"),
    ({"metric_value": "FALSE"}, "metric_value"),
    ({"timestamp_from": "2026-01-01T00:00:00Z", "timestamp_to": "2026-06-01T00:00:00Z"}, "timestamp"),
])
async def test_list_calls_bad_input_names_the_field(
    settings: Settings, sandbox: SandboxAdmin, args: dict[str, object], field: str
) -> None:
    agent = sandbox.info()["main_agent_id"]
    full = {"agent_id": agent, **args} if field != "agent_id" else args
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "list_calls", full)
    assert field in str(failure.value)
    assert "Traceback" not in str(failure.value)


async def test_get_call_shows_review_view_not_raw_dump(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    raw_list = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent})
    call_id = raw_list["results"][0]["id"]
    raw = sandbox.api("GET", f"/observability/v1/call-logs-external/{call_id}/")
    async with connect(settings) as client:
        view = await call(client, "get_call", {"call_id": call_id, "metric_id": metric["id"]})
    raw_metric = next(m for m in raw["evaluation"]["metrics"] if m["id"] == metric["id"])
    # `documented` sends score/passed and no value; `spec` writes the value out: both read the same.
    assert view["metric"]["value"] == read_result(MetricResult.model_validate(raw_metric)).text
    assert view["metric"]["value"] in {"TRUE", "FALSE", "N/A"} and view["metric"]["unreadable"] is None
    assert view["metric"]["explanation"] == " ".join(raw_metric["explanation"])
    assert len(view["transcript"]["turns"]) == len(raw["transcript_object"])
    assert {t["who"] for t in view["transcript"]["turns"]} <= {"agent", "caller"}
    assert "data" in view["transcript"]["note"] and "instructions" in view["transcript"]["note"]
    assert "transcript_object" not in view and "evaluation" not in view
    assert len(json.dumps(view)) < len(json.dumps(raw))


async def test_get_call_window_around_moments(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    raw_list = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent})
    call_id = max(raw_list["results"], key=lambda r: len(r["transcript"]))["id"]
    async with connect(settings) as client:
        whole = await call(client, "get_call", {"call_id": call_id})
        turns = whole["transcript"]["turns"]
        moment = turns[len(turns) // 2]["t"]
        window = await call(client, "get_call", {"call_id": call_id, "around": [moment], "window_seconds": 10})
    assert 0 < len(window["transcript"]["turns"]) < len(turns)
    assert moment in [t["t"] for t in window["transcript"]["turns"]]
    assert window["transcript"]["total_turns"] == len(turns)


async def test_get_call_errors(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    call_id = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent}
                          )["results"][0]["id"]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match="not found"):
            await call(client, "get_call", {"call_id": 99_999_999})
        with pytest.raises(ToolFailed, match="metric_id"):
            await call(client, "get_call", {"call_id": call_id, "metric_id": 99_999})
        with pytest.raises(ToolFailed, match="around"):
            await call(client, "get_call", {"call_id": call_id, "around": ["soon"]})


async def test_list_metrics(settings: Settings, sandbox: SandboxAdmin) -> None:
    info = sandbox.info()
    async with connect(settings) as client:
        catalog = await call(client, "list_metrics", {"agent_id": info["main_agent_id"]})
    names = {m["name"] for m in catalog["metrics"]}
    expected = {m["name"] for m in info["metrics"] if info["main_agent_id"] in m["agent_ids"]}
    assert names == expected
    assert {m["eval_type"] for m in catalog["metrics"]} >= {"binary", "enum"}
    raw = {m["id"]: m for m in sandbox.api("GET", "/test_framework/v1/metrics/",
                                           params={"agent_id": info["main_agent_id"]})}
    assert all(m["credits"] == raw[m["id"]].get("metric_cost") for m in catalog["metrics"])


def test_registry_has_every_tool_once() -> None:
    names = [spec.name for spec in ALL_TOOLS]
    assert len(names) == len(set(names))
    assert set(names) >= EXPECTED_TOOLS


async def test_get_metric_reads_the_whole_prompt(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    raw = sandbox.api("GET", f"/test_framework/v1/metrics/{metric['id']}/")
    async with connect(settings) as client:
        detail = await call(client, "get_metric", {"metric_id": metric["id"]})
        with pytest.raises(ToolFailed, match="not found"):
            await call(client, "get_metric", {"metric_id": 424_242})
    assert detail["description"] == raw["description"] and len(detail["description"]) > 200
    assert detail["eval_type"] == "binary" and detail["saved_versions"] == 0


async def test_argument_errors_are_one_clear_line(settings: Settings) -> None:
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "list_calls", {"agent_id": "abc", "page_size": 500})
        with pytest.raises(ToolFailed) as bare:
            await call(client, "create_test_set_from_call", {"call_log_id": 1, "metrics": [3]})
    text = str(failure.value)
    assert text.startswith("Error executing tool list_calls: [invalid_input] Invalid argument `agent_id`: ")
    assert "`page_size`: " in text
    assert "pydantic" not in text and "[type=" not in text and "\n" not in text
    assert '"metric": 123' in str(bare.value) and "[type=" not in str(bare.value)


def test_validation_report_rewrite_leaves_other_errors_alone() -> None:
    from cekura_labs_mcp.server.argument_errors import rewrite_validation_report

    assert rewrite_validation_report("Error executing tool get_call: [not_found] Call 5 was not found.") is None
    report = ("Error executing tool get_call: 1 validation error for get_callArguments\ncall_id\n"
              "  Field required [type=missing, input_value={}, input_type=dict]\n"
              "    For further information visit https://errors.pydantic.dev/2.14/v/missing")
    assert rewrite_validation_report(report) == (
        "Error executing tool get_call: [invalid_input] Invalid argument `call_id`: Field required. Nothing was "
        "sent. Hint: fix the named argument(s) as the get_call tool's input schema describes, and call it again.")


async def test_read_only_mode_offers_no_tool_that_writes(settings: Settings) -> None:
    from cekura_labs_mcp.server.app import build_server
    from cekura_labs_mcp.tools import READ_TOOLS

    tools = await build_server(settings, read_only=True).list_tools()
    assert {t.name for t in tools} == {spec.name for spec in READ_TOOLS}
    assert all(t.annotations is not None and t.annotations.read_only_hint for t in tools)
    assert not {"rerun_evaluation", "mark_metric_vote", "patch_metric"} & {t.name for t in tools}
    from_env = await build_server(settings.model_copy(update={"read_only": True})).list_tools()
    assert {t.name for t in from_env} == {t.name for t in tools}
