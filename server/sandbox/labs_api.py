"""Labs: test sets from calls, and the `process_feedbacks` optimization with its progress polling."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from . import serialize
from .calls_api import parse_expected
from .errors import ApiError, ServerErrorPage, field_error, not_found
from .labs_proposal import optimise
from .models import METRIC_TYPES, Job, Metric, MetricReview, TestSet
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
    job = Job(store.next_id("job"), str(uuid.uuid4()), metric_id, optimise(store, metric, chosen, metric_type, skip))
    store.jobs[job.progress_id] = job
    return {"progress_id": job.progress_id}


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
    """Answers "in progress" (without `improved_metric_description`) for the first polls, then the result."""
    job = _job(store, params)
    with store.lock:
        job.polls += 1
        if job.cancelled:
            return {"status": "cancelled", "progress": _fraction(store, job),
                    "detail": "The optimization was cancelled."}
        if job.polls <= store.progress_polls:
            return {"status": "in_progress", "progress": _fraction(store, job)}
    return dict(job.result)


def _fraction(store: Store, job: Job) -> float:
    return round(min(job.polls, store.progress_polls) / (store.progress_polls + 1), 2)


def cancel(store: Store, raw_body: object) -> dict[str, Any]:
    job = _job(store, as_object(raw_body))
    with store.lock:
        if job.polls > store.progress_polls and not job.cancelled:
            return {"id": job.id, "progress_id": job.progress_id, "status": "completed",
                    "detail": "The optimization had already finished; nothing to cancel."}
        job.cancelled = True
    return {"id": job.id, "progress_id": job.progress_id, "status": "cancelled", "detail": "Optimization cancelled."}


def answer(store: Store, raw_body: object) -> dict[str, Any]:
    job = _job(store, as_object(raw_body))
    return {"progress_id": job.progress_id, "detail": "No questions are pending: this optimization never pauses "
            "for answers in the sandbox."}
