"""The ledger on both databases: SQLite (one person, the default) and PostgreSQL (a team, CEKURA_LABS_DATABASE_URL).

The same tables come out of both migration chains; a ledger written by the previous release upgrades in place;
the window and the spend log are the organisation's; the database password never leaves the server; and the
throwaway PostgreSQL the tests use runs unprivileged whether the tests run as root or not."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.db import SQLITE_STATEMENTS
from cekura_labs_mcp.server.db_schema import MIGRATIONS, POSTGRES_MIGRATIONS, metadata
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.ledger import (
    Ledger,
    PostgresLedger,
    SpendRecord,
    acting_for,
    key_fingerprint,
    postgres_ledger,
)
from mcp import Client
from pg_cluster import PgCluster, find_bindir, service_user
from pydantic import SecretStr
from sqlalchemy import create_engine, inspect
from support import FAST_RETRY, LOG_SINK, TOOL_OUTPUTS, SandboxAdmin, call, connect

# The schema version main had before the ledger moved to SQLAlchemy: what a user's existing file is at.
SHIPPED_SQLITE_VERSION = 4


def _spend(calls: int, **extra: str) -> SpendRecord:
    return SpendRecord(operation="rerun_evaluation", agent_id=1, project_id=None, call_ids=range(calls),
                       metric_ids=[1], credits_estimated=0.2 * calls, decision="allowed", confirmation="none",
                       outcome="succeeded", **extra)


def _columns(ledger: Ledger) -> dict[str, set[str]]:
    location = ledger.location
    if isinstance(location, PostgresLedger):
        engine = create_engine(location.url)
        schema: str | None = location.namespace
    else:
        engine = create_engine(f"sqlite:///{location}")
        schema = None
    try:
        found = inspect(engine)
        return {table: {c["name"] for c in found.get_columns(table, schema=schema)}
                for table in found.get_table_names(schema=schema) if table != "ledger_schema_version"}
    finally:
        engine.dispose()


def test_both_migration_chains_end_in_the_declared_tables(ledger_location: Path | PostgresLedger) -> None:
    assert len(MIGRATIONS) == len(POSTGRES_MIGRATIONS), "each version means the same tables on both databases"
    ledger = Ledger(ledger_location)
    try:
        assert ledger.schema_version == len(MIGRATIONS)
        declared = {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}
        assert _columns(ledger) == declared
    finally:
        ledger.close()


def test_a_new_ledger_opened_by_many_at_once_is_migrated_once(ledger_location: Path | PostgresLedger) -> None:
    """Servers starting together on one new ledger (each on its own connection): one migrates, the others wait
    for it and find it done; none fails or applies a migration twice."""
    opened: list[Ledger] = []
    failed: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait(timeout=60)
        try:
            opened.append(Ledger(ledger_location, api_url="http://same.invalid", api_key="k"))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert failed == [] and len(opened) == 4
        assert {ledger.schema_version for ledger in opened} == {len(MIGRATIONS)}
        assert {ledger.backend for ledger in opened} == {f"http://same.invalid (key {key_fingerprint('k')})"}
    finally:
        for ledger in opened:
            ledger.close()


def test_a_sqlite_ledger_of_the_previous_release_upgrades_in_place(tmp_path: Path) -> None:
    """Written exactly as the previous release wrote it (its migrations, through sqlite3), then opened."""
    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("BEGIN IMMEDIATE")
    for script in MIGRATIONS[:SHIPPED_SQLITE_VERSION]:
        for statement in script.split(";"):
            if statement.strip():
                old.execute(statement)
    old.execute(f"PRAGMA user_version = {SHIPPED_SQLITE_VERSION}")
    old.execute("INSERT INTO audit (at, operation, call_count, call_ids, metric_ids, credits_estimated, decision,"
                " confirmation, outcome, owner) VALUES (?, 'rerun_evaluation', 7, '[]', '[1]', 1.4, 'allowed',"
                " 'none', 'succeeded', 'bearer:abc')", (time.time(),))
    old.execute("INSERT INTO review_sessions (metric_id, agent_id, started_at, feedback_threshold)"
                " VALUES (3, 4, 0, 6)")
    old.execute("INSERT INTO reviews (session_id, call_id, metric_id, agreed, expected, feedback, vote_state,"
                " lab_state, created_at, updated_at) VALUES (1, 9, 3, 1, '1', 'right', 'sent', 'added', 1, 1)")
    old.execute("COMMIT")
    old.close()
    os.chmod(path, 0o600)

    ledger = Ledger(path)
    try:
        assert ledger.schema_version == len(MIGRATIONS)
        assert ledger.window_since(0).calls == 7
        assert [e["owner"] for e in ledger.audit_entries(everyone=True)] == ["bearer:abc"]
        [review] = ledger.reviews(ledger.open_session(3, 4, 6).id)
        assert (review.call_id, review.vote_state, review.feedback) == (9, "sent", "right")
    finally:
        ledger.close()


def test_a_new_sqlite_ledger_is_created_as_the_whole_chain_would_build_it(tmp_path: Path) -> None:
    """A new file gets the chain's final schema in one step; a file at the first version goes through every
    migration after it. Both end in the same tables, columns, defaults and indexes, at the same version."""
    created = Ledger(tmp_path / "new.sqlite3")
    path = tmp_path / "first.sqlite3"
    first = sqlite3.connect(path, isolation_level=None)
    first.executescript(MIGRATIONS[0])
    first.execute("PRAGMA user_version = 1")
    first.close()
    os.chmod(path, 0o600)
    upgraded = Ledger(path)
    try:
        assert created.schema_version == upgraded.schema_version == len(MIGRATIONS)
        assert _schema(created.path) == _schema(upgraded.path)
        assert {row[1] for row in _schema(created.path) if row[0] == "table"} >= set(metadata.tables)
    finally:
        created.close()
        upgraded.close()


def test_sqlite_ledgers_share_their_compiled_statements_and_keep_their_own_data(tmp_path: Path) -> None:
    """A statement compiled for one SQLite ledger is reused by the next one (SQLAlchemy would compile it again
    for each new engine), and each ledger still reads only its own rows."""
    first, second = Ledger(tmp_path / "first.sqlite3"), Ledger(tmp_path / "second.sqlite3")
    try:
        SQLITE_STATEMENTS.clear()
        first.record_spend(_spend(7))
        assert first.window_since(0).calls == 7
        compiled = len(SQLITE_STATEMENTS)
        assert compiled >= 2
        second.record_spend(_spend(2))
        assert second.window_since(0).calls == 2 and first.window_since(0).calls == 7
        assert len(SQLITE_STATEMENTS) == compiled
    finally:
        first.close()
        second.close()


def _schema(path: Path) -> list[tuple[str, str, str]]:
    found = sqlite3.connect(path)
    try:
        return sorted(found.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
    finally:
        found.close()


def test_a_ledger_from_a_newer_version_is_refused(ledger_location: Path | PostgresLedger) -> None:
    Ledger(ledger_location).close()
    ledger = Ledger(ledger_location)
    with ledger._db.write() as db:  # what a newer release would have left behind
        if ledger.dialect == "sqlite":
            db.exec_driver_sql(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        else:
            db.exec_driver_sql(f"UPDATE ledger_schema_version SET version = {len(MIGRATIONS) + 1}")
    ledger.close()
    with pytest.raises(LabsError, match="newer version"):
        Ledger(ledger_location)


def test_the_window_and_the_spend_log_are_the_organisations(ledger_location: Path | PostgresLedger) -> None:
    """Two reviewers on two servers (two ledger handles): one window, one log naming who spent what."""
    first, second = Ledger(ledger_location), Ledger(ledger_location)
    try:
        with acting_for("alice"):
            first.record_spend(_spend(30))
        with acting_for("bob"):
            second.record_spend(_spend(20))
            assert [e["call_count"] for e in second.audit_entries()] == [20], "one's own entries"
        assert first.window_since(0).calls == second.window_since(0).calls == 50
        assert [(e["owner"], e["call_count"]) for e in first.audit_entries(everyone=True)] == [("bob", 20),
                                                                                              ("alice", 30)]
    finally:
        first.close()
        second.close()


# ---- PostgreSQL only ----------------------------------------------------------------------------------------------


def _role(postgres: PgCluster, name: str, password: str) -> str:
    """A login role owning a database of its own; the database's URL with that role's password."""
    postgres.admin(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    postgres.admin(f"CREATE DATABASE {name} OWNER {name}")
    return postgres.url(name, user=name, password=password)


@pytest.mark.anyio
async def test_the_database_password_never_leaves_the_server(postgres: PgCluster, settings: Settings,
                                                              sandbox: SandboxAdmin) -> None:
    password = "pw-" + os.urandom(8).hex()
    url = _role(postgres, f"team_{os.urandom(4).hex()}", password)
    wrong = url.replace(password, "not-" + password)
    with pytest.raises(LabsError) as refused:
        Ledger.for_backend(settings.data_dir, settings.api_url, "k", database_url=wrong)
    assert "password authentication failed" in str(refused.value) and password not in str(refused.value)
    with pytest.raises(LabsError, match="CEKURA_LABS_DATABASE_URL is not a PostgreSQL URL") as other:
        Ledger.for_backend(settings.data_dir, settings.api_url, "k", database_url=f"mysql://u:{password}@h/db")
    assert password not in str(other.value)
    closed = url.replace(f":{postgres.port}/", ":1/")
    with pytest.raises(LabsError, match="Cannot use the ledger database") as unreachable:
        Ledger.for_backend(settings.data_dir, settings.api_url, "k", database_url=closed)
    assert password not in str(unreachable.value)

    team = settings.model_copy(update={"database_url": SecretStr(url)})
    agent = sandbox.info()["main_agent_id"]
    rows = sandbox.api("GET", "/observability/v1/call-logs-external/", params={"agent_id": agent, "page_size": 1})
    async with connect(team) as client:
        await call(client, "rerun_evaluation", {"agent_id": agent, "call_ids": [rows["results"][0]["id"]]})
        log = await call(client, "spend_log", {})
    assert [e["calls"] for e in log["entries"]] == [1]
    # The operators are told where the ledger is, with the password masked.
    assert f"127.0.0.1:{postgres.port}" in LOG_SINK.getvalue() and "***" in LOG_SINK.getvalue()
    ledger = Ledger(postgres_ledger(url, settings.api_url, "k"))
    shown = [repr(team), str(team), repr(ledger.location), ledger.backend, LOG_SINK.getvalue(), *TOOL_OUTPUTS]
    ledger.close()
    assert not [text for text in shown if password in text]


@pytest.mark.anyio
async def test_the_embedded_sandbox_leaves_no_schema_behind(postgres: PgCluster, settings: Settings) -> None:
    url = postgres.fresh_database()
    keyless = settings.model_copy(update={"api_key": None, "database_url": SecretStr(url)})
    async with Client(build_server(keyless, retry=FAST_RETRY)) as client:
        log = await call(client, "spend_log", {})
        assert log["entries"] == [] and "127.0.0.1" in log["backend"]
        with psycopg.connect(url) as conn:
            during = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger_%'")]
    with psycopg.connect(url) as conn:
        after = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger_%'")]
    assert len(during) == 1 and after == []


def test_the_cluster_runs_as_an_unprivileged_user(postgres: PgCluster) -> None:
    uid = postgres.postmaster_uid()
    assert uid != 0
    assert uid == (service_user().pw_uid if os.geteuid() == 0 else os.geteuid())


def test_a_cluster_also_starts_for_a_user_who_is_not_root(postgres: PgCluster) -> None:
    """The session's cluster covers this process's own case; this covers the other one, started by a process of
    an unprivileged user (forked from this one, which must be root to become that user)."""
    if os.geteuid() != 0:
        pytest.skip("running as a user who is not root: the session's cluster already took that path, and only "
                    "root can start one for another user")
    bindir = find_bindir()
    assert bindir is not None
    user = service_user()
    pid = os.fork()
    if pid == 0:  # the child: become the user, start and use a cluster of its own, stop it
        code = 1
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            cluster = PgCluster.start(bindir)
            try:
                with psycopg.connect(cluster.url()) as conn:
                    ran = conn.execute("SELECT current_user").fetchone()
                code = 0 if cluster.user is None and cluster.postmaster_uid() == user.pw_uid and ran else 3
            finally:
                cluster.stop()
        except BaseException as exc:
            os.write(2, f"non-root cluster failed: {exc!r}\n".encode())
            code = 2
        os._exit(code)
    deadline = time.monotonic() + 300
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the unprivileged user's cluster did not start and stop in time")
        time.sleep(0.2)
    assert os.waitstatus_to_exitcode(status) == 0


def test_without_postgresql_its_tests_skip_unless_ci_requires_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import pg_cluster

    monkeypatch.setattr(pg_cluster, "find_bindir", lambda: None)
    monkeypatch.delenv(pg_cluster.REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"PostgreSQL server binaries \(initdb, pg_ctl\) not found"):
        pg_cluster.cluster_or_skip()
    monkeypatch.setenv(pg_cluster.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{pg_cluster.REQUIRE} is set"):
        pg_cluster.cluster_or_skip()


def test_a_database_url_without_the_driver_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if `cekura-labs-mcp[team]` were not installed
    with pytest.raises(LabsError, match=r"PostgreSQL driver \(psycopg\) is not installed.*cekura-labs-mcp\[team\]"):
        Ledger.for_backend(tmp_path, "http://x.invalid", "k", database_url="postgresql://u:secret@127.0.0.1:1/db")
