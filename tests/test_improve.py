"""Auto-improve as Cekura runs it, through a real MCP client against the sandbox in its `documented` dialect
(evaluations land in the background, a run can pause with a question): questions answered, skipped, and asked
through elicitation; cancel; the whole proposal; an identical proposal applies and re-runs nothing; a Lab score
drop needs the person's explicit yes; rollback through Cekura's history; and when hands-free auto-improve runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.demo import person_from_truth
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.sandbox import SandboxServer
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import SecretStr
from support import FAST_RETRY, HTTP, SANDBOX_KEY, SandboxAdmin, ToolFailed, call

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def documented_server() -> Iterator[SandboxServer]:
    with SandboxServer(seed=7, api_key=SANDBOX_KEY, dialect="documented") as server:
        yield server


@pytest.fixture
def docs(documented_server: SandboxServer) -> SandboxAdmin:
    admin = SandboxAdmin(documented_server.url)
    admin.reset()
    return admin


@pytest.fixture
def docs_settings(tmp_path: Path, docs: SandboxAdmin) -> Settings:
    return Settings(CEKURA_API_KEY=SecretStr(SANDBOX_KEY), CEKURA_API_URL=docs.url,
                    CEKURA_LABS_DATA_DIR=tmp_path / "data", CEKURA_LABS_HTTP_TIMEOUT=5.0,
                    CEKURA_LABS_POLL_INTERVAL=0.05)


def _admin(docs: SandboxAdmin, path: str, body: dict[str, Any]) -> None:
    HTTP.post(docs.url + path, json=body, timeout=10).raise_for_status()


class LowerScore(httpx.AsyncBaseTransport):
    """A deployment whose finished proposal the Lab scores lower than the current metric (old 4/6, new 2/6), in
    either answer form: the spec's flat fields, or the docs' `output` with the new score in `meta_harness`."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if "process_feedbacks_progress" not in request.url.path:
            return response
        await response.aread()
        body = json.loads(response.content)
        output = body.get("output")
        if isinstance(output, dict) and output.get("improved_metric_description"):
            output["old_score"] = {"num_correct": 4, "num_total": 6, "score": 0.67}
            output["meta_harness"] |= {"num_correct": 2, "num_total": 6, "score": 0.33}
        elif body.get("improved_metric_description"):
            body |= {"old_score": {"num_correct": 4, "num_total": 6, "score": 0.67},
                     "new_score": {"num_correct": 2, "num_total": 6, "score": 0.33}}
        return httpx.Response(200, json=body, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def connect(settings: Settings, transport: httpx.AsyncBaseTransport | None = None,
                  **client_kwargs: Any) -> AsyncIterator[Client]:
    server = build_server(settings, retry=FAST_RETRY, transport=transport)
    async with Client(server, **client_kwargs) as client:  # type: ignore[arg-type]
        yield client


async def _review_six(client: Client, docs: SandboxAdmin, *, auto_improve: bool = False) -> tuple[int, int, Any]:
    """Six reviews of One Question Per Turn answered from the truth; the last answer."""
    agent = docs.info()["main_agent_id"]
    metric = docs.metric_named("one question")["id"]
    truth = docs.truth(metric)
    await call(client, "start_review", {"agent_id": agent, "metric_id": metric, "auto_improve": auto_improve})
    review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
    recorded: dict[str, Any] = {}
    for _ in range(6):
        recorded = await call(client, "record_review", {"agent_id": agent, "metric_id": metric,
                                                        "call_id": review["call"]["id"],
                                                        **person_from_truth(truth, review)})
        review = recorded["next"]
    return agent, metric, recorded


def _answer_bodies(docs: SandboxAdmin) -> list[dict[str, Any]]:
    return [r["body"] for r in docs.requests("POST", "process_feedbacks_answer")]


async def test_a_question_is_shown_and_answered_then_the_run_finishes(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    async with connect(docs_settings) as client:
        _, metric, _ = await _review_six(client, docs)
        _admin(docs, "/_sandbox/auto-improve/questions", {"count": 1})
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        paused = await call(client, "poll_progress", {"progress_id": started["progress_id"], "metric_id": metric,
                                                      "wait_seconds": 20})
        assert paused["done"] is False and len(paused["questions"]) == 1
        question = paused["questions"][0]
        assert question["text"] and question["id"] and "answer_improvement_question" in paused["message"]
        assert question["context"], "the sample's transcript goes with the question"
        with pytest.raises(ToolFailed, match="answer"):
            await call(client, "answer_improvement_question", {"progress_id": started["progress_id"]})
        assert _answer_bodies(docs) == [], "nothing is sent without an answer"
        finished = await call(client, "answer_improvement_question", {
            "progress_id": started["progress_id"], "question_id": question["id"], "metric_id": metric,
            "answer": "Only to calls like this one: the agent confirmed two related details at once."})
    assert _answer_bodies(docs) == [{"progress_id": started["progress_id"], "answers": {
        question["id"]: "Only to calls like this one: the agent confirmed two related details at once."}}]
    assert finished["done"] is True and finished["proposed_description"]
    assert finished["message"].startswith(f"Answered question {question['id']}")


async def test_a_question_can_be_skipped(docs_settings: Settings, docs: SandboxAdmin) -> None:
    async with connect(docs_settings) as client:
        _, metric, _ = await _review_six(client, docs)
        _admin(docs, "/_sandbox/auto-improve/questions", {"count": 1})
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        paused = await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 20})
        qid = paused["questions"][0]["id"]
        finished = await call(client, "answer_improvement_question", {"progress_id": started["progress_id"],
                                                                      "skip": True, "metric_id": metric})
    assert _answer_bodies(docs) == [{"progress_id": started["progress_id"], "answers": {qid: {"action": "skip"}}}]
    assert finished["done"] is True and finished["message"].startswith(f"Skipped question {qid}")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_person_is_asked_directly_where_the_client_can(
    docs_settings: Settings, docs: SandboxAdmin, mode: str
) -> None:
    asked: list[str] = []

    async def person(_context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"answer": "Every call like it.", "skip": False})

    async with connect(docs_settings, elicitation_callback=person, mode=mode) as client:
        _, metric, _ = await _review_six(client, docs)
        _admin(docs, "/_sandbox/auto-improve/questions", {"count": 1})
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        paused = await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 20})
        finished = await call(client, "answer_improvement_question", {"progress_id": started["progress_id"],
                                                                      "metric_id": metric})
    question = paused["questions"][0]
    assert len(asked) == 1 and question["text"] in asked[0] and "call text" in asked[0]
    assert _answer_bodies(docs)[0]["answers"] == {question["id"]: "Every call like it."}
    assert finished["done"] is True


async def test_cancel_stops_the_run_and_applies_nothing(docs_settings: Settings, docs: SandboxAdmin) -> None:
    async with connect(docs_settings) as client:
        _, metric, _ = await _review_six(client, docs)
        _admin(docs, "/_sandbox/auto-improve/questions", {"count": 1})
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 20})
        cancelled = await call(client, "cancel_improvement", {"progress_id": started["progress_id"]})
        after = await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 5})
    assert cancelled["status"] == "cancelled" and "nothing was applied" in cancelled["message"]
    assert [r["body"] for r in docs.requests("POST", "process_feedbacks_cancel")] == [
        {"progress_id": started["progress_id"]}]
    assert after["done"] is True and after["proposed_description"] is None
    assert docs.requests("PATCH") == [] and _answer_bodies(docs) == []


async def test_the_whole_proposal_is_applied_and_rolled_back_through_cekura(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    async with connect(docs_settings) as client:
        _, metric, _ = await _review_six(client, docs)
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        proposal = await call(client, "poll_progress", {"progress_id": started["progress_id"], "metric_id": metric,
                                                        "wait_seconds": 20})
        assert proposal["done"] and not proposal["identical"] and not proposal["score_dropped"]
        assert proposal["trigger_kind"] == "always" and proposal["old_score"] and proposal["new_score"]
        assert "+" in proposal["diff"] and "apply_proposal" in proposal["message"]
        before = docs.api("GET", f"/test_framework/v1/metrics/{metric}/")["description"]
        preview = await call(client, "apply_proposal", {"metric_id": metric, "progress_id": started["progress_id"]})
        assert not preview["applied"] and docs.api("GET", f"/test_framework/v1/metrics/{metric}/")[
            "description"] == before
        applied = await call(client, "apply_proposal", {"metric_id": metric, "progress_id": started["progress_id"],
                                                        "confirm": True})
        assert applied["applied"] and docs.api("GET", f"/test_framework/v1/metrics/{metric}/")[
            "description"] == proposal["proposed_description"]
        restored = await call(client, "rollback_metric", {"metric_id": metric, "confirm": True})
    assert "apply_optimisation_proposal" in applied["via"]
    assert restored["applied"] and "history restore" in restored["via"]
    assert len(docs.requests("POST", "/restore")) == 1
    assert docs.api("GET", f"/test_framework/v1/metrics/{metric}/")["description"] == before


async def test_the_docs_wrapped_answer_and_the_flat_one_give_the_same_proposal(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    """The sandbox answers odd runs in the docs' form (`output.*`, `output.meta_harness`) and even runs flat: both
    runs, on the same Lab, propose the same change with the same Lab scores."""
    async with connect(docs_settings) as client:
        _, metric, _ = await _review_six(client, docs)
        proposals = []
        for _ in range(2):
            started = await call(client, "process_feedbacks", {"metric_id": metric})
            proposals.append(await call(client, "poll_progress", {"progress_id": started["progress_id"],
                                                                  "metric_id": metric, "wait_seconds": 20}))
    wrapped, flat = proposals
    assert wrapped["done"] and flat["done"] and wrapped["diff"] == flat["diff"]
    fields = ("proposed_description", "proposed_type", "old_score", "new_score", "trigger_kind", "score_dropped")
    assert {f: wrapped[f] for f in fields} == {f: flat[f] for f in fields}
    assert wrapped["new_score"] and wrapped["old_score"]


async def test_a_run_that_ends_in_error_is_a_clear_error_not_a_wait(docs_settings: Settings,
                                                                     docs: SandboxAdmin) -> None:
    async with connect(docs_settings) as client:
        _, metric, _ = await _review_six(client, docs)
        _admin(docs, "/_sandbox/auto-improve/answers", {"fail": 2, "error": "No feedback found on the test sets."})
        for _ in range(2):  # the docs' wrapped error, then the flat one
            started = await call(client, "process_feedbacks", {"metric_id": metric})
            with pytest.raises(ToolFailed) as failure:
                await call(client, "poll_progress", {"progress_id": started["progress_id"], "metric_id": metric,
                                                     "wait_seconds": 20})
            message = str(failure.value)
            assert "[run_failed]" in message and "No feedback found on the test sets." in message
            assert "Nothing was proposed or applied" in message and "still running" not in message
            polls = [r for r in docs.requests("GET", "process_feedbacks_progress")
                     if r["query"].get("progress_id") == started["progress_id"]]
            assert 0 < len(polls) <= 5, "it stopped at the error instead of polling to the timeout"
    assert docs.requests("PATCH") == []


async def test_an_identical_proposal_applies_nothing_and_re_runs_nothing(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    agent = docs.info()["main_agent_id"]
    metric = docs.metric_named("one question")["id"]
    truth = docs.truth(metric)
    async with connect(docs_settings) as client:
        await call(client, "start_review", {"agent_id": agent, "metric_id": metric, "auto_improve": True})
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
        recorded: dict[str, Any] = {}
        for n in range(6):
            answer = person_from_truth(truth, review)
            if n == 0:  # one disagreement with no reason in it: it teaches the optimizer nothing
                answer = {"agree": False, "expected_value": review["call"]["metric"]["value"] != "TRUE",
                          "reason": "Wrong. It should be the other value.", "insist": True}
            elif not answer["agree"]:
                answer = {"agree": True}
            recorded = await call(client, "record_review", {"agent_id": agent, "metric_id": metric,
                                                            "call_id": review["call"]["id"], **answer})
            review = recorded["next"]
        improvement = recorded["improvement"]
        assert improvement is not None and improvement["done"] and improvement["identical"] is True
        assert "nothing to apply" in improvement["message"] and "1 disagreement" in improvement["used"]
        applied = await call(client, "apply_proposal", {"metric_id": metric,
                                                        "progress_id": improvement["progress_id"], "confirm": True})
        with pytest.raises(ToolFailed, match="Nothing to validate"):
            await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric})
    assert not applied["applied"] and "nothing was applied" in applied["message"]
    assert docs.requests("PATCH") == [] and docs.requests("POST", "apply_optimisation_proposal") == []
    assert docs.requests("POST", "evaluate_metrics") == [] and docs.requests("POST", "rerun_evaluation") == []
    assert docs.credits() == 0


async def test_a_lab_score_drop_needs_the_persons_explicit_yes(docs_settings: Settings, docs: SandboxAdmin) -> None:
    async with connect(docs_settings, LowerScore()) as client:
        _, metric, _ = await _review_six(client, docs)
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        proposal = await call(client, "poll_progress", {"progress_id": started["progress_id"], "metric_id": metric,
                                                        "wait_seconds": 20})
        assert proposal["score_dropped"] is True and "LOWER" in proposal["message"]
        args = {"metric_id": metric, "progress_id": started["progress_id"], "confirm": True}
        with pytest.raises(ToolFailed, match="lower"):
            await call(client, "apply_proposal", args)
        assert docs.requests("PATCH") == [] and docs.requests("POST", "apply_optimisation_proposal") == []
        applied = await call(client, "apply_proposal", {**args, "accept_score_drop": True})
    assert applied["applied"]
    asked: list[str] = []

    async def person(_context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"apply": False})

    docs.reset()
    async with connect(docs_settings.model_copy(update={"data_dir": docs_settings.data_dir / "second"}), LowerScore(),
                       elicitation_callback=person) as client:
        _, metric, _ = await _review_six(client, docs)
        started = await call(client, "process_feedbacks", {"metric_id": metric})
        await call(client, "poll_progress", {"progress_id": started["progress_id"], "wait_seconds": 20})
        with pytest.raises(ToolFailed, match="did not approve"):
            await call(client, "apply_proposal", {"metric_id": metric, "progress_id": started["progress_id"],
                                                  "confirm": True})
    assert len(asked) == 1 and "LOWER" in asked[0] and "67%" in asked[0]
    assert docs.requests("PATCH") == []


async def test_hands_free_auto_improve_needs_a_disagreement_and_re_arms(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    agent = docs.info()["main_agent_id"]
    metric = docs.metric_named("one question")["id"]
    truth = docs.truth(metric)
    right = [int(c) for c, t in truth.items() if not t["pattern"]]
    wrong = [int(c) for c, t in truth.items() if t["pattern"]]
    two = docs_settings.model_copy(update={"feedback_threshold": 2})

    async def agree(client: Client, call_id: int) -> dict[str, Any]:
        return await call(client, "record_review", {"agent_id": agent, "metric_id": metric, "call_id": call_id,
                                                    "agree": True})

    async def disagree(client: Client, call_id: int) -> dict[str, Any]:
        expected = truth[str(call_id)]["expected"]
        return await call(client, "record_review", {
            "agent_id": agent, "metric_id": metric, "call_id": call_id, "agree": False,
            "expected_value": "N/A" if expected is None else expected,
            "reason": 'At 00:12 the agent said "Could you confirm your name and date of birth?": confirming two '
                      "related details is one question, so it should pass."})

    async with connect(two) as client:
        await call(client, "start_review", {"agent_id": agent, "metric_id": metric, "auto_improve": True})
        assert (await agree(client, right[0]))["improvement"] is None
        assert (await agree(client, right[1]))["improvement"] is None, "two agreements teach nothing: no run"
        first = (await disagree(client, wrong[0]))["improvement"]
        assert first is not None and first["done"]
        assert first["used"].startswith("3 Lab entries (2 agreements, 1 disagreement;")
        assert (await disagree(client, wrong[1]))["improvement"] is None, "re-armed: needs 2 new entries"
        second = (await agree(client, right[2]))["improvement"]
        assert second is not None and second["progress_id"] != first["progress_id"]
        assert second["used"].startswith("5 Lab entries (3 agreements, 2 disagreements; 2 new")
    bodies = [r["body"] for r in docs.requests("POST", "process_feedbacks")]
    assert len(bodies) == 2 and len(bodies[0]["test_set_ids"]) == 3 and len(bodies[1]["test_set_ids"]) == 5
    ledger = Ledger(two.ledger_path)
    assert ledger.latest_improvement(ledger.open_session(metric, agent, 2).id) is not None
