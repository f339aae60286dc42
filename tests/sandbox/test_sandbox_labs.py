"""Votes, Labs test sets, process_feedbacks, PATCH and re-runs: each documented quirk, and the full cycle."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sandbox_helpers import (
    BOOKING,
    CALLS,
    EMPATHY,
    EXTERNAL,
    MAIN,
    ONE_QUESTION,
    PHARMACY,
    REFILL,
    SENTIMENT,
    UNDER_FIVE,
    Admin,
    main_calls,
)
from sandbox_spec import assert_response

LABS = "/test_framework/metric-reviews"
CREATE_TEST_SET = "/test_framework/test-sets/create_from_call_log/"
FEEDBACK = {
    ONE_QUESTION: "The agent asked for postcode and address in one confirmation turn; related details count as one "
                  "question.",
    BOOKING: "This was a billing call and no appointment was requested, so the metric should be N/A.",
    SENTIMENT: "The caller was being sarcastic ('just great'); they were annoyed, not pleased.",
    EMPATHY: "The agent only repeated a scripted apology; that is not empathy.",
}


def shown(expected: Any) -> str:
    if expected is None:
        return "N/A"
    if isinstance(expected, bool):
        return "TRUE" if expected else "FALSE"
    return str(expected)


def agrees(expected: Any, actual: str | None) -> bool:
    if isinstance(expected, float) and actual not in (None, "N/A"):
        return abs(expected - float(actual or 0)) < 0.5
    return shown(expected) == actual


def vote(api: httpx.Client, call_id: int, **body: Any) -> httpx.Response:
    return api.post(f"{CALLS}/{call_id}/mark_metric_vote/", json=body)


def add_to_lab(api: httpx.Client, call_id: int, metric_id: int, expected: Any, feedback: str) -> dict[str, Any]:
    answer = api.post(CREATE_TEST_SET, json={"call_log_id": call_id, "metrics": [
        {"metric": metric_id, "feedback": feedback, "expected_value": expected}]})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def poll(api: httpx.Client, progress_id: str) -> tuple[int, dict[str, Any]]:
    for attempt in range(1, 10):
        answer = api.get(f"{LABS}/process_feedbacks_progress/", params={"progress_id": progress_id})
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        if "improved_metric_description" in body:
            return attempt, body
        assert body["status"] == "in_progress" and 0 < body["progress"] < 1
    raise AssertionError("the optimization never completed")


def row_of(api: httpx.Client, call_id: int) -> dict[str, Any]:
    return dict(api.get(f"{EXTERNAL}/{call_id}/").json())


# --- votes -----------------------------------------------------------------------------------


def test_a_vote_marks_the_call_reviewed(api: httpx.Client, admin: Admin) -> None:
    truth = admin.truth(ONE_QUESTION)
    rows = {r["id"]: r for r in main_calls(api)}
    call_id = next(c for c, t in truth.items() if t["pattern"] and all(
        m["value"] != "FALSE" for m in rows[c]["metrics"] if m["id"] in (BOOKING, UNDER_FIVE)))
    assert rows[call_id]["status"] == "failure" and rows[call_id]["is_reviewed"] is False
    answer = vote(api, call_id, metric_id=ONE_QUESTION, thumbs_up=False, expected_value=True,
                  feedback="Postcode and address together is one question.")
    assert answer.status_code == 200 and answer.json() == {"detail": "Vote recorded."}
    assert_response("POST", CALLS + "/{id}/mark_metric_vote/", 200, answer.json())
    detail = row_of(api, call_id)
    assert detail["is_reviewed"] is True and detail["status"] == "reviewed_success" and detail["success"] is True
    result = next(m for m in detail["evaluation"]["metrics"] if m["id"] == ONE_QUESTION)
    assert result["value"] == "FALSE", "a vote records the review; it does not rewrite the judge's result"
    assert result["extra"]["review"]["expected_value"] is True
    reviewed = api.get(f"{CALLS}/", params={"agent_id": MAIN, "filters_v2": json.dumps(
        {"field": "is_reviewed", "op": "eq", "value": True})}).json()
    assert [r["id"] for r in reviewed["results"]] == [call_id]


def test_every_vote_is_stored_and_absent_means_agreement(api: httpx.Client, admin: Admin) -> None:
    call = main_calls(api, page_size=1)[0]
    current = next(m["value"] for m in call["metrics"] if m["id"] == BOOKING)
    assert vote(api, call["id"], metric_id=BOOKING, thumbs_up=True).status_code == 200
    assert vote(api, call["id"], metric_id=SENTIMENT, thumbs_up=False, expected_value=None,
                feedback=None).status_code == 200
    assert admin.stats()["votes"] == 2
    metrics = {m["id"]: m for m in row_of(api, call["id"])["evaluation"]["metrics"]}
    assert shown(metrics[BOOKING]["extra"]["review"]["expected_value"]) == current
    assert metrics[SENTIMENT]["extra"]["review"]["expected_value"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"metric_id": 424242, "thumbs_up": False, "expected_value": True}, "metric_id"),
    ({"metric_id": REFILL, "thumbs_up": False, "expected_value": True}, "metric_id"),
    ({"thumbs_up": False, "expected_value": True}, "metric_id"),
    ({"metric_id": ONE_QUESTION, "expected_value": True}, "thumbs_up"),
    ({"metric_id": ONE_QUESTION, "thumbs_up": "sure", "expected_value": True}, "thumbs_up"),
    ({"metric_id": ONE_QUESTION, "thumbs_up": False, "expected_value": "maybe"}, "expected_value"),
    ({"metric_id": SENTIMENT, "thumbs_up": False, "expected_value": "furious"}, "expected_value"),
    ({"metric_id": EMPATHY, "thumbs_up": False, "expected_value": 9}, "expected_value"),
])
def test_bad_votes_name_the_field(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    answer = vote(api, call_id, **body)
    assert answer.status_code == 400 and list(answer.json()) == [field]
    assert row_of(api, call_id)["is_reviewed"] is False


def test_voting_on_an_unknown_call_is_404(api: httpx.Client) -> None:
    answer = vote(api, 1, metric_id=ONE_QUESTION, thumbs_up=True, expected_value=True)
    assert answer.status_code == 404 and answer.json() == {"detail": "Not found."}


# --- test sets -------------------------------------------------------------------------------


def test_create_from_call_log(api: httpx.Client) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    created = add_to_lab(api, call_id, BOOKING, None, "No appointment was requested.")
    assert_response("POST", CREATE_TEST_SET, 200, created)
    assert created["agent"] == MAIN and created["voice_recording"].startswith("https://")
    assert created["source_model"] == "CallLog" and created["source_id"] == str(call_id)
    [review] = created["metric_reviews"]
    assert review["metric"] == BOOKING and review["expected_value"] is None and review["explanation"]
    again = api.post(CREATE_TEST_SET, json={"call_log_id": call_id, "name": "Billing call", "metrics": [
        {"metric": BOOKING, "feedback": "Still N/A.", "expected_value": None},
        {"metric": SENTIMENT, "feedback": "Neutral caller.", "expected_value": "neutral"}]}).json()
    assert again["id"] == created["id"] and again["name"] == "Billing call"
    assert [(r["metric"], r["feedback"]) for r in again["metric_reviews"]] == [
        (BOOKING, "Still N/A."), (SENTIMENT, "Neutral caller.")]
    reviews = api.get(f"/test_framework/v1/metrics/{BOOKING}/").json()["reviews"]
    assert [r["test_set"]["id"] for r in reviews] == [created["id"]]


def test_bare_metric_ids_crash_like_cekura(api: httpx.Client) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    answer = api.post(CREATE_TEST_SET, json={"call_log_id": call_id, "metrics": [ONE_QUESTION]})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html") and "Server Error (500)" in answer.text


@pytest.mark.parametrize(("body", "field"), [
    ({"metrics": [{"metric": ONE_QUESTION, "feedback": "x"}]}, "call_log_id"),
    ({"call_log_id": "CALL"}, "metrics"),
    ({"call_log_id": "CALL", "metrics": {"metric": ONE_QUESTION}}, "metrics"),
    ({"call_log_id": "CALL", "metrics": [{"feedback": "x"}]}, "metrics"),
    ({"call_log_id": "CALL", "metrics": [{"metric": REFILL, "feedback": "x"}]}, "metrics"),
    ({"call_log_id": "CALL", "metrics": [{"metric": ONE_QUESTION, "expected_value": "perhaps"}]}, "metrics"),
    ({"call_log_id": 1, "metrics": [{"metric": ONE_QUESTION, "feedback": "x"}]}, "call_log_id"),
    ({"call_log_id": "CALL", "project": 1, "metrics": [{"metric": ONE_QUESTION}]}, "project"),
])
def test_bad_test_set_requests_name_the_field(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    sent = {k: (call_id if v == "CALL" else v) for k, v in body.items()}
    answer = api.post(CREATE_TEST_SET, json=sent)
    assert answer.status_code == 400 and list(answer.json()) == [field], answer.text


# --- process_feedbacks -----------------------------------------------------------------------


def test_progress_says_not_yet_then_completes(api: httpx.Client) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    add_to_lab(api, call_id, ONE_QUESTION, True, FEEDBACK[ONE_QUESTION])
    started = api.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION})
    assert started.status_code == 200 and set(started.json()) == {"progress_id"}
    attempts, result = poll(api, started.json()["progress_id"])
    assert attempts == 4, "three 'in progress' answers, then the result"
    assert_response("GET", f"{LABS}/process_feedbacks_progress/", 200, result)
    assert result["status"] == "completed" and result["optimization_summary"]
    assert set(result["old_score"]) == {"num_correct", "num_total", "score"}
    again = api.get(f"{LABS}/process_feedbacks_progress", params={"job_id": started.json()["progress_id"]})
    assert again.json() == result


def test_process_feedbacks_validation(api: httpx.Client) -> None:
    start = f"{LABS}/process_feedbacks/"
    assert list(api.post(start, json={"metric_id": ONE_QUESTION}).json()) == ["metric_id"]  # empty Lab
    assert list(api.post(start, json={}).json()) == ["metric_id"]
    assert list(api.post(start, json={"metric_id": 424242}).json()) == ["metric_id"]
    call_id = main_calls(api, page_size=1)[0]["id"]
    lab = add_to_lab(api, call_id, ONE_QUESTION, True, "fine")["id"]
    assert list(api.post(start, json={"metric_id": ONE_QUESTION, "test_set_ids": [lab + 99]}).json()) == [
        "test_set_ids"]
    assert list(api.post(start, json={"metric_id": BOOKING, "test_set_ids": [lab]}).json()) == ["test_set_ids"]
    assert list(api.post(start, json={"metric_id": ONE_QUESTION, "metric_type": "magic"}).json()) == ["metric_type"]
    progress = f"{LABS}/process_feedbacks_progress/"
    assert api.get(progress, params={"progress_id": "00000000-0000-4000-8000-000000000000"}).status_code == 404
    assert list(api.get(progress).json()) == ["progress_id"]


def test_cancel_and_answer(api: httpx.Client) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    add_to_lab(api, call_id, BOOKING, None, FEEDBACK[BOOKING])
    progress_id = api.post(f"{LABS}/process_feedbacks/", json={"metric_id": BOOKING}).json()["progress_id"]
    answered = api.post(f"{LABS}/process_feedbacks_answer/", json={"progress_id": progress_id, "answers": {}})
    assert answered.status_code == 200 and answered.json()["progress_id"] == progress_id
    cancelled = api.post(f"{LABS}/process_feedbacks_cancel/", json={"progress_id": progress_id})
    assert_response("POST", f"{LABS}/process_feedbacks_cancel/", 200, cancelled.json())
    assert cancelled.json()["status"] == "cancelled"
    after = api.get(f"{LABS}/process_feedbacks_progress/", params={"progress_id": progress_id}).json()
    assert after["status"] == "cancelled" and "improved_metric_description" not in after
    assert api.post(f"{LABS}/process_feedbacks_cancel/", json={"progress_id": "nope"}).status_code == 404
    by_number = api.post(f"{LABS}/process_feedbacks_cancel", json={"id": cancelled.json()["id"]})
    assert by_number.json()["progress_id"] == progress_id
    assert list(api.post(f"{LABS}/process_feedbacks_cancel/", json={}).json()) == ["progress_id"]


@pytest.mark.parametrize("metric_id", [ONE_QUESTION, BOOKING, SENTIMENT, EMPATHY])
def test_the_labs_cycle_fixes_the_misjudged_pattern(api: httpx.Client, admin: Admin, metric_id: int) -> None:
    truth = admin.truth(metric_id)
    wrong = [c for c, t in truth.items() if t["pattern"]]
    right = [c for c, t in truth.items() if not t["pattern"] and t["expected"] is not None]
    assert wrong and all(not agrees(truth[c]["expected"], truth[c]["actual"]) for c in wrong)
    assert all(agrees(truth[c]["expected"], truth[c]["actual"]) for c in right)
    original = api.get(f"/test_framework/v1/metrics/{metric_id}/").json()["description"]
    for call_id in wrong[:4] + right[:2]:
        expected, note = truth[call_id]["expected"], FEEDBACK[metric_id] if call_id in wrong else "Correct."
        assert vote(api, call_id, metric_id=metric_id, thumbs_up=call_id in right, expected_value=expected,
                    feedback=note).status_code == 200
        add_to_lab(api, call_id, metric_id, expected, note)
    progress_id = api.post(f"{LABS}/process_feedbacks/", json={"metric_id": metric_id}).json()["progress_id"]
    _, result = poll(api, progress_id)
    samples = min(4, len(wrong)) + 2
    assert result["old_score"] == {"num_correct": 2, "num_total": samples, "score": round(2 / samples, 4)}
    assert result["new_score"] == {"num_correct": samples, "num_total": samples, "score": 1.0}
    assert all(r["success"] for r in result["review_results"]) and result["unresolved_samples"] == []
    improved = result["improved_metric_description"]
    assert improved.startswith(original) and len(improved) > len(original)

    # Nothing is applied until the PATCH.
    assert api.get(f"/test_framework/v1/metrics/{metric_id}/").json()["description"] == original
    main_ids = {r["id"] for r in main_calls(api)}
    on_main = [c for c in wrong if c in main_ids][:2]
    api.post(f"{CALLS}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": on_main}).raise_for_status()
    rerun = admin.truth(metric_id)
    assert on_main and all(not agrees(truth[c]["expected"], rerun[c]["actual"]) for c in on_main)

    assert api.patch(f"/test_framework/v1/metrics/{metric_id}/", json={"description": improved}).status_code == 200
    for agent in {MAIN, PHARMACY} if metric_id in (SENTIMENT, EMPATHY) else {MAIN}:
        api.post(f"{CALLS}/rerun_evaluation/", json={"agent_id": agent, "call_logs": "all"}).raise_for_status()
    after = admin.truth(metric_id)
    disagreeing = [c for c, t in after.items() if not agrees(t["expected"], t["actual"])]
    assert disagreeing == [], f"still misjudged after the PATCH: {disagreeing[:5]}"


def test_python_conversion_runs_through_the_code_runner(api: httpx.Client, admin: Admin) -> None:
    truth = admin.truth(BOOKING)
    # A handful of calls: each runs the converted code in its own isolated process, seconds under load.
    billing = [c for c, t in truth.items() if t["pattern"]][:5]
    add_to_lab(api, billing[0], BOOKING, None, FEEDBACK[BOOKING])
    progress_id = api.post(f"{LABS}/process_feedbacks/", json={"metric_id": BOOKING,
                                                              "metric_type": "custom_code"}).json()["progress_id"]
    _, result = poll(api, progress_id)
    assert result["type"] == "custom_code" and "evaluate_llm_judge_metric" in result["custom_code"]
    patch = {"type": "custom_code", "custom_code": result["custom_code"]}
    assert api.patch(f"/test_framework/v1/metrics/{BOOKING}/", json=patch).status_code == 200
    before = admin.stats()["evaluations"]
    api.post(f"{EXTERNAL}/rerun_evaluation", json={"agent_id": MAIN, "call_logs": billing}).raise_for_status()
    after = admin.stats()["evaluations"]
    assert after["custom_code"] - before["custom_code"] == 2 * len(billing)
    now = admin.truth(BOOKING)
    assert all(now[c]["actual"] == "N/A" for c in billing)


# --- evaluate and re-run ---------------------------------------------------------------------


def test_evaluate_metrics_runs_every_assigned_metric(api: httpx.Client, admin: Admin) -> None:
    picked = [r["id"] for r in main_calls(api, page_size=3)]
    answer = api.post(f"{CALLS}/evaluate_metrics/", json={"agent_id": MAIN, "call_logs": picked,
                                                          "metrics": [ONE_QUESTION]})
    assert answer.status_code == 200
    assert_response("POST", f"{CALLS}/evaluate_metrics/", 200, answer.json())
    assert [r["id"] for r in answer.json()] == picked
    # One metric asked for, all five ran: four LLM-judge metrics at 0.2 credit, one free custom-code one.
    assert admin.stats()["evaluations"] == {"llm_judge": 12, "custom_code": 3}
    assert admin.credits() == pytest.approx(2.4)


@pytest.mark.parametrize(("body", "field"), [
    ({"call_logs": [], "metrics": []}, "agent_id"),
    ({"agent_id": MAIN, "metrics": []}, "call_logs"),
    ({"agent_id": MAIN, "call_logs": []}, "metrics"),
    ({"agent_id": MAIN, "call_logs": [], "metrics": [REFILL]}, "metrics"),
    ({"agent_id": MAIN, "call_logs": [1], "metrics": [ONE_QUESTION]}, "call_logs"),
    ({"agent_id": 1, "call_logs": [], "metrics": []}, "agent_id"),
])
def test_evaluate_metrics_validation_spends_nothing(
    api: httpx.Client, admin: Admin, body: dict[str, Any], field: str
) -> None:
    answer = api.post(f"{EXTERNAL}/evaluate_metrics", json=body)
    assert answer.status_code == 400 and list(answer.json()) == [field]
    assert admin.credits() == 0


def test_rerun_all_covers_every_call_of_the_agent(api: httpx.Client, admin: Admin) -> None:
    answer = api.post(f"{EXTERNAL}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": "all"})
    assert answer.status_code == 200
    rows = answer.json()
    assert len(rows) == 180 and {r["agent"] for r in rows} == {MAIN}
    for row in rows[:3]:
        assert_response("POST", f"{EXTERNAL}/rerun_evaluation/", 200, [row])
    assert admin.credits() == pytest.approx(180 * 4 * 0.2)
    assert admin.stats()["evaluations"] == {"llm_judge": 720, "custom_code": 180}


def test_rerun_accepts_either_id_and_keeps_reviewed_outcomes(api: httpx.Client, admin: Admin) -> None:
    truth = admin.truth(ONE_QUESTION)
    call_id = next(c for c, t in truth.items() if t["actual"] == "FALSE")
    vote(api, call_id, metric_id=ONE_QUESTION, thumbs_up=False, expected_value=True, feedback="fine")
    status = row_of(api, call_id)["status"]
    by_assistant = api.post(f"{CALLS}/rerun_evaluation", json={"assistant_id": "asst_nw_frontdesk_7f3a",
                                                               "call_logs": [call_id]})
    assert by_assistant.status_code == 200 and by_assistant.json()[0]["status"] == status
    assert status.startswith("reviewed_")
    by_number = api.post(f"{CALLS}/rerun_evaluation", json={"assistant_id": MAIN, "call_logs": [call_id]})
    assert by_number.status_code == 200
    assert admin.credits() == pytest.approx(2 * 0.8)
    for body, field in [({"agent_id": MAIN, "assistant_id": "asst_nw_pharmacy_2c91", "call_logs": []}, "assistant_id"),
                        ({"call_logs": "all"}, "agent_id"), ({"agent_id": MAIN}, "call_logs"),
                        ({"agent_id": MAIN, "call_logs": "some"}, "call_logs"),
                        ({"agent_id": PHARMACY, "call_logs": [call_id]}, "call_logs")]:
        answer = api.post(f"{CALLS}/rerun_evaluation/", json=body)
        assert answer.status_code == 400 and list(answer.json()) == [field], body
