"""The ledger: what outlives the server process, per backend (API URL and key fingerprint).

It holds the cost guard's audit log (every spend decision and its outcome), the metric versions the server
replaced (so a change can be rolled back), and the review sessions of the labs loop. It lives in one SQLite
file per backend in the data directory (one person), or, when `CEKURA_LABS_DATABASE_URL` is set, in one
PostgreSQL schema per backend shared by every process and reviewer of a team (see `server/db.py` for the
choice of SQLAlchemy Core and how writers are serialised). The queries below are written once for both.

Every write commits at once (SQLite with `synchronous=FULL`): a write Cekura accepted is recorded before the
tool answers, so killing the server afterwards loses nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cekura_labs_mcp.server.db import (
    VERSION_TABLE,
    Database,
    PostgresLedger,
    database_error,
    drop_namespace,
    open_postgres,
    open_sqlite,
    postgres_url,
    private_dir,
    private_file,
)
from cekura_labs_mcp.server.db_schema import (
    MIGRATIONS,
    POSTGRES_MIGRATIONS,
    audit,
    backend,
    confirmation_tokens,
    improvements,
    loaded_toolsets,
    metadata,
    metric_versions,
    review_leases,
    review_plans,
    review_sessions,
    reviews,
    validations,
)
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.steps import Step
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["MIGRATIONS", "POSTGRES_MIGRATIONS", "PostgresLedger", "private_dir", "private_file"]

_OWNER: ContextVar[str] = ContextVar("cekura_labs_owner", default="")


def owner() -> str:
    """Who a request acts for: "" locally (stdio, one person), the reviewer (in remote mode, named from the
    bearer token) otherwise. Set once per request (`acting_for`), so services need not pass it along. Spends
    record it (the spend log shows who spent what); review sessions, confirmation tokens and regression checks
    are kept per owner."""
    return _OWNER.get()


@contextmanager
def acting_for(principal: str) -> Iterator[None]:
    reset = _OWNER.set(principal)
    try:
        yield
    finally:
        _OWNER.reset(reset)


@dataclass(frozen=True)
class Window:
    """What the guard allowed in its rolling window: calls and estimated credits."""

    calls: int = 0
    credits: float = 0.0


@dataclass(frozen=True)
class IssuedToken:
    fingerprint: str
    expires_at: float


# The time every process and host of a PostgreSQL ledger agrees on: its server's clock (at the statement, not the
# transaction's start, which may precede a wait for the writers' lock).
_DATABASE_NOW = text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")


def _now(db: Connection) -> float:
    """The ledger's clock: the database server's on PostgreSQL, where the hosts' own clocks may disagree (a host an
    hour ahead would read the others' spends as out of the window); this machine's on SQLite (one machine)."""
    if db.dialect.name == "postgresql":
        return float(db.execute(_DATABASE_NOW).scalar_one())
    return time.time()


class SpendBook:
    """The guard's view of the ledger inside its one exclusive write transaction (`Ledger.spend_transaction`)."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def now(self) -> float:
        return _now(self._db)

    def window(self, since: float) -> Window:
        return _window(self._db, since)

    def record(self, record: SpendRecord, at: float) -> int:
        return _insert_spend(self._db, record, at)

    def issue_token(self, digest: str, holder: str, fingerprint: str, expires_at: float) -> None:
        self._db.execute(delete(confirmation_tokens).where(confirmation_tokens.c.expires_at < expires_at - 86400))
        self._db.execute(_INSERT[confirmation_tokens], dict(digest=digest, owner=holder, fingerprint=fingerprint,
                                                            expires_at=expires_at))

    def take_token(self, digest: str, holder: str) -> IssuedToken | None:
        """The token, removed (single use); None if unknown or another client's."""
        row = self._db.execute(
            select(confirmation_tokens.c.fingerprint, confirmation_tokens.c.expires_at)
            .where(confirmation_tokens.c.digest == digest, confirmation_tokens.c.owner == holder)).first()
        if row is None:
            return None
        self._db.execute(delete(confirmation_tokens).where(confirmation_tokens.c.digest == digest))
        return IssuedToken(str(row[0]), float(row[1]))


def forget_ledger(path: Path) -> None:
    """Remove a closed SQLite ledger and its WAL files (only for a backend that itself forgets, the embedded
    sandbox)."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        path.with_name(name).unlink(missing_ok=True)


def _adopt(legacy: Path, path: Path) -> None:
    """Copy the single ledger of earlier versions (a consistent snapshot, through SQLite's backup) to this
    backend's file, and rename it so no other backend takes it over too."""
    private_dir(path.parent)
    private_file(path)
    source = sqlite3.connect(legacy)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    os.replace(legacy, legacy.with_name(f"{LEGACY_LEDGER}.moved-to-{path.stem}"))


@functools.cache
def latest_sqlite_schema() -> tuple[str, ...]:
    """The SQLite schema the migration chain ends in, as the statements that create it: the chain is applied once
    per process to an in-memory database, and its tables and indexes are read back (SQLite keeps each table's
    CREATE statement up to date with the columns added since). A new ledger runs these instead of the chain with
    its ALTERs and a version bump per step; the chain stays what upgrades an existing file."""
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for script in MIGRATIONS:
            scratch.executescript(script)
        rows = scratch.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                               "ORDER BY rowid").fetchall()
    finally:
        scratch.close()
    return tuple(str(row[0]) for row in rows)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, to run one by one inside the caller's transaction
    (`executescript` would commit it first)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


# Statements built once and executed with parameters: building one per call (and its cache key, column by column)
# cost more CPU than SQLite's own work for the statement.
_INSERT = {table: insert(table) for table in metadata.tables.values()}


@functools.cache
def _set_by_id(table: Table, columns: tuple[str, ...]) -> Update:
    """UPDATE `table` SET `columns` WHERE id = :row_id, built once per table and column set."""
    return update(table).where(table.c.id == bindparam("row_id")).values({c: bindparam(f"new_{c}") for c in columns})


def _update_row(db: Connection, table: Table, row_id: int, **changes: Any) -> None:
    db.execute(_set_by_id(table, tuple(changes)),
               {"row_id": row_id, **{f"new_{column}": value for column, value in changes.items()}})


_SESSION = select(review_sessions).where(review_sessions.c.id == bindparam("session_id"),
                                         review_sessions.c.owner == bindparam("owner"))

# Built once: the window is read on every spend and every estimate.
_WINDOW = (select(func.coalesce(func.sum(audit.c.call_count), 0), func.coalesce(func.sum(audit.c.credits_estimated), 0))
           .where(audit.c.decision == "allowed", audit.c.outcome != "rejected", audit.c.at >= bindparam("since")))


def _window(db: Connection, since: float) -> Window:
    """Calls and credits allowed since `since`, whatever became of them (a spend whose outcome is unknown may
    have landed, so it counts; one Cekura refused does not). Everyone's: the window is the organisation's."""
    row = db.execute(_WINDOW, {"since": since}).one()
    return Window(int(row[0]), round(float(row[1]), 4))


def _insert_spend(db: Connection, record: SpendRecord, at: float) -> int:
    return _new_id(db.execute(_INSERT[audit], dict(
        at=at, operation=record.operation, agent_id=record.agent_id, project_id=record.project_id,
        call_count=len(record.call_ids), call_ids=json.dumps(list(record.call_ids)),
        metric_ids=json.dumps(list(record.metric_ids)), credits_estimated=record.credits_estimated,
        decision=record.decision, confirmation=record.confirmation, outcome=record.outcome, detail=record.detail,
        owner=owner(), subject=record.subject)).inserted_primary_key)


def _new_id(key: Any) -> int:  # `inserted_primary_key`: a Row, or None
    return int(key[0]) if key is not None and key[0] is not None else 0


@dataclass(frozen=True)
class SpendRecord:
    operation: str
    agent_id: int | None
    project_id: int | None
    call_ids: Sequence[int]
    metric_ids: Sequence[int]
    credits_estimated: float
    decision: str
    confirmation: str
    outcome: str
    detail: str = ""
    subject: str = ""


@dataclass(frozen=True)
class RunClaim:
    audit_id: int
    progress_id: str | None
    claimed: bool


@dataclass(frozen=True)
class MetricVersion:
    id: int
    at: float
    metric_id: int
    reason: str
    previous: dict[str, Any]
    applied: dict[str, Any]


@dataclass(frozen=True)
class Session:
    id: int
    metric_id: int
    agent_id: int
    started_at: float
    auto_improve: bool
    feedback_threshold: int
    state: str


@dataclass(frozen=True)
class Review:
    id: int
    session_id: int
    call_id: int
    metric_id: int
    agreed: bool
    result_was: str | None
    expected: Any
    feedback: str
    vote_state: str
    lab_state: str
    test_set_id: int | None
    updated_at: float = 0.0


@dataclass(frozen=True)
class Improvement:
    id: int
    session_id: int
    progress_id: str
    test_set_ids: list[int]
    state: str
    proposal: dict[str, Any] | None


@dataclass(frozen=True)
class TeamVerdict:
    """One reviewer's sent verdict on a call of a metric (from any reviewer's session)."""

    review_id: int
    call_id: int
    reviewer: str
    expected: Any
    lab_state: str


@dataclass(frozen=True)
class Lease:
    call_id: int
    slot: int
    reviewer: str
    state: str
    expires_at: float


@dataclass(frozen=True)
class LabDecision:
    state: str  # 'send' | 'shared' | 'held'
    partner: str | None


def in_overlap(metric_id: int, call_id: int, overlap: float) -> bool:
    """Whether a call is in a metric's overlap sample (handed to two reviewers): a stable hash of (metric, call)
    under the share, so every process agrees without asking anyone."""
    if overlap <= 0:
        return False
    digest = hashlib.sha256(f"cekura-labs overlap {metric_id}:{call_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < overlap


def _free_slot(held: Sequence[Row[Any]]) -> int:
    used = {int(row.slot) for row in held}
    return next(slot for slot in range(len(used) + 1) if slot not in used)


LEDGERS = "ledgers"
LEGACY_LEDGER = "ledger.sqlite3"  # one ledger for every backend, before ledgers were kept per backend


def key_fingerprint(api_key: str | None) -> str:
    """Names a key without holding it: the first 12 hex digits of its SHA-256 ("none" without a key)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else "none"


def backend_name(api_url: str, api_key: str | None) -> str:
    """16 hex digits naming a backend (API URL and key fingerprint, never the key): its SQLite file's name, and
    its schema's in PostgreSQL."""
    backend_id = f"{api_url.strip().rstrip('/').lower()}\n{key_fingerprint(api_key)}"
    return hashlib.sha256(backend_id.encode()).hexdigest()[:16]


def ledger_file(data_dir: Path, api_url: str, api_key: str | None) -> Path:
    """One ledger per backend: per API URL and key (through its fingerprint, never the key itself), so
    sandbox spends never count in the real window, the spend log never mixes them, and sessions never
    resume on another backend."""
    return data_dir / LEDGERS / f"{backend_name(api_url, api_key)}.sqlite3"


def postgres_ledger(database_url: str, api_url: str, api_key: str | None) -> PostgresLedger:
    """The same per-backend ledger in PostgreSQL: a schema of its own in the team's database."""
    return PostgresLedger(postgres_url(database_url), f"ledger_{backend_name(api_url, api_key)}")


def _review(row: Any) -> Review:  # a Row of _REVIEW_COLUMNS (unpacked: attribute access costs more per row)
    (id_, session_id, call_id, metric_id, agreed, result_was, expected, feedback, vote_state, lab_state,
     test_set_id, updated_at) = row
    return Review(int(id_), int(session_id), int(call_id), int(metric_id), bool(agreed), result_was,
                  json.loads(expected), str(feedback), str(vote_state), str(lab_state),
                  None if test_set_id is None else int(test_set_id), float(updated_at))


_REVIEW_COLUMNS = (reviews.c.id, reviews.c.session_id, reviews.c.call_id, reviews.c.metric_id, reviews.c.agreed,
                   reviews.c.result_was, reviews.c.expected, reviews.c.feedback, reviews.c.vote_state,
                   reviews.c.lab_state, reviews.c.test_set_id, reviews.c.updated_at)


_SESSION_REVIEWS = (select(*_REVIEW_COLUMNS).where(reviews.c.session_id == bindparam("session_id"))
                    .order_by(reviews.c.id))

# The reads of every review step, built once as the ones above (building a query and its cache key cost more CPU
# than SQLite's work for it): the open session of a metric and agent, a session's latest improvement, a metric's
# overlap, its leased calls and its reviewers.
_OPEN_SESSION = (select(review_sessions.c.id)
                 .where(review_sessions.c.metric_id == bindparam("metric_id"),
                        review_sessions.c.agent_id == bindparam("agent_id"),
                        review_sessions.c.state != "closed", review_sessions.c.owner == bindparam("owner"))
                 .order_by(review_sessions.c.id.desc()).limit(1))
_LATEST_IMPROVEMENT = (select(improvements).where(improvements.c.session_id == bindparam("session_id"))
                       .order_by(improvements.c.id.desc()).limit(1))
_OVERLAP = select(review_plans.c.overlap).where(review_plans.c.metric_id == bindparam("metric_id"))
_LEASED_CALLS = select(review_leases.c.call_id).distinct().where(review_leases.c.metric_id == bindparam("metric_id"))
_REVIEWERS = select(review_sessions.c.owner).distinct().where(review_sessions.c.metric_id == bindparam("metric_id"))
_AGENT_REVIEWERS = _REVIEWERS.where(review_sessions.c.agent_id == bindparam("agent_id"))


class Ledger:
    """`location`: a SQLite file, or a `PostgresLedger` (a database URL and this backend's schema)."""

    def __init__(self, location: Path | PostgresLedger, *, api_url: str | None = None,
                 api_key: str | None = None) -> None:
        self.location = location
        self._db: Database = open_postgres(location) if isinstance(location, PostgresLedger) else open_sqlite(location)
        try:
            # One transaction: a new ledger is created, and says which backend it keeps, with one commit.
            with self._db.write() as db:
                self._migrate(db)
                self.backend = self._backend(db, api_url, api_key)
        except SQLAlchemyError as exc:
            self._db.close()
            raise database_error(self._db.where, exc) from None
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def for_backend(cls, data_dir: Path, api_url: str, api_key: str | None, *,
                    database_url: str | None = None) -> Ledger:
        """The ledger of this backend: in PostgreSQL when a database URL is given (a team's), otherwise in
        `data_dir` (created 0700), taking over a pre-per-backend ledger the first time a real backend opens one."""
        if database_url:
            return cls(postgres_ledger(database_url, api_url, api_key), api_url=api_url, api_key=api_key)
        try:
            private_dir(data_dir)
        except OSError as exc:
            raise LabsError(f"Cannot create the data folder {data_dir}: {exc}.",
                            "Set CEKURA_LABS_DATA_DIR to a writable folder.") from None
        path = ledger_file(data_dir, api_url, api_key)
        legacy = data_dir / LEGACY_LEDGER
        if api_key and not path.exists() and legacy.exists():
            _adopt(legacy, path)
        return cls(path, api_url=api_url, api_key=api_key)

    @property
    def path(self) -> Path:
        """The SQLite file (a ledger in PostgreSQL has none)."""
        if isinstance(self.location, PostgresLedger):
            raise LabsError("This ledger lives in PostgreSQL, not in a file.")
        return self.location

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def where(self) -> str:
        """Where the ledger lives, fit to show: the file, or the database URL (password masked) and schema."""
        if isinstance(self.location, PostgresLedger):
            return f"{self.location.shown} (schema {self.location.namespace})"
        return str(self.location)

    def _backend(self, db: Connection, api_url: str | None, api_key: str | None) -> str:
        """Which backend this ledger keeps (URL and key fingerprint), written once, shown in the spend log."""
        row = db.execute(select(backend.c.api_url, backend.c.key_fingerprint)).first()
        if row is None and api_url is not None:
            db.execute(_INSERT[backend], dict(api_url=api_url, key_fingerprint=key_fingerprint(api_key)))
            return f"{api_url} (key {key_fingerprint(api_key)})"
        return f"{row[0]} (key {row[1]})" if row is not None else ""

    def close(self) -> None:
        self._db.close()

    def forget(self) -> None:
        """Close the ledger and remove everything in it (only for a backend that itself forgets, the embedded
        sandbox): its file, or its schema."""
        if isinstance(self.location, PostgresLedger):
            drop_namespace(self._db)
            self._db.close()
        else:
            self._db.close()
            forget_ledger(self.location)

    @property
    def schema_version(self) -> int:
        with self._db.read() as db:
            return self._version(db)

    def _version(self, db: Connection) -> int:
        if self._db.dialect == "sqlite":
            return int(db.exec_driver_sql("PRAGMA user_version").scalar_one())
        db.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
        return int(db.exec_driver_sql(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}").scalar_one())

    def _set_version(self, db: Connection, version: int) -> None:
        if self._db.dialect == "sqlite":
            db.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
        else:
            db.exec_driver_sql(f"DELETE FROM {VERSION_TABLE}")
            db.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({int(version)})")

    def _migrate(self, db: Connection) -> None:
        """Bring the schema to the latest version. `db` is the exclusive transaction: two processes opening a
        new ledger at once (two sessions sharing a data dir, or a team's processes starting together) must not
        both apply the same migration."""
        chain = MIGRATIONS if self._db.dialect == "sqlite" else POSTGRES_MIGRATIONS
        current = self._version(db)
        if current > len(chain):
            raise LabsError(
                f"The ledger at {self._db.where} was written by a newer version (schema {current}).",
                "Upgrade cekura-labs-mcp, or point CEKURA_LABS_DATA_DIR elsewhere.",
            )
        if current == 0 and self._db.dialect == "sqlite":
            # A new file: the tables the whole chain ends in, created directly (an earlier release's file is at
            # version 1 or more, and upgrades through the chain below).
            for statement in latest_sqlite_schema():
                db.exec_driver_sql(statement)
            self._set_version(db, len(chain))
            return
        for version in range(current, len(chain)):
            for statement in _statements(chain[version]):
                db.exec_driver_sql(statement)
            self._set_version(db, version + 1)

    # ---- the guard's audit log -----------------------------------------------------------

    @contextmanager
    def spend_transaction(self) -> Iterator[SpendBook]:
        """One exclusive transaction (SQLite: `BEGIN IMMEDIATE`, the database file's write lock; PostgreSQL: the
        ledger's advisory lock): taken before the window is read, kept until the decision is written, across
        processes and hosts."""
        with self._db.write() as db:
            yield SpendBook(db)

    def record_spend(self, record: SpendRecord, at: float | None = None) -> int:
        with self._db.write() as db:
            return _insert_spend(db, record, time.time() if at is None else at)

    def set_spend_outcome(self, audit_id: int, outcome: str, detail: str = "") -> None:
        with self._db.write() as db:
            _update_row(db, audit, audit_id, outcome=outcome, detail=detail)

    def now(self) -> float:
        """The ledger's clock (see `_now`): what the guard's window and tokens are timed by."""
        if self._db.dialect == "sqlite":
            return time.time()
        with self._db.read() as db:
            return _now(db)

    def window_since(self, since: float) -> Window:
        with self._db.read() as db:
            return _window(db, since)

    def claim_run(self, subject: str, metric_id: int, test_set_ids: Sequence[int], *, now: float | None,
                  in_flight_seconds: float) -> RunClaim:
        """The auto-improve run logged for `subject` that may still be running, or, when there is none, a new
        log row (outcome `pending`) that claims the start: looked up and written in one transaction. `now` None:
        the ledger's clock (a host whose clock runs ahead must not take another's start in flight for a lost one)."""
        with self._db.write() as db:
            now = _now(db) if now is None else now
            row = db.execute(
                select(audit.c.id, audit.c.outcome, audit.c.detail, audit.c.at)
                .where(audit.c.operation == "process_feedbacks", audit.c.subject == subject,
                       audit.c.outcome.in_(("pending", "running")))
                .order_by(audit.c.id.desc()).limit(1)).first()
            if row is not None and row[1] == "running" and row[2]:
                return RunClaim(int(row[0]), str(row[2]), claimed=False)
            if row is not None and float(row[3]) > now - in_flight_seconds:
                return RunClaim(int(row[0]), None, claimed=False)
            if row is not None:
                db.execute(update(audit).where(audit.c.id == row[0])
                           .values(outcome="unknown", detail="the start was never answered"))
            audit_id = _insert_spend(db, SpendRecord(
                operation="process_feedbacks", agent_id=None, project_id=None, call_ids=(),
                metric_ids=[metric_id], credits_estimated=0.0, decision="allowed", confirmation="none",
                outcome="pending", detail=f"Lab test sets: {list(test_set_ids) or 'all'}", subject=subject), now)
            return RunClaim(audit_id, None, claimed=True)

    def audit_entries(self, limit: int = 100, *, everyone: bool = False) -> list[dict[str, Any]]:
        """The newest log rows, of this owner (`everyone`: the whole organisation's, each naming its owner)."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if not everyone:
            query = query.where(audit.c.owner == owner())
        with self._db.read() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    # ---- metric versions -----------------------------------------------------------------

    def record_metric_version(
        self, metric_id: int, reason: str, previous: dict[str, Any], applied: dict[str, Any]
    ) -> int:
        with self._db.write() as db:
            return _new_id(db.execute(_INSERT[metric_versions], dict(
                at=time.time(), metric_id=metric_id, reason=reason, previous=json.dumps(previous),
                applied=json.dumps(applied))).inserted_primary_key)

    def forget_metric_version(self, version_id: int) -> None:
        """Only for a change Cekura refused outright, so it never became a version to go back from."""
        with self._db.write() as db:
            db.execute(delete(metric_versions).where(metric_versions.c.id == version_id))

    def metric_versions(self, metric_id: int) -> list[MetricVersion]:
        with self._db.read() as db:
            rows = db.execute(select(metric_versions).where(metric_versions.c.metric_id == metric_id)
                              .order_by(metric_versions.c.id.desc())).all()
        return [MetricVersion(int(r.id), float(r.at), int(r.metric_id), str(r.reason), json.loads(r.previous),
                              json.loads(r.applied)) for r in rows]

    # ---- review sessions (the labs loop) --------------------------------------------------
    # A review is written as intent (vote_state "sending") before the vote is sent and updated as soon
    # as Cekura answers, so after a crash the ledger says exactly which writes may need checking.

    def open_session(self, metric_id: int, agent_id: int, feedback_threshold: int) -> Session:
        params = {"metric_id": metric_id, "agent_id": agent_id, "owner": owner()}
        # Nearly every call finds its session: a read, without the writers' lock (a team's processes all queue on
        # it); only a new session takes the lock, and looks again under it.
        with self._db.read() as db:
            found = db.execute(_OPEN_SESSION, params).scalar()
        if found is None:
            with self._db.write() as db:
                found = db.execute(_OPEN_SESSION, params).scalar()
                if found is None:
                    found = _new_id(db.execute(_INSERT[review_sessions], dict(
                        metric_id=metric_id, agent_id=agent_id, started_at=time.time(),
                        feedback_threshold=feedback_threshold, owner=owner())).inserted_primary_key)
        return self.session(int(found))

    def session(self, session_id: int) -> Session:
        with self._db.read() as db:
            row = db.execute(_SESSION, {"session_id": session_id, "owner": owner()}).first()
        if row is None:
            raise LabsError(f"Review session {session_id} does not exist.", f"Start one with {Step.OPEN_REVIEW}.")
        return Session(int(row.id), int(row.metric_id), int(row.agent_id), float(row.started_at),
                       bool(row.auto_improve), int(row.feedback_threshold), str(row.state))

    def update_session(self, session_id: int, *, auto_improve: bool | None = None, state: str | None = None) -> None:
        changes: dict[str, Any] = {}
        if auto_improve is not None:
            changes["auto_improve"] = int(auto_improve)
        if state is not None:
            changes["state"] = state
        if changes:
            with self._db.write() as db:
                _update_row(db, review_sessions, session_id, **changes)

    def begin_review(self, session_id: int, *, call_id: int, metric_id: int, agreed: bool, result_was: str | None,
                     expected: Any, feedback: str) -> int:
        now = time.time()
        with self._db.write() as db:
            return _new_id(db.execute(_INSERT[reviews], dict(
                session_id=session_id, call_id=call_id, metric_id=metric_id, agreed=int(agreed),
                result_was=result_was, expected=json.dumps(expected), feedback=feedback, vote_state="sending",
                lab_state="waiting", created_at=now, updated_at=now)).inserted_primary_key)

    def skip_review(self, session_id: int, *, call_id: int, metric_id: int, result_was: str | None,
                    note: str) -> int:
        """A call the person could not judge: kept so the queue does not show it again, never sent (its vote and
        Lab states are 'skipped' from the start, so nothing reconciles or resends it)."""
        now = time.time()
        with self._db.write() as db:
            return _new_id(db.execute(_INSERT[reviews], dict(
                session_id=session_id, call_id=call_id, metric_id=metric_id, agreed=0, result_was=result_was,
                expected="null", feedback=note, vote_state="skipped", lab_state="skipped", created_at=now,
                updated_at=now)).inserted_primary_key)

    def forget_skip(self, session_id: int, call_id: int) -> None:
        """The person judges a call they skipped earlier: the skip gives way to the verdict."""
        with self._db.write() as db:
            db.execute(delete(reviews).where(reviews.c.session_id == session_id, reviews.c.call_id == call_id,
                                             reviews.c.vote_state == "skipped"))

    def mark_vote(self, review_id: int, state: str, answer: str = "") -> None:
        with self._db.write() as db:
            _update_row(db, reviews, review_id, vote_state=state, vote_answer=answer, updated_at=time.time())

    def mark_lab(self, review_id: int, state: str, test_set_id: int | None = None, answer: str = "") -> None:
        changes: dict[str, Any] = {"lab_state": state, "lab_answer": answer, "updated_at": time.time()}
        if test_set_id is not None:
            changes["test_set_id"] = test_set_id
        with self._db.write() as db:
            _update_row(db, reviews, review_id, **changes)

    def forget_review(self, review_id: int) -> None:
        """Only for a review whose vote provably never reached Cekura (refused before it landed)."""
        with self._db.write() as db:
            db.execute(delete(reviews).where(reviews.c.id == review_id,
                                             reviews.c.vote_state.in_(("sending", "rejected"))))

    def reviews(self, session_id: int) -> list[Review]:
        with self._db.read() as db:
            rows = db.execute(_SESSION_REVIEWS, {"session_id": session_id}).all()
        return [_review(r) for r in rows]

    def metric_reviews(self, metric_id: int, *, agent_id: int | None = None, since: float = 0.0) -> list[Review]:
        """Every review of a metric across its sessions (of one agent, if given), made after `since`."""
        conditions: list[ColumnElement[bool]] = [
            reviews.c.metric_id == metric_id, reviews.c.created_at > since, review_sessions.c.owner == owner()]
        if agent_id is not None:
            conditions.append(review_sessions.c.agent_id == agent_id)
        query = (select(*_REVIEW_COLUMNS)
                 .select_from(reviews.join(review_sessions, review_sessions.c.id == reviews.c.session_id))
                 .where(and_(*conditions)).order_by(reviews.c.id))
        with self._db.read() as db:
            rows = db.execute(query).all()
        return [_review(r) for r in rows]

    def add_improvement(self, session_id: int, progress_id: str, test_set_ids: Sequence[int]) -> int:
        with self._db.write() as db:
            return _new_id(db.execute(_INSERT[improvements], dict(
                session_id=session_id, progress_id=progress_id, test_set_ids=json.dumps(list(test_set_ids)),
                state="running", created_at=time.time())).inserted_primary_key)

    def set_improvement_progress(self, improvement_id: int, progress_id: str) -> None:
        with self._db.write() as db:
            _update_row(db, improvements, improvement_id, progress_id=progress_id)

    def forget_improvement(self, improvement_id: int) -> None:
        """Only for a start that provably never reached Cekura (refused before it landed)."""
        with self._db.write() as db:
            db.execute(delete(improvements).where(improvements.c.id == improvement_id,
                                                  improvements.c.progress_id == ""))

    def finish_improvement(self, improvement_id: int, state: str, proposal: dict[str, Any] | None) -> None:
        with self._db.write() as db:
            _update_row(db, improvements, improvement_id, state=state,
                        proposal=None if proposal is None else json.dumps(proposal))

    def record_proposal(self, progress_id: str, state: str, proposal: dict[str, Any]) -> None:
        """A finished auto-improve run of a review session, however its result was fetched."""
        with self._db.write() as db:
            db.execute(update(improvements)
                       .where(improvements.c.progress_id == progress_id, improvements.c.progress_id != "")
                       .values(state=state, proposal=json.dumps(proposal)))
            # ... and its start in the spend log is no longer a running one.
            db.execute(update(audit).where(audit.c.operation == "process_feedbacks", audit.c.outcome == "running",
                                           audit.c.detail == progress_id).values(outcome="finished"))

    def latest_improvement(self, session_id: int) -> Improvement | None:
        with self._db.read() as db:
            row = db.execute(_LATEST_IMPROVEMENT, {"session_id": session_id}).first()
        if row is None:
            return None
        return Improvement(int(row.id), int(row.session_id), str(row.progress_id), json.loads(row.test_set_ids),
                           str(row.state), None if row.proposal is None else json.loads(row.proposal))

    def add_validation(self, session_id: int, report: dict[str, Any]) -> int:
        with self._db.write() as db:
            return _new_id(db.execute(_INSERT[validations], dict(
                session_id=session_id, created_at=time.time(), report=json.dumps(report))).inserted_primary_key)

    # A regression check is written before it spends and updated as its results arrive, so a check
    # interrupted while Cekura evaluates is resumed from here instead of being paid for twice.

    def update_validation(self, validation_id: int, report: dict[str, Any]) -> None:
        with self._db.write() as db:
            _update_row(db, validations, validation_id, report=json.dumps(report))

    def forget_validation(self, validation_id: int) -> None:
        """Only for a check whose spend provably never reached Cekura (refused, or not confirmed)."""
        with self._db.write() as db:
            db.execute(delete(validations).where(validations.c.id == validation_id))

    def validation(self, validation_id: int) -> tuple[int, dict[str, Any]] | None:
        """(session id, report) of one check."""
        with self._db.read() as db:
            row = db.execute(
                select(validations.c.session_id, validations.c.report)
                .select_from(validations.join(review_sessions, review_sessions.c.id == validations.c.session_id))
                .where(validations.c.id == validation_id, review_sessions.c.owner == owner())).first()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def validations(self, session_id: int) -> list[tuple[int, dict[str, Any]]]:
        """(id, report) of every check of a session, oldest first."""
        with self._db.read() as db:
            rows = db.execute(select(validations.c.id, validations.c.report)
                              .where(validations.c.session_id == session_id).order_by(validations.c.id)).all()
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    # ---- team review: the overlap plan and the call leases (services/team.py) ------------------
    # Each decision is taken in the exclusive write transaction, so two reviewers (any process, any host)
    # never both get one call outside the overlap sample, and one verdict of a shared pair sends its Lab entry.

    def set_overlap(self, metric_id: int, agent_id: int, overlap: float) -> None:
        now = time.time()
        with self._db.write() as db:
            changed = db.execute(update(review_plans).where(review_plans.c.metric_id == metric_id)
                                 .values(agent_id=agent_id, overlap=overlap, set_by=owner(), set_at=now))
            if changed.rowcount == 0:
                db.execute(_INSERT[review_plans], dict(metric_id=metric_id, agent_id=agent_id, overlap=overlap,
                                                       set_by=owner(), set_at=now))

    def overlap_of(self, metric_id: int) -> float:
        with self._db.read() as db:
            found = db.execute(_OVERLAP, {"metric_id": metric_id}).scalar()
        return float(found or 0.0)

    def lease_call(self, metric_id: int, reviewer: str, candidates: Sequence[int], *, overlap: float,
                   now: float | None = None, ttl: float) -> int | None:
        """The call to hand this reviewer: the first of `candidates` (best first) they already hold, else the first
        with a free slot (one per call; two in the overlap sample, never both to one reviewer), taking an expired
        lease over. None when every candidate is in other hands. `now` None: the ledger's clock (the database
        server's on PostgreSQL: a host whose clock runs ahead would take every other host's leases for expired)."""
        if not candidates:
            return None
        wanted = list(dict.fromkeys(candidates))
        with self._db.write() as db:
            now = _now(db) if now is None else now
            rows = db.execute(select(review_leases).where(review_leases.c.metric_id == metric_id,
                                                          review_leases.c.call_id.in_(wanted))).all()
            taken: dict[int, list[Row[Any]]] = {}
            for row in rows:
                taken.setdefault(int(row.call_id), []).append(row)
            mine = next((call_id for call_id in wanted for row in taken.get(call_id, [])
                         if row.reviewer == reviewer and row.state == "leased"), None)
            if mine is not None:
                db.execute(update(review_leases).where(review_leases.c.metric_id == metric_id,
                                                       review_leases.c.call_id == mine,
                                                       review_leases.c.reviewer == reviewer)
                           .values(expires_at=now + ttl, updated_at=now))
                return mine
            for call_id in wanted:
                held = taken.get(call_id, [])
                if any(row.reviewer == reviewer for row in held):
                    continue
                live = [row for row in held if row.state == "done" or float(row.expires_at) > now]
                if len(live) >= (2 if in_overlap(metric_id, call_id, overlap) else 1):
                    continue
                stale = next((row for row in held if row.state == "leased" and float(row.expires_at) <= now), None)
                if stale is not None:
                    db.execute(update(review_leases).where(review_leases.c.metric_id == metric_id,
                                                           review_leases.c.call_id == call_id,
                                                           review_leases.c.slot == stale.slot)
                               .values(reviewer=reviewer, state="leased", expires_at=now + ttl, updated_at=now))
                else:
                    db.execute(_INSERT[review_leases], dict(
                        metric_id=metric_id, call_id=call_id, slot=_free_slot(held), reviewer=reviewer,
                        state="leased", expires_at=now + ttl, updated_at=now))
                return call_id
        return None

    def release_lease(self, metric_id: int, call_id: int, reviewer: str) -> None:
        """A skipped call goes back to the team."""
        with self._db.write() as db:
            db.execute(delete(review_leases).where(review_leases.c.metric_id == metric_id,
                                                   review_leases.c.call_id == call_id,
                                                   review_leases.c.reviewer == reviewer,
                                                   review_leases.c.state == "leased"))

    def finish_lease(self, metric_id: int, call_id: int, reviewer: str, *, now: float | None = None) -> None:
        """A verdict makes the reviewer's hold on the call permanent (recorded even on a call the queue never
        handed them, so the team's queue sees it judged). `now` None: the ledger's clock."""
        with self._db.write() as db:
            now = _now(db) if now is None else now
            changed = db.execute(update(review_leases).where(review_leases.c.metric_id == metric_id,
                                                             review_leases.c.call_id == call_id,
                                                             review_leases.c.reviewer == reviewer)
                                 .values(state="done", updated_at=now))
            if changed.rowcount == 0:
                held = db.execute(select(review_leases).where(review_leases.c.metric_id == metric_id,
                                                              review_leases.c.call_id == call_id)).all()
                db.execute(_INSERT[review_leases], dict(metric_id=metric_id, call_id=call_id, slot=_free_slot(held),
                                                        reviewer=reviewer, state="done", expires_at=now,
                                                        updated_at=now))

    def leased_calls(self, metric_id: int) -> set[int]:
        with self._db.read() as db:
            return {int(c) for c in db.execute(_LEASED_CALLS, {"metric_id": metric_id}).scalars()}

    def leases_of(self, metric_id: int) -> list[Lease]:
        """Every lease on a metric (the load test checks them)."""
        with self._db.read() as db:
            rows = db.execute(select(review_leases).where(review_leases.c.metric_id == metric_id)
                              .order_by(review_leases.c.call_id, review_leases.c.slot)).all()
        return [Lease(int(r.call_id), int(r.slot), str(r.reviewer), str(r.state), float(r.expires_at)) for r in rows]

    def reviewers_of(self, metric_id: int, agent_id: int | None) -> set[str]:
        """Everyone with a review session on this metric (of one agent, if given)."""
        with self._db.read() as db:
            found = db.execute(_REVIEWERS, {"metric_id": metric_id}) if agent_id is None else \
                db.execute(_AGENT_REVIEWERS, {"metric_id": metric_id, "agent_id": agent_id})
            return {str(o) for o in found.scalars()}

    def team_verdicts(self, metric_id: int, agent_id: int | None) -> list[TeamVerdict]:
        """Every reviewer's sent verdicts on the metric (all owners: the team's agreement is shared)."""
        query = (select(reviews.c.id, reviews.c.call_id, review_sessions.c.owner, reviews.c.expected,
                        reviews.c.lab_state)
                 .select_from(reviews.join(review_sessions, review_sessions.c.id == reviews.c.session_id))
                 .where(reviews.c.metric_id == metric_id, reviews.c.vote_state == "sent").order_by(reviews.c.id))
        if agent_id is not None:
            query = query.where(review_sessions.c.agent_id == agent_id)
        with self._db.read() as db:
            rows = db.execute(query).all()
        return [TeamVerdict(int(r[0]), int(r[1]), str(r[2]), json.loads(r[3]), str(r[4])) for r in rows]

    def settle_lab(self, review_id: int, agrees: Callable[[Any, Any], bool], *, alone: bool = False) -> LabDecision:
        """Whether this verdict on a call of the overlap sample sends its Lab entry now: 'send' when the other
        reviewer's verdict is in and agrees (theirs becomes 'shared': one entry for the pair), 'shared' when theirs
        was already sent, 'held' while the other verdict is missing or disagrees. `alone`: a call outside the
        overlap sample, whose first verdict sends at once (partner None); a second person's verdict on it (their
        lease expired and the call was handed on, or they recorded it by id) is settled like a pair, so two
        people's contradicting verdicts never both reach the optimizer."""
        with self._db.write() as db:
            me = db.execute(select(reviews.c.metric_id, reviews.c.call_id, reviews.c.expected, reviews.c.lab_state,
                                   review_sessions.c.owner, review_sessions.c.agent_id)
                            .select_from(reviews.join(review_sessions, review_sessions.c.id == reviews.c.session_id))
                            .where(reviews.c.id == review_id)).first()
            if me is None:
                return LabDecision("held", None)
            partner = db.execute(
                select(reviews.c.id, review_sessions.c.owner, reviews.c.expected, reviews.c.lab_state,
                       reviews.c.test_set_id)
                .select_from(reviews.join(review_sessions, review_sessions.c.id == reviews.c.session_id))
                .where(reviews.c.metric_id == me.metric_id, reviews.c.call_id == me.call_id,
                       review_sessions.c.agent_id == me.agent_id, review_sessions.c.owner != me.owner,
                       reviews.c.vote_state == "sent").order_by(reviews.c.id).limit(1)).first()
            name = None if partner is None else str(partner.owner)
            if me.lab_state == "shared":
                return LabDecision("shared", name)
            if partner is None and alone:
                return LabDecision("send", None)
            now = time.time()
            if partner is None or not agrees(json.loads(me.expected), json.loads(partner.expected)):
                db.execute(update(reviews).where(reviews.c.id == review_id).values(lab_state="held", updated_at=now))
                return LabDecision("held", name)
            if partner.lab_state in ("added", "sending", "unknown"):
                db.execute(update(reviews).where(reviews.c.id == review_id)
                           .values(lab_state="shared", test_set_id=partner.test_set_id, updated_at=now))
                return LabDecision("shared", name)
            # The partner's verdict waits (held) or already counts on this one ('shared': this verdict claimed the
            # pair before, and its send failed or was interrupted): this verdict sends the pair's one entry.
            db.execute(update(reviews).where(reviews.c.id == partner.id).values(lab_state="shared", updated_at=now))
            db.execute(update(reviews).where(reviews.c.id == review_id).values(lab_state="waiting", updated_at=now))
            return LabDecision("send", name)

    def share_lab(self, review_id: int, test_set_id: int) -> None:
        """The Lab entry of a shared pair was added: the other verdict of the pair names it too."""
        with self._db.write() as db:
            me = db.execute(select(reviews.c.metric_id, reviews.c.call_id).where(reviews.c.id == review_id)).first()
            if me is not None:
                db.execute(update(reviews).where(reviews.c.metric_id == me.metric_id, reviews.c.call_id == me.call_id,
                                                 reviews.c.lab_state == "shared", reviews.c.test_set_id.is_(None))
                           .values(test_set_id=test_set_id))

    def revise_review(self, review_id: int, *, agreed: bool, result_was: str | None, expected: Any,
                      feedback: str) -> None:
        """A held verdict on a shared call, given again (the two reviewers settling): sent again, settled again."""
        with self._db.write() as db:
            db.execute(update(reviews).where(reviews.c.id == review_id).values(
                agreed=int(agreed), result_was=result_was, expected=json.dumps(expected), feedback=feedback,
                vote_state="sending", lab_state="waiting", updated_at=time.time()))

    # ---- toolsets a remote reviewer loaded (tools/toolsets.py) -------------------------------------

    def toolsets_of(self, holder: str) -> set[str]:
        with self._db.read() as db:
            return {str(n) for n in db.execute(select(loaded_toolsets.c.name)
                                               .where(loaded_toolsets.c.owner == holder)).scalars()}

    def add_toolset(self, holder: str, name: str) -> bool:
        """False when `holder` had it loaded already."""
        with self._db.write() as db:
            if db.execute(select(loaded_toolsets.c.name).where(loaded_toolsets.c.owner == holder,
                                                               loaded_toolsets.c.name == name)).first():
                return False
            db.execute(insert(loaded_toolsets).values(owner=holder, name=name))
            return True
