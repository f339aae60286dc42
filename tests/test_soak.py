"""The fault soak in its short form (benchmarks/soak.py runs it long), and the specific cases it exposed:
a vote whose answer was lost is not sent again while it may still land; a Lab entry refused by a 429 is
sent again later; an auto-improve start with an unknown outcome is never repeated; the verdict is
reported even when what follows it fails."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import httpx
import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import Ledger
from support import SANDBOX_KEY, SandboxAdmin, ToolFailed, call, connect, wait_until

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import Admin  # noqa: E402
from benchmarks.soak import run_soak  # noqa: E402

pytestmark = pytest.mark.anyio
CALLS = "/observability/v1/call-logs-external/"
V2_CALLS = "/observability/v2/call-logs/"


def _vote_path(sandbox: SandboxAdmin, call_id: int) -> str:
    """Where the client's vote on the call goes: v2 where the sandbox serves it (documented dialect), else v1."""
    calls = V2_CALLS if sandbox.info()["dialect"] == "documented" else CALLS
    return f"{calls}{call_id}/mark_metric_vote"


def _landed(sandbox: SandboxAdmin, contains: str) -> list[dict[str, object]]:
    """Answered 2xx by the API itself: a `delay` or a released hold still reaches it; other faults answer instead."""
    return [r for r in sandbox.requests("POST", contains)
            if r["status"] == 200 and r["fault"] in (None, "delay", "hold", "hold-drop")]


async def test_short_soak_loses_nothing_and_repeats_nothing(tmp_path: Path, sandbox: SandboxAdmin) -> None:
    # One round (a session under injected faults, one SIGKILL mid-write and a restart); benchmarks/soak.py runs
    # twenty. The round's time bound (max_seconds) is only a bound against a hang, never a limit a loaded machine
    # could reach: a round cut short would count as a problem.
    admin = Admin(sandbox.url, key=SANDBOX_KEY)
    try:
        report = await run_soak(admin, rounds=1, seed=3, max_seconds=540, fault_rate=0.35, scratch=tmp_path)
    finally:
        admin.close()
    lines = "\n".join(report.lines())
    assert len(report.rounds) == 1
    assert all(not r.problems for r in report.rounds), lines
    assert sum(sum(r.faults.values()) for r in report.rounds) > 0, "faults were injected"
    assert all(r.votes >= 6 and r.lab_entries >= 1 for r in report.rounds), lines
    assert all(r.killed_mid_write for r in report.rounds), f"the kill came while a write was held\n{lines}"


def test_the_request_log_names_the_fault_each_request_met(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    sandbox.fault(CALLS, "500", count=1)
    for _ in range(2):
        with contextlib.suppress(httpx.HTTPStatusError):
            sandbox.api("GET", CALLS, params={"agent_id": agent, "page_size": 1})
    assert [r["fault"] for r in sandbox.requests("GET", CALLS)] == ["500", None]


async def test_an_unanswered_vote_is_not_sent_again_while_it_may_still_land(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    # The vote reaches 'Cekura', its answer is lost (the connection closes unanswered at once), and it lands only
    # when the test releases it. The server waits twice the HTTP timeout before it may take "not reviewed" for
    # "never arrived"; that wait is measured on the server's clock, which stands still here: however slowly the
    # machine runs the calls below, they all come inside the wait, and no request has to beat a timeout.
    stopped = time.time()
    async with connect(settings, clock=lambda: stopped) as client:
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
        call_id = review["call"]["id"]
        args = {"agent_id": agent, "metric_id": metric, "call_id": call_id, "agree": True}
        sandbox.fault(_vote_path(sandbox, call_id), "hold-drop")
        with pytest.raises(ToolFailed, match=r"\[outcome_unknown\]"):
            await call(client, "record_review", args)
        # Asked again: the first vote is still on its way, so nothing is sent.
        with pytest.raises(ToolFailed, match=r"\[outcome_unknown\] The earlier vote .* Wait \d+ s"):
            await call(client, "record_review", args)
        progress = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
        assert progress["reviewed"] == 0 and any("vote outcome not known yet" in c for c in progress["check"])
        assert len(sandbox.requests("POST", "mark_metric_vote")) == 1
        assert sandbox.release() == 1
        await wait_until(lambda: (r := sandbox.request_to("POST", f"/{call_id}/mark_metric_vote")) and r["ended"],
                         "the late vote land")
        progress = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
    assert progress["reviewed"] == 1 and progress["check"] == []
    assert len(_landed(sandbox, "mark_metric_vote")) == 1


async def test_a_vote_that_never_arrived_is_sent_once_the_wait_is_over(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    # The server waits twice the HTTP timeout before it takes "not reviewed" for "never arrived". That wait is
    # measured on the server's clock, which the test moves on past it instead of sleeping: no request of the test
    # has to beat a short timeout on a loaded machine (the dropped vote fails at once, the connection closed).
    moved_on = [0.0]
    async with connect(settings, clock=lambda: time.time() + moved_on[0]) as client:
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
        call_id = review["call"]["id"]
        sandbox.fault(_vote_path(sandbox, call_id), "drop")
        args = {"agent_id": agent, "metric_id": metric, "call_id": call_id, "agree": True}
        with pytest.raises(ToolFailed, match=r"\[outcome_unknown\]"):
            await call(client, "record_review", args)
        with pytest.raises(ToolFailed, match=r"\[outcome_unknown\] The earlier vote .* Wait \d+ s"):
            await call(client, "record_review", args)  # inside the wait: nothing is sent
        assert len(sandbox.requests("POST", "mark_metric_vote")) == 1
        moved_on[0] = 2 * settings.http_timeout_seconds + 1
        progress = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
    assert progress["reviewed"] == 1 and progress["feedback"] == 1
    assert len(_landed(sandbox, "mark_metric_vote")) == 1
    assert len(_landed(sandbox, "create_from_call_log")) == 1


async def test_a_lab_entry_refused_by_a_long_429_is_sent_again_later(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    async with connect(settings) as client:
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
        sandbox.fault("/test_framework/test-sets/create_from_call_log", "429", retry_after=600)
        recorded = await call(client, "record_review", {"agent_id": agent, "metric_id": metric,
                                                        "call_id": review["call"]["id"], "agree": True})
        assert "refused" in recorded["recorded"] and recorded["progress"]["feedback"] == 0
        progress = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
    assert progress["feedback"] == 1
    assert len(_landed(sandbox, "create_from_call_log")) == 1


async def test_an_auto_improve_start_with_an_unknown_outcome_is_never_repeated(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    # One Lab entry starts it: no disagreement needed here (the rule's minimum is a setting).
    few = settings.model_copy(update={"feedback_threshold": 1, "improve_min_disagreements": 0})
    async with connect(few) as client:
        await call(client, "start_review", {"agent_id": agent, "metric_id": metric, "auto_improve": True})
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
        sandbox.fault("/test_framework/metric-reviews/process_feedbacks", "500")
        recorded = await call(client, "record_review", {"agent_id": agent, "metric_id": metric,
                                                        "call_id": review["call"]["id"], "agree": True})
        # The verdict is recorded and says so; the failed start is reported with it, not instead of it.
        assert recorded["progress"]["reviewed"] == 1 and "Vote sent" in recorded["recorded"]
        assert "Starting auto-improve" in recorded["recorded"] and recorded["improvement"] is None
        assert any(c.startswith("auto-improve") for c in recorded["progress"]["check"])
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
        again = await call(client, "record_review", {"agent_id": agent, "metric_id": metric,
                                                     "call_id": review["call"]["id"], "agree": True})
    assert again["improvement"] is None
    assert len(sandbox.requests("POST", "process_feedbacks")) == 1
    ledger = Ledger(few.ledger_path)
    session = ledger.open_session(metric, agent, 1)
    improvement = ledger.latest_improvement(session.id)
    assert improvement is not None and improvement.state == "unknown"
