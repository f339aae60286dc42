"""Two OS processes sharing one data dir (two Claude sessions do) race for the same rolling window.

Each process drives the guard's own classes on its own connection to the shared ledger; in every trial
both wait at a barrier, then each asks to be allowed 99 calls (the limit is 100, so only one may be).
Between reading the window and writing its allowance each process pauses (as a loaded machine would), so
a guard that read the window outside its write transaction, or locked only within one process, lets
both through. What is asserted is only the outcome of each trial, never how long anything took."""

from __future__ import annotations

import functools
import multiprocessing
import queue
import time
from pathlib import Path
from typing import Any

import anyio

TRIALS = 20
CALLS = 99


def _contend(root: str, name: str, barrier: Any, results: Any) -> None:
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
        ledger = Ledger(Path(root) / f"trial-{trial}" / "ledger.sqlite3")
        guard = CostGuard(ledger)
        barrier.wait(timeout=120)
        try:
            anyio.run(functools.partial(guard.authorize, plan, token=None, approval="not_asked"))
            outcome = "allowed"
        except ConfirmationRequired:
            outcome = "confirmation_required"
        finally:
            ledger.close()
        results.put((trial, name, outcome))


def test_two_processes_never_both_get_99_calls(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results = spawn.Queue()
    workers = [spawn.Process(target=_contend, args=(str(tmp_path), name, barrier, results)) for name in "ab"]
    for worker in workers:
        worker.start()
    outcomes: dict[int, list[str]] = {}
    try:
        for _ in range(2 * TRIALS):
            trial, _name, outcome = results.get(timeout=300)
            outcomes.setdefault(trial, []).append(outcome)
    except queue.Empty:
        raise AssertionError(f"the racing processes stopped answering: {outcomes}") from None
    finally:
        for worker in workers:
            worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    doubles = [t for t, seen in outcomes.items() if seen.count("allowed") > 1]
    assert len(outcomes) == TRIALS and doubles == [], f"both processes were allowed 99 calls in trials {doubles}"
    # And the guard did not simply refuse both: in each trial exactly one was allowed, the other asked first.
    assert all(sorted(seen) == ["allowed", "confirmation_required"] for seen in outcomes.values()), outcomes
