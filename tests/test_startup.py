"""The start-up check: `serve` with a key reads Cekura once and says on stderr which URL answered and whether the
key works; a refused key is repeated in the first tool answer. The key itself is never printed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from mcp import Client
from pydantic import SecretStr
from support import FAST_RETRY, LOG_SINK, SandboxAdmin, ToolFailed, call

pytestmark = pytest.mark.anyio
WRONG_KEY = "sk-wrong-7d1e5a0c3b-NOT-VALID"


def _events(name: str) -> list[dict[str, object]]:
    found = []
    for line in LOG_SINK.getvalue().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            found.append(event)
    return found


async def test_a_refused_key_is_said_at_start_up_and_in_the_first_answer(settings: Settings,
                                                                         sandbox: SandboxAdmin) -> None:
    wrong = settings.model_copy(update={"api_key": SecretStr(WRONG_KEY)})
    before = len(_events("cekura_key_refused"))
    async with Client(build_server(wrong, retry=FAST_RETRY, check_key=True)) as client:  # type: ignore[arg-type]
        refused = _events("cekura_key_refused")
        assert len(refused) == before + 1 and refused[-1]["url"] == sandbox.url
        with pytest.raises(ToolFailed, match=rf"\[authentication\] At start-up Cekura at {sandbox.url} refused "
                                             r"the API key: .*HTTP 401.* Hint: Check CEKURA_API_KEY"):
            await call(client, "list_metrics", {"agent_id": 2210})
        # Once said, each tool reports what its own request meets.
        with pytest.raises(ToolFailed, match=r"\[authentication\] Cekura refused the credentials"):
            await call(client, "list_metrics", {"agent_id": 2210})
    assert WRONG_KEY not in LOG_SINK.getvalue()


async def test_a_working_key_is_said_with_the_url_it_reached(settings: Settings, sandbox: SandboxAdmin) -> None:
    async with Client(build_server(settings, retry=FAST_RETRY, check_key=True)) as client:  # type: ignore[arg-type]
        reached = _events("cekura_reached")[-1]
        visible = len(sandbox.info()["metrics"])  # 6, and the documented dialect's predefined one
        assert reached["url"] == settings.api_url
        assert f"the key works ({visible} metrics visible" in str(reached["note"])
        assert [r["path"] for r in sandbox.requests()] == ["/test_framework/v1/metrics/"]  # one cheap read
        assert (await call(client, "list_metrics", {"agent_id": 2210}))["metrics"]


async def test_an_unreachable_cekura_is_said_and_the_server_still_starts(settings: Settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    nowhere = settings.model_copy(update={"api_url": url})
    async with Client(build_server(nowhere, retry=FAST_RETRY, check_key=True)) as client:  # type: ignore[arg-type]
        event = _events("cekura_unreachable")[-1]
        assert event["url"] == url and "could not be reached" in str(event["note"])
        with pytest.raises(ToolFailed, match=r"\[unavailable\]"):
            await call(client, "list_metrics", {"agent_id": 2210})


def test_serve_says_on_stderr_which_url_refused_the_key(sandbox: SandboxAdmin, tmp_path: Path) -> None:
    env = {**os.environ, "CEKURA_API_KEY": WRONG_KEY, "CEKURA_API_URL": sandbox.url,
           "CEKURA_LABS_DATA_DIR": str(tmp_path), "CEKURA_LABS_MAX_RETRIES": "0"}
    env.pop("CEKURA_LABS_READ_ONLY", None)
    # stdin at EOF: the server starts (lifespan, start-up check), finds no client and exits; no timing involved.
    done = subprocess.run([sys.executable, "-m", "cekura_labs_mcp.server.cli", "serve"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert "cekura_key_refused" in done.stderr and sandbox.url in done.stderr, done.stderr
    assert "HTTP 401" in done.stderr
    assert WRONG_KEY not in done.stderr and WRONG_KEY not in done.stdout
