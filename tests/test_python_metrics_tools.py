"""test_custom_code and convert_to_custom_code through a real MCP client against the sandbox."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.custom_code import runner as runner_module
from cekura_labs_mcp.server.custom_code.runner import Isolation
from cekura_labs_mcp.server.ledger import Ledger
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
    assert report["sandbox"] == "bwrap" and "UNSANDBOXED" not in report["summary"]


async def test_without_an_os_sandbox_code_is_refused_in_one_line(
        settings: Settings, sandbox: SandboxAdmin, monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = "custom code was not run: bubblewrap (`bwrap`) is not installed. Install bubblewrap; or set " \
              "CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1 to run it without an OS sandbox"
    monkeypatch.setattr(runner_module, "_probed", [Isolation(sys.executable, kind="refused", refusal=refusal)])
    metric = sandbox.metric_named(UNDER_FIVE)
    call_ids = _calls(sandbox, sandbox.metric_named("one question")["id"], 2)
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids, "code": JUDGED})
    assert "not installed" in str(failure.value) and "CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1" in str(failure.value)
    assert "Traceback" not in str(failure.value) and len(str(failure.value).splitlines()) == 1
    assert _judge_requests(sandbox) == [] and sandbox.credits() == 0


async def test_with_the_opt_in_every_answer_says_unsandboxed(
        settings: Settings, sandbox: SandboxAdmin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "_probed", [Isolation(os.path.realpath(sys.executable), kind="unsandboxed")])
    metric = sandbox.metric_named(UNDER_FIVE)
    call_ids = _calls(sandbox, sandbox.metric_named("one question")["id"], 2)
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids})
    assert report["ok"] == 2 and report["sandbox"] == "unsandboxed"
    assert report["summary"].startswith("The code ran UNSANDBOXED")
    assert report["isolation"][0].startswith("ran UNSANDBOXED")


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
    # Stopped at its line by whichever limit comes first on this machine's load (CPU 3 s, wall 5 s); which
    # limit is which is tested in test_custom_code.py with room between them.
    assert report["calls"][0]["status"] in ("cpu_limit", "timeout")
    # The message names the line and, where the runner has it, quotes it.
    assert re.match(r"(Cpu)?TimeLimit at line [12]( \(`[^`]*`\))?:", report["calls"][0]["errors"][0])
    assert after


async def test_refused_before_running(settings: Settings, sandbox: SandboxAdmin) -> None:
    judge_metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "test_custom_code", {"metric_id": judge_metric["id"], "call_ids": [1]})
    assert "has no custom_code" in str(failure.value)


# ---- judge calls from code, under the cost guard -------------------------------------------------------

JUDGED = ("r = evaluate_llm_judge_metric(data, api_key='sk-not-forwarded', description='Did the agent greet?',"
          " eval_type='binary_workflow_adherence')\n_result = r['result'] == 5\n_explanation = r['explanation']\n")


def _judge_requests(sandbox: SandboxAdmin) -> list[dict[str, Any]]:
    return sandbox.requests("POST", "evaluate_llm_judge_metric")


async def test_judge_calls_are_guarded_served_and_counted(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    call_ids = _calls(sandbox, metric["id"], 3)
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids,
                                                         "code": JUDGED})
    assert report["ok"] == 3 and report["judge_calls"] == 3
    assert report["confirmation"] == "none" and report["credits_estimated"] == pytest.approx(0.6)
    sent = _judge_requests(sandbox)
    assert len(sent) == 3 and sandbox.credits() == pytest.approx(0.6)
    assert sent[0]["path"] == f"/test_framework/v1/metrics-external/{metric['id']}/evaluate_llm_judge_metric/"
    assert sent[0]["body"]["description"] == "Did the agent greet?"
    assert "sk-not-forwarded" not in json.dumps(sent)
    audit = Ledger(settings.ledger_path).audit_entries()
    assert audit[0]["operation"] == "custom_code_test" and audit[0]["outcome"] == "succeeded"
    assert audit[0]["detail"] == "3 judge call(s) made by custom_code"


async def test_a_judge_loop_is_stopped_at_its_budget(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    call_ids = _calls(sandbox, metric["id"], 2)
    loop = "while True:\n    try:\n        evaluate_llm_judge_metric(data)\n    except Exception:\n        pass\n"
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"], "call_ids": call_ids,
                                                         "code": loop, "judge_calls_per_call": 2})
    assert [c["status"] for c in report["calls"]] == ["judge_limit", "judge_limit"]
    assert len(_judge_requests(sandbox)) == 4 and report["judge_calls"] == 4


async def test_judge_calls_hidden_from_the_plan_are_refused(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    hidden = "f = globals()['evaluate_' + 'llm_judge_metric']\nr = f(data)\n_result = True\n_explanation = 'x'\n"
    async with connect(settings) as client:
        report = await call(client, "test_custom_code", {"metric_id": metric["id"],
                                                         "call_ids": _calls(sandbox, metric["id"], 1),
                                                         "code": hidden})
    assert report["calls"][0]["errors"][0].startswith("JudgeCallFailed: no judge call is allowed for this run")
    assert not report["calls"][0]["ok"]
    assert _judge_requests(sandbox) == [] and report["confirmation"] == "not_needed"


async def test_above_the_threshold_nothing_is_spent_without_confirmation(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    strict = settings.model_copy(update={"confirm_threshold": 2})
    metric = sandbox.metric_named("one question")
    args = {"metric_id": metric["id"], "call_ids": _calls(sandbox, metric["id"], 3), "code": JUDGED}
    async with connect(strict) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "test_custom_code", args)
        assert "Confirmation required" in str(failure.value) and _judge_requests(sandbox) == []
        token = str(failure.value).split('confirmation_token="')[1].split('"')[0]
        report = await call(client, "test_custom_code", {**args, "confirmation_token": token})
    assert report["confirmation"] == "token" and len(_judge_requests(sandbox)) == 3


# ---- conversion, apply and re-run ------------------------------------------------------------------


def _mixed_calls(sandbox: SandboxAdmin, metric_id: int, per_value: int) -> list[int]:
    """Some calls for each value the judge gave (N/A included), so the draft meets every case."""
    by_value: dict[str, list[int]] = {}
    for call_id, truth in sorted(sandbox.truth(metric_id).items()):
        by_value.setdefault(str(truth["actual"]), []).append(int(call_id))
    return sorted(c for ids in by_value.values() for c in ids[:per_value])


@pytest.mark.parametrize("fragment", ["one question", "sentiment"])
async def test_a_converted_metric_matches_the_judge_version(
    settings: Settings, sandbox: SandboxAdmin, fragment: str
) -> None:
    metric = sandbox.metric_named(fragment)
    call_ids = _mixed_calls(sandbox, metric["id"], 3)
    async with connect(settings) as client:
        proposal = await call(client, "convert_to_custom_code", {"metric_id": metric["id"], "call_ids": call_ids})
    assert proposal["ready"] and proposal["tested_on"] == len(call_ids)
    assert proposal["matches_judge"] == len(call_ids), proposal["rows"]
    assert "evaluate_llm_judge_metric(" in proposal["custom_code"]
    settled_in_code = sum(1 for row in proposal["rows"] if row["draft"] == "N/A") if fragment == "one question" else 0
    assert proposal["judge_calls"] == len(call_ids) - settled_in_code
    if fragment == "one question":
        assert settled_in_code > 0 and any("fewer than 3" in step for step in proposal["what_it_does"])
    else:
        assert "'Testing Agent'" in proposal["custom_code"]  # the sentiment prompt reads only the caller


def _review(settings: Settings, sandbox: SandboxAdmin, metric_id: int, agent_id: int, call_ids: list[int]) -> None:
    ledger = Ledger(settings.ledger_path)
    session = ledger.open_session(metric_id, agent_id, settings.feedback_threshold)
    truth = sandbox.truth(metric_id)
    for call_id in call_ids:
        seen = truth[str(call_id)]
        review_id = ledger.begin_review(session.id, call_id=call_id, metric_id=metric_id,
                                        agreed=seen["expected"] == seen["actual"], result_was=str(seen["actual"]),
                                        expected=seen["expected"], feedback="")
        ledger.mark_vote(review_id, "sent")
    ledger.close()


async def test_apply_and_rerun_through_the_sandbox(settings: Settings, sandbox: SandboxAdmin) -> None:
    # The sandbox re-runs the applied code in its OS sandbox, one process per call, inside the request: on a
    # loaded machine that takes longer than the fixture's 2 s HTTP timeout, which this test is not about.
    settings = settings.model_copy(update={"http_timeout_seconds": 30.0})
    metric = sandbox.metric_named("booked")
    agent_id = sandbox.info()["main_agent_id"]
    reviewed = _mixed_calls(sandbox, metric["id"], 2)
    _review(settings, sandbox, metric["id"], agent_id, reviewed)
    judge_before = {int(c): t["actual"] for c, t in sandbox.truth(metric["id"]).items() if int(c) in reviewed}
    async with connect(settings) as client:
        proposal = await call(client, "convert_to_custom_code", {"metric_id": metric["id"], "agent_id": agent_id})
        assert proposal["ready"] and proposal["tested_on"] == len(reviewed)
        assert proposal["person_verdicts"] == len(reviewed)
        change = {"metric_id": metric["id"], "custom_code": proposal["custom_code"], "type": "custom_code"}
        preview = await call(client, "patch_metric", change)
        assert not preview["applied"] and "type: llm_judge → custom_code" in preview["diff"]
        applied = await call(client, "patch_metric", {**change, "confirm": True})
        assert applied["applied"]
        report = await call(client, "validate_metric", {"agent_id": agent_id, "metric_id": metric["id"]})
    stored = sandbox.api("GET", f"/test_framework/v1/metrics/{metric['id']}/")
    assert stored["type"] == "custom_code" and stored["custom_code"] == proposal["custom_code"]
    assert report["reviewed"]["calls"] == len(reviewed)
    # same verdicts, now from code
    assert report["reviewed"]["after"]["agreement"] == report["reviewed"]["before"]["agreement"]
    sandbox.landed_credits()  # every evaluation landed: the results below are the code's
    judge_after = {int(c): t["actual"] for c, t in sandbox.truth(metric["id"]).items() if int(c) in reviewed}
    assert judge_after == judge_before
    assert sandbox.stats()["evaluations"]["custom_code"] >= len(reviewed)


async def test_the_sandbox_runs_api_code_in_a_separate_process(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named(UNDER_FIVE)
    agent_id = sandbox.info()["main_agent_id"]
    call_id = _calls(sandbox, sandbox.metric_named("one question")["id"], 1)
    code = (f"import os\n_result = os.getpid() != {os.getpid()}\n_explanation = 'own process'\n"
            "import socket\ntry:\n    socket.socket()\nexcept PermissionError as exc:\n    _explanation = str(exc)\n")
    async with connect(settings) as client:
        await call(client, "patch_metric", {"metric_id": metric["id"], "custom_code": code, "confirm": True})
        await call(client, "rerun_evaluation", {"agent_id": agent_id, "call_ids": call_id})
    sandbox.landed_credits()  # the re-run landed (the documented dialect evaluates in the background)
    detail = sandbox.api("GET", f"/observability/v1/call-logs-external/{call_id[0]}/")
    result = next(m for m in detail["evaluation"]["metrics"] if m["id"] == metric["id"])
    assert sandbox.truth(metric["id"])[str(call_id[0])]["actual"] == "TRUE"
    assert "blocked: socket" in result["explanation"][0]


async def test_patch_metric_refuses_code_that_does_not_compile(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named(UNDER_FIVE)
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "patch_metric", {"metric_id": metric["id"], "custom_code": "_result = (\n",
                                                "type": "custom_code", "confirm": True})
    assert "does not compile: SyntaxError at line 1" in str(failure.value)
    assert sandbox.requests("PATCH") == []
