"""Snapshot of every tool's public face (name, description, annotations, schemas): a changed
description or argument is a reviewed diff. Regenerate with UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


def _tools() -> list[dict[str, Any]]:
    server = build_server(Settings(CEKURA_API_KEY="unused-for-listing"))
    tools = anyio.run(server.list_tools)
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in sorted(tools, key=lambda t: t.name)]


def test_tool_schemas_match_the_snapshot() -> None:
    current = json.dumps(_tools(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), "run with UPDATE_SNAPSHOTS=1 to create the snapshot"
    assert current == SNAPSHOT.read_text(), "tool schemas changed: review, then UPDATE_SNAPSHOTS=1"


def test_every_argument_is_described() -> None:
    for tool in _tools():
        for name, prop in tool["inputSchema"]["properties"].items():
            assert prop.get("description"), f"{tool['name']}.{name} has no description"
