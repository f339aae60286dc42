"""The regression check through a real MCP client against the sandbox: "after" is read only once Cekura has
finished evaluating (a deployment that evaluates in the background is played by a transport that shows the
calls' pre-evaluation state for a while, as Cekura's docs describe), a check left evaluating is resumed
without a second spend, the fresh sample stays outside the Lab, and changed results are judged one at a time,
with rejected regressions added to the Lab only on confirmation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.cekura.models import MetricResult
from cekura_labs_mcp.server.cekura.results import read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.demo import person_from_truth
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.sandbox import SandboxServer
from cekura_labs_mcp.server.services.freshness import Mark, is_fresh, is_reset
from mcp import Client
from pydantic import SecretStr
from support import FAST_RETRY, HTTP, SANDBOX_KEY, SandboxAdmin, ToolFailed, call

pytestmark = pytest.mark.anyio
LIST_PATHS = ("call-logs", "call-logs-external")
SPEND_PATHS = ("evaluate_metrics", "rerun_evaluation")


class BackgroundEvaluation(httpx.AsyncBaseTransport):
    """Cekura's asynchronous evaluation, played over the synchronous sandbox: after a spend, the next `lag`
    list reads show each call as it was before (its old results), with `success` reset to null and
    `updated_at` just past the old mark, the way a re-run looks while it runs."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.stale_reads = 0
        self._inner = httpx.AsyncHTTPTransport()
        self._before: dict[int, dict[str, Any]] = {}
        self._pending = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        is_list = request.method == "GET" and request.url.path.rstrip("/").split("/")[-1] in LIST_PATHS
        if request.method == "POST" and any(p in request.url.path for p in SPEND_PATHS):
            self._pending = self.lag
        elif is_list and self._pending > 0 and "call_ids" in request.url.params:
            self._pending -= 1
            self.stale_reads += 1
            return self._stale(request)
        response = await self._inner.handle_async_request(request)
        if is_list and response.status_code == 200 and self._pending == 0:
            await response.aread()
            for row in json.loads(response.content).get("results", []):
                self._before[int(row["id"])] = row
        return response

    def _stale(self, request: httpx.Request) -> httpx.Response:
        wanted = [int(i) for i in request.url.params["call_ids"].split(",")]
        rows = []
        for call_id in wanted:
            row = dict(self._before[call_id])
            mark = datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00")) + timedelta(microseconds=1)
            rows.append({**row, "success": None, "updated_at": mark.isoformat().replace("+00:00", "Z")})
        body = {"count": len(rows), "next": None, "previous": None, "results": rows}
        return httpx.Response(200, json=body, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def connect_via(settings: Settings, transport: httpx.AsyncBaseTransport) -> AsyncIterator[Client]:
    server = build_server(settings, retry=FAST_RETRY, transport=transport)
    async with Client(server) as client:  # type: ignore[arg-type]
        yield client


async def _review_and_patch(client: Client, sandbox: SandboxAdmin) -> tuple[int, dict[str, Any], list[int]]:
    """Six reviews answered from the truth, auto-improve, and the proposal applied: what precedes validation."""
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    truth = sandbox.truth(metric["id"])
    review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric["id"]})
    picked: list[int] = []
    for _ in range(6):
        picked.append(review["call"]["id"])
        recorded = await call(client, "record_review", {"agent_id": agent, "metric_id": metric["id"],
                                                        "call_id": review["call"]["id"],
                                                        **person_from_truth(truth, review)})
        review = recorded["next"]
    started = await call(client, "process_feedbacks", {"metric_id": metric["id"]})
    result = await call(client, "poll_progress", {"progress_id": started["progress_id"], "metric_id": metric["id"],
                                                  "wait_seconds": 30})
    await call(client, "patch_metric", {"metric_id": metric["id"], "description": result["proposed_description"],
                                        "confirm": True})
    return agent, metric, picked


def _check(settings: Settings, check_id: int) -> dict[str, Any]:
    found = Ledger(settings.ledger_path).validation(check_id)
    assert found is not None
    return found[1]


def _current_value(sandbox: SandboxAdmin, call_id: int, metric_id: int) -> str:
    detail = sandbox.api("GET", f"/observability/v1/call-logs-external/{call_id}/")
    result = next(m for m in detail["evaluation"]["metrics"] if m["id"] == metric_id)
    return read_result(MetricResult.model_validate(result)).text


def test_freshness_rules() -> None:
    base = Mark(updated_at="2026-11-01T10:00:00Z", success=True)
    reset = Mark(updated_at="2026-11-01T10:00:01Z", success=None)
    assert not is_fresh(base, None, base), "an untouched call is not fresh"
    assert is_reset(base, reset) and not is_fresh(base, None, reset), "a reset call is still evaluating"
    done = Mark(updated_at="2026-11-01T10:00:01Z", success=False)
    assert not is_fresh(base, reset, done), "only a change after the reset counts"
    assert is_fresh(base, reset, Mark(updated_at="2026-11-01T10:00:02Z", success=False))
    assert not is_fresh(Mark(), None, Mark(updated_at=None, success=True)), "no mark: never claimed fresh"


# Played over the spec dialect, which evaluates (and charges) at once: the transport supplies the delay. The
# documented dialect has its own (results and charges land a few reads later), covered by the tests without it.
@pytest.mark.parametrize("sandbox_server", ["spec"], indirect=True)
async def test_after_is_never_a_read_taken_before_evaluation_finished(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    transport = BackgroundEvaluation(lag=3)
    async with connect_via(settings, transport) as client:
        agent, metric, picked = await _review_and_patch(client, sandbox)
        check = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
    assert transport.stale_reads == 3, "the pre-evaluation state was served and had to be waited out"
    assert check["status"] in ("judging", "done") and check["waiting_for"] == 0
    stored = _check(settings, check["check_id"])
    assert stored["polls"] >= 4
    changed = 0
    for item in stored["calls"]:
        assert item["after"]["value"] == _current_value(sandbox, item["call_id"], metric["id"]), item
        changed += item["after"]["value"] != item["before"]["value"]
    assert changed > 0, "some results changed, so a stale read would have shown up as a wrong 'after'"
    assert {c["call_id"] for c in check["reviewed"]["fixed"]} <= set(picked)


# Played over the spec dialect, which evaluates (and charges) at once: the transport supplies the delay. The
# documented dialect has its own (results and charges land a few reads later), covered by the tests without it.
@pytest.mark.parametrize("sandbox_server", ["spec"], indirect=True)
async def test_a_check_left_evaluating_is_resumed_without_spending_again(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    transport = BackgroundEvaluation(lag=10_000)
    impatient = settings.model_copy(update={"poll_timeout_seconds": 0.3})
    async with connect_via(impatient, transport) as client:
        agent, metric, _ = await _review_and_patch(client, sandbox)
        spent_before = sandbox.credits()
        first = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        assert first["status"] == "evaluating" and first["waiting_for"] > 20
        assert first["reviewed"] is None and first["fresh"] is None, "nothing is reported as 'after' yet"
        assert f"check_id={first['check_id']}" in first["message"]
        spent = sandbox.credits() - spent_before
        assert spent > 0 and len(sandbox.requests("POST", "evaluate_metrics")) == 1
        again = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        assert again["status"] == "evaluating" and again["check_id"] == first["check_id"]
        transport.lag = 0
        transport._pending = 0  # Cekura finishes
        done = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"],
                                                      "check_id": first["check_id"]})
    assert done["status"] in ("judging", "done") and "nothing was spent again" in done["message"]
    assert sandbox.credits() - spent_before == pytest.approx(spent)
    assert len(sandbox.requests("POST", "evaluate_metrics")) == 1
    assert done["reviewed"]["calls"] == 6 and 20 <= done["fresh"]["calls"] <= 30


async def test_fresh_sample_excludes_every_lab_call(settings: Settings, sandbox: SandboxAdmin) -> None:
    async with connect_via(settings, httpx.AsyncHTTPTransport()) as client:
        agent, metric, picked = await _review_and_patch(client, sandbox)
        check = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"],
                                                       "fresh_sample": 20})
    lab = {body["call_log_id"] for body in (r["body"] for r in sandbox.requests("POST", "create_from_call_log"))}
    assert lab == set(picked)
    stored = _check(settings, check["check_id"])
    fresh = [c["call_id"] for c in stored["calls"] if c["group"] == "fresh"]
    reviewed = [c["call_id"] for c in stored["calls"] if c["group"] == "reviewed"]
    assert len(fresh) == 20 and not set(fresh) & lab and sorted(reviewed) == sorted(picked)
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 200})
    eligible = [r["id"] for r in rows["results"] if r["id"] not in lab and not r["is_reviewed"]
                and any(m["id"] == metric["id"] for m in r["metrics"])]
    assert set(fresh) == set(eligible[:20]), "the most recent calls outside the Lab"
    assert check["fresh"]["calls"] == 20 and check["reviewed"]["calls"] == 6


async def test_an_unchanged_metric_is_not_validated_twice(settings: Settings, sandbox: SandboxAdmin) -> None:
    async with connect_via(settings, httpx.AsyncHTTPTransport()) as client:
        agent, metric, _ = await _review_and_patch(client, sandbox)
        first = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        spent = sandbox.credits()
        second = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
    assert second["check_id"] == first["check_id"] and "nothing was re-run" in second["message"]
    assert sandbox.credits() == spent


async def test_changed_results_are_judged_one_at_a_time_and_regressions_reach_the_lab_only_on_yes(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    async with connect_via(settings, httpx.AsyncHTTPTransport()) as client:
        agent, metric, _ = await _review_and_patch(client, sandbox)
        check = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        assert check["status"] == "judging", "the proposal changed some results outside the Lab"
        seen: list[int] = []
        rejected: list[int] = []
        while check["next_change"] is not None:
            change = check["next_change"]
            assert change["call_id"] not in seen and change["before"] != change["after"]
            assert change["applicability_flip"] == ((change["before"] == "N/A") != (change["after"] == "N/A"))
            seen.append(change["call_id"])
            # A reviewer who rejects every other change: production's label was right there.
            wrong = len(seen) % 2 == 1
            args = {"check_id": check["check_id"], "call_id": change["call_id"], "new_label_correct": not wrong}
            if wrong:
                rejected.append(change["call_id"])
                args |= {"right_value": change["before"],
                         "note": f'At 00:10 the agent asked "what is your name?" only: {change["before"]} was right.'}
                with pytest.raises(ToolFailed, match="right_value"):
                    await call(client, "judge_change", {**args, "right_value": change["after"]})
            check = await call(client, "judge_change", args)
        assert check["status"] == "done" and check["fresh"]["judged"] == check["fresh"]["changed"] == len(seen)
        assert {c["call_id"] for c in check["fresh"]["regressed"]} == set(rejected)
        assert {c["call_id"] for c in check["fresh"]["fixed"]} == set(seen) - set(rejected)
        assert all(c["explanation_before"] and c["explanation_after"] for c in check["fresh"]["fixed"])
        assert check["fresh"]["before"] is not None and check["fresh"]["after"] is not None
        grouped = {i for g in check["regression_groups"] for i in g["call_ids"]}
        assert grouped == set(rejected)
        proposed = [i for g in check["regression_groups"] for i in g["proposed"]]
        labs_before = len(sandbox.requests("POST", "create_from_call_log"))
        preview = await call(client, "add_regressions_to_lab", {"check_id": check["check_id"]})
        assert not preview["applied"] and [e["call_id"] for e in preview["entries"]] == proposed
        assert len(sandbox.requests("POST", "create_from_call_log")) == labs_before, "nothing added unasked"
        with pytest.raises(ToolFailed, match="call_ids"):
            await call(client, "add_regressions_to_lab", {"check_id": check["check_id"], "call_ids": seen,
                                                          "confirm": True} if set(seen) - set(rejected) else
                       {"check_id": check["check_id"], "call_ids": [1], "confirm": True})
        added = await call(client, "add_regressions_to_lab", {"check_id": check["check_id"],
                                                              "call_ids": rejected[:1], "confirm": True})
    bodies = [r["body"] for r in sandbox.requests("POST", "create_from_call_log")[labs_before:]]
    assert added["applied"] and [b["call_log_id"] for b in bodies] == rejected[:1]
    assert "00:10" in bodies[0]["metrics"][0]["feedback"]


# ---- against the sandbox's `documented` dialect: evaluations land in the background ---------------------

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


def _evaluation_delay(docs: SandboxAdmin, reads: int) -> None:
    HTTP.post(f"{docs.url}/_sandbox/evaluations", json={"reads": reads}, timeout=10).raise_for_status()


async def test_documented_after_waits_for_the_background_evaluation(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    _evaluation_delay(docs, 4)
    async with connect_via(docs_settings, httpx.AsyncHTTPTransport()) as client:
        agent, metric, _ = await _review_and_patch(client, docs)
        check = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
    assert check["status"] in ("judging", "done") and check["waiting_for"] == 0
    stored = _check(docs_settings, check["check_id"])
    assert stored["polls"] >= 2, "the first reads after the spend still showed the old results"
    changed = 0
    for item in stored["calls"]:
        assert item["after"]["value"] == _current_value(docs, item["call_id"], metric["id"]), item
        changed += item["after"]["value"] != item["before"]["value"]
    assert changed > 0


async def test_documented_check_left_evaluating_resumes_without_a_second_spend(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    _evaluation_delay(docs, 100_000)
    impatient = docs_settings.model_copy(update={"poll_timeout_seconds": 0.5})
    async with connect_via(impatient, httpx.AsyncHTTPTransport()) as client:
        agent, metric, _ = await _review_and_patch(client, docs)
        first = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        assert first["status"] == "evaluating" and first["reviewed"] is None and first["fresh"] is None
        HTTP.post(f"{docs.url}/_sandbox/evaluations/finish", timeout=10).raise_for_status()
        spent = docs.credits()
        done = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
    assert done["check_id"] == first["check_id"] and done["status"] in ("judging", "done")
    assert "nothing was spent again" in done["message"] and docs.credits() == spent
    assert len(docs.requests("POST", "evaluate_metrics")) == 1


async def test_documented_rerun_reports_only_results_that_arrived(
    docs_settings: Settings, docs: SandboxAdmin
) -> None:
    agent = docs.info()["main_agent_id"]
    metric = docs.metric_named("one question")["id"]
    rows = docs.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 5})
    ids = [r["id"] for r in rows["results"]]
    _evaluation_delay(docs, 3)
    async with connect_via(docs_settings, httpx.AsyncHTTPTransport()) as client:
        landed = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
    _evaluation_delay(docs, 100_000)
    patience = docs_settings.model_copy(update={"poll_timeout_seconds": 0.5})
    async with connect_via(patience, httpx.AsyncHTTPTransport()) as client:
        impatient = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
    assert landed["still_evaluating"] == [] and {r["call"] for r in landed["results"]} == set(ids)
    for row in landed["results"]:
        if row["metric"] == metric:
            assert row["value"] == _current_value(docs, int(row["call"] or 0), metric)
    assert sorted(impatient["still_evaluating"]) == sorted(ids) and impatient["results"] == []


async def test_a_spend_whose_answer_was_lost_is_waited_for_never_resent(
    settings: Settings, sandbox: SandboxAdmin
) -> None:
    # The evaluation request never reaches the sandbox and its answer is lost: the outcome is unknown.
    quick = settings.model_copy(update={"poll_timeout_seconds": 0.3, "evaluation_give_up_seconds": 0.001})
    async with connect_via(quick, httpx.AsyncHTTPTransport()) as client:
        agent, metric, _ = await _review_and_patch(client, sandbox)
        sandbox.fault("/observability", "drop", method="POST", count=1)
        check = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        again = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"]})
        assert len([r for r in sandbox.requests("POST") if "evaluate_metrics" in r["path"]]) == 1
        restarted = await call(client, "validate_metric", {"agent_id": agent, "metric_id": metric["id"],
                                                           "restart": True})
    assert restarted["check_id"] != check["check_id"], "only the person's restart spends again"
    assert check["reviewed"] is None and check["fresh"] is None, "old results are never reported as 'after'"
    assert check["not_evaluated"] and "nothing to report" in check["message"] and "spend_log" in check["message"]
    assert again["check_id"] == check["check_id"] and "nothing was re-run" in again["message"]
