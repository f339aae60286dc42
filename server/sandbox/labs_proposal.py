"""Labs' `process_feedbacks` answer: the Lab's test sets go to the text-only optimizer (`optimizer.optimize`)
as (call, expected value, note) entries, and its proposal comes back in Cekura's response shape.

Only this module touches the store; the optimizer itself sees the entries and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import Call, Metric, MetricReview, TestSet, VoteValue
from .optimizer import LabEntry, optimize, reason_of
from .prompt import placeholders
from .render import same_value, value_fields
from .store import Store


@dataclass(frozen=True)
class Sample:
    test_set: TestSet
    review: MetricReview
    call: Call


def lab_samples(store: Store, metric: Metric, test_sets: list[TestSet]) -> list[Sample]:
    return [Sample(ts, ts.reviews[metric.id], store.calls[ts.call_id]) for ts in test_sets]


def optimise(store: Store, metric: Metric, test_sets: list[TestSet], metric_type: str | None,
             skip_evaluation: bool) -> dict[str, Any]:
    samples = lab_samples(store, metric, test_sets)
    entries = [LabEntry(s.call, s.review.expected, s.review.feedback, store.agents.get(s.call.agent_id))
               for s in samples]
    proposal = optimize(metric.description, metric.eval_type, metric.enum_values, entries,
                        judge_fn=lambda text, entry: store.judge_with(metric, text, entry.call),
                        rewrite=metric.type != "custom_code")
    description = proposal.description
    result: dict[str, Any] = {
        "status": "completed", "progress": 1.0, "metric_id": metric.id,
        "improved_metric_description": description, **_trigger(metric),
        # "Variables used in metric description" (the spec): the {{placeholders}} the judge renders.
        "metric_description_variables": list(dict.fromkeys(placeholders(description))),
        "evaluation_trigger_variables": list(dict.fromkeys(placeholders(metric.evaluation_trigger_prompt))),
        "review_results": [] if skip_evaluation else [
            {"review_id": s.review.id, "test_set_id": s.test_set.id, "actual_value": v.value,
             "explanation": v.explanation, "success": same_value(s.review.expected, v.value, metric.eval_type),
             "error": None}
            for s, v in zip(samples, proposal.new_verdicts, strict=True)
        ],
        "custom_code": metric.custom_code if metric.type == "custom_code" else "",
        "type": metric.type, "feedback_edits": [], "unauthorized_label_changes": [],
        "unresolved_samples": [
            _unresolved(s, v.value, metric) for s, v in zip(samples, proposal.new_verdicts, strict=True)
            if not same_value(s.review.expected, v.value, metric.eval_type)
        ],
        "optimization_summary": proposal.summary,
    }
    if metric_type == "custom_code" and metric.type != "custom_code":
        result.update(type="custom_code", custom_code=python_wrapper(metric, description))
    if not skip_evaluation:
        result.update(old_score=proposal.old_score.as_dict(), new_score=proposal.new_score.as_dict())
    return result


def _trigger(metric: Metric) -> dict[str, Any]:
    if metric.evaluation_trigger == "always" or not metric.evaluation_trigger_prompt:
        return {"improved_evaluation_trigger": "always", "improved_trigger_kind": "always",
                "trigger_type": metric.trigger_type}
    return {"improved_evaluation_trigger": metric.evaluation_trigger_prompt,
            "improved_trigger_kind": metric.trigger_type, "trigger_type": metric.trigger_type}


def python_wrapper(metric: Metric, description: str) -> str:
    kind = "binary_workflow_adherence" if metric.eval_type == "binary" else metric.eval_type
    return (
        f"DESCRIPTION = {description!r}\n\n"
        f"result = evaluate_llm_judge_metric(data, description=DESCRIPTION, eval_type={kind!r}, "
        f"enum_values={list(metric.enum_values)!r})\n"
        "_result = result[\"result\"]\n"
        "_explanation = \" \".join(result[\"explanation\"])\n"
    )


def _unresolved(sample: Sample, judged: VoteValue, metric: Metric) -> dict[str, Any]:
    labels = metric.enum_values if metric.eval_type == "enum" else []
    verdict = "prompt_limit" if reason_of(sample.review.feedback, labels) else "ambiguous_label"
    return {
        "review_id": sample.review.id, "test_set_id": sample.test_set.id, "call_log_id": sample.call.id,
        "verdict": verdict, "pass_rate": 0.0,
        "explanation": (
            f"Expected {value_fields(sample.review.expected, metric.eval_type)[0]} but the improved prompt still "
            f"scores {value_fields(judged, metric.eval_type)[0]}"
            + ("; the feedback gives no reason the prompt could use." if verdict == "ambiguous_label"
               else "; the reviewer's reason, added to the prompt, did not change this call's result.")
        ),
    }
