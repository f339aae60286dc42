"""Labs: test sets from calls, and the `process_feedbacks` optimization with its progress polling."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from . import serialize
from .calls_api import parse_expected
from .errors import ApiError, ServerErrorPage, field_error, not_found
from .labs_proposal import optimise
from .models import METRIC_TYPES, Job, Metric, MetricReview, Question, TestSet
from .render import iso, same_value, transcript_text, value_fields
from .store import Store
from .validate import REQUIRED, as_object, choice, int_list, opt_bool, opt_int, opt_str, req_int, to_int


def create_from_call_log(store: Store, raw_body: object) -> dict[str, Any]:
    """Add a call to the Labs of the listed metrics; repeated calls update the call's existing test set."""
    body = as_object(raw_body)
    call_id = req_int(body, "call_log_id")
    if "metrics" not in body:
        raise field_error("metrics", REQUIRED)
    items = body["metrics"]
    if not isinstance(items, list):
        raise field_error("metrics", f'Expected a list of items but got type "{type(items).__name__}".')
    if any(not isinstance(item, dict) for item in items):
        raise ServerErrorPage()  # Cekura's view indexes item["metric"] unchecked: bare ids crash it
    if not items:
        raise field_error("metrics", "Add at least one metric.")
    call = store.calls.get(call_id)
    if call is None:
        raise field_error("call_log_id", f'Invalid pk "{call_id}" - object does not exist.')
    project = opt_int(body, "project")
    if project is not None and project != call.project_id:
        raise field_error("project", f"Call log {call_id} does not belong to project {project}.")
    name = opt_str(body, "name")
    entries = [_entry(store, call.id, position, item) for position, item in enumerate(items, start=1)]
    with store.lock:
        test_set = _test_set_for(store, call.id, call.agent_id, name, f"{call.topic} — call {call.id}")
        for metric, expected, feedback in entries:
            _upsert_review(store, test_set, metric, expected, feedback)
    return serialize.test_set_detail(store, test_set)


def _entry(store: Store, call_id: int, position: int, item: dict[str, Any]) -> tuple[Metric, Any, str]:
    def problem(message: str) -> ApiError:
        return field_error("metrics", f"Item {position}: {message}")

    metric_id = to_int(item.get("metric"))
    if metric_id is None:
        raise problem("'metric' (an integer metric id) is required.")
    metric = store.metrics.get(metric_id)
    if metric is None:
        raise problem(f'Invalid pk "{metric_id}" - object does not exist.')
    result = store.calls[call_id].results.get(metric_id)
    if result is None:
        raise problem(f"metric {metric_id} is not evaluated on call log {call_id}.")
    feedback = item.get("feedback") or ""
    if not isinstance(feedback, str):
        raise problem("'feedback' must be a string.")
    try:
        expected = parse_expected(metric, item["expected_value"], "metrics") if "expected_value" in item \
            else result.value
    except ApiError as exc:
        raise problem(str(exc.payload["metrics"][0])) from exc
    return metric, expected, feedback


def _test_set_for(store: Store, call_id: int, agent_id: int, name: str | None, default_name: str) -> TestSet:
    existing = next((ts for ts in store.test_sets.values() if ts.call_id == call_id), None)
    now = store.now()
    if existing is not None:
        existing.name = name or existing.name
        existing.updated_at = now
        return existing
    test_set = TestSet(store.next_id("test_set"), agent_id, call_id, name or default_name, {}, now, now)
    store.test_sets[test_set.id] = test_set
    return test_set


def _upsert_review(store: Store, test_set: TestSet, metric: Metric, expected: Any, feedback: str) -> None:
    result = store.calls[test_set.call_id].results[metric.id]
    now = store.now()
    review = test_set.reviews.get(metric.id)
    if review is None:
        test_set.reviews[metric.id] = MetricReview(store.next_id("review"), metric.id, test_set.id, expected,
                                                   result.value, list(result.explanation), feedback, now, now)
        return
    review.expected, review.feedback, review.updated_at = expected, feedback, now


def lab_of(store: Store, metric_id: int) -> list[TestSet]:
    return sorted((ts for ts in store.test_sets.values() if metric_id in ts.reviews), key=lambda ts: ts.id)


def process_feedbacks(store: Store, raw_body: object) -> dict[str, Any]:
    body = as_object(raw_body)
    metric_id = req_int(body, "metric_id")
    metric_type = choice(body, "metric_type", METRIC_TYPES)
    wanted = int_list(body, "test_set_ids", required=False)
    opt_str(body, "simplified_prompt")
    skip = bool(opt_bool(body, "skip_evaluation"))
    metric = store.metrics.get(metric_id)
    if metric is None:
        raise field_error("metric_id", f'Invalid pk "{metric_id}" - object does not exist.')
    lab = lab_of(store, metric_id)
    if wanted is None:
        if not lab:
            raise field_error("metric_id", f"Metric {metric_id} has no test sets in its Lab; add calls with "
                              "create_from_call_log first.")
        chosen = lab
    else:
        outside = [i for i in wanted if i not in {ts.id for ts in lab}]
        if outside:
            raise field_error("test_set_ids", f"Test sets {outside} are not in the Lab of metric {metric_id}.")
        if not wanted:
            raise field_error("test_set_ids", "Select at least one test set.")
        chosen = [store.test_sets[i] for i in dict.fromkeys(wanted)]
    job = Job(store.next_id("job"), str(uuid.uuid4()), metric_id, {}, test_set_ids=[ts.id for ts in chosen],
              metric_type=metric_type, skip_evaluation=skip)
    if store.documented:
        job.questions = questions_for(store, job, metric, chosen)
        with store.lock:
            if store.runs_to_fail > 0:
                store.runs_to_fail -= 1
                job.failure = store.run_failure
    if not job.paused:
        job.result = optimise(store, metric, chosen, metric_type, skip)
    store.jobs[job.progress_id] = job
    return {"progress_id": job.progress_id}


# --- questions during an optimization (documented dialect) -----------------------------------------
# Docs `documentation/guides/metric-lab.mdx`: "An optimization can pause and ask you a question when it
# hits something it cannot decide on its own — two of your labels implying contradictory rules, or a
# sample whose correct label is genuinely ambiguous." The sandbox asks, from the Lab's text alone:
# - contradictory labels: two reviews giving the same reason but expecting different values;
# - an ambiguous label: a review that overrules the metric without saying why (no feedback);
# - and, when a test asked for it (`POST /_sandbox/auto-improve/questions`), one clarifying question
#   about the first sample the Lab disagrees on.


def questions_for(store: Store, job: Job, metric: Metric, chosen: list[TestSet]) -> list[Question]:
    reviews = [(ts, ts.reviews[metric.id]) for ts in chosen]
    found: list[Question] = []

    def ask(kind: str, text: str, pairs: list[tuple[TestSet, MetricReview]]) -> None:
        found.append(Question(f"q{job.id}-{len(found) + 1}", kind, text, [r.id for _, r in pairs],
                              [ts.call_id for ts, _ in pairs], [ts.id for ts, _ in pairs]))

    by_reason: dict[str, list[tuple[TestSet, MetricReview]]] = {}
    for ts, review in reviews:
        reason = " ".join(review.feedback.lower().split())
        if reason:
            by_reason.setdefault(reason, []).append((ts, review))
    for reason, group in by_reason.items():
        labels = {_label(metric, r.expected) for _, r in group}
        if len(labels) > 1:
            ask("contradictory_labels", f"These reviews give the same reason (\"{reason}\") but expect different "
                f"values ({', '.join(sorted(labels))}). Which label is right, and what rule tells them apart?", group)
    for ts, review in reviews:
        if not review.feedback.strip() and not same_value(review.expected, review.actual, metric.eval_type):
            ask("ambiguous_label", f"Call {ts.call_id} is labelled {_label(metric, review.expected)} but the metric "
                f"scored {_label(metric, review.actual)}, and the review gives no reason. Which is right, and why?",
                [(ts, review)])
    if store.questions_to_ask > 0 and not found and reviews:
        store.questions_to_ask -= 1
        disagreeing = [p for p in reviews if not same_value(p[1].expected, p[1].actual, metric.eval_type)]
        ts, review = (disagreeing or reviews)[0]
        ask("clarification", f"For call {ts.call_id}, labelled {_label(metric, review.expected)}: should the "
            "rule behind this label apply to every call like it, or only to this one?", [(ts, review)])
    return found


def _label(metric: Metric, value: object) -> str:
    return value_fields(value if isinstance(value, (bool, float, str)) or value is None else None,
                        metric.eval_type)[0]


def question_view(store: Store, question: Question) -> dict[str, Any]:
    calls = [store.calls[c] for c in question.call_log_ids if c in store.calls]
    return {
        "id": question.id, "kind": question.kind, "question": question.text, "review_ids": question.review_ids,
        "call_log_ids": question.call_log_ids, "test_set_ids": question.test_set_ids,
        "context": [{"call_log_id": c.id, "transcript": transcript_text(c)} for c in calls],
    }


def _job(store: Store, source: Mapping[str, Any]) -> Job:
    """By `progress_id` (or the CLI's `job_id`), or by `id`: the job's number or its progress id."""
    key = source.get("progress_id") or source.get("job_id") or source.get("id")
    if key is None or key == "":
        raise field_error("progress_id", REQUIRED)
    number = to_int(key) if not isinstance(key, str) or key.isdigit() else None
    job = next((j for j in store.jobs.values() if j.id == number), None) if number is not None else None
    job = job or store.jobs.get(str(key))
    if job is None:
        raise not_found()
    return job


def progress(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """Answers "in progress" (without `improved_metric_description`) for the first polls, then the result.
    A paused run (documented dialect) answers `waiting_for_input` with its open questions until they are
    answered; its polls do not count toward the result meanwhile."""
    job = _job(store, params)
    with store.lock:
        if job.cancelled:
            return {"status": "cancelled", "progress": _fraction(store, job),
                    "detail": "The optimization was cancelled."}
        if job.paused:
            return {"status": "waiting_for_input", "progress": _fraction(store, job),
                    "questions": [question_view(store, q) for q in job.questions if q.open]}
        job.polls += 1
        if job.polls <= store.progress_polls:
            return {"status": "in_progress", "progress": _fraction(store, job)}
        if store.documented:
            wrapped = store.progress_shape == "wrapped" or (store.progress_shape == "alternate" and job.id % 2 == 1)
            if job.failure is not None:
                return ({"status": "error", "output": {"error": job.failure}} if wrapped
                        else {"status": "error", "progress": 1.0, "error": job.failure})
            _record_proposal(store, job)
            # The docs' progress states are "success" / "error" (mcp/auto-optimize-metrics.mdx).
            return docs_wrapped(job.result) if wrapped else {**job.result, "status": "success"}
    return dict(job.result)


def docs_wrapped(result: Mapping[str, Any]) -> dict[str, Any]:
    """The finished run as docs `mcp/auto-optimize-metrics.mdx` reads it: `status` "success", the proposal under
    `output` (`output.improved_metric_description`, `output.improved_evaluation_trigger`), and the optimizer's
    code, metric type and score under `output.meta_harness` (`optimized_code`, `type`, `score`, `num_correct`,
    `num_total`) — there and only there, as the page's troubleshooting says "that's where the real change
    lives". The spec's other fields stay under `output` (the page names no others, and lists no `old_score`)."""
    moved = ("status", "progress", "custom_code", "type", "new_score")
    output = {k: v for k, v in result.items() if k not in moved}
    raw_new = result.get("new_score")
    new: dict[str, Any] = raw_new if isinstance(raw_new, dict) else {}
    output["meta_harness"] = {
        "optimized_code": result.get("custom_code") or "", "type": result.get("type"),
        "score": new.get("score"), "num_correct": new.get("num_correct"), "num_total": new.get("num_total"),
    }
    return {"status": "success", "output": output}


def _record_proposal(store: Store, job: Job) -> None:
    """The finished proposal waits on the metric (`pending_optimisation_proposal`, in the shape the
    spec's field text gives: {description, evaluation_trigger, type, custom_code, score, baseline_score,
    cron_job_id, cron_job_name, proposed_at}, plus `trigger_kind`) until it is applied or dismissed."""
    metric = store.metrics.get(job.metric_id)
    if job.proposal_recorded or metric is None:
        return
    job.proposal_recorded = True
    result = job.result
    new, old = result.get("new_score"), result.get("old_score")
    metric.pending_proposal = {
        "description": result.get("improved_metric_description", metric.description),
        "evaluation_trigger": result.get("improved_evaluation_trigger", "always"),
        "trigger_kind": result.get("improved_trigger_kind", "always"),
        "type": result.get("type", metric.type), "custom_code": result.get("custom_code", ""),
        "score": new.get("score") if isinstance(new, dict) else None,
        "baseline_score": old.get("score") if isinstance(old, dict) else None,
        "cron_job_id": None, "cron_job_name": None, "proposed_at": iso(store.now()),
    }


def _fraction(store: Store, job: Job) -> float:
    return round(min(job.polls, store.progress_polls) / (store.progress_polls + 1), 2)


def cancel(store: Store, raw_body: object) -> dict[str, Any]:
    job = _job(store, as_object(raw_body))
    with store.lock:
        if job.polls > store.progress_polls and not job.cancelled and not job.paused:
            return {"id": job.id, "progress_id": job.progress_id, "status": "completed",
                    "detail": "The optimization had already finished; nothing to cancel."}
        job.cancelled = True
    return {"id": job.id, "progress_id": job.progress_id, "status": "cancelled", "detail": "Optimization cancelled."}


def answer(store: Store, raw_body: object) -> dict[str, Any]:
    """The spec: "Answer the questions a running metric optimization is paused on. Answers are keyed by
    question id; use {"action": "skip"} to skip one." An answer is a string, `{"answer": "..."}` or
    `{"action": "answer", "answer": "..."}`. Each answer is appended to the feedback of the reviews the
    question is about (listed in the result's `feedback_edits`); once no question is open, the run
    resumes with the edited feedback."""
    body = as_object(raw_body)
    job = _job(store, body)
    if not store.documented:
        return {"progress_id": job.progress_id, "detail": "No questions are pending: this optimization never "
                "pauses for answers in the sandbox."}
    if job.cancelled:
        raise field_error("progress_id", "This optimization was cancelled; start a new one.")
    if not job.paused:
        raise field_error("progress_id", "This optimization is not waiting for answers.")
    answers = body.get("answers")
    if not isinstance(answers, dict) or not answers:
        raise field_error("answers", 'Send {"<question id>": "<answer>" | {"action": "skip"}} for the open questions.')
    open_ids = {q.id: q for q in job.questions if q.open}
    unknown = [k for k in answers if k not in open_ids]
    if unknown:
        raise field_error("answers", f"Unknown or already answered question ids: {', '.join(map(str, unknown))}. "
                          f"Open: {', '.join(open_ids)}.")
    parsed = {qid: _parse_answer(qid, raw) for qid, raw in answers.items()}
    with store.lock:
        for qid, text in parsed.items():
            if text is None:
                open_ids[qid].skipped = True
            else:
                open_ids[qid].answer = text
        if not job.paused:
            _resume(store, job)
    return {"progress_id": job.progress_id, "status": "waiting_for_input" if job.paused else "resumed",
            "answered": [q for q, t in parsed.items() if t is not None],
            "skipped": [q for q, t in parsed.items() if t is None],
            "open": [q.id for q in job.questions if q.open]}


def _parse_answer(qid: str, raw: object) -> str | None:
    """The answer's text, or None for a skip."""
    if isinstance(raw, dict):
        if raw.get("action") == "skip":
            return None
        raw = raw.get("answer", raw.get("text"))
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    raise field_error("answers", f'Question {qid}: give the answer as text, or {{"action": "skip"}}.')


def _resume(store: Store, job: Job) -> None:
    """Apply the answers to the reviews' feedback, then run the optimizer on the edited Lab."""
    metric = store.metrics[job.metric_id]
    chosen = [store.test_sets[i] for i in job.test_set_ids if i in store.test_sets]
    edits: list[dict[str, Any]] = []
    for question in job.questions:
        if question.answer is None:
            continue
        for ts in chosen:
            review = ts.reviews.get(metric.id)
            if review is None or review.id not in question.review_ids:
                continue
            old = review.feedback
            review.feedback = f"{old.rstrip()} {question.answer}".strip()
            review.updated_at = store.now()
            edits.append({"question_id": question.id, "review_id": review.id, "test_set_id": ts.id,
                          "old_feedback": old, "new_feedback": review.feedback})
    job.result = optimise(store, metric, chosen, job.metric_type, job.skip_evaluation)
    job.result["feedback_edits"] = edits
    job.polls = 0
