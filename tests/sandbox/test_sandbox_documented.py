"""The `documented` dialect: what Cekura's own docs and skills show real answers to be (issue 10's
"Reality check" table, one test or more per row), and the `spec` dialect keeping the old answers."""

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
    HALLUCINATION,
    LABS,
    MAIN,
    METRICS_EXTERNAL,
    ONE_QUESTION,
    ORG_KEY,
    PHARMACY,
    SENTIMENT,
    UNDER_FIVE,
    V2,
    Admin,
    flat,
)
from sandbox_spec import assert_component

NOTE = "At 00:14 she asked to confirm date of birth and name together: one related request, not two."


def calls(api: httpx.Client, base: str = V2, **params: Any) -> list[dict[str, Any]]:
    answer = api.get(f"{base}/", params={"agent_id": MAIN, "page_size": 200, **params})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["results"]
    return rows


def detail_results(api: httpx.Client, call_id: int) -> dict[int, dict[str, Any]]:
    body = api.get(f"{V2}/{call_id}/").json()
    return {m["id"]: m for m in body["evaluation"]["metrics"]}


def call_with(admin: Admin, metric_id: int, actual: str, pattern: bool | None = None) -> int:
    for call_id, entry in admin.truth(metric_id).items():
        if entry["actual"] == actual and (pattern is None or bool(entry["pattern"]) == pattern):
            return call_id
    raise AssertionError(f"no call with {actual} on {metric_id}")


# --- a metric result's value ----------------------------------------------------------------------


def test_binary_results_carry_a_score_and_no_value(dapi: httpx.Client, dadmin: Admin) -> None:
    passing, failing, na = (call_with(dadmin, ONE_QUESTION, v) for v in ("TRUE", "FALSE", "N/A"))
    shown = {c: detail_results(dapi, c)[ONE_QUESTION] for c in (passing, failing, na)}
    # The webhook page's shape: eval_type binary + boolean passed, legacy type and score 5/0 beside them.
    assert [(r["score"], r["passed"]) for r in shown.values()] == [(5, True), (0, False), (None, None)]
    for row in shown.values():
        assert row["type"] == "binary_workflow_adherence" and row["eval_type"] == "binary"
        assert "value" not in row and "enum" not in row
        assert isinstance(row["explanation"], list) and isinstance(row["extra"], dict)
    assert "trigger_failed" not in shown[na]["extra"]


def test_the_skills_shape_scores_and_marks_na_as_a_failed_trigger(dapi: httpx.Client, dadmin: Admin) -> None:
    passing, failing, na = (call_with(dadmin, BOOKING, v) for v in ("TRUE", "FALSE", "N/A"))
    rows = [detail_results(dapi, c)[BOOKING] for c in (passing, failing, na)]
    assert [(r["score"], r["score_normalized"]) for r in rows] == [(5, 1), (0, 0), (None, None)]
    assert all(r["type"] == "binary_qualitative" and "value" not in r and "passed" not in r for r in rows)
    assert rows[2]["extra"] == {"trigger_failed": True} and "trigger_failed" not in rows[0]["extra"]


def test_enum_results_carry_the_value_and_numbers_a_score(dapi: httpx.Client) -> None:
    seen_enum: set[Any] = set()
    seen_scores: set[Any] = set()
    for row in calls(dapi):
        for result in row["metrics"]:
            if result["id"] == SENTIMENT:
                assert result["type"] == "enum" and result["value"] == result["enum"] and "score" not in result
                seen_enum.add(result["value"])
            if result["id"] == EMPATHY:
                assert result["type"] == "continuous_qualitative" and "value" not in result
                seen_scores.add(result["score"])
    assert {"positive", "neutral", "negative", None} <= seen_enum
    numbers = {s for s in seen_scores if s is not None}
    assert None in seen_scores and numbers and all(isinstance(s, float) and 0 <= s <= 5 for s in numbers)


def test_list_rows_use_the_same_shapes_and_the_spec_dialect_keeps_value(dapi: httpx.Client,
                                                                        api: httpx.Client) -> None:
    row = calls(dapi, page_size=1)[0]
    by_id = {m["id"]: m for m in row["metrics"]}
    assert "value" not in by_id[ONE_QUESTION] and "value" not in by_id[UNDER_FIVE]
    assert {m["id"]: m for m in json.loads(row["evaluation"])["metrics"]}[BOOKING]["type"] == "binary_qualitative"
    assert api.get(f"{V2}/", params={"agent_id": MAIN}).status_code == 404  # spec: as before issue 10
    old = calls(api, base=EXTERNAL, page_size=1)[0]
    assert all({"value", "score", "enum", "type"} <= set(m) for m in old["metrics"])
    assert {m["type"] for m in old["metrics"]} <= {"binary", "enum", "continuous_qualitative"}


# --- filtering on a metric's result ------------------------------------------------------------------


def listed(api: httpx.Client, tree: dict[str, Any], base: str = V2) -> httpx.Response:
    return api.get(f"{base}/", params={"agent_id": MAIN, "page_size": 200, "filters_v2": json.dumps(tree)})


def ids(answer: httpx.Response) -> set[int]:
    assert answer.status_code == 200, answer.text
    return {r["id"] for r in answer.json()["results"]}


def test_same_row_finds_a_metrics_failures(dapi: httpx.Client, dadmin: Admin) -> None:
    truth = dadmin.truth(ONE_QUESTION)
    failing = {c for c, t in truth.items() if t["actual"] == "FALSE"}
    for value in (False, 0, "FALSE"):
        tree = {"operator": "same_row", "conditions": [
            {"field": "metric_evaluations.metric.id", "op": "eq", "value": ONE_QUESTION},
            {"field": "metric_evaluations.value", "op": "eq", "value": value}]}
        assert ids(listed(dapi, tree)) == failing
    by_name = {"operator": "same_row", "conditions": [
        {"field": "metric_evaluations.metric.name", "op": "eq", "value": "one question per turn"},
        {"field": "metric_evaluations.value", "op": "isnull", "value": True}]}
    assert ids(listed(dapi, by_name)) == {c for c, t in truth.items() if t["actual"] == "N/A"}


def test_and_is_not_same_row(dapi: httpx.Client, dadmin: Admin) -> None:
    """The docs' warning: under `and`, the metric and the value may match on different results."""
    conditions = [{"field": "metric_evaluations.metric.id", "op": "eq", "value": ONE_QUESTION},
                  {"field": "metric_evaluations.value", "op": "eq", "value": False}]
    loose = ids(listed(dapi, {"operator": "and", "conditions": conditions}))
    strict = ids(listed(dapi, {"operator": "same_row", "conditions": conditions}))
    assert strict < loose  # a call failing BOOKING but passing ONE_QUESTION matches only the loose form
    assert all(dadmin.truth(ONE_QUESTION)[c]["actual"] == "FALSE" for c in strict)


def test_numbers_compare_as_scores(dapi: httpx.Client, dadmin: Admin) -> None:
    tree = {"operator": "same_row", "conditions": [
        {"field": "metric_evaluations.metric.id", "op": "eq", "value": EMPATHY},
        {"field": "metric_evaluations.value", "op": "gte", "value": 3.5}]}
    high = ids(listed(dapi, tree))
    expected = {c for c, t in dadmin.truth(EMPATHY).items() if t["actual"] not in (None, "N/A")
                and float(t["actual"]) >= 3.5 and c in {r["id"] for r in calls(dapi)}}
    assert high == expected and high


def test_other_documented_fields(dapi: httpx.Client) -> None:
    everything = {r["id"] for r in calls(dapi)}
    assert ids(listed(dapi, {"field": "agent.id", "op": "eq", "value": MAIN})) == everything
    assert ids(listed(dapi, {"field": "is_reviewed", "op": "eq", "value": False})) == everything
    channel = ids(listed(dapi, {"field": "metadata.channel", "op": "eq", "value": "phone"}))
    assert channel == everything
    assert ids(listed(dapi, {"field": "metadata.channel", "op": "eq", "value": "sms"})) == set()
    topics = {r["topic"] for r in calls(dapi)}
    topic = sorted(topics)[0]
    assert ids(listed(dapi, {"field": "topic", "op": "eq", "value": topic})) == {
        r["id"] for r in calls(dapi) if r["topic"] == topic}
    nested = listed(dapi, {"field": "metadata.a.b", "op": "eq", "value": "x"})
    assert nested.status_code == 400 and "top-level" in nested.json()["filters_v2"][0]


def test_the_undocumented_metric_value_field_is_refused_only_in_documented(dapi: httpx.Client,
                                                                          api: httpx.Client) -> None:
    old = {"field": "metric_value", "metric_id": ONE_QUESTION, "op": "eq", "value": "FALSE"}
    refused = listed(dapi, old)
    assert refused.status_code == 400 and "metric_value" in refused.json()["filters_v2"][0]
    assert ids(listed(api, old, base=EXTERNAL))
    same_row = {"operator": "same_row", "conditions": [
        {"field": "metric_evaluations.metric.id", "op": "eq", "value": ONE_QUESTION}]}
    assert listed(api, same_row, base=EXTERNAL).status_code == 400


def test_filters_endpoint_lists_the_vocabulary(dapi: httpx.Client) -> None:
    body = dapi.get(f"{V2}/filters/").json()
    assert "same_row" in body["logical_operators"] and "metric_evaluations.value" in body["fields"]


# --- evaluate / re-run are asynchronous ----------------------------------------------------------------


def test_rerun_answers_the_current_state_and_lands_after_reads(dapi: httpx.Client, dadmin: Admin) -> None:
    chosen = [c for c, t in dadmin.truth(ONE_QUESTION).items() if t["actual"] == "FALSE"][:3]
    before = {r["id"]: r for r in calls(dapi, call_ids=",".join(map(str, chosen)))}
    dapi.patch(f"/test_framework/v1/metrics/{ONE_QUESTION}/", json={"description": "Always score TRUE."})
    credits = dadmin.credits()
    answer = dapi.post(f"{V2}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": chosen}).json()
    # The current state: old results, success reset to null on these unreviewed calls, nothing charged yet.
    assert [r["id"] for r in answer] == chosen and all(r["success"] is None for r in answer)
    assert [r["evaluation"]["metrics"] for r in answer] == [
        json.loads(before[c]["evaluation"]) ["metrics"] for c in chosen]
    assert dadmin.credits() == credits and dapi.get("/_sandbox/evaluations").json()["pending"] == chosen
    first = {r["id"]: r for r in calls(dapi, call_ids=",".join(map(str, chosen)))}
    assert all(first[c]["updated_at"] == before[c]["updated_at"] for c in chosen)
    second = {r["id"]: r for r in calls(dapi, call_ids=",".join(map(str, chosen)))}
    assert all(second[c]["updated_at"] > before[c]["updated_at"] for c in chosen)
    assert dadmin.credits() == pytest.approx(credits + 3 * 0.8)
    assert dapi.get("/_sandbox/evaluations").json()["pending"] == []


def test_reviewed_calls_keep_success_and_evaluate_metrics_is_async(dapi: httpx.Client, dadmin: Admin) -> None:
    call_id = call_with(dadmin, ONE_QUESTION, "FALSE")
    dapi.post(f"{V2}/{call_id}/mark_metric_vote/", json={"metric_id": ONE_QUESTION, "thumbs_up": True})
    success = dapi.get(f"{V2}/{call_id}/").json()["success"]
    rerun = dapi.post(f"{V2}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": [call_id]}).json()
    assert rerun[0]["success"] == success is not None
    dadmin.finish()
    stamp = dapi.get(f"{V2}/{call_id}/").json()["updated_at"]
    rows = dapi.post(f"{V2}/evaluate_metrics/", json={"agent_id": MAIN, "call_logs": [call_id],
                                                      "metrics": [ONE_QUESTION]}).json()
    assert rows[0]["updated_at"] == stamp
    assert dadmin.finish() == [call_id]
    assert dapi.get(f"{V2}/{call_id}/").json()["updated_at"] > stamp


def test_the_delay_is_configurable(dapi: httpx.Client, dadmin: Admin) -> None:
    assert dapi.post("/_sandbox/evaluations", json={"reads": 0}).json()["reads"] == 0
    call_id = call_with(dadmin, ONE_QUESTION, "FALSE")
    credits = dadmin.credits()
    dapi.post(f"{V2}/evaluate_metrics/", json={"agent_id": MAIN, "call_logs": [call_id],
                                               "metrics": [ONE_QUESTION]})
    # One metric asked for, every assigned one ran (four judge metrics at 0.2, custom code free).
    assert dadmin.credits() == pytest.approx(credits + 0.8)
    assert dapi.post("/_sandbox/evaluations", json={"reads": -1}).status_code == 400


def test_spec_dialect_evaluates_at_once(api: httpx.Client, admin: Admin) -> None:
    call_id = call_with(admin, ONE_QUESTION, "FALSE")
    stamp = api.get(f"{EXTERNAL}/{call_id}/").json()["updated_at"]
    rerun = api.post(f"{CALLS}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": [call_id]}).json()
    assert rerun[0]["updated_at"] > stamp and rerun[0]["success"] is not None


# --- the judge endpoint used from Python metrics --------------------------------------------------------


def test_the_judge_endpoint_answers_a_progress_id_to_poll(dapi: httpx.Client, dadmin: Admin) -> None:
    credits = dadmin.credits()
    started = dapi.post(f"{METRICS_EXTERNAL}/{UNDER_FIVE}/evaluate_llm_judge_metric/", json={
        "description": "Did the agent ask one question per turn?", "eval_type": "binary_workflow_adherence",
        "data": {"transcript": "Main Agent: What is your name and your date of birth?\nTesting Agent: Ann."}})
    assert started.status_code == 200 and set(started.json()) == {"progress_id"}
    assert_component(started.json(), "EvaluateLlmJudgeMetricResponse")
    path = f"{METRICS_EXTERNAL}/evaluate_metric_progress/"
    first = dapi.get(path, params=started.json()).json()
    assert first["status"] == "in_progress" and first["output"] is None
    done = dapi.get(path, params=started.json()).json()
    assert done["status"] == "success" and done["error"] is None
    assert done["output"]["result"] in (0, 5, None) and isinstance(done["output"]["explanation"], list)
    assert dadmin.credits() == pytest.approx(credits + 0.2)
    assert dapi.get(path, params={"progress_id": "nope"}).status_code == 404
    assert dapi.get(path).status_code == 400


def test_the_spec_dialect_judge_answers_at_once(api: httpx.Client) -> None:
    body = api.post(f"{METRICS_EXTERNAL}/{UNDER_FIVE}/evaluate_llm_judge_metric/", json={
        "description": "Was the caller greeted?", "data": {"transcript": "Main Agent: Hello there!"}}).json()
    assert set(body) == {"result", "explanation"}


# --- auto-improve questions, the proposal, apply / dismiss, history / restore ------------------------------


def add_to_lab(api: httpx.Client, call_id: int, expected: Any, feedback: str, metric_id: int = ONE_QUESTION) -> int:
    answer = api.post("/test_framework/test-sets/create_from_call_log/", json={
        "call_log_id": call_id, "metrics": [{"metric": metric_id, "feedback": feedback, "expected_value": expected}]})
    assert answer.status_code == 200, answer.text
    test_set: int = answer.json()["id"]
    return test_set


def poll(api: httpx.Client, progress_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"{LABS}/process_feedbacks_progress/", params={"progress_id": progress_id}).json()
    return flat(body)


def misjudged(admin: Admin, count: int) -> list[int]:
    return [c for c, t in admin.truth(ONE_QUESTION).items() if t["pattern"]][:count]


def test_an_ambiguous_label_pauses_the_run_until_answered(dapi: httpx.Client, dadmin: Admin) -> None:
    first, second = misjudged(dadmin, 2)
    add_to_lab(dapi, first, True, NOTE)
    add_to_lab(dapi, second, True, "")  # overrules the metric without a reason
    progress_id = dapi.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
    paused = [poll(dapi, progress_id) for _ in range(5)]
    assert all(p["status"] == "waiting_for_input" and "improved_metric_description" not in p for p in paused)
    (question,) = paused[0]["questions"]
    assert question["kind"] == "ambiguous_label" and question["call_log_ids"] == [second]
    assert "Main Agent" in question["context"][0]["transcript"]
    wrong = dapi.post(f"{LABS}/process_feedbacks_answer/", json={"progress_id": progress_id, "answers": {"q0": "x"}})
    assert wrong.status_code == 400 and "answers" in wrong.json()
    answer = "The agent asked to confirm the postcode and address together: related details, one question."
    resumed = dapi.post(f"{LABS}/process_feedbacks_answer/", json={
        "progress_id": progress_id, "answers": {question["id"]: answer}})
    assert resumed.json()["status"] == "resumed" and resumed.json()["answered"] == [question["id"]]
    results = [poll(dapi, progress_id) for _ in range(4)]
    assert [r["status"] for r in results] == ["in_progress"] * 3 + ["success"]
    done = results[-1]
    assert done["feedback_edits"][0]["new_feedback"] == answer
    assert {"improved_metric_description", "improved_evaluation_trigger", "improved_trigger_kind", "old_score",
            "new_score", "unresolved_samples", "optimization_summary"} <= set(done)
    assert done["new_score"]["num_total"] == 2


def test_a_question_can_be_skipped_and_a_paused_run_cancelled(dapi: httpx.Client, dadmin: Admin) -> None:
    add_to_lab(dapi, misjudged(dadmin, 1)[0], True, NOTE)
    assert dapi.post("/_sandbox/auto-improve/questions", json={"count": 2}).status_code == 200
    runs = [dapi.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
            for _ in range(2)]
    questions = [poll(dapi, p)["questions"][0] for p in runs]
    assert [q["kind"] for q in questions] == ["clarification", "clarification"]
    skipped = dapi.post(f"{LABS}/process_feedbacks_answer/", json={
        "progress_id": runs[0], "answers": {questions[0]["id"]: {"action": "skip"}}}).json()
    assert skipped["skipped"] == [questions[0]["id"]] and skipped["status"] == "resumed"
    assert "improved_metric_description" in [poll(dapi, runs[0]) for _ in range(4)][-1]
    cancelled = dapi.post(f"{LABS}/process_feedbacks_cancel/", json={"progress_id": runs[1]}).json()
    assert cancelled["status"] == "cancelled" and poll(dapi, runs[1])["status"] == "cancelled"
    assert dapi.post(f"{LABS}/process_feedbacks_answer/", json={
        "progress_id": runs[1], "answers": {questions[1]["id"]: "x"}}).status_code == 400


def test_contradictory_labels_are_asked_about(dapi: httpx.Client, dadmin: Admin) -> None:
    truth = dadmin.truth(ONE_QUESTION)
    failing = [c for c, t in truth.items() if t["actual"] == "FALSE"][:2]
    add_to_lab(dapi, failing[0], True, "same reason")
    add_to_lab(dapi, failing[1], False, "Same reason ")
    progress_id = dapi.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
    kinds = [q["kind"] for q in poll(dapi, progress_id)["questions"]]
    assert kinds == ["contradictory_labels"]


def finished_proposal(api: httpx.Client, admin: Admin) -> dict[str, Any]:
    for call_id in misjudged(admin, 3):
        add_to_lab(api, call_id, True, NOTE)
    progress_id = api.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
    return [poll(api, progress_id) for _ in range(4)][-1]


def raw_progress(api: httpx.Client, progress_id: str, polls: int = 4) -> dict[str, Any]:
    answers = [api.get(f"{LABS}/process_feedbacks_progress/", params={"progress_id": progress_id}).json()
               for _ in range(polls)]
    body: dict[str, Any] = answers[-1]
    return body


def test_finished_runs_answer_in_the_docs_wrapped_form_and_the_spec_flat_one(dapi: httpx.Client,
                                                                              dadmin: Admin) -> None:
    """docs mcp/auto-optimize-metrics.mdx: status "success", the proposal under `output`, the code, type and score
    under `output.meta_harness`. Odd runs answer so, even ones flat; the admin route pins one form."""
    for call_id in misjudged(dadmin, 3):
        add_to_lab(dapi, call_id, True, NOTE)
    runs = [dapi.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
            for _ in range(3)]
    wrapped, plain = raw_progress(dapi, runs[0]), raw_progress(dapi, runs[1])
    assert set(wrapped) == {"status", "output"} and wrapped["status"] == "success"
    output = wrapped["output"]
    assert output["improved_metric_description"] == plain["improved_metric_description"]
    assert {"custom_code", "type", "new_score"}.isdisjoint(output)
    assert output["meta_harness"] == {"optimized_code": plain["custom_code"], "type": plain["type"],
                                      **plain["new_score"]}
    assert plain["status"] == "success" and "output" not in plain
    assert flat(wrapped)["new_score"] == plain["new_score"]
    assert dadmin.http.post("/_sandbox/auto-improve/answers", json={"shape": "flat"}).json()["shape"] == "flat"
    assert "output" not in raw_progress(dapi, runs[2])
    assert dadmin.http.post("/_sandbox/auto-improve/answers", json={"shape": "sideways"}).status_code == 400


def test_a_run_can_end_in_the_docs_error_status(dapi: httpx.Client, dadmin: Admin) -> None:
    for call_id in misjudged(dadmin, 3):
        add_to_lab(dapi, call_id, True, NOTE)
    dadmin.http.post("/_sandbox/auto-improve/answers", json={"fail": 2, "error": "No feedback found."})
    runs = [dapi.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
            for _ in range(3)]
    assert raw_progress(dapi, runs[0]) == {"status": "error", "output": {"error": "No feedback found."}}
    assert raw_progress(dapi, runs[1]) == {"status": "error", "progress": 1.0, "error": "No feedback found."}
    assert raw_progress(dapi, runs[2])["status"] == "success"  # only the next two failed


def test_apply_the_proposal_and_restore_from_history(dapi: httpx.Client, dadmin: Admin) -> None:
    original = dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/").json()["description"]
    result = finished_proposal(dapi, dadmin)
    pending = dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/").json()["pending_optimisation_proposal"]
    assert pending["description"] == result["improved_metric_description"] != original
    assert pending["score"] == result["new_score"]["score"] and pending["baseline_score"] == 0.0
    applied = dapi.post(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/apply_optimisation_proposal/")
    assert applied.status_code == 200
    metric = dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/").json()
    assert metric["description"] == result["improved_metric_description"]
    assert metric["pending_optimisation_proposal"] is None
    again = dapi.post(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/apply_optimisation_proposal/")
    assert again.status_code == 400
    history = dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/history/").json()
    assert_component(history, "PaginatedMetricHistoryList")
    newest, created = history["results"][0], history["results"][-1]
    assert newest["history_type"] == "~" and newest["description"] == metric["description"]
    assert created["history_type"] == "+" and created["description"] == original
    restored = dapi.post(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/restore/", json={"history_id": created["history_id"]})
    assert restored.status_code == 200 and restored.json()["description"] == original
    assert dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/history/").json()["count"] == history["count"] + 1
    bad = dapi.post(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/restore/", json={"history_id": 10**6})
    assert bad.status_code == 400 and "history_id" in bad.json()


def test_dismiss_the_proposal(dapi: httpx.Client, dadmin: Admin) -> None:
    original = dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/").json()["description"]
    finished_proposal(dapi, dadmin)
    assert dapi.post(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/dismiss_optimisation_proposal/").status_code == 200
    metric = dapi.get(f"{METRICS_EXTERNAL}/{ONE_QUESTION}/").json()
    assert metric["pending_optimisation_proposal"] is None and metric["description"] == original


def test_the_spec_dialect_never_pauses(api: httpx.Client, admin: Admin) -> None:
    api.post("/_sandbox/auto-improve/questions", json={"count": 1})
    add_to_lab(api, misjudged(admin, 1)[0], True, "")
    progress_id = api.post(f"{LABS}/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()["progress_id"]
    assert "improved_metric_description" in [poll(api, progress_id) for _ in range(4)][-1]


# --- v2 call-log endpoints, v1 deprecated --------------------------------------------------------------


def test_v2_serves_the_call_logs_and_v1_is_a_deprecated_alias(dapi: httpx.Client) -> None:
    v2 = dapi.get(f"{V2}/", params={"agent_id": MAIN, "page_size": 3})
    v1 = dapi.get(f"{EXTERNAL}/", params={"agent_id": MAIN, "page_size": 3})
    assert v2.json()["results"] == v1.json()["results"]
    assert "deprecation" not in v2.headers and v1.headers["deprecation"] == "true"
    assert "successor-version" in v1.headers["link"]
    call_id = v2.json()["results"][0]["id"]
    assert dapi.get(f"{V2}/{call_id}").json()["id"] == call_id
    vote = dapi.post(f"{V2}/{call_id}/mark_metric_vote/", json={"metric_id": ONE_QUESTION, "thumbs_up": True})
    assert vote.json() == {"detail": "Vote recorded."} and dapi.get(f"{CALLS}/{call_id}/").json()["is_reviewed"]


def test_a_deployment_without_v2_answers_404(dapi: httpx.Client) -> None:
    assert dapi.post("/_sandbox/v2", json={"enabled": False}).json() == {"enabled": False}
    for path in (f"{V2}/", f"{V2}", f"{V2}/5181000/", f"{V2}/filters/"):
        answer = dapi.get(path, params={"agent_id": MAIN})
        assert answer.status_code == 404 and answer.json() == {"detail": "Not found."}
    assert dapi.post(f"{V2}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": []}).status_code == 404
    assert dapi.get(f"{EXTERNAL}/", params={"agent_id": MAIN}).status_code == 200
    dapi.post("/_sandbox/reset")
    assert dapi.get(f"{V2}/", params={"agent_id": MAIN}).status_code == 200


# --- cost and credits -----------------------------------------------------------------------------------


def test_metric_cost_varies_and_the_counter_uses_it(dapi: httpx.Client, dadmin: Admin) -> None:
    costs = {m["id"]: m["metric_cost"] for m in dapi.get("/test_framework/v1/metrics/",
                                                          params={"project_id": 812}).json()}
    assert costs[HALLUCINATION] == 0.6 and costs[UNDER_FIVE] == 0.0 and costs[ONE_QUESTION] == 0.2
    predefined = dapi.get(f"{METRICS_EXTERNAL}/{HALLUCINATION}/").json()
    assert predefined["type"] == "basic" and predefined["vocera_defined_metric_code"] and predefined["metric_cost"]
    pharmacy = dapi.get(f"{V2}/", params={"agent_id": PHARMACY, "page_size": 2}).json()["results"]
    assert HALLUCINATION in {m["id"] for m in pharmacy[0]["metrics"]}
    dapi.post(f"{V2}/rerun_evaluation/", json={"agent_id": PHARMACY, "call_logs": [r["id"] for r in pharmacy]})
    dadmin.finish()
    # Pharmacy metrics: sentiment 0.2 + empathy 0.2 + refill 0.2 + hallucination 0.6 = 1.2 a call.
    assert dadmin.credits() == pytest.approx(2 * 1.2)


def test_billing_info_counts_down_for_an_organisation_key(dapi: httpx.Client, dadmin: Admin) -> None:
    org = {"X-CEKURA-API-KEY": ORG_KEY}
    refused = dapi.get("/test_framework/billing/info/")
    assert refused.status_code == 403 and "Project-scoped" in refused.json()["detail"]
    before = dapi.get("/test_framework/billing/info/", headers=org).json()
    assert_component(before, "BillingInfo")
    assert before["credits_remaining"] == before["total_balance"] == "5000.00" and before["credits_used"] == "0.00"
    dapi.post(f"{V2}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": misjudged(dadmin, 2)})
    dadmin.finish()
    after = dapi.get("/test_framework/billing/info/", headers=org).json()
    assert float(after["credits_remaining"]) == pytest.approx(5000 - 2 * 0.8)
    assert float(after["credits_used"]) == pytest.approx(1.6)


# --- organisation keys -------------------------------------------------------------------------------


def test_an_organisation_key_needs_project_id_on_lists(dapi: httpx.Client) -> None:
    org = {"X-CEKURA-API-KEY": ORG_KEY}
    for base in (V2, EXTERNAL, CALLS):
        refused = dapi.get(f"{base}/", params={"agent_id": MAIN}, headers=org)
        assert refused.status_code == 400 and "organization-level" in refused.json()["project_id"][0]
        scoped = dapi.get(f"{base}/", params={"project_id": 812, "agent_id": MAIN, "page_size": 1}, headers=org)
        assert scoped.status_code == 200 and scoped.json()["count"] == 180
    assert dapi.get(f"{V2}/", params={"agent_id": MAIN}).status_code == 200


def test_the_sandbox_command_serves_documented_by_default() -> None:
    from cekura_labs_mcp.server.cli import _parser

    args = _parser().parse_args(["sandbox"])
    assert args.dialect == "documented"
    assert _parser().parse_args(["sandbox", "--dialect", "spec"]).dialect == "spec"
    with pytest.raises(SystemExit):
        _parser().parse_args(["sandbox", "--dialect", "other"])


def test_the_embedded_dialect_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from cekura_labs_mcp.server.config import Settings
    from cekura_labs_mcp.server.sandbox.dialect import EMBEDDED_DEFAULT, default_dialect

    monkeypatch.delenv("CEKURA_LABS_SANDBOX_DIALECT", raising=False)
    assert default_dialect() == EMBEDDED_DEFAULT and Settings().sandbox_dialect is None
    monkeypatch.setenv("CEKURA_LABS_SANDBOX_DIALECT", "Documented")
    assert default_dialect() == "documented" and Settings().sandbox_dialect == "documented"
    monkeypatch.setenv("CEKURA_LABS_SANDBOX_DIALECT", "openapi")
    with pytest.raises(ValueError, match="documented, spec"):
        default_dialect()
