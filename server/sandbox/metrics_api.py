"""`/test_framework/v1/metrics/`: list, read, create and PATCH metrics."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from starlette.datastructures import URL

from . import serialize
from .calls_api import turns_from_objects, turns_from_text
from .engine import BINARY_ALIASES, JUDGE_COST, EvalCount, judge_value_for_code
from .errors import field_error, not_found
from .judge import PromptError, judge
from .models import EVAL_TYPES, METRIC_TYPES, TRIGGER_TYPES, TRIGGERS, Call, JudgeJob, Metric, Turn
from .store import Store
from .validate import BAD_BOOL, BAD_INT, BAD_STR, REQUIRED, as_object, opt_str, query_int, to_int

_STRINGS = ("name", "description", "prompt", "assistant_id", "evaluation_trigger_prompt",
            "evaluation_trigger_custom_code", "custom_code")
_BOOLS = ("audio_enabled", "simulation_enabled", "observability_enabled", "sampling_enabled")
_CHOICES: dict[str, tuple[str, ...]] = {
    "type": METRIC_TYPES, "eval_type": EVAL_TYPES, "evaluation_trigger": TRIGGERS, "trigger_type": TRIGGER_TYPES,
}


def list_metrics(store: Store, params: Mapping[str, str]) -> list[dict[str, Any]]:
    tests: list[Callable[[Metric], bool]] = []
    agent_id, project_id = query_int(params, "agent_id"), query_int(params, "project_id")
    if agent_id is not None and project_id is not None:
        tests.append(lambda m: agent_id in m.agents or m.project == project_id)
    elif agent_id is not None:
        tests.append(lambda m: agent_id in m.agents)
    elif project_id is not None:
        tests.append(lambda m: m.project == project_id)
    assistant = params.get("assistant_id")
    if assistant:
        owners = {a.id for a in store.agents.values() if a.assistant_id == assistant}
        tests.append(lambda m: bool(owners & set(m.agents)))
    agents = params.get("agents")
    if agents:
        ids = {to_int(part) for part in agents.split(",") if part.strip()}
        if None in ids:
            raise field_error("agents", "Enter a comma-separated list of agent ids.")
        tests.append(lambda m: bool(ids & set(m.agents)))
    slug = params.get("slug")
    if slug:
        tests.append(lambda m: m.slug == slug)
    chosen = [m for m in store.metrics.values() if all(t(m) for t in tests)]
    chosen.sort(key=lambda m: (m.display_order, m.id))
    return [serialize.metric_list_item(store, m) for m in chosen]


def find_metric(store: Store, key: str) -> Metric:
    """By numeric id or by slug, as the spec allows on GET."""
    number = to_int(key)
    metric = store.metrics.get(number) if number is not None else None
    if metric is None:
        metric = next((m for m in store.metrics.values() if m.slug == key), None)
    if metric is None:
        raise not_found()
    return metric


def get_agent(store: Store, raw_id: str) -> dict[str, Any]:
    """GET /test_framework/v2/aiagents/{id}/ (docs `api-reference/test_framework/get-agent.mdx`; the fields the
    SDK's `agents.create` takes and the variable reference's `{{agent.*}}` lists)."""
    agent = store.agents.get(int(raw_id)) if raw_id.isdigit() else None
    if agent is None:
        raise not_found()
    return {"id": agent.id, "agent_name": agent.name, "description": agent.description, "language": agent.language,
            "inbound": agent.inbound, "contact_number": agent.contact_number, "assistant_id": agent.assistant_id}


def get_metric(store: Store, key: str) -> dict[str, Any]:
    return serialize.metric_detail(store, find_metric(store, key))


def _changes(store: Store, body: Mapping[str, Any]) -> dict[str, Any]:
    """Validated field → value for every writable field present in the body; unknown fields are ignored."""
    changes: dict[str, Any] = {}
    for field in _STRINGS:
        if field in body:
            if not isinstance(body[field], str):
                raise field_error(field, BAD_STR)
            changes[field] = body[field]
    if "name" in changes and not changes["name"].strip():
        raise field_error("name", "This field may not be blank.")
    for field in _BOOLS:
        if field in body:
            if not isinstance(body[field], bool):
                raise field_error(field, BAD_BOOL)
            changes[field] = body[field]
    if "add_to_new_agents" in body:
        if body["add_to_new_agents"] is not None and not isinstance(body["add_to_new_agents"], bool):
            raise field_error("add_to_new_agents", BAD_BOOL)
        changes["add_to_new_agents"] = body["add_to_new_agents"]
    for field, allowed in _CHOICES.items():
        if field in body:
            if body[field] not in allowed:
                raise field_error(field, f'"{body[field]}" is not a valid choice.')
            changes[field] = body[field]
    changes.update(_structured(store, body))
    return changes


def _structured(store: Store, body: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "enum_values" in body:
        values = body["enum_values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise field_error("enum_values", "Expected a list of strings.")
        changes["enum_values"] = list(values)
    if "display_order" in body:
        order = to_int(body["display_order"])
        if order is None:
            raise field_error("display_order", BAD_INT)
        changes["display_order"] = order
    if "configuration" in body:
        if not isinstance(body["configuration"], dict):
            raise field_error("configuration", "Expected a dictionary of items.")
        changes["configuration"] = dict(body["configuration"])
    if "agents" in body:
        agents = body["agents"]
        ids = [to_int(a) for a in agents] if isinstance(agents, list) else [None]
        unknown = [a for a in ids if a not in store.agents]
        if unknown:
            raise field_error("agents", f"Invalid agent ids: {unknown}.")
        changes["agents"] = ids
    return changes


def _check_consistent(metric: Metric) -> None:
    if metric.eval_type == "enum" and not metric.enum_values:
        raise field_error("enum_values", "Enum metrics need at least one value in enum_values.")
    if metric.type == "custom_code" and not metric.custom_code.strip():
        raise field_error("custom_code", "custom_code is required when type is custom_code.")


def patch_metric(store: Store, key: str, raw_body: object) -> dict[str, Any]:
    """Partial update; `project` is read-only once set (ignored), as the spec says."""
    metric = find_metric(store, key)
    changes = _changes(store, as_object(raw_body))
    candidate = Metric(**{**metric.__dict__, **changes})
    _check_consistent(candidate)
    with store.lock:
        for field, value in changes.items():
            setattr(metric, field, value)
        metric.updated_at = store.now()
        store.record_history(metric, "~", "Updated via API")
    return serialize.metric_edit(metric)


def create_metric(store: Store, raw_body: object) -> dict[str, Any]:
    body = as_object(raw_body)
    changes = _changes(store, body)
    for field in ("name", "eval_type"):
        if field not in changes:
            raise field_error(field, REQUIRED)
    if changes.get("type") in ("basic", "custom_prompt"):
        raise field_error("type", "basic and custom_prompt are deprecated; use llm_judge or custom_code.")
    project = to_int(body.get("project")) if body.get("project") is not None else None
    if project is None and to_int(body.get("agent")) in store.agents:
        project = store.data.project_id
    if project is None:
        raise field_error("project", REQUIRED)
    if project != store.data.project_id:
        raise field_error("project", f'Invalid pk "{project}" - object does not exist.')
    now = store.now()
    metric_id = store.next_id("metric")
    defaults: dict[str, Any] = {"description": "", "type": "llm_judge", "enum_values": [], "agents": [],
                                "display_order": len(store.metrics) + 1}
    metric = Metric(id=metric_id, project=project, rule="auto", slug=f"metric_{metric_id}", created_at=now,
                    updated_at=now, **{**defaults, **changes})
    _check_consistent(metric)
    with store.lock:
        store.metrics[metric.id] = metric
        store.record_history(metric, "+", "Created via API")
    return serialize.metric_edit(metric)


def _mapping(value: object) -> dict[str, Any]:
    """`data`'s metadata or dynamic variables, which the judge's {{placeholders}} read."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _judged_call(store: Store, metric: Metric, data: Mapping[str, Any]) -> Call:
    """The stored call when `data` names one, else a throwaway call built from `data`'s transcript."""
    stored = store.calls.get(to_int(data.get("call_log_id")) or -1)
    if stored is not None:
        return stored
    objects = data.get("transcript_json")
    text = data.get("transcript")
    turns: tuple[Turn, ...] = ()
    if isinstance(objects, list):
        turns = turns_from_objects(objects)
    elif isinstance(text, str):
        turns = turns_from_text(text)
    duration = data.get("call_duration")
    now = store.now()
    return Call(
        id=0, agent_id=metric.agents[0] if metric.agents else 0, project_id=metric.project, provider_call_id="",
        timestamp=now, created_at=now, updated_at=now, turns=turns,
        duration_s=float(duration) if isinstance(duration, (int, float)) else (turns[-1].end if turns else 0.0),
        call_ended_reason=str(data.get("call_end_reason") or ""), customer_number="",
        topic=str(data.get("topic") or ""), metadata=_mapping(data.get("metadata")),
        dynamic_variables=_mapping(data.get("dynamic_variables")),
    )


def evaluate_llm_judge_metric(store: Store, key: str, raw_body: object) -> dict[str, Any]:
    """One judge verdict on the `data` a custom-code metric holds. Binary results are 5 / 0 (None for
    N/A). Costs a judge call. `documented`: `{progress_id}` only (the spec: "Evaluate a metric using LLM
    Judge (DSPy) in the background. Returns a progress_id to poll for results"), polled at
    `evaluate_metric_progress/`. `spec`: the verdict at once (the sandbox before issue 10)."""
    output = _judge_output(store, key, raw_body)
    if not store.documented:
        return output
    job = JudgeJob(str(uuid.uuid4()), find_metric(store, key).id, output)
    with store.lock:
        store.judge_jobs[job.progress_id] = job
    return {"progress_id": job.progress_id}


def judge_progress(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The state object the spec describes ("status, output, error, etc."): `in_progress` for the first
    polls, then `success` with `output: {result, explanation}`."""
    progress_id = params.get("progress_id") or ""
    if not progress_id:
        raise field_error("progress_id", REQUIRED)
    job = store.judge_jobs.get(progress_id)
    if job is None:
        raise not_found("No evaluation with this progress_id.")
    with store.lock:
        job.polls += 1
        if job.polls <= store.judge_polls:
            return {"progress_id": progress_id, "status": "in_progress", "output": None, "error": None}
    return {"progress_id": progress_id, "status": "success", "output": dict(job.output), "error": None}


def _judge_output(store: Store, key: str, raw_body: object) -> dict[str, Any]:
    metric = find_metric(store, key)
    body = as_object(raw_body)
    data = body.get("data")
    if not isinstance(data, dict):
        raise field_error("data", REQUIRED)
    description = opt_str(body, "description") or metric.description
    requested = opt_str(body, "eval_type", nullable=True) or metric.eval_type
    kind = "binary" if requested in BINARY_ALIASES else requested
    if kind not in EVAL_TYPES:
        raise field_error("eval_type", f'"{requested}" is not a valid choice.')
    labels = body.get("enum_values") or metric.enum_values
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise field_error("enum_values", "Expected a list of strings.")
    call = _judged_call(store, metric, data)
    try:
        verdict = judge(description, kind, labels, call, store.agents.get(call.agent_id))
    except PromptError as error:
        raise field_error("description", str(error)) from error
    with store.lock:
        store.evaluations.add(EvalCount(llm_judge=1, credits=JUDGE_COST))
    return {"result": judge_value_for_code(verdict.value, kind), "explanation": verdict.explanation}



# --- history, restore, optimisation proposals ---------------------------------------------------


def history(store: Store, key: str, params: Mapping[str, str], url: URL) -> dict[str, Any]:
    """`PaginatedMetricHistoryList`, newest change first."""
    metric = find_metric(store, key)
    entries = sorted(store.history.get(metric.id, []), key=lambda e: e.history_id, reverse=True)
    size = max(1, min(to_int(params.get("page_size", "")) or 20, 100))
    page = to_int(params.get("page") or "1")
    last = max(1, -(-len(entries) // size))
    if page is None or not 1 <= page <= last:
        raise not_found("Invalid page.")
    rows = entries[(page - 1) * size: page * size]
    return {
        "count": len(entries),
        "next": str(url.include_query_params(page=page + 1)) if page < last else None,
        "previous": str(url.include_query_params(page=page - 1)) if page > 1 else None,
        "results": [serialize.history_entry(metric, e) for e in rows],
    }


def restore(store: Store, key: str, raw_body: object) -> dict[str, Any]:
    """Put the metric back as a history row has it; the restore is itself a new history row."""
    metric = find_metric(store, key)
    body = as_object(raw_body)
    if "history_id" not in body:
        raise field_error("history_id", REQUIRED)
    history_id = to_int(body["history_id"])
    if history_id is None:
        raise field_error("history_id", BAD_INT)
    entry = next((e for e in store.history.get(metric.id, []) if e.history_id == history_id), None)
    if entry is None:
        raise field_error("history_id", f"No history entry {history_id} for metric {metric.id}.")
    with store.lock:
        for field, value in entry.snapshot.items():
            setattr(metric, field, copy.deepcopy(value))
        metric.updated_at = store.now()
        store.record_history(metric, "~", f"Restored from history {history_id}")
    return serialize.metric_detail(store, metric)


def apply_proposal(store: Store, key: str) -> dict[str, Any]:
    """Apply the optimisation proposal waiting on the metric, and clear it."""
    metric = find_metric(store, key)
    proposal = metric.pending_proposal
    if proposal is None:
        raise field_error("non_field_errors", f"Metric {metric.id} has no pending optimisation proposal.")
    with store.lock:
        metric.description = str(proposal.get("description") or metric.description)
        kind, trigger = proposal.get("trigger_kind"), proposal.get("evaluation_trigger")
        if kind in ("llm_judge", "custom_code") and isinstance(trigger, str) and trigger != "always":
            metric.evaluation_trigger, metric.trigger_type = "custom", str(kind)
            if kind == "custom_code":
                metric.evaluation_trigger_custom_code = trigger
            else:
                metric.evaluation_trigger_prompt = trigger
        if proposal.get("type") == "custom_code" and proposal.get("custom_code"):
            metric.type, metric.custom_code = "custom_code", str(proposal["custom_code"])
        metric.pending_proposal = None
        metric.updated_at = store.now()
        store.record_history(metric, "~", "Applied optimisation proposal")
    return {"detail": "Metric updated; pending proposal cleared.", "metric": serialize.metric_edit(metric)}


def dismiss_proposal(store: Store, key: str) -> dict[str, Any]:
    metric = find_metric(store, key)
    if metric.pending_proposal is None:
        raise field_error("non_field_errors", f"Metric {metric.id} has no pending optimisation proposal.")
    with store.lock:
        metric.pending_proposal = None
    return {"detail": "Proposal cleared."}
