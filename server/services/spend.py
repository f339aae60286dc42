"""Evaluations that cost credits: resolve exactly which calls, count them, then ask the guard.

`"all"` and filters are resolved here into an explicit list of call ids by walking the list
endpoint; the spend request always carries that list, never `"all"`, so what is sent is exactly
what was counted and (where needed) confirmed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.cekura.results import shown
from cekura_labs_mcp.server.errors import CekuraError, InputError, LabsError, NotFoundError, OutcomeUnknownError
from cekura_labs_mcp.server.guard import (
    Approval,
    AutoImproveClaim,
    AutoImproveRuns,
    AutoImproveStart,
    CostGuard,
    Endpoint,
    GuardRefusal,
    PlannedMetric,
    SpendPlan,
    auto_improve_subject,
)
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.services.calls import CallFilter, require_scope
from cekura_labs_mcp.server.services.freshness import Mark, mark_of, read_calls, wait_for_fresh
from cekura_labs_mcp.server.steps import Step
from pydantic import BaseModel, Field

Operation = Literal["rerun_evaluation", "evaluate_metrics"]
MAX_RESOLVED_CALLS = 5000
PAGE = 200


class CallSelection(BaseModel):
    """Which calls to evaluate: explicit ids, or `"all"` calls matching the filter/time window."""

    call_ids: list[int] | Literal["all"]
    selection: CallFilter = Field(default_factory=CallFilter)


class MetricCost(BaseModel):
    id: int
    name: str
    credits: float = Field(description="Credits per call (Cekura's metric_cost; custom_code metrics are free).")
    cost_known: bool = Field(description="False when the metric does not state its cost and the configured "
                                         "price per LLM-judge evaluation was assumed.")


class SpendEstimate(BaseModel):
    """What a spend would cost, counted by the server, before anything is spent."""

    operation: str
    calls: int = Field(description="Calls the server counted (what would be sent).")
    call_ids: list[int] = Field(description="The exact set (first 1000).")
    metrics: list[MetricCost] = Field(description="Metrics that will run (Cekura runs every metric assigned).")
    credits: float = Field(description="Estimated credits: the metrics' costs summed over the calls.")
    credits_remaining: float | None = Field(description="From Cekura's billing info; null if it did not answer.")
    needs_confirmation: bool = Field(description="Above the guard's limit: a real run asks the person first.")
    why: str | None = Field(default=None, description="Which limit, when needs_confirmation.")
    window_calls: int = Field(description="Calls already allowed in the guard's rolling window.")
    window_credits: float


class SpendResult(BaseModel):
    operation: str
    calls: int
    credits_estimated: float
    spent: bool = Field(description="False for estimate_only: nothing was sent.")
    confirmation: str = Field(description="How the spend was allowed: none (under the limit), elicitation, token, "
                                          "or not_sent (estimate_only).")
    estimate: SpendEstimate
    results: list[dict[str, str | int | None]] = Field(
        description="Per call and metric: the new value, read only after Cekura finished evaluating the call "
                    f"(compact). Use {Step.READ_CALL} for explanations.")
    truncated: int = Field(default=0, description="Result rows left out to keep this answer short.")
    still_evaluating: list[int] = Field(
        default_factory=list, description="Calls Cekura had not finished evaluating when this answer was given: "
                                          f"read them later with {Step.LIST_CALLS}(call_ids=...) or {Step.READ_CALL}; "
                                          "nothing "
                                          "needs to be spent again.")


async def credits_remaining(client: CekuraClient) -> float | None:
    """The balance from Cekura's billing info, or None where it does not answer (project-scoped keys get
    403, some deployments 404): the figures then say it is unknown, they never guess it."""
    try:
        return (await client.billing_info()).credits_remaining
    except CekuraError:
        return None


def estimate_of(guard: CostGuard, plan: SpendPlan) -> SpendEstimate:
    """The figures of a plan, as an estimate_only answer and every confirmation question give them."""
    window = guard.window()
    why = guard.over_limit(plan, window) if plan.call_count else None
    metrics = plan.metrics or tuple(PlannedMetric(i, "", 0.0) for i in plan.judge_metric_ids)
    return SpendEstimate(
        operation=plan.operation, calls=plan.call_count, call_ids=list(plan.call_ids[:1000]),
        metrics=[MetricCost(id=m.id, name=m.name, credits=m.credits, cost_known=m.cost_known) for m in metrics],
        credits=plan.credits, credits_remaining=plan.credits_remaining, needs_confirmation=why is not None,
        why=why, window_calls=window.calls, window_credits=window.credits)


def metric_credits(metric: Metric, fallback: float) -> tuple[float, bool]:
    """Credits one evaluation of `metric` costs, and whether Cekura said so: `metric_cost` where present,
    0 for custom_code (Python) metrics, otherwise the configured LLM-judge price."""
    if metric.metric_cost is not None:
        return metric.metric_cost, True
    if not metric.is_llm_judge:
        return 0.0, True
    return fallback, False


class SpendService:
    def __init__(self, client: CekuraClient, guard: CostGuard, credits_per_evaluation: float, *,
                 wait_seconds: float = 45.0, poll_interval: float = 1.0) -> None:
        self._client = client
        self._guard = guard
        self._credits = credits_per_evaluation
        self._wait = wait_seconds
        self._interval = poll_interval

    async def credits_remaining(self) -> float | None:
        return await credits_remaining(self._client)

    def estimate(self, plan: SpendPlan) -> SpendEstimate:
        return estimate_of(self._guard, plan)

    def estimate_only(self, plan: SpendPlan) -> SpendResult:
        if plan.call_count == 0:
            raise LabsError("No calls matched, so there is nothing to evaluate (and nothing to estimate).",
                            f"Check the call selection ({Step.LIST_CALLS} shows what matches).")
        return SpendResult(operation=plan.operation, calls=plan.call_count, credits_estimated=plan.credits,
                           spent=False, confirmation="not_sent", estimate=self.estimate(plan), results=[])

    @property
    def guard(self) -> CostGuard:
        return self._guard

    async def plan(
        self, operation: Operation, *, agent_id: int | None, project_id: int | None, chosen: CallSelection,
    ) -> SpendPlan:
        require_scope(agent_id, project_id)
        if operation == "rerun_evaluation" and agent_id is None:
            raise InputError("agent_id", "a re-run is per agent.", "Pass agent_id (the re-run covers every "
                             "metric of that agent).")
        rows = await self._resolve(agent_id, project_id, chosen)
        metrics = await self._client.list_metrics(agent_id=agent_id, project_id=project_id)
        if not metrics:
            raise LabsError("No metrics are assigned, so the cost cannot be estimated and nothing would run.",
                            f"Check the agent_id/project_id ({Step.LIST_METRICS} shows the metrics).")
        return await self.plan_over(operation, agent_id=agent_id, project_id=project_id, rows=rows,
                                    metrics=metrics)

    async def plan_over(
        self, operation: str, *, agent_id: int | None, project_id: int | None, rows: Sequence[CallRow],
        metrics: Sequence[Metric], endpoint: Endpoint | None = None,
    ) -> SpendPlan:
        """The plan for evaluating exactly `rows` with every metric of `metrics` assigned to each call: the
        credits from each metric's cost, and the balance, for the person to see before anything is spent."""
        costs = {m.id: metric_credits(m, self._credits) for m in metrics}
        per_call = [sum(costs[m.id][0] for m in _metrics_for(row, metrics)) for row in rows]
        ran = {m.id: m for row in rows for m in _metrics_for(row, metrics)} if rows else {m.id: m for m in metrics}
        planned = tuple(PlannedMetric(m.id, m.name, costs[m.id][0], costs[m.id][1])
                        for m in sorted(ran.values(), key=lambda m: m.id))
        return SpendPlan(
            operation=operation, agent_id=agent_id, project_id=project_id,
            call_ids=tuple(sorted(row.id for row in rows)),
            judge_metric_ids=tuple(sorted(m.id for m in metrics if m.is_llm_judge)),
            code_metric_ids=tuple(sorted(m.id for m in metrics if not m.is_llm_judge)),
            credits=round(sum(per_call), 4), credits_per_call=max(per_call, default=0.0), metrics=planned,
            credits_remaining=await self.credits_remaining(), endpoint=endpoint)

    async def execute(
        self, plan: SpendPlan, *, token: str | None, approval: Approval, requested_metrics: Sequence[int],
        wait_for_results: bool = True,
    ) -> SpendResult:
        """Spend, then (unless the caller waits itself) read the new results once Cekura has finished: its
        evaluation runs in the background and the POST answers with the calls as they were."""
        deadline = time.monotonic() + self._wait
        marks: dict[int, Mark] = {}
        if wait_for_results and plan.call_ids:
            # Each call's state just before the spend: what its new result must move past.
            before = await read_calls(self._client, agent_id=plan.agent_id, project_id=plan.project_id,
                                      call_ids=plan.call_ids)
            marks = {call_id: mark_of(before[call_id]) if call_id in before else Mark() for call_id in plan.call_ids}
        decision = await self._guard.authorize(plan, token=token, approval=approval)
        try:
            if plan.sends == "rerun_evaluation":
                assert plan.agent_id is not None
                calls = await self._client.rerun_evaluation(decision, agent_id=plan.agent_id,
                                                            call_logs=plan.call_ids)
                rows = [(c.id, c.evaluation.metrics if c.evaluation else []) for c in calls]
            else:
                listed = await self._client.evaluate_metrics(
                    decision, agent_id=plan.agent_id, project_id=plan.project_id, call_logs=plan.call_ids,
                    metrics=requested_metrics or plan.judge_metric_ids)
                rows = [(c.id, c.metrics or (c.evaluation.metrics if c.evaluation else [])) for c in listed]
        except OutcomeUnknownError as exc:
            self._guard.finish(decision, "unknown", exc.message)
            raise
        except CekuraError as exc:
            self._guard.finish(decision, "rejected", exc.message)
            raise
        self._guard.finish(decision, "succeeded")
        pending: list[int] = []
        if wait_for_results:
            fresh, pending = await wait_for_fresh(self._client, agent_id=plan.agent_id, project_id=plan.project_id,
                                                  marks=marks, deadline=deadline, interval=self._interval)
            rows = [(call_id, row.metrics or (row.evaluation.metrics if row.evaluation else []))
                    for call_id, row in sorted(fresh.items())]
        flat: list[dict[str, str | int | None]] = [
            {"call": call_id, "metric": m.id, "value": shown(m)} for call_id, results in rows for m in results
                if not requested_metrics or m.id in requested_metrics]
        limit = 300
        return SpendResult(operation=plan.operation, calls=plan.call_count, credits_estimated=plan.credits,
                           spent=True, confirmation=decision.confirmation, estimate=self.estimate(plan),
                           results=flat[:limit], truncated=max(0, len(flat) - limit),
                           still_evaluating=pending[:limit])

    async def _resolve(self, agent_id: int | None, project_id: int | None, chosen: CallSelection) -> list[CallRow]:
        if chosen.call_ids == "all":
            return await self._walk(agent_id, project_id, chosen.selection, None)
        ids = sorted(set(chosen.call_ids))
        if not ids:
            raise InputError("call_ids", "the list is empty.", 'Pass call ids, or "all" with a filter.')
        if chosen.selection != CallFilter():
            raise InputError("call_ids", "filters and time windows only select among \"all\" calls; with a list "
                             "of ids, exactly those calls are evaluated.",
                             'Pass either the ids alone, or call_ids="all" with the filters.')
        found: dict[int, CallRow] = {}
        for start in range(0, len(ids), PAGE):
            chunk = ids[start:start + PAGE]
            for row in await self._walk(agent_id, project_id, CallFilter(), chunk):
                found[row.id] = row
        missing = [i for i in ids if i not in found]
        if missing:
            await self._find_outside_window(missing, agent_id, project_id, found)
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError("call_ids", f"{len(missing)} call(s) are not calls of this "
                             f"{'agent' if agent_id is not None else 'project'}: {missing[:10]}.",
                             f"Remove them ({Step.LIST_CALLS} shows valid ids); nothing was evaluated.")
        return [found[i] for i in ids]

    async def _walk(
        self, agent_id: int | None, project_id: int | None, selection: CallFilter, ids: list[int] | None,
    ) -> list[CallRow]:
        rows: dict[int, CallRow] = {}
        page = 1
        while True:
            answer = await self._client.list_calls(
                agent_id=agent_id, project_id=project_id, page=page, page_size=PAGE, call_ids=ids,
                timestamp_from=selection.timestamp_from, timestamp_to=selection.timestamp_to,
                filters_v2=selection.filters_v2())
            for row in answer.results:
                rows[row.id] = row
            if len(rows) > MAX_RESOLVED_CALLS:
                raise InputError("call_ids", f"the selection matches more than {MAX_RESOLVED_CALLS} calls.",
                                 "Narrow it with a time window or filters.")
            # Counted by walking the pages, not from `count`, which has been seen to be wrong.
            if not answer.next or not answer.results:
                return list(rows.values())
            page += 1

    async def _find_outside_window(
        self, ids: list[int], agent_id: int | None, project_id: int | None, found: dict[int, CallRow],
    ) -> None:
        """The list endpoint only looks back ~30 days; older ids are checked one by one."""
        if len(ids) > 50:
            return

        async def check(call_id: int) -> None:
            try:
                call = await self._client.get_call(call_id)
            except CekuraError:
                return
            in_scope = call.agent == agent_id if agent_id is not None else call.project == project_id
            if in_scope:
                found[call_id] = CallRow.model_validate(call.model_dump())

        async with anyio.create_task_group() as group:
            for call_id in ids:
                group.start_soon(check, call_id)


def _metrics_for(row: CallRow, metrics: Sequence[Metric]) -> list[Metric]:
    """Metrics that will run on this call: every one assigned to the call's agent (`evaluate_metrics`
    may ignore its `metrics` filter). Unassigned lists count, to stay on the safe side."""
    return [m for m in metrics if row.agent is None or not m.agents or row.agent in m.agents]


async def start_auto_improve(client: CekuraClient, ledger: Ledger, *, metric_id: int,
                             test_set_ids: Sequence[int] | None) -> AutoImproveStart:
    """Start Cekura's auto-improve through the auto-improve log: in spend_log, and a second start for the same
    metric and Lab set while one runs answers the running one."""

    async def running(progress_id: str) -> bool:
        try:
            return not (await client.get_progress(progress_id)).done
        except NotFoundError:
            return False  # Cekura does not know the run: nothing is running under that id
        except CekuraError as exc:
            # A failed read (5xx, rate limit, network) says nothing about the run: taking it for finished
            # would start a second run beside one that may still be going.
            raise GuardRefusal(
                f"Could not check whether auto-improve run {progress_id} "
                f"({auto_improve_subject(metric_id, test_set_ids)}) is still running ({exc.message}); nothing was "
                "started.",
                f"Poll it with {Step.WAIT_FOR_IMPROVEMENT}(progress_id=\"{progress_id}\"), or try again in a "
                "moment.") from None

    async def begin(claim: AutoImproveClaim) -> str:
        return await client.process_feedbacks(claim, metric_id=metric_id, test_set_ids=test_set_ids)

    return await AutoImproveRuns(ledger).start(metric_id=metric_id, test_set_ids=test_set_ids, begin=begin,
                                               running=running)
