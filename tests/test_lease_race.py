"""Several OS processes (a team's server processes) hand out the calls of one metric from one ledger at the same
moment: a call goes to one reviewer only, a call of the overlap sample to two different ones, and none is lost.

Each process is a reviewer taking the best free call (`lease_call`), judging it (`finish_lease`) and asking again
until nothing is left; all start together at a barrier. What is asserted is only who ended up with which call,
never how long anything took. Runs on both ledgers: SQLite (the file's write lock) and PostgreSQL (the ledger's
advisory lock)."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from racing import racing_processes

PROCESSES = 3
CALLS = 40
METRIC = 9
OVERLAP = 0.3


def _location(where: str) -> Any:
    from cekura_labs_mcp.server.db import postgres_url
    from cekura_labs_mcp.server.ledger import PostgresLedger

    if where.startswith("postgresql://"):
        return PostgresLedger(postgres_url(where), "lease_race")
    return Path(where) / "ledger.sqlite3"


def _review_all(where: str, name: str, barrier: Any, results: Any) -> None:
    """One reviewer's process (forked from the fork server: tests/racing.py): lease, judge, repeat."""
    from cekura_labs_mcp.server.ledger import Ledger

    ledger = Ledger(_location(where))
    candidates = list(range(1, CALLS + 1))
    got: list[int] = []
    barrier.wait(timeout=120)
    try:
        while (call_id := ledger.lease_call(METRIC, name, candidates, overlap=OVERLAP, now=time.time(),
                                            ttl=600)) is not None:
            got.append(call_id)
            ledger.finish_lease(METRIC, call_id, name, now=time.time())
    finally:
        ledger.close()
    results.put((name, got))


def test_processes_never_hand_one_call_to_two_reviewers_outside_the_overlap(tmp_path: Path,
                                                                           database_url: str | None) -> None:
    from cekura_labs_mcp.server.ledger import Ledger, in_overlap

    where = database_url or str(tmp_path)
    Ledger(_location(where)).close()  # created and migrated before the race
    racing = racing_processes()
    barrier = racing.Barrier(PROCESSES)
    results = racing.Queue()
    workers = [racing.Process(target=_review_all, args=(where, f"r{i}", barrier, results)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    handed: dict[str, list[int]] = {}
    try:
        for _ in range(PROCESSES):
            name, got = results.get(timeout=300)
            handed[name] = got
    except queue.Empty:
        raise AssertionError(f"the reviewers' processes stopped answering: {handed}") from None
    finally:
        for worker in workers:
            worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    holders: dict[int, list[str]] = {}
    for name, got in handed.items():
        assert len(got) == len(set(got)), f"{name} was handed a call twice"
        for call_id in got:
            holders.setdefault(call_id, []).append(name)
    slots = {c: 2 if in_overlap(METRIC, c, OVERLAP) else 1 for c in range(1, CALLS + 1)}
    assert 0 < sum(1 for n in slots.values() if n == 2) < CALLS, "the sample holds some calls, not all"
    too_many = {c: who for c, who in holders.items() if len(who) > slots[c]}
    assert too_many == {}, f"calls handed to more reviewers than their slots: {too_many}"
    # And none was lost: every slot of every call went to someone, as the ledger's leases say too.
    assert {c: len(who) for c, who in holders.items()} == slots
    ledger = Ledger(_location(where))
    try:
        leases = ledger.leases_of(METRIC)
    finally:
        ledger.close()
    assert sorted((lease.call_id, lease.reviewer) for lease in leases) == sorted(
        (c, name) for c, who in holders.items() for name in who)
    assert {lease.state for lease in leases} == {"done"}
