"""The client against the sandbox's `documented` dialect (what Cekura's docs and skills show): v2 call-log
endpoints with a remembered v1 fallback, an organisation-level key's `project_id`, fresh results read by id
after an asynchronous evaluation, the judge endpoint polled, the proposal with its trigger and scores, the
auto-improve question answered, history/restore, billing and metric costs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import MetricFeedback, ProgressState, SkipQuestion
from cekura_labs_mcp.server.cekura.results import read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import ProjectRequiredError
from cekura_labs_mcp.server.guard import AutoImproveClaim, AutoImproveRuns
from cekura_labs_mcp.server.ledger import Ledger
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


async def _lab(client: CekuraClient, sandbox: SandboxAdmin, metric_id: int, count: int) -> list[int]:
    """`count` Lab entries disagreeing with the metric, each with a reason."""
    agent = sandbox.info()["main_agent_id"]
    rows = (await client.list_calls(agent_id=agent, page_size=count)).results
    sets = []
    for row in rows:
        result = row.metric(metric_id)
        assert result is not None
        reading = read_result(result)
        flipped = None if reading.kind == "pass" else True
        entry = MetricFeedback(metric=metric_id, feedback="The caller asked one thing at a time; the agent did too.",
                               expected_value=flipped)
        sets.append((await client.create_test_set_from_call(call_log_id=row.id, metrics=[entry])).id)
    return sets


async def _start(client: CekuraClient, metric_id: int, sets: list[int]) -> str:
    """Start auto-improve the way the server does: through the auto-improve log's claim (scratch ledger)."""

    async def begin(claim: AutoImproveClaim) -> str:
        return await client.process_feedbacks(claim, metric_id=metric_id, test_set_ids=sets)

    async def running(_progress_id: str) -> bool:
        return False

    runs = AutoImproveRuns(Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite3"))
    return (await runs.start(metric_id=metric_id, test_set_ids=sets, begin=begin, running=running)).progress_id


async def _poll(client: CekuraClient, progress_id: str) -> ProgressState:
    state = await client.get_progress(progress_id)
    for _ in range(40):
        if state.done or state.waiting:
            return state
        await anyio.sleep(0.02)
        state = await client.get_progress(progress_id)
    return state


async def test_a_paused_auto_improve_shows_its_question_and_resumes_on_the_answer(sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    sandbox._http.post("/_sandbox/auto-improve/questions", json={"count": 1}).raise_for_status()
    async with _client(sandbox) as client:
        sets = await _lab(client, sandbox, metric["id"], 2)
        progress_id = await _start(client, metric["id"], sets)
        paused = await _poll(client, progress_id)
        assert paused.waiting and not paused.done
        question = paused.questions[0]
        assert question.id and question.text and question.call_ids and question.context
        await client.process_feedbacks_answer(progress_id, {question.id: "Only the agent's turns count."})
        finished = await _poll(client, progress_id)
    assert finished.done and finished.proposal is not None
    proposal = finished.proposal
    assert proposal.improved_metric_description and proposal.improved_trigger_kind in ("always", "llm_judge",
                                                                                        "custom_code")
    assert proposal.old_score is not None and proposal.new_score is not None
    assert any("Only the agent's turns count." in str(edit) for edit in proposal.feedback_edits)
    answers = sandbox.requests("POST", "process_feedbacks_answer")
    assert answers[0]["body"] == {"progress_id": progress_id, "answers": {question.id: "Only the agent's turns count."}}


async def test_a_question_can_be_skipped_and_a_run_cancelled(sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    sandbox._http.post("/_sandbox/auto-improve/questions", json={"count": 1}).raise_for_status()
    async with _client(sandbox) as client:
        sets = await _lab(client, sandbox, metric["id"], 2)
        skipped = await _start(client, metric["id"], sets)
        paused = await _poll(client, skipped)
        await client.process_feedbacks_answer(skipped, {q.id: SkipQuestion() for q in paused.questions})
        resumed = await _poll(client, skipped)
        sandbox._http.post("/_sandbox/auto-improve/questions", json={"count": 1}).raise_for_status()
        cancelled = await _start(client, metric["id"], sets)
        await _poll(client, cancelled)
        await client.process_feedbacks_cancel(cancelled)
        after = await client.get_progress(cancelled)
    assert resumed.done and resumed.proposal is not None
    assert after.done and after.proposal is None and (after.status or "").lower() == "cancelled"


async def test_a_proposal_is_applied_and_undone_through_history_and_restore(sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    async with _client(sandbox) as client:
        original = await client.get_metric(metric["id"])
        sets = await _lab(client, sandbox, metric["id"], 2)
        progress_id = await _start(client, metric["id"], sets)
        finished = await _poll(client, progress_id)
        assert finished.proposal is not None
        await client.apply_optimisation_proposal(metric["id"])
        applied = await client.get_metric(metric["id"])
        history = await client.metric_history(metric["id"])
        before_apply = next(v for v in history.results if v.description == original.description)
        restored = await client.restore_metric(metric["id"], before_apply.history_id)
    assert applied.description == finished.proposal.improved_metric_description != original.description
    assert restored.description == original.description
    assert (await _reread(sandbox, metric["id"])) == original.description


async def _reread(sandbox: SandboxAdmin, metric_id: int) -> str:
    async with _client(sandbox) as client:
        return (await client.get_metric(metric_id)).description
