"""The `/observability/v1/call-logs[-external]/` endpoints."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.datastructures import URL

from . import filters, serialize
from .engine import success_of
from .errors import ApiError, field_error, not_found
from .filters import FilterError, compile_filter
from .models import AGENT_ROLE, CALLER_ROLE, Agent, Call, Metric, Turn, Vote, VoteValue
from .store import Store
from .validate import (
    REQUIRED,
    as_object,
    int_list,
    opt_bool,
    opt_int,
    opt_str,
    parse_moment,
    query_int,
    req_int,
    to_int,
)

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 200
DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=33)
SCOPE_REQUIRED = "Either agent_id or project_id is required."

CallFilter = Callable[[Call], bool]


# --- list ------------------------------------------------------------------------------------


ORG_KEY_NEEDS_PROJECT = "project_id is required when using an organization-level API key."


def require_project(params: Mapping[str, Any], org_key: bool) -> None:
    """The list descriptions: "`project_id` is required when using an organization-level API key"."""
    if org_key and params.get("project_id") in (None, ""):
        raise field_error("project_id", ORG_KEY_NEEDS_PROJECT)


def list_calls(store: Store, params: Mapping[str, str], url: URL, org_key: bool = False) -> dict[str, Any]:
    require_project(params, org_key)
    store.tick_reads()
    tests = [*_scope_filters(store, params), _window(store, params)]
    call_ids = _call_ids(params)
    if call_ids is not None:
        tests.append(lambda c: c.id in call_ids)
    raw_filter = params.get("filters_v2")
    if raw_filter:
        try:
            tests.append(compile_filter(raw_filter, store.metrics, store.agents, store.dialect))
        except FilterError as exc:
            raise field_error("filters_v2", str(exc)) from exc
    matched = [c for c in store.calls.values() if all(t(c) for t in tests)]
    matched.sort(key=lambda c: (c.timestamp, c.id), reverse=True)
    size = _page_size(params)
    page = _page(params, len(matched), size)
    rows = matched[(page - 1) * size: page * size]
    return {
        "count": len(matched),
        "next": str(url.include_query_params(page=page + 1)) if page * size < len(matched) else None,
        "previous": _previous(url, page),
        "results": [serialize.call_row(store, c) for c in rows],
    }


def _scope_filters(store: Store, params: Mapping[str, str]) -> list[CallFilter]:
    agent_id, project_id = query_int(params, "agent_id"), query_int(params, "project_id")
    if agent_id is None and project_id is None:
        raise field_error("agent_id", SCOPE_REQUIRED)
    tests: list[CallFilter] = []
    if agent_id is not None:
        tests.append(lambda c: c.agent_id == agent_id)
    if project_id is not None:
        tests.append(lambda c: c.project_id == project_id)
    assistant = params.get("assistant_id")
    if assistant:
        owners = {a.id for a in store.agents.values() if assistant in (a.assistant_id, str(a.id))}
        tests.append(lambda c: c.agent_id in owners)
    return tests


def _window(store: Store, params: Mapping[str, str]) -> CallFilter:
    start = _moment(params, "timestamp_from")
    end = _moment(params, "timestamp_to")
    if start is None and end is None:
        end = store.now()
        start = end - DEFAULT_WINDOW
    elif start is None and end is not None:
        start = end - DEFAULT_WINDOW
    elif end is None and start is not None:
        end = max(store.now(), start)
    assert start is not None and end is not None
    if end < start:
        raise field_error("timestamp_to", "timestamp_to must not be earlier than timestamp_from.")
    if end - start > MAX_WINDOW:
        raise field_error("timestamp_from", "The time range must not exceed 33 days; narrow timestamp_from / "
                          "timestamp_to.")
    low, high = start, end
    return lambda c: low <= c.timestamp <= high


def _moment(params: Mapping[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    moment = parse_moment(raw)
    if moment is None:
        raise field_error(name, "Enter a valid date/time in ISO 8601 format, e.g. 2025-01-01T00:00:00Z.")
    return moment


def _call_ids(params: Mapping[str, str]) -> set[int] | None:
    raw = params.get("call_ids")
    if raw is None or raw.strip() == "":
        return None
    ids = [to_int(part) for part in raw.split(",") if part.strip()]
    if not ids or any(i is None for i in ids):
        raise field_error("call_ids", "Enter a comma-separated list of call log ids, e.g. 5181749,5181752.")
    return {i for i in ids if i is not None}


def _page_size(params: Mapping[str, str]) -> int:
    size = to_int(params.get("page_size", ""))
    if size is None or size < 1:
        return DEFAULT_PAGE_SIZE
    return min(size, MAX_PAGE_SIZE)


def _page(params: Mapping[str, str], total: int, size: int) -> int:
    raw = params.get("page") or "1"
    last = max(1, -(-total // size))
    page = last if raw == "last" else to_int(raw)
    if page is None or not 1 <= page <= last:
        raise not_found("Invalid page.")
    return page


def _previous(url: URL, page: int) -> str | None:
    if page <= 1:
        return None
    if page == 2:
        return str(url.remove_query_params("page"))
    return str(url.include_query_params(page=page - 1))


# --- one call, votes -------------------------------------------------------------------------


def find_call(store: Store, raw_id: str) -> Call:
    call_id = to_int(raw_id)
    call = store.calls.get(call_id) if call_id is not None else None
    if call is None:
        raise not_found()
    return call


def get_call(store: Store, raw_id: str) -> dict[str, Any]:
    call = find_call(store, raw_id)
    store.tick_reads()
    return serialize.call_detail(store, call)


def parse_expected(metric: Metric, raw: object, field: str) -> VoteValue:
    """A reviewer's expected value in vote form, validated against the metric's eval type."""
    if raw is None:
        return None
    if metric.eval_type == "binary":
        return _binary_expected(raw, field)
    if metric.eval_type == "enum":
        label = next((v for v in metric.enum_values if isinstance(raw, str) and v.lower() == raw.lower()), None)
        if label is None:
            if isinstance(raw, str) and raw.upper() == "N/A":
                return None
            raise field_error(field, f'"{raw}" is not one of {", ".join(metric.enum_values)}.')
        return label
    number = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    if isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            number = None
    if number is None:
        raise field_error(field, "A number is required for this metric.")
    if metric.eval_type == "continuous_qualitative" and not 0 <= number <= 5:
        raise field_error(field, "Must be between 0 and 5 for this metric.")
    return float(number)


def _binary_expected(raw: object, field: str) -> VoteValue:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)) and raw in (0, 5):
        return raw == 5
    if isinstance(raw, str):
        text = raw.strip().upper()
        if text in ("TRUE", "FALSE"):
            return text == "TRUE"
        if text in ("N/A", "NA"):
            return None
    raise field_error(field, "Use true, false or null (N/A) for a binary metric.")


def mark_metric_vote(store: Store, raw_id: str, raw_body: object) -> dict[str, Any]:
    call = find_call(store, raw_id)
    body = as_object(raw_body)
    metric_id = req_int(body, "metric_id")
    if "thumbs_up" not in body:
        raise field_error("thumbs_up", REQUIRED)
    thumbs_up = opt_bool(body, "thumbs_up", nullable=True)
    feedback = opt_str(body, "feedback", nullable=True)
    metric = store.metrics.get(metric_id)
    if metric is None:
        raise field_error("metric_id", f'Invalid pk "{metric_id}" - object does not exist.')
    result = call.results.get(metric_id)
    if result is None:
        raise field_error("metric_id", f"Metric {metric_id} is not evaluated on call log {call.id}.")
    given = "expected_value" in body
    # An absent expected_value records agreement with the current result; null means N/A.
    expected = parse_expected(metric, body["expected_value"], "expected_value") if given else result.value
    with store.lock:
        store.votes.append(Vote(call.id, metric_id, thumbs_up, expected, given, feedback, result.value, store.now()))
        call.is_reviewed = True
        call.feedback = feedback or call.feedback
        call.success = success_of(call, store.metrics, store.overrides(call.id))
        call.updated_at = store.now()
    return {"detail": "Vote recorded."}


# --- evaluation ------------------------------------------------------------------------------


def _scope_agents(store: Store, body: Mapping[str, Any]) -> list[Agent]:
    agent_id, project_id = opt_int(body, "agent_id"), opt_int(body, "project_id")
    if agent_id is None and project_id is None:
        raise field_error("agent_id", SCOPE_REQUIRED)
    if agent_id is not None:
        if agent_id not in store.agents:
            raise field_error("agent_id", f'Invalid pk "{agent_id}" - object does not exist.')
        return [store.agents[agent_id]]
    if project_id != store.data.project_id:
        raise field_error("project_id", f'Invalid pk "{project_id}" - object does not exist.')
    return list(store.agents.values())


def evaluate_metrics(store: Store, raw_body: object) -> list[dict[str, Any]]:
    """Evaluates every metric assigned to each call, whatever `metrics` lists (as Cekura does)."""
    body = as_object(raw_body)
    agents = {a.id for a in _scope_agents(store, body)}
    call_ids = int_list(body, "call_logs") or []
    metric_ids = int_list(body, "metrics") or []
    project_id = opt_int(body, "project_id")
    outside = [m for m in metric_ids if not _in_scope(store.metrics.get(m), agents, project_id)]
    if outside:
        raise field_error("metrics", f"Metrics {outside} do not exist or do not belong to this agent or project.")
    calls = _owned_calls(store, call_ids, agents)
    _evaluate(store, calls, reset_success=False)
    return [serialize.call_row(store, c) for c in calls]


INSUFFICIENT_BALANCE = "Insufficient balance for this operation"


def _evaluate(store: Store, calls: list[Call], reset_success: bool) -> None:
    """`spec`: evaluate at once. `documented`: "Async: evaluation runs in the background. The response
    returns the call logs in their current state" — the results land after a few reads; and "The request
    is rejected if your balance is insufficient" (the docs' error text, e.g. websocket-chirp.mdx)."""
    if store.documented and store.cost_of(calls) > store.credits_remaining:
        raise ApiError(400, {"detail": INSUFFICIENT_BALANCE})
    for call in calls:
        if store.documented:
            store.queue(call, reset_success)
        else:
            store.run(call)


def _in_scope(metric: Metric | None, agents: set[int], project_id: int | None) -> bool:
    if metric is None:
        return False
    return bool(set(metric.agents) & agents) or (project_id is not None and metric.project == project_id)


def _owned_calls(store: Store, call_ids: list[int], agents: set[int]) -> list[Call]:
    missing = [i for i in call_ids if i not in store.calls or store.calls[i].agent_id not in agents]
    if missing:
        raise field_error("call_logs", f"Call logs {missing} do not exist or do not belong to this agent.")
    return [store.calls[i] for i in dict.fromkeys(call_ids)]


def rerun_evaluation(store: Store, raw_body: object) -> list[dict[str, Any]]:
    """Re-runs every metric of the agent on the calls (`"all"`: every call of the agent)."""
    body = as_object(raw_body)
    agent = _rerun_agent(store, body)
    if "call_logs" not in body:
        raise field_error("call_logs", REQUIRED)
    if body["call_logs"] == "all":
        calls = sorted((c for c in store.calls.values() if c.agent_id == agent.id), key=lambda c: c.id)
    elif isinstance(body["call_logs"], list):
        calls = _owned_calls(store, int_list(body, "call_logs") or [], {agent.id})
    else:
        raise field_error("call_logs", 'Expected a list of call log ids or the string "all".')
    _evaluate(store, calls, reset_success=True)
    return [serialize.call_detail(store, c) for c in calls]


def _rerun_agent(store: Store, body: Mapping[str, Any]) -> Agent:
    # The spec lists both ids as required but says "provide this or assistant_id, not both": either works.
    agent_id = opt_int(body, "agent_id")
    assistant = body.get("assistant_id")
    if agent_id is None and assistant is None:
        raise field_error("agent_id", "Provide agent_id or assistant_id.")
    found: Agent | None = None
    if agent_id is not None:
        found = store.agents.get(agent_id)
        if found is None:
            raise field_error("agent_id", f'Invalid pk "{agent_id}" - object does not exist.')
    if assistant is not None:
        by_assistant = next((a for a in store.agents.values() if str(assistant) in (a.assistant_id, str(a.id))), None)
        if by_assistant is None:
            raise field_error("assistant_id", f'No agent with assistant_id "{assistant}".')
        if found is not None and found.id != by_assistant.id:
            raise field_error("assistant_id", "Provide agent_id or assistant_id, not both.")
        found = by_assistant
    assert found is not None
    return found


# --- ingestion -------------------------------------------------------------------------------

_LINE = re.compile(r"^\s*(?:\[(\d+):(\d{2})\]\s*)?([^:\[\]]{1,40}):\s*(.+)$")
_AGENT_NAMES = {"main agent", "agent", "assistant", "bot", "ai"}


def _role(raw: str) -> str:
    return AGENT_ROLE if raw.strip().lower() in _AGENT_NAMES else CALLER_ROLE


def turns_from_objects(items: list[Any]) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise field_error("transcript_object", "Each turn needs a role and a content string.")
        start = _seconds(item, ("start_time", "timestamp"), turns[-1].end + 1 if turns else 0.0)
        end = _seconds(item, ("end_time",), start + max(1.0, len(item["content"].split()) / 2.5))
        turns.append(Turn(_role(str(item.get("role", ""))), item["content"], start, end))
    return tuple(turns)


def _seconds(item: Mapping[str, Any], keys: tuple[str, ...], default: float) -> float:
    for key in keys:
        value = item.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def turns_from_text(text: str) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        minutes, seconds, role, content = match.groups()
        start = int(minutes) * 60 + int(seconds) if minutes else (turns[-1].end + 1 if turns else 0.0)
        turns.append(Turn(_role(role), content.strip(), float(start), float(start) + len(content.split()) / 2.5))
    return tuple(turns)


def create_call(store: Store, raw_body: object) -> dict[str, Any]:
    """Ingest a call (POST on the list path); it is evaluated at once, as observability does."""
    body = as_object(raw_body)
    provider_id = opt_str(body, "call_id")
    if not provider_id:
        raise field_error("call_id", REQUIRED)
    agent_id = opt_int(body, "agent") if body.get("agent") is not None else opt_int(body, "agent_id")
    if agent_id is None:
        raise field_error("agent", REQUIRED)
    if agent_id not in store.agents:
        raise field_error("agent", f'Invalid pk "{agent_id}" - object does not exist.')
    objects = body.get("transcript_object")
    if isinstance(objects, list):
        turns = turns_from_objects(objects)
    else:
        turns = turns_from_text(opt_str(body, "transcript") or "")
    now = store.now()
    raw_time = opt_str(body, "timestamp")
    timestamp = parse_moment(raw_time) if raw_time else now
    if timestamp is None:
        raise field_error("timestamp", "Enter a valid date/time in ISO 8601 format.")
    call = Call(
        id=store.next_id("call"), agent_id=agent_id, project_id=store.data.project_id, provider_call_id=provider_id,
        timestamp=timestamp, created_at=now, updated_at=now, turns=turns,
        duration_s=round(turns[-1].end if turns else 0.0, 2),
        call_ended_reason=opt_str(body, "call_ended_reason") or "",
        customer_number=opt_str(body, "customer_number") or "",
        topic=opt_str(body, "topic") or "", metadata=_object(body, "metadata"),
        dynamic_variables=_object(body, "dynamic_variables"),
    )
    with store.lock:
        store.calls[call.id] = call
        store.run(call)
    return serialize.call_detail(store, call)


def _object(body: Mapping[str, Any], field: str) -> dict[str, Any]:
    value = body.get(field) or {}
    if not isinstance(value, dict):
        raise ApiError(400, {field: [f'Expected a dictionary of items but got type "{type(value).__name__}".']})
    return dict(value)



# --- v2 `filters/` ------------------------------------------------------------------------------


def filter_fields(store: Store) -> dict[str, Any]:
    """What `filters_v2` accepts in this dialect (the spec's schema for this answer is a copy of
    CallLogDetail, evidently a generator slip; the sandbox answers the filter vocabulary instead)."""
    if not store.documented:
        return {"fields": [*sorted(filters.SPEC_FIELDS), "metric_value"], "operators": sorted(filters.OPS),
                "logical_operators": ["and", "or"]}
    extra = ["dropoff_point", "agent.id", "agent.agent_name", "metadata.<key>", *filters.METRIC_FIELDS]
    return {"fields": [*sorted(filters.SPEC_FIELDS), *extra], "operators": sorted(filters.DOCUMENTED_OPS),
            "logical_operators": ["and", "or", "same_row"]}
