"""Several OS processes sharing one ledger (two Claude sessions on one data dir; a team's server processes on one
PostgreSQL) race for the same rolling window.

Each process drives the guard's own classes on its own connection to the shared ledger; in every trial all wait at
a barrier, then each asks to be allowed 40 calls (the limit is 100: two may be, a third would pass it). Between
reading the window and writing its allowance each process pauses (as a loaded machine would), so a guard that read
the window outside its write transaction, or locked only within one process, lets a third through. What is
asserted is only the outcome of each trial, never how long anything took. Runs on both ledgers: SQLite (the file's
write lock) and PostgreSQL (the ledger's advisory lock)."""

from __future__ import annotations

import functools
import multiprocessing
import queue
import time
from pathlib import Path
from typing import Any

import anyio

TRIALS = 12
PROCESSES = 3
CALLS = 40
LIMIT = 100


def _location(where: str, trial: int) -> Any:
    """Trial `trial`'s fresh ledger: a file under the folder `where`, or a schema of its own in the database."""
    from cekura_labs_mcp.server.db import postgres_url
    from cekura_labs_mcp.server.ledger import PostgresLedger

    if where.startswith("postgresql://"):
        return PostgresLedger(postgres_url(where), f"race_trial_{trial}")
    return Path(where) / f"trial-{trial}" / "ledger.sqlite3"


def _contend(where: str, name: str, barrier: Any, results: Any) -> None:
    """One racing process (runs in a spawned interpreter)."""
    from cekura_labs_mcp.server.guard import ConfirmationRequired, CostGuard, SpendPlan
    from cekura_labs_mcp.server.ledger import Ledger, SpendBook, Window

    read_window = SpendBook.window

    def slow_window(self: SpendBook, since: float) -> Window:
        window = read_window(self, since)
        time.sleep(0.02)  # widen the gap between the read and the write; the result must not depend on it
        return window

    SpendBook.window = slow_window  # type: ignore[method-assign]
    plan = SpendPlan(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=tuple(range(1, CALLS + 1)),
                     judge_metric_ids=(1,), code_metric_ids=(), credits=round(CALLS * 0.2, 4), credits_per_call=0.2)
    for trial in range(TRIALS):
        barrier.wait(timeout=120)
        ledger = Ledger(_location(where, trial))  # opened (and migrated) by all at once too
        guard = CostGuard(ledger, threshold=LIMIT)
        barrier.wait(timeout=120)
        try:
            anyio.run(functools.partial(guard.authorize, plan, token=None, approval="not_asked"))
            outcome = "allowed"
        except ConfirmationRequired:
            outcome = "confirmation_required"
        finally:
            ledger.close()
        results.put((trial, name, outcome))


def test_processes_never_spend_past_the_window_together(tmp_path: Path, database_url: str | None) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(PROCESSES)
    results = spawn.Queue()
    where = database_url or str(tmp_path)
    workers = [spawn.Process(target=_contend, args=(where, f"p{i}", barrier, results)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes: dict[int, list[str]] = {}
    try:
        for _ in range(PROCESSES * TRIALS):
            trial, _name, outcome = results.get(timeout=300)
            outcomes.setdefault(trial, []).append(outcome)
    except queue.Empty:
        raise AssertionError(f"the racing processes stopped answering: {outcomes}") from None
    finally:
        for worker in workers:
            worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    over = [t for t, seen in outcomes.items() if seen.count("allowed") * CALLS > LIMIT]
    assert len(outcomes) == TRIALS and over == [], f"the processes were allowed past {LIMIT} calls in trials {over}"
    # And the guard did not simply refuse: in each trial exactly as many were allowed as fit, the rest asked first.
    fit = LIMIT // CALLS
    expected = sorted(["allowed"] * fit + ["confirmation_required"] * (PROCESSES - fit))
    assert all(sorted(seen) == expected for seen in outcomes.values()), outcomes

