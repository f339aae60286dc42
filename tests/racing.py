"""The processes of the race tests (test_guard_race, test_lease_race): forked from one fresh interpreter
(multiprocessing's fork server) that imported the ledger and the guard once, instead of a spawned interpreter per
process importing them again (most of a second of CPU each, twelve times a run). They are still separate OS
processes with their own connections to the shared ledger, which is what the races need. The fork server is
single-threaded, so forking it is safe; forking the test process itself (the sandbox's thread running) would not be."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext

# Imported once by the fork server (a module that fails to import is skipped there, and imported by each process).
PRELOAD = ["anyio", "cekura_labs_mcp.server.guard", "cekura_labs_mcp.server.ledger", "psycopg",
           "sqlalchemy.dialects.postgresql.psycopg", "sqlalchemy.dialects.sqlite.pysqlite", "test_guard_race",
           "test_lease_race"]


def racing_processes() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
