"""Team load test: several stateless server processes on one ledger, many reviewers on one metric at once.

    python -m benchmarks.team_load                       # 3 processes, 20 reviewers, a throwaway PostgreSQL
    python -m benchmarks.team_load --processes 2 --reviewers 4 --sqlite

The sandbox runs in its own process as the team's Cekura. Each reviewer has their own bearer token (a reviewers
file) and an MCP `Client` over streamable HTTP whose requests go round-robin to the server processes (no sticky
sessions: any process answers any request). They review the same metric concurrently (next_review, then
record_review from the sandbox's truth; some reviewers are sloppy and sometimes say the opposite, so people
disagree on shared calls), a few skip, and some spend (rerun_evaluation) against the organisation-wide window.

It reports, and counts as problems when not 0:
- calls handed to two reviewers outside the overlap sample (what each client was shown, and the ledger's leases);
- spends allowed without confirmation past the organisation-wide window (the ledger's audit log, and the calls
  the sandbox evaluated);
- lost or duplicated votes and Lab entries (what the clients were told was recorded, against the sandbox's request
  log and the ledger);
and the p50 / p95 tool latency as the clients measured it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import re
import socket
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from cekura_labs_mcp.server.cekura.client import tls_context
from cekura_labs_mcp.server.demo import disagreement, person_from_truth
from cekura_labs_mcp.server.ledger import Ledger, in_overlap
from cekura_labs_mcp.server.reviewers import add_reviewer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from benchmarks.common import (
    KEY,
    METRIC_HINT,
    SERVE,
    Admin,
    result_text,
    sandbox_process,
    server_env,
    throwaway_postgres,
)

VOTE = re.compile(r"/call-logs(?:-external)?/(\d+)/mark_metric_vote/?$")
THRESHOLD = 100


@dataclass
class LoadConfig:
    processes: int = 3
    workers: int = 1  # > 1: the last server is `serve --workers N` (N processes on one port), not one process
    reviewers: int = 20
    reviews_each: int = 5
    spenders: int = 6
    spend_calls: int = 30
    overlap: float = 0.25
    sloppy_every: int = 4  # every 4th reviewer says the opposite of the truth on some calls
    max_seconds: float = 45.0
    seed: int = 11


@dataclass
class Tally:
    """What the clients saw and were told."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    handed: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    skips: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    verdicts: dict[int, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    skipped: int = 0
    spends_allowed: int = 0
    spends_confirm: int = 0
    errors: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # writes the server told the reviewers to check by hand
    timed_out: int = 0


@dataclass
class LoadReport:
    config: LoadConfig
    seconds: float
    backend: str
    tally: Tally
    handed_twice_outside_overlap: int = 0
    spends_past_window_unconfirmed: int = 0
    lost_votes: int = 0
    duplicated_votes: int = 0
    lost_lab_entries: int = 0
    duplicated_lab_entries: int = 0
    votes: int = 0
    lab_entries: int = 0
    held: int = 0
    shared_calls: int = 0
    disputed_calls: int = 0
    kappa: float | None = None
    lab_states: dict[str, int] = field(default_factory=dict)
    server_ms: list[float] = field(default_factory=list)  # each tool call's time inside a server process
    evaluated_calls: int = 0
    problems: list[str] = field(default_factory=list)

    def latency(self, quantile: float, tool: str | None = None) -> float:
        values = sorted(v for name, seen in self.tally.latencies.items() if tool in (None, name) for v in seen)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(quantile * len(values)))] * 1000

    def lines(self) -> list[str]:
        c = self.config
        calls = sum(len(v) for v in self.tally.latencies.values())
        lines = [
            f"team_load: {c.processes + max(0, c.workers - 1)} server processes"
            f"{f' (the last {c.workers} as --workers {c.workers})' if c.workers > 1 else ''} on {self.backend}, "
            f"{c.reviewers} reviewers, overlap "
            f"{c.overlap}, {calls} tool calls in {self.seconds:.1f} s",
            f"handed_twice_outside_overlap: {self.handed_twice_outside_overlap}",
            f"spends_past_window_unconfirmed: {self.spends_past_window_unconfirmed} "
            f"(allowed {self.tally.spends_allowed}, needed confirmation {self.tally.spends_confirm}, calls "
            f"evaluated {self.evaluated_calls} of a "
            f"{THRESHOLD}-call window)",
            f"lost_votes: {self.lost_votes}  duplicated_votes: {self.duplicated_votes}  (votes {self.votes})",
            f"lost_lab_entries: {self.lost_lab_entries}  duplicated_lab_entries: {self.duplicated_lab_entries}  (Lab "
            f"entries {self.lab_entries}, held {self.held})",
            f"shared calls judged by two: {self.shared_calls}, disputed {self.disputed_calls}, kappa between people "
            f"{'n/a' if self.kappa is None else f'{self.kappa:.2f}'}; skipped {self.tally.skipped}",
            f"ledger Lab states: {dict(sorted(self.lab_states.items()))}; writes to check by hand: "
            f"{len(self.tally.checks)}",
            f"tool_latency_ms: p50 {self.latency(0.5):.0f}  p95 {self.latency(0.95):.0f}  (inside the server "
            f"processes: p50 {_quantile(self.server_ms, 0.5):.0f}  p95 {_quantile(self.server_ms, 0.95):.0f})",
        ]
        for tool in sorted(self.tally.latencies):
            lines.append(f"  {tool}: n={len(self.tally.latencies[tool])} p50 {self.latency(0.5, tool):.0f} "
                         f"p95 {self.latency(0.95, tool):.0f}")
        lines.append(f"team_load_problems: {len(self.problems)}")
        lines += [f"  problem: {p}" for p in self.problems[:20]]
        lines += [f"  error: {e}" for e in self.tally.errors[:10]]
        return lines


def _quantile(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else 0.0


def server_durations(scratch: Path, processes: int) -> list[float]:
    """Each tool call's duration as the server processes logged it (`tool_call`, JSON logs)."""
    found = []
    for index in range(processes):
        for line in (scratch / f"server-{index}.log").read_text(errors="replace").splitlines():
            if '"tool_call"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    found.append(float(json.loads(line)["duration_ms"]))
    return found


# ---- the server processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_processes(count: int, env: dict[str, str], scratch: Path, workers: int = 1) -> Iterator[list[int]]:
    """`count` servers on one ledger, each on its own port: stateless processes (`serve --stateless`), the last one
    `serve --workers N` (N processes on one port) when `workers` > 1."""
    ports = [free_port() for _ in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for index, port in enumerate(ports):
            log = open(scratch / f"server-{index}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            mode = ["--workers", str(workers)] if workers > 1 and index == count - 1 else ["--stateless"]
            processes.append(subprocess.Popen([*SERVE, "--transport", "http", *mode, "--port", str(port)],
                                              env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        deadline = time.monotonic() + 180
        # One client for every poll: a bare httpx.get() loads the CA bundle again each time (~0.05 s of CPU, and
        # the processes take seconds to start on a loaded machine).
        with httpx.Client(timeout=2) as probe:
            for index, port in enumerate(ports):
                while True:
                    if processes[index].poll() is not None:
                        raise RuntimeError(
                            f"server {index} exited: {(scratch / f'server-{index}.log').read_text()[-800:]}")
                    try:
                        if probe.get(f"http://127.0.0.1:{port}/mcp").status_code == 401:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"server {index} did not start")
                    time.sleep(0.2)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next server process: nothing ties a reviewer to one process."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx2.AsyncHTTPTransport(verify=tls_context())  # the CA bundle loaded once per process

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        request.url = request.url.copy_with(port=port)
        request.headers["host"] = f"127.0.0.1:{port}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


# ---- the reviewers -----------------------------------------------------------------------------------


class Reviewer:
    def __init__(self, name: str, token: str, ports: list[int], tally: Tally, index: int, config: LoadConfig) -> None:
        self.name = name
        self.tally = tally
        self.index = index
        self.config = config
        self.rng = random.Random(f"{config.seed}:{name}")
        self.spend_ids: list[int] = []
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120,
                                  transport=RoundRobin(ports))
        self.client = Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http),
                             mode="legacy" if index % 2 else "auto")

    async def tool(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        started = time.perf_counter()
        answer = await self.client.call_tool(name, args)
        self.tally.latencies[name].append(time.perf_counter() - started)
        if answer.is_error:
            return None, result_text(answer)
        return dict(answer.structured_content or {}), ""

    async def work(self, agent: int, metric: int, truth: dict[str, Any], deadline: float) -> None:
        started, error = await self.tool("start_review", {"agent_id": agent, "metric_id": metric})
        if started is None:
            self.tally.errors.append(f"{self.name} start_review: {error}")
            return
        await self.review(agent, metric, truth, deadline)
        # Back at the session once more, as a reviewer would be: it resends any Lab entry a hiccup refused.
        finished, error = await self.tool("start_review", {"agent_id": agent, "metric_id": metric})
        if finished is None:
            self.tally.errors.append(f"{self.name} start_review at the end: {error}")
        else:
            self.tally.checks += finished.get("check", [])

    async def review(self, agent: int, metric: int, truth: dict[str, Any], deadline: float) -> None:
        done = 0
        while done < self.config.reviews_each and time.monotonic() < deadline:
            review, error = await self.tool("next_review", {"agent_id": agent, "metric_id": metric})
            if review is None:
                self.tally.errors.append(f"{self.name} next_review: {error}")
                return
            if not review.get("call"):
                return
            call_id = int(review["call"]["id"])
            self.tally.handed[call_id].add(self.name)
            if self.rng.random() < 0.08:
                skipped, error = await self.tool("record_review", {"agent_id": agent, "metric_id": metric,
                                                                   "call_id": call_id, "skip": True})
                if skipped is None:
                    self.tally.errors.append(f"{self.name} skip: {error}")
                else:
                    self.tally.skipped += 1
                    self.tally.skips[call_id].add(self.name)
                continue
            answer = self.answer(truth, review)
            recorded, error = await self.tool("record_review", {"agent_id": agent, "metric_id": metric,
                                                                "call_id": call_id, **answer})
            if recorded is None:
                self.tally.errors.append(f"{self.name} record_review on {call_id}: {error}")
                continue
            value = answer.get("expected_value", review["call"]["metric"]["value"]) if not answer["agree"] else \
                review["call"]["metric"]["value"]
            self.tally.verdicts[call_id][self.name] = str(value).upper()
            done += 1
            if done == 2 and self.index < self.config.spenders:
                await self.spend(agent)

    def answer(self, truth: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        sloppy = self.config.sloppy_every and self.index % self.config.sloppy_every == self.config.sloppy_every - 1
        if sloppy and self.rng.random() < 0.5:
            shown = str(review["call"]["metric"]["value"]).upper()
            opposite: Any = shown != "TRUE"
            return disagreement(review, opposite, "I read this moment the other way.")
        return person_from_truth(truth, review)

    async def spend(self, agent: int) -> None:
        ids = self.spend_ids
        spent, error = await self.tool("rerun_evaluation", {"agent_id": agent, "call_ids": ids})
        if spent is not None:
            self.tally.spends_allowed += 1
        elif "confirmation_required" in error:
            self.tally.spends_confirm += 1  # a careful assistant asks the person; this one does not confirm
        else:
            self.tally.errors.append(f"{self.name} rerun_evaluation: {error}")


# ---- the run and its checks --------------------------------------------------------------------------


async def run_reviewers(config: LoadConfig, admin: Admin, ports: list[int], tokens: dict[str, str]) -> Tally:
    info = admin.info()
    agent = int(info["main_agent_id"])
    metric = int(admin.metric(METRIC_HINT)["id"])
    truth = admin.truth(metric)
    calls = sorted(int(c) for c in truth)
    tally = Tally()
    reviewers = [Reviewer(name, token, ports, tally, index, config) for index, (name, token) in
                 enumerate(tokens.items())]
    for index, reviewer in enumerate(reviewers):
        reviewer.spend_ids = calls[index * config.spend_calls % len(calls):][:config.spend_calls]
    deadline = time.monotonic() + config.max_seconds
    async with contextlib.AsyncExitStack() as stack:
        for reviewer in reviewers:
            await stack.enter_async_context(reviewer.client)
        lead = reviewers[0]
        planned, error = await lead.tool("start_review", {"agent_id": agent, "metric_id": metric,
                                                          "overlap": config.overlap})
        if planned is None:
            raise RuntimeError(f"start_review with the overlap failed: {error}")
        with anyio.move_on_after(config.max_seconds + 30) as scope:
            async with anyio.create_task_group() as group:
                for reviewer in reviewers:
                    group.start_soon(reviewer.work, agent, metric, truth, deadline)
        if scope.cancelled_caught:
            tally.timed_out += 1
    return tally


def check(report: LoadReport, admin: Admin, ledger: Ledger, metric: int, agent: int) -> None:
    tally, overlap = report.tally, report.config.overlap
    # 1. No call in two reviewers' hands outside the overlap sample: what the clients were shown (a call skipped goes
    #    back to the team, so the one who skipped it no longer holds it), and the leases.
    for call_id, handed in tally.handed.items():
        names = handed - tally.skips[call_id]
        if len(names) > 2 or (len(names) > 1 and not in_overlap(metric, call_id, overlap)):
            report.handed_twice_outside_overlap += 1
            report.problems.append(f"call {call_id} was handed to {sorted(names)} outside the overlap sample")
    leased: dict[int, set[str]] = defaultdict(set)
    for lease in ledger.leases_of(metric):
        leased[lease.call_id].add(lease.reviewer)
    for call_id, names in leased.items():
        if len(names) > 2 or (len(names) > 1 and not in_overlap(metric, call_id, overlap)):
            report.problems.append(f"the ledger leases call {call_id} to {sorted(names)}")

    log = admin.stats()["requests"]
    landed = [r for r in log if r["method"] == "POST" and r["status"] is not None and 200 <= r["status"] < 300]

    # 2. Votes: one per verdict the clients were told was recorded, no more, no fewer; the ledger agrees.
    votes: Counter[int] = Counter()
    for r in landed:
        found = VOTE.search(r["path"])
        if found and int(r["body"].get("metric_id", 0)) == metric:
            votes[int(found.group(1))] += 1
    told = {call_id: len(people) for call_id, people in tally.verdicts.items()}
    for call_id in set(votes) | set(told):
        report.lost_votes += max(0, told.get(call_id, 0) - votes[call_id])
        report.duplicated_votes += max(0, votes[call_id] - told.get(call_id, 0))
    report.votes = sum(votes.values())
    verdicts = ledger.team_verdicts(metric, agent)
    in_ledger = Counter(v.call_id for v in verdicts)
    if in_ledger != Counter(told):
        report.problems.append(f"the ledger holds {sum(in_ledger.values())} sent verdicts, the clients were told "
                               f"{sum(told.values())}")

    # 3. Lab entries: one per judged call outside the overlap sample; on a shared call one when both verdicts are in
    #    and agree, none while they are missing or disagree (held from the optimizer).
    labs: Counter[int] = Counter()
    for r in landed:
        if "create_from_call_log" in r["path"]:
            labs[int(r["body"]["call_log_id"])] += 1
    for call_id, people in tally.verdicts.items():
        shared = in_overlap(metric, call_id, overlap)
        if shared and len(people) >= 2:
            report.shared_calls += 1
        agree = len(set(people.values())) == 1
        if shared and len(people) >= 2 and not agree:
            report.disputed_calls += 1
        expected = (1 if len(people) >= 2 and agree else 0) if shared else len(people)
        report.lost_lab_entries += max(0, expected - labs[call_id])
        report.duplicated_lab_entries += max(0, labs[call_id] - expected)
        if labs[call_id] != expected:
            states = [(v.reviewer, v.lab_state) for v in verdicts if v.call_id == call_id]
            report.problems.append(f"call {call_id} ({'shared' if shared else 'single'}, verdicts {people}): "
                                   f"{labs[call_id]} Lab entries landed, {expected} expected; ledger: {states}")
    report.duplicated_lab_entries += sum(n for call_id, n in labs.items() if call_id not in tally.verdicts)
    report.lab_entries = sum(labs.values())
    report.held = sum(1 for v in verdicts if v.lab_state == "held")
    report.lab_states = dict(Counter(v.lab_state for v in verdicts))
    pairs = [list(p.values()) for c, p in tally.verdicts.items() if in_overlap(metric, c, overlap) and len(p) >= 2]
    if len(pairs) >= 2:
        from cekura_labs_mcp.server.services.analysis import agreement

        report.kappa = agreement([p[0] for p in pairs], [p[1] for p in pairs]).kappa

    # 4. The window: no spend allowed without confirmation once the organisation's last hour is full.
    entries = sorted(ledger.audit_entries(1000, everyone=True), key=lambda e: int(e["id"]))
    window = 0
    for entry in entries:
        if entry["decision"] != "allowed" or entry["operation"] not in ("rerun_evaluation", "evaluate_metrics"):
            continue
        window += int(entry["call_count"])
        if entry["confirmation"] == "none" and window > THRESHOLD:
            report.spends_past_window_unconfirmed += 1
            report.problems.append(f"spend {entry['id']} by {entry['owner']} took the window to {window} unconfirmed")
    report.evaluated_calls = sum(len(r["body"].get("call_logs", [])) for r in landed
                                 if "rerun_evaluation" in r["path"] or "evaluate_metrics" in r["path"])
    if report.evaluated_calls > THRESHOLD:
        report.spends_past_window_unconfirmed = max(report.spends_past_window_unconfirmed, 1)
        report.problems.append(f"the sandbox evaluated {report.evaluated_calls} calls with no confirmation given")

    for name, value in (("lost votes", report.lost_votes), ("duplicated votes", report.duplicated_votes),
                        ("lost Lab entries", report.lost_lab_entries),
                        ("duplicated Lab entries", report.duplicated_lab_entries)):
        if value:
            report.problems.append(f"{value} {name}")
    if tally.errors:
        report.problems.append(f"{len(tally.errors)} tool errors")
    if tally.timed_out:
        report.problems.append("the reviewers did not finish within the time bound")
    if not tally.verdicts:
        report.problems.append("no verdict was recorded")


def run_team_load(config: LoadConfig, scratch: Path, database_url: str | None,
                  sandbox: Admin | None = None) -> LoadReport:
    """The whole test against a sandbox process and `config.processes` server processes; `database_url`: the
    team's PostgreSQL (None: one SQLite ledger file shared by the processes); `sandbox`: a sandbox already running
    (the test suite's, freshly reset) instead of one started in its own process."""
    started = time.monotonic()
    path = scratch / "reviewers.json"
    tokens = {f"reviewer{n:02d}": add_reviewer(path, f"reviewer{n:02d}") for n in range(config.reviewers)}
    data_dir = scratch / "data"
    with contextlib.ExitStack() as stack:
        admin = sandbox or stack.enter_context(sandbox_process(seed=7))
        extra = {"CEKURA_LABS_REVIEWERS_FILE": str(path), "CEKURA_LABS_LOG_LEVEL": "info",
                 "CEKURA_LABS_LOG_FORMAT": "json", "CEKURA_LABS_CONFIRM_THRESHOLD": str(THRESHOLD)}
        if database_url:
            extra["CEKURA_LABS_DATABASE_URL"] = database_url
        env = server_env(admin.url, data_dir, key=admin.key, **extra)
        with server_processes(config.processes, env, scratch, config.workers) as ports:
            tally = anyio.run(run_reviewers, config, admin, ports, tokens)
        report = LoadReport(config, time.monotonic() - started, "PostgreSQL" if database_url else "SQLite", tally)
        report.server_ms = server_durations(scratch, config.processes)
        metric = int(admin.metric(METRIC_HINT)["id"])
        agent = int(admin.info()["main_agent_id"])
        ledger = Ledger.for_backend(data_dir, admin.url, admin.key, database_url=database_url)
        try:
            check(report, admin, ledger, metric, agent)
        finally:
            ledger.close()
    return report


def main(argv: list[str] | None = None) -> int:
    # The reviewers call spending tools their toolset has not listed: the SDK says so once a call; not news here.
    logging.getLogger("client").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.team_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="run the last server as `serve --workers N`")
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--reviews-each", type=int, default=5)
    parser.add_argument("--spenders", type=int, default=6)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--max-seconds", type=float, default=45.0, help="the reviewers stop after this")
    parser.add_argument("--sqlite", action="store_true", help="one shared SQLite ledger instead of PostgreSQL")
    parser.add_argument("--database-url", default=None, help="an existing PostgreSQL database to use")
    args = parser.parse_args(argv)
    config = LoadConfig(processes=args.processes, workers=args.workers, reviewers=args.reviewers,
                        reviews_each=args.reviews_each,
                        spenders=min(args.spenders, args.reviewers), overlap=args.overlap,
                        max_seconds=args.max_seconds)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = args.database_url or None
        if url is None and not args.sqlite:
            url = stack.enter_context(throwaway_postgres("team_load", "--sqlite"))
        report = run_team_load(config, Path(tmp), url)
    for line in report.lines():
        print(line, flush=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
