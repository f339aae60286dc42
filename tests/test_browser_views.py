"""The MCP Apps views in a real browser: headless Chromium (Debian's package) shows each view through a test host
page that speaks the host side of the protocol (the official AppBridge), with the tool's real input and result,
and forwards the view's tool calls to the real MCP server with the embedded sandbox. What a click does is checked
where it lands (the sandbox's requests, the ledger), not in the page. Screenshots go to test-artifacts/screenshots/.

Without Chromium or Playwright these tests skip and say why; CI sets CEKURA_LABS_REQUIRE_BROWSER=1, under which
they fail instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_host import ASSETS, HostPage, launch_chromium, mcp_session
from cekura_labs_mcp.server.config import Settings
from support import SandboxAdmin

FIXTURE_VIEW = (ASSETS / "fixture-view.html").read_text()
# A binary LLM judge of the sandbox's front-desk agent: what a person reviews first in the demo's clinic.
REVIEWED_METRIC = "Appointment Booked Correctly"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser for every test here. Module-scoped, not session-scoped: Playwright's synchronous driver keeps an
    asyncio loop marked running on the main thread while it is open, which the async tests elsewhere in the suite
    (anyio.run, pytest's anyio plugin) refuse to start under; the browser must be closed before they run."""
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def host(chromium: Any, settings: Settings) -> Iterator[HostPage]:
    context = chromium.new_context(viewport={"width": 800, "height": 960}, device_scale_factor=1)
    try:
        with mcp_session(settings) as mcp:
            page = HostPage(context.new_page(), mcp)
            yield page
            assert page.blocked == [], f"the page tried to reach the network: {page.blocked}"
    finally:
        context.close()


def review_ids(sandbox: SandboxAdmin) -> dict[str, int]:
    metric = sandbox.metric_named(REVIEWED_METRIC)
    return {"agent_id": int(sandbox.info()["main_agent_id"]), "metric_id": int(metric["id"])}


def test_host_page_speaks_the_protocol_to_a_hand_written_view(host: HostPage, sandbox: SandboxAdmin) -> None:
    """The harness itself, against a view written without the SDK: initialize, tool input and result, a
    tools/call forwarded to the server and its answer rendered in place."""
    ids = review_ids(sandbox)
    host.mcp.structured("start_review", {**ids, "auto_improve": False})
    view = host.show("next_review", ids, html=FIXTURE_VIEW)
    root = view.get_by_test_id("fixture-view")
    root.and_(view.locator("[data-ready=true]")).wait_for()
    first = int(view.get_by_test_id("call-id").inner_text())
    assert view.get_by_test_id("metric-name").inner_text() == REVIEWED_METRIC
    assert view.locator(":root").get_attribute("data-theme") == "light"

    view.get_by_test_id("btn-skip").click()
    skipped = host.wait_for_tool_call("record_review")
    assert skipped["arguments"] == {**ids, "call_id": first, "skip": True}
    view.get_by_text(f"skipped call {first}").wait_for()
    shown_next = int(view.get_by_test_id("call-id").inner_text())
    assert shown_next == skipped["result"]["structuredContent"]["next"]["call"]["id"] != first
    # A skip stays in the session: no vote reached Cekura, and the server's own next pick is the call shown.
    assert sandbox.requests("POST", "mark_metric_vote") == []
    assert host.mcp.structured("next_review", ids)["call"]["id"] == shown_next

    host.set_theme("dark")
    view.locator(":root[data-theme=dark]").wait_for()
    assert host.console_errors == []
