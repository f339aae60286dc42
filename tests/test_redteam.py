"""Attacks on what the team deployment promises, each kept as a test: a lease that expired while its reviewer was
away, a revoked reviewer token, a second process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cekura_labs_mcp.server.cekura.client import tls_context
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.db import postgres_url
from cekura_labs_mcp.server.demo import disagreement, person_from_truth
from cekura_labs_mcp.server.guard import AutoImproveRuns, ConfirmationRequired, CostGuard, GuardRefusal, SpendPlan
from cekura_labs_mcp.server.ledger import Ledger, PostgresLedger, in_overlap
from cekura_labs_mcp.server.logs import scrub
from cekura_labs_mcp.server.reviewers import ReviewerDirectory
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult
from support import SandboxAdmin, call
from team_support import add, team_server

pytestmark = pytest.mark.anyio


def _ids(sandbox: SandboxAdmin) -> dict[str, int]:
    return {"agent_id": sandbox.info()["main_agent_id"], "metric_id": sandbox.metric_named("one question")["id"]}


def _lab_entries(sandbox: SandboxAdmin, call_id: int) -> list[Any]:
    return [r["body"] for r in sandbox.requests("POST", "create_from_call_log")
            if 200 <= (r["status"] or 0) < 300 and r["body"]["call_log_id"] == call_id]


async def test_a_late_verdict_after_an_expired_lease_never_sends_a_contradicting_lab_entry(
        settings: Settings, sandbox: SandboxAdmin, tmp_path: Path) -> None:
    """Ana is handed a call and walks away; her lease expires and the queue hands the call to Ben, who judges it.
    Ana comes back and records the opposite verdict. Outside the overlap sample too, two people's disagreement must
    not reach the optimizer as two contradicting Lab entries: the late one is held and listed to both to settle."""
    ids = _ids(sandbox)
    truth = sandbox.truth(ids["metric_id"])
    brief = settings.model_copy(update={"review_lease_seconds": 1e-6})  # every lease has expired by the next request
    with team_server(brief, tmp_path, ("ana", "ben")) as team:
        async with team.client("ana") as ana, team.client("ben") as ben:
            handed = await call(ana, "next_review", ids)
            call_id = int(handed["call"]["id"])
            assert not in_overlap(ids["metric_id"], call_id, 0.0)
            bens = await call(ben, "next_review", ids)
            assert int(bens["call"]["id"]) == call_id, "an expired lease hands the call on"
            right = person_from_truth(truth, bens)
            await call(ben, "record_review", {**ids, "call_id": call_id, **right})
            shown = str(handed["call"]["metric"]["value"]).upper()
            bens_value = shown if right["agree"] else str(right["expected_value"]).upper()
            late = disagreement(handed, bens_value != "TRUE", "I read this moment the other way.")
            answer = await call(ana, "record_review", {**ids, "call_id": call_id, **late})
    assert len(_lab_entries(sandbox, call_id)) == 1, "the two people's contradicting verdicts both reached the Lab"
    assert "ben judged this call differently" in answer["recorded"]


def test_a_replaced_token_is_refused_even_when_the_file_keeps_its_size_and_time(tmp_path: Path) -> None:
    """`reviewer add ana --replace` revokes a leaked token. The new file has the same size (one digest for another),
    and on Linux a file's modification time advances by the kernel's coarse tick, so two writes within a few ms
    carry the same time: a server that only compares (mtime, size) keeps accepting the revoked token forever."""
    path = tmp_path / "reviewers.json"
    leaked = add(path, "ana")
    directory = ReviewerDirectory(path)
    assert directory.reviewer_of(leaked) == "ana"
    before = path.stat()
    fresh = add(path, "ana", "--replace")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same tick
    assert path.stat().st_size == before.st_size
    assert directory.reviewer_of(leaked) is None, "the revoked token still opens the server"
    assert directory.reviewer_of(fresh) == "ana"


def _calls_of(sandbox: SandboxAdmin, n: int) -> list[int]:
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 200})
    ids = [int(r["id"]) for r in rows["results"]]
    assert len(ids) >= n
    return ids[:n]


async def test_the_persons_yes_holds_when_the_retry_reaches_another_process(
        settings: Settings, sandbox: SandboxAdmin, tmp_path: Path) -> None:
    """Stateless processes behind a load balancer, a 2026-07-28 client: the spend question travels as an
    input-required answer and the person's yes comes back in the retry, with the server's sealed request state.
    The balancer sends that retry to the other process, which must be able to open what the first sealed (one
    key for the deployment, not one per process), and must bind it to the reviewer who was asked."""
    with team_server(settings, tmp_path, ("ana",)) as first, \
            team_server(settings, tmp_path, tokens=first.tokens) as second:
        ports = [httpx2.URL(first.url).port, httpx2.URL(second.url).port]
        calls_seen = 0

        async def balance(request: httpx2.Request) -> None:
            nonlocal calls_seen
            if request.method == "POST" and b'"tools/call"' in request.content:
                port = ports[calls_seen % 2]
                calls_seen += 1
                request.url = request.url.copy_with(port=port)
                request.headers["host"] = f"127.0.0.1:{port}"

        asked: list[str] = []

        async def person(_context: Any, params: ElicitRequestParams) -> ElicitResult:
            asked.append(params.message)
            return ElicitResult(action="accept", content={"confirm": True})

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {first.tokens['ana']}"}, timeout=60,
                                  event_hooks={"request": [balance]}, verify=tls_context())  # CA bundle loaded once
        client = Client(streamable_http_client(first.url, http_client=http), mode="2026-07-28",
                        elicitation_callback=person)
        agent = sandbox.info()["main_agent_id"]
        async with client:
            result = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": _calls_of(sandbox, 130)})
    assert len(asked) == 1 and calls_seen >= 2
    assert result["confirmation"] == "elicitation" and result["calls"] == 130


async def test_a_host_whose_clock_runs_ahead_still_sees_the_organisations_window(
        ledger_location: Path | PostgresLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hosts on one PostgreSQL ledger, one with its clock two hours ahead (a VM resumed from a snapshot, NTP
    not yet caught up). If each decided the window by its own clock, the fast host would read the other's spends as
    older than an hour and allow a second 100 calls. The window is the database's time on PostgreSQL; on SQLite every
    process shares one machine's clock."""
    calls = tuple(range(1, 81))
    plan = SpendPlan(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=calls, judge_metric_ids=(1,),
                     code_metric_ids=(), credits=round(0.2 * len(calls), 4), credits_per_call=0.2)
    slow, fast = Ledger(ledger_location), Ledger(ledger_location)
    try:
        await CostGuard(slow).authorize(plan, token=None, approval="not_asked")
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + (7200 if isinstance(ledger_location, PostgresLedger) else 0))
        with pytest.raises(ConfirmationRequired, match="already evaluated 80 calls"):
            await CostGuard(fast).authorize(plan, token=None, approval="not_asked")
    finally:
        slow.close()
        fast.close()


def test_a_host_whose_clock_runs_ahead_never_takes_a_live_lease_for_expired(
        ledger_location: Path | PostgresLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same two hosts, reviewing: Ana's lease (15 minutes) was taken on the slow host. On the fast host, by its
    own clock, it expired long ago and the call would go to Ben too. Leases are timed by the ledger's clock."""
    slow, fast = Ledger(ledger_location), Ledger(ledger_location)
    try:
        assert slow.lease_call(5, "ana", [11], overlap=0.0, ttl=900) == 11
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + (7200 if isinstance(ledger_location, PostgresLedger) else 0))
        assert fast.lease_call(5, "ben", [11], overlap=0.0, ttl=900) is None, "one call handed to two reviewers"
    finally:
        slow.close()
        fast.close()


def test_a_database_password_given_as_a_query_parameter_is_masked_and_scrubbed() -> None:
    """libpq takes `?password=` as well as `user:password@`; the ledger's location (logged at start, named in its
    errors) must not show it either way."""
    url = postgres_url("postgresql://labs@db.internal:5432/labs?sslmode=require&password=qp-hunter2-secret")
    shown = PostgresLedger(url, "ledger_x").shown
    assert "qp-hunter2-secret" not in shown and "sslmode=require" in shown
    assert url.password == "qp-hunter2-secret", "the driver still gets the password"
    assert "qp-hunter2-secret" not in scrub("could not connect: qp-hunter2-secret")


async def test_a_host_whose_clock_runs_ahead_never_starts_a_second_auto_improve_beside_one_in_flight(
        ledger_location: Path | PostgresLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ana's process has claimed an auto-improve start and is sending it. A start asked for the same metric on a
    host whose clock runs two hours ahead must see that start in flight, not take it for one lost in a crash."""
    slow, fast = Ledger(ledger_location), Ledger(ledger_location)
    try:
        assert slow.claim_run("metric 5; lab all", 5, (), now=None, in_flight_seconds=120).claimed
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + (7200 if isinstance(ledger_location, PostgresLedger) else 0))
        started: list[str] = []

        async def begin(_claim: object) -> str:
            started.append("second run")
            return "p-2"

        async def running(_progress_id: str) -> bool:
            return True

        with pytest.raises(GuardRefusal, match="being sent right now"):
            await AutoImproveRuns(fast).start(metric_id=5, test_set_ids=None, begin=begin, running=running)
        assert started == []
    finally:
        slow.close()
        fast.close()
