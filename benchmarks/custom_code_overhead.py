"""How much the isolated custom_code runner adds per call.

Runs trivial metric code (`_result = True`) on a real sandbox call's inputs, many times, and reports the
median wall time per run in the OS sandbox this machine offers (bubblewrap / Seatbelt) and, for
comparison, in the unsandboxed fallback (`CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1`: a separate process, a
network namespace, the audit hook), next to a bare interpreter start, a bare `bwrap ... true`, and an
in-process `exec` of the same code.

    .venv/bin/python benchmarks/custom_code_overhead.py [--runs 200]

Run against an older tree (e.g. before the OS sandbox) with PYTHONPATH pointing at a directory holding
that tree as `cekura_labs_mcp/`; keys that tree does not know are left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from cekura_labs_mcp.server.cekura.models import CallDetail
from cekura_labs_mcp.server.custom_code import runner as runner_module
from cekura_labs_mcp.server.custom_code.inputs import build_inputs
from cekura_labs_mcp.server.custom_code.runner import CodeRunner, Isolation, default_isolation
from cekura_labs_mcp.server.sandbox import SandboxServer

CODE = "_result = len(transcript_json) > 0\n_explanation = 'ok'\n"
KEY = "bench-key"


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _timed(runner: CodeRunner, data: dict[str, object], runs: int) -> list[float]:
    runner.run(CODE, data)  # warm the page cache
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        report = runner.run(CODE, data)
        samples.append(time.perf_counter() - started)
        assert report.status == "ok", report.error
    return samples


def _as_user(isolation: Isolation) -> dict[str, Any]:
    user = getattr(isolation, "spawn_user", None)
    return {"user": user[0], "group": user[1], "extra_groups": []} if user else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    with SandboxServer(seed=7, api_key=KEY) as server:
        http = httpx.Client(base_url=server.url, headers={"X-CEKURA-API-KEY": KEY})
        first = http.get("/observability/v1/call-logs-external/", params={"agent_id": 2210, "page_size": 1})
        call_id = first.json()["results"][0]["id"]
        call = CallDetail.model_validate(http.get(f"/observability/v1/call-logs-external/{call_id}/").json())
    data = build_inputs(call, metric_id=0).data
    isolation = default_isolation()
    runner = CodeRunner(isolation=isolation)
    isolated = _timed(runner, data, runs)

    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: runner.run(CODE, data), range(runs)))
        parallel_per_call = (time.perf_counter() - started) / runs

    extra: dict[str, object] = {}
    probe_unsandboxed = getattr(runner_module, "_probe_unsandboxed", None)
    if probe_unsandboxed is not None:  # this tree has an OS sandbox: compare with its unsandboxed fallback
        weaker: Isolation = probe_unsandboxed(runner.limits)
        unsandboxed = _timed(CodeRunner(isolation=weaker), data, runs)
        extra["unsandboxed_median_ms"] = _median_ms(unsandboxed)
    if isolation.prefix and isolation.prefix[0].endswith("bwrap"):
        wrapper: list[float] = []
        for _ in range(min(runs, 100)):
            started = time.perf_counter()
            subprocess.run([*isolation.prefix, isolation.interpreter, "-I", "-S", "-B", "-c", "pass"],
                           check=True, env={}, cwd="/", **_as_user(isolation))
            wrapper.append(time.perf_counter() - started)
        extra["bare_bwrap_interpreter_start_median_ms"] = _median_ms(wrapper)

    bare: list[float] = []
    for _ in range(min(runs, 100)):
        started = time.perf_counter()
        subprocess.run([isolation.interpreter, "-I", "-S", "-B", "-c", "pass"], check=True)
        bare.append(time.perf_counter() - started)

    compiled = compile(CODE, "<custom_code>", "exec")
    in_process: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        exec(compiled, {**{k: v for k, v in data.items() if k.isidentifier()}, "data": data})
        in_process.append(time.perf_counter() - started)

    print(json.dumps({
        "runs": runs,
        "isolation_kind": getattr(isolation, "kind", "unsandboxed (before the OS sandbox)"),
        "isolated_median_ms": _median_ms(isolated),
        "isolated_p90_ms": round(sorted(isolated)[int(runs * 0.9)] * 1000, 2),
        "two_workers_ms_per_call": round(parallel_per_call * 1000, 2),
        "bare_interpreter_start_median_ms": _median_ms(bare),
        "in_process_exec_median_ms": round(statistics.median(in_process) * 1000, 4),
        **extra,
        "data_bytes": len(json.dumps(data)),
        "isolation": isolation.summary(),
        "python": sys.version.split()[0],
    }, indent=2))


if __name__ == "__main__":
    main()
