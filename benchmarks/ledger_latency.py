"""Ledger operation latency: SQLite (one person, the default) against PostgreSQL (a team's shared ledger), with
the same `Ledger` class (SQLAlchemy Core) on both.

    python -m benchmarks.ledger_latency                          # SQLite + a throwaway PostgreSQL (initdb/pg_ctl)
    python -m benchmarks.ledger_latency --database-url postgresql://u:p@host/db   # an existing PostgreSQL
    python -m benchmarks.ledger_latency --rounds 500

Each round, in one process, measures what a tool call does to the ledger:
- `guard_authorize`: the cost guard's exclusive transaction (window read, spend written) plus the outcome update;
- `window_read`: the rolling window alone (spend_log, estimates);
- `review_write`: a review's intent, its vote and its Lab entry (three small write transactions);
- `reviews_read`: the session's reviews.
Prints p50 / p95 in milliseconds per operation and backend. Wall-clock figures: on a loaded machine they move, the
ratio between the backends less so. The PostgreSQL cluster here runs locally with fsync off (as in the tests), so
its figures are round trips and locking, not disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import anyio
from cekura_labs_mcp.server.guard import CostGuard, SpendPlan
from cekura_labs_mcp.server.ledger import Ledger, PostgresLedger, postgres_ledger

from benchmarks.common import throwaway_postgres

OPERATIONS = ("guard_authorize", "window_read", "review_write", "reviews_read")


def _plan(round_no: int) -> SpendPlan:
    ids = (round_no * 10 + 1, round_no * 10 + 2)
    return SpendPlan(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=ids, judge_metric_ids=(1,),
                     code_metric_ids=(), credits=0.4, credits_per_call=0.2)


def measure(location: Path | PostgresLedger, rounds: int) -> dict[str, list[float]]:
    ledger = Ledger(location, api_url="http://bench.invalid", api_key="bench")
    # A threshold no round reaches: every spend is allowed, so each round does the same work.
    guard = CostGuard(ledger, threshold=10**9, window_seconds=3600)
    session = ledger.open_session(1, 1, 6)
    times: dict[str, list[float]] = {name: [] for name in OPERATIONS}

    def timed(name: str, work: Callable[[], object]) -> None:
        started = time.perf_counter()
        work()
        times[name].append((time.perf_counter() - started) * 1000)

    async def authorize(round_no: int) -> None:
        started = time.perf_counter()
        permit = await guard.authorize(_plan(round_no), token=None, approval="not_asked")
        guard.finish(permit, "succeeded")
        times["guard_authorize"].append((time.perf_counter() - started) * 1000)

    async def rounds_of_work() -> None:
        for round_no in range(rounds):
            await authorize(round_no)
            timed("window_read", lambda: ledger.window_since(0))
            timed("review_write", lambda r=round_no: review(r))
            timed("reviews_read", lambda: ledger.reviews(session.id))

    def review(round_no: int) -> None:
        review_id = ledger.begin_review(session.id, call_id=round_no, metric_id=1, agreed=True, result_was="TRUE",
                                        expected=True, feedback="right")
        ledger.mark_vote(review_id, "sent", "ok")
        ledger.mark_lab(review_id, "added", 7)

    try:
        anyio.run(rounds_of_work)  # one event loop, as in the server: its start-up is not a ledger cost
    finally:
        ledger.close()
    return times


def _line(backend: str, name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"ledger_{name}_{backend}: p50 {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms (n={len(ordered)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--database-url", help="an existing PostgreSQL (a schema of its own is created and dropped)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = args.database_url or stack.enter_context(throwaway_postgres("ledger_latency", "--database-url"))
        results = {"sqlite": measure(scratch / "ledger.sqlite3", args.rounds)}
        location = postgres_ledger(url, "http://bench.invalid", "bench")
        results["postgresql"] = measure(location, args.rounds)
        Ledger(location).forget()
    for name in OPERATIONS:
        for backend, times in results.items():
            print(_line(backend, name, times[name]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
