"""The tool list a model is shown (each tool's name, description and input schema, as compact JSON) stays within
its token budget, counted with the same cl100k_base tokenizer as the benchmark; and every tool stays reachable
through the toolsets a client loads on demand (tools/toolsets.py).

Adding a tool? Give its ToolSpec a toolset (tools/__init__.py): CORE only if the labs cycle needs it in every
conversation - the core list must stay within BUDGET - otherwise the toolset it belongs with."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from cekura_labs_mcp.server.app import INSTRUCTIONS, build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.tools import ALL_TOOLS, DEFINED_IN_INSTRUCTIONS, READ_TOOLS
from cekura_labs_mcp.tools.toolsets import CORE, TOOLSETS, ToolsetServer
from mcp.shared.subscriptions import ToolsListChanged
from mcp.types import Tool
from support import ToolFailed, call, connect

# Issue 13: the list a model reads at the start of every conversation, at most 3,000 tokens.
BUDGET = 3_000
# Everything loaded: a ceiling at today's figure (see README, Performance), so it cannot grow back unnoticed.
FULL_BUDGET = 3_950
# They hold what every tool's arguments would otherwise repeat (DEFINED_IN_INSTRUCTIONS): the ids, the time window,
# the estimate and the confirmations.
INSTRUCTIONS_BUDGET = 320


def _tokens(text: str) -> int:
    from bpe_openai import get_encoding  # imported here: every worker collects this module, one counts (0.6 s)

    return len(get_encoding("cl100k_base").encode_ordinary(text))


def model_facing_text(tools: list[Tool]) -> str:
    shown: list[dict[str, Any]] = [{"name": t.name, "description": t.description, "inputSchema": t.input_schema}
                                   for t in tools]
    return json.dumps({"tools": shown}, separators=(",", ":"), ensure_ascii=False)


def _server(read_only: bool = False) -> ToolsetServer[Any]:
    return build_server(Settings(CEKURA_API_KEY="unused-for-listing"), read_only=read_only)


def model_facing(read_only: bool = False) -> str:
    return model_facing_text(anyio.run(_server(read_only).list_tools))


def test_the_tool_list_a_conversation_starts_with_fits_its_budget() -> None:
    count = _tokens(model_facing())
    assert count <= BUDGET, (
        f"the tool list at start is {count} tokens, over its budget of {BUDGET}: put the new tool in a toolset "
        "(ToolSpec.toolset in tools/__init__.py) or say it in fewer words")
    assert _tokens(model_facing(read_only=True)) < count


def test_every_tool_loaded_still_fits_its_ceiling() -> None:
    count = _tokens(model_facing_text(anyio.run(_server().list_every_tool)))
    assert count <= FULL_BUDGET, f"every tool loaded: {count} tokens, over the ceiling of {FULL_BUDGET}"


def test_the_start_list_is_the_core_and_every_tool_belongs_to_a_known_toolset() -> None:
    listed = {t.name for t in anyio.run(_server().list_tools)}
    assert listed == {spec.name for spec in ALL_TOOLS if spec.toolset == CORE}
    assert "load_toolset" in listed
    names = {toolset.name for toolset in TOOLSETS}
    assert {spec.toolset for spec in ALL_TOOLS} == {CORE, *names}, "a toolset nobody is in, or a tool in none"


def test_the_load_tool_describes_every_toolset() -> None:
    load = next(t for t in anyio.run(_server().list_tools) if t.name == "load_toolset")
    assert set(load.input_schema["properties"]["name"]["enum"]) == {toolset.name for toolset in TOOLSETS}
    for toolset in TOOLSETS:  # the guides name tools: the description says which toolset holds each
        members = ", ".join(spec.name for spec in ALL_TOOLS if spec.toolset == toolset.name)
        assert f"{toolset.name} ({members}" in (load.description or "")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_toolset_once_loaded_is_listed_and_the_client_is_told(settings: Settings, mode: str) -> None:
    """Both protocol eras: 2026-07-28 clients hear of the change on `subscriptions/listen`, handshake-era clients
    get `notifications/tools/list_changed` (and the capability saying the list can change)."""
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        method = getattr(root, "method", None)
        if isinstance(method, str):
            heard.append(method)

    async with connect(settings, mode=mode, message_handler=on_message) as client:
        start = {t.name for t in (await client.list_tools()).tools}
        core = {spec.name for spec in ALL_TOOLS if spec.toolset == CORE}
        assert start == core
        if mode == "legacy":
            tools_capability = client.server_capabilities.tools
            assert tools_capability is not None and tools_capability.list_changed
        seen = set(start)
        for toolset in TOOLSETS:
            members = {spec.name for spec in ALL_TOOLS if spec.toolset == toolset.name}
            answer = await call(client, "load_toolset", {"name": toolset.name})
            assert {added["name"] for added in answer["added"]} == members
            assert all(added["call"].startswith(added["name"] + "(") for added in answer["added"])
            listed = {t.name for t in (await client.list_tools()).tools}
            assert listed == seen | members, toolset.name
            seen = listed
            again = await call(client, "load_toolset", {"name": toolset.name})
            assert "Already" in again["note"]
        assert seen == {spec.name for spec in ALL_TOOLS}, "every tool is reachable through the toolsets"
        if mode == "legacy":
            await anyio.sleep(0)  # notifications already sent before each answer; let the handler run
            assert heard.count("notifications/tools/list_changed") == len(TOOLSETS)


@pytest.mark.anyio
async def test_the_modern_client_hears_the_change_on_its_subscription(settings: Settings) -> None:
    async with connect(settings) as client, client.listen(tools_list_changed=True) as subscription:
        await call(client, "load_toolset", {"name": "python"})
        with anyio.fail_after(30):  # a bound against a hang, not a timing
            event = await subscription.__anext__()
        assert isinstance(event, ToolsListChanged), event


@pytest.mark.anyio
async def test_a_tool_not_loaded_answers_when_called_by_name(settings: Settings) -> None:
    """A client that ignores list_changed (or never loaded the toolset) can still call the tool by name."""
    async with connect(settings) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert "spend_log" not in listed
        log = await call(client, "spend_log", {"limit": 1})
        assert "entries" in log


@pytest.mark.anyio
async def test_a_read_only_server_lists_its_read_tools_and_offers_no_toolsets(settings: Settings) -> None:
    async with connect(settings.model_copy(update={"read_only": True})) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert listed == {spec.name for spec in READ_TOOLS}
        with pytest.raises(ToolFailed):
            await call(client, "load_toolset", {"name": "spend"})
        with pytest.raises(ToolFailed):
            await call(client, "rerun_evaluation", {"agent_id": 1, "call_ids": [1], "estimate_only": True})


def test_the_instructions_that_hold_the_shared_conventions_stay_short() -> None:
    assert _tokens(INSTRUCTIONS) <= INSTRUCTIONS_BUDGET
    # The conventions the arguments' short descriptions rely on are stated there once.
    for convention in ("estimate_only=true", "confirmation_token", "33 days", "free unless", "load_toolset"):
        assert convention in INSTRUCTIONS
    for argument in DEFINED_IN_INSTRUCTIONS:
        assert argument in INSTRUCTIONS, f"{argument} has no description in the schemas, so the instructions say it"
