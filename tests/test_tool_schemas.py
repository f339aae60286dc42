"""Snapshot of every tool's public face (name, description, annotations, schemas) and the toolset it is listed in
(`core`: from the start; otherwise once load_toolset loaded it): a changed description, argument or toolset is a
reviewed diff. Regenerate with UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
from cekura_labs_mcp.server.app import INSTRUCTIONS, build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.tools import DEFINED_IN_INSTRUCTIONS

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


def _tools() -> list[dict[str, Any]]:
    server = build_server(Settings(CEKURA_API_KEY="unused-for-listing"))
    tools = anyio.run(server.list_every_tool)
    return [{**t.model_dump(mode="json", by_alias=True, exclude_none=True), "toolset": server.toolset_of[t.name]}
            for t in sorted(tools, key=lambda t: t.name)]


def test_tool_schemas_match_the_snapshot() -> None:
    current = json.dumps(_tools(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), "run with UPDATE_SNAPSHOTS=1 to create the snapshot"
    assert current == SNAPSHOT.read_text(), "tool schemas changed: review, then UPDATE_SNAPSHOTS=1"


def test_every_argument_is_described() -> None:
    """In its schema, or once for every tool in the server's instructions (the ids and the time window)."""
    for tool in _tools():
        for name, prop in tool["inputSchema"]["properties"].items():
            if name in DEFINED_IN_INSTRUCTIONS:
                assert name in INSTRUCTIONS and "description" not in prop, f"{tool['name']}.{name}"
            else:
                assert prop.get("description"), f"{tool['name']}.{name} has no description"
