"""Helpers shared by the tests: the sandbox's admin routes and an MCP client session."""

from __future__ import annotations

import functools
import io
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.cekura.client import RetryPolicy, tls_context
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.guard import CostGuard, Endpoint, SpendPermit, SpendPlan
from cekura_labs_mcp.server.ledger import Ledger
from mcp import Client
from mcp.client.session import ClientSession

# A recognisable key: the secret-leak test searches every log line and tool result for it.
SANDBOX_KEY = "sk-test-SECRET-4f9c2b7e1d"
# An organisation-level key the test sandboxes also accept: it must name `project_id` where Cekura asks.
ORG_KEY = "org-test-SECRET-8a1e5c3f"
SECRETS = (SANDBOX_KEY, ORG_KEY)
# Where a test key was seen in a log line or a tool output, as it was written: conftest fails the test that wrote
# it when the test ends. Checked as written, not at the end of the run, so every test is checked whichever worker
# process (pytest-xdist) runs it and whatever order the tests run in.
LEAKS: list[str] = []


def note_leaks(where: str, text: str) -> None:
    if any(secret in text for secret in SECRETS):
        LEAKS.append(f"a test key in {where}: {text[:300]}")


class _CheckedSink(io.StringIO):
    """The log sink of the test process: every line is checked for the test keys as it is written."""

    def write(self, text: str) -> int:
        note_leaks("a log line", text)
        return super().write(text)


LOG_SINK: io.StringIO = _CheckedSink()
# One HTTP client for the tests' own requests to the sandboxes and servers they start. Each `httpx.get()` or
# `httpx.Client()` without `verify=` loads the CA bundle again (about 0.1 s of CPU on this machine), and the suite
# made hundreds of them. Plain HTTP on loopback; a test that needs a fresh connection makes its own client.
HTTP = httpx.Client(timeout=10, verify=tls_context())
FAST_RETRY = RetryPolicy(max_retries=3, max_retry_after=5.0, backoff_base=0.01, backoff_cap=0.05)
TOOL_OUTPUTS: list[str] = []
T = TypeVar("T")


class SandboxAdmin:
    """The sandbox's admin routes, for arranging faults and checking what reached 'Cekura'."""

    def __init__(self, url: str) -> None:
        self.url = url
        # The process's one TLS context: httpx would load the CA bundle again for each admin (one per test).
        self._http = httpx.Client(base_url=url, timeout=10, verify=tls_context())

    def reset(self) -> None:
        self._http.post("/_sandbox/reset").raise_for_status()

    def info(self) -> dict[str, Any]:
        return dict(self._http.get("/_sandbox/info").json())

    def stats(self) -> dict[str, Any]:
        return dict(self._http.get("/_sandbox/stats").json())

    def credits(self) -> float:
        return float(self.stats()["credits_spent"])

    def landed_credits(self) -> float:
        """The credit counter once every accepted evaluation has landed (the documented dialect charges when
        results land, a few reads later; the spec dialect at once)."""
        self._http.post("/_sandbox/evaluations/finish").raise_for_status()
        return self.credits()

    def calls_path(self) -> str:
        """Where the client reads and votes on call logs: v2 on the documented dialect, v1 on spec."""
        documented = self.info()["dialect"] == "documented"
        return "/observability/v2/call-logs/" if documented else "/observability/v1/call-logs-external/"

    def requests(self, method: str | None = None, contains: str = "", *, probes: bool = False) -> list[dict[str, Any]]:
        """The requests that reached the sandbox. The client asks the v2 call-log endpoints first and falls
        back to v1 on a 404 (once per endpoint); those probes of a v2 path the sandbox does not serve are left
        out unless `probes` is true, so counts mean "what the client really did"."""
        return [r for r in self.stats()["requests"]
                if (method is None or r["method"] == method) and contains in r["path"]
                and (probes or not _v2_probe(r))]

    def fault(self, path: str, kind: str, count: int = 1, **extra: Any) -> None:
        self._http.post("/_sandbox/faults", json={"path": path, "kind": kind, "count": count, **extra}
                        ).raise_for_status()

    def held(self) -> list[dict[str, Any]]:
        """The requests a `hold` / `hold-drop` fault holds now: they reach the API only once released."""
        return list(self._http.get("/_sandbox/faults/held").json())

    def release(self) -> int:
        """Let every held request reach the API; how many there were."""
        answer = self._http.post("/_sandbox/faults/release", json={})
        answer.raise_for_status()
        return int(answer.json()["released"])

    def truth(self, metric_id: int) -> dict[str, Any]:
        return dict(self._http.get("/_sandbox/truth", params={"metric_id": metric_id}).json()["calls"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, headers={"X-CEKURA-API-KEY": SANDBOX_KEY}, **kwargs)
        response.raise_for_status()
        return response.json()

    def request_to(self, method: str, fragment: str) -> dict[str, Any] | None:
        """The latest request whose path contains `fragment`: `ended` is None while the sandbox still holds it."""
        found = self.requests(method, fragment)
        return found[-1] if found else None

    def metric_named(self, fragment: str) -> dict[str, Any]:
        return next(m for m in self.info()["metrics"] if fragment.lower() in m["name"].lower())


def _v2_probe(entry: dict[str, Any]) -> bool:
    return bool(entry["path"].startswith("/observability/v2/") and entry["status"] == 404 and not entry["fault"])


async def wait_until(condition: Callable[[], T | None], what: str, limit: float = 60.0) -> T:
    """Poll until `condition()` gives something truthy. `limit` is a bound against a hang, never a timing the
    test relies on: on a loaded machine a step may take seconds, so tests wait for what they need to see."""
    with anyio.fail_after(limit):
        while True:
            found = condition()
            if found:
                return found
            await anyio.sleep(0.05)
    raise AssertionError(f"never saw {what}")  # unreachable: fail_after raises first


@asynccontextmanager
async def connect(settings: Settings, *, mode: str = "auto", clock: Callable[[], float] | None = None,
                  **client_kwargs: Any) -> AsyncIterator[Client]:
    """`clock`: the server's clock (the guard's window, the wait for an unanswered vote), for a test that moves
    time on instead of sleeping."""
    server = build_server(settings, retry=FAST_RETRY, clock=clock)
    async with Client(server, mode=mode, **client_kwargs) as client:  # type: ignore[arg-type]
        yield client


class ToolFailed(Exception):
    pass


async def call(client: Client, tool: str, args: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Call a tool; return its structured result, or raise ToolFailed with the error text."""
    result = await client.call_tool(tool, args or {}, **kwargs)
    text = "\n".join(getattr(block, "text", "") for block in result.content)
    output = text + json.dumps(result.structured_content or {})
    TOOL_OUTPUTS.append(output)
    note_leaks(f"the result of {tool}", output)
    if result.is_error:
        raise ToolFailed(text)
    assert result.structured_content is not None, f"{tool} returned no structured content"
    return dict(result.structured_content)


async def guard_permit(endpoint: Endpoint, call_ids: tuple[int, ...] = (1,), requests: int = 1) -> SpendPermit:
    """A permit from a real cost guard on a scratch ledger, for tests that drive the client's spending methods
    directly (the client sends nothing that costs credits without one)."""
    guard = CostGuard(Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite3"))
    plan = SpendPlan(operation="test", agent_id=1, project_id=None, call_ids=call_ids, judge_metric_ids=(1,),
                     code_metric_ids=(), credits=0.0, endpoint=endpoint, requests=requests)
    return await guard.authorize(plan, token=None, approval="not_asked")


@functools.lru_cache(maxsize=4)
def demo_transcript(seed: int = 7, width: int = 72) -> tuple[str, dict[str, Any]]:
    """One run of `cekura-labs-mcp demo` per (seed, width) for the whole test session: what it printed and its
    report. Several tests read the same session; playing it once keeps the suite short."""
    from cekura_labs_mcp.server.demo import run_demo

    out = io.StringIO()
    with tempfile.TemporaryDirectory() as scratch:
        report = anyio.run(run_demo, out, seed, Path(scratch), width)
    return out.getvalue(), report


def _share_output_schema_validators() -> None:
    """The MCP client compiles each tool's output schema once per session, checking it against the JSON Schema
    metaschema first (about 0.1 s per tool); the suite opens hundreds of sessions on the same tools. A compiled
    validator is immutable, so the test process keeps one per distinct schema and every session still validates
    every structured result against it. The SDK method is private: if it is gone, this fails loudly."""
    original = ClientSession._output_schema_validator
    compiled: dict[str, Any] = {}

    def shared(self: ClientSession, name: str, output_schema: dict[str, Any]) -> Any:
        known = self._tool_output_validators.get(name)
        if known is not None:
            return known
        key = json.dumps(output_schema, sort_keys=True)
        validator = compiled.get(key)
        if validator is None:
            validator = compiled[key] = original(self, name, output_schema)
        self._tool_output_validators[name] = validator
        return validator

    ClientSession._output_schema_validator = shared  # type: ignore[method-assign]


_share_output_schema_validators()
