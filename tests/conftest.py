"""Shared fixtures: one sandbox per test session over real loopback HTTP, reset between tests, and
settings for an MCP server against it with its ledger in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.logs import configure_logging
from cekura_labs_mcp.server.sandbox import SandboxServer
from pydantic import SecretStr
from support import LOG_SINK, SANDBOX_KEY, SandboxAdmin


@pytest.fixture(scope="session", autouse=True)
def _capture_logs() -> None:
    configure_logging("json", "debug", stream=LOG_SINK)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    # `spec` explicitly until the client reads the documented shapes (issue 10); then both dialects.
    with SandboxServer(seed=7, api_key=SANDBOX_KEY, dialect="spec") as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxAdmin:
    admin = SandboxAdmin(sandbox_server.url)
    admin.reset()
    return admin


@pytest.fixture
def settings(tmp_path: Path, sandbox: SandboxAdmin) -> Settings:
    return Settings(CEKURA_API_KEY=SecretStr(SANDBOX_KEY), CEKURA_API_URL=sandbox.url,
                    CEKURA_LABS_DATA_DIR=tmp_path / "data", CEKURA_LABS_HTTP_TIMEOUT=2.0,
                    CEKURA_LABS_POLL_INTERVAL=0.05)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
