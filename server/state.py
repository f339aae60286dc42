"""The ledger: one SQLite file in the data directory that outlives the server process.

It holds the cost guard's audit log (every spend decision and its outcome), the metric versions
the server replaced (so a change can be rolled back), and the review sessions of the labs loop.
Every write commits at once with `synchronous=FULL`: a write Cekura accepted is recorded before the
tool answers, so killing the server afterwards loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
)


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


@dataclass(frozen=True)
class MetricVersion:
    id: int
    at: float
    metric_id: int
    reason: str
    previous: dict[str, Any]
    applied: dict[str, Any]


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def schema_version(self) -> int:
        row = self._db.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        with self._lock:
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise LabsError(
                    f"The ledger at {self.path} was written by a newer version (schema {current}).",
                    "Upgrade cekura-labs-mcp, or point CEKURA_LABS_DATA_DIR elsewhere.",
                )
            for version in range(current, len(MIGRATIONS)):
                with self._transaction():
                    self._db.executescript(MIGRATIONS[version])
                    self._db.execute(f"PRAGMA user_version = {version + 1}")

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

    def record_spend(self, record: SpendRecord, at: float | None = None) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO audit (at, operation, agent_id, project_id, call_count, call_ids, metric_ids,"
                " credits_estimated, decision, confirmation, outcome, detail)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    time.time() if at is None else at, record.operation, record.agent_id, record.project_id,
                    len(record.call_ids), json.dumps(list(record.call_ids)), json.dumps(list(record.metric_ids)),
                    record.credits_estimated, record.decision, record.confirmation, record.outcome,
                    record.detail,
                ),
            )
            return int(cursor.lastrowid or 0)

    def set_spend_outcome(self, audit_id: int, outcome: str, detail: str = "") -> None:
        with self._transaction() as db:
            db.execute("UPDATE audit SET outcome = ?, detail = ? WHERE id = ?", (outcome, detail, audit_id))

    def calls_allowed_since(self, since: float) -> int:
        """Calls this server allowed to be evaluated since `since`, whatever became of them
        (a spend whose outcome is unknown may have landed, so it counts)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(call_count), 0) FROM audit"
            " WHERE decision = 'allowed' AND outcome != 'rejected' AND at >= ?",
            (since,),
        ).fetchone()
        return int(row[0])

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self._db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
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
