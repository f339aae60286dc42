"""Retries against injected faults: reads recover, writes are never repeated, 429 is honoured."""

from __future__ import annotations

import time

import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient, RetryPolicy
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import (
    AuthenticationError,
    OutcomeUnknownError,
    RateLimitedError,
    ServiceError,
    ValidationFailedError,
)
from pydantic import SecretStr
from support import FAST_RETRY, SANDBOX_KEY, SandboxAdmin, ToolFailed, call, connect

pytestmark = pytest.mark.anyio
CALLS = "/observability/v1/call-logs-external/"
# A request that times out: the sandbox holds it unanswered (until the next test's reset lets it go), so the client's
# timeout certainly fires first however loaded the machine is; a delay only a little longer than the timeout could
# be answered before a starved client noticed its timeout.
NO_ANSWER = "hold"


def _client(sandbox: SandboxAdmin, key: str = SANDBOX_KEY, timeout: float = 2.0) -> CekuraClient:
    return CekuraClient(sandbox.url, SecretStr(key), timeout=timeout, retry=FAST_RETRY)


def _a_call(sandbox: SandboxAdmin) -> int:
    agent = sandbox.info()["main_agent_id"]
    return int(sandbox.api("GET", CALLS, params={"agent_id": agent})["results"][0]["id"])


@pytest.mark.parametrize("kind", ["500", "malformed", "drop", NO_ANSWER])
async def test_a_read_recovers_after_a_fault(sandbox: SandboxAdmin, kind: str) -> None:
    call_id = _a_call(sandbox)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}", kind, count=1)
    async with _client(sandbox) as client:
        detail = await client.get_call(call_id)
    assert detail.id == call_id
    assert len(sandbox.requests("GET", f"{sandbox.calls_path()}{call_id}")) == 2


async def test_a_read_gives_up_with_a_clear_error(sandbox: SandboxAdmin) -> None:
    call_id = _a_call(sandbox)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}", "500", count=10)
    async with _client(sandbox) as client:
        with pytest.raises(ServiceError, match="HTTP 500"):
            await client.get_call(call_id)
    assert len(sandbox.requests("GET", f"{sandbox.calls_path()}{call_id}")) == FAST_RETRY.max_retries + 1


@pytest.mark.parametrize("kind", ["500", "drop", NO_ANSWER, "malformed"])
async def test_a_vote_is_never_repeated_after_an_ambiguous_failure(
    settings: Settings, sandbox: SandboxAdmin, kind: str
) -> None:
    metric = sandbox.metric_named("one question")
    call_id = _a_call(sandbox)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}/mark_metric_vote", kind, count=1)
    # A held vote is never answered in this test: the 2 s timeout always fires first.
    async with connect(settings.model_copy(update={"http_timeout_seconds": 2.0})) as client:
        with pytest.raises(ToolFailed) as failure:
            await call(client, "mark_metric_vote", {"call_id": call_id, "metric_id": metric["id"],
                                                    "thumbs_up": True})
    assert "outcome_unknown" in str(failure.value) and "NOT retried" in str(failure.value)
    assert len(sandbox.requests("POST", "mark_metric_vote")) == 1


async def test_a_spend_is_never_repeated_after_a_5xx(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    call_id = _a_call(sandbox)
    sandbox.fault(sandbox.calls_path().replace("call-logs-external", "call-logs") + "rerun_evaluation", "500",
                  count=1)
    async with connect(settings) as client:
        with pytest.raises(ToolFailed, match="may or may not have been applied"):
            await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": [call_id]})
    assert len(sandbox.requests("POST", "rerun_evaluation")) == 1


async def test_429_is_honoured_for_reads_and_writes(sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    call_id = _a_call(sandbox)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}", "429", count=1, retry_after=1)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}/mark_metric_vote", "429", count=1, retry_after=1)
    async with _client(sandbox) as client:
        started = time.monotonic()
        await client.get_call(call_id)
        assert time.monotonic() - started >= 0.9
        await client.mark_metric_vote(call_id, metric_id=metric["id"], thumbs_up=True, expected_value=False,
                                      feedback="ok")
    # A 429 means nothing was done, so even the write is sent again, once.
    assert len(sandbox.requests("POST", "mark_metric_vote")) == 2
    assert [r["status"] for r in sandbox.requests("POST", "mark_metric_vote")] == [429, 200]


async def test_429_with_a_long_wait_is_reported_not_slept(sandbox: SandboxAdmin) -> None:
    call_id = _a_call(sandbox)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}", "429", count=1, retry_after=600)
    async with CekuraClient(sandbox.url, SecretStr(SANDBOX_KEY), retry=RetryPolicy(max_retry_after=5)) as client:
        with pytest.raises(RateLimitedError, match="600 s"):
            await client.get_call(call_id)


async def test_errors_are_mapped_to_actionable_messages(sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    async with _client(sandbox, key="wrong-key") as client:
        with pytest.raises(AuthenticationError, match="CEKURA_API_KEY"):
            await client.list_calls(agent_id=agent)
    async with _client(sandbox) as client:
        with pytest.raises(ValidationFailedError, match="timestamp"):
            await client.list_calls(agent_id=agent, timestamp_from="2026-01-01T00:00:00Z",
                                    timestamp_to="2026-05-01T00:00:00Z")


async def test_timeout_on_a_write_is_reported_as_unknown(sandbox: SandboxAdmin) -> None:
    metric = sandbox.metric_named("one question")
    call_id = _a_call(sandbox)
    sandbox.fault(f"{sandbox.calls_path()}{call_id}/mark_metric_vote", NO_ANSWER, count=1)
    async with _client(sandbox, timeout=0.5) as client:
        with pytest.raises(OutcomeUnknownError, match="vote"):
            await client.mark_metric_vote(call_id, metric_id=metric["id"], thumbs_up=True, expected_value=True,
                                          feedback=None)
    assert len(sandbox.requests("POST", "mark_metric_vote")) == 1
