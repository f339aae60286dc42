"""Evaluations that cost credits: resolve exactly which calls, count them, then ask the guard.

`"all"` and filters are resolved here into an explicit list of call ids by walking the list
endpoint; the spend request always carries that list, never `"all"`, so what is sent is exactly
what was counted and (where needed) confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.errors import CekuraError, InputError, LabsError, OutcomeUnknownError
from cekura_labs_mcp.server.guard import Approval, CostGuard, SpendPlan, estimate_credits
from cekura_labs_mcp.server.services.calls import CallFilter, require_scope
from pydantic import BaseModel, Field

Operation = Literal["rerun_evaluation", "evaluate_metrics"]
MAX_RESOLVED_CALLS = 5000
PAGE = 200


class CallSelection(BaseModel):
    """Which calls to evaluate: explicit ids, or `"all"` calls matching the filter/time window."""

    call_ids: list[int] | Literal["all"]
    selection: CallFilter = Field(default_factory=CallFilter)


class SpendResult(BaseModel):
    operation: str
    calls: int
    credits_estimated: float
    confirmation: str = Field(description="How the spend was allowed: none (under the limit), elicitation, token.")
    results: list[dict[str, str | int | None]] = Field(
        description="Per call and metric: new value (compact). Use get_call for explanations.")
    truncated: int = Field(default=0, description="Result rows left out to keep this answer short.")


class SpendService:
    def __init__(self, client: CekuraClient, guard: CostGuard, credits_per_evaluation: float) -> None:
        self._client = client
        self._guard = guard
        self._credits = credits_per_evaluation

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
                            "Check the agent_id/project_id (list_metrics shows the metrics).")
        judge = tuple(sorted(m.id for m in metrics if m.is_llm_judge))
        code = tuple(sorted(m.id for m in metrics if not m.is_llm_judge))
        per_call = [_judge_metrics_for(row, metrics) for row in rows]
        return SpendPlan(operation=operation, agent_id=agent_id, project_id=project_id,
                         call_ids=tuple(sorted(row.id for row in rows)), judge_metric_ids=judge,
                         code_metric_ids=code, credits=estimate_credits(per_call, self._credits))

    async def execute(
        self, plan: SpendPlan, *, token: str | None, approval: Approval, requested_metrics: Sequence[int],
    ) -> SpendResult:
        decision = await self._guard.authorize(plan, token=token, approval=approval)
        try:
            if plan.operation == "rerun_evaluation":
                assert plan.agent_id is not None
                calls = await self._client.rerun_evaluation(agent_id=plan.agent_id, call_logs=plan.call_ids)
                rows = [(c.id, c.evaluation.metrics if c.evaluation else []) for c in calls]
            else:
                listed = await self._client.evaluate_metrics(
                    agent_id=plan.agent_id, project_id=plan.project_id, call_logs=plan.call_ids,
                    metrics=requested_metrics or plan.judge_metric_ids)
                rows = [(c.id, c.metrics or (c.evaluation.metrics if c.evaluation else [])) for c in listed]
        except OutcomeUnknownError as exc:
            self._guard.finish(decision, "unknown", exc.message)
            raise
        except CekuraError as exc:
            self._guard.finish(decision, "rejected", exc.message)
            raise
        self._guard.finish(decision, "succeeded")
        flat = [{"call": call_id, "metric": m.id, "value": m.value} for call_id, results in rows for m in results
                if not requested_metrics or m.id in requested_metrics]
        limit = 300
        return SpendResult(operation=plan.operation, calls=plan.call_count, credits_estimated=plan.credits,
                           confirmation=decision.confirmation, results=flat[:limit],
                           truncated=max(0, len(flat) - limit))

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
                             "Remove them (list_calls shows valid ids); nothing was evaluated.")
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


def _judge_metrics_for(row: CallRow, metrics: Sequence[Metric]) -> int:
    """LLM-judge metrics that will run on this call: every one assigned to the call's agent
    (`evaluate_metrics` ignores its `metrics` filter). Unassigned lists count, to stay on the safe side."""
    return sum(1 for m in metrics if m.is_llm_judge and (row.agent is None or not m.agents or row.agent in m.agents))
