"""`serve --transport http --workers N`: N stateless processes on one port, one ledger and (without a Cekura key) one
shared demo sandbox, so whichever worker answers, a reviewer keeps the call leased to them and never gets another's."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import httpx2
import pytest
from cekura_labs_mcp.server.cekura.client import tls_context
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support import HTTP, call
from team_support import add

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts the worker processes through /proc")
async def test_workers_share_one_ledger_and_one_sandbox(tmp_path: Path) -> None:
    reviewers = tmp_path / "reviewers.json"
    tokens = {name: add(reviewers, name) for name in ("ana", "ben")}
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA")}
    env.update({"CEKURA_LABS_DATA_DIR": str(tmp_path / "data"), "CEKURA_LABS_REVIEWERS_FILE": str(reviewers)})
    server = subprocess.Popen([sys.executable, "-m", "cekura_labs_mcp.server.cli", "serve", "--transport", "http",
                               "--port", str(port), "--workers", "2"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        said = server.stderr.readline()
        sandbox = re.search(r"http://\S+", said)
        assert sandbox is not None and "share one demo sandbox" in said, said
        deadline = time.monotonic() + 180  # a bound against a hang: workers start slowly on a loaded machine
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "the workers did not start"
            try:
                # support.HTTP: a bare httpx.get() loads the CA bundle again on each poll (~0.05 s of CPU, dozens
                # of polls while the workers start on a loaded machine).
                if HTTP.get(f"http://127.0.0.1:{port}/mcp", timeout=5).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert len(_children(server.pid)) >= 2, "uvicorn runs the workers as child processes"
        info = HTTP.get(sandbox.group(0) + "/_sandbox/info", timeout=10).json()
        ids = {"agent_id": info["main_agent_id"],
               "metric_id": next(m["id"] for m in info["metrics"] if "one question" in m["name"].lower())}
        handed: dict[str, set[int]] = {"ana": set(), "ben": set()}
        for name in ("ana", "ben") * 3:  # a new connection each time: any worker may answer
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"}, timeout=120,
                                      verify=tls_context())  # the CA bundle loaded once, not per connection
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http),
                              mode="legacy") as client:
                handed[name].add((await call(client, "next_review", ids))["call"]["id"])
        # Whichever worker answered, each reviewer keeps the call the shared ledger leased them, never the other's.
        assert len(handed["ana"]) == 1 and len(handed["ben"]) == 1 and handed["ana"] != handed["ben"], handed
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
