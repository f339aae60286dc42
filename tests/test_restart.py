"""Kill the server process in the middle of a session and restart it: no vote lost or sent twice."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from support import SANDBOX_KEY, SandboxAdmin, call, wait_until
from test_labs_loop import answer_from_truth

pytestmark = pytest.mark.anyio


def _params(data_dir: Path, sandbox: SandboxAdmin, database_url: str | None) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA")}
    # The timeout is a bound against a hang: the vote the server is killed over is held by the sandbox until the
    # test lets it go, after the kill, so no request of this test has to beat a timeout.
    env.update({"CEKURA_API_KEY": SANDBOX_KEY, "CEKURA_API_URL": sandbox.url, "CEKURA_LABS_DATA_DIR": str(data_dir),
                "CEKURA_LABS_HTTP_TIMEOUT": "60"})
    if database_url:
        env["CEKURA_LABS_DATABASE_URL"] = database_url
    return StdioServerParameters(command=sys.executable, args=["-m", "cekura_labs_mcp.server.cli", "serve"], env=env)


def _server_pid(data_dir: Path) -> int:
    """The serve process is found by its environment: its data dir is unique to this test."""
    marker = f"CEKURA_LABS_DATA_DIR={data_dir}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError("serve process not found")


async def _review_some(client: Client, agent: int, metric: int, truth: dict[str, Any], n: int) -> list[int]:
    done = []
    review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
    for _ in range(n):
        await call(client, "record_review", {"agent_id": agent, "metric_id": metric,
                                             "call_id": review["call"]["id"], **answer_from_truth(truth, review)})
        done.append(review["call"]["id"])
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
    return done


async def test_kill_mid_session_then_resume(tmp_path: Path, sandbox: SandboxAdmin, database_url: str | None) -> None:
    """On either ledger: a SQLite file, or PostgreSQL (whose connection dies with the process)."""
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")["id"]
    truth = sandbox.truth(metric)
    data_dir = tmp_path / "data"
    errlog = (tmp_path / "stderr.log").open("w")
    first: list[int] = []
    in_flight = 0

    async def doomed_session() -> None:
        nonlocal in_flight
        async with Client(stdio_client(_params(data_dir, sandbox, database_url), errlog=errlog)) as client:
            await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
            first.extend(await _review_some(client, agent, metric, truth, 2))
            review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric})
            in_flight = review["call"]["id"]
            # The vote reaches 'Cekura', which holds it unanswered until the test releases it: the server dies
            # while it certainly waits for the answer, and the vote lands only after that.
            sandbox.fault(f"{sandbox.calls_path()}{in_flight}/mark_metric_vote", "hold")
            await call(client, "record_review", {"agent_id": agent, "metric_id": metric, "call_id": in_flight,
                                                 **answer_from_truth(truth, review)})

    async with anyio.create_task_group() as group:
        group.start_soon(_swallow, doomed_session)
        # Kill once the vote is held by 'Cekura' (not after a guessed time); release it once the server is gone.
        await wait_until(sandbox.held, "the vote held by 'Cekura'")
        os.kill(_server_pid(data_dir), signal.SIGKILL)
        killed_at = time.time()
    assert sandbox.release() == 1
    vote = await wait_until(lambda: (r := sandbox.request_to("POST", f"/{in_flight}/mark_metric_vote"))
                            and r["ended"] and r, "the released vote land")
    assert vote["status"] == 200 and vote["ended"] > killed_at, "the server died before the vote was answered"

    async with Client(stdio_client(_params(data_dir, sandbox, database_url), errlog=errlog)) as client:
        progress = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
        assert progress["reviewed"] == 3, "the interrupted vote landed, and the ledger must say so"
        more = await _review_some(client, agent, metric, truth, 2)
        final = await call(client, "start_review", {"agent_id": agent, "metric_id": metric})
    errlog.close()
    votes = [int(r["path"].rstrip("/").split("/")[-2]) for r in sandbox.requests("POST", "mark_metric_vote")]
    assert sorted(votes) == sorted([*first, in_flight, *more]), "every vote exactly once"
    assert final["reviewed"] == 5
    assert any("Lab entry outcome unknown" in c for c in final["check"]) or final["feedback"] == 5


async def _swallow(fn: Any) -> None:
    try:
        await fn()
    except BaseException as exc:  # the killed server breaks the session: expected here
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            raise
