"""Read-only mode is one story end to end: the instructions, the tool descriptions, the guides served and the
questions asked never send the assistant toward a write the server does not offer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.tools import TOOLSET_TOOLS, WRITE_TOOLS
from support import SandboxAdmin, call, connect

pytestmark = pytest.mark.anyio
# With the toolset loader: a read-only server lists all its tools from the start and has no toolsets to load.
WRITES = {spec.name for spec in WRITE_TOOLS + TOOLSET_TOOLS}
MAIN_AGENT, ONE_QUESTION = 2210, 9101


def _named_writes(text: str) -> set[str]:
    return {name for name in WRITES if re.search(rf"\b{name}\b", text)}


async def test_read_only_server_says_read_only_everywhere(settings: Settings, sandbox: SandboxAdmin) -> None:
    async with connect(settings.model_copy(update={"read_only": True})) as client:
        instructions = client.instructions or ""
        assert "read-only" in instructions and not _named_writes(instructions), instructions
        tools = (await client.list_tools()).tools
        assert not {t.name for t in tools} & WRITES
        for tool in tools:
            assert not _named_writes(tool.description or ""), (tool.name, tool.description)
        assert "agree" not in next(t for t in tools if t.name == "get_call").description.lower()

        prompts = (await client.list_prompts()).prompts
        assert prompts
        for prompt in prompts:
            text = _prompt_text(await client.get_prompt(prompt.name, {"agent_id": "2210", "metric_id": "9101"}))
            assert text.startswith("READ-ONLY MODE"), prompt.name
            assert _named_writes(text) <= _named_writes(text.split("\n\n", 1)[0])  # each named write is declared absent
        for resource in (await client.list_resources()).resources:
            if not str(resource.uri).startswith("skill://"):
                continue
            text = (await client.read_resource(resource.uri)).contents[0].text  # type: ignore[union-attr]
            assert "READ-ONLY MODE" in text.split("\n# ", 1)[0], resource.uri  # before the first heading
            if str(resource.uri).endswith("SKILL.md"):
                assert text.startswith("---\n")  # the front matter still comes first

        review = await call(client, "next_review", {"agent_id": MAIN_AGENT, "metric_id": ONE_QUESTION})
        assert review["call"] and review["question"]
        assert "agree" not in review["question"].lower() and "read-only" in review["question"].lower()
        overview = await call(client, "metric_overview", {"agent_id": MAIN_AGENT})
        assert not _named_writes(overview["next_step"]) and "start_review" not in overview["next_step"]
    assert not sandbox.requests("POST") and not sandbox.requests("PATCH")


async def test_full_server_still_asks_for_a_verdict(settings: Settings, sandbox: SandboxAdmin) -> None:
    async with connect(settings) as client:
        assert "read-only" not in (client.instructions or "")
        review = await call(client, "next_review", {"agent_id": MAIN_AGENT, "metric_id": ONE_QUESTION})
        assert "Do you agree?" in review["question"]
        prompt = await client.get_prompt("review_calls", {"agent_id": "2210", "metric_id": "9101"})
        assert not _prompt_text(prompt).startswith("READ-ONLY")


def _prompt_text(result: Any) -> str:
    return "\n".join(getattr(message.content, "text", "") for message in result.messages)
