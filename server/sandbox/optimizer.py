"""The sandbox's deterministic stand-in for Labs' `process_feedbacks` optimizer.

For each review in the selected test sets it asks the judge what the metric's current description
scores, compares that with the reviewer's expected value, and names the recurring pattern behind
each disagreement, from the call's transcript and the reviewer's feedback text. Each pattern it
recognises adds one scoped clause ("DO NOT FLAG …", "Score N/A when …") to the description, and the
reviewers' disagreements are appended as calibration examples. Old and new accuracy come from
running the judge with the old and the new description over the same samples. Nothing is applied
to the metric: the caller has to PATCH the description.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from . import judge as judge_mod
from . import lexicon
from .engine import resolved_rule
from .models import AGENT_ROLE, CALLER_ROLE, Call, Metric, MetricReview, TestSet, VoteValue
from .render import same_value, value_fields
from .store import Store


@dataclass(frozen=True)
class Pattern:
    rule: str
    clause: str
    summary: str
    feedback_words: tuple[str, ...]


PATTERNS: dict[str, Pattern] = {
    "related_details_confirmation": Pattern(
        "one_question",
        "DO NOT FLAG a single request to confirm closely related details in one turn — for example postcode "
        "and first line of address, or date of birth and full name. Treat such a related-details "
        "confirmation as ONE question; still flag turns that ask two unrelated questions.",
        "the judge counted one request for related identity details (postcode and address; date of birth and "
        "name) as two questions",
        ("postcode", "address", "date of birth", "related", "confirm"),
    ),
    "no_booking_requested": Pattern(
        "booking",
        "SCOPE: Score N/A when no appointment was requested during the call (for example billing-only or "
        "insurance-only calls). Score FALSE only when the caller asked to book or move an appointment and "
        "the agent did not complete it.",
        "the judge failed calls in which no appointment was requested at all (billing and insurance calls), "
        "which should be N/A",
        ("billing", "insurance", "no appointment", "not request", "n/a", "never asked"),
    ),
    "sarcasm": Pattern(
        "sentiment",
        "Treat sarcastic praise (for example 'great, just great' said about a problem) as negative: judge the "
        "caller's actual attitude, not the literal words.",
        "the judge read sarcastic praise as positive sentiment",
        ("sarcas", "ironic", "not actually happy"),
    ),
    "scripted_apology": Pattern(
        "empathy",
        "Do not credit formulaic, scripted apologies (for example 'I apologise for any inconvenience') as "
        "empathy; credit only responses that acknowledge the caller's specific situation.",
        "the judge credited repeated scripted apologies as empathy",
        ("scripted", "formulaic", "apolog", "boilerplate"),
    ),
}


@dataclass(frozen=True)
class Sample:
    test_set: TestSet
    review: MetricReview
    call: Call


def lab_samples(store: Store, metric: Metric, test_sets: list[TestSet]) -> list[Sample]:
    return [Sample(ts, ts.reviews[metric.id], store.calls[ts.call_id]) for ts in test_sets]


def pattern_of(rule: str, description: str, sample: Sample, judged: object) -> str | None:
    """Name the recurring mistake behind one disagreement, if it is one the optimizer knows."""
    expected, feedback = sample.review.expected, sample.review.feedback.lower()
    for name, pattern in PATTERNS.items():
        if pattern.rule != rule:
            continue
        in_feedback = any(w in feedback for w in pattern.feedback_words)
        if _call_shows(name, description, sample.call, expected, judged) or in_feedback:
            return name
    return None


def _call_shows(name: str, description: str, call: Call, expected: object, judged: object) -> bool:
    caller_text = " ".join(t.content for t in call.turns if t.role == CALLER_ROLE)
    if name == "related_details_confirmation":
        flagged, _ = judge_mod.question_flags(description, judge_mod.turns_of(call, AGENT_ROLE))
        return expected is True and judged is False and bool(flagged) and all(f.details for f in flagged)
    if name == "no_booking_requested":
        return expected is None and judged is False and not lexicon.BOOKING_REQUEST_RE.search(caller_text)
    if name == "sarcasm":
        return str(expected).lower() == "negative" and bool(lexicon.SARCASM_RE.search(caller_text))
    agent_text = " ".join(t.content for t in call.turns if t.role != CALLER_ROLE)
    return lexicon.count_phrases(agent_text, lexicon.SCRIPTED_APOLOGY) > 0


def _score(store: Store, metric: Metric, description: str, samples: list[Sample]) -> tuple[dict[str, Any], list[Any]]:
    verdicts = [store.judge_with(metric, description, s.call) for s in samples]
    correct = sum(1 for s, v in zip(samples, verdicts, strict=True)
                  if same_value(s.review.expected, v.value, metric.eval_type))
    total = len(samples)
    return {"num_correct": correct, "num_total": total, "score": round(correct / total, 4) if total else 0.0}, verdicts


def optimise(store: Store, metric: Metric, test_sets: list[TestSet], metric_type: str | None,
             skip_evaluation: bool) -> dict[str, Any]:
    rule = resolved_rule(metric)
    samples = lab_samples(store, metric, test_sets)
    old_score, old_verdicts = _score(store, metric, metric.description, samples)
    disagreements = [(s, v) for s, v in zip(samples, old_verdicts, strict=True)
                     if not same_value(s.review.expected, v.value, metric.eval_type)]
    found = Counter(p for s, v in disagreements if (p := pattern_of(rule, metric.description, s, v.value)))
    description = improved_description(metric, found, [s for s, _ in disagreements])
    new_score, new_verdicts = _score(store, metric, description, samples)
    unresolved = [
        _unresolved(s, v.value, metric) for s, v in zip(samples, new_verdicts, strict=True)
        if not same_value(s.review.expected, v.value, metric.eval_type)
    ]
    result: dict[str, Any] = {
        "status": "completed", "progress": 1.0, "metric_id": metric.id,
        "improved_metric_description": description, **_trigger(metric),
        "metric_description_variables": [], "evaluation_trigger_variables": [],
        "review_results": [] if skip_evaluation else [
            {"review_id": s.review.id, "test_set_id": s.test_set.id, "actual_value": v.value,
             "explanation": v.explanation, "success": same_value(s.review.expected, v.value, metric.eval_type),
             "error": None}
            for s, v in zip(samples, new_verdicts, strict=True)
        ],
        "custom_code": metric.custom_code if metric.type == "custom_code" else "",
        "type": metric.type, "feedback_edits": [], "unauthorized_label_changes": [],
        "unresolved_samples": unresolved,
        "optimization_summary": _summary(metric, samples, disagreements, found, old_score, new_score),
    }
    if metric_type == "custom_code" and metric.type != "custom_code":
        result.update(type="custom_code", custom_code=python_wrapper(metric, description))
    if not skip_evaluation:
        result.update(old_score=old_score, new_score=new_score)
    return result


def improved_description(metric: Metric, found: Counter[str], disagreements: list[Sample]) -> str:
    if metric.type == "custom_code":
        return metric.description
    text = metric.description.rstrip()
    clauses = [PATTERNS[name].clause for name, _ in found.most_common() if PATTERNS[name].clause not in text]
    if clauses:
        text += "\n\nDO NOT FLAG / SCOPE (from Labs feedback)\n" + "\n".join(f"- {c}" for c in clauses)
    examples = [s for s in disagreements if s.review.feedback.strip()][:6]
    if examples:
        lines = [
            f"- Call {s.call.id}: expected {value_fields(s.review.expected, metric.eval_type)[0]}. "
            f"Reviewer: \"{s.review.feedback.strip()}\""
            for s in examples
        ]
        text += "\n\nCALIBRATION EXAMPLES\n" + "\n".join(lines)
    return text


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
    verdict = "ambiguous_label" if not sample.review.feedback.strip() else "prompt_limit"
    return {
        "review_id": sample.review.id, "test_set_id": sample.test_set.id, "call_log_id": sample.call.id,
        "verdict": verdict, "pass_rate": 0.0,
        "explanation": (
            f"Expected {value_fields(sample.review.expected, metric.eval_type)[0]} but the improved prompt still "
            f"scores {value_fields(judged, metric.eval_type)[0]}; no recurring pattern in the feedback explains it."
        ),
    }


def _summary(metric: Metric, samples: list[Sample], disagreements: list[Any], found: Counter[str],
             old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = [f"Analysed {len(samples)} reviewed call(s) in the Lab of '{metric.name}'; "
             f"{len(disagreements)} disagreed with the current prompt."]
    if metric.type == "custom_code":
        parts.append("This is a custom_code metric: the sandbox optimizer does not rewrite Python, so the code is "
                     "returned unchanged.")
    elif found:
        parts.append("Recurring pattern(s): " + "; ".join(
            f"{PATTERNS[name].summary} ({count} call(s))" for name, count in found.most_common()) + ".")
        parts.append("Added a scoped clause for each, plus the reviewers' notes as calibration examples.")
    elif disagreements:
        parts.append("No recurring pattern was recognised; the reviewers' notes were added as calibration examples.")
    else:
        parts.append("The current prompt already agrees with every review; no clause was needed.")
    parts.append(f"Accuracy on these samples: {old['num_correct']}/{old['num_total']} before, "
                 f"{new['num_correct']}/{new['num_total']} after.")
    parts.append("Nothing has been applied: PATCH the metric's description to use the improved prompt.")
    return " ".join(parts)
