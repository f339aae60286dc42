"""Every figure, side by side with its baseline, in one run against the sandbox over loopback.

    python -m benchmarks            # from the repository root; needs the `bench` extra (bpe-openai)
    python -m benchmarks --quick    # fewer repetitions, for a smoke run

One line per figure: `name: value (ratio vs baseline)`. The baselines are what the obvious
alternative does: an MCP server generated from Cekura's OpenAPI document, whose tools return the raw
JSON answers (`benchmarks/openapi_baseline.py`), and the same requests made directly with httpx.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.demo import person_from_truth as person
from cekura_labs_mcp.server.logs import configure_logging
from cekura_labs_mcp.tools.toolsets import TOOLSETS
from mcp import Client, StdioServerParameters, stdio_client
from pydantic import SecretStr

from benchmarks.common import (
    CALLS,
    KEY,
    SERVE,
    Admin,
    RecordingTransport,
    compact,
    failing_call,
    result_text,
    sandbox_process,
    server_env,
    tokens,
)
from benchmarks.openapi_baseline import openapi_tools


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float
    versus: str
    digits: int = 0

    def line(self) -> str:
        ratio = self.value / self.baseline if self.baseline else float("inf")
        return (f"{self.name}: {self._fmt(self.value)} ({ratio:.2f}x vs {self.versus} "
                f"{self._fmt(self.baseline)})")

    def _fmt(self, number: float) -> str:
        text = f"{number:,.{self.digits}f}"
        return f"{text} {self.unit}".rstrip()


def emit(figure: Figure) -> Figure:
    print(figure.line(), flush=True)
    return figure


def settings_for(url: str, data_dir: Path, **extra: Any) -> Settings:
    return Settings(CEKURA_API_KEY=SecretStr(KEY), CEKURA_API_URL=url, CEKURA_LABS_DATA_DIR=data_dir,
                    CEKURA_LABS_POLL_INTERVAL=0.05, **extra)


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# ---- tokens ---------------------------------------------------------------------------------------


async def token_figures(admin: Admin, scratch: Path) -> list[Figure]:
    admin.reset()
    info = admin.info()
    agent = info["main_agent_id"]
    metric = admin.metric()
    figures: list[Figure] = []
    recorder = RecordingTransport()
    server = build_server(settings_for(admin.url, scratch / "tokens"), transport=recorder)
    async with Client(server) as client:
        listed = await client.list_tools()
        ours = compact({"tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                                  for t in listed.tools]})
        generated = openapi_tools()
        baseline = tokens(compact({"tools": generated}))
        versus = f"OpenAPI-generated ({len(generated)} tools, no output schemas)"
        figures.append(emit(Figure(f"tokens_tools_list ({len(listed.tools)} tools, with output schemas)",
                                   tokens(ours), "tokens", baseline, versus)))
        # What a model is shown of a tool (Anthropic's API takes name, description and input schema): the core list
        # a conversation starts with, then each toolset load_toolset adds, then everything loaded.
        def shown(tools: list[Any]) -> int:
            return tokens(compact({"tools": [{"name": t.name, "description": t.description,
                                              "inputSchema": t.input_schema} for t in tools]}))

        core = shown(listed.tools)
        figures.append(emit(Figure(f"tokens_tools_list_model_facing (name, description, inputSchema; the "
                                   f"{len(listed.tools)} core tools a conversation starts with)", core,
                                   "tokens", baseline, versus)))
        for toolset in TOOLSETS:
            added = await client.call_tool("load_toolset", {"name": toolset.name})
            if added.is_error:
                raise RuntimeError(result_text(added))
            now = (await client.list_tools()).tools
            print(f"# toolset {toolset.name} loaded: {len(now)} tools, {shown(now):,} tokens", flush=True)
        every = (await client.list_tools()).tools
        figures.append(emit(Figure(f"tokens_tools_list_model_facing_every_toolset_loaded ({len(every)} tools)",
                                   shown(every), "tokens", baseline, versus)))

        page = await client.call_tool("list_calls", {"agent_id": agent, "metric_id": metric["id"],
                                                     "page_size": 50})
        raw_page = admin.http.get(CALLS, params={"agent_id": agent, "page_size": 50}).text
        figures.append(emit(Figure("tokens_list_calls_50_rows", tokens(result_text(page)), "tokens",
                                   tokens(raw_page), "raw API page")))

        call_id = page.structured_content["calls"][0]["id"] if page.structured_content else 0
        detail = await client.call_tool("get_call", {"call_id": call_id, "metric_id": metric["id"]})
        raw_detail = admin.http.get(f"{CALLS}{call_id}/").text
        figures.append(emit(Figure("tokens_get_call", tokens(result_text(detail)), "tokens",
                                   tokens(raw_detail), "raw call detail")))

    admin.reset()
    recorder = RecordingTransport()
    server = build_server(settings_for(admin.url, scratch / "session"), transport=recorder)
    async with Client(server) as client:
        texts, reviews = await scripted_session(client, admin, agent, metric["id"])
    ours_total = sum(tokens(t) for t in texts)
    raw_total = sum(tokens(x.body) for x in recorder.exchanges)
    first_reads: dict[str, str] = {}
    writes = 0
    for exchange in recorder.exchanges:
        if exchange.method == "GET":
            first_reads.setdefault(exchange.url, exchange.body)
        else:
            writes += tokens(exchange.body)
    deduplicated = writes + sum(tokens(body) for body in first_reads.values())
    name = f"tokens_labs_session ({reviews} reviews, {len(texts)} tool calls, {len(recorder.exchanges)} API calls)"
    figures.append(emit(Figure(name, ours_total, "tokens", raw_total, "raw answers of the same API calls")))
    figures.append(emit(Figure("tokens_labs_session_vs_deduplicated_raw", ours_total, "tokens", deduplicated,
                               "raw answers, each GET read once")))
    return figures


async def scripted_session(client: Client, admin: Admin, agent: int, metric_id: int) -> tuple[list[str], int]:
    """The demo's session: triage, six reviews (the sixth starts auto-improve), apply, validate."""
    truth = admin.truth(metric_id)
    texts: list[str] = []

    async def tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, args)
        texts.append(result_text(result))
        if result.is_error:
            raise RuntimeError(f"{name} failed: {result_text(result)}")
        return dict(result.structured_content or {})

    await tool("triage_failures", {"agent_id": agent, "metric_id": metric_id})
    await tool("start_review", {"agent_id": agent, "metric_id": metric_id, "auto_improve": True})
    review = await tool("next_review", {"agent_id": agent, "metric_id": metric_id})
    improvement = None
    reviews = 0
    while improvement is None:
        recorded = await tool("record_review", {"agent_id": agent, "metric_id": metric_id,
                                                "call_id": review["call"]["id"], **person(truth, review)})
        reviews += 1
        improvement = recorded.get("improvement")
        review = recorded.get("next") or {}
    await tool("patch_metric", {"metric_id": metric_id, "description": improvement["proposed_description"],
                                "confirm": True})
    await tool("validate_metric", {"agent_id": agent, "metric_id": metric_id})
    return texts, reviews


# ---- per-call overhead and start-up over stdio ----------------------------------------------------


async def overhead_figures(admin: Admin, scratch: Path, rounds: int) -> list[Figure]:
    admin.reset()
    agent = admin.info()["main_agent_id"]
    call_id = admin.http.get(CALLS, params={"agent_id": agent, "page_size": 1}).json()["results"][0]["id"]
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=server_env(admin.url, scratch / "stdio"))
    mcp_ms: list[float] = []
    with open(os.devnull, "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            for i in range(rounds + 5):
                started = time.perf_counter()
                result = await client.call_tool("get_call", {"call_id": call_id})
                elapsed = (time.perf_counter() - started) * 1000
                if result.is_error:
                    raise RuntimeError(result_text(result))
                if i >= 5:  # warm-up
                    mcp_ms.append(elapsed)
    direct_ms: list[float] = []
    async with httpx.AsyncClient(base_url=admin.url, headers={"X-CEKURA-API-KEY": KEY}) as http:
        for i in range(rounds + 5):
            started = time.perf_counter()
            (await http.get(f"{CALLS}{call_id}/")).raise_for_status()
            elapsed = (time.perf_counter() - started) * 1000
            if i >= 5:
                direct_ms.append(elapsed)
    floor_ms: list[float] = []
    bare = StdioServerParameters(command=sys.executable, args=["-c", BARE_SERVER],
                                 env={k: v for k, v in os.environ.items() if not k.startswith("CEKURA")})
    with open(os.devnull, "w") as errlog:
        async with Client(stdio_client(bare, errlog=errlog)) as client:
            for i in range(rounds + 5):
                started = time.perf_counter()
                await client.call_tool("ping", {})
                if i >= 5:
                    floor_ms.append((time.perf_counter() - started) * 1000)
    median_mcp, median_direct = statistics.median(mcp_ms), statistics.median(direct_ms)
    print(f"# the MCP stdio round trip of a bare MCPServer tool (no I/O) is {statistics.median(floor_ms):.2f} ms "
          "median: the SDK's own share of the figures below", flush=True)
    ours_cpu = await server_cpu_per_call(params, "get_call", {"call_id": call_id}, rounds)
    bare_cpu = await server_cpu_per_call(bare, "ping", {}, rounds)
    return [
        emit(Figure("get_call_round_trip_stdio_median", median_mcp, "ms", median_direct, "direct httpx", 2)),
        emit(Figure("get_call_round_trip_stdio_p95", p95(mcp_ms), "ms", p95(direct_ms), "direct httpx", 2)),
        emit(Figure("server_overhead_per_call_median", median_mcp - median_direct, "ms", median_direct,
                    "the request itself", 2)),
        # CPU time, not wall time: what the server process itself spends per call holds on a loaded machine,
        # where waiting for a core swamps the wall-clock figures above.
        emit(Figure("server_cpu_per_get_call", ours_cpu, "ms", bare_cpu, "a bare MCPServer tool (the SDK's share)",
                    2)),
    ]


async def our_share_figures(admin: Admin, scratch: Path, rounds: int) -> list[Figure]:
    """Issue 13's measure of what is ours: `get_call` against a bare MCPServer tool that makes the same GET with
    httpx and returns the raw answer as text (no output schema, no structured content). Both run over stdio at
    once and are called in turn (the order alternating), so the machine's load falls on both alike; the figures
    are differences within one run. What remains is ours: the Cekura client, reading and presenting the call,
    the compact structured result (and the SDK validating it against our output schema), logging, middleware."""
    admin.reset()
    agent = admin.info()["main_agent_id"]
    call_id = admin.http.get(CALLS, params={"agent_id": agent, "page_size": 1}).json()["results"][0]["id"]
    env = server_env(admin.url, scratch / "share")
    marks = {"ours": f"ours-{os.getpid()}", "bare": f"bare-fetch-{os.getpid()}"}  # unique: others may bench too
    ours = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env={**env, "CEKURA_BENCH_CPU": marks["ours"]})
    bare = StdioServerParameters(command=sys.executable, args=["-c", BARE_FETCH_SERVER],
                                 env={**env, "CEKURA_BENCH_CPU": marks["bare"]})
    args = {"call_id": call_id}
    differences: list[float] = []
    bare_ms: list[float] = []
    with open(os.devnull, "w") as errlog:
        async with Client(stdio_client(ours, errlog=errlog)) as a, Client(stdio_client(bare, errlog=errlog)) as b:
            for _ in range(10):
                await a.call_tool("get_call", args)
                await b.call_tool("get_call", args)
            ours_pid = _pid_with(f"CEKURA_BENCH_CPU={marks['ours']}")
            bare_pid = _pid_with(f"CEKURA_BENCH_CPU={marks['bare']}")
            ours_cpu, bare_cpu = _cpu_ms(ours_pid), _cpu_ms(bare_pid)
            for i in range(rounds):
                pair = (a, b) if i % 2 == 0 else (b, a)
                spent: dict[int, float] = {}
                for client in pair:
                    started = time.perf_counter()
                    result = await client.call_tool("get_call", args)
                    spent[id(client)] = (time.perf_counter() - started) * 1000
                    if result.is_error:
                        raise RuntimeError(result_text(result))
                differences.append(spent[id(a)] - spent[id(b)])
                bare_ms.append(spent[id(b)])
            ours_cpu, bare_cpu = _cpu_ms(ours_pid) - ours_cpu, _cpu_ms(bare_pid) - bare_cpu
    return [
        emit(Figure("ours_server_cpu_per_get_call (minus a bare MCPServer tool making the same GET)",
                    (ours_cpu - bare_cpu) / rounds, "ms", bare_cpu / rounds,
                    "that bare tool's CPU per call: the SDK's share and the request itself", 2)),
        emit(Figure("ours_round_trip_per_get_call_median (paired with the bare tool's)",
                    statistics.median(differences), "ms", statistics.median(bare_ms),
                    "the bare tool's round trip", 2)),
    ]


async def server_cpu_per_call(params: StdioServerParameters, tool: str, args: dict[str, Any], rounds: int) -> float:
    """CPU milliseconds (user + system, from /proc) the stdio server process spends per call, warmed up."""
    marker = f"CEKURA_BENCH_CPU={os.getpid()}-{tool}"
    env = {**(params.env or {}), "CEKURA_BENCH_CPU": marker.split("=", 1)[1]}
    marked = StdioServerParameters(command=params.command, args=params.args, env=env)
    with open(os.devnull, "w") as errlog:
        async with Client(stdio_client(marked, errlog=errlog)) as client:
            for _ in range(10):
                await client.call_tool(tool, args)
            pid = _pid_with(marker)
            before = _cpu_ms(pid)
            for _ in range(rounds):
                await client.call_tool(tool, args)
            return (_cpu_ms(pid) - before) / rounds


def _pid_with(marker: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("the server process was not found (CPU figures need Linux /proc)")


def _cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


BARE_SERVER = """
from mcp.server import MCPServer
server = MCPServer(name="bare")
@server.tool()
def ping() -> str:
    return "pong"
server.run("stdio")
"""


# The SDK's own share of a tool call that reads one call from Cekura: the same GET, the raw answer as text.
BARE_FETCH_SERVER = """
import os
import httpx
from mcp.server import MCPServer
server = MCPServer(name="bare-fetch", log_level="WARNING")  # no per-request log lines, as ours
http = httpx.AsyncClient(base_url=os.environ["CEKURA_API_URL"],
                         headers={"X-CEKURA-API-KEY": os.environ["CEKURA_API_KEY"]})
@server.tool(structured_output=False)
async def get_call(call_id: int) -> str:
    response = await http.get(f"/observability/v1/call-logs-external/{call_id}/")
    response.raise_for_status()
    return response.text
server.run("stdio")
"""


def time_to_initialize(command: list[str], env: dict[str, str]) -> float:
    """Milliseconds from process start to the answer to `initialize` on stdout."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                          "clientInfo": {"name": "bench", "version": "0"}}}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=env)
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write((json.dumps(request) + "\n").encode())
        process.stdin.flush()
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"{command} exited before answering initialize")
            message = json.loads(line)
            if message.get("id") == 1:
                if "result" not in message:
                    raise RuntimeError(f"initialize failed: {message}")
                return (time.perf_counter() - started) * 1000
    finally:
        process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def startup_figures(admin: Admin, scratch: Path, rounds: int) -> list[Figure]:
    bare_env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA")}
    bare: list[float] = []
    ours: list[float] = []
    embedded: list[float] = []
    time_to_initialize(SERVE, server_env(admin.url, scratch / "warm"))  # warm the file cache once
    for i in range(rounds):  # interleaved, so neither side gets a warmer machine
        bare.append(time_to_initialize([sys.executable, "-c", BARE_SERVER], bare_env))
        ours.append(time_to_initialize(SERVE, server_env(admin.url, scratch / f"start{i}")))
        embedded.append(time_to_initialize(SERVE, {**bare_env, "CEKURA_LABS_DATA_DIR": str(scratch / f"emb{i}")}))
    median_bare = statistics.median(bare)
    return [
        emit(Figure("startup_to_initialize_median (CEKURA_API_URL)", statistics.median(ours), "ms", median_bare,
                    "a bare mcp MCPServer")),
        emit(Figure("startup_to_initialize_median (embedded sandbox)", statistics.median(embedded), "ms",
                    median_bare, "a bare mcp MCPServer")),
    ]


# ---- fan-out --------------------------------------------------------------------------------------


@dataclass
class StripExplanations(httpx.AsyncBaseTransport):
    """Serves list rows the way a list may come: each metric's value without its explanation (the
    `evaluation` field empty), so whoever needs the explanations must read the calls."""

    inner: httpx.AsyncBaseTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "GET" or request.url.path.rstrip("/") != CALLS.rstrip("/"):
            return response
        content = await response.aread()
        await response.aclose()
        data = json.loads(content)
        for row in data.get("results", []) if isinstance(data, dict) else []:
            row["evaluation"] = ""
        return httpx.Response(response.status_code, json=data, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def peak_in_flight(requests: list[dict[str, Any]], since: float) -> int:
    edges: list[tuple[float, int]] = []
    for entry in requests:
        if entry["started"] >= since and entry["ended"] is not None:
            edges += [(entry["started"], 1), (entry["ended"], -1)]
    peak = current = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        peak = max(peak, current)
    return peak


async def fanout_figures(admin: Admin, scratch: Path, sizes: tuple[int, ...], latency_ms: int) -> list[Figure]:
    admin.reset()
    agent = admin.info()["main_agent_id"]
    metric_id = admin.metric()["id"]
    for n in range(max(sizes) + 20):
        admin.http.post(CALLS, json=failing_call(agent, n)).raise_for_status()
    admin.latency(latency_ms)
    figures: list[Figure] = []
    settings = settings_for(admin.url, scratch / "fanout")
    limit = settings.max_concurrency
    server = build_server(settings, transport=StripExplanations(httpx.AsyncHTTPTransport()))
    try:
        async with Client(server) as client:
            for size in sizes:
                since = time.time()
                started = time.perf_counter()
                result = await client.call_tool("triage_failures", {"agent_id": agent, "metric_id": metric_id,
                                                                    "sample": size})
                ours = time.perf_counter() - started
                if result.is_error or not result.structured_content:
                    raise RuntimeError(result_text(result))
                read = result.structured_content["read"]
                log = admin.stats()["requests"]
                details = sum(1 for r in log if r["started"] >= since and r["path"].rstrip("/") != CALLS.rstrip("/")
                              and r["path"].startswith(CALLS))
                peak = peak_in_flight(log, since)
                baseline = sequential_reads(admin, agent, metric_id, size)
                figures.append(emit(Figure(f"fanout_triage_n{size} ({read} read, {details} detail requests, "
                                           f"{latency_ms} ms latency)", ours, "s", baseline,
                                           "sequential httpx reads of the same calls", 2)))
                figures.append(emit(Figure(f"fanout_max_in_flight_n{size}", peak, "", limit,
                                           "CEKURA_LABS_MAX_CONCURRENCY")))
                if peak > limit:
                    raise RuntimeError(f"{peak} requests in flight, above the limit of {limit}")
    finally:
        admin.latency(0)
    return figures


def sequential_reads(admin: Admin, agent: int, metric_id: int, size: int) -> float:
    """The same reads one after the other: the failing page, then each call's detail."""
    # The documented filters_v2 selection the server itself sends for the failing results (services/calls.py).
    selection = json.dumps({"operator": "same_row", "conditions": [
        {"field": "metric_evaluations.metric.id", "op": "eq", "value": metric_id},
        {"field": "metric_evaluations.value", "op": "eq", "value": False}]})
    started = time.perf_counter()
    response = admin.http.get(CALLS, params={"agent_id": agent, "page_size": size, "filters_v2": selection})
    response.raise_for_status()  # a refused selection is a broken baseline, not an empty one
    page = response.json()
    for row in page["results"][:size]:
        admin.http.get(f"{CALLS}{row['id']}/").raise_for_status()
    return time.perf_counter() - started


# ---- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")  # the in-process servers log to stderr, warnings only
    rounds = 20 if args.quick else 200
    starts = 3 if args.quick else 7
    sizes = (50,) if args.quick else (50, 200)
    steps: list[Callable[[Admin, Path], Any]] = [
        lambda admin, scratch: anyio.run(token_figures, admin, scratch),
        lambda admin, scratch: anyio.run(overhead_figures, admin, scratch, rounds),
        lambda admin, scratch: anyio.run(our_share_figures, admin, scratch, rounds),
        lambda admin, scratch: startup_figures(admin, scratch, starts),
        lambda admin, scratch: anyio.run(fanout_figures, admin, scratch, sizes, 100),
    ]
    print(f"# cekura-labs-mcp benchmarks: python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          "sandbox over loopback, tokens in cl100k_base", flush=True)
    with sandbox_process() as admin, tempfile.TemporaryDirectory() as scratch:
        for step in steps:
            step(admin, Path(scratch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
