"""MCP Apps (SEP-1865): the views are `ui://` resources of MIME type text/html;profile=mcp-app, the tools that
show them name them in `_meta.ui.resourceUri`, each view is one self-contained HTML file (nothing fetched at
run time), and the text answers stay complete for hosts without Apps. The views' behaviour in a browser is
tested by the browser tests; `tests/test_apps_build.py` checks the committed files are what `ui/` builds."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.apps import MIME_TYPE, READ_ONLY_MARK, VIEWS, view_html
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.tools import READ_TOOLS, WRITE_TOOLS
from mcp import Client
from support import SandboxAdmin, call, connect

ROOT = Path(__file__).resolve().parent.parent
UI_SOURCES = ROOT / "ui" / "src"
EXPECTED = {
    "ui://cekura-labs/review-card.html": {"next_review", "record_review"},
    "ui://cekura-labs/report.html": {"validate_metric", "judge_change"},
    "ui://cekura-labs/proposal.html": {"poll_progress", "answer_improvement_question"},
}


def _listing(read_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    server = build_server(Settings(CEKURA_API_KEY="unused-for-listing"), read_only=read_only)
    tools = {t.name: t for t in anyio.run(server.list_tools)}
    resources = {str(r.uri): r for r in anyio.run(server.list_resources) if str(r.uri).startswith("ui://")}
    return tools, resources


def test_each_view_is_a_listed_mcp_app_resource_its_tools_point_to() -> None:
    tools, resources = _listing(read_only=False)
    assert set(resources) == set(EXPECTED)
    for uri, resource in resources.items():
        assert resource.mime_type == MIME_TYPE == "text/html;profile=mcp-app"
        assert resource.description and resource.title
        assert resource.meta == {"ui": {"prefersBorder": True}}  # no csp domains: the view reaches nothing
        pointing = {name for name, tool in tools.items()
                    if (tool.meta or {}).get("ui", {}).get("resourceUri") == uri}
        assert pointing == EXPECTED[uri], uri
    for name, tool in tools.items():
        meta = tool.meta or {}
        if meta:  # the key older hosts read names the same view
            assert meta["ui/resourceUri"] == meta["ui"]["resourceUri"] in resources, name


def test_the_views_tools_exist_on_the_server() -> None:
    names = {spec.name for spec in READ_TOOLS + WRITE_TOOLS}
    for view in VIEWS:
        assert set(view.tools) <= names, view.name


@pytest.mark.anyio
async def test_reading_a_view_returns_its_html_with_the_app_mime_type() -> None:
    server = build_server(Settings(CEKURA_API_KEY="unused-for-listing"))
    async with Client(server) as client:  # type: ignore[arg-type]
        for uri in EXPECTED:
            contents = (await client.read_resource(uri)).contents
            assert len(contents) == 1 and contents[0].mime_type == MIME_TYPE
            assert contents[0].meta == {"ui": {"prefersBorder": True}}  # hosts read the view's _meta.ui here first
            html = contents[0].text  # type: ignore[union-attr]
            assert html.startswith("<!doctype html>") and "<script" in html
            assert READ_ONLY_MARK not in html


class _Outside(HTMLParser):
    """Every attribute that would load or link something: a self-contained view has none but in-page ones."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data") and not (value or "").startswith("#"):
                self.found.append(f"<{tag} {name}={value!r}>")


@pytest.mark.parametrize("view", [v.name for v in VIEWS])
def test_each_view_is_one_self_contained_file(view: str) -> None:
    html = view_html(view)
    parser = _Outside()
    parser.feed(html)
    assert parser.found == [], parser.found
    assert "link" not in parser.tags and "base" not in parser.tags and "iframe" not in parser.tags
    assert parser.tags.count("script") == 1 and "style" in parser.tags  # both inlined by the build
    assert not re.search(r"""\bimport\s*\(\s*["'`]https?:""", html)  # no dynamic import of a URL either


def test_read_only_server_marks_its_views_and_serves_no_view_only_writes_use() -> None:
    tools, resources = _listing(read_only=True)
    assert set(resources) == {"ui://cekura-labs/review-card.html", "ui://cekura-labs/proposal.html"}
    server = build_server(Settings(CEKURA_API_KEY="unused-for-listing"), read_only=True)
    for uri in resources:
        contents = anyio.run(server.read_resource, uri)
        html = contents[0].content  # type: ignore[index]
        assert isinstance(html, str)
        head = html.split("</head>", 1)[0]
        assert READ_ONLY_MARK in head, uri
    assert {name for name, tool in tools.items() if tool.meta} == {"next_review", "poll_progress"}


def test_the_views_read_the_read_only_mark_and_render_text_never_html() -> None:
    """The views build every element with createElement and put strings in as text nodes: transcripts and
    explanations are untrusted, so no source file may hand a string to the HTML parser."""
    sources = list(UI_SOURCES.rglob("*.ts"))
    assert sources
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser", "eval(",
                     "new Function"):
            assert sink not in text, f"{path.relative_to(ROOT)} uses {sink}"
    mark = re.search(r'name="([^"]+)" content="([^"]+)"', READ_ONLY_MARK)
    assert mark is not None
    for view in VIEWS:
        html = view_html(view.name)
        assert mark.group(1) in html and mark.group(2) in html, view.name  # the bundle checks for the mark



@pytest.mark.anyio
async def test_text_answers_carry_everything_the_views_read(settings: Settings, sandbox: SandboxAdmin) -> None:
    """A host without Apps shows the text: it is the same JSON the view reads from structuredContent."""
    agent = sandbox.info()["main_agent_id"]
    metric = sandbox.metric_named("one question")
    async with connect(settings) as client:
        result = await client.call_tool("next_review", {"agent_id": agent, "metric_id": metric["id"]})
        assert not result.is_error and result.structured_content is not None
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert json.loads(text) == result.structured_content
        review = await call(client, "next_review", {"agent_id": agent, "metric_id": metric["id"]})
        assert review["call"]["metric"]["explanation"] and review["call"]["transcript"]["turns"]
        assert review["why_picked"] and review["progress"]["needed"] > 0


def _interfaces(source: str) -> dict[str, set[str]]:
    """Each `export interface` of ui/src/shared/types.ts and its top-level field names (nested object types
    are skipped; `extends` adds the parent's fields)."""
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"export interface (\w+)(?: extends (\w+))? \{", source):
        depth, text, i = 1, [], match.end()
        while depth:
            char = source[i]
            depth += {"{": 1, "}": -1}.get(char, 0)
            if depth == 1 and char not in "{}":
                text.append(char)
            i += 1
        fields = {m.group(1) for part in re.split(r"[;\n]", "".join(text))
                  if (m := re.match(r"\s*(\w+)\??\s*:", part))}
        found[match.group(1)] = fields | found.get(match.group(2) or "", set())
    return found


def test_what_the_views_read_is_what_the_tools_answer() -> None:
    """The views' types name fields of the server's models: a renamed or dropped field fails here, not silently
    in a host's iframe."""
    from cekura_labs_mcp.server.services.calls import CallReview
    from cekura_labs_mcp.server.services.improve import ImprovementResult, PatchPreview, QuestionView, ScoreView
    from cekura_labs_mcp.server.services.review import NextReview, Progress, RecordedReview
    from cekura_labs_mcp.server.services.validation import (
        Change,
        ChangeToJudge,
        FixedCall,
        FreshReport,
        GroupReport,
        RegressionCheck,
        Scores,
    )
    from cekura_labs_mcp.tools.calls import MetricDetail
    from pydantic import BaseModel

    models: dict[str, type[BaseModel]] = {
        "Progress": Progress, "NextReview": NextReview, "RecordedReview": RecordedReview, "CallReview": CallReview,
        "ImprovementResult": ImprovementResult, "ScoreView": ScoreView, "Question": QuestionView,
        "PatchPreview": PatchPreview, "Scores": Scores, "Change": Change, "FixedCall": FixedCall,
        "GroupReport": GroupReport, "FreshReport": FreshReport, "ChangeToJudge": ChangeToJudge,
        "RegressionCheck": RegressionCheck, "MetricDefinition": MetricDetail,
    }
    interfaces = _interfaces((UI_SOURCES / "shared" / "types.ts").read_text(encoding="utf-8"))
    assert set(models) <= set(interfaces), set(models) - set(interfaces)
    for name, model in models.items():
        fields = {f.alias or key for key, f in model.model_fields.items()}
        assert interfaces[name] <= fields, f"{name}: the views read {sorted(interfaces[name] - fields)}, not sent"
    from cekura_labs_mcp.server.presenting import Transcript, Turn
    from cekura_labs_mcp.server.services.calls import MetricView

    # The nested shapes the card reads: the metric under review, the transcript and its turns.
    assert {"id", "name", "value", "unreadable", "explanation", "moments"} <= set(MetricView.model_fields)
    assert {"note", "turns", "shown", "total_turns"} <= set(Transcript.model_fields)
    assert interfaces["Turn"] == set(Turn.model_fields)
