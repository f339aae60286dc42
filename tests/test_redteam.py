"""Attacks on what the team deployment promises, each kept as a test: a lease that expired while its reviewer was
away, a revoked reviewer token, a second process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.demo import disagreement, person_from_truth
from cekura_labs_mcp.server.ledger import in_overlap
from cekura_labs_mcp.server.reviewers import ReviewerDirectory
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
