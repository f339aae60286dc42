"""Answers shaped like the spec's component schemas (CallLogList, CallLogDetail, MetricList, ...)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

from .engine import metric_cost, status_of
from .models import Call, HistoryEntry, Metric, MetricResult, MetricReview, TestSet, Vote
from .render import iso, mmss, recording_url, transcript_items, transcript_json, transcript_text, value_fields
from .store import Store

# documented dialect: how a binary metric's result row is labelled. Cekura's material shows two:
# the webhook page's `eval_type: "binary"` + boolean `passed` with the legacy `type:
# "binary_workflow_adherence"` and `score` 5/0 beside them (docs `documentation/advanced/
# webhook-format.mdx`), and the skills' `score` 0/5/None + `score_normalized` with `extra.trigger_failed`
# for N/A and a legacy `type` such as `binary_qualitative` (skills `cekura-metric-design/references/
# api-reference.md`). The sandbox serves the first on odd metric ids and the second on even ones, so a
# client meets both in one call.
WEBHOOK_STYLE = "binary_workflow_adherence"
SKILLS_STYLE = "binary_qualitative"


def metric_results(store: Store, call: Call, detailed: bool) -> list[dict[str, Any]]:
    """`CallLogListSerializerMetrics` rows, or the `...WithExplanation` ones of `evaluation.metrics`."""
    return _result_rows(store, call, _ordered_results(store, call), detailed)


def _ordered_results(store: Store, call: Call) -> list[tuple[Metric, MetricResult]]:
    """The call's results of metrics that still exist, in the metrics' display order."""
    found = [(metric, result) for result in call.results.values()
             if (metric := store.metrics.get(result.metric_id)) is not None]
    found.sort(key=lambda pair: (pair[0].display_order, pair[0].id))
    return found


def _result_rows(store: Store, call: Call, ordered: list[tuple[Metric, MetricResult]],
                 detailed: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    votes = {v.metric_id: v for v in store.votes if v.call_id == call.id} if detailed else {}
    for metric, result in ordered:
        if store.documented:
            row = documented_result(metric, result, detailed)
        else:
            value, score, enum = value_fields(result.value, metric.eval_type)
            row = {"id": metric.id, "name": metric.name, "type": metric.eval_type, "score": score,
                   "enum": enum, "value": value}
        if detailed:
            row["explanation"] = list(result.explanation)
            extra = row.setdefault("extra", {})
            vote = votes.get(metric.id)
            if vote is not None:
                extra["review"] = _review(vote)
        rows.append(row)
    return rows


def _review(vote: Vote) -> dict[str, Any]:
    return {"thumbs_up": vote.thumbs_up, "expected_value": vote.expected, "feedback": vote.feedback,
            "created_at": iso(vote.created_at)}


def binary_style(metric: Metric) -> str:
    return WEBHOOK_STYLE if metric.id % 2 else SKILLS_STYLE


def documented_result(metric: Metric, result: MetricResult, detailed: bool) -> dict[str, Any]:
    """A result as Cekura's docs and skills show it: `score` (5 / 0 / null) and no `value` unless the
    metric is an enum; the spec's field text says the same ("score: present if metric type is not
    enum", "value: present if metric type is enum")."""
    row: dict[str, Any] = {"id": metric.id, "name": metric.name}
    value = result.value
    if metric.eval_type == "binary":
        style = binary_style(metric)
        score = None if value is None else (5 if value is True else 0)
        row.update(type=style, score=score)
        if style == WEBHOOK_STYLE:
            row.update(eval_type="binary", passed=None if value is None else value is True,
                       vocera_defined_metric_code=metric.vocera_defined_metric_code)
        else:
            row["score_normalized"] = None if score is None else score // 5
            if value is None and detailed:
                row["extra"] = {"trigger_failed": True}
    elif metric.eval_type == "enum":
        label = value if isinstance(value, str) else None
        row.update(type="enum", enum=label, value=label)
    else:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        row.update(type=metric.eval_type, score=number)
    if metric.vocera_defined_metric_code:
        row["vocera_defined_metric_code"] = metric.vocera_defined_metric_code
    return row


def documented_turns(call: Call) -> list[dict[str, Any]]:
    """Transcript turns with the `time` ("m:ss") the docs' call-log examples carry."""
    return [{**item, "time": f"{int(item['start_time']) // 60}:{int(item['start_time']) % 60:02d}"}
            for item in transcript_items(call)]


def _agent_name(store: Store, call: Call) -> str:
    agent = store.agents.get(call.agent_id)
    return agent.name if agent else ""


def call_row(store: Store, call: Call) -> dict[str, Any]:
    """A `CallLogList` row. The spec types `transcript_object` and `evaluation` as strings here, so they
    are JSON-encoded."""
    ordered = _ordered_results(store, call)
    return {
        "id": call.id, "duration": mmss(call.duration_s), "success": call.success,
        "is_reviewed": call.is_reviewed, "status": status_of(call), "feedback": call.feedback,
        "metrics": _result_rows(store, call, ordered, detailed=False), "call_ended_reason": call.call_ended_reason,
        "customer_number": call.customer_number, "agent": call.agent_id, "agent_name": _agent_name(store, call),
        "call_id": call.provider_call_id, "trace_id": "", "timestamp": iso(call.timestamp), "error_message": None,
        "dropoff_point": "", "topic": call.topic, "created_at": iso(call.created_at),
        "updated_at": iso(call.updated_at), "transcript": transcript_text(call),
        "transcript_object": transcript_json(call),
        "evaluation": json.dumps({"metrics": _result_rows(store, call, ordered, detailed=True)}),
    }


def call_detail(store: Store, call: Call) -> dict[str, Any]:
    """A `CallLogDetail`."""
    return {
        "id": call.id, "duration": mmss(call.duration_s), "voice_recording_url": recording_url(call),
        "critical_categories": [],
        "transcript_object": documented_turns(call) if store.documented else transcript_items(call),
        "status": status_of(call),
        "agent_id": str(call.agent_id), "agent_name": _agent_name(store, call),
        "evaluation": {"metrics": metric_results(store, call, detailed=True)},
        "metadata": dict(call.metadata), "dynamic_variables": dict(call.dynamic_variables),
        "testing_channel_index": 1, "timestamp": iso(call.timestamp), "success": call.success,
        "is_reviewed": call.is_reviewed, "feedback": call.feedback, "rubric": None,
        "transcript": transcript_text(call), "call_ended_reason": call.call_ended_reason, "dropoff_point": "",
        "topic": call.topic, "customer_number": call.customer_number, "user_generated_transcript": None,
        "error_message": None, "created_at": iso(call.created_at), "updated_at": iso(call.updated_at),
        "call_id": call.provider_call_id, "trace_id": "", "agent": call.agent_id, "project": call.project_id,
    }


def _metric_common(metric: Metric) -> dict[str, Any]:
    return {
        "id": metric.id, "slug": metric.slug, "project": metric.project, "agents": list(metric.agents),
        "name": metric.name, "description": metric.description, "function_name": None, "type": metric.type,
        "eval_type": metric.eval_type, "enum_values": list(metric.enum_values),
        "audio_enabled": metric.audio_enabled, "observability_enabled": metric.observability_enabled,
        "simulation_enabled": metric.simulation_enabled, "sampling_enabled": metric.sampling_enabled,
        "prompt": metric.prompt, "evaluation_trigger": metric.evaluation_trigger,
        "trigger_type": metric.trigger_type, "evaluation_trigger_prompt": metric.evaluation_trigger_prompt,
        "evaluation_trigger_custom_code": metric.evaluation_trigger_custom_code,
        "priority_assignment_prompt": "", "vocera_defined_metric_code": metric.vocera_defined_metric_code,
        "configuration": dict(metric.configuration), "alert_type": "disabled",
        "significant_change_alert_status": "disabled", "significant_change_alert_direction": "",
        "window_size": 7, "std_multiplier": 2.0, "ewma_alpha": 0.3, "add_to_new_agents": metric.add_to_new_agents,
        "alert_filters": None, "slack_workspace": None, "slack_channel_id": None,
    }


def metric_list_item(store: Store, metric: Metric) -> dict[str, Any]:
    """A `MetricList` entry (`custom_code` is write-only there, so it is left out)."""
    names = [store.agents[a].name for a in metric.agents if a in store.agents]
    return {
        **_metric_common(metric), "agent_names": ", ".join(names), "display_order": metric.display_order,
        "kb_file_ids": [], "knowledge_base_files": [], "metric_cost": metric_cost(metric),
    }


def metric_detail(store: Store, metric: Metric) -> dict[str, Any]:
    """A `MetricDetailV2`, with the metric's Lab reviews."""
    overall, total = _scores(store, metric)
    reviews = [
        review_detail(store, ts, ts.reviews[metric.id])
        for ts in sorted(store.test_sets.values(), key=lambda t: t.id) if metric.id in ts.reviews
    ]
    detail = {
        **_metric_common(metric), "custom_code": metric.custom_code, "overall_score": overall,
        "total_score": total, "reviews": reviews, "pending_optimisation_proposal": metric.pending_proposal,
    }
    if store.documented:
        detail["metric_cost"] = metric_cost(metric)
    return detail


def _scores(store: Store, metric: Metric) -> tuple[str, str]:
    values = [c.results[metric.id].value for c in store.calls.values() if metric.id in c.results]
    shown = [v for v in values if v is not None]
    if not shown:
        return "", str(len(values))
    if metric.eval_type == "binary":
        return f"{100 * sum(1 for v in shown if v is True) / len(shown):.1f}", str(len(values))
    if metric.eval_type == "enum":
        return str(Counter(str(v) for v in shown).most_common(1)[0][0]), str(len(values))
    numbers = [float(v) for v in shown if isinstance(v, (int, float))]
    return (f"{sum(numbers) / len(numbers):.2f}" if numbers else ""), str(len(values))


def metric_edit(metric: Metric) -> dict[str, Any]:
    """A `SchemaPostMetricEdit` (the create and PATCH answer)."""
    return {
        "id": metric.id, "name": metric.name, "description": metric.description,
        "audio_enabled": metric.audio_enabled, "prompt": metric.prompt, "project": metric.project,
        "agents": list(metric.agents), "assistant_id": metric.assistant_id, "type": metric.type,
        "eval_type": metric.eval_type, "enum_values": list(metric.enum_values),
        "display_order": metric.display_order, "configuration": dict(metric.configuration),
        "add_to_new_agents": metric.add_to_new_agents, "simulation_enabled": metric.simulation_enabled,
        "observability_enabled": metric.observability_enabled, "sampling_enabled": metric.sampling_enabled,
        "evaluation_trigger": metric.evaluation_trigger, "evaluation_trigger_prompt": metric.evaluation_trigger_prompt,
        "trigger_type": metric.trigger_type, "evaluation_trigger_custom_code": metric.evaluation_trigger_custom_code,
        "custom_code": metric.custom_code,
    }


def test_set_inline(store: Store, test_set: TestSet) -> dict[str, Any]:
    call = store.calls[test_set.call_id]
    return {
        "id": test_set.id, "agent": test_set.agent_id, "name": test_set.name, "transcript": transcript_text(call),
        "voice_recording_url": recording_url(call), "call_end_reason": call.call_ended_reason,
        "duration": mmss(call.duration_s), "source_model": "CallLog", "source_id": str(call.id),
        "created_at": iso(test_set.created_at), "updated_at": iso(test_set.updated_at),
    }


def review_inline(store: Store, review: MetricReview) -> dict[str, Any]:
    metric = store.metrics[review.metric_id]
    return {
        "id": review.id, "metric": metric.id, "metric_name": metric.name,
        "metric_enum_values": list(metric.enum_values), "eval_type": metric.eval_type,
        "expected_value": review.expected, "explanation": list(review.explanation), "feedback": review.feedback,
        "metric_function_name": "", "metric_vocera_defined_metric_code": "",
    }


def review_detail(store: Store, test_set: TestSet, review: MetricReview) -> dict[str, Any]:
    return {
        "id": review.id, "test_set": test_set_inline(store, test_set), "metric": review.metric_id,
        "expected_value": review.expected, "actual_value": review.actual, "explanation": list(review.explanation),
        "feedback": review.feedback, "created_at": iso(review.created_at), "updated_at": iso(review.updated_at),
    }


def test_set_detail(store: Store, test_set: TestSet) -> dict[str, Any]:
    call = store.calls[test_set.call_id]
    return {
        **test_set_inline(store, test_set), "transcript_object": transcript_items(call),
        "voice_recording": recording_url(call),
        "metric_reviews": [review_inline(store, r) for r in sorted(test_set.reviews.values(), key=lambda r: r.id)],
    }


def history_entry(metric: Metric, entry: HistoryEntry) -> dict[str, Any]:
    """A `MetricHistory` row: the metric as it was after the change."""
    snap = entry.snapshot
    return {
        "history_id": entry.history_id, "history_date": iso(entry.date), "history_type": entry.kind,
        "history_change_reason": entry.reason, "history_user": None, "version_id": f"v{entry.history_id}",
        "version_name": None, "agents_snapshot": list(snap["agents"]), "id": metric.id, "slug": metric.slug,
        "project": metric.project, "agent": None, "name": snap["name"], "description": snap["description"],
        "function_name": metric.function_name, "type": snap["type"], "eval_type": snap["eval_type"],
        "enum_values": list(snap["enum_values"]), "audio_enabled": snap["audio_enabled"],
        "observability_enabled": snap["observability_enabled"], "simulation_enabled": snap["simulation_enabled"],
        "sampling_enabled": snap["sampling_enabled"], "alert_enabled": False, "prompt": snap["prompt"],
        "display_order": snap["display_order"], "evaluation_trigger": snap["evaluation_trigger"],
        "trigger_type": snap["trigger_type"], "evaluation_trigger_prompt": snap["evaluation_trigger_prompt"],
        "evaluation_trigger_custom_code": snap["evaluation_trigger_custom_code"], "priority_assignment_prompt": "",
        "configuration": dict(snap["configuration"]), "alert_type": "disabled",
        "significant_change_alert_status": "disabled", "significant_change_alert_direction": "", "window_size": 7,
        "std_multiplier": 2.0, "ewma_alpha": 0.3, "add_to_new_agents": metric.add_to_new_agents,
        "alert_filters": None, "slack_workspace": None, "slack_channel_id": None,
        "custom_code": snap["custom_code"], "vocera_defined_metric_code": metric.vocera_defined_metric_code,
        "llm_provider": "gemini", "relevance_llm_provider": "gemini", "metric_description_variables": [],
        "evaluation_trigger_variables": [],
    }


def billing_info(store: Store) -> dict[str, Any]:
    """`BillingInfo`, plus the balance split the docs page describes (`balance`, `extra_balance`,
    `total_balance`) in the documented dialect. Amounts are decimal strings, as the spec's examples."""
    used = store.credits_spent
    remaining = store.credits_remaining
    expiry = store.anchor + timedelta(days=30)
    body: dict[str, Any] = {
        "organization": store.data.project_id // 10, "credits_remaining": f"{remaining:.2f}",
        "credits_used": f"{used:.2f}", "initial_balance": f"{store.initial_credits:.2f}", "balance_expiry": iso(expiry),
        "subscription_status": {
            "status": "active", "is_active": True, "is_trial": False, "pack_name": "Sandbox",
            "expire_at": iso(expiry), "last_payment_at": iso(store.anchor - timedelta(days=1)),
            "days_until_expiry": 30, "created_at": iso(store.anchor - timedelta(days=365)),
            "pack": {"name": "Sandbox", "max_concurrent_runs_limit": 5, "max_concurrent_chat_runs_limit": 5,
                     "max_agents_limit": -1, "max_members_limit": -1, "max_projects_limit": -1,
                     "billing_type": "subscription", "subscription_overage": "-1"},
        },
        "created_at": iso(store.anchor - timedelta(days=365)), "updated_at": iso(store.now()),
    }
    if store.documented:
        body.update(balance=f"{remaining:.2f}", extra_balance="0.00", total_balance=f"{remaining:.2f}")
    return body
