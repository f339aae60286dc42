"""The installed console script over stdio, as Claude Code starts it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cekura_labs_mcp.server.ledger import ledger_file
from mcp import Client, StdioServerParameters, stdio_client
from support import SANDBOX_KEY, SandboxAdmin, call

pytestmark = pytest.mark.anyio


def _params(env: dict[str, str], *args: str) -> StdioServerParameters:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA")}
    return StdioServerParameters(command=sys.executable, args=["-m", "cekura_labs_mcp.server.cli", "serve", *args],
                                 env={**base, **env})


async def test_serve_over_stdio_against_cekura_url_and_the_guard_elicits_on_both_protocols(
    tmp_path: Path, sandbox: SandboxAdmin
) -> None:
    """One server process per protocol (starting one is most of the cost): the legacy one also shows what a session
    over stdio logs, lists and keeps."""
    from mcp.types import ElicitRequestParams, ElicitResult

    asked: list[str] = []

    async def person_says_yes(_context: object, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    agent = sandbox.info()["main_agent_id"]
    ids = [r["id"] for r in sandbox.api("GET", "/observability/v1/call-logs-external/",
                                        params={"agent_id": agent, "page_size": 200})["results"]][:101]
    env = {"CEKURA_API_KEY": SANDBOX_KEY, "CEKURA_API_URL": sandbox.url, "CEKURA_LABS_LOG_LEVEL": "debug"}
    errlog = (tmp_path / "stderr.log").open("w+")
    spent = []
    for mode in ("legacy", "auto"):
        env["CEKURA_LABS_DATA_DIR"] = str(tmp_path / mode)
        async with Client(stdio_client(_params(env), errlog=errlog), mode=mode,
                          elicitation_callback=person_says_yes) as client:
            if mode == "legacy":
                tools = {t.name for t in (await client.list_tools()).tools}
                page = await call(client, "list_calls", {"agent_id": agent, "page_size": 5})
                assert sandbox.requests("GET", "call-logs"), "the server did not reach the configured CEKURA_API_URL"
            result = await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": ids})
            assert result["confirmation"] == "elicitation"
        spent.append(sandbox.landed_credits())
    errlog.seek(0)
    stderr = errlog.read()
    errlog.close()
    assert "cekura_request" in stderr, "one log event per HTTP request is expected on stderr"
    assert "tool_call" in stderr and "tool=list_calls" in stderr, "one log event per tool call"
    assert SANDBOX_KEY not in stderr
    assert "list_calls" in tools and "load_toolset" in tools
    assert "rerun_evaluation" not in tools  # in the "spend" toolset, listed once loaded
    assert len(page["calls"]) == 5
    assert ledger_file(tmp_path / "legacy", sandbox.url, SANDBOX_KEY).exists()
    assert len(asked) == 2 and all("101 call(s)" in m for m in asked)
    assert spent[1] == 2 * spent[0] > 0


async def test_serve_without_key_uses_the_embedded_sandbox(tmp_path: Path, sandbox: SandboxAdmin) -> None:
    errlog = (tmp_path / "stderr.log").open("w+")
    env = {"CEKURA_LABS_DATA_DIR": str(tmp_path / "data")}
    async with Client(stdio_client(_params(env), errlog=errlog)) as client:
        # Same seed as the test sandbox, so the same demo ids.
        metrics = await call(client, "list_metrics", {"agent_id": sandbox.info()["main_agent_id"]})
    errlog.seek(0)
    stderr = errlog.read()
    errlog.close()
    assert metrics["metrics"], "the embedded sandbox should serve the demo metrics"
    assert stderr.count("sandbox_started") == 1
    assert sandbox.requests() == [], "the embedded sandbox, not the test one, must have answered"
