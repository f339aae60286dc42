"""A real, throwaway PostgreSQL for the tests (no mock): `initdb` and `pg_ctl` from Debian's `postgresql` package
start a cluster in a temporary folder, listening on 127.0.0.1 on a free port (password auth, scram) and on a
unix socket in that folder, and stop it at the end of the session.

PostgreSQL refuses to run as root: as root, the cluster is run by an unprivileged user (`cekura-pg`, created with
`useradd` if missing, else `nobody`) that owns the folder; as anyone else, by that user directly.

Without the server binaries the PostgreSQL tests skip and say why, unless CEKURA_LABS_REQUIRE_POSTGRES is set
(CI sets it in `.ci/run`): then they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import Ledger, PostgresLedger, postgres_ledger
from pydantic import SecretStr
from system_needs import missing

REQUIRE = "CEKURA_LABS_REQUIRE_POSTGRES"
SERVICE_USER = "cekura-pg"
SUPERUSER = "postgres"
INSTALL_HINT = ("install Debian's postgresql package (`bash scripts/test-system-deps.sh` does, as root; or "
                "`apt-get install postgresql`)")


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: CEKURA_LABS_PG_BINDIR, Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    explicit = os.environ.get("CEKURA_LABS_PG_BINDIR")
    candidates = [Path(explicit)] if explicit else []

    def major(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/", path)
        return int(found.group(1)) if found else 0

    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major,
                                                  reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def service_user() -> pwd.struct_passwd:
    """The unprivileged user that runs the cluster when the tests run as root."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    if shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=False, capture_output=True)
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pass
    return pwd.getpwnam("nobody")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    root: Path
    port: int
    password: str
    user: pwd.struct_passwd | None  # who runs it (None: this process's user)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        extra = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        done = subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=self.root, env=env, text=True,
                              capture_output=True, timeout=timeout, check=False, **extra)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done  # type: ignore[no-any-return]

    @classmethod
    def start(cls, bindir: Path) -> PgCluster:
        runner = service_user() if os.geteuid() == 0 else None
        # As root, in /tmp (world-traversable) whatever TMPDIR says: the cluster's user must reach its folder.
        root = Path(tempfile.mkdtemp(prefix="cekura-pg-", dir="/tmp" if runner is not None else None))
        if runner is not None:
            os.chown(root, runner.pw_uid, runner.pw_gid)
        password = secrets.token_hex(12)
        (root / "pwfile").write_text(password + "\n")
        if runner is not None:
            os.chown(root / "pwfile", runner.pw_uid, runner.pw_gid)
        cluster = cls(bindir, root, 0, password, runner)
        cluster._run("initdb", "-D", str(cluster.data), "-U", SUPERUSER, f"--pwfile={root / 'pwfile'}",
                     "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
                     "--no-instructions")
        for attempt in range(3):  # a free port can be taken between finding it and binding it
            cluster.port = free_port()
            options = (f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
            try:
                cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(root / "server.log"), "-w", "-t", "120",
                             "-o", options, "start", timeout=180)
                return cluster
            except RuntimeError:
                if attempt == 2:
                    log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
                    raise RuntimeError(f"PostgreSQL did not start: {log[-2000:]}") from None
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=120)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def postmaster_uid(self) -> int:
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def fresh_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)


def cluster_or_skip() -> Path:
    bindir = find_bindir()
    if bindir is None:
        missing(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}", REQUIRE)
    return bindir


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the whole test session."""
    cluster = PgCluster.start(cluster_or_skip())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(request: pytest.FixtureRequest) -> str:
    """Which database a parametrized test keeps its ledger in."""
    return str(request.param)


@pytest.fixture
def database_url(ledger_backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (SQLite, the default) or the URL of a fresh PostgreSQL database, per `ledger_backend`."""
    if ledger_backend == "sqlite":
        return None
    cluster: PgCluster = request.getfixturevalue("postgres")
    return cluster.fresh_database()


def ledger_of(settings: Settings) -> Ledger:
    """The ledger a server with these settings keeps (its SQLite file, or its schema in PostgreSQL)."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return Ledger.for_backend(settings.data_dir, settings.api_url, key, database_url=settings.database_url_value)


@pytest.fixture
def ledger_settings(settings: Settings, database_url: str | None) -> Settings:
    """`settings`, with the ledger in the database `ledger_backend` names."""
    return settings.model_copy(update={"database_url": SecretStr(database_url) if database_url else None})


@pytest.fixture
def ledger_location(tmp_path: Path, database_url: str | None) -> Path | PostgresLedger:
    """A fresh ledger's location in the database `ledger_backend` names: a file, or a schema."""
    if database_url is None:
        return tmp_path / "ledger.sqlite3"
    return postgres_ledger(database_url, "http://test.invalid", "test-key")
