"""Reading calls: the compact list and the one-call review view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallDetail, CallRow, Metric, MetricResult
from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.presenting import (
    Transcript,
    explanation_text,
    moments,
    one_line,
    parse_clock,
    pick_metadata,
    transcript_from_text,
    transcript_view,
)
from pydantic import BaseModel, Field

CallStatus = Literal["success", "failure", "reviewed_success", "reviewed_failure"]


class CallFilter(BaseModel):
    """What to select calls by. Everything here becomes a server-side `filters_v2` condition."""

    success: bool | None = None
    status: CallStatus | None = None
    reviewed: bool | None = None
    metric_id: int | None = None
    metric_value: str | None = None
    timestamp_from: str | None = None
    timestamp_to: str | None = None

    def filters_v2(self) -> dict[str, Any] | None:
        conditions: list[dict[str, Any]] = []
        if self.success is not None:
            conditions.append({"field": "success", "op": "eq", "value": self.success})
        if self.status is not None:
            conditions.append({"field": "status", "op": "eq", "value": self.status})
        if self.reviewed is not None:
            conditions.append({"field": "is_reviewed", "op": "eq", "value": self.reviewed})
        if self.metric_value is not None:
            if self.metric_id is None:
                raise InputError("metric_value", "it needs the metric it belongs to.",
                                 "Pass metric_id together with metric_value.")
            conditions.append({"field": "metric_value", "metric_id": self.metric_id, "op": "eq",
                               "value": self.metric_value})
        if not conditions:
            return None
        return conditions[0] if len(conditions) == 1 else {"operator": "and", "conditions": conditions}


class CallSummary(BaseModel):
    id: int
    at: str | None = Field(default=None, description="Start time, UTC, to the minute.")
    dur: str | None = Field(default=None, description="Duration mm:ss.")
    status: str | None = None
    value: str | None = Field(default=None, description="The chosen metric's result on this call.")
    why: str | None = Field(default=None, description="First line of the metric's explanation.")
    reviewed: bool = False


class CallList(BaseModel):
    count: int = Field(description="Calls matching, as counted by Cekura.")
    page: int
    page_size: int
    has_more: bool
    metric: str | None = Field(default=None, description="Metric shown in `value`/`why`, as `id: name`.")
    calls: list[CallSummary]


class MetricView(BaseModel):
    id: int
    name: str
    value: str | None
    explanation: str = Field(description="The judge's full explanation (untrusted model output).")
    moments: list[str] = Field(description="Transcript times (mm:ss) the explanation refers to.")


class CallReview(BaseModel):
    id: int
    agent_id: int | None
    at: str | None
    dur: str | None
    status: str | None
    reviewed: bool
    ended: str | None = Field(default=None, description="Why the call ended.")
    metric: MetricView | None = Field(default=None, description="The metric under review, in full.")
    other_metrics: dict[str, str | None] = Field(
        default_factory=dict, description="Other metrics on this call: `id: name` → value.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    transcript: Transcript


class CallsService:
    def __init__(self, client: CekuraClient) -> None:
        self._client = client

    async def list_calls(
        self, *, agent_id: int | None, project_id: int | None, page: int, page_size: int,
        selection: CallFilter, metric_id: int | None,
    ) -> CallList:
        require_scope(agent_id, project_id)
        answer = await self._client.list_calls(
            agent_id=agent_id, project_id=project_id, page=page, page_size=page_size,
            timestamp_from=selection.timestamp_from, timestamp_to=selection.timestamp_to,
            filters_v2=selection.filters_v2(),
        )
        metric_label = None
        if metric_id is not None:
            metric_label = next((f"{m.id}: {m.name}" for row in answer.results
                                 if (m := row.metric(metric_id)) is not None), f"{metric_id}")
        rows = [summarize(row, metric_id) for row in answer.results]
        # `count` has been seen to be 0 while results exist: never report fewer than were seen.
        seen = (page - 1) * page_size + len(rows)
        return CallList(count=max(answer.count or 0, seen),
                        page=page, page_size=page_size, has_more=answer.next is not None,
                        metric=metric_label, calls=rows)

    async def review_call(
        self, call_id: int, *, metric_id: int | None, around: Sequence[str | float], window_seconds: float,
    ) -> CallReview:
        call = await self._client.get_call(call_id)
        return review_view(call, metric_id=metric_id, around=around, window_seconds=window_seconds)

    async def metric(self, metric_id: int) -> Metric:
        return await self._client.get_metric(metric_id)

    async def metrics(self, *, agent_id: int | None, project_id: int | None) -> list[Metric]:
        require_scope(agent_id, project_id)
        return await self._client.list_metrics(agent_id=agent_id, project_id=project_id)


def require_scope(agent_id: int | None, project_id: int | None) -> None:
    if agent_id is None and project_id is None:
        raise InputError("agent_id", "neither agent_id nor project_id was given.",
                         "Pass the agent's id (agent_id) or the project's (project_id); list_metrics or "
                         "the Cekura dashboard shows them.")


def summarize(row: CallRow, metric_id: int | None) -> CallSummary:
    result = row.metric(metric_id) if metric_id is not None else None
    return CallSummary(
        id=row.id, at=(row.timestamp or "")[:16] or None, dur=row.duration, status=row.status,
        value=result.value if result else None,
        why=one_line(explanation_text(result)) if result and result.explanation else None,
        reviewed=row.is_reviewed,
    )


def review_view(
    call: CallDetail, *, metric_id: int | None, around: Sequence[str | float], window_seconds: float,
) -> CallReview:
    result = call.metric(metric_id) if metric_id is not None else None
    if metric_id is not None and result is None:
        raise InputError("metric_id", f"metric {metric_id} has no result on call {call.id}.",
                         "Call get_call without metric_id to see which metrics ran on this call.")
    turns = call.transcript_object or transcript_from_text(call.transcript or "")
    times = [_moment(value) for value in around]
    others = {f"{m.id}: {m.name}": m.value for m in (call.evaluation.metrics if call.evaluation else [])
              if m.id != metric_id}
    return CallReview(
        id=call.id, agent_id=call.agent, at=(call.timestamp or "")[:16] or None, dur=call.duration,
        status=call.status, reviewed=call.is_reviewed, ended=call.call_ended_reason,
        metric=_metric_view(result) if result else None, other_metrics=others,
        metadata=pick_metadata(call.metadata),
        transcript=transcript_view(turns, around=times, window_seconds=window_seconds),
    )


def _metric_view(result: MetricResult) -> MetricView:
    return MetricView(id=result.id, name=result.name, value=result.value,
                      explanation=explanation_text(result), moments=moments(result.explanation))


def _moment(value: str | float) -> float:
    try:
        return parse_clock(value)
    except ValueError:
        raise InputError("around", f"{value!r} is not a time in the call.",
                         'Give times as "mm:ss" (e.g. "01:12") or seconds (e.g. 72).') from None
