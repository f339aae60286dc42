"""Fault soak: a scripted review session, run many times against the sandbox with random injected faults
(429 with Retry-After, 500, delays past the timeout, malformed JSON, dropped connections) and the server
killed (SIGKILL) in the middle of a write and restarted. After each round, from the sandbox's request log
and the server's ledger:

- no vote lost or sent twice: every review the ledger holds as voted landed exactly once, and every vote
  that landed belongs to a review in the ledger;
- no Lab entry lost or sent twice: each landed at most once; each review's entry is either added (and
  landed once) or, when its outcome could not be known, reported to the person in `check`;
- no spend without a guard decision: every evaluation request matches an `allowed` audit entry for
  exactly those calls, and no audit entry was sent twice; no auto-improve run was started twice;
- every failure reached the assistant as a clear one-line message (`[code] ...`), never a crash.

    python -m benchmarks.soak                   # 20 rounds, at most 15 minutes
    python -m benchmarks.soak --rounds 3 --seed 11

The "assistant" here does what a careful assistant does with the server's answers: it retries a read
that failed, waits when told to wait, and never confirms a spend or re-sends a write the server said may
have landed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from cekura_labs_mcp.server.demo import person_from_truth as person
from cekura_labs_mcp.server.ledger import ledger_file
from mcp import Client, StdioServerParameters, stdio_client

from benchmarks.common import SERVE, Admin, result_text, sandbox_process, server_env

TIMEOUT_S = 1.0
FAULT_PATHS = (
    "/observability/v1/call-logs-external",
    "/observability/v1/call-logs/rerun_evaluation",
    "/test_framework/test-sets/create_from_call_log",
    "/test_framework/metric-reviews",
    "/test_framework/v1/metrics",
)
FAULT_KINDS = ("429", "429-long", "500", "delay", "malformed", "drop")
VOTE = re.compile(r"/call-logs(?:-external)?/(\d+)/mark_metric_vote/?$")
CLEAR = re.compile(r"^Error executing tool \w+: \[[a-z_]+\] [^\n]+$")
MAX_REVIEWS = 16
ATTEMPTS = 12


class RoundFailed(Exception):
    pass


@dataclass
class RoundResult:
    seed: int
    tool_calls: int = 0
    errors: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    votes: int = 0
    lab_entries: int = 0
    spends: int = 0
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    killed_during: str = ""
    killed_mid_write: bool = False  # the kill came while that write was held at "Cekura"
    improve_flagged: bool = False


class Assistant:
    """Drives one server process with the session script; injects a random fault before some calls."""

    def __init__(self, client: Client, admin: Admin, rng: random.Random, result: RoundResult,
                 fault_rate: float) -> None:
        self.client = client
        self.admin = admin
        self.rng = rng
        self.result = result
        self.fault_rate = fault_rate

    def maybe_fault(self) -> None:
        if self.rng.random() >= self.fault_rate:
            return
        kind = self.rng.choice(FAULT_KINDS)
        path = self.rng.choice(FAULT_PATHS)
        self.result.faults[kind] += 1
        if kind == "429":
            self.admin.fault(path, "429", retry_after=self.rng.choice([0.1, 0.3, 0.5]))
        elif kind == "429-long":
            self.admin.fault(path, "429", retry_after=120)
        elif kind == "delay":
            self.admin.fault(path, "delay", delay_ms=int(TIMEOUT_S * 1000) + 300)
        else:
            self.admin.fault(path, kind)

    async def tool(self, name: str, args: dict[str, Any], *, faults: bool = True) -> dict[str, Any]:
        """Call until it succeeds, as an assistant would; errors are recorded and checked."""
        for _ in range(ATTEMPTS):
            if faults:
                self.maybe_fault()
            answer = await self.client.call_tool(name, args)
            self.result.tool_calls += 1
            if not answer.is_error:
                return dict(answer.structured_content or {})
            text = result_text(answer)
            self.result.errors.append(text)
            if not CLEAR.match(text) or "[internal]" in text:
                raise RoundFailed(f"{name} answered an unclear error: {text!r}")
            if "already reviewed" in text:
                return {"already_reviewed": True}
            if name in ("validate_metric", "rerun_evaluation") and "[outcome_unknown]" in text:
                return {"outcome_unknown": True}  # may have been charged: a careful assistant stops here
            wait = re.search(r"(?:wait|in) (\d+(?:\.\d+)?) ?s\b", text, re.IGNORECASE)
            await anyio.sleep(min(3.0, float(wait.group(1))) if wait else 0.2)
        raise RoundFailed(f"{name} did not succeed in {ATTEMPTS} attempts; last error: {self.result.errors[-1]!r}")

    async def review_until(self, agent: int, metric: int, truth: dict[str, Any], stop_after: int | None
                           ) -> dict[str, Any] | None:
        """Review calls until auto-improve answers (or `stop_after` reviews); returns the improvement."""
        done = 0
        while done < (stop_after if stop_after is not None else MAX_REVIEWS):
            review = await self.tool("next_review", {"agent_id": agent, "metric_id": metric})
            if not review.get("call"):
                raise RoundFailed("the queue ran out of calls")
            call_id = review["call"]["id"]
            if self.rng.random() < self.fault_rate:  # aim one at this very vote
                kind = self.rng.choice(("500", "delay", "drop", "malformed", "429"))
                self.result.faults[f"vote:{kind}"] += 1
                self.admin.fault(f"/observability/v1/call-logs-external/{call_id}/mark_metric_vote", kind,
                                 delay_ms=int(TIMEOUT_S * 1000) + 300, retry_after=0.2)
            recorded = await self.tool("record_review", {"agent_id": agent, "metric_id": metric,
                                                         "call_id": call_id, **person(truth, review)})
            done += 1
            improvement = recorded.get("improvement")
            while improvement and not improvement.get("done"):
                improvement = await self.tool("poll_progress", {"progress_id": improvement["progress_id"],
                                                                "metric_id": metric, "wait_seconds": 10})
            if improvement:
                return dict(improvement)
        return None


def _server_pid(data_dir: Path) -> int:
    """The serve process this round started, found by its data dir (unique to the round)."""
    marker = f"CEKURA_LABS_DATA_DIR={data_dir}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    raise RoundFailed("serve process not found")


async def soak_round(admin: Admin, seed: int, scratch: Path, fault_rate: float) -> RoundResult:
    rng = random.Random(seed)
    result = RoundResult(seed=seed)
    admin.reset()
    info = admin.info()
    agent = info["main_agent_id"]
    metric = admin.metric()["id"]
    truth = admin.truth(metric)
    data_dir = scratch / f"round-{seed}"
    env = server_env(admin.url, data_dir, admin.key, CEKURA_LABS_HTTP_TIMEOUT=str(TIMEOUT_S),
                     CEKURA_LABS_POLL_INTERVAL="0.05", CEKURA_LABS_POLL_TIMEOUT="20", CEKURA_LABS_LOG_LEVEL="warning")
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env)
    errlog = (scratch / f"round-{seed}.stderr").open("w")
    kill_after = rng.randint(1, 4)
    target = rng.choice(["mark_metric_vote", "create_from_call_log"])
    result.killed_during = target

    # Phase 1: review a few calls, then kill the server while a write is held at "Cekura" (until the test releases
    # it, once the server is gone: no guessed time).
    async def doomed() -> None:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assistant = Assistant(client, admin, rng, result, fault_rate)
            await assistant.tool("start_review", {"agent_id": agent, "metric_id": metric, "auto_improve": True})
            await assistant.review_until(agent, metric, truth, kill_after)
            review = await assistant.tool("next_review", {"agent_id": agent, "metric_id": metric}, faults=False)
            call_id = review["call"]["id"]
            paths = ([f"/observability/{v}/{call_id}/mark_metric_vote"  # the vote goes to v2 where it is served
                      for v in ("v1/call-logs-external", "v2/call-logs")]
                     if target == "mark_metric_vote" else ["/test_framework/test-sets/create_from_call_log"])
            admin.clear_faults()
            for path in paths:
                admin.fault(path, "hold")
            armed.set()
            await client.call_tool("record_review", {"agent_id": agent, "metric_id": metric,
                                                     "call_id": call_id, **person(truth, review)})
            unheld.set()  # the write never met the hold (none was needed): killed all the same, after it

    armed, unheld = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(_until_killed, doomed)
        with anyio.fail_after(120):  # a bound against a hang, not a timing
            await armed.wait()
            while not (held := admin.held()) and not unheld.is_set():
                await anyio.sleep(0.02)
        os.kill(_server_pid(data_dir), signal.SIGKILL)
        result.killed_mid_write = bool(held)
    # The held write lands now that its sender is dead; phase 2 starts once it has.
    admin.release()
    admin.clear_faults()
    with anyio.fail_after(120):  # the released write's log entry ends once the API has answered it
        while any(r["fault"] == "hold" and r["ended"] is None for r in admin.stats()["requests"]):
            await anyio.sleep(0.02)

    # Phase 2: restart on the same ledger, finish the session, apply the proposal, validate.
    async with Client(stdio_client(params, errlog=errlog)) as client:
        assistant = Assistant(client, admin, rng, result, fault_rate)
        await assistant.tool("start_review", {"agent_id": agent, "metric_id": metric})
        improvement = await assistant.review_until(agent, metric, truth, None)
        if improvement is not None:
            await assistant.tool("patch_metric", {"metric_id": metric,
                                                  "description": improvement["proposed_description"], "confirm": True})
            await assistant.tool("validate_metric", {"agent_id": agent, "metric_id": metric})
        else:
            progress = await assistant.tool("start_review", {"agent_id": agent, "metric_id": metric})
            if not any(c.startswith("auto-improve") for c in progress.get("check", [])):
                raise RoundFailed(f"auto-improve never answered within {MAX_REVIEWS} reviews, and no start is "
                                  "flagged for the person")
            result.improve_flagged = True  # the person checks the Labs page: the assistant starts nothing
        admin.clear_faults()
        final = await assistant.tool("start_review", {"agent_id": agent, "metric_id": metric}, faults=False)
    errlog.close()
    result.checks = list(final.get("check", []))
    verify(admin, ledger_file(data_dir, admin.url, admin.key), result)
    return result


async def _until_killed(fn: Any) -> None:
    try:
        await fn()
    except BaseException as exc:  # the killed server breaks the session: expected
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            raise


def verify(admin: Admin, ledger_path: Path, result: RoundResult) -> None:
    log = admin.stats()["requests"]
    # Landed: answered 2xx by the API itself (a `delay` fault or a released hold still reaches it; other faults
    # answer instead).
    landed = [r for r in log if r["method"] == "POST" and r["status"] is not None and 200 <= r["status"] < 300
              and r.get("fault") in (None, "delay", "hold")]
    db = sqlite3.connect(ledger_path)
    try:
        reviews = db.execute("SELECT call_id, metric_id, vote_state, lab_state, test_set_id FROM reviews").fetchall()
        audit = db.execute("SELECT id, operation, call_ids, decision, outcome FROM audit").fetchall()
        improvements = db.execute("SELECT progress_id, state FROM improvements").fetchall()
    finally:
        db.close()
    problems = result.problems

    votes = Counter()
    for r in landed:
        match = VOTE.search(r["path"])
        if match:
            votes[(int(match.group(1)), int(r["body"]["metric_id"]))] += 1
    voted = {(c, m) for c, m, vote_state, _, _ in reviews if vote_state == "sent"}
    problems += [f"vote on call {c} landed {n} times" for (c, m), n in votes.items() if n > 1]
    problems += [f"vote on call {c} landed but the ledger does not hold it as sent" for (c, m) in votes
                 if (c, m) not in voted]
    problems += [f"the ledger holds the vote on call {c} as sent, but it never landed" for (c, m) in voted
                 if (c, m) not in votes]
    problems += [f"review of call {c} left with vote state {v}" for c, _, v, _, _ in reviews if v != "sent"]
    result.votes = sum(votes.values())

    labs = Counter()
    test_sets: dict[int, int] = {}
    for r in landed:
        if "create_from_call_log" in r["path"]:
            labs[int(r["body"]["call_log_id"])] += 1
    problems += [f"Lab entry for call {c} landed {n} times" for c, n in labs.items() if n > 1]
    reviewed_calls = {c for c, *_ in reviews}
    problems += [f"Lab entry for call {c} landed but no review holds it" for c in labs if c not in reviewed_calls]
    for call_id, _, vote_state, lab_state, test_set_id in reviews:
        if vote_state != "sent":
            continue
        if lab_state == "added":
            test_sets[call_id] = test_set_id
            if labs[call_id] != 1:
                problems.append(f"Lab entry for call {call_id} is held as added but landed {labs[call_id]} times")
        elif lab_state == "unknown":
            if not any(f"call {call_id}:" in check for check in result.checks):
                problems.append(f"Lab entry for call {call_id} has an unknown outcome the person was not told of")
        else:
            problems.append(f"Lab entry for call {call_id} left in state {lab_state}")
    result.lab_entries = sum(labs.values())

    allowed = {json.dumps(sorted(json.loads(ids))): audit_id for audit_id, _, ids, decision, _ in audit
               if decision == "allowed"}
    sent_per_decision: Counter[int] = Counter()
    for r in log:
        if r["method"] == "POST" and ("rerun_evaluation" in r["path"] or "evaluate_metrics" in r["path"]):
            calls = json.dumps(sorted(r["body"].get("call_logs", [])))
            if calls not in allowed:
                problems.append(f"evaluation of {calls} sent without an allowed guard decision")
            elif r["status"] not in (404, 429):  # a 404 (the client's v2 probe) and a 429 did nothing
                sent_per_decision[allowed[calls]] += 1
    problems += [f"guard decision {a} was sent {n} times" for a, n in sent_per_decision.items() if n > 1]
    result.spends = sum(sent_per_decision.values())

    starts = [r for r in landed if r["path"].rstrip("/").endswith("/process_feedbacks")]
    if len(starts) > 1:
        problems.append(f"auto-improve was started {len(starts)} times")
    if len(improvements) > 1:
        problems.append(f"the ledger holds {len(improvements)} auto-improve runs for one session")


@dataclass
class SoakReport:
    rounds: list[RoundResult]
    seconds: float
    verbose: bool = False

    def lines(self) -> list[str]:
        faults: Counter[str] = Counter()
        for r in self.rounds:
            faults.update(r.faults)
        errors = [e for r in self.rounds for e in r.errors]
        codes = Counter(m.group(1) for e in errors if (m := re.search(r"\[([a-z_]+)\]", e)))
        problems = [f"round {r.seed}: {p}" for r in self.rounds for p in r.problems]
        if self.verbose:
            problems += [f"round {r.seed} error: {e}" for r in self.rounds if r.problems for e in r.errors]
        return [
            f"soak_rounds: {len(self.rounds)} ({self.seconds:.0f} s, one SIGKILL and restart each, "
            f"{sum(r.killed_mid_write for r in self.rounds)} of them mid-write)",
            f"soak_tool_calls: {sum(r.tool_calls for r in self.rounds)}",
            "soak_faults_injected: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())),
            f"soak_errors_reported: {len(errors)} (" + ", ".join(f"{k} {v}" for k, v in codes.most_common()) + ")",
            f"soak_votes_landed: {sum(r.votes for r in self.rounds)}; lab_entries_landed: "
            f"{sum(r.lab_entries for r in self.rounds)}; evaluations_sent: {sum(r.spends for r in self.rounds)}",
            f"soak_outcomes_flagged_for_the_person: {sum(len(r.checks) for r in self.rounds)} (auto-improve starts "
            f"left to the person: {sum(r.improve_flagged for r in self.rounds)})",
            f"soak_problems: {len(problems)}",
            *problems,
        ]


async def run_soak(admin: Admin, rounds: int, seed: int, max_seconds: float, fault_rate: float = 0.3,
                   scratch: Path | None = None) -> SoakReport:
    started = time.monotonic()
    results: list[RoundResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = scratch or Path(tmp)
        for index in range(rounds):
            if results and time.monotonic() - started > max_seconds:
                break
            result = RoundResult(seed=seed + index)
            try:
                with anyio.fail_after(max(60.0, max_seconds)):
                    result = await soak_round(admin, seed + index, base, fault_rate)
            except Exception as exc:
                result.problems.append(_describe(exc))
            results.append(result)
    return SoakReport(results, time.monotonic() - started)


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop starting rounds after this")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="chance of a fault before each tool call")
    parser.add_argument("--verbose", action="store_true", help="print the errors of rounds with problems")
    args = parser.parse_args(argv)
    with sandbox_process() as admin:
        report = anyio.run(run_soak, admin, args.rounds, args.seed, args.max_seconds, args.fault_rate)
    report.verbose = args.verbose
    for line in report.lines():
        print(line, flush=True)
    return 1 if any(r.problems for r in report.rounds) else 0


if __name__ == "__main__":
    raise SystemExit(main())
