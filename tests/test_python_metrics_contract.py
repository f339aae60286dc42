"""Python metrics as Cekura runs them (issue 16), through a real MCP client against the sandbox: each input's
source, the judge's `{{variable}}` placeholders, judge errors as N/A, the conversion's published patterns,
and the python-metrics skill's worked examples, each run through test_custom_code."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.custom_code.placeholders import PlaceholderError, render
from cekura_labs_mcp.server.custom_code.runner import CodeRunner, JudgeAnswer, JudgeRequest, Limits
from support import SandboxAdmin, call, connect

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).parents[1] / "skills" / "python-metrics" / "references" / "examples.md"
CODE_METRIC = "Call Under Five Minutes"  # a binary custom_code metric of the sandbox's main agent
JUDGE_PATH = "evaluate_llm_judge_metric"


def _examples() -> dict[str, str]:
    text = EXAMPLES.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- example: ([\w-]+) -->\n```python\n(.*?)```", text,
                                                        re.DOTALL)}


def _calls(sandbox: SandboxAdmin, count: int) -> list[int]:
    one_question = sandbox.metric_named("one question")["id"]
    return sorted(int(c) for c in sandbox.truth(one_question))[:count]


def _by_sentiment(sandbox: SandboxAdmin) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for call_id, truth in sorted(sandbox.truth(sandbox.metric_named("sentiment")["id"]).items()):
        found.setdefault(str(truth["actual"]), []).append(int(call_id))
    return found


async def _test(settings: Settings, sandbox: SandboxAdmin, code: str, call_ids: list[int],
                metric: str = CODE_METRIC) -> dict[str, Any]:
    async with connect(settings) as client:
        return await call(client, "test_custom_code", {"metric_id": sandbox.metric_named(metric)["id"],
                                                       "call_ids": call_ids, "code": code})


# ---- the skill's worked examples ------------------------------------------------------------------


def test_the_skill_has_the_five_worked_examples() -> None:
    assert set(_examples()) == {"product-mention", "latency-threshold", "na-skip", "gate", "section-extraction"}


@pytest.mark.parametrize("name", ["product-mention", "latency-threshold", "na-skip"])
async def test_each_deterministic_example_runs_cleanly(settings: Settings, sandbox: SandboxAdmin, name: str) -> None:
    report = await _test(settings, sandbox, _examples()[name], _calls(sandbox, 6))
    assert report["ok"] == 6 and report["failed"] == 0, report["calls"]
    assert report["judge_calls"] == 0 and sandbox.credits() == 0
    assert {row["result"] for row in report["calls"]} <= {"TRUE", "FALSE", "N/A"}
    assert all(len(row["explanation"]) == 1 and row["explanation"][0] for row in report["calls"])
    assert all(not row["warnings"] for row in report["calls"])  # `_explanation` is one string


async def test_the_product_example_tells_mentions_apart(settings: Settings, sandbox: SandboxAdmin) -> None:
    code = _examples()["product-mention"].replace('PRODUCT = "premium plan"', 'PRODUCT = "appointment"')
    report = await _test(settings, sandbox, code, _calls(sandbox, 12))
    assert report["ok"] == 12
    results = {row["result"] for row in report["calls"]}
    assert results == {"TRUE", "FALSE"}, results


async def test_the_gate_example_runs_only_behind_its_gate(settings: Settings, sandbox: SandboxAdmin) -> None:
    by_sentiment = _by_sentiment(sandbox)
    negative, other = by_sentiment["negative"][:3], by_sentiment["positive"][:3]
    report = await _test(settings, sandbox, _examples()["gate"], negative + other)
    assert report["ok"] == 6, report["calls"]
    rows = {row["call_id"]: row for row in report["calls"]}
    assert all(rows[c]["result"] == "N/A" and "runs only when" in rows[c]["explanation"][0] for c in other)
    assert all(rows[c]["result"] in ("TRUE", "FALSE") and "One Question Per Turn" in rows[c]["explanation"][0]
               for c in negative)


async def test_the_section_example_is_na_without_the_section(settings: Settings, sandbox: SandboxAdmin) -> None:
    """The sandbox's agent description has no headings: N/A, and no judge call is spent."""
    report = await _test(settings, sandbox, _examples()["section-extraction"], _calls(sandbox, 3))
    assert report["ok"] == 3 and {row["result"] for row in report["calls"]} == {"N/A"}
    assert "no 'Booking Flow' section" in report["calls"][0]["explanation"][0]
    assert sandbox.requests("POST", JUDGE_PATH) == []


SECTIONED = "# Ava\nIntro.\n## Booking Flow\nOffer two slots, then confirm the day and time.\n## Billing\nNever quote."


@pytest.mark.parametrize(("answer", "result", "said"), [
    (JudgeAnswer(5, ["Confirmed the slot."]), True, "Confirmed the slot."),
    (JudgeAnswer(0, ["Never confirmed."]), False, "Never confirmed."),
    (JudgeAnswer(0, ["VALID_SKIP: the caller only asked about parking."]), None, "N/A (valid skip): the caller"),
    (JudgeAnswer(None, ["Judge error: timed out"]), None, "N/A: the judge gave no result. Judge error"),
])
def test_the_section_example_gives_the_judge_only_its_section(answer: JudgeAnswer, result: bool | None,
                                                              said: str) -> None:
    asked: list[JudgeRequest] = []

    def judge(request: JudgeRequest) -> JudgeAnswer:
        asked.append(request)
        return answer

    data = {"agent_description": SECTIONED, "transcript": "[00:01] Main Agent: Hello."}
    report = CodeRunner(limits=Limits(wall_seconds=20)).run(_examples()["section-extraction"], data, judge)
    assert report.status == "ok" and report.result is not None and report.explanation is not None, report.error
    assert report.result.value is result and str(report.explanation.value).startswith(said)
    description = asked[0].description
    assert "Offer two slots" in description and "Never quote" not in description and "Intro." not in description
    assert "{{transcript}}" in description  # rendered by the server before the judge call (see below)


# ---- inputs: each from its source -----------------------------------------------------------------

INPUTS = "_result = True\n_explanation = repr((date, agent_description, data['explanation'].get('Empathy')))\n"


async def test_date_is_today_and_agent_description_comes_from_the_agents_endpoint_once(
        settings: Settings, sandbox: SandboxAdmin) -> None:
    agent_id = sandbox.info()["main_agent_id"]
    described = sandbox.api("GET", f"/test_framework/v2/aiagents/{agent_id}/")["description"]
    before = len(sandbox.requests("GET", "aiagents"))
    call_ids = _calls(sandbox, 2)
    async with connect(settings) as client:
        metric_id = sandbox.metric_named(CODE_METRIC)["id"]
        first = await call(client, "test_custom_code", {"metric_id": metric_id, "call_ids": call_ids, "code": INPUTS})
        again = await call(client, "test_custom_code", {"metric_id": metric_id, "call_ids": call_ids, "code": INPUTS})
    today = datetime.now(UTC).date().isoformat()
    for report in (first, again):
        for row in report["calls"]:
            date, description, empathy = eval(row["explanation"][0])
            assert date == today and description == described and isinstance(empathy, list | None)
    assert len(sandbox.requests("GET", "aiagents")) - before == 1  # fetched once, then cached
    assert not any("agent_description is empty" in n for n in first["inputs_notes"])


# ---- {{variable}} placeholders in judge calls from code -------------------------------------------


def test_placeholders_render_as_the_variable_reference_defines_them() -> None:
    data = {"transcript": "T", "call_end_reason": "hangup", "date": "2026-11-30", "timestamp": "2026-11-28T10:00:00Z",
            "metadata": {"clinic": {"city": "Leeds"}}, "dynamic_variables": {"order": "A-1"}}
    agent = {"description": "D", "name": "Ava", "language": "en", "inbound": True, "contact_number": "+44"}
    rendered = render("{{transcript}}|{{ call_end_reason }}|{{date}}|{{timestamp}}|{{metadata.clinic.city}}|"
                      '{{metadata["clinic"]["city"]}}|{{dynamic_variables.order}}|{{agent.name}}|{{agent.inbound}}|'
                      "{{dynamic_variables}}|{{dynamic_variables.missing}}", data, agent)
    assert rendered.text == ('T|hangup|2026-11-30|2026-11-28T10:00:00Z|Leeds|Leeds|A-1|Ava|true|{"order": "A-1"}|')
    assert rendered.missing == ["dynamic_variables.missing"]


@pytest.mark.parametrize(("text", "named"), [
    ("{{transcrpt}}", "unknown placeholder {{transcrpt}}"),
    ("{{agent.secret}}", "unknown placeholder {{agent.secret}}"),
    ("{{test_profile.name}}", "{{test_profile.name}} is only available on simulation runs"),
    ("{{evaluator.instructions}}", "{{evaluator.instructions}} is only available on simulation runs"),
    ("{{ 1 + 1 }}", "{{1 + 1}} is not a variable name"),
])
def test_an_unknown_placeholder_is_an_error_naming_it(text: str, named: str) -> None:
    with pytest.raises(PlaceholderError, match=re.escape(named)):
        render(f"Judge this. {text}", {"transcript": "T"}, {})


JUDGED_WITH = ("r = evaluate_llm_judge_metric(data, description={description!r}, eval_type='binary')\n"
               "_result = None if r['result'] is None else r['result'] == 5\n"
               "_explanation = ' '.join(r['explanation'])\n")


async def test_placeholders_reach_the_judge_rendered(settings: Settings, sandbox: SandboxAdmin) -> None:
    code = JUDGED_WITH.format(description="Ava is {{agent.name}}; call on {{date}}. Was the caller greeted?")
    report = await _test(settings, sandbox, code, _calls(sandbox, 1))
    assert report["ok"] == 1 and report["judge_calls"] == 1, report["calls"]
    sent = sandbox.requests("POST", JUDGE_PATH)[0]["body"]["description"]
    assert "{{" not in sent and "Northwind Front Desk (Ava)" in sent
    assert datetime.now(UTC).date().isoformat() in sent


async def test_an_unknown_placeholder_is_refused_before_any_spend(settings: Settings, sandbox: SandboxAdmin) -> None:
    code = JUDGED_WITH.format(description="Was {{dynamic_variable.name}} greeted?")
    report = await _test(settings, sandbox, code, _calls(sandbox, 1))
    row = report["calls"][0]
    assert not row["ok"] and "unknown placeholder {{dynamic_variable.name}}" in row["errors"][0]
    assert row["result"] == "N/A"  # the code got result None, as Cekura returns errors
    assert sandbox.requests("POST", JUDGE_PATH) == [] and report["judge_calls"] == 0


# ---- the conversion: Cekura's published patterns, judge errors as N/A -----------------------------


async def test_a_draft_gates_on_another_metric_and_extracts_sections(settings: Settings,
                                                                    sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    by_sentiment = _by_sentiment(sandbox)
    call_ids = sorted(by_sentiment["negative"][:2] + by_sentiment["positive"][:2])
    async with connect(settings) as client:
        gated = await call(client, "convert_to_custom_code", {
            "metric_id": metric["id"], "call_ids": call_ids, "gate_metric": "Caller Sentiment",
            "gate_values": ["negative"]})
        sectioned = await call(client, "convert_to_custom_code", {
            "metric_id": metric["id"], "call_ids": call_ids, "sections": ["Booking Flow"]})
    assert gated["ready"], gated["rows"]  # every draft passes test_custom_code before it is offered
    rows = {row["call_id"]: row for row in gated["rows"]}
    assert all(rows[c]["draft"] == "N/A" for c in by_sentiment["positive"][:2])
    assert "GATE_METRIC = 'Caller Sentiment'" in gated["custom_code"]
    assert any("gate on another metric" in step for step in gated["what_it_does"])
    # The sandbox's agent description has no "Booking Flow" section: N/A in code, no judge call.
    assert sectioned["ready"] and {row["draft"] for row in sectioned["rows"]} == {"N/A"}
    assert sectioned["judge_calls"] == 0 and "def extract_section" in sectioned["custom_code"]


async def test_a_gate_must_name_another_metric(settings: Settings, sandbox: SandboxAdmin) -> None:
    from support import ToolFailed

    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "convert_to_custom_code", {"metric_id": metric["id"], "call_ids": _calls(sandbox, 1),
                                                          "gate_metric": "Caller Mood"})
    assert "gate_metric" in str(failure.value) and "Caller Sentiment" in str(failure.value)


async def test_a_judge_error_makes_the_draft_na_with_the_reason_not_false(settings: Settings,
                                                                          sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("sentiment")
    call_ids = _calls(sandbox, 1)
    sandbox.fault(f"/test_framework/v1/metrics-external/{metric['id']}/{JUDGE_PATH}", "500", count=5)
    async with connect(settings) as client:
        proposal = await call(client, "convert_to_custom_code", {"metric_id": metric["id"], "call_ids": call_ids})
    row = proposal["rows"][0]
    assert row["draft"] == "N/A" and row["errors"] and row["errors"][0].startswith("JudgeCallFailed")
    assert not proposal["ready"]  # not offered: the judge never answered
    assert "a failed judge call is N/A with its reason, never FALSE" in proposal["custom_code"]


async def test_a_draft_with_na_rules_asks_for_valid_skip(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")  # its prompt has an N/A rule
    async with connect(settings) as client:
        proposal = await call(client, "convert_to_custom_code", {"metric_id": metric["id"],
                                                                  "call_ids": _calls(sandbox, 3)})
    assert proposal["ready"], proposal["rows"]
    assert "VALID_SKIP" in proposal["custom_code"] and any("VALID_SKIP" in s for s in proposal["what_it_does"])
