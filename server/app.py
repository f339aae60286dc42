"""Assembles the MCP server: settings → lifespan (client, ledger, guard, services) → tools. The server's
instructions name tools, so they are written in the tool layer (tools/instructions.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from cekura_labs_mcp.server.apps import register_views
from cekura_labs_mcp.server.argument_errors import ArgumentErrors
from cekura_labs_mcp.server.cekura.client import RetryPolicy
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.context import RunContext, open_context
from cekura_labs_mcp.server.guidance import register_guidance
from cekura_labs_mcp.server.remote import ClientState, request_state_security
from cekura_labs_mcp.tools import ALL_TOOLS, READ_TOOLS, TOOLSET_TOOLS, WRITE_TOOLS, register_tools
from cekura_labs_mcp.tools.instructions import INSTRUCTIONS, READ_ONLY_INSTRUCTIONS
from cekura_labs_mcp.tools.toolsets import ToolsetServer
from mcp.server import MCPServer


def build_server(settings: Settings, *, use_sandbox: bool = False, retry: RetryPolicy | None = None,
                 transport: Any = None, clock: Callable[[], float] | None = None,
                 read_only: bool = False, check_key: bool = False) -> ToolsetServer[RunContext]:
    """`check_key`: read Cekura once at start-up and say on stderr what answered (what `serve` does)."""
    # One truth for the whole run: tools, guidance and services read the lockdown from the settings.
    settings = settings.model_copy(update={"read_only": read_only or settings.read_only})

    @asynccontextmanager
    async def lifespan(_server: MCPServer[RunContext]) -> AsyncIterator[RunContext]:
        async with open_context(settings, use_sandbox=use_sandbox, retry=retry, transport=transport,
                             clock=clock, check_key=check_key) as labs:
            if isinstance(_server, ToolsetServer):
                _server.toolset_store = labs.ledger  # remote reviewers' toolsets: any process lists them alike
            yield labs

    server: ToolsetServer[RunContext] = ToolsetServer(
        name="cekura-labs",
        title="Cekura Labs",
        version="0.1.0",
        instructions=READ_ONLY_INSTRUCTIONS if settings.read_only else INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
        middleware=[ClientState(), ArgumentErrors()],
        # One sealing key per deployment, bound to the reviewer: a question's answer survives a retry that reaches
        # another process (stateless HTTP, --workers), and one reviewer's answer never opens another's call.
        request_state_security=request_state_security(settings),
    )
    register_tools(server, read_only=settings.read_only)
    register_guidance(server, read_only=settings.read_only,
                      unavailable=[spec.name for spec in WRITE_TOOLS + TOOLSET_TOOLS])
    offered = READ_TOOLS if settings.read_only else ALL_TOOLS
    register_views(server, offered={spec.name for spec in offered}, read_only=settings.read_only)
    return server
