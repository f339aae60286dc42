"""Votes, Lab entries, auto-improve and patching, through a real MCP client against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import Ledger
from support import SandboxAdmin, ToolFailed, call, connect

# Cekura answers in more than one shape: these run against both sandbox dialects (tests/conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.both_dialects]


def _misjudged(sandbox: SandboxAdmin, metric_id: int) -> list[int]:
    return [int(cid) for cid, t in sandbox.truth(metric_id).items() if t["pattern"]]


async def test_vote_disagree_is_sent_as_the_spec_says(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    call_id = _misjudged(sandbox, metric["id"])[0]
    async with connect(settings) as client:
        receipt = await call(client, "mark_metric_vote", {
            "call_id": call_id, "metric_id": metric["id"], "thumbs_up": False, "expected_value": True,
            "feedback": "At 00:40 the agent asked for postcode and address together: one confirmation, TRUE."})
    assert receipt["agreed"] is False and receipt["expected"] == "TRUE"
    votes = sandbox.requests("POST", "mark_metric_vote")
    assert len(votes) == 1
    assert votes[0]["body"] == {"metric_id": metric["id"], "thumbs_up": False, "expected_value": True,
                                "feedback": "At 00:40 the agent asked for postcode and address together: "
                                            "one confirmation, TRUE."}
    detail = sandbox.api("GET", f"/observability/v1/call-logs-external/{call_id}/")
    assert detail["is_reviewed"] is True


async def test_vote_na_is_an_explicit_null(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("booked")
    call_id = next(int(c) for c, t in sandbox.truth(metric["id"]).items() if t["expected"] is None)
    async with connect(settings) as client:
        await call(client, "mark_metric_vote", {
            "call_id": call_id, "metric_id": metric["id"], "thumbs_up": False, "expected_value": "N/A",
            "feedback": "Billing-only call at 00:10, no booking was asked for: N/A."})
    body = sandbox.requests("POST", "mark_metric_vote")[0]["body"]
    assert "expected_value" in body and body["expected_value"] is None


async def test_vote_agree_defaults_to_current_value(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("sentiment")
    call_id, truth = next((int(c), t) for c, t in sandbox.truth(metric["id"]).items() if not t["pattern"])
    async with connect(settings) as client:
        await call(client, "mark_metric_vote", {"call_id": call_id, "metric_id": metric["id"], "thumbs_up": True})
    body = sandbox.requests("POST", "mark_metric_vote")[0]["body"]
    assert body["thumbs_up"] is True and body["expected_value"] == truth["actual"]


@pytest.mark.parametrize(("args", "field"), [
    ({"thumbs_up": False, "feedback": "At 00:40 wrong"}, "expected_value"),
    ({"thumbs_up": False, "expected_value": True}, "feedback"),
    ({"thumbs_up": False, "expected_value": "maybe", "feedback": "At 00:40 x"}, "expected_value"),
])
async def test_vote_refused_before_sending(
    settings: Settings, sandbox: SandboxAdmin, args: dict[str, Any], field: str
) -> None:
    metric = sandbox.metric_named("one question")
    call_id = _misjudged(sandbox, metric["id"])[0]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "mark_metric_vote", {"call_id": call_id, "metric_id": metric["id"], **args})
    assert field in str(failure.value)
    assert sandbox.requests("POST", "mark_metric_vote") == []


async def test_lab_entry_and_bare_ids_refused(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    call_id = _misjudged(sandbox, metric["id"])[0]
    async with connect(settings) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "create_test_set_from_call", {"call_log_id": call_id, "metrics": [metric["id"]]})
        assert '"metric":' in str(failure.value) and "feedback" in str(failure.value)
        assert sandbox.requests("POST", "create_from_call_log") == []
        entry = await call(client, "create_test_set_from_call", {"call_log_id": call_id, "metrics": [
            {"metric": metric["id"], "feedback": "At 00:40 a single confirmation turn.", "expected_value": True}]})
    assert entry["test_set_id"] > 0
    sent = sandbox.requests("POST", "create_from_call_log")
    assert len(sent) == 1
    assert sent[0]["body"]["metrics"] == [{"metric": metric["id"], "feedback": "At 00:40 a single confirmation turn.",
                                           "expected_value": True}]


async def _fill_lab(client: Any, sandbox: SandboxAdmin, metric_id: int, n: int = 6) -> list[int]:
    test_sets = []
    for call_id in _misjudged(sandbox, metric_id)[:n]:
        entry = await call(client, "create_test_set_from_call", {"call_log_id": call_id, "metrics": [
            {"metric": metric_id, "expected_value": True,
             "feedback": "At 00:40 the agent confirmed postcode and address in one turn; related details are "
                         "one question, so this should be TRUE."}]})
        test_sets.append(entry["test_set_id"])
    return test_sets


async def test_auto_improve_polls_with_progress_then_shows_diff(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    before = sandbox.api("GET", f"/test_framework/v1/metrics/{metric['id']}/")["description"]
    notes: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, message))

    async with connect(settings) as client:
        test_sets = await _fill_lab(client, sandbox, metric["id"])
        started = await call(client, "process_feedbacks", {"metric_id": metric["id"], "test_set_ids": test_sets})
        result = await call(client, "poll_progress", {"progress_id": started["progress_id"],
                                                      "metric_id": metric["id"], "wait_seconds": 30},
                            progress_callback=on_progress)
    assert result["done"] is True
    assert result["diff"].startswith("--- current") and "\n+" in result["diff"]
    assert result["new_score"]["score"] >= result["old_score"]["score"]
    assert len(notes) >= 2 and notes[-1][0] == 1.0
    assert sandbox.requests("POST", "process_feedbacks")[0]["body"]["test_set_ids"] == test_sets
    # Nothing applied until patched.
    assert sandbox.api("GET", f"/test_framework/v1/metrics/{metric['id']}/")["description"] == before


async def test_poll_that_times_out_says_how_to_resume(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        await _fill_lab(client, sandbox, metric["id"], n=2)
        started = await call(client, "process_feedbacks", {"metric_id": metric["id"]})
        result = await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 0.1})
        assert result["done"] is False and started["progress_id"] in result["message"]
        finished = await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 30})
    assert finished["done"] is True


async def test_patch_needs_confirm_and_can_roll_back(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    path = f"/test_framework/v1/metrics/{metric['id']}/"
    original = sandbox.api("GET", path)["description"]
    new_text = original + "\nDO NOT FLAG: confirming related details (postcode and address) in one turn."
    async with connect(settings) as client:
        preview = await call(client, "patch_metric", {"metric_id": metric["id"], "description": new_text})
        assert preview["applied"] is False and "+DO NOT FLAG" in preview["diff"]
        assert sandbox.requests("PATCH") == []
        applied = await call(client, "patch_metric", {"metric_id": metric["id"], "description": new_text,
                                                      "confirm": True})
        assert applied["applied"] is True
        assert sandbox.api("GET", path)["description"] == new_text
        await call(client, "rollback_metric", {"metric_id": metric["id"], "confirm": True})
    assert sandbox.api("GET", path)["description"] == original
    versions = Ledger(settings.ledger_path).metric_versions(metric["id"])
    assert [v.reason for v in versions] == ["rollback", "patch"]
    assert versions[1].previous == {"description": original}


async def test_patch_errors(settings: Settings, sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match="description"):
            await call(client, "patch_metric", {"metric_id": metric["id"], "confirm": True})
        with pytest.raises(ToolFailed, match="custom_code"):
            await call(client, "patch_metric", {"metric_id": metric["id"], "type": "custom_code", "confirm": True})
        with pytest.raises(ToolFailed, match="not found"):
            await call(client, "patch_metric", {"metric_id": 987_654, "description": "x", "confirm": True})
        with pytest.raises(ToolFailed, match="No earlier version"):
            await call(client, "rollback_metric", {"metric_id": metric["id"], "confirm": True})
    assert sandbox.requests("PATCH") == []


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_patch_asks_the_person_with_the_diff_where_the_client_can(
    settings: Settings, sandbox: SandboxAdmin, mode: str
) -> None:
    from mcp.types import ElicitRequestParams, ElicitResult

    metric = sandbox.metric_named("one question")
    path = f"/test_framework/v1/metrics/{metric['id']}/"
    original = sandbox.api("GET", path)["description"]
    change = {"metric_id": metric["id"], "description": original + "\nDO NOT FLAG: greetings.", "confirm": True}
    asked: list[str] = []

    def person(says: bool) -> Any:
        async def answer(_context: Any, params: ElicitRequestParams) -> ElicitResult:
            asked.append(params.message)
            return ElicitResult(action="accept", content={"apply": says})
        return answer

    async with connect(settings, mode=mode, elicitation_callback=person(False)) as client:
        with pytest.raises(ToolFailed, match="did not approve"):
            await call(client, "patch_metric", change)
        preview = await call(client, "patch_metric", {**change, "confirm": False})
    assert sandbox.requests("PATCH") == [] and preview["applied"] is False
    assert len(asked) == 1 and "+DO NOT FLAG: greetings." in asked[0], "only confirm=true asks, with the diff"
    async with connect(settings, mode=mode, elicitation_callback=person(True)) as client:
        applied = await call(client, "patch_metric", change)
        restored = await call(client, "rollback_metric", {"metric_id": metric["id"], "confirm": True})
    assert applied["applied"] and restored["applied"]
    assert "Restore the earlier version" in asked[-1]
    assert sandbox.api("GET", path)["description"] == original
