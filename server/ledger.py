"""The ledger: one SQLite file per backend in the data directory that outlives the server process.

It holds the cost guard's audit log (every spend decision and its outcome), the metric versions
the server replaced (so a change can be rolled back), and the review sessions of the labs loop.
Every write commits at once with `synchronous=FULL`: a write Cekura accepted is recorded before the
tool answers, so killing the server afterwards loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cekura_labs_mcp.server.errors import LabsError

# Each entry upgrades the schema by one version; never edit an entry that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        operation TEXT NOT NULL,
        agent_id INTEGER,
        project_id INTEGER,
        call_count INTEGER NOT NULL,
        call_ids TEXT NOT NULL,
        metric_ids TEXT NOT NULL,
        credits_estimated REAL NOT NULL,
        decision TEXT NOT NULL,
        confirmation TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE metric_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        metric_id INTEGER NOT NULL,
        reason TEXT NOT NULL,
        previous TEXT NOT NULL,
        applied TEXT NOT NULL
    );
    CREATE INDEX metric_versions_metric ON metric_versions(metric_id, id);
    """,
    """
    CREATE TABLE review_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        metric_id INTEGER NOT NULL,
        agent_id INTEGER NOT NULL,
        started_at REAL NOT NULL,
        auto_improve INTEGER NOT NULL DEFAULT 0,
        feedback_threshold INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'reviewing'
    );
    CREATE INDEX review_sessions_metric ON review_sessions(metric_id, agent_id, id);
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES review_sessions(id),
        call_id INTEGER NOT NULL,
        metric_id INTEGER NOT NULL,
        agreed INTEGER NOT NULL,
        result_was TEXT,
        expected TEXT NOT NULL,
        feedback TEXT NOT NULL,
        vote_state TEXT NOT NULL,
        vote_answer TEXT NOT NULL DEFAULT '',
        lab_state TEXT NOT NULL,
        test_set_id INTEGER,
        lab_answer TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (session_id, call_id)
    );
    CREATE TABLE improvements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES review_sessions(id),
        progress_id TEXT NOT NULL,
        test_set_ids TEXT NOT NULL,
        state TEXT NOT NULL,
        proposal TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE validations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES review_sessions(id),
        created_at REAL NOT NULL,
        report TEXT NOT NULL
    );
    """,
    # Confirmation tokens live in the ledger (hashed), so redeeming one is part of the guard's single
    # transaction and holds across processes; `owner` keeps each remote client's state its own;
    # `subject` names what a non-evaluation spend acted on (auto-improve: the metric and Lab set).
    """
    CREATE TABLE confirmation_tokens (
        digest TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    ALTER TABLE audit ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN subject TEXT NOT NULL DEFAULT '';
    CREATE INDEX audit_subject ON audit(operation, subject);
    ALTER TABLE review_sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
    # The backend this ledger belongs to (one ledger per API URL and key fingerprint; never the key).
    """
    CREATE TABLE backend (
        api_url TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL
    );
    """,
)


_OWNER: ContextVar[str] = ContextVar("cekura_labs_owner", default="")


def owner() -> str:
    """Whose state a request reads and writes: "" locally (stdio), a fingerprint of the bearer token in
    remote mode. Set once per request (`acting_for`), so services need not pass it along."""
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


class SpendBook:
    """The guard's view of the ledger inside its one write transaction (see `Ledger.spend_transaction`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def window(self, since: float) -> Window:
        return _window(self._db, since)

    def record(self, record: SpendRecord, at: float) -> int:
        return _insert_spend(self._db, record, at)

    def issue_token(self, digest: str, holder: str, fingerprint: str, expires_at: float) -> None:
        self._db.execute("DELETE FROM confirmation_tokens WHERE expires_at < ?", (expires_at - 86400,))
        self._db.execute("INSERT INTO confirmation_tokens (digest, owner, fingerprint, expires_at) VALUES (?,?,?,?)",
                         (digest, holder, fingerprint, expires_at))

    def take_token(self, digest: str, holder: str) -> IssuedToken | None:
        """The token, removed (single use); None if unknown or another client's."""
        row = self._db.execute("SELECT fingerprint, expires_at FROM confirmation_tokens WHERE digest = ? AND owner = ?",
                               (digest, holder)).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM confirmation_tokens WHERE digest = ?", (digest,))
        return IssuedToken(str(row[0]), float(row[1]))


def forget_ledger(path: Path) -> None:
    """Remove a closed ledger and its WAL files (only for a backend that itself forgets, the embedded sandbox)."""
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


def _window(db: sqlite3.Connection, since: float) -> Window:
    """Calls and credits allowed since `since`, whatever became of them (a spend whose outcome is unknown
    may have landed, so it counts; one Cekura refused does not)."""
    row = db.execute(
        "SELECT COALESCE(SUM(call_count), 0), COALESCE(SUM(credits_estimated), 0) FROM audit"
        " WHERE decision = 'allowed' AND outcome != 'rejected' AND at >= ?",
        (since,),
    ).fetchone()
    return Window(int(row[0]), round(float(row[1]), 4))


def _insert_spend(db: sqlite3.Connection, record: SpendRecord, at: float) -> int:
    cursor = db.execute(
        "INSERT INTO audit (at, operation, agent_id, project_id, call_count, call_ids, metric_ids,"
        " credits_estimated, decision, confirmation, outcome, detail, owner, subject)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            at, record.operation, record.agent_id, record.project_id,
            len(record.call_ids), json.dumps(list(record.call_ids)), json.dumps(list(record.metric_ids)),
            record.credits_estimated, record.decision, record.confirmation, record.outcome,
            record.detail, owner(), record.subject,
        ),
    )
    return int(cursor.lastrowid or 0)


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


LEDGERS = "ledgers"
LEGACY_LEDGER = "ledger.sqlite3"  # one ledger for every backend, before ledgers were kept per backend


def key_fingerprint(api_key: str | None) -> str:
    """Names a key without holding it: the first 12 hex digits of its SHA-256 ("none" without a key)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else "none"


def ledger_file(data_dir: Path, api_url: str, api_key: str | None) -> Path:
    """One ledger per backend: per API URL and key (through its fingerprint, never the key itself), so
    sandbox spends never count in the real window, the spend log never mixes them, and sessions never
    resume on another backend."""
    backend = f"{api_url.strip().rstrip('/').lower()}\n{key_fingerprint(api_key)}"
    return data_dir / LEDGERS / f"{hashlib.sha256(backend.encode()).hexdigest()[:16]}.sqlite3"


def private_dir(path: Path) -> None:
    """Create `path` for this user only (0700), tightening it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """Create `path` readable and writable by this user only (0600) before SQLite opens it; SQLite gives
    its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


class Ledger:
    def __init__(self, path: Path, *, api_url: str | None = None, api_key: str | None = None) -> None:
        self.path = path
        try:
            private_dir(path.parent)
            private_file(path)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            raise LabsError(
                f"Cannot open the ledger at {path}: {exc}.",
                "Set CEKURA_LABS_DATA_DIR to a writable folder.",
            ) from None
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self.backend = self._backend(api_url, api_key)

    @classmethod
    def for_backend(cls, data_dir: Path, api_url: str, api_key: str | None) -> Ledger:
        """The ledger of this backend in `data_dir` (created 0700), taking over a pre-per-backend ledger
        the first time a real backend opens one."""
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

    def _backend(self, api_url: str | None, api_key: str | None) -> str:
        """Which backend this ledger keeps (URL and key fingerprint), written once, shown in the spend log."""
        with self._transaction() as db:
            row = db.execute("SELECT api_url, key_fingerprint FROM backend").fetchone()
            if row is None and api_url is not None:
                db.execute("INSERT INTO backend (api_url, key_fingerprint) VALUES (?, ?)",
                           (api_url, key_fingerprint(api_key)))
                row = (api_url, key_fingerprint(api_key))
        return f"{row[0]} (key {row[1]})" if row is not None else ""

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def schema_version(self) -> int:
        row = self._db.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        # The version is read under the write lock: two processes opening a new ledger at once (two
        # sessions sharing a data dir) must not both apply the same migration.
        with self._transaction() as db:
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise LabsError(
                    f"The ledger at {self.path} was written by a newer version (schema {current}).",
                    "Upgrade cekura-labs-mcp, or point CEKURA_LABS_DATA_DIR elsewhere.",
                )
            for version in range(current, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[version]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- the guard's audit log -----------------------------------------------------------

    @contextmanager
    def spend_transaction(self) -> Iterator[SpendBook]:
        """One `BEGIN IMMEDIATE` transaction: it takes the database's write lock (a file lock, so it holds
        across processes) before the window is read, and keeps it until the decision is written."""
        with self._transaction() as db:
            yield SpendBook(db)

    def record_spend(self, record: SpendRecord, at: float | None = None) -> int:
        with self._transaction() as db:
            return _insert_spend(db, record, time.time() if at is None else at)

    def set_spend_outcome(self, audit_id: int, outcome: str, detail: str = "") -> None:
        with self._transaction() as db:
            db.execute("UPDATE audit SET outcome = ?, detail = ? WHERE id = ?", (outcome, detail, audit_id))

    def window_since(self, since: float) -> Window:
        with self._lock:
            return _window(self._db, since)

    def claim_run(self, subject: str, metric_id: int, test_set_ids: Sequence[int], *, now: float,
                  in_flight_seconds: float) -> RunClaim:
        """The auto-improve run logged for `subject` that may still be running, or, when there is none, a new
        log row (outcome `pending`) that claims the start: looked up and written in one transaction."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, outcome, detail, at FROM audit WHERE operation = 'process_feedbacks' AND subject = ?"
                " AND outcome IN ('pending', 'running') ORDER BY id DESC LIMIT 1", (subject,)).fetchone()
            if row is not None and row[1] == "running" and row[2]:
                return RunClaim(int(row[0]), str(row[2]), claimed=False)
            if row is not None and float(row[3]) > now - in_flight_seconds:
                return RunClaim(int(row[0]), None, claimed=False)
            if row is not None:
                db.execute("UPDATE audit SET outcome = 'unknown', detail = 'the start was never answered'"
                           " WHERE id = ?", (row[0],))
            audit_id = _insert_spend(db, SpendRecord(
                operation="process_feedbacks", agent_id=None, project_id=None, call_ids=(),
                metric_ids=[metric_id], credits_estimated=0.0, decision="allowed", confirmation="none",
                outcome="pending", detail=f"Lab test sets: {list(test_set_ids) or 'all'}", subject=subject), now)
            return RunClaim(audit_id, None, claimed=True)

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self._db.execute("SELECT * FROM audit WHERE owner = ? ORDER BY id DESC LIMIT ?", (owner(), limit))
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # ---- metric versions -----------------------------------------------------------------

    def record_metric_version(
        self, metric_id: int, reason: str, previous: dict[str, Any], applied: dict[str, Any]
    ) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO metric_versions (at, metric_id, reason, previous, applied) VALUES (?,?,?,?,?)",
                (time.time(), metric_id, reason, json.dumps(previous), json.dumps(applied)),
            )
            return int(cursor.lastrowid or 0)

    def forget_metric_version(self, version_id: int) -> None:
        """Only for a change Cekura refused outright, so it never became a version to go back from."""
        with self._transaction() as db:
            db.execute("DELETE FROM metric_versions WHERE id = ?", (version_id,))

    def metric_versions(self, metric_id: int) -> list[MetricVersion]:
        rows = self._db.execute(
            "SELECT id, at, metric_id, reason, previous, applied FROM metric_versions"
            " WHERE metric_id = ? ORDER BY id DESC",
            (metric_id,),
        ).fetchall()
        return [
            MetricVersion(int(r[0]), float(r[1]), int(r[2]), str(r[3]), json.loads(r[4]), json.loads(r[5]))
            for r in rows
        ]

    # ---- review sessions (the labs loop) --------------------------------------------------
    # A review is written as intent (vote_state "sending") before the vote is sent and updated as soon
    # as Cekura answers, so after a crash the ledger says exactly which writes may need checking.

    def open_session(self, metric_id: int, agent_id: int, feedback_threshold: int) -> Session:
        row = self._db.execute(
            "SELECT id FROM review_sessions WHERE metric_id = ? AND agent_id = ? AND state != 'closed' AND owner = ?"
            " ORDER BY id DESC LIMIT 1", (metric_id, agent_id, owner())).fetchone()
        if row is not None:
            return self.session(int(row[0]))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO review_sessions (metric_id, agent_id, started_at, feedback_threshold, owner)"
                " VALUES (?,?,?,?,?)", (metric_id, agent_id, time.time(), feedback_threshold, owner()))
            session_id = int(cursor.lastrowid or 0)
        return self.session(session_id)

    def session(self, session_id: int) -> Session:
        row = self._db.execute(
            "SELECT id, metric_id, agent_id, started_at, auto_improve, feedback_threshold, state"
            " FROM review_sessions WHERE id = ? AND owner = ?", (session_id, owner())).fetchone()
        if row is None:
            raise LabsError(f"Review session {session_id} does not exist.", "Start one with start_review.")
        return Session(int(row[0]), int(row[1]), int(row[2]), float(row[3]), bool(row[4]), int(row[5]), str(row[6]))

    def update_session(self, session_id: int, *, auto_improve: bool | None = None, state: str | None = None) -> None:
        with self._transaction() as db:
            if auto_improve is not None:
                db.execute("UPDATE review_sessions SET auto_improve = ? WHERE id = ?", (int(auto_improve), session_id))
            if state is not None:
                db.execute("UPDATE review_sessions SET state = ? WHERE id = ?", (state, session_id))

    def begin_review(self, session_id: int, *, call_id: int, metric_id: int, agreed: bool, result_was: str | None,
                     expected: Any, feedback: str) -> int:
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO reviews (session_id, call_id, metric_id, agreed, result_was, expected, feedback,"
                " vote_state, lab_state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,'sending','waiting',?,?)",
                (session_id, call_id, metric_id, int(agreed), result_was, json.dumps(expected), feedback, now, now))
            return int(cursor.lastrowid or 0)

    def skip_review(self, session_id: int, *, call_id: int, metric_id: int, result_was: str | None,
                    note: str) -> int:
        """A call the person could not judge: kept so the queue does not show it again, never sent (its vote and
        Lab states are 'skipped' from the start, so nothing reconciles or resends it)."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO reviews (session_id, call_id, metric_id, agreed, result_was, expected, feedback,"
                " vote_state, lab_state, created_at, updated_at) VALUES (?,?,?,0,?,'null',?,'skipped','skipped',?,?)",
                (session_id, call_id, metric_id, result_was, note, now, now))
            return int(cursor.lastrowid or 0)

    def forget_skip(self, session_id: int, call_id: int) -> None:
        """The person judges a call they skipped earlier: the skip gives way to the verdict."""
        with self._transaction() as db:
            db.execute("DELETE FROM reviews WHERE session_id = ? AND call_id = ? AND vote_state = 'skipped'",
                       (session_id, call_id))

    def mark_vote(self, review_id: int, state: str, answer: str = "") -> None:
        with self._transaction() as db:
            db.execute("UPDATE reviews SET vote_state = ?, vote_answer = ?, updated_at = ? WHERE id = ?",
                       (state, answer, time.time(), review_id))

    def mark_lab(self, review_id: int, state: str, test_set_id: int | None = None, answer: str = "") -> None:
        with self._transaction() as db:
            db.execute("UPDATE reviews SET lab_state = ?, test_set_id = COALESCE(?, test_set_id), lab_answer = ?,"
                       " updated_at = ? WHERE id = ?", (state, test_set_id, answer, time.time(), review_id))

    def forget_review(self, review_id: int) -> None:
        """Only for a review whose vote provably never reached Cekura (refused before it landed)."""
        with self._transaction() as db:
            db.execute("DELETE FROM reviews WHERE id = ? AND vote_state IN ('sending', 'rejected')", (review_id,))

    def reviews(self, session_id: int) -> list[Review]:
        rows = self._db.execute(
            "SELECT id, session_id, call_id, metric_id, agreed, result_was, expected, feedback, vote_state,"
            " lab_state, test_set_id, updated_at FROM reviews WHERE session_id = ? ORDER BY id",
            (session_id,)).fetchall()
        return [Review(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bool(r[4]), r[5], json.loads(r[6]), str(r[7]),
                       str(r[8]), str(r[9]), None if r[10] is None else int(r[10]), float(r[11])) for r in rows]

    def metric_reviews(self, metric_id: int, *, agent_id: int | None = None, since: float = 0.0) -> list[Review]:
        """Every review of a metric across its sessions (of one agent, if given), made after `since`."""
        rows = self._db.execute(
            "SELECT r.id, r.session_id, r.call_id, r.metric_id, r.agreed, r.result_was, r.expected, r.feedback,"
            " r.vote_state, r.lab_state, r.test_set_id, r.updated_at FROM reviews r"
            " JOIN review_sessions s ON s.id = r.session_id"
            " WHERE r.metric_id = ? AND (? IS NULL OR s.agent_id = ?) AND r.created_at > ? AND s.owner = ?"
            " ORDER BY r.id", (metric_id, agent_id, agent_id, since, owner())).fetchall()
        return [Review(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bool(r[4]), r[5], json.loads(r[6]), str(r[7]),
                       str(r[8]), str(r[9]), None if r[10] is None else int(r[10]), float(r[11])) for r in rows]

    def add_improvement(self, session_id: int, progress_id: str, test_set_ids: Sequence[int]) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO improvements (session_id, progress_id, test_set_ids, state, created_at)"
                " VALUES (?,?,?,'running',?)", (session_id, progress_id, json.dumps(list(test_set_ids)), time.time()))
            return int(cursor.lastrowid or 0)

    def set_improvement_progress(self, improvement_id: int, progress_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE improvements SET progress_id = ? WHERE id = ?", (progress_id, improvement_id))

    def forget_improvement(self, improvement_id: int) -> None:
        """Only for a start that provably never reached Cekura (refused before it landed)."""
        with self._transaction() as db:
            db.execute("DELETE FROM improvements WHERE id = ? AND progress_id = ''", (improvement_id,))

    def finish_improvement(self, improvement_id: int, state: str, proposal: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE improvements SET state = ?, proposal = ? WHERE id = ?",
                       (state, None if proposal is None else json.dumps(proposal), improvement_id))

    def record_proposal(self, progress_id: str, state: str, proposal: dict[str, Any]) -> None:
        """A finished auto-improve run of a review session, however its result was fetched."""
        with self._transaction() as db:
            db.execute("UPDATE improvements SET state = ?, proposal = ? WHERE progress_id = ? AND progress_id != ''",
                       (state, json.dumps(proposal), progress_id))
            # ... and its start in the spend log is no longer a running one.
            db.execute("UPDATE audit SET outcome = 'finished' WHERE operation = 'process_feedbacks'"
                       " AND outcome = 'running' AND detail = ?", (progress_id,))

    def latest_improvement(self, session_id: int) -> Improvement | None:
        row = self._db.execute(
            "SELECT id, session_id, progress_id, test_set_ids, state, proposal FROM improvements"
            " WHERE session_id = ? ORDER BY id DESC LIMIT 1", (session_id,)).fetchone()
        if row is None:
            return None
        return Improvement(int(row[0]), int(row[1]), str(row[2]), json.loads(row[3]), str(row[4]),
                           None if row[5] is None else json.loads(row[5]))

    def add_validation(self, session_id: int, report: dict[str, Any]) -> int:
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO validations (session_id, created_at, report) VALUES (?,?,?)",
                                (session_id, time.time(), json.dumps(report)))
            return int(cursor.lastrowid or 0)

    # A regression check is written before it spends and updated as its results arrive, so a check
    # interrupted while Cekura evaluates is resumed from here instead of being paid for twice.

    def update_validation(self, validation_id: int, report: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE validations SET report = ? WHERE id = ?", (json.dumps(report), validation_id))

    def forget_validation(self, validation_id: int) -> None:
        """Only for a check whose spend provably never reached Cekura (refused, or not confirmed)."""
        with self._transaction() as db:
            db.execute("DELETE FROM validations WHERE id = ?", (validation_id,))

    def validation(self, validation_id: int) -> tuple[int, dict[str, Any]] | None:
        """(session id, report) of one check."""
        row = self._db.execute(
            "SELECT v.session_id, v.report FROM validations v JOIN review_sessions s ON s.id = v.session_id"
            " WHERE v.id = ? AND s.owner = ?", (validation_id, owner())).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def validations(self, session_id: int) -> list[tuple[int, dict[str, Any]]]:
        """(id, report) of every check of a session, oldest first."""
        rows = self._db.execute("SELECT id, report FROM validations WHERE session_id = ? ORDER BY id",
                                (session_id,)).fetchall()
        return [(int(r[0]), json.loads(r[1])) for r in rows]
