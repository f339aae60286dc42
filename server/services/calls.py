"""Reading calls: the compact list and the one-call review view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallDetail, CallRow, Metric, MetricResult
from cekura_labs_mcp.server.cekura.results import Reading, read_result
from cekura_labs_mcp.server.errors import InputError, ValidationFailedError
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
from cekura_labs_mcp.server.steps import Step
from cekura_labs_mcp.server.values import display, expected_from_input, same_value
from pydantic import BaseModel, Field

CallStatus = Literal["success", "failure", "reviewed_success", "reviewed_failure"]


MetricValue = bool | float | str | None
SCAN_PAGES = 5  # a refused filter is applied to at most this many pages of 200 recent calls, here
SCAN_PAGE_SIZE = 200
SCAN_DETAILS = 200  # ... and at most this many calls read one by one for their metadata


class CallFilter(BaseModel):
    """What to select calls by, as the documented `filters_v2` conditions (docs
    `documentation/guides/dashboards.mdx`): call fields `success`, `is_reviewed`, `topic`, `metadata.<key>`,
    and a metric's result as `metric_evaluations.metric.id` + `metric_evaluations.value` joined by
    `"operator": "same_row"` (so both hold on the same result row). `status` is not in the documented field
    list; it is sent and, when refused, applied here."""

    success: bool | None = None
    status: CallStatus | None = None
    reviewed: bool | None = None
    metric_id: int | None = None
    metric_value: str | None = None
    topic: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    timestamp_from: str | None = None
    timestamp_to: str | None = None

    @property
    def filters(self) -> bool:
        """Whether anything beyond the time window is selected."""
        return bool(self.conditions())

    def conditions(self, metric: Metric | None = None) -> list[dict[str, Any]]:
        conditions: list[dict[str, Any]] = []
        if self.success is not None:
            conditions.append({"field": "success", "op": "eq", "value": self.success})
        if self.status is not None:
            conditions.append({"field": "status", "op": "eq", "value": self.status})
        if self.reviewed is not None:
            conditions.append({"field": "is_reviewed", "op": "eq", "value": self.reviewed})
        if self.topic is not None:
            conditions.append({"field": "topic", "op": "eq", "value": self.topic})
        for key, value in sorted(self.metadata.items()):
            if not key or "." in key:
                raise InputError("metadata", f"{key!r} is not a top-level metadata key.",
                                 "Filter on top-level keys only (e.g. {\"region\": \"EU\"}); nested keys are "
                                 "not supported by Cekura.")
            conditions.append({"field": f"metadata.{key}", "op": "eq", "value": value})
        if self.metric_value is not None:
            if self.metric_id is None:
                raise InputError("metric_value", "it needs the metric it belongs to.",
                                 "Pass metric_id together with metric_value.")
            conditions.append({"operator": "same_row", "conditions": [
                {"field": "metric_evaluations.metric.id", "op": "eq", "value": self.metric_id},
                _value_condition(self.metric_value, metric),
            ]})
        return conditions

    def filters_v2(self, metric: Metric | None = None) -> dict[str, Any] | None:
        conditions = self.conditions(metric)
        if not conditions:
            return None
        return conditions[0] if len(conditions) == 1 else {"operator": "and", "conditions": conditions}

    def matches(self, row: CallRow | CallDetail, metric: Metric | None, metadata: dict[str, Any] | None) -> bool:
        """The same selection, applied here to a call already read (when Cekura refused the filter)."""
        if self.success is not None and row.success is not self.success:
            return False
        if self.status is not None and row.status != self.status:
            return False
        if self.reviewed is not None and row.is_reviewed is not self.reviewed:
            return False
        if self.topic is not None and (row.topic or "") != self.topic:
            return False
        for key, value in self.metadata.items():
            if metadata is None or str(metadata.get(key)) != value:
                return False
        if self.metric_value is not None and self.metric_id is not None:
            result = row.metric(self.metric_id)
            return result is not None and _same_result(read_result(result, metric), self.metric_value, metric)
        return True


def _value_condition(text: str, metric: Metric | None) -> dict[str, Any]:
    """`metric_evaluations.value` for what the person typed: binary true/false, the number, the label; N/A is
    a null value."""
    wanted = _wanted_value(text, metric)
    if wanted is None:
        return {"field": "metric_evaluations.value", "op": "isnull", "value": True}
    return {"field": "metric_evaluations.value", "op": "eq", "value": wanted}


def _wanted_value(text: str, metric: Metric | None) -> MetricValue:
    if metric is not None:
        return expected_from_input(metric, text, field="metric_value")
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("n/a", "na", "null", "none"):
        return None
    try:
        number = float(text)
    except ValueError:
        return text.strip()
    return int(number) if number.is_integer() else number


def _same_result(reading: Reading, text: str, metric: Metric | None) -> bool:
    if not reading.readable:
        return False
    wanted = _wanted_value(text, metric)
    if metric is not None:
        return same_value(metric, reading.expected, wanted)
    return display(reading.expected).lower() == display(wanted).lower()


@dataclass
class FoundCalls:
    """One page of calls matching a selection, and how they were found."""

    rows: list[CallRow]
    count: int
    has_more: bool
    note: str | None = None


async def find_calls(
    client: CekuraClient, *, agent_id: int | None, project_id: int | None, selection: CallFilter,
    metric: Metric | None = None, page: int = 1, page_size: int = 50,
) -> FoundCalls:
    """Calls matching `selection`, filtered by Cekura. Where Cekura refuses the filter (400), the refusal is
    said in `note` and the selection is applied here to a bounded scan of the most recent calls in the time
    window (`SCAN_PAGES` pages of 200): never silently unfiltered calls."""
    filters = selection.filters_v2(metric)
    try:
        answer = await client.list_calls(
            agent_id=agent_id, project_id=project_id, page=page, page_size=page_size,
            timestamp_from=selection.timestamp_from, timestamp_to=selection.timestamp_to, filters_v2=filters)
    except ValidationFailedError as exc:
        if filters is None or not _refuses_filter(exc):
            raise
        return await _scan(client, agent_id=agent_id, project_id=project_id, selection=selection, metric=metric,
                           page=page, page_size=page_size, refusal=exc.message)
    # `count` has been seen to be 0 while results exist: never report fewer than were seen.
    seen = (page - 1) * page_size + len(answer.results)
    return FoundCalls(answer.results, max(answer.count or 0, seen), answer.next is not None)


def _refuses_filter(exc: ValidationFailedError) -> bool:
    return "filters_v2" in exc.field_errors or any(
        "filter" in message.lower() for messages in exc.field_errors.values() for message in messages)


async def _scan(
    client: CekuraClient, *, agent_id: int | None, project_id: int | None, selection: CallFilter,
    metric: Metric | None, page: int, page_size: int, refusal: str,
) -> FoundCalls:
    rows: list[CallRow] = []
    complete = False
    for number in range(1, SCAN_PAGES + 1):
        answer = await client.list_calls(
            agent_id=agent_id, project_id=project_id, page=number, page_size=SCAN_PAGE_SIZE,
            timestamp_from=selection.timestamp_from, timestamp_to=selection.timestamp_to)
        rows.extend(answer.results)
        if not answer.next or not answer.results:
            complete = True
            break
    metadata = await _metadata_of(client, rows, selection, metric) if selection.metadata else {}
    matching = [row for row in rows if selection.matches(row, metric, metadata.get(row.id, _row_metadata(row)))]
    start = (page - 1) * page_size
    scope = "all" if complete else f"the {len(rows)} most recent"
    note = (f"Cekura refused the filter ({refusal.removeprefix('Cekura rejected the request: ').rstrip('.')}), "
            f"so it was applied here to {scope} calls in the time window: {len(matching)} match.")
    if not complete:
        note += " Older calls were not read: narrow timestamp_from/timestamp_to to see them."
    if selection.metadata and len(metadata) < len(rows):
        note += f" Metadata was read for {len(metadata)} call(s) only."
    return FoundCalls(matching[start:start + page_size], len(matching), len(matching) > start + page_size, note)


def _row_metadata(row: CallRow) -> dict[str, Any] | None:
    return row.metadata if "metadata" in row.model_fields_set else None


async def _metadata_of(client: CekuraClient, rows: list[CallRow], selection: CallFilter,
                       metric: Metric | None) -> dict[int, dict[str, Any]]:
    """List rows may not carry metadata: read it call by call, for the rows that match everything else
    (at most `SCAN_DETAILS`)."""
    rest = selection.model_copy(update={"metadata": {}})
    wanted = [row.id for row in rows if _row_metadata(row) is None and rest.matches(row, metric, None)]
    details = await client.get_calls(wanted[:SCAN_DETAILS])
    return {call_id: call.metadata for call_id, call in details.items()}


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
    filter_note: str | None = Field(default=None, description="Set when Cekura refused the filter: how the "
                                    "calls were selected instead (a bounded scan here), and what it covered.")


class MetricView(BaseModel):
    id: int
    name: str
    value: str | None = Field(description="TRUE / FALSE / N/A, the label or the number; \"unreadable (…)\" with "
                                          "the raw fields when Cekura's answer does not say.")
    unreadable: str | None = Field(default=None, description="Why the result could not be read, if it could not.")
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
        # The metric's definition turns the typed value into the filter's (true/false, the label, the number).
        chosen = selection.metric_id if selection.metric_value is not None else None
        definition = await self._client.get_metric(chosen) if chosen is not None else None
        found = await find_calls(self._client, agent_id=agent_id, project_id=project_id, selection=selection,
                                 metric=definition, page=page, page_size=page_size)
        metric_label = None
        if metric_id is not None:
            metric_label = next((f"{m.id}: {m.name}" for row in found.rows
                                 if (m := row.metric(metric_id)) is not None), f"{metric_id}")
            if definition is None or definition.id != metric_id:
                definition = await self._definition_if_needed(found.rows, metric_id)
        rows = [summarize(row, metric_id, definition) for row in found.rows]
        return CallList(count=found.count, page=page, page_size=page_size, has_more=found.has_more,
                        metric=metric_label, calls=rows, filter_note=found.note)

    async def review_call(
        self, call_id: int, *, metric_id: int | None, around: Sequence[str | float], window_seconds: float,
    ) -> CallReview:
        call = await self._client.get_call(call_id)
        definition = await self._definition_if_needed([call], metric_id) if metric_id is not None else None
        return review_view(call, metric_id=metric_id, around=around, window_seconds=window_seconds,
                           metric=definition)

    async def _definition_if_needed(self, calls: Sequence[CallRow | CallDetail], metric_id: int) -> Metric | None:
        """The metric's definition, read only when a result does not say on its own how to read it (a bare
        score needs the eval type) or is an enum label to check against the metric's values."""
        results = [r for call in calls if (r := call.metric(metric_id)) is not None]
        if any(not read_result(r).readable or read_result(r).kind == "label" for r in results):
            return await self._client.get_metric(metric_id)
        return None

    async def metric(self, metric_id: int) -> Metric:
        return await self._client.get_metric(metric_id)

    async def metrics(self, *, agent_id: int | None, project_id: int | None) -> list[Metric]:
        require_scope(agent_id, project_id)
        return await self._client.list_metrics(agent_id=agent_id, project_id=project_id)


def require_scope(agent_id: int | None, project_id: int | None) -> None:
    if agent_id is None and project_id is None:
        raise InputError("agent_id", "neither agent_id nor project_id was given.",
                         f"Pass the agent's id (agent_id) or the project's (project_id); {Step.LIST_METRICS} or "
                         "the Cekura dashboard shows them.")


def summarize(row: CallRow, metric_id: int | None, metric: Metric | None = None) -> CallSummary:
    result = row.metric(metric_id) if metric_id is not None else None
    return CallSummary(
        id=row.id, at=(row.timestamp or "")[:16] or None, dur=row.duration, status=row.status,
        value=read_result(result, metric).text if result else None,
        why=one_line(explanation_text(result)) if result and result.explanation else None,
        reviewed=row.is_reviewed,
    )


def review_view(
    call: CallDetail, *, metric_id: int | None, around: Sequence[str | float], window_seconds: float,
    metric: Metric | None = None,
) -> CallReview:
    result = call.metric(metric_id) if metric_id is not None else None
    if metric_id is not None and result is None:
        raise InputError("metric_id", f"metric {metric_id} has no result on call {call.id}.",
                         f"Call {Step.READ_CALL} without metric_id to see which metrics ran on this call.")
    turns = call.transcript_object or transcript_from_text(call.transcript or "")
    times = [_moment(value) for value in around]
    others: dict[str, str | None] = {
        f"{m.id}: {m.name}": read_result(m).text
        for m in (call.evaluation.metrics if call.evaluation else []) if m.id != metric_id}
    return CallReview(
        id=call.id, agent_id=call.agent, at=(call.timestamp or "")[:16] or None, dur=call.duration,
        status=call.status, reviewed=call.is_reviewed, ended=call.call_ended_reason,
        metric=_metric_view(result, read_result(result, metric)) if result else None, other_metrics=others,
        metadata=pick_metadata(call.metadata),
        transcript=transcript_view(turns, around=times, window_seconds=window_seconds),
    )


def _metric_view(result: MetricResult, reading: Reading) -> MetricView:
    return MetricView(id=result.id, name=result.name, value=reading.text, unreadable=reading.problem,
                      explanation=explanation_text(result), moments=moments(result.explanation))


def _moment(value: str | float) -> float:
    try:
        return parse_clock(value)
    except ValueError:
        raise InputError("around", f"{value!r} is not a time in the call.",
                         'Give times as "mm:ss" (e.g. "01:12") or seconds (e.g. 72).') from None
