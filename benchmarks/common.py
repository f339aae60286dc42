"""What the benchmarks and the soak share: the sandbox, the token counter, a recording transport, the
stdio server's launch parameters, and the "person" who answers reviews from the sandbox's truth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "spec" / "cekura-openapi-subset.json"
KEY = "bench-sandbox-key"
CALLS = "/observability/v1/call-logs-external/"
METRIC_HINT = "one question"


@cache
def _encoding() -> Any:
    # bpe-openai ships the cl100k_base tables in the wheel (tiktoken would download them at run time).
    from bpe_openai import get_encoding

    return get_encoding("cl100k_base")


def tokens(text: str, chunk: int = 200_000) -> int:
    """cl100k_base tokens: the proxy for what a tool's text costs in a model's context. Texts longer than
    the tokenizer accepts at once are cut at a space, which moves the count by at most a token a cut."""
    encoding = _encoding()
    total = 0
    while len(text) > chunk:
        cut = text.rfind(" ", 0, chunk)
        cut = cut if cut > 0 else chunk
        total += len(encoding.encode_ordinary(text[:cut]))
        text = text[cut:]
    return total + len(encoding.encode_ordinary(text))


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def result_text(result: Any) -> str:
    """What the model reads of a tool result: its text content blocks."""
    return "\n".join(getattr(block, "text", "") for block in result.content)


class Admin:
    """The sandbox's admin routes and its API, called directly (the raw-API baseline uses this too)."""

    def __init__(self, url: str, key: str = KEY) -> None:
        self.url = url
        self.key = key
        self.http = httpx.Client(base_url=url, timeout=60, headers={"X-CEKURA-API-KEY": key})

    def reset(self) -> None:
        self.http.post("/_sandbox/reset").raise_for_status()

    def info(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/info").json())

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/stats").json())

    def latency(self, ms: int) -> None:
        self.http.post("/_sandbox/latency", json={"ms": ms}).raise_for_status()

    def fault(self, path: str, kind: str, count: int = 1, **extra: Any) -> None:
        self.http.post("/_sandbox/faults", json={"path": path, "kind": kind, "count": count, **extra}
                       ).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete("/_sandbox/faults").raise_for_status()

    def held(self) -> list[dict[str, Any]]:
        """The requests a `hold` fault holds now (they reach the API only once released)."""
        return list(self.http.get("/_sandbox/faults/held").json())

    def release(self) -> int:
        answer = self.http.post("/_sandbox/faults/release", json={})
        answer.raise_for_status()
        return int(answer.json()["released"])

    def truth(self, metric_id: int) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/truth", params={"metric_id": metric_id}).json()["calls"])

    def metric(self, fragment: str = METRIC_HINT) -> dict[str, Any]:
        return next(m for m in self.info()["metrics"] if fragment in m["name"].lower())

    def close(self) -> None:
        self.http.close()


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    body: str


@dataclass
class RecordingTransport(httpx.AsyncBaseTransport):
    """Sits under the server's Cekura client and keeps every raw answer it received."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    exchanges: list[Exchange] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        self.exchanges.append(Exchange(request.method, str(request.url), response.status_code,
                                       content.decode("utf-8", "replace")))
        return httpx.Response(response.status_code, headers=response.headers, content=content,
                              request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def server_env(url: str, data_dir: Path, key: str = KEY, **extra: str) -> dict[str, str]:
    """The environment a client would start the stdio server with, pointed at the sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA")}
    env.update({"CEKURA_API_KEY": key, "CEKURA_API_URL": url, "CEKURA_LABS_DATA_DIR": str(data_dir), **extra})
    return env


SERVE = [sys.executable, "-m", "cekura_labs_mcp.server.cli", "serve"]


@contextmanager
def sandbox_process(seed: int = 7) -> Iterator[Admin]:
    """The sandbox in its own process on a free loopback port, as Cekura would be: a separate service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cekura_labs_mcp.server.cli", "sandbox", "--port", "0", "--seed", str(seed),
         "--api-key", KEY], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, text=True)
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        found = re.search(r"http://\S+", line)
        if found is None:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        admin = Admin(found.group(0))
        try:
            yield admin
        finally:
            admin.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()



def failing_call(agent_id: int, n: int) -> dict[str, Any]:
    """A call to ingest whose agent asks two questions in one turn: "One Question Per Turn" fails it."""
    turns = [
        ("Main Agent", "Thank you for calling Northwind Health, this is Ava. How can I help you today?"),
        ("Testing Agent", f"Hi, I need to book a check-up, reference {n}."),
        ("Main Agent", "Sure. What is your date of birth? And which day works best for you?"),
        ("Testing Agent", "March third, 1980. Thursday morning if possible."),
        ("Main Agent", "I have Thursday at 9:30 with Dr. Patel. Shall I book it?"),
        ("Testing Agent", "Yes please."),
        ("Main Agent", "Done: Thursday at 9:30 with Dr. Patel. Anything else?"),
        ("Testing Agent", "No, thanks. Bye."),
    ]
    start = 0.0
    items = []
    for role, text in turns:
        items.append({"role": role, "content": text, "start_time": start, "end_time": start + 4})
        start += 5
    return {"call_id": f"bench-{n}", "agent": agent_id, "transcript_object": items, "topic": "booking"}


@contextmanager
def throwaway_postgres(program: str, otherwise: str) -> Iterator[str]:
    """A PostgreSQL cluster for this run only (initdb / pg_ctl, as the tests start one); the URL of a fresh
    database in it. `otherwise` names the option that runs the benchmark without one."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pg_cluster import PgCluster, find_bindir  # type: ignore[import-not-found]

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit(f"{program}: PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql), or pass "
                         f"{otherwise}")
    cluster = PgCluster.start(bindir)
    try:
        yield str(cluster.fresh_database())
    finally:
        cluster.stop()
