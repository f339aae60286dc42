"""MCP Apps (SEP-1865, the `io.modelcontextprotocol/ui` extension): views a host renders in a sandboxed iframe.

A tool names its view in `_meta.ui.resourceUri`; the view is a `ui://` resource of MIME type
`text/html;profile=mcp-app`, one self-contained HTML file built by `ui/` (script and style inlined, nothing
fetched at run time). The view reads the tool's structuredContent and calls tools back through the host.
Hosts without Apps ignore both: every tool's text answer stays complete on its own."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.resources.types import TextResource

MIME_TYPE = "text/html;profile=mcp-app"
# The key older hosts read (ext-apps' registerAppTool sets both it and `ui.resourceUri`).
LEGACY_URI_KEY = "ui/resourceUri"
# Put into a view's <head> on a read-only server: the view then offers no button that writes.
READ_ONLY_MARK = '<meta name="cekura-labs-mode" content="read-only">'


@dataclass(frozen=True)
class View:
    name: str
    title: str
    description: str
    tools: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"ui://cekura-labs/{self.name}.html"


VIEWS: tuple[View, ...] = (
    View("review-card", "Review card",
         "One call under review: the metric's result and explanation, the transcript at the cited moments, why it "
         "was picked, Agree / Disagree / Skip, and the session's progress toward auto-improve.",
         ("next_review", "record_review")),
    View("report", "Regression check report",
         "A regression check before and after a change: confusion matrices, agreement and kappa, fixed / regressed "
         "/ still-wrong calls, and the changed fresh results to judge.",
         ("validate_metric", "judge_change")),
    View("proposal", "Auto-improve proposal",
         "An auto-improve proposal: the description diff side by side, the trigger change, the Lab score old and "
         "new, Apply / Dismiss.",
         ("poll_progress", "answer_improvement_question")),
)
_BY_TOOL = {tool: view for view in VIEWS for tool in view.tools}


def tool_meta(tool: str) -> dict[str, Any] | None:
    """The `_meta` a tool carries when it has a view (None otherwise)."""
    view = _BY_TOOL.get(tool)
    if view is None:
        return None
    return {"ui": {"resourceUri": view.uri}, LEGACY_URI_KEY: view.uri}


@functools.cache
def view_html(name: str, read_only: bool = False) -> str:
    html = files("cekura_labs_mcp.server.ui").joinpath(f"{name}.html").read_text(encoding="utf-8")
    if read_only:
        head = html.index("<head>") + len("<head>")
        html = html[:head] + READ_ONLY_MARK + html[head:]
    return html


def register_views(server: MCPServer[Any], *, offered: set[str], read_only: bool) -> None:
    """Each view whose tools the server offers, as a `ui://` resource. On a read-only server the views are marked
    so and show no write button; a view none of whose tools is offered (the report) is not served at all."""
    for view in VIEWS:
        if not offered & set(view.tools):
            continue
        server.add_resource(TextResource(
            uri=view.uri, name=view.name, title=view.title, description=view.description, mime_type=MIME_TYPE,
            text=view_html(view.name, read_only),
            # No network at all (no connect or resource domains); a border, as a card in the conversation.
            meta={"ui": {"prefersBorder": True}},
        ))
