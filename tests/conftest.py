"""Shared fixtures: one sandbox per test session over real loopback HTTP, reset between tests, and
settings for an MCP server against it with its ledger in a temporary directory."""
# ruff: noqa: E402 (the collector is paused before the imports below, which are most of collection's work)

from __future__ import annotations

import gc
import sys

# Collection (this module's imports included: the SDK, pydantic's models, the server) builds objects that live as
# long as the worker and makes little garbage, so the cyclic collector would walk that growing heap again and again
# for nothing: paused until collection ends (pytest_collection below), as `serve` does at its start.
gc.disable()
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.logs import configure_logging
from cekura_labs_mcp.server.sandbox import SandboxServer
from cekura_labs_mcp.server.sandbox.dialect import DIALECTS, Dialect, default_dialect

# The throwaway PostgreSQL cluster, and the sqlite/postgresql parametrization of the ledger's tests.
from pg_cluster import database_url, ledger_backend, ledger_location, ledger_settings, postgres  # noqa: F401
from pydantic import SecretStr
from support import LEAKS, LOG_SINK, ORG_KEY, SANDBOX_KEY, SandboxAdmin

# A bound against a hang, not a timing any test relies on: the sandbox answers from a thread of the test process,
# and on a loaded machine (2 cores, many processes) a read can take seconds. Tests that need a request to time
# out set their own short timeout against a longer injected delay.
HTTP_TIMEOUT = 10.0

# pytest keeps the assert-rewritten test modules as bytecode in tests/__pycache__ (git-ignored) unless bytecode is
# switched off; where PYTHONDONTWRITEBYTECODE is set, every worker of every run rewrote and compiled all of them.
sys.dont_write_bytecode = False


@pytest.fixture(scope="session", autouse=True)
def _capture_logs() -> None:
    configure_logging("json", "debug", stream=LOG_SINK)


@pytest.fixture(autouse=True)
def _no_key_in_logs_or_results() -> Iterator[None]:
    """The API keys never reach a log line or a tool result: every line and result is checked as it is written
    (support.LEAKS), and the test that wrote one fails here as it ends."""
    seen = len(LEAKS)
    yield
    leaked = LEAKS[seen:]
    assert not leaked, "\n".join(leaked)


class _Sandboxes:
    """One sandbox per dialect for the whole session, each started the first time a test asks for it."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._servers: dict[str, SandboxServer] = {}

    def get(self, dialect: Dialect) -> SandboxServer:
        if dialect not in self._servers:
            self._servers[dialect] = self._stack.enter_context(
                SandboxServer(seed=7, api_key=SANDBOX_KEY, dialect=dialect, org_api_key=ORG_KEY))
        return self._servers[dialect]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def _sandboxes() -> Iterator[_Sandboxes]:
    pool = _Sandboxes()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def sandbox_server(request: pytest.FixtureRequest, _sandboxes: _Sandboxes) -> SandboxServer:
    """The embedded sandbox's dialect (`documented`, what Cekura's docs show; `CEKURA_LABS_SANDBOX_DIALECT=spec`
    runs the suite against the other) unless a test asks otherwise. Tests marked `both_dialects` (where the answer
    shapes matter) run once against each; the two sandboxes are started once per session."""
    dialect: Dialect = getattr(request, "param", None) or default_dialect()
    return _sandboxes.get(dialect)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> object:
    """The collector, paused since this module was imported, is on again once collection ends; in xdist's
    controller too, which collects nothing."""
    try:
        return (yield)
    finally:
        gc.enable()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection loaded (the SDK, pydantic's models, the test modules) lives as long as the worker; frozen, the
    collector stops walking it on every full collection, and a larger first generation collects less often. A
    test's garbage is still collected. Measured on three in-process test files run alternately, three times each:
    19.9-27.0 s of CPU with this, 24.3-28.1 s without (the collector took 6.8 s of a 40 s run before)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_dialects: run against the sandbox's `documented` and `spec` dialects")
    if not hasattr(config, "workerinput"):  # an xdist worker: the controller compiled it before starting this one
        _compile_the_package()


def _compile_the_package() -> None:
    """The server processes the tests start (over stdio, `--workers`, the races' spawned interpreters) import this
    package from its source, and with PYTHONDONTWRITEBYTECODE set each would compile all of it again: about half a
    second of CPU per process. Compiled once here instead (py_compile writes whatever that variable says; an
    up-to-date file is only checked; `__pycache__/` is git-ignored), by the controller before any worker starts."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("server", "tools"):
        compileall.compile_dir(root / package, quiet=1)


# The suite runs in four worker processes (pytest-xdist, `-n 4 --dist loadgroup` in pyproject's addopts); each
# worker has its own sandboxes, ledgers and temporary directories, and picks free ports. These tests share one
# worker: they share something costly to start twice, or state outside the process two workers would race for.
_ONE_WORKER_MODULES = {
    "test_browser_views.py": "browser",  # one Chromium for the module (module-scoped)
    "test_custom_code_escapes.py": "escapes",  # one staged machine: an unprivileged user, a native module built
    # One prepared ui/ (test_apps_build.prepared_ui: in a fresh clone, one `npm ci`) for both Node builds.
    "test_apps_build.py": "ui-build",
    "test_browser_host_build.py": "ui-build",
}


# tryfirst: xdist's worker reads these marks in its own pytest_collection_modifyitems (to suffix each node id with
# its group for --dist loadgroup), which otherwise ran before this one: no group was applied.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = _ONE_WORKER_MODULES.get(item.path.name)
        callspec = getattr(item, "callspec", None)
        on_postgres = "postgres" in getattr(item, "fixturenames", ()) or (
            callspec is not None and callspec.params.get("ledger_backend") == "postgresql")
        if group is None and on_postgres:
            group = "postgresql"  # one throwaway cluster (initdb, a server) instead of one per worker
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_dialects") and "sandbox_server" in metafunc.fixturenames:
        metafunc.parametrize("sandbox_server", list(DIALECTS), indirect=True, scope="session")


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxAdmin:
    admin = SandboxAdmin(sandbox_server.url)
    admin.reset()
    return admin


@pytest.fixture
def settings(tmp_path: Path, sandbox: SandboxAdmin) -> Settings:
    return Settings(CEKURA_API_KEY=SecretStr(SANDBOX_KEY), CEKURA_API_URL=sandbox.url,
                    CEKURA_LABS_DATA_DIR=tmp_path / "data", CEKURA_LABS_HTTP_TIMEOUT=HTTP_TIMEOUT,
                    CEKURA_LABS_POLL_INTERVAL=0.05)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
