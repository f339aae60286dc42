"""Typed async client for the Cekura endpoints the labs cycle uses.

Retry policy (the official SDK retries every 5xx, POSTs included; we do better):
- reads (GET) retry on 5xx, timeouts, dropped connections and malformed answers, with backoff;
- every request honours 429 `Retry-After` (bounded), because a 429 means nothing was done;
- a request that provably never left (connection refused) may be retried, whatever its method;
- writes and spends are never retried after a timeout, a 5xx or a dropped answer: the first
  attempt may have landed, so the error says so and what to check instead.
"""

from __future__ import annotations

import functools
import json
import random
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx
from cekura_labs_mcp.server.cekura.models import (
    Agent,
    BillingInfo,
    CallDetail,
    CallPage,
    CallRow,
    ImprovementProposal,
    JudgeProgress,
    JudgeVerdict,
    Metric,
    MetricFeedback,
    MetricHistoryPage,
    MetricPatch,
    ProgressQuestion,
    ProgressState,
    QuestionAnswer,
    SkipQuestion,
    TestSet,
    parse_json,
)
from cekura_labs_mcp.server.errors import (
    AuthenticationError,
    CekuraError,
    InsufficientCreditsError,
    JudgeStillRunningError,
    NotFoundError,
    OutcomeUnknownError,
    ProjectRequiredError,
    RateLimitedError,
    RequestRejectedError,
    ServiceError,
    ValidationFailedError,
)
from cekura_labs_mcp.server.guard import ENDPOINTS, AutoImproveClaim, Endpoint, SpendPermit
from cekura_labs_mcp.server.logs import get_logger
from cekura_labs_mcp.server.steps import Step
from pydantic import SecretStr

log = get_logger("cekura.http")

CALLS_V2 = "/observability/v2/call-logs/"
CALLS = "/observability/v1/call-logs-external/"
CALL_ACTIONS = "/observability/v1/call-logs/"
METRICS = "/test_framework/v1/metrics/"
METRICS_EXTERNAL = "/test_framework/v1/metrics-external/"
REVIEWS = "/test_framework/metric-reviews/"
TEST_SETS = "/test_framework/test-sets/"
BILLING = "/test_framework/billing/info/"
USER_AGENT = "cekura-labs-mcp/0.1"
MAX_IDS_PER_LIST = 200  # the list's largest page: one request reads up to this many calls by id


@dataclass(frozen=True)
class _Versions:
    """One call-log endpoint in its two generations. v1 list and detail are deprecated in the spec and
    Cekura's own MCP server speaks only v2, so v2 is asked first; a deployment that answers 404 there is
    asked v1, and remembered (per endpoint) for the client's lifetime."""

    name: str
    v2: str
    v1: str


LIST = _Versions("list", CALLS_V2, CALLS)
DETAIL = _Versions("detail", CALLS_V2 + "{id}/", CALLS + "{id}/")
VOTE = _Versions("vote", CALLS_V2 + "{id}/mark_metric_vote/", CALLS + "{id}/mark_metric_vote/")
EVALUATE = _Versions("evaluate", CALLS_V2 + "evaluate_metrics/", CALL_ACTIONS + "evaluate_metrics/")
RERUN = _Versions("rerun", CALLS_V2 + "rerun_evaluation/", CALL_ACTIONS + "rerun_evaluation/")
# The endpoints that cost credits (last path segment); `_send` refuses them without a guard permit.
SPENDING_ENDPOINTS = frozenset(ENDPOINTS)
# The docs' Get Agent is v2 (`api-reference/test_framework/get-agent.mdx`); the skills' AGENTS.md lists v1.
AGENT = _Versions("agent", "/test_framework/v2/aiagents/{id}/", "/test_framework/v1/aiagents/{id}/")


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
class _Request:
    """One HTTP request to Cekura, as the retry decision and the error message need it ("call" means a voice
    call everywhere else in this code base)."""

    method: str
    path: str
    operation: str
    is_write: bool
    check_hint: str = ""
    versions: _Versions | None = None
    permit: SpendPermit | None = None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), made once per process:
    loading the CA bundle takes about 50 ms of CPU, which httpx would spend again for every client (one per
    server; HTTP workers and the test suite build many). An SSLContext is safe to share between clients."""
    return httpx.create_ssl_context()


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
        project_id: int | None = None,
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
            verify=tls_context(),
            follow_redirects=False,
        )
        self._retry = retry or RetryPolicy()
        self._slots = anyio.CapacityLimiter(max_concurrency)
        # The project an organisation-level key must name (`CEKURA_PROJECT_ID`); sent where the caller
        # named none, on the endpoints that take one.
        self._project_id = project_id
        # Which generation of each call-log endpoint this deployment answers: "v2", "v1", or not yet known.
        self._generation: dict[str, str] = {}

    @property
    def project_id(self) -> int | None:
        return self._project_id

    def generation(self, endpoint: str) -> str | None:
        """"v2" or "v1" once the deployment has answered that call-log endpoint; None before."""
        return self._generation.get(endpoint)

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
        params: dict[str, Any] = {"page": page, "page_size": page_size, **self._scope(agent_id, project_id)}
        if timestamp_from:
            params["timestamp_from"] = timestamp_from
        if timestamp_to:
            params["timestamp_to"] = timestamp_to
        if call_ids:
            params["call_ids"] = ",".join(str(i) for i in call_ids)
        if filters_v2:
            params["filters_v2"] = json.dumps(filters_v2, separators=(",", ":"))
        data = await self._send(_Request("GET", CALLS, "Listing calls", False, versions=LIST), params=params)
        return CallPage.model_validate(data)

    async def calls_by_ids(
        self, call_ids: Sequence[int], *, agent_id: int | None = None, project_id: int | None = None,
        timestamp_from: str | None = None, timestamp_to: str | None = None,
    ) -> dict[int, CallRow]:
        """The list rows of these calls, one request per 200 ids (the `call_ids` filter), with their
        `updated_at` and `success`: what a poll for fresh results reads instead of one GET per call.
        Calls the list does not return (another agent's, outside the time window) are simply absent."""
        ids = list(dict.fromkeys(call_ids))
        found: dict[int, CallRow] = {}
        for start in range(0, len(ids), MAX_IDS_PER_LIST):
            chunk = ids[start:start + MAX_IDS_PER_LIST]
            page = await self.list_calls(agent_id=agent_id, project_id=project_id, page_size=len(chunk),
                                         call_ids=chunk, timestamp_from=timestamp_from, timestamp_to=timestamp_to)
            wanted = set(chunk)
            found.update({row.id: row for row in page.results if row.id in wanted})
        return found

    async def get_call(self, call_id: int) -> CallDetail:
        data = await self._send(_Request("GET", f"{CALLS}{call_id}/", f"Call {call_id}", False, versions=DETAIL),
                                path_id=call_id)
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
        data = await self._send(_Request("GET", f"{METRICS}{metric_id}/", f"Metric {metric_id}", False))
        return Metric.model_validate(data)

    async def get_agent(self, agent_id: int) -> Agent:
        """One agent: its `description` is what custom code sees as `agent_description`."""
        data = await self._send(_Request("GET", AGENT.v1, f"Agent {agent_id}", False, versions=AGENT),
                                path_id=agent_id)
        return Agent.model_validate(data if isinstance(data, dict) else {})

    async def list_metrics(self, *, agent_id: int | None = None, project_id: int | None = None) -> list[Metric]:
        params = self._scope(agent_id, project_id)
        data = await self._send(_Request("GET", METRICS, "Listing metrics", False), params=params)
        rows = data.get("results", []) if isinstance(data, dict) else data
        return [Metric.model_validate(row) for row in rows or []]

    async def get_progress(self, progress_id: str) -> ProgressState:
        data = await self._send(
            _Request("GET", f"{REVIEWS}process_feedbacks_progress/", f"Auto-improve run {progress_id}", False),
            params={"progress_id": progress_id, **self._scope(None, None)},
        )
        return _progress_state(data)

    async def metric_history(self, metric_id: int, *, page: int = 1, page_size: int = 20) -> MetricHistoryPage:
        """Cekura's saved versions of a metric (newest first, as the history list gives them)."""
        data = await self._send(
            _Request("GET", f"{METRICS_EXTERNAL}{metric_id}/history/", f"The history of metric {metric_id}", False),
            params={"page": page, "page_size": page_size},
        )
        if isinstance(data, list):
            data = {"count": len(data), "results": data}
        return MetricHistoryPage.model_validate(data if isinstance(data, dict) else {})

    async def billing_info(self) -> BillingInfo:
        """Credits remaining and used. Project-scoped keys get 403 here: that is reported as such, not as
        a bad key, because the key works everywhere else."""
        try:
            data = await self._send(_Request("GET", BILLING, "Billing information", False))
        except AuthenticationError as exc:
            raise RequestRejectedError(
                "Cekura does not show billing information to this API key (project-scoped keys cannot read it).",
                "Use an organisation-level key to see the credit balance; everything else works as it is.",
            ) from exc
        return BillingInfo.model_validate(data if isinstance(data, dict) else {})

    async def judge_progress(self, progress_id: str) -> JudgeProgress:
        """One poll of an LLM-judge evaluation started by `start_llm_judge_evaluation`."""
        data = await self._send(
            _Request("GET", f"{METRICS_EXTERNAL}evaluate_metric_progress/", f"Judge evaluation {progress_id}", False),
            params={"progress_id": progress_id},
        )
        return _judge_progress(data)

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
            _Request("POST", f"{CALLS}{call_id}/mark_metric_vote/", f"The vote on call {call_id}", True,
                  f"Open the call in Cekura (or {Step.READ_CALL}) to see whether the vote was recorded before voting "
                  "again.",
                  versions=VOTE),
            json_body=body, path_id=call_id,
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
        if project is not None or self._project_id is not None:
            body["project"] = project if project is not None else self._project_id
        data = await self._send(
            _Request("POST", f"{TEST_SETS}create_from_call_log/", f"Adding call {call_log_id} to the Lab", True,
                  "Check the metric's Lab in Cekura for a test set from this call before adding it again."),
            json_body=body,
        )
        return TestSet.model_validate(data)

    async def process_feedbacks(self, claim: AutoImproveClaim, *, metric_id: int,
                                test_set_ids: Sequence[int] | None = None) -> str:
        """Start auto-improve. Needs the auto-improve log's claim (`AutoImproveRuns.start`): every start is
        in the spend log, and none starts while the same metric and Lab set already run."""
        if not isinstance(claim, AutoImproveClaim):
            raise TypeError("starting auto-improve needs an AutoImproveClaim from the auto-improve log")
        claim.use(metric_id, test_set_ids)
        body: dict[str, Any] = {"metric_id": metric_id}
        if test_set_ids:
            body["test_set_ids"] = list(test_set_ids)
        data = await self._send(
            _Request("POST", f"{REVIEWS}process_feedbacks/", f"Starting auto-improve for metric {metric_id}", True,
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

    async def process_feedbacks_answer(self, progress_id: str, answers: Mapping[str, QuestionAnswer]) -> None:
        """Answer the questions a paused auto-improve run asks, keyed by question id; a `SkipQuestion` sends
        the documented `{"action": "skip"}`. The run resumes on Cekura's side; keep polling."""
        if not answers:
            raise RequestRejectedError("There is no answer to send.", "Answer or skip at least one question.")
        body = {"progress_id": progress_id,
                "answers": {str(qid): (a.model_dump() if isinstance(a, SkipQuestion) else a)
                            for qid, a in answers.items()}}
        await self._send(
            _Request("POST", f"{REVIEWS}process_feedbacks_answer/", f"Answering auto-improve run {progress_id}", True,
                  f"Poll the run ({Step.WAIT_FOR_IMPROVEMENT}): if it no longer asks the question, the answer "
                  "arrived."),
            json_body=body,
        )

    async def process_feedbacks_cancel(self, progress_id: str) -> None:
        """Stop a running auto-improve (nothing it proposed is applied)."""
        await self._send(
            _Request("POST", f"{REVIEWS}process_feedbacks_cancel/", f"Cancelling auto-improve run {progress_id}", True,
                  f"Poll the run ({Step.WAIT_FOR_IMPROVEMENT}) to see whether it stopped."),
            json_body={"progress_id": progress_id},
        )

    async def apply_optimisation_proposal(self, metric_id: int) -> Metric | None:
        """Apply the metric's pending proposal on Cekura's side. The answer's body is undocumented ("Metric
        updated; pending proposal cleared."): the metric is returned when the answer carries it, else None
        (read it with get_metric)."""
        data = await self._send(
            _Request("POST", f"{METRICS_EXTERNAL}{metric_id}/apply_optimisation_proposal/",
                  f"Applying the proposal to metric {metric_id}", True,
                  f"Read the metric ({Step.READ_METRIC}) to see whether the proposal was applied."),
            json_body={},
        )
        if isinstance(data, dict) and "id" in data and "name" in data:
            return Metric.model_validate(data)
        return None

    async def dismiss_optimisation_proposal(self, metric_id: int) -> None:
        await self._send(
            _Request("POST", f"{METRICS_EXTERNAL}{metric_id}/dismiss_optimisation_proposal/",
                  f"Dismissing the proposal for metric {metric_id}", True,
                  "Open the metric's Labs page in Cekura to see whether a proposal is still pending."),
            json_body={},
        )

    async def restore_metric(self, metric_id: int, history_id: int) -> Metric:
        """Put a metric back to one of its history entries (`metric_history`)."""
        data = await self._send(
            _Request("POST", f"{METRICS_EXTERNAL}{metric_id}/restore/", f"Restoring metric {metric_id}", True,
                  f"Read the metric ({Step.READ_METRIC}) to see which version it has now."),
            json_body={"history_id": history_id},
        )
        merged = {"id": metric_id, "name": "", **(data if isinstance(data, dict) else {})}
        return Metric.model_validate(merged)

    async def patch_metric(self, metric_id: int, patch: MetricPatch) -> Metric:
        data = await self._send(
            _Request("PATCH", f"{METRICS}{metric_id}/", f"Updating metric {metric_id}", True,
                  f"Read the metric ({Step.READ_METRIC} / {Step.CHANGE_METRIC} without confirm) to see its current "
                  "text."),
            json_body=patch.body(),
        )
        merged = {"id": metric_id, "name": "", **(data if isinstance(data, dict) else {})}
        return Metric.model_validate(merged)

    async def evaluate_metrics(
        self, permit: SpendPermit, *, agent_id: int | None, project_id: int | None, call_logs: Sequence[int],
        metrics: Sequence[int],
    ) -> list[CallRow]:
        """Start an evaluation. Asynchronous on Cekura: the answer is the calls "in their current state", i.e.
        usually the OLD results. Read new results by polling `calls_by_ids` until `updated_at` moves."""
        _use(permit, "evaluate_metrics", call_logs)
        body: dict[str, Any] = {"call_logs": list(call_logs), "metrics": list(metrics),
                                **self._scope(agent_id, project_id)}
        data = await self._send(
            _Request("POST", f"{CALL_ACTIONS}evaluate_metrics/", f"Evaluating {len(call_logs)} call(s)", True,
                  "Check the calls' results in Cekura before evaluating again: credits may have been spent.",
                  versions=EVALUATE, permit=permit),
            json_body=body,
        )
        return [CallRow.model_validate(row) for row in data or []] if isinstance(data, list) else []

    async def rerun_evaluation(self, permit: SpendPermit, *, agent_id: int, call_logs: Sequence[int]
                               ) -> list[CallDetail]:
        """Start a re-run of every metric of the agent on these calls. Asynchronous on Cekura (non-reviewed
        calls get `success` reset to null first): the answer is not the new results; poll `calls_by_ids`."""
        _use(permit, "rerun_evaluation", call_logs)
        body = {"agent_id": agent_id, "call_logs": list(call_logs)}
        data = await self._send(
            _Request("POST", f"{CALL_ACTIONS}rerun_evaluation/", f"Re-running {len(call_logs)} call(s)", True,
                  "Check the calls' results in Cekura before re-running: credits may have been spent.",
                  versions=RERUN, permit=permit),
            json_body=body,
        )
        return [CallDetail.model_validate(row) for row in data or []] if isinstance(data, list) else []

    async def start_llm_judge_evaluation(
        self, permit: SpendPermit, metric_id: int, *, data: Mapping[str, Any], description: str,
        eval_type: str | None, enum_values: Sequence[str] | None,
    ) -> str | JudgeVerdict:
        """Start one LLM-judge verdict on `data` (what `evaluate_llm_judge_metric` inside custom code asks
        for). The spec answers `{progress_id}` to poll at `evaluate_metric_progress`; a deployment that answers
        the verdict at once gets it returned as is. A spend: never retried once it may have landed."""
        _use(permit, "evaluate_llm_judge_metric")
        body: dict[str, Any] = {"data": dict(data), "description": description}
        if eval_type:
            body["eval_type"] = eval_type
        if enum_values:
            body["enum_values"] = list(enum_values)
        answer = await self._send(
            _Request("POST", f"{METRICS_EXTERNAL}{metric_id}/evaluate_llm_judge_metric/",
                  f"A judge call for metric {metric_id}", True,
                  "It may have been charged; nothing else changed. Run the test again if needed.", permit=permit),
            json_body=body,
        )
        if isinstance(answer, dict):
            progress_id = answer.get("progress_id") or answer.get("job_id")
            if progress_id:
                return str(progress_id)
            if "result" in answer:
                return JudgeVerdict.model_validate(answer)
        raise RequestRejectedError(
            f"Cekura accepted the judge call for metric {metric_id} but returned neither a progress id nor a "
            "result.", "Run the test again; if it persists the deployment's judge endpoint is not the documented one.")

    async def evaluate_llm_judge_metric(
        self, permit: SpendPermit, metric_id: int, *, data: Mapping[str, Any], description: str,
        eval_type: str | None, enum_values: Sequence[str] | None, patience_seconds: float = 60.0,
        poll_interval: float = 0.25,
    ) -> JudgeVerdict:
        """Start a judge evaluation and wait for its verdict, polling at most `patience_seconds`."""
        started = await self.start_llm_judge_evaluation(permit, metric_id, data=data, description=description,
                                                        eval_type=eval_type, enum_values=enum_values)
        if isinstance(started, JudgeVerdict):
            return started
        return await self.wait_for_judge(started, patience_seconds=patience_seconds, poll_interval=poll_interval)

    async def wait_for_judge(
        self, progress_id: str, *, patience_seconds: float = 60.0, poll_interval: float = 0.25,
    ) -> JudgeVerdict:
        """Poll a judge evaluation until it has a verdict, bounded by `patience_seconds`."""
        deadline = time.monotonic() + patience_seconds
        polls = 0
        while True:
            state = await self.judge_progress(progress_id)
            if state.done:
                if state.verdict is not None:
                    return state.verdict
                raise RequestRejectedError(
                    f"The judge evaluation {progress_id} failed on Cekura: "
                    f"{state.error or state.status or 'no reason given'}.",
                    "Check the description and the data passed to evaluate_llm_judge_metric, then run again.")
            # Short first waits (a judge call takes seconds), longer ones after: at most 2 s apart.
            wait = min(poll_interval * (1.5 ** polls), max(poll_interval, 2.0))
            if time.monotonic() + wait > deadline:
                raise JudgeStillRunningError(progress_id, patience_seconds)
            await anyio.sleep(wait)
            polls += 1

    # ---- scope ---------------------------------------------------------------------------

    def _scope(self, agent_id: int | None, project_id: int | None) -> dict[str, Any]:
        """`agent_id` and/or `project_id` as the caller gave them; the configured project fills in a missing
        `project_id` (an organisation-level key needs it even with an agent)."""
        scope: dict[str, Any] = {}
        if agent_id is not None:
            scope["agent_id"] = agent_id
        project = project_id if project_id is not None else self._project_id
        if project is not None:
            scope["project_id"] = project
        return scope

    # ---- transport -----------------------------------------------------------------------

    async def _send(
        self, request: _Request, *, params: Mapping[str, Any] | None = None, json_body: Any = None,
        path_id: int | None = None,
    ) -> Any:
        if request.versions is None:
            return await self._send_once(request, params=params, json_body=json_body)
        return await self._send_versioned(request, request.versions, params=params, json_body=json_body,
                                          path_id=path_id)

    async def _send_versioned(
        self, request: _Request, versions: _Versions, *, params: Mapping[str, Any] | None, json_body: Any,
        path_id: int | None,
    ) -> Any:
        """v2 first; v1 when v2 answers 404 and this deployment has never answered v2 for the endpoint. A 404
        from both means the object is missing (and nothing is remembered); a 404 from an endpoint known to
        answer is an ordinary "not found". A 404 means nothing was done, so even a write may go to v1."""

        def on(template: str) -> _Request:
            path = template.format(id=path_id) if path_id is not None else template
            return replace(request, path=path, versions=None)

        known = self._generation.get(versions.name)
        if known == "v1":
            return await self._send_once(on(versions.v1), params=params, json_body=json_body)
        try:
            answer = await self._send_once(on(versions.v2), params=params, json_body=json_body)
        except NotFoundError:
            if known == "v2":
                raise
            answer = await self._send_once(on(versions.v1), params=params, json_body=json_body)
            self._generation[versions.name] = "v1"
            log.info("cekura_endpoint_generation", endpoint=versions.name, generation="v1")
            return answer
        self._generation[versions.name] = "v2"
        return answer

    async def _send_once(
        self, request: _Request, *, params: Mapping[str, Any] | None = None, json_body: Any = None
    ) -> Any:
        if request.path.rstrip("/").rsplit("/", 1)[-1] in SPENDING_ENDPOINTS and request.permit is None:
            # Whatever method is added later: a request to a spending endpoint leaves only with a permit.
            raise TypeError(f"{request.path} spends credits: it needs a SpendPermit from the cost guard")
        attempt = 0
        while True:
            outcome = await self._attempt(request, params, json_body, attempt)
            if not isinstance(outcome, _Retry):
                return outcome
            if attempt >= self._retry.max_retries:
                raise outcome.final
            await anyio.sleep(outcome.wait if outcome.wait is not None else self._retry.backoff(attempt))
            attempt += 1

    async def _attempt(self, request: _Request, params: Mapping[str, Any] | None, json_body: Any, attempt: int) -> Any:
        queued = started = time.perf_counter()
        status: int | None = None
        try:
            async with self._slots:
                started = time.perf_counter()
                response = await self._http.request(request.method, request.path, params=params, json=json_body)
            status = response.status_code
            return self._interpret(request, response)
        except httpx.ConnectError as exc:
            # Refused before anything was sent: safe to retry whatever the method.
            return _Retry(ServiceError(f"cannot connect to Cekura ({type(exc).__name__})"), None)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            detail = f"no answer ({type(exc).__name__})"
            if request.is_write:
                raise OutcomeUnknownError(request.operation, detail, request.check_hint) from None
            return _Retry(ServiceError(detail), None)
        finally:
            log.info("cekura_request", method=request.method, path=request.path, status=status, attempt=attempt,
                     duration_ms=round((time.perf_counter() - started) * 1000, 1),
                     queued_ms=round((started - queued) * 1000, 1))

    def _interpret(self, request: _Request, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 429:
            wait = _retry_after(response)
            if wait is not None and wait > self._retry.max_retry_after:
                raise RateLimitedError(wait)
            return _Retry(RateLimitedError(wait), wait if wait is not None else None)
        if status >= 500:
            if request.is_write:
                raise OutcomeUnknownError(request.operation, f"Cekura answered HTTP {status}", request.check_hint)
            return _Retry(ServiceError(f"HTTP {status} from Cekura"), None)
        if status >= 400:
            raise _client_error(request, response)
        if status == 204 or not response.content:
            return {}
        try:
            return parse_json(response.content)
        except ValueError:
            if request.is_write:
                raise OutcomeUnknownError(request.operation, "the answer was not valid JSON",
                                          request.check_hint) from None
            return _Retry(ServiceError("the answer was not valid JSON"), None)


def _use(permit: SpendPermit, endpoint: Endpoint, call_logs: Sequence[int] = ()) -> None:
    """Every spend passes the cost guard: the permit is checked (and one of its requests used) before the
    request is built. The type says so to mypy; this says so at run time, whatever the caller passed."""
    if not isinstance(permit, SpendPermit):
        raise TypeError(f"{endpoint} spends credits: it needs a SpendPermit from the cost guard")
    permit.use(endpoint, call_logs)


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


def _client_error(request: _Request, response: httpx.Response) -> CekuraError:
    status = response.status_code
    if status in (401, 403):
        return AuthenticationError(status)
    if status == 404:
        return NotFoundError(request.operation)
    body = _json_or_none(response)
    about_project = _project_complaint(body)
    if status == 400 and about_project is not None:
        return ProjectRequiredError(request.operation, about_project)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and "insufficient balance" in detail.lower():
        return InsufficientCreditsError(request.operation, detail)
    if status == 400 and isinstance(body, dict) and set(body) == {"detail"} and detail:
        # A refusal with a reason but no field (docs: "Timestamp filter value is too far in the past ...").
        return RequestRejectedError(f"{request.operation} was refused by Cekura: {str(detail).rstrip('.')}.",
                                    "Change what the reason names (a time window, an id) and request again; "
                                    "nothing was changed.")
    if status == 400 and isinstance(body, dict) and body:
        return ValidationFailedError({str(k): _messages(v) for k, v in body.items()})
    return RequestRejectedError(
        f"{request.operation} was refused by Cekura (HTTP {status}){': ' + str(detail) if detail else ''}.",
        "Check the arguments; nothing was changed.",
    )


def _project_complaint(body: Any) -> str | None:
    """The message of a 400 that is about `project_id` (the field named, or named in the text)."""
    if isinstance(body, dict):
        if "project_id" in body:
            return " ".join(_messages(body["project_id"]))[:200] or "project_id is required"
        for value in body.values():
            text = " ".join(_messages(value))
            if "project_id" in text:
                return text[:200]
    if isinstance(body, list | str):
        text = " ".join(_messages(body))
        if "project_id" in text:
            return text[:200]
    return None


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return parse_json(response.content)
    except ValueError:
        return None


def _progress_state(data: Any) -> ProgressState:
    """The progress answer in either shape: the spec's (`ProcessFeedbacksResponse` fields at the top level) or
    the docs' (`mcp/auto-optimize-metrics.mdx`: `status` "success"/"error", the proposal under `output.*`, the
    optimizer's code and score under `output.meta_harness`). A finished run without a description, and an
    `error` status, are done: the caller reports them, it does not wait for them."""
    if not isinstance(data, dict):
        return ProgressState(done=False)
    status = data.get("status") if isinstance(data.get("status"), str) else None
    progress = data.get("progress") if isinstance(data.get("progress"), int | float) else None
    raw_output = data.get("output")
    output: dict[str, Any] = raw_output if isinstance(raw_output, dict) else {}
    proposal = {**data, **output}
    error = _progress_error(data, output)
    state = status.lower() if status else None
    if proposal.get("improved_metric_description") and state not in _FAILED:
        return ProgressState(done=True, status=status, progress=1.0,
                             proposal=ImprovementProposal.model_validate(_meta_harness(proposal)))
    if state in _FAILED:
        return ProgressState(done=True, status=status, progress=progress, error=error,
                             failed=state not in _CANCELLED)
    if state in _SUCCEEDED:
        return ProgressState(done=True, status=status, progress=1.0, failed=True,
                             error=error or "the run finished but its answer carries no improved_metric_description")
    return ProgressState(done=False, status=status, progress=progress, error=error, questions=_questions(data))


def _progress_error(data: dict[str, Any], output: dict[str, Any]) -> str | None:
    """What a failed run says went wrong: `error`/`detail`/`message`, at the top or under `output`."""
    if isinstance(data.get("output"), str) and data["output"].strip():
        return str(data["output"]).strip()
    for where in (output, data):
        for key in ("error", "error_message", "detail", "message"):
            value = where.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, dict | list) and value:
                return json.dumps(value)[:500]
    return None


def _meta_harness(proposal: dict[str, Any]) -> dict[str, Any]:
    """The docs' `meta_harness` block read as the spec's fields where those are missing: `optimized_code` is
    `custom_code`, its `type` the suggested metric type, and `score`/`num_correct`/`num_total` the score after
    optimisation (`new_score`)."""
    harness = proposal.get("meta_harness")
    if not isinstance(harness, dict):
        return proposal
    merged = dict(proposal)
    if not merged.get("custom_code") and isinstance(harness.get("optimized_code"), str):
        merged["custom_code"] = harness["optimized_code"]
    if not merged.get("type") and isinstance(harness.get("type"), str):
        merged["type"] = harness["type"]
    score = {k: harness[k] for k in ("score", "num_correct", "num_total") if harness.get(k) is not None}
    if merged.get("new_score") is None and score:
        merged["new_score"] = score
    return merged


_QUESTION_KEYS = ("questions", "pending_questions", "open_questions")
_DONE = {"completed", "complete", "done", "success", "succeeded", "finished"}
_SUCCEEDED = {"success", "succeeded", "completed", "complete"}
_CANCELLED = {"cancelled", "canceled"}
_FAILED = {"failed", "error", "errored", *_CANCELLED}


def _questions(data: dict[str, Any]) -> list[ProgressQuestion]:
    """The questions a paused run asks: a list under one of the likely names, or one `question` object."""
    for key in _QUESTION_KEYS:
        value = data.get(key)
        if isinstance(value, list) and value:
            return [q for q in (ProgressQuestion.model_validate(v) for v in value) if q.id or q.text]
    single = data.get("question")
    if isinstance(single, dict):
        question = ProgressQuestion.model_validate(single)
        return [question] if question.id or question.text else []
    return []


def _judge_progress(data: Any) -> JudgeProgress:
    if not isinstance(data, dict):
        return JudgeProgress(done=False)
    status = data.get("status") if isinstance(data.get("status"), str) else None
    error = data.get("error") if isinstance(data.get("error"), str) and data.get("error") else None
    output = data.get("output")
    if isinstance(output, dict) and ("result" in output or "explanation" in output):
        return JudgeProgress(done=True, status=status, verdict=JudgeVerdict.model_validate(output))
    if "result" in data and (status is None or status.lower() in _DONE):
        return JudgeProgress(done=True, status=status, verdict=JudgeVerdict.model_validate(data))
    failed = error is not None or (status is not None and status.lower() in _FAILED)
    return JudgeProgress(done=failed, status=status, error=error)
