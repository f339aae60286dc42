"""Per-call CPU of `get_call` on an earlier commit's server, on this one, and on a bare MCPServer tool making the
same GET, side by side in one run: the three stdio servers are called in turn (the order rotating), so the
machine's load falls on all of them alike, and each one's CPU per call is read from /proc block by block.

    python -m benchmarks.versus_commit 4593647            # 5 blocks of 200 calls
    python -m benchmarks.versus_commit 4593647 --rounds 50 --blocks 3

The earlier server is that commit's `server/`, `tools/` and `skills/` (`git archive`) imported first through
PYTHONPATH, with this checkout's installed dependencies. "Ours" is a server's CPU minus the bare tool's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters, stdio_client

from benchmarks.common import CALLS, ROOT, SERVE, Admin, sandbox_process, server_env
from benchmarks.run import BARE_FETCH_SERVER, _cpu_ms, _pid_with

NAMES = ("before", "now", "bare")


def unpack(commit: str, into: Path) -> Path:
    """That commit's source folders as the package `cekura_labs_mcp`, for PYTHONPATH."""
    archive = into / "source.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", commit, "server", "tools", "skills"], cwd=ROOT, stdout=out, check=True)
    source = into / "source"
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    package = into / "pkg" / "cekura_labs_mcp"
    package.mkdir(parents=True)
    for name in ("server", "tools", "skills"):
        (package / name).symlink_to(source / name, target_is_directory=True)
    return into / "pkg"


async def compare(admin: Admin, scratch: Path, earlier: Path, rounds: int, blocks: int) -> None:
    agent = admin.info()["main_agent_id"]
    call_id = admin.http.get(CALLS, params={"agent_id": agent, "page_size": 1}).json()["results"][0]["id"]
    mark = os.getpid()
    env = server_env(admin.url, scratch / "data")
    params = {
        "before": StdioServerParameters(command=SERVE[0], args=SERVE[1:], env={
            **env, "PYTHONPATH": str(earlier), "CEKURA_BENCH_CPU": f"before-{mark}",
            "CEKURA_LABS_DATA_DIR": str(scratch / "before")}),
        "now": StdioServerParameters(command=SERVE[0], args=SERVE[1:], env={
            **env, "CEKURA_BENCH_CPU": f"now-{mark}", "CEKURA_LABS_DATA_DIR": str(scratch / "now")}),
        "bare": StdioServerParameters(command=sys.executable, args=["-c", BARE_FETCH_SERVER],
                                      env={**env, "CEKURA_BENCH_CPU": f"bare-{mark}"}),
    }
    args = {"call_id": call_id}
    with open(os.devnull, "w") as errlog:
        async with (Client(stdio_client(params["before"], errlog=errlog)) as before,
                    Client(stdio_client(params["now"], errlog=errlog)) as now,
                    Client(stdio_client(params["bare"], errlog=errlog)) as bare):
            clients = {"before": before, "now": now, "bare": bare}
            for client in clients.values():
                for _ in range(10):
                    await client.call_tool("get_call", args)
            pids = {name: _pid_with(f"CEKURA_BENCH_CPU={name}-{mark}") for name in NAMES}
            ours: dict[str, list[float]] = {"before": [], "now": []}
            for block in range(blocks):
                start = {name: _cpu_ms(pid) for name, pid in pids.items()}
                for i in range(rounds):
                    for name in NAMES[i % 3:] + NAMES[:i % 3]:
                        result = await clients[name].call_tool("get_call", args)
                        if result.is_error:
                            raise RuntimeError(f"{name}: {result.content}")
                cpu = {name: (_cpu_ms(pid) - start[name]) / rounds for name, pid in pids.items()}
                for name in ours:
                    ours[name].append(cpu[name] - cpu["bare"])
                print(f"block {block}: CPU per call before {cpu['before']:.2f} ms, now {cpu['now']:.2f} ms, bare tool "
                      f"{cpu['bare']:.2f} ms; ours before {ours['before'][-1]:.2f} ms, now {ours['now'][-1]:.2f} ms",
                      flush=True)
    print(f"ours_server_cpu_per_get_call median over {blocks} blocks: before {statistics.median(ours['before']):.2f} "
          f"ms, now {statistics.median(ours['now']):.2f} ms", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus_commit", description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the earlier commit whose server to compare")
    parser.add_argument("--rounds", type=int, default=200, help="calls per server per block")
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, sandbox_process() as admin:
        earlier = unpack(args.commit, Path(tmp))
        anyio.run(compare, admin, Path(tmp), earlier, args.rounds, args.blocks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
