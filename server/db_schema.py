"""The ledger's tables, declared once for every query (`server/ledger.py` writes its SQL against these), and
the migrations that create them: SQLite's chain (what earlier versions shipped, unchanged) and PostgreSQL's,
one entry for one entry, so version N means the same tables on both. `tests/test_ledger_schema.py` checks that
each chain ends in exactly the columns declared here.

Each entry upgrades the schema by one version; never edit an entry that has shipped: add one.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, Table, Text, UniqueConstraint

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
    # Team review (services/team.py): a metric's overlap sample, and the lease on each call the queue hands out
    # (one reviewer per call; two on a call of the overlap sample, never both slots to one reviewer).
    """
    CREATE TABLE review_plans (
        metric_id INTEGER PRIMARY KEY,
        agent_id INTEGER NOT NULL,
        overlap REAL NOT NULL DEFAULT 0,
        set_by TEXT NOT NULL DEFAULT '',
        set_at REAL NOT NULL
    );
    CREATE TABLE review_leases (
        metric_id INTEGER NOT NULL,
        call_id INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        reviewer TEXT NOT NULL,
        state TEXT NOT NULL,
        expires_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (metric_id, call_id, slot),
        UNIQUE (metric_id, call_id, reviewer)
    );
    """,
    # Which toolsets each remote reviewer loaded (tools/toolsets.py): any process answers their next tools/list.
    """
    CREATE TABLE loaded_toolsets (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (owner, name)
    );
    """,
)


# The same versions for PostgreSQL: ids are identity columns, times DOUBLE PRECISION (epoch seconds, as SQLite's
# REAL), flags stay INTEGER 0/1 so the queries read them alike.
POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        operation TEXT NOT NULL,
        agent_id BIGINT,
        project_id BIGINT,
        call_count INTEGER NOT NULL,
        call_ids TEXT NOT NULL,
        metric_ids TEXT NOT NULL,
        credits_estimated DOUBLE PRECISION NOT NULL,
        decision TEXT NOT NULL,
        confirmation TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE metric_versions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        metric_id BIGINT NOT NULL,
        reason TEXT NOT NULL,
        previous TEXT NOT NULL,
        applied TEXT NOT NULL
    );
    CREATE INDEX metric_versions_metric ON metric_versions(metric_id, id);
    """,
    """
    CREATE TABLE review_sessions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        metric_id BIGINT NOT NULL,
        agent_id BIGINT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        auto_improve INTEGER NOT NULL DEFAULT 0,
        feedback_threshold INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'reviewing'
    );
    CREATE INDEX review_sessions_metric ON review_sessions(metric_id, agent_id, id);
    CREATE TABLE reviews (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id BIGINT NOT NULL REFERENCES review_sessions(id),
        call_id BIGINT NOT NULL,
        metric_id BIGINT NOT NULL,
        agreed INTEGER NOT NULL,
        result_was TEXT,
        expected TEXT NOT NULL,
        feedback TEXT NOT NULL,
        vote_state TEXT NOT NULL,
        vote_answer TEXT NOT NULL DEFAULT '',
        lab_state TEXT NOT NULL,
        test_set_id BIGINT,
        lab_answer TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        UNIQUE (session_id, call_id)
    );
    CREATE TABLE improvements (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id BIGINT NOT NULL REFERENCES review_sessions(id),
        progress_id TEXT NOT NULL,
        test_set_ids TEXT NOT NULL,
        state TEXT NOT NULL,
        proposal TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE validations (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id BIGINT NOT NULL REFERENCES review_sessions(id),
        created_at DOUBLE PRECISION NOT NULL,
        report TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE confirmation_tokens (
        digest TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE audit ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN subject TEXT NOT NULL DEFAULT '';
    CREATE INDEX audit_subject ON audit(operation, subject);
    ALTER TABLE review_sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
    """
    CREATE TABLE backend (
        api_url TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE review_plans (
        metric_id BIGINT PRIMARY KEY,
        agent_id BIGINT NOT NULL,
        overlap DOUBLE PRECISION NOT NULL DEFAULT 0,
        set_by TEXT NOT NULL DEFAULT '',
        set_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE review_leases (
        metric_id BIGINT NOT NULL,
        call_id BIGINT NOT NULL,
        slot INTEGER NOT NULL,
        reviewer TEXT NOT NULL,
        state TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (metric_id, call_id, slot),
        UNIQUE (metric_id, call_id, reviewer)
    );
    """,
    """
    CREATE TABLE loaded_toolsets (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (owner, name)
    );
    """,
)

metadata = MetaData()

audit = Table(
    "audit", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("operation", Text, nullable=False),
    Column("agent_id", BigInteger),
    Column("project_id", BigInteger),
    Column("call_count", Integer, nullable=False),
    Column("call_ids", Text, nullable=False),
    Column("metric_ids", Text, nullable=False),
    Column("credits_estimated", Float, nullable=False),
    Column("decision", Text, nullable=False),
    Column("confirmation", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("owner", Text, nullable=False, server_default=""),
    Column("subject", Text, nullable=False, server_default=""),
)

metric_versions = Table(
    "metric_versions", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("metric_id", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("previous", Text, nullable=False),
    Column("applied", Text, nullable=False),
)

review_sessions = Table(
    "review_sessions", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("metric_id", BigInteger, nullable=False),
    Column("agent_id", BigInteger, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("auto_improve", Integer, nullable=False, server_default="0"),
    Column("feedback_threshold", Integer, nullable=False),
    Column("state", Text, nullable=False, server_default="reviewing"),
    Column("owner", Text, nullable=False, server_default=""),
)

reviews = Table(
    "reviews", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("session_id", BigInteger, nullable=False),
    Column("call_id", BigInteger, nullable=False),
    Column("metric_id", BigInteger, nullable=False),
    Column("agreed", Integer, nullable=False),
    Column("result_was", Text),
    Column("expected", Text, nullable=False),
    Column("feedback", Text, nullable=False),
    Column("vote_state", Text, nullable=False),
    Column("vote_answer", Text, nullable=False, server_default=""),
    Column("lab_state", Text, nullable=False),
    Column("test_set_id", BigInteger),
    Column("lab_answer", Text, nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

improvements = Table(
    "improvements", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("session_id", BigInteger, nullable=False),
    Column("progress_id", Text, nullable=False),
    Column("test_set_ids", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("proposal", Text),
    Column("created_at", Float, nullable=False),
)

validations = Table(
    "validations", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("session_id", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("report", Text, nullable=False),
)

confirmation_tokens = Table(
    "confirmation_tokens", metadata,
    Column("digest", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)

backend = Table(
    "backend", metadata,
    Column("api_url", Text, nullable=False),
    Column("key_fingerprint", Text, nullable=False),
)

review_plans = Table(
    "review_plans", metadata,
    Column("metric_id", BigInteger, primary_key=True, autoincrement=False),
    Column("agent_id", BigInteger, nullable=False),
    Column("overlap", Float, nullable=False, server_default="0"),
    Column("set_by", Text, nullable=False, server_default=""),
    Column("set_at", Float, nullable=False),
)

review_leases = Table(
    "review_leases", metadata,
    Column("metric_id", BigInteger, primary_key=True, autoincrement=False),
    Column("call_id", BigInteger, primary_key=True, autoincrement=False),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("reviewer", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("metric_id", "call_id", "reviewer"),
)

loaded_toolsets = Table(
    "loaded_toolsets", metadata,
    Column("owner", Text, primary_key=True),
    Column("name", Text, primary_key=True),
)
