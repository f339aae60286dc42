"""Several OS processes sharing one ledger (two Claude sessions on one data dir; a team's server processes on one
PostgreSQL) race for the same rolling window, then for the same confirmation token.

Each process drives the guard's own classes on its own connection to the shared ledger; in every trial all wait at
a barrier, then each asks to be allowed 40 calls (the limit is 100: two may be, a third would pass it). Between
reading the window and writing its allowance each process pauses (as a loaded machine would), so a guard that read
the window outside its write transaction, or locked only within one process, lets a third through. What is
asserted is only the outcome of each trial, never how long anything took. Then, in fresh ledgers, all redeem the
same confirmation token at once (the person's yes reaching several processes through a load balancer): the token
is taken in the guard's transaction, so exactly one spend is allowed. Runs on both ledgers: SQLite (the file's
write lock) and PostgreSQL (the ledger's advisory lock). The same processes run both races (starting one costs
more than its trials)."""

from __future__ import annotations

import functools
import queue
import time
from pathlib import Path
from typing import Any

import anyio
from racing import racing_processes

TRIALS = 12
PROCESSES = 3
CALLS = 40
LIMIT = 100
BIG = 150  # above the limit: only a confirmation allows it


# One ledger for all trials; each trial runs at its own time on the guard's clock, an hour and more after the
# previous one, so it starts with an empty window (and a token from its own trial).
SPACING = 4000.0


def _location(where: str) -> Any:
    """The shared ledger: a file under the folder `where`, or a schema of its own in the database."""
    from cekura_labs_mcp.server.db import postgres_url
    from cekura_labs_mcp.server.ledger import PostgresLedger

    if where.startswith("postgresql://"):
        return PostgresLedger(postgres_url(where), "guard_race")
    return Path(where) / "ledger.sqlite3"


def _clock(base: float, race: int, trial: int) -> Any:
    return lambda: base + (race * TRIALS + trial) * SPACING


def _plan(calls: int) -> Any:
    from cekura_labs_mcp.server.guard import SpendPlan

    return SpendPlan(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=tuple(range(1, calls + 1)),
                     judge_metric_ids=(1,), code_metric_ids=(), credits=round(calls * 0.2, 4), credits_per_call=0.2)


def _contend(where: str, base: float, name: str, tokens: list[str], barrier: Any, results: Any) -> None:
    """One racing process (forked from the fork server: tests/racing.py)."""
    from cekura_labs_mcp.server.guard import ConfirmationRequired, CostGuard, GuardRefusal
    from cekura_labs_mcp.server.ledger import Ledger, SpendBook, Window

    read_window = SpendBook.window

    def slow_window(self: SpendBook, since: float) -> Window:
        window = read_window(self, since)
        time.sleep(0.02)  # widen the gap between the read and the write; the result must not depend on it
        return window

    SpendBook.window = slow_window  # type: ignore[method-assign]
    plan = _plan(CALLS)
    barrier.wait(timeout=120)
    ledger = Ledger(_location(where))
    try:
        for trial in range(TRIALS):
            guard = CostGuard(ledger, threshold=LIMIT, clock=_clock(base, 1, trial))
            barrier.wait(timeout=120)
            try:
                anyio.run(functools.partial(guard.authorize, plan, token=None, approval="not_asked"))
                outcome = "allowed"
            except ConfirmationRequired:
                outcome = "confirmation_required"
            results.put(("window", trial, outcome))
        for trial, token in enumerate(tokens):
            guard = CostGuard(ledger, threshold=LIMIT, clock=_clock(base, 2, trial))
            barrier.wait(timeout=120)
            try:
                anyio.run(functools.partial(guard.authorize, _plan(BIG), token=token, approval="not_asked"))
                outcome = "allowed"
            except GuardRefusal as exc:
                outcome = "refused: already used" if "already used" in exc.message else f"refused: {exc.message}"
            results.put(("token", trial, outcome))
    finally:
        ledger.close()


def _confirmation_tokens(where: str, base: float) -> list[str]:
    """A token per token trial, each asked for (150 calls) at that trial's time."""
    from cekura_labs_mcp.server.guard import ConfirmationRequired, CostGuard
    from cekura_labs_mcp.server.ledger import Ledger

    tokens = []
    for trial in range(TRIALS):
        ledger = Ledger(_location(where))
        try:
            anyio.run(functools.partial(CostGuard(ledger, threshold=LIMIT, clock=_clock(base, 2, trial)).authorize,
                                        _plan(BIG), token=None, approval="not_asked"))
            raise AssertionError(f"{BIG} calls were allowed without a confirmation")
        except ConfirmationRequired as asked:
            tokens.append(asked.token)
        finally:
            ledger.close()
    return tokens


def test_processes_never_spend_past_the_window_nor_redeem_a_token_twice(tmp_path: Path,
                                                                         database_url: str | None) -> None:
    where = database_url or str(tmp_path)
    base = time.time()
    tokens = _confirmation_tokens(where, base)
    racing = racing_processes()
    barrier = racing.Barrier(PROCESSES)
    results = racing.Queue()
    workers = [racing.Process(target=_contend, args=(where, base, f"p{i}", tokens, barrier, results))
               for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes: dict[tuple[str, int], list[str]] = {}
    try:
        for _ in range(PROCESSES * TRIALS * 2):
            race, trial, outcome = results.get(timeout=300)
            outcomes.setdefault((race, trial), []).append(outcome)
    except queue.Empty:
        raise AssertionError(f"the racing processes stopped answering: {outcomes}") from None
    finally:
        for worker in workers:
            worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    window = {trial: seen for (race, trial), seen in outcomes.items() if race == "window"}
    over = [t for t, seen in window.items() if seen.count("allowed") * CALLS > LIMIT]
    assert len(window) == TRIALS and over == [], f"the processes were allowed past {LIMIT} calls in trials {over}"
    # And the guard did not simply refuse: in each trial exactly as many were allowed as fit, the rest asked first.
    fit = LIMIT // CALLS
    expected = sorted(["allowed"] * fit + ["confirmation_required"] * (PROCESSES - fit))
    assert all(sorted(seen) == expected for seen in window.values()), window
    redeemed = {trial: seen for (race, trial), seen in outcomes.items() if race == "token"}
    once = sorted(["allowed"] + ["refused: already used"] * (PROCESSES - 1))
    assert len(redeemed) == TRIALS and all(sorted(seen) == once for seen in redeemed.values()), redeemed


