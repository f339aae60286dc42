"""Tool results reach the model as compact JSON: the same content as the structured result, without the
indentation that costs about a quarter more tokens (benchmarks/ measures it)."""

from __future__ import annotations

import json

import pytest
from cekura_labs_mcp.server.config import Settings
from support import SandboxAdmin, connect

pytestmark = pytest.mark.anyio


async def test_text_content_is_the_structured_result_as_compact_json(settings: Settings, sandbox: SandboxAdmin) -> None:
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        page = await client.call_tool("list_calls", {"agent_id": agent, "metric_id": metric["id"], "page_size": 3})
        call_id = page.structured_content["calls"][0]["id"] if page.structured_content else 0
        detail = await client.call_tool("get_call", {"call_id": call_id, "metric_id": metric["id"]})
    for result in (page, detail):
        assert not result.is_error and len(result.content) == 1
        text = getattr(result.content[0], "text", "")
        assert json.loads(text) == result.structured_content
        assert text == json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
        assert "\n" not in text
