"""One sandbox per session over real loopback HTTP, restored to its seeded state before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cekura_labs_mcp.server.sandbox import SandboxServer
from sandbox_helpers import KEY, ORG_KEY, Admin


@pytest.fixture(scope="session")
def server() -> Iterator[SandboxServer]:
    # The spec dialect explicitly: these are the pre-issue-10 answers; `documented` has its own files.
    with SandboxServer(seed=7, dialect="spec") as running:
        yield running


@pytest.fixture(scope="session")
def _client(server: SandboxServer) -> Iterator[httpx.Client]:
    # One client for the session: building an httpx client (its TLS context) costs more than a test.
    with httpx.Client(base_url=server.url, headers={"X-CEKURA-API-KEY": KEY}, timeout=10) as client:
        yield client


@pytest.fixture
def api(_client: httpx.Client) -> httpx.Client:
    """An authenticated client on a freshly reset sandbox."""
    _client.post("/_sandbox/reset").raise_for_status()
    return _client


@pytest.fixture
def admin(api: httpx.Client) -> Admin:
    return Admin(api)


@pytest.fixture(scope="session")
def documented_server() -> Iterator[SandboxServer]:
    with SandboxServer(seed=7, dialect="documented", org_api_key=ORG_KEY) as running:
        yield running


@pytest.fixture(scope="session")
def _documented_client(documented_server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=documented_server.url, headers={"X-CEKURA-API-KEY": KEY}, timeout=10) as client:
        yield client


@pytest.fixture
def dapi(_documented_client: httpx.Client) -> httpx.Client:
    """An authenticated client on a freshly reset `documented` sandbox."""
    _documented_client.post("/_sandbox/reset").raise_for_status()
    return _documented_client


@pytest.fixture
def dadmin(dapi: httpx.Client) -> Admin:
    return Admin(dapi)
