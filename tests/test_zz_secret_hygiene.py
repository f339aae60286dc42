"""The API key never reaches a log line, a tool result, an error message or a file.

Besides its own scenario: every log line and tool result of every test is checked for the keys as it is
written (`support.note_leaks`), and conftest fails the test that wrote one; the last test here shows that check
catching a key. (Checked per test, not by a test run last, so it holds in any order and in every worker.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.logs import get_logger, register_secret, scrub
from support import (
    LEAKS,
    LOG_SINK,
    ORG_KEY,
    SANDBOX_KEY,
    TOOL_OUTPUTS,
    SandboxAdmin,
    ToolFailed,
    call,
    connect,
    note_leaks,
)

pytestmark = pytest.mark.anyio


async def test_no_secret_in_logs_results_errors_or_files(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    sandbox.fault("/observability/v1/call-logs-external", "500", count=2)
    async with connect(settings) as client:
        await call(client, "list_calls", {"agent_id": agent, "metric_id": metric["id"], "page_size": 3})
        await call(client, "list_metrics", {"agent_id": agent})
        with pytest.raises(ToolFailed):
            await call(client, "get_call", {"call_id": 123_456_789})
        with pytest.raises(ToolFailed):
            await call(client, "mark_metric_vote", {"call_id": 1, "metric_id": metric["id"], "thumbs_up": False})
    # Errors built from text that happens to contain the key are scrubbed too.
    assert SANDBOX_KEY not in LabsError(f"upstream said: key {SANDBOX_KEY} is bad").for_assistant()
    get_logger("test").info("probe", headers={"X-CEKURA-API-KEY": SANDBOX_KEY}, note=f"Bearer {SANDBOX_KEY}")

    logs = LOG_SINK.getvalue()
    assert "cekura_request" in logs and "probe" in logs
    assert SANDBOX_KEY not in logs and ORG_KEY not in logs
    assert len(TOOL_OUTPUTS) >= 2, "the tool outputs are recorded"
    assert not [out for out in TOOL_OUTPUTS if SANDBOX_KEY in out or ORG_KEY in out]
    for path in Path(settings.data_dir).rglob("*"):
        if path.is_file():
            assert SANDBOX_KEY.encode() not in path.read_bytes(), path


def test_scrub_removes_registered_and_shaped_secrets() -> None:
    register_secret("abcd-1234-secret")
    text = scrub('token abcd-1234-secret and Authorization: Bearer xyz.987 and "X-CEKURA-API-KEY": "k-1"')
    assert "abcd-1234-secret" not in text and "xyz.987" not in text and "k-1" not in text


def test_a_key_in_a_log_line_or_a_tool_result_is_caught_as_it_is_written() -> None:
    seen = len(LEAKS)
    sink = type(LOG_SINK)()
    sink.write(f'{{"event": "cekura_request", "headers": {{"X-CEKURA-API-KEY": "{SANDBOX_KEY}"}}}}\n')
    sink.write('{"event": "cekura_request", "status": 200}\n')
    note_leaks("the result of list_calls", f"org key {ORG_KEY}")
    caught = LEAKS[seen:]
    del LEAKS[seen:]  # caught on purpose here: conftest's check of this test must not count them
    assert [line.split(":")[0] for line in caught] == ["a test key in a log line",
                                                       "a test key in the result of list_calls"]
