"""The client against hand-built answers (httpx MockTransport): v2 first with a remembered v1 fallback, the
call-log poll by ids, auto-improve questions and the whole proposal, history/restore, the async judge
endpoint, billing, metric costs and the organisation key's `project_id`. Paths and shapes are the spec's
(`/work/shared/cekura-openapi-subset.json`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient, RetryPolicy
from cekura_labs_mcp.server.cekura.models import BillingInfo, MetricFeedback, SkipQuestion
from cekura_labs_mcp.server.errors import (
    CekuraError,
    InsufficientCreditsError,
    JudgeStillRunningError,
    NotFoundError,
    ProjectRequiredError,
    RequestRejectedError,
    ValidationFailedError,
)
from pydantic import SecretStr
from support import guard_permit

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(max_retries=1, backoff_base=0.0, backoff_cap=0.0)
V1_LIST = "/observability/v1/call-logs-external/"
V2_LIST = "/observability/v2/call-logs/"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A fake Cekura: `routes` maps (method, path) to an answer; everything else is a 404."""

    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"detail": "Not found."})
        if callable(answer):
            result: httpx.Response = answer(request)
            return result
        return httpx.Response(200, json=answer)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.seen]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.seen[index].content)


def client_for(fake: Handler, project_id: int | None = None) -> CekuraClient:
    return CekuraClient("https://cekura.test", SecretStr("k"), retry=FAST, transport=httpx.MockTransport(fake),
                        project_id=project_id)


def row(call_id: int, **fields: Any) -> dict[str, Any]:
    return {"id": call_id, "call_id": f"c{call_id}", **fields}


def page(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"count": len(rows), "next": None, "previous": None, "results": list(rows)}


# ---- v2 first, v1 where a deployment answers 404 ----------------------------------------------------------

async def test_v2_is_asked_first_and_v1_never_when_v2_answers() -> None:
    fake = Recorder({("GET", V2_LIST): page(row(1)), ("GET", f"{V2_LIST}1/"): row(1)})
    async with client_for(fake) as client:
        await client.list_calls(agent_id=3)
        await client.get_call(1)
        assert client.generation("list") == "v2"
    assert fake.paths() == [V2_LIST, f"{V2_LIST}1/"]


async def test_a_deployment_without_v2_is_asked_v1_and_remembered_per_endpoint() -> None:
    fake = Recorder({("GET", V1_LIST): page(row(1)), ("GET", f"{V1_LIST}1/"): row(1),
                     ("POST", f"{V1_LIST}1/mark_metric_vote/"): {"detail": "ok"}})
    async with client_for(fake) as client:
        await client.list_calls(agent_id=3)
        await client.list_calls(agent_id=3, page=2)
        await client.get_call(1)
        await client.get_call(1)
        await client.mark_metric_vote(1, metric_id=9, thumbs_up=True, expected_value=True, feedback=None)
        assert (client.generation("list"), client.generation("detail"), client.generation("vote")) == \
            ("v1", "v1", "v1")
    assert fake.paths() == [V2_LIST, V1_LIST, V1_LIST, f"{V2_LIST}1/", f"{V1_LIST}1/", f"{V1_LIST}1/",
                            f"{V2_LIST}1/mark_metric_vote/", f"{V1_LIST}1/mark_metric_vote/"]
    assert fake.body() == {"metric_id": 9, "thumbs_up": True, "expected_value": True, "feedback": None}


async def test_a_missing_call_is_not_taken_for_a_missing_endpoint() -> None:
    fake = Recorder({("GET", f"{V2_LIST}1/"): row(1)})
    async with client_for(fake) as client:
        await client.get_call(1)
        with pytest.raises(NotFoundError, match="Call 2"):
            await client.get_call(2)
        assert client.generation("detail") == "v2"
    assert fake.paths() == [f"{V2_LIST}1/", f"{V2_LIST}2/"], "v2 answered before: its 404 is a real one"


async def test_a_404_from_both_generations_is_not_found_and_remembers_nothing() -> None:
    fake = Recorder({})
    async with client_for(fake) as client:
        with pytest.raises(NotFoundError):
            await client.get_call(5)
        assert client.generation("detail") is None
    assert fake.paths() == [f"{V2_LIST}5/", f"{V1_LIST}5/"]


async def test_evaluate_and_rerun_use_v2_or_v1_actions() -> None:
    fake = Recorder({("POST", "/observability/v1/call-logs/evaluate_metrics/"): [row(1)],
                     ("POST", f"{V2_LIST}rerun_evaluation/"): [row(1)]})
    async with client_for(fake) as client:
        await client.evaluate_metrics(await guard_permit("evaluate_metrics"), agent_id=3, project_id=None,
                                      call_logs=[1], metrics=[9])
        await client.rerun_evaluation(await guard_permit("rerun_evaluation"), agent_id=3, call_logs=[1])
    assert fake.paths() == [f"{V2_LIST}evaluate_metrics/", "/observability/v1/call-logs/evaluate_metrics/",
                            f"{V2_LIST}rerun_evaluation/"]


# ---- fresh results: the list by ids -------------------------------------------------------------------------

async def test_calls_by_ids_reads_up_to_200_calls_per_request_with_updated_at_and_success() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        ids = [int(i) for i in request.url.params["call_ids"].split(",")]
        assert int(request.url.params["page_size"]) == len(ids) <= 200
        return httpx.Response(200, json=page(*[row(i, updated_at=f"2026-11-30T07:00:{i % 60:02d}Z",
                                                    success=None if i % 2 else True) for i in ids]))

    fake = Recorder({("GET", V2_LIST): answer})
    async with client_for(fake) as client:
        rows = await client.calls_by_ids([*range(1, 451), 7], agent_id=3)
    assert len(fake.seen) == 3
    assert sorted(rows) == list(range(1, 451))
    assert rows[61].updated_at == "2026-11-30T07:00:01Z" and rows[61].success is None and rows[2].success is True


# ---- auto-improve: questions, the whole proposal, answer and cancel -----------------------------------------

REVIEWS = "/test_framework/metric-reviews/"


async def test_a_paused_run_shows_its_questions_and_answers_are_keyed_by_question_id() -> None:
    paused = {"status": "waiting_for_answer", "questions": [
        {"id": "q1", "question": "Call 12 and call 19 imply opposite rules. Which is right?",
         "options": ["call 12", "call 19"], "call_log_id": 12, "context": "Agent: we are closed on Sunday."},
        {"question_id": 7, "text": "Is a voicemail an answered call?"}]}
    fake = Recorder({("GET", f"{REVIEWS}process_feedbacks_progress/"): paused,
                     ("POST", f"{REVIEWS}process_feedbacks_answer/"): {},
                     ("POST", f"{REVIEWS}process_feedbacks_cancel/"): {"id": 1}})
    async with client_for(fake) as client:
        state = await client.get_progress("p-1")
        await client.process_feedbacks_answer("p-1", {"q1": "call 19", "7": SkipQuestion()})
        await client.process_feedbacks_cancel("p-1")
    assert state.waiting and not state.done
    first, second = state.questions
    assert (first.id, first.options, first.call_ids) == ("q1", ["call 12", "call 19"], [12])
    assert first.context == "Agent: we are closed on Sunday."
    assert (second.id, second.text) == ("7", "Is a voicemail an answered call?")
    assert fake.body(1) == {"progress_id": "p-1", "answers": {"q1": "call 19", "7": {"action": "skip"}}}
    assert fake.body(2) == {"progress_id": "p-1"}


async def test_a_question_with_several_calls_and_their_transcripts_as_context() -> None:
    paused = {"status": "waiting_for_input", "questions": [
        {"id": "q3-1", "kind": "contradictory_labels", "question": "Which label is right?", "review_ids": [4, 5],
         "call_log_ids": [12, 19], "test_set_ids": [7, 8],
         "context": [{"call_log_id": 12, "transcript": "[0:01] Main Agent: Hello."},
                     {"call_log_id": 19, "transcript": "[0:02] Main Agent: Bye."}]}]}
    fake = Recorder({("GET", f"{REVIEWS}process_feedbacks_progress/"): paused})
    async with client_for(fake) as client:
        state = await client.get_progress("p-3")
    (question,) = state.questions
    assert (question.kind, question.call_ids) == ("contradictory_labels", [12, 19])
    assert question.context == "call 12:\n[0:01] Main Agent: Hello.\n\ncall 19:\n[0:02] Main Agent: Bye."


async def test_the_whole_proposal_is_read_trigger_kind_scores_and_unresolved_samples() -> None:
    finished = {"improved_metric_description": "new prompt", "improved_evaluation_trigger": "Only booking calls.",
                "improved_trigger_kind": "llm_judge", "old_score": {"num_correct": 8, "num_total": 10, "score": 0.8},
                "new_score": {"num_correct": 7, "num_total": 10, "score": 0.7},
                "unresolved_samples": [{"review_id": 3, "verdict": "ambiguous label"}],
                "optimization_summary": "Stricter on bookings."}
    fake = Recorder({("GET", f"{REVIEWS}process_feedbacks_progress/"): finished})
    async with client_for(fake) as client:
        state = await client.get_progress("p-2")
    assert state.done and state.proposal is not None and not state.questions
    proposal = state.proposal
    assert (proposal.improved_evaluation_trigger, proposal.improved_trigger_kind) == ("Only booking calls.",
                                                                                      "llm_judge")
    assert proposal.old_score is not None and proposal.old_score.num_correct == 8
    assert proposal.score_dropped
    assert proposal.unresolved_samples == [{"review_id": 3, "verdict": "ambiguous label"}]


def _docs_example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "cekura_docs" / name).read_text())
    body.pop("_source")
    return body


async def _progress_of(answer: dict[str, Any]) -> Any:
    fake = Recorder({("GET", f"{REVIEWS}process_feedbacks_progress/"): answer})
    async with client_for(fake) as client:
        return await client.get_progress("p-9")


async def test_the_docs_success_answer_is_read_from_output_and_meta_harness() -> None:
    """docs mcp/auto-optimize-metrics.mdx: status "success", the proposal under `output`, the optimizer's code,
    type and score under `output.meta_harness`."""
    docs = _docs_example("auto-optimize-metrics.progress-success.json")
    state = await _progress_of(docs)
    assert state.done and not state.failed and state.status == "success" and state.proposal is not None
    proposal, output = state.proposal, docs["output"]
    assert proposal.improved_metric_description == output["improved_metric_description"]
    assert proposal.improved_evaluation_trigger == "always"
    assert (proposal.custom_code, proposal.type) == (output["meta_harness"]["optimized_code"], "custom_code")
    assert proposal.new_score is not None and (proposal.new_score.num_correct, proposal.new_score.num_total,
                                               proposal.new_score.score) == (7, 7, 1.0)
    assert proposal.old_score is None and not proposal.score_dropped


async def test_the_spec_fields_win_over_meta_harness_and_the_flat_shape_still_reads() -> None:
    flat = {"status": "success", "improved_metric_description": "new", "custom_code": "", "type": "llm_judge",
            "new_score": {"num_correct": 3, "num_total": 4, "score": 0.75},
            "old_score": {"num_correct": 2, "num_total": 4, "score": 0.5}}
    state = await _progress_of(flat)
    assert state.proposal is not None and state.proposal.type == "llm_judge" and not state.proposal.score_dropped
    wrapped = {"status": "success", "output": {**{k: v for k, v in flat.items() if k != "status"},
                                               "meta_harness": {"optimized_code": "", "type": "llm_judge",
                                                                "score": 0.75, "num_correct": 3, "num_total": 4}}}
    again = await _progress_of(wrapped)
    assert again.proposal == state.proposal


@pytest.mark.parametrize("answer", [
    _docs_example("auto-optimize-metrics.progress-status-error.json"),
    {"status": "error", "output": {"error": "No feedback found on the selected test sets."}},
    {"status": "error", "output": "No feedback found on the selected test sets."},
    {"status": "failed", "detail": "No feedback found on the selected test sets."},
], ids=["docs", "under-output", "output-text", "failed-detail"])
async def test_an_error_status_ends_the_run_with_its_reason(answer: dict[str, Any]) -> None:
    state = await _progress_of(answer)
    assert state.done and state.failed and state.proposal is None and not state.waiting
    assert state.error == "No feedback found on the selected test sets."


async def test_a_cancelled_run_is_over_but_not_failed_and_a_success_without_a_proposal_is_not_waited_for() -> None:
    cancelled = await _progress_of({"status": "cancelled", "detail": "The optimization was cancelled."})
    assert cancelled.done and not cancelled.failed
    empty = await _progress_of({"status": "success", "output": {}})
    assert empty.done and empty.failed and empty.error is not None and "improved_metric_description" in empty.error
    running = await _progress_of({"status": "in_progress", "progress": 0.4})
    assert not running.done and running.progress == 0.4


async def test_an_empty_answer_is_refused_before_anything_is_sent() -> None:
    fake = Recorder({})
    async with client_for(fake) as client:
        with pytest.raises(RequestRejectedError, match="no answer"):
            await client.process_feedbacks_answer("p", {})
    assert fake.seen == []


# ---- proposals, history and restore -------------------------------------------------------------------------

EXTERNAL = "/test_framework/v1/metrics-external/"


async def test_apply_dismiss_history_and_restore_use_the_spec_paths() -> None:
    history = {"count": 2, "next": None, "previous": None, "results": [
        {"history_id": 41, "history_date": "2026-11-30T07:00:00Z", "history_type": "~", "name": "M",
         "description": "newer", "alert_type": "disabled", "ewma_alpha": 0.1, "std_multiplier": 2, "window_size": 50},
        {"history_id": 40, "history_type": "+", "name": "M", "description": "older"}]}
    fake = Recorder({("POST", f"{EXTERNAL}9/apply_optimisation_proposal/"): {},
                     ("POST", f"{EXTERNAL}9/dismiss_optimisation_proposal/"): {},
                     ("GET", f"{EXTERNAL}9/history/"): history,
                     ("POST", f"{EXTERNAL}9/restore/"): {"id": 9, "name": "M", "description": "older",
                                                         "eval_type": "binary"}})
    async with client_for(fake) as client:
        assert await client.apply_optimisation_proposal(9) is None
        await client.dismiss_optimisation_proposal(9)
        versions = await client.metric_history(9)
        restored = await client.restore_metric(9, versions.results[-1].history_id)
    assert [v.history_id for v in versions.results] == [41, 40]
    assert restored.description == "older"
    assert fake.body() == {"history_id": 40}


# ---- the judge endpoint: started, then polled ---------------------------------------------------------------

async def test_the_judge_answers_a_progress_id_and_the_verdict_is_polled() -> None:
    polls = iter([{"status": "running"}, {"status": "completed", "output": {"result": 5, "explanation": ["ok"]}}])
    fake = Recorder({("POST", f"{EXTERNAL}9/evaluate_llm_judge_metric/"): {"progress_id": "j-1"},
                     ("GET", f"{EXTERNAL}evaluate_metric_progress/"):
                         lambda request: httpx.Response(200, json=next(polls))})
    async with client_for(fake) as client:
        verdict = await client.evaluate_llm_judge_metric(
            await guard_permit("evaluate_llm_judge_metric"), 9, data={"transcript": "hi"},
            description="Was it polite?", eval_type="binary", enum_values=None, poll_interval=0.0)
    assert (verdict.result, verdict.explanation) == (5, ["ok"])
    assert fake.body(0) == {"data": {"transcript": "hi"}, "description": "Was it polite?", "eval_type": "binary"}
    assert [r.url.params.get("progress_id") for r in fake.seen[1:]] == ["j-1", "j-1"]


async def test_a_judge_that_does_not_finish_is_reported_still_running_within_the_patience() -> None:
    fake = Recorder({("POST", f"{EXTERNAL}9/evaluate_llm_judge_metric/"): {"progress_id": "j-2"},
                     ("GET", f"{EXTERNAL}evaluate_metric_progress/"): {"status": "running"}})
    async with client_for(fake) as client:
        with pytest.raises(JudgeStillRunningError, match="j-2"):
            await client.evaluate_llm_judge_metric(await guard_permit("evaluate_llm_judge_metric"), 9, data={},
                                                   description="d", eval_type=None, enum_values=None,
                                                   patience_seconds=0.2, poll_interval=0.05)
    assert 2 <= len(fake.seen) <= 6


async def test_a_failed_judge_evaluation_says_why() -> None:
    fake = Recorder({("GET", f"{EXTERNAL}evaluate_metric_progress/"): {"status": "failed", "error": "bad prompt"}})
    async with client_for(fake) as client:
        with pytest.raises(RequestRejectedError, match="bad prompt"):
            await client.wait_for_judge("j-3", poll_interval=0.0)


# ---- billing, costs, organisation keys ----------------------------------------------------------------------

async def test_billing_info_and_metric_cost_are_read_as_numbers() -> None:
    fake = Recorder({("GET", "/test_framework/billing/info/"): {
        "organization": 37, "credits_remaining": "7436.08", "credits_used": "36462.14", "balance_expiry": None},
        ("GET", "/test_framework/v1/metrics/"): [
            {"id": 1, "name": "Latency", "eval_type": "numeric", "metric_cost": 0.6},
            {"id": 2, "name": "Polite", "eval_type": "binary_workflow_adherence", "metric_cost": "0.20"},
            {"id": 3, "name": "Code", "type": "custom_code", "eval_type": "binary_qualitative"}]})
    async with client_for(fake) as client:
        billing = await client.billing_info()
        metrics = await client.list_metrics(agent_id=3)
    assert (billing.credits_remaining, billing.credits_used) == (7436.08, 36462.14)
    assert [m.metric_cost for m in metrics] == [0.6, 0.2, None]
    assert [m.eval_type for m in metrics] == ["numeric", "binary", "binary"]


async def test_billing_refused_to_a_project_key_says_so() -> None:
    fake = Recorder({("GET", "/test_framework/billing/info/"): lambda r: httpx.Response(403, json={})})
    async with client_for(fake) as client:
        with pytest.raises(RequestRejectedError, match="project-scoped keys"):
            await client.billing_info()


async def test_the_configured_project_is_sent_where_the_caller_named_none() -> None:
    fake = Recorder({("GET", V2_LIST): page(), ("GET", "/test_framework/v1/metrics/"): [],
                     ("POST", f"{V2_LIST}evaluate_metrics/"): [],
                     ("GET", f"{REVIEWS}process_feedbacks_progress/"): {"status": "running"},
                     ("POST", "/test_framework/test-sets/create_from_call_log/"): {"id": 1}})
    async with client_for(fake, project_id=44) as client:
        await client.get_progress("p")
        await client.create_test_set_from_call(call_log_id=1, metrics=[MetricFeedback(metric=2, feedback="f")])
        seen_before = list(fake.seen)
        fake.seen.clear()
        await client.list_calls(agent_id=3)
        await client.list_calls(agent_id=3, project_id=45)
        await client.list_metrics(agent_id=3)
        await client.evaluate_metrics(await guard_permit("evaluate_metrics"), agent_id=3, project_id=None,
                                      call_logs=[1], metrics=[2])
    assert [r.url.params.get("project_id") for r in fake.seen[:3]] == ["44", "45", "44"]
    assert seen_before[0].url.params["project_id"] == "44" and json.loads(seen_before[1].content)["project"] == 44
    assert fake.body(3)["project_id"] == 44


async def test_an_organisation_key_without_project_gets_an_error_naming_project_id_and_the_fix() -> None:
    refusal = {"non_field_errors": ["project_id is required when using an organization-level API key"]}
    fake = Recorder({("GET", V2_LIST): lambda r: httpx.Response(400, json=refusal)})
    async with client_for(fake) as client:
        with pytest.raises(ProjectRequiredError) as failure:
            await client.list_calls(agent_id=3)
    text = str(failure.value)
    assert "`project_id`" in text and "CEKURA_PROJECT_ID" in text and "Pass project_id" in text


# ---- the docs' error answers ----------------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "cekura_docs"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.error-*.json")), ids=lambda p: p.name)
async def test_every_documented_error_answer_becomes_one_clear_line(path: Path) -> None:
    body = {k: v for k, v in json.loads(path.read_text()).items() if k != "_source"}
    fake = Recorder({("GET", V2_LIST): lambda r: httpx.Response(400, json=body)})
    async with client_for(fake) as client:
        with pytest.raises(CekuraError) as failure:
            await client.list_calls(agent_id=3)
    error = failure.value
    texts = [t for v in body.values() for t in (v if isinstance(v, list) else [v])]
    assert all(str(t).rstrip(".") in error.message for t in texts), error.message
    assert error.hint and "\n" not in error.for_assistant()
    assert "`detail`" not in error.message, "a reason is not a field"
    if "Insufficient balance" in json.dumps(body):
        assert isinstance(error, InsufficientCreditsError) and "Nothing was evaluated" in error.message
    elif set(body) != {"detail"}:
        assert isinstance(error, ValidationFailedError) and all(f"`{k}`" in error.message for k in body)


def test_the_documented_subscription_status_is_read_as_billing_info() -> None:
    status = json.loads((FIXTURES / "openapi.billing-subscription-status.json").read_text())
    status.pop("_source")
    billing = BillingInfo.model_validate({"credits_remaining": "7436.08", "subscription_status": status})
    assert billing.credits_remaining == 7436.08
    assert billing.subscription_status is not None and billing.subscription_status["status"] == "active"
