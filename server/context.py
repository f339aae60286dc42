"""The per-run context: settings, the Cekura client, the ledger, the guard and the
services the tools call. Built once in the lifespan; tools reach it through the context."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cekura_labs_mcp.server.cekura.client import CekuraClient, RetryPolicy
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.guard import CostGuard
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.logs import get_logger, register_secret
from cekura_labs_mcp.server.services.calls import CallsService
from cekura_labs_mcp.server.services.feedback import FeedbackService
from cekura_labs_mcp.server.services.improve import ImproveService
from cekura_labs_mcp.server.services.overview import OverviewService
from cekura_labs_mcp.server.services.python_metrics import PythonMetricsService
from cekura_labs_mcp.server.services.review import ReviewService
from cekura_labs_mcp.server.services.spend import SpendService
from cekura_labs_mcp.server.services.triage import TriageService
from cekura_labs_mcp.server.services.validation import ValidationService
from cekura_labs_mcp.server.startup import StartupCheck, check_cekura
from pydantic import SecretStr

log = get_logger("labs")


@dataclass
class RunContext:
    settings: Settings
    client: CekuraClient
    ledger: Ledger
    guard: CostGuard
    calls: CallsService
    feedback: FeedbackService
    improve: ImproveService
    spend: SpendService
    review: ReviewService
    triage: TriageService
    validation: ValidationService
    python_metrics: PythonMetricsService
    overview: OverviewService
    sandbox_url: str | None = None
    startup: StartupCheck | None = None


@asynccontextmanager
async def open_context(settings: Settings, *, use_sandbox: bool = False, retry: RetryPolicy | None = None,
                    transport: Any = None, clock: Callable[[], float] | None = None,
                    check_key: bool = False) -> AsyncIterator[RunContext]:
    """`check_key`: with a real key, read once at start-up and say on stderr what answered (`serve` does)."""
    async with AsyncExitStack() as stack:
        base_url, api_key, sandbox_url = await _backend(settings, use_sandbox, stack)
        register_secret(api_key.get_secret_value() if api_key else None)
        client = CekuraClient(
            base_url, api_key, timeout=settings.http_timeout_seconds, max_concurrency=settings.max_concurrency,
            retry=retry or RetryPolicy(max_retries=settings.max_retries,
                                       max_retry_after=settings.max_retry_after_seconds),
            transport=transport, project_id=settings.project_id if sandbox_url is None else None,
        )
        stack.push_async_callback(client.aclose)
        ledger = Ledger.for_backend(settings.data_dir, base_url, api_key.get_secret_value() if api_key else None,
                                    database_url=settings.database_url_value)
        if ledger.dialect == "postgresql":
            # A team's operators see which database and schema the processes share (the password masked).
            log.info("ledger_opened", where=ledger.where, backend=ledger.backend)
        if sandbox_url is not None:
            # The embedded sandbox forgets everything when it stops (its key is new each start): so does its ledger.
            stack.callback(ledger.forget)
        else:
            stack.callback(ledger.close)
        guard = CostGuard(ledger, threshold=settings.confirm_threshold,
                          window_seconds=settings.guard_window_seconds,
                          token_ttl_seconds=settings.confirmation_ttl_seconds,
                          fallback_credits_per_call=settings.credits_per_judge_evaluation, clock=clock)
        improve = ImproveService(client, ledger, settings.poll_interval_seconds)
        spend = SpendService(client, guard, settings.credits_per_judge_evaluation,
                         wait_seconds=settings.poll_timeout_seconds, poll_interval=settings.poll_interval_seconds)
        startup = await check_cekura(client, base_url) if check_key and sandbox_url is None else None
        yield RunContext(
            settings=settings, client=client, ledger=ledger, guard=guard,
            calls=CallsService(client), feedback=FeedbackService(client), improve=improve, spend=spend,
            review=ReviewService(client, ledger, improve, settings, clock=clock or time.time),
            triage=TriageService(client),
            validation=ValidationService(client, ledger, spend, settings),
            python_metrics=PythonMetricsService(client, guard, ledger, settings),
            overview=OverviewService(client, ledger),
            sandbox_url=sandbox_url, startup=startup,
        )


async def _backend(
    settings: Settings, use_sandbox: bool, stack: AsyncExitStack
) -> tuple[str, SecretStr | None, str | None]:
    if settings.api_key is not None and not use_sandbox:
        return settings.api_url, settings.api_key, None
    from cekura_labs_mcp.server.sandbox import SandboxServer

    key = "sandbox-" + secrets.token_hex(8)
    sandbox = SandboxServer(seed=settings.sandbox_seed, api_key=key, dialect=settings.sandbox_dialect)
    sandbox.start()
    stack.callback(sandbox.stop)
    log.warning("sandbox_started", url=sandbox.url,
                note="No CEKURA_API_KEY (or --sandbox): using the built-in demo sandbox, no real data or credits.")
    return sandbox.url, SecretStr(key), sandbox.url
