"""Toolsets a client loads on demand, so the tool list a model reads in every conversation holds only the labs
cycle (`core`). The rarely needed tools sit in named toolsets; `load_toolset` adds one to the list and tells the
client (`notifications/tools/list_changed`). A client that ignores the notification still works: the answer
names each added tool with its arguments, and every registered tool answers when called by name, listed or not.

What a client has loaded is kept per client (`ledger.owner()`: one client over stdio, one per bearer token over
HTTP). Over stdio it is kept in memory: a restart starts from the core list again, which is what a new connection
lists anyway. A remote reviewer's is kept in the ledger (`toolset_store`), so that with several server processes
whichever answers their next tools/list lists the same tools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, get_args

from cekura_labs_mcp.server.ledger import owner
from cekura_labs_mcp.tools._common import tool_errors
from mcp.server import MCPServer
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, Field
from typing_extensions import TypeVar

CORE = "core"
ToolsetName = Literal["undo", "raw", "spend", "python"]


@dataclass(frozen=True)
class Toolset:
    name: ToolsetName
    note: str = ""  # what the load tool's description says of it beside its tools' names


TOOLSETS: tuple[Toolset, ...] = (
    Toolset("undo"),
    Toolset("raw", "outside a review session"),
    Toolset("spend", "cost credits, guarded"),
    Toolset("python"),
)
assert {t.name for t in TOOLSETS} == set(get_args(ToolsetName)), "TOOLSETS and ToolsetName name the same sets"

LifespanT = TypeVar("LifespanT", default=Any)


class ToolsetStore(Protocol):
    def toolsets_of(self, holder: str) -> set[str]: ...

    def add_toolset(self, holder: str, name: str) -> bool: ...


class ToolsetServer(MCPServer[LifespanT]):
    """An MCPServer whose `tools/list` shows the core tools and the toolsets the asking client loaded. Calls are
    not filtered: a tool of a toolset not loaded answers when called by name (a client may not have refreshed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.toolset_of: dict[str, str] = {}  # tool name -> its toolset; filled by register_tools
        self._loaded: dict[str, set[str]] = {}
        self.toolset_store: ToolsetStore | None = None  # the ledger, set when the server starts
        # Handshake-era clients learn from the capability that the list can change (the SDK advertises
        # `tools.listChanged` only when asked to; 2026-07-28 clients learn it from `subscriptions/listen`).
        lowlevel = self._lowlevel_server
        plain = lowlevel.create_initialization_options

        def with_list_changed(notification_options: NotificationOptions | None = None,
                              experimental_capabilities: dict[str, dict[str, Any]] | None = None,
                              extensions: dict[str, dict[str, Any]] | None = None) -> Any:
            return plain(notification_options or NotificationOptions(tools_changed=True), experimental_capabilities,
                         extensions)

        lowlevel.create_initialization_options = with_list_changed  # type: ignore[method-assign]

    def loaded_toolsets(self) -> frozenset[str]:
        if owner() and self.toolset_store is not None:
            return frozenset({CORE, *self.toolset_store.toolsets_of(owner())})
        return frozenset({CORE, *self._loaded.get(owner(), ())})

    def load_toolset(self, name: str) -> bool:
        """Adds `name` for the asking client; False when it was loaded already."""
        if owner() and self.toolset_store is not None:
            return self.toolset_store.add_toolset(owner(), name)
        loaded = self._loaded.setdefault(owner(), set())
        if name in loaded:
            return False
        loaded.add(name)
        return True

    async def list_tools(self) -> list[MCPTool]:
        shown = self.loaded_toolsets()
        return [tool for tool in await self.list_every_tool() if self.toolset_of.get(tool.name, CORE) in shown]

    async def list_every_tool(self) -> list[MCPTool]:
        """Every registered tool, whatever is loaded (snapshots, the manifest, the budget's full figure)."""
        return await super().list_tools()


class AddedTool(BaseModel):
    name: str
    call: str = Field(description="Its arguments; `?` marks an optional one.")
    description: str


class LoadedToolset(BaseModel):
    toolset: str
    added: list[AddedTool]
    note: str


def load_toolset_description(members: dict[str, list[str]]) -> str:
    """`members`: each toolset's tool names. The model learns here which toolset holds a tool a guide names."""
    sets = ", ".join(f"{t.name} ({', '.join(members.get(t.name, []))}{': ' + t.note if t.note else ''})"
                     for t in TOOLSETS)
    return f"Add a toolset's tools to your tool list: {sets}. Free."


@tool_errors
async def load_toolset(ctx: Context[Any, Any],
                       name: Annotated[ToolsetName, Field(description="The toolset.")]) -> LoadedToolset:
    """Adds a toolset's tools to this client's tool list and tells the client the list changed."""
    server = ctx.mcp_server
    if not isinstance(server, ToolsetServer):  # pragma: no cover - build_server always makes one
        raise RuntimeError("load_toolset needs a ToolsetServer")
    added = server.load_toolset(name)
    tools = [tool for tool in await server.list_every_tool() if server.toolset_of.get(tool.name) == name]
    if added:
        await _announce_list_changed(ctx)
    return LoadedToolset(
        toolset=name,
        added=[AddedTool(name=tool.name, call=_call_shape(tool), description=tool.description or "")
               for tool in tools],
        note=("Now in your tool list" if added else "Already in your tool list")
             + "; if your client shows no new tools, call them by name all the same: they answer.")


async def _announce_list_changed(ctx: Context[Any, Any]) -> None:
    # Handshake-era clients get the notification on the session; 2026-07-28 clients through the subscriptions
    # they opened (each channel drops what the other era's client would not expect).
    await ctx.request_context.session.send_tool_list_changed()
    await ctx.notify_tools_changed()


def _call_shape(tool: MCPTool) -> str:
    schema = tool.input_schema
    required = set(schema.get("required", []))
    arguments = [name if name in required else f"{name}?" for name in schema.get("properties", {})]
    return f"{tool.name}({', '.join(arguments)})"
