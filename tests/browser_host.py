"""The browser side of the MCP Apps tests: headless Chromium (the Debian package) driven by Playwright, a test host
page that speaks the host side of the protocol (tests/browser/host.html, on the official AppBridge), and an MCP
client against the real server with the embedded sandbox that the page's tools/call requests go through.

Playwright is used with the system's Chromium only (`executable_path`): it never downloads a browser of its own,
which this closed network would refuse anyway."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

from anyio.from_thread import BlockingPortal, start_blocking_portal
from cekura_labs_mcp.server.config import Settings
from mcp import Client
from support import connect
from system_needs import missing

ROOT = Path(__file__).resolve().parent.parent
# host.html, the fixture view, and host-bridge.js: the official AppBridge + PostMessageTransport of
# @modelcontextprotocol/ext-apps (the views' version, from ui/'s lock file), bundled by `npm run build:test-host`
# in ui/ into one script that sets window.ExtAppsHost (tests/test_browser_host_build.py keeps it fresh).
ASSETS = Path(__file__).resolve().parent / "browser"
# Screenshots of each view land here (git-ignored), for people to look at: nothing compares them.
ARTIFACTS = Path(os.environ.get("CEKURA_LABS_ARTIFACTS_DIR") or ROOT / "test-artifacts")
SCREENSHOTS = ARTIFACTS / "screenshots"
# The host page's made-up origin: Playwright answers every request to it from the files above, so nothing
# reaches a network and no port is opened.
HOST = "http://mcp-host.test"
APP_MIME = "text/html;profile=mcp-app"
# What real hosts do to a view (spec: no network unless the resource's _meta.ui.csp allows it); the views here
# need none, so any fetch, font or image from outside is refused and shows in the page's console.
VIEW_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
            "font-src data:")
# The host page's viewport: taller than any view the tests show (the report view, the tallest, is ~1800 px), so the
# host page never scrolls. On a scrolled page the view moved under the pointer: after a redraw the view's frame
# shrinks (its size-changed comes from the view's process some milliseconds after the new content shows), the
# page's scroll is clamped, and the frame moves down by as much. A click whose press met the button and whose
# release met the text above it clicks nothing, and Playwright reports it done (its hit-target check looks at the
# first event only), so the test waited for what the click should have opened. A full frame also needs no resize
# for a screenshot.
VIEWPORT = {"width": 800, "height": 1900}
# A bound against a hang, never a timing the tests rely on (2 loaded cores: a tool call can take seconds).
WAIT_MS = 60_000

CHROMIUM_FLAGS = [
    # Chromium refuses to start as root with its own process sandbox ("Running as root without --no-sandbox is
    # not supported"), and the tests run as root here and in CI. What the tests rely on stays: the view is isolated
    # from the host page by the iframe's sandbox attribute (an opaque origin) and its CSP.
    "--no-sandbox",
    "--disable-gpu",
    # Nothing may try the network on this closed machine: no QUIC probes, no first-run or background fetches
    # (component updates, sync, safe-browsing lists).
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # The views in the host page's process: with site isolation each view (a sandboxed frame, an opaque origin)
    # had a renderer process of its own, one more per view shown (15 a run), each starting up and compiling the
    # view's script and Playwright's injected one afresh; in one process V8 compiles each script once. The view
    # stays isolated as the tests need it: the iframe's sandbox (an opaque origin) and its CSP, which Blink enforces
    # in any process.
    "--disable-site-isolation-trials",
]


def chromium_path() -> str | None:
    """The system Chromium (Debian's `chromium`), or CEKURA_LABS_CHROMIUM if set."""
    configured = os.environ.get("CEKURA_LABS_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_missing(reason: str) -> NoReturn:
    """Skip with the reason, or fail where the browser tests must run (CI sets CEKURA_LABS_REQUIRE_BROWSER=1)."""
    missing(reason, "CEKURA_LABS_REQUIRE_BROWSER")


@contextmanager
def launch_chromium() -> Iterator[Any]:
    """One headless Chromium shared by the browser tests (starting it costs seconds). Each test gets a fresh view
    frame (an opaque origin: it keeps no storage), server, ledger and sandbox state."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("Python package `playwright` is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        browser_missing("no Chromium found (apt-get install chromium; scripts/test-system-deps.sh does it)")
    # Playwright gives each launch a fresh temporary profile itself (its own --user-data-dir, removed on close):
    # it refuses a --user-data-dir among the args, so none is passed here. It adds --headless too.
    with tempfile.TemporaryDirectory(prefix="cekura-chromium-") as scratch, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
                                             downloads_path=scratch, env={**os.environ, "HOME": scratch})
        try:
            yield browser
        finally:
            browser.close()


def expect(target: Any) -> Any:
    """Playwright's retrying assertions (they wait for the condition, up to a bound). Imported when used, so the
    tests' module loads without Playwright and its fixture can skip (or fail, in CI) saying why."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect(target)


class McpSession:
    """An MCP client against the real server (in process, embedded sandbox), run on its own event loop in a
    thread so the synchronous browser driver can call it from the page's request handler."""

    def __init__(self, portal: BlockingPortal, client: Client) -> None:
        self._portal = portal
        self.client = client
        self._tools: dict[str, dict[str, Any]] | None = None

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return self._portal.call(function, *args)

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The CallToolResult as it goes over the wire (camelCase JSON), what a host hands a view."""
        result = self.run(self.client.call_tool, name, arguments)
        return dict(result.model_dump(by_alias=True, mode="json", exclude_none=True))

    def structured(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.call_tool(name, arguments)
        assert not result.get("isError"), f"{name} failed: {result['content']}"
        return dict(result["structuredContent"])

    def tool(self, name: str) -> dict[str, Any]:
        if self._tools is None:  # a server's tools stay what they are for its session: listed once
            listed = self.run(self.client.list_tools)
            self._tools = {tool.name: dict(tool.model_dump(by_alias=True, mode="json", exclude_none=True))
                           for tool in listed.tools}
        if name not in self._tools:
            raise AssertionError(f"the server offers no tool {name!r}")
        return self._tools[name]

    def view_of(self, tool_name: str) -> tuple[dict[str, Any], str]:
        """The tool and the HTML of its view, found the way a host finds it: the tool's `_meta.ui.resourceUri`,
        then that `ui://` resource, which must be an MCP App's HTML."""
        tool = self.tool(tool_name)
        uri = ((tool.get("_meta") or {}).get("ui") or {}).get("resourceUri")
        assert uri, f"{tool_name} has no _meta.ui.resourceUri"
        read = self.run(self.client.read_resource, uri)
        content = read.contents[0]
        assert content.mime_type == APP_MIME, f"{uri} is {content.mime_type}, not {APP_MIME}"
        return tool, str(content.text)


@contextmanager
def mcp_session(settings: Settings) -> Iterator[McpSession]:
    with start_blocking_portal(backend="asyncio") as portal:
        connection: AbstractContextManager[Client] = portal.wrap_async_context_manager(connect(settings))
        with connection as client:
            yield McpSession(portal, client)


def with_csp(html: str) -> str:
    """The view's HTML with the host's Content-Security-Policy first in its <head>."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{VIEW_CSP}">'
    head = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    if head:
        return html[:head.end()] + meta + html[head.end():]
    doctype = re.match(r"\s*<!doctype[^>]*>", html, re.IGNORECASE)
    at = doctype.end() if doctype else 0
    return html[:at] + meta + html[at:]


class HostPage:
    """The test host page: shows a view for a tool call and forwards its tools/call requests to the MCP session of
    the test at hand. One page serves every test of a module (loading it costs a second or two on a loaded
    machine); each test starts with an empty host (`start`) and its own server, ledger and sandbox state."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self._mcp: McpSession | None = None
        self.shown_result: dict[str, Any] = {}  # the CallToolResult the view was shown with
        self.blocked: list[str] = []  # requests that tried to leave the host page's files
        self.console_errors: list[str] = []
        self.served: list[str] = []  # each tools/call the backend answered, how, and in how long
        self.failures: list[str] = []  # tools/call requests the backend could not pass to the server
        # In the host page and in every view: the MCP SDK's PostMessageTransport console.debug()s each message it
        # sends and parses, whole tool results included. With DevTools attached, as Playwright is, each call had
        # Chromium preview the arguments and send the event on to Playwright's driver and to this process, which
        # wraps each argument in a handle: seconds of CPU a module for lines nothing reads. Errors and warnings
        # still reach the console, and console_errors.
        page.add_init_script("console.debug = () => {};")
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(f"pageerror: {error}"))
        page.route("**/*", self._serve)
        page.goto(f"{HOST}/host.html")
        page.wait_for_function("() => window.testHost !== undefined", timeout=WAIT_MS)

    @property
    def mcp(self) -> McpSession:
        assert self._mcp is not None, "HostPage.start(mcp) first"
        return self._mcp

    def start(self, mcp: McpSession) -> None:
        """A clean host for the next test: no view, an empty log, the system theme light, this test's server."""
        self._mcp = mcp
        self.shown_result = {}
        self.blocked.clear()
        self.console_errors.clear()
        self.served.clear()
        self.failures.clear()
        self.page.emulate_media(color_scheme="light")
        self.page.evaluate("() => window.testHost.reset()")

    def stop(self) -> None:
        self.page.evaluate("() => window.testHost.reset()")
        self._mcp = None

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _serve(self, route: Any) -> None:
        request = route.request
        url: str = request.url
        if url == f"{HOST}/host.html":
            route.fulfill(path=ASSETS / "host.html", content_type="text/html")
        elif url == f"{HOST}/host-bridge.js":
            route.fulfill(path=ASSETS / "host-bridge.js", content_type="text/javascript")
        elif url == f"{HOST}/mcp/tools/call" and request.method == "POST":
            route.fulfill(status=200, content_type="application/json", body=json.dumps(self._backend(request)))
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def _backend(self, request: Any) -> dict[str, Any]:
        """The host's backend: the page posts the view's tools/call here and gets the server's CallToolResult. It
        always answers: a route left unanswered (the handler raised) would leave the page's fetch, and with it the
        view's call, waiting forever, and the test would time out on an element that never came with no word of why.
        A failure here answers the view with an error result it shows, and fails the test (`failures`)."""
        started = time.monotonic()
        name = "?"
        try:
            asked = json.loads(request.post_data or "{}")
            name = str(asked["name"])
            result = self.mcp.call_tool(name, asked.get("arguments") or {})
        except Exception as error:
            failure = f"the host's backend failed on {name} after {time.monotonic() - started:.1f} s: {error!r}"
            self.failures.append(failure)
            self.served.append(failure)
            return {"content": [{"type": "text", "text": failure}], "isError": True}
        outcome = "an error result" if result.get("isError") else "ok"
        self.served.append(f"{name}: {outcome} in {time.monotonic() - started:.1f} s")
        return result

    def show(self, tool_name: str, arguments: dict[str, Any], *, theme: str = "light",
             html: str | None = None, capabilities: dict[str, Any] | None = None) -> Any:
        """Call the tool, then show its view with that call's input and result, as a host does after a tool call
        whose tool has a UI. `html` replaces the server's view (the harness's own fixture view); `capabilities`
        replaces the host's (serverTools, logging, openLinks). Returns the
        view's frame once the view told the host it is initialized and the result was sent."""
        if html is None:
            tool, html = self.mcp.view_of(tool_name)
        else:
            tool = self.mcp.tool(tool_name)
        result = self.mcp.call_tool(tool_name, arguments)
        assert not result.get("isError"), f"{tool_name} failed: {result['content']}"
        self.shown_result = result
        spec = {"html": with_csp(html), "tool": tool, "toolInput": arguments, "toolResult": result, "theme": theme,
                "capabilities": capabilities}
        self.page.evaluate("spec => window.testHost.load(spec)", spec)
        if not self.until("() => window.testHost.log.some(e => e.kind === 'tool-result-sent')"):
            raise AssertionError(f"the view never got its tool result; {self.diagnosis()}")
        return self.view()

    def until(self, check: str, arg: Any = None) -> bool:
        """Whether `check` (a JavaScript function of `arg`) came to hold on the host page within WAIT_MS. The page
        re-runs it when its log changes (testHost.until), not on every animation frame for as long as a tool call takes,
        as wait_for_function does."""
        return bool(self.page.evaluate(f"([arg, ms]) => window.testHost.until(() => ({check})(arg), ms)",
                                       [arg, WAIT_MS]))

    def view(self) -> Any:
        return self.page.frame_locator("#view")

    def set_theme(self, theme: str) -> None:
        self.page.evaluate("theme => window.testHost.setTheme(theme)", theme)

    def tool_calls(self, name: str | None = None) -> list[dict[str, Any]]:
        return list(self.page.evaluate("name => window.testHost.toolCalls(name)", name))

    def wait_for_tool_call(self, name: str, count: int = 1) -> dict[str, Any]:
        """Wait until the view's `count`-th call of `name` has its answer; return that call (arguments, result)."""
        if not self.until("([name, count]) => window.testHost.toolCalls(name).filter(c => c.done).length >= count",
                          [name, count]):
            raise AssertionError(f"the view never made call {count} of {name}; {self.diagnosis()}")
        return self.tool_calls(name)[count - 1]

    def diagnosis(self) -> str:
        """What the host saw and what the view shows, for a failure message. Never raises: it is called while a
        test is failing, and must not hide why."""
        try:
            log = self.page.evaluate(
                "() => JSON.stringify(window.testHost.log.map(e => ({...e, result: undefined})))")
        except Exception as error:
            log = f"(unreadable: {error!r})"
        try:
            frame = self.page.evaluate(
                "() => JSON.stringify({scrollY, frame: document.getElementById('view')?.getBoundingClientRect()})")
        except Exception as error:
            frame = f"(unreadable: {error!r})"
        try:
            text = repr(self.view().locator("body").inner_text(timeout=5_000)[:1500])
        except Exception as error:
            text = f"(unreadable: {error!r})"
        return (f"host log: {log}\nthe host's backend served: {self.served}\n"
                f"console errors: {self.console_errors}\nthe host page's scroll and frame: {frame}\n"
                f"the view shows: {text}")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        # The whole frame inside the viewport, painted: Chromium paints the view's frame (another process: an opaque
        # origin) only where it is on screen, so a frame taller than the viewport is captured with an unpainted foot.
        # The viewport (VIEWPORT) is tall enough for every view the tests show, so this resize is only a fallback.
        viewport = self.page.viewport_size
        height = int(self.page.evaluate("() => document.documentElement.scrollHeight"))
        if viewport and height > viewport["height"]:
            self.page.set_viewport_size({"width": viewport["width"], "height": height})
        two_frames = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
        self.view().locator(":root").evaluate(two_frames)
        self.page.evaluate(two_frames)
        self.page.locator("#view").screenshot(path=str(path))
        if viewport:
            self.page.set_viewport_size(viewport)
        return path
