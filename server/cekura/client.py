"""Typed async client for the Cekura endpoints the labs cycle uses.

Retry policy (the official SDK retries every 5xx, POSTs included; we do better):
- reads (GET) retry on 5xx, timeouts, dropped connections and malformed answers, with backoff;
- every request honours 429 `Retry-After` (bounded), because a 429 means nothing was done;
- a request that provably never left (connection refused) may be retried, whatever its method;
- writes and spends are never retried after a timeout, a 5xx or a dropped answer: the first
  attempt may have landed, so the error says so and what to check instead.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from cekura_labs_mcp.server.cekura.models import (
    CallDetail,
    CallPage,
    CallRow,
    ImprovementProposal,
    JudgeVerdict,
    Metric,
    MetricFeedback,
    MetricPatch,
    ProgressState,
    TestSet,
)
from cekura_labs_mcp.server.errors import (
    AuthenticationError,
    CekuraError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestRejectedError,
    ServiceError,
    ValidationFailedError,
)
from cekura_labs_mcp.server.logs import get_logger
from pydantic import SecretStr

log = get_logger("cekura.http")

CALLS = "/observability/v1/call-logs-external/"
CALL_ACTIONS = "/observability/v1/call-logs/"
METRICS = "/test_framework/v1/metrics/"
METRICS_EXTERNAL = "/test_framework/v1/metrics-external/"
REVIEWS = "/test_framework/metric-reviews/"
TEST_SETS = "/test_framework/test-sets/"
USER_AGENT = "cekura-labs-mcp/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    max_retry_after: float = 30.0
    backoff_base: float = 0.25
    backoff_cap: float = 4.0

    def backoff(self, attempt: int) -> float:
        delay: float = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return delay * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class _Call:
    """What a request is, for the retry decision and the error message."""

    method: str
    path: str
    operation: str
    is_write: bool
    check_hint: str = ""


class CekuraClient:
    """One per server: a pooled `httpx.AsyncClient`, bounded concurrency, typed answers."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key is not None:
            headers["X-CEKURA-API-KEY"] = api_key.get_secret_value()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
            follow_redirects=False,
        )
        self._retry = retry or RetryPolicy()
        self._slots = anyio.CapacityLimiter(max_concurrency)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CekuraClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # ---- reads -------------------------------------------------------------------------

    async def list_calls(
        self,
        *,
        agent_id: int | None = None,
        project_id: int | None = None,
        page: int = 1,
        page_size: int = 50,
        timestamp_from: str | None = None,
        timestamp_to: str | None = None,
        call_ids: Sequence[int] | None = None,
        filters_v2: Mapping[str, Any] | None = None,
    ) -> CallPage:
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if agent_id is not None:
            params["agent_id"] = agent_id
        if project_id is not None:
            params["project_id"] = project_id
        if timestamp_from:
            params["timestamp_from"] = timestamp_from
        if timestamp_to:
            params["timestamp_to"] = timestamp_to
        if call_ids:
            params["call_ids"] = ",".join(str(i) for i in call_ids)
        if filters_v2:
            params["filters_v2"] = json.dumps(filters_v2, separators=(",", ":"))
        data = await self._send(_Call("GET", CALLS, "Listing calls", False), params=params)
        return CallPage.model_validate(data)

    async def get_call(self, call_id: int) -> CallDetail:
        data = await self._send(_Call("GET", f"{CALLS}{call_id}/", f"Call {call_id}", False))
        return CallDetail.model_validate(data)

    async def get_calls(self, call_ids: Sequence[int]) -> dict[int, CallDetail]:
        """Several calls at once: never more than `max_concurrency` requests in flight (the same limiter
        as every other request). Each read retries on its own; the first that still fails cancels the
        rest and is raised."""
        found: dict[int, CallDetail] = {}
        failures: list[CekuraError] = []

        async def one(call_id: int, scope: anyio.CancelScope) -> None:
            try:
                found[call_id] = await self.get_call(call_id)
            except CekuraError as exc:
                failures.append(exc)
                scope.cancel()

        async with anyio.create_task_group() as group:
            for call_id in dict.fromkeys(call_ids):
                group.start_soon(one, call_id, group.cancel_scope)
        if failures:
            raise failures[0]
        return found

    async def get_metric(self, metric_id: int) -> Metric:
        data = await self._send(_Call("GET", f"{METRICS}{metric_id}/", f"Metric {metric_id}", False))
        return Metric.model_validate(data)

    async def list_metrics(self, *, agent_id: int | None = None, project_id: int | None = None) -> list[Metric]:
        params: dict[str, Any] = {}
        if agent_id is not None:
            params["agent_id"] = agent_id
        if project_id is not None:
            params["project_id"] = project_id
        data = await self._send(_Call("GET", METRICS, "Listing metrics", False), params=params)
        rows = data.get("results", []) if isinstance(data, dict) else data
        return [Metric.model_validate(row) for row in rows or []]

    async def get_progress(self, progress_id: str) -> ProgressState:
        data = await self._send(
            _Call("GET", f"{REVIEWS}process_feedbacks_progress/", f"Auto-improve run {progress_id}", False),
            params={"progress_id": progress_id},
        )
        return _progress_state(data)

    # ---- writes and spends (never retried once they may have landed) -------------------

    async def mark_metric_vote(
        self,
        call_id: int,
        *,
        metric_id: int,
        thumbs_up: bool,
        expected_value: Any,
        feedback: str | None,
    ) -> str:
        body = {"metric_id": metric_id, "thumbs_up": thumbs_up, "expected_value": expected_value,
                "feedback": feedback}
        data = await self._send(
            _Call("POST", f"{CALLS}{call_id}/mark_metric_vote/", f"The vote on call {call_id}", True,
                  "Open the call in Cekura (or get_call) to see whether the vote was recorded before voting again."),
            json_body=body,
        )
        return str(data.get("detail", "")) if isinstance(data, dict) else ""

    async def create_test_set_from_call(
        self,
        *,
        call_log_id: int,
        metrics: Sequence[MetricFeedback],
        name: str | None = None,
        project: int | None = None,
    ) -> TestSet:
        body: dict[str, Any] = {
            "call_log_id": call_log_id,
            "metrics": [m.model_dump() for m in metrics],
        }
        if name:
            body["name"] = name
        if project is not None:
            body["project"] = project
        data = await self._send(
            _Call("POST", f"{TEST_SETS}create_from_call_log/", f"Adding call {call_log_id} to the Lab", True,
                  "Check the metric's Lab in Cekura for a test set from this call before adding it again."),
            json_body=body,
        )
        return TestSet.model_validate(data)

    async def process_feedbacks(self, *, metric_id: int, test_set_ids: Sequence[int] | None = None) -> str:
        body: dict[str, Any] = {"metric_id": metric_id}
        if test_set_ids:
            body["test_set_ids"] = list(test_set_ids)
        data = await self._send(
            _Call("POST", f"{REVIEWS}process_feedbacks/", f"Starting auto-improve for metric {metric_id}", True,
                  "Check the metric's Labs page in Cekura for a running improvement before starting another."),
            json_body=body,
        )
        progress_id = data.get("progress_id") or data.get("job_id") if isinstance(data, dict) else None
        if not progress_id:
            raise RequestRejectedError(
                "Cekura accepted the auto-improve request but returned no progress id.",
                "Look at the metric's Labs page in Cekura for the run.",
            )
        return str(progress_id)

    async def patch_metric(self, metric_id: int, patch: MetricPatch) -> Metric:
        data = await self._send(
            _Call("PATCH", f"{METRICS}{metric_id}/", f"Updating metric {metric_id}", True,
                  "Read the metric (get_metric / patch_metric without confirm) to see its current text."),
            json_body=patch.body(),
        )
        merged = {"id": metric_id, "name": "", **(data if isinstance(data, dict) else {})}
        return Metric.model_validate(merged)

    async def evaluate_metrics(
        self, *, agent_id: int | None, project_id: int | None, call_logs: Sequence[int], metrics: Sequence[int]
    ) -> list[CallRow]:
        body: dict[str, Any] = {"call_logs": list(call_logs), "metrics": list(metrics)}
        if agent_id is not None:
            body["agent_id"] = agent_id
        if project_id is not None:
            body["project_id"] = project_id
        data = await self._send(
            _Call("POST", f"{CALL_ACTIONS}evaluate_metrics/", f"Evaluating {len(call_logs)} call(s)", True,
                  "Check the calls' results in Cekura before evaluating again: credits may have been spent."),
            json_body=body,
        )
        return [CallRow.model_validate(row) for row in data or []]

    async def rerun_evaluation(self, *, agent_id: int, call_logs: Sequence[int]) -> list[CallDetail]:
        body = {"agent_id": agent_id, "call_logs": list(call_logs)}
        data = await self._send(
            _Call("POST", f"{CALL_ACTIONS}rerun_evaluation/", f"Re-running {len(call_logs)} call(s)", True,
                  "Check the calls' results in Cekura before re-running: credits may have been spent."),
            json_body=body,
        )
        return [CallDetail.model_validate(row) for row in data or []]

    async def evaluate_llm_judge_metric(
        self, metric_id: int, *, data: Mapping[str, Any], description: str, eval_type: str | None,
        enum_values: Sequence[str] | None,
    ) -> JudgeVerdict:
        """One LLM-judge verdict on `data`, as `evaluate_llm_judge_metric` inside custom code asks for it.
        The path is the official SDK's (`metrics.evaluate_llm_judge_metric`, which sends its keyword
        arguments as the JSON body); the body carries the function's documented parameters. A spend:
        never retried once it may have landed."""
        body: dict[str, Any] = {"data": dict(data), "description": description}
        if eval_type:
            body["eval_type"] = eval_type
        if enum_values:
            body["enum_values"] = list(enum_values)
        answer = await self._send(
            _Call("POST", f"{METRICS_EXTERNAL}{metric_id}/evaluate_llm_judge_metric/",
                  f"A judge call for metric {metric_id}", True,
                  "It may have been charged; nothing else changed. Run the test again if needed."),
            json_body=body,
        )
        return JudgeVerdict.model_validate(answer if isinstance(answer, dict) else {})

    # ---- transport -----------------------------------------------------------------------

    async def _send(
        self, call: _Call, *, params: Mapping[str, Any] | None = None, json_body: Any = None
    ) -> Any:
        attempt = 0
        while True:
            outcome = await self._attempt(call, params, json_body, attempt)
            if not isinstance(outcome, _Retry):
                return outcome
            if attempt >= self._retry.max_retries:
                raise outcome.final
            await anyio.sleep(outcome.wait if outcome.wait is not None else self._retry.backoff(attempt))
            attempt += 1

    async def _attempt(self, call: _Call, params: Mapping[str, Any] | None, json_body: Any, attempt: int) -> Any:
        queued = started = time.perf_counter()
        status: int | None = None
        try:
            async with self._slots:
                started = time.perf_counter()
                response = await self._http.request(call.method, call.path, params=params, json=json_body)
            status = response.status_code
            return self._interpret(call, response)
        except httpx.ConnectError as exc:
            # Refused before anything was sent: safe to retry whatever the method.
            return _Retry(ServiceError(f"cannot connect to Cekura ({type(exc).__name__})"), None)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            detail = f"no answer ({type(exc).__name__})"
            if call.is_write:
                raise OutcomeUnknownError(call.operation, detail, call.check_hint) from None
            return _Retry(ServiceError(detail), None)
        finally:
            log.info("cekura_request", method=call.method, path=call.path, status=status, attempt=attempt,
                     duration_ms=round((time.perf_counter() - started) * 1000, 1),
                     queued_ms=round((started - queued) * 1000, 1))

    def _interpret(self, call: _Call, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 429:
            wait = _retry_after(response)
            if wait is not None and wait > self._retry.max_retry_after:
                raise RateLimitedError(wait)
            return _Retry(RateLimitedError(wait), wait if wait is not None else None)
        if status >= 500:
            if call.is_write:
                raise OutcomeUnknownError(call.operation, f"Cekura answered HTTP {status}", call.check_hint)
            return _Retry(ServiceError(f"HTTP {status} from Cekura"), None)
        if status >= 400:
            raise _client_error(call, response)
        if status == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            if call.is_write:
                raise OutcomeUnknownError(call.operation, "the answer was not valid JSON", call.check_hint) from None
            return _Retry(ServiceError("the answer was not valid JSON"), None)


@dataclass
class _Retry:
    final: CekuraError
    wait: float | None


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _client_error(call: _Call, response: httpx.Response) -> CekuraError:
    status = response.status_code
    if status in (401, 403):
        return AuthenticationError(status)
    if status == 404:
        return NotFoundError(call.operation)
    body = _json_or_none(response)
    if status == 400 and isinstance(body, dict) and body:
        return ValidationFailedError({str(k): _messages(v) for k, v in body.items()})
    detail = body.get("detail") if isinstance(body, dict) else None
    return RequestRejectedError(
        f"{call.operation} was refused by Cekura (HTTP {status}){': ' + str(detail) if detail else ''}.",
        "Check the arguments; nothing was changed.",
    )


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _progress_state(data: Any) -> ProgressState:
    if not isinstance(data, dict):
        return ProgressState(done=False)
    status = data.get("status") if isinstance(data.get("status"), str) else None
    progress = data.get("progress") if isinstance(data.get("progress"), int | float) else None
    error = data.get("error") if isinstance(data.get("error"), str) else None
    if data.get("improved_metric_description"):
        return ProgressState(done=True, status=status, progress=1.0,
                             proposal=ImprovementProposal.model_validate(data))
    failed = status is not None and status.lower() in {"failed", "error", "cancelled"}
    return ProgressState(done=failed, status=status, progress=progress, error=error)
