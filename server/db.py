"""Where the ledger lives and how a transaction on it is taken: one SQLite file per backend (the default, for
one person on one machine), or one PostgreSQL schema per backend when `CEKURA_LABS_DATABASE_URL` is set (a
team: several reviewers and several server processes on one ledger).

Why SQLAlchemy Core, synchronous:
- One code path for the ledger's behaviour: its tables are declared once (`server/ledger_schema.py`) and
  every query is written once in Core and compiled for either database. Only the DDL of the migrations and
  the lock that serialises writers differ per database, and both live here or next to the tables.
- Core, not the ORM: the ledger is a handful of tables read and written in short, explicit transactions;
  an identity map, unit of work and lazy loading would hide exactly the transaction boundaries the cost
  guard depends on.
- Synchronous: the services call the ledger synchronously between their awaits, and no ledger transaction
  waits on Cekura (network calls happen outside them), so each call holds the event loop for one short
  transaction (well under a millisecond on SQLite, a few local round trips on PostgreSQL). An async driver
  would turn every service method that touches the ledger into a coroutine for no gain in isolation.
- psycopg 3 (`psycopg[binary]`): SQLAlchemy's maintained PostgreSQL driver, with wheels that need no libpq.

Writers are serialised per ledger, as SQLite's `BEGIN IMMEDIATE` always made them: on SQLite the database
file's write lock, on PostgreSQL `pg_advisory_xact_lock` on a key derived from the ledger's schema, taken as
the first statement of the transaction and released by its commit or rollback. Both hold across processes
(and PostgreSQL's across hosts), so the cost guard's window read and spend write, the redemption of a
confirmation token, the auto-improve claim and the call leases are each decided by one writer at a time.
Reads take no lock.

The database URL holds a password: it is registered as a secret (scrubbed from every log line and error),
shown only with the password masked, and never written anywhere.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.logs import register_secret, scrub
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import Dialect as SQLDialect
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.util import LRUCache

Dialect = Literal["sqlite", "postgresql"]
DATABASE_URL_VARIABLE = "CEKURA_LABS_DATABASE_URL"
# Schema, and version table, of a ledger on PostgreSQL; SQLite keeps its version in `PRAGMA user_version`.
VERSION_TABLE = "ledger_schema_version"
_EXCLUSIVE = "cekura_labs_exclusive"


def private_dir(path: Path) -> None:
    """Create `path` for this user only (0700), tightening it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """Create `path` readable and writable by this user only (0600) before SQLite opens it; SQLite gives
    its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class PostgresLedger:
    """A ledger in a PostgreSQL database: the URL (it may hold a password: never shown, see `shown`) and the
    schema this backend's tables live in."""

    url: URL = field(repr=False)
    namespace: str

    @property
    def shown(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.shown!r}, namespace={self.namespace!r})"


def postgres_url(raw: str) -> URL:
    """The SQLAlchemy URL (psycopg 3 driver) of a `postgresql://` or `postgres://` URL, or one clear error
    that never repeats the URL (it may hold a password)."""
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        url = None
    if url is None or url.get_backend_name() not in ("postgresql", "postgres"):
        raise LabsError(f"{DATABASE_URL_VARIABLE} is not a PostgreSQL URL.",
                        "Set it to postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it to keep the "
                        "ledger in a local SQLite file.")
    if "password" in url.query:
        # libpq also takes the password as a query parameter, which the masked rendering would show as it is:
        # moved to where the URL keeps its password, it is masked and scrubbed like one given there.
        given = url.query["password"]
        url = url.difference_update_query(["password"]).set(
            password=given if isinstance(given, str) else given[-1])
    if url.password is not None:
        register_secret(str(url.password))
    return url.set(drivername="postgresql+psycopg")


def lock_key(namespace: str) -> int:
    """The advisory lock (a signed 64-bit key) that serialises the writers of one ledger."""
    digest = hashlib.sha256(f"cekura-labs-mcp ledger {namespace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Database:
    """One ledger's engine: `write()` is the exclusive transaction, `read()` a plain one."""

    def __init__(self, engine: Engine, dialect: Dialect, where: str, namespace: str = "") -> None:
        self.engine = engine
        self.dialect: Dialect = dialect
        self.where = where
        self.namespace = namespace
        self._lock_key = lock_key(namespace) if dialect == "postgresql" else 0

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction no other writer of this ledger (any process, any host) runs beside: it commits when
        the block ends and rolls back if it raises."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_EXCLUSIVE: True})
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._lock_key})
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def _across_engines(key: Any) -> Any:
    """A compiled-statement cache key with its dialect instance replaced by what compiling depends on."""
    if isinstance(key, tuple) and key and isinstance(key[0], SQLDialect):
        dialect = key[0]
        return ((type(dialect), dialect.paramstyle, dialect.server_version_info), *key[1:])
    return key


class SharedStatements(MutableMapping[Any, Any]):
    """SQLAlchemy's cache of compiled statements, shared by every SQLite ledger of the process. SQLAlchemy keys a
    compiled statement by the dialect *instance*, so each new engine (one per ledger: per backend, per server, per
    test) compiled every statement again, about 1 ms of CPU each, 17 ms for what one review does on a new ledger.
    Every SQLite engine here is made the same way (`open_sqlite`, the same sqlite3 module), so a statement compiles
    the same for all of them: the key names the dialect's class, paramstyle and SQLite version instead. Bounded (an
    LRU, as SQLAlchemy's own per-engine cache)."""

    def __init__(self, capacity: int = 500) -> None:
        self._cache: LRUCache[Any, Any] = LRUCache(capacity)

    def __getitem__(self, key: Any) -> Any:
        return self._cache[_across_engines(key)]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._cache.get(_across_engines(key), default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._cache[_across_engines(key)] = value

    def __delitem__(self, key: Any) -> None:
        del self._cache[_across_engines(key)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)


SQLITE_STATEMENTS = SharedStatements()


def open_sqlite(path: Path) -> Database:
    """The ledger file at `path` (created 0600 in a 0700 folder), in WAL mode with every commit synced."""
    try:
        private_dir(path.parent)
        private_file(path)
    except OSError as exc:
        raise LabsError(f"Cannot open the ledger at {path}: {exc}.",
                        "Set CEKURA_LABS_DATA_DIR to a writable folder.") from None
    engine = create_engine(f"sqlite+pysqlite:///{path}",
                           connect_args={"check_same_thread": False, "timeout": 30},
                           execution_options={"compiled_cache": SQLITE_STATEMENTS})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3 must not open transactions itself: `_begin` says which kind each one is.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the file's write lock before its first read (IMMEDIATE), so what it read cannot
        # change before it writes. A reader opens no transaction: each of its statements reads a consistent
        # snapshot on its own (WAL), and a BEGIN/ROLLBACK pair around it would only cost time.
        if conn.get_execution_options().get(_EXCLUSIVE, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    database = Database(engine, "sqlite", str(path))
    try:
        with database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        database.close()
        raise LabsError(f"Cannot open the ledger at {path}: {_reason(exc)}.",
                        "Set CEKURA_LABS_DATA_DIR to a writable folder.") from None
    return database


def open_postgres(location: PostgresLedger) -> Database:
    """The ledger's schema in PostgreSQL, created if missing; every connection works inside it."""
    try:
        engine = create_engine(
            location.url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True,
            connect_args={"options": f"-c search_path={location.namespace}", "connect_timeout": 10,
                          "application_name": "cekura-labs-mcp"})
    except ImportError:
        raise LabsError(f"{DATABASE_URL_VARIABLE} is set, but the PostgreSQL driver (psycopg) is not installed.",
                        "Install the team extra: pip install 'cekura-labs-mcp[team]'.") from None
    database = Database(engine, "postgresql", location.shown, location.namespace)
    try:
        with engine.connect() as conn, conn.begin():
            # Two processes creating the same schema at once would collide: one at a time.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("")})
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{location.namespace}"')
    except SQLAlchemyError as exc:
        database.close()
        raise database_error(location.shown, exc) from None
    return database


def database_error(where: str, exc: BaseException) -> LabsError:
    return LabsError(f"Cannot use the ledger database {where}: {_reason(exc)}.",
                     f"Check {DATABASE_URL_VARIABLE} (host, port, database, user and password) and that the "
                     "server accepts connections.")


def _reason(exc: BaseException) -> str:
    """The driver's own first line (never SQLAlchemy's wrapper with the statement), scrubbed of secrets."""
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return scrub(lines[0] if lines else type(inner).__name__).rstrip(".")


def drop_namespace(database: Database) -> None:
    """Remove a ledger's schema and everything in it (only for a backend that itself forgets)."""
    if database.dialect != "postgresql":
        return
    with database.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{database.namespace}" CASCADE')
