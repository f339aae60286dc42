"""Team review: the queue leases each call it hands out, so two reviewers on one metric never get the same call
outside the overlap sample; the overlap sample goes to two people, whose agreement (kappa) every progress answer
shows; a call they disagree on is listed to both and its Lab entry held until they settle; agreeing verdicts make
one Lab entry, not two."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.demo import disagreement, person_from_truth
from cekura_labs_mcp.server.ledger import LabDecision, Ledger, PostgresLedger, acting_for, in_overlap
from cekura_labs_mcp.server.services.team import same
from mcp import Client
from support import SandboxAdmin, call
from team_support import Team, team_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def team(settings: Settings, tmp_path: Path) -> Iterator[Team]:
    with team_server(settings, tmp_path, ("ana", "ben", "cy")) as running:
        yield running


def _ids(sandbox: SandboxAdmin) -> dict[str, int]:
    return {"agent_id": sandbox.info()["main_agent_id"], "metric_id": sandbox.metric_named("one question")["id"]}


def _lab_entries(sandbox: SandboxAdmin, call_id: int) -> int:
    return sum(1 for r in sandbox.requests("POST", "create_from_call_log")
               if 200 <= (r["status"] or 0) < 300 and r["body"]["call_log_id"] == call_id)


async def _next(client: Client, ids: dict[str, int]) -> dict[str, Any]:
    return await call(client, "next_review", ids)


async def test_two_reviewers_never_hold_the_same_call_and_a_skip_gives_it_back(team: Team,
                                                                                 sandbox: SandboxAdmin) -> None:
    ids = _ids(sandbox)
    async with team.client("ana") as ana, team.client("ben", mode="auto") as ben:
        first = (await _next(ana, ids))["call"]["id"]
        again = (await _next(ana, ids))["call"]["id"]
        assert again == first, "the queue hands a reviewer the call they already hold"
        bens = (await _next(ben, ids))["call"]["id"]
        assert bens != first
        await call(ana, "record_review", {**ids, "call_id": first, "skip": True})
        anas_next = (await _next(ana, ids))["call"]["id"]
        assert anas_next not in (first, bens)
        truth = sandbox.truth(ids["metric_id"])
        review = await _next(ben, ids)
        await call(ben, "record_review", {**ids, "call_id": bens, **person_from_truth(truth, review)})
        # Ana's skip gave her first call back to the team: the most suspicious call free, so Ben gets it now.
        assert (await _next(ben, ids))["call"]["id"] == first
    ledger = Ledger(team.settings.ledger_path)
    try:
        holders = {(lease.call_id, lease.reviewer, lease.state) for lease in ledger.leases_of(ids["metric_id"])}
    finally:
        ledger.close()
    assert holders == {(bens, "ben", "done"), (anas_next, "ana", "leased"), (first, "ben", "leased")}


async def _review_until_shared(reviewer: Client, ids: dict[str, int], truth: dict[str, Any]) -> int:
    """Record verdicts from the truth until the queue hands this reviewer a call of the overlap sample."""
    for _ in range(30):
        review = await _next(reviewer, ids)
        call_id = int(review["call"]["id"])
        if in_overlap(ids["metric_id"], call_id, 0.5):
            return call_id
        await call(reviewer, "record_review", {**ids, "call_id": call_id, **person_from_truth(truth, review)})
    raise AssertionError("no call of the overlap sample came up")


async def test_shared_calls_go_to_two_people_whose_agreement_is_shown(team: Team, sandbox: SandboxAdmin) -> None:
    ids = _ids(sandbox)
    truth = sandbox.truth(ids["metric_id"])
    async with team.client("ana") as ana, team.client("ben") as ben, team.client("cy") as cy:
        await call(ana, "start_review", {**ids, "overlap": 0.5})
        shared = []
        for _ in range(2):
            call_id = await _review_until_shared(ana, ids, truth)
            review = await _next(ana, ids)
            answer = await call(ana, "record_review", {**ids, "call_id": call_id, **person_from_truth(truth, review)})
            assert "held until the second reviewer" in answer["recorded"]
            # Ben's queue reaches the same shared call (its second slot); never one Ana judged outside the sample.
            while True:
                review = await _next(ben, ids)
                got = int(review["call"]["id"])
                assert got not in shared
                answer = await call(ben, "record_review", {**ids, "call_id": got, **person_from_truth(truth, review)})
                if got == call_id:
                    break
                assert not in_overlap(ids["metric_id"], got, 0.5) or "held" in answer["recorded"]
            assert "ana agreed" in answer["recorded"]
            shared.append(call_id)
        # A third reviewer never gets a shared call both have judged.
        for _ in range(3):
            review = await _next(cy, ids)
            assert int(review["call"]["id"]) not in shared
            await call(cy, "record_review", {**ids, "call_id": review["call"]["id"], "skip": True})
        team_view = answer["progress"]["team"]
        assert team_view["shared_calls"] >= 2 and team_view["agreed"] == team_view["shared_calls"]
        assert team_view["kappa"] is not None and team_view["to_settle"] == []
    for call_id in shared:
        assert _lab_entries(sandbox, call_id) == 1, "two agreeing verdicts make one Lab entry"


async def test_a_disagreement_is_held_from_the_lab_until_the_two_settle_it(team: Team, sandbox: SandboxAdmin) -> None:
    ids = _ids(sandbox)
    truth = sandbox.truth(ids["metric_id"])
    async with team.client("ana") as ana, team.client("ben") as ben:
        await call(ana, "start_review", {**ids, "overlap": 0.5})
        call_id = await _review_until_shared(ana, ids, truth)
        review = await _next(ana, ids)
        right = person_from_truth(truth, review)
        await call(ana, "record_review", {**ids, "call_id": call_id, **right})
        while int((review := await _next(ben, ids))["call"]["id"]) != call_id:
            await call(ben, "record_review", {**ids, "call_id": review["call"]["id"], "skip": True})
        shown = str(review["call"]["metric"]["value"]).upper()
        anas_value = shown if right["agree"] else str(right["expected_value"]).upper()
        wrong = disagreement(review, anas_value != "TRUE", "I read this moment the other way.")
        answer = await call(ben, "record_review", {**ids, "call_id": call_id, **wrong})
        assert "held: ana judged this call differently" in answer["recorded"]
        listed = answer["progress"]["team"]["to_settle"]
        assert len(listed) == 1 and listed[0].startswith(f"call {call_id}: you said ") and "ana said" in listed[0]
        anas_view = (await call(ana, "start_review", ids))["team"]
        assert anas_view["to_settle"] and "ben said" in anas_view["to_settle"][0]
        assert _lab_entries(sandbox, call_id) == 0, "a disputed call's Lab entry is held from the optimizer"
        # They talk it over; Ben records the call again with the verdict they settled on.
        settled = await call(ben, "record_review", {**ids, "call_id": call_id, **right})
        assert "ana agreed" in settled["recorded"] and settled["progress"]["team"]["to_settle"] == []
        # Auto-improve started by hand says what the people agreed on before the optimizer learns from it.
        started = await call(ben, "process_feedbacks", {"metric_id": ids["metric_id"]})
        assert "reviewers agreed on 1 of 1 shared calls" in started["used"], started["used"]
    assert _lab_entries(sandbox, call_id) == 1


def test_leases_hold_one_reviewer_per_call_expire_and_give_way(ledger_location: Path | PostgresLedger) -> None:
    ledger = Ledger(ledger_location)
    try:
        metric = 5
        single = next(c for c in range(1, 500) if not in_overlap(metric, c, 0.3))
        double = next(c for c in range(1, 500) if in_overlap(metric, c, 0.3))
        calls = [single, double]
        assert ledger.lease_call(metric, "ana", calls, overlap=0.3, now=1000, ttl=60) == single
        assert ledger.lease_call(metric, "ben", calls, overlap=0.3, now=1001, ttl=60) == double
        assert ledger.lease_call(metric, "cy", calls, overlap=0.3, now=1002, ttl=60) == double, "a second slot"
        assert ledger.lease_call(metric, "dee", calls, overlap=0.3, now=1003, ttl=60) is None
        ledger.finish_lease(metric, double, "ben", now=1004)
        # Ana's lease on the single call expires unjudged: it is handed on; Ben's verdict never expires.
        assert ledger.lease_call(metric, "dee", calls, overlap=0.3, now=1061, ttl=60) == single
        assert ledger.lease_call(metric, "eve", calls, overlap=0.3, now=1200, ttl=60) == single
        ledger.release_lease(metric, single, "eve")
        assert ledger.lease_call(metric, "ana", calls, overlap=0.3, now=1201, ttl=60) == single
        held = {(lease.call_id, lease.reviewer, lease.state) for lease in ledger.leases_of(metric)}
        assert held == {(single, "ana", "leased"), (double, "ben", "done"), (double, "cy", "leased")}
    finally:
        ledger.close()


def test_a_pair_entry_whose_send_failed_is_sent_again_by_the_verdict_that_claimed_it(
        ledger_location: Path | PostgresLedger) -> None:
    ledger = Ledger(ledger_location)
    try:
        given = {}
        for name in ("ana", "ben"):
            with acting_for(name):
                session = ledger.open_session(5, 1, 6)
                given[name] = ledger.begin_review(session.id, call_id=9, metric_id=5, agreed=True, result_was="TRUE",
                                                  expected=True, feedback="Right.")
                ledger.mark_vote(given[name], "sent")
            if name == "ana":
                assert ledger.settle_lab(given["ana"], same) == LabDecision("held", None)
        assert ledger.settle_lab(given["ben"], same) == LabDecision("send", "ana")
        ledger.mark_lab(given["ben"], "failed", answer="429")
        # The next start_review retries Ben's entry: still his to send, and Ana's verdict still counts on it.
        assert ledger.settle_lab(given["ben"], same) == LabDecision("send", "ana")
        assert ledger.settle_lab(given["ana"], same) == LabDecision("shared", "ben")
        ledger.mark_lab(given["ben"], "added", 77)
        ledger.share_lab(given["ben"], 77)
        states = {(v.reviewer, v.lab_state) for v in ledger.team_verdicts(5, 1)}
        assert states == {("ana", "shared"), ("ben", "added")}
    finally:
        ledger.close()
