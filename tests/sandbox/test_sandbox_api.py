"""Every spec path answers, in both call-log families and both slash forms, with spec-valid bodies."""

from __future__ import annotations

import json
import re
from datetime import datetime
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
    main_calls,
)
from sandbox_spec import assert_response, spec

FAMILIES = [CALLS, EXTERNAL]
ALL_FAMILIES = [*FAMILIES, "/observability/v2/call-logs"]
SLASHES = ["/", ""]
LINE = re.compile(r"^\[\d{2}:\d{2}\] (Main Agent|Testing Agent): \S")


def first_call(api: httpx.Client) -> dict[str, Any]:
    return main_calls(api, page_size=1)[0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("slash", SLASHES)
def test_list_answers_the_spec_in_every_form(api: httpx.Client, family: str, slash: str) -> None:
    answer = api.get(family + slash, params={"agent_id": MAIN, "page_size": 5})
    assert answer.status_code == 200
    body = answer.json()
    assert_response("GET", family + "/", 200, body)
    assert body["count"] == 180 and len(body["results"]) == 5
    row = body["results"][0]
    # The spec types these two as strings in list rows: they are JSON-encoded.
    assert isinstance(row["transcript_object"], str) and isinstance(row["evaluation"], str)
    assert json.loads(row["evaluation"])["metrics"][0]["explanation"]
    assert json.loads(row["transcript_object"])[0]["role"] == "Main Agent"
    assert [m["id"] for m in row["metrics"]] == [ONE_QUESTION, BOOKING, SENTIMENT, EMPATHY, UNDER_FIVE]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("slash", SLASHES)
def test_detail_answers_call_log_detail(api: httpx.Client, family: str, slash: str) -> None:
    call_id = first_call(api)["id"]
    answer = api.get(f"{family}/{call_id}{slash}")
    assert answer.status_code == 200
    body = answer.json()
    assert_response("GET", family + "/{id}/", 200, body)
    assert body["id"] == call_id and body["agent"] == MAIN and body["agent_id"] == str(MAIN)
    assert re.fullmatch(r"\d{2}:\d{2}", body["duration"])
    assert all(LINE.match(line) for line in body["transcript"].splitlines())
    turns = body["transcript_object"]
    assert {t["role"] for t in turns} <= {"Main Agent", "Testing Agent"}
    assert all(t["start_time"] <= t["end_time"] and t["timestamp"] == t["start_time"] for t in turns)
    assert [m["id"] for m in body["evaluation"]["metrics"]] == [ONE_QUESTION, BOOKING, SENTIMENT, EMPATHY, UNDER_FIVE]
    assert body["metadata"]["channel"] == "phone" and body["dynamic_variables"]["clinic"]
    for stamp in (body["timestamp"], body["created_at"], body["updated_at"]):
        datetime.fromisoformat(stamp)


def test_metric_values_follow_the_documented_representation(api: httpx.Client) -> None:
    seen: dict[int, set[tuple[str, float, str]]] = {}
    for row in main_calls(api):
        for m in json.loads(row["evaluation"])["metrics"]:
            seen.setdefault(m["id"], set()).add((m["value"], m["score"], m["enum"]))
            assert m["type"] in ("binary", "enum", "continuous_qualitative")
    assert {v for v, _, _ in seen[ONE_QUESTION]} == {"TRUE", "FALSE", "N/A"}
    assert all(score == (5.0 if value == "TRUE" else 0.0) and enum == "" for value, score, enum in seen[BOOKING])
    assert {v for v, _, _ in seen[SENTIMENT]} <= {"positive", "neutral", "negative", "N/A"}
    assert all(enum == (value if value != "N/A" else "") and score == 0.0 for value, score, enum in seen[SENTIMENT])
    numeric = [(v, s) for v, s, _ in seen[EMPATHY] if v != "N/A"]
    assert numeric and all(float(v) == s and "." in v for v, s in numeric)


def test_pharmacy_agent_has_its_own_metrics(api: httpx.Client) -> None:
    rows = api.get(f"{CALLS}/", params={"agent_id": PHARMACY, "page_size": 200}).json()["results"]
    assert len(rows) == 40
    assert {tuple(m["id"] for m in r["metrics"]) for r in rows} == {(SENTIMENT, EMPATHY, REFILL)}


def test_unknown_things_answer_like_drf(api: httpx.Client) -> None:
    assert api.get(f"{CALLS}/1/").json() == {"detail": "Not found."}
    assert api.get(f"{CALLS}/1/").status_code == 404
    assert api.get(f"{CALLS}/abc/").status_code == 404
    assert api.get("/test_framework/nothing/").json() == {"detail": "Not found."}
    wrong = api.put(f"{CALLS}/evaluate_metrics/")
    assert wrong.status_code == 405 and wrong.json() == {"detail": 'Method "PUT" not allowed.'}
    broken = api.post(f"{CALLS}/rerun_evaluation/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "JSON parse error" in broken.json()["detail"]


def test_metrics_list_and_detail(api: httpx.Client) -> None:
    listed = api.get("/test_framework/v1/metrics", params={"agent_id": MAIN})
    assert_response("GET", "/test_framework/v1/metrics/", 200, listed.json())
    assert [m["id"] for m in listed.json()] == [ONE_QUESTION, BOOKING, SENTIMENT, EMPATHY, UNDER_FIVE]
    assert [m["id"] for m in api.get("/test_framework/v1/metrics/", params={"agent_id": PHARMACY}).json()] == [
        SENTIMENT, EMPATHY, REFILL]
    assert len(api.get("/test_framework/v1/metrics/", params={"project_id": 812}).json()) == 6
    by_slug = api.get("/test_framework/v1/metrics/", params={"slug": "empathy"}).json()
    assert [m["id"] for m in by_slug] == [EMPATHY]
    detail = api.get(f"/test_framework/v1/metrics/{SENTIMENT}/").json()
    assert_response("GET", "/test_framework/v1/metrics/{id}/", 200, detail)
    assert detail["enum_values"] == ["positive", "neutral", "negative"] and detail["type"] == "llm_judge"
    code = api.get("/test_framework/v1/metrics/call_under_five_minutes").json()
    assert code["id"] == UNDER_FIVE and code["type"] == "custom_code" and "_result" in code["custom_code"]
    assert api.get("/test_framework/v1/metrics/424242/").status_code == 404


def test_patch_validates_and_answers_the_edit_schema(api: httpx.Client) -> None:
    path = f"/test_framework/v1/metrics/{BOOKING}/"
    for body, field in [({"eval_type": "percent"}, "eval_type"), ({"audio_enabled": "yes"}, "audio_enabled"),
                        ({"description": 5}, "description"), ({"eval_type": "enum"}, "enum_values"),
                        ({"type": "custom_code"}, "custom_code"), ({"name": " "}, "name"),
                        ({"agents": [1]}, "agents")]:
        answer = api.patch(path, json=body)
        assert answer.status_code == 400 and list(answer.json()) == [field], body
    assert api.get(path).json()["eval_type"] == "binary"
    patched = api.patch(path, json={"description": "Only TRUE or FALSE.", "sampling_enabled": True, "unknown": 1})
    assert patched.status_code == 200
    assert_response("PATCH", "/test_framework/v1/metrics/{id}/", 200, patched.json())
    assert api.get(path).json()["description"] == "Only TRUE or FALSE."


def test_create_metric_and_ingest_a_call(api: httpx.Client) -> None:
    created = api.post("/test_framework/v1/metrics/", json={
        "project": 812, "name": "Agent used the caller's name", "type": "llm_judge", "eval_type": "binary",
        "description": "TRUE if the agent addressed the caller by name.", "agents": [MAIN]})
    assert created.status_code == 201
    assert_response("POST", "/test_framework/v1/metrics/", 201, created.json())
    assert api.post("/test_framework/v1/metrics/", json={"name": "x"}).json() == {
        "eval_type": ["This field is required."]}
    transcript = "[00:01] Main Agent: Northwind Health, how can I help?\n[00:05] Testing Agent: I need an appointment."
    ingested = api.post(f"{EXTERNAL}/", json={"call_id": "ext-1", "agent": MAIN, "transcript": transcript,
                                              "topic": "Appointment booking"})
    assert ingested.status_code == 201
    body = ingested.json()
    assert_response("POST", f"{EXTERNAL}/", 201, body)
    assert len(body["transcript_object"]) == 2
    assert created.json()["id"] in {m["id"] for m in body["evaluation"]["metrics"]}
    assert api.get(f"{CALLS}/{body['id']}").json()["call_id"] == "ext-1"


def _requests_for_every_spec_path(api: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid request for each (method, path) of the spec subset, its state arranged beforehand."""
    call_id = first_call(api)["id"]
    test_set = api.post("/test_framework/test-sets/create_from_call_log/", json={
        "call_log_id": call_id, "metrics": [{"metric": ONE_QUESTION, "feedback": "ok", "expected_value": True}]})
    started = api.post("/test_framework/metric-reviews/process_feedbacks/", json={"metric_id": ONE_QUESTION})
    progress_id = started.json()["progress_id"]
    assert test_set.status_code == 200
    requests: dict[tuple[str, str], dict[str, Any]] = {}
    for family in ALL_FAMILIES:
        requests[("get", f"{family}/")] = {"params": {"agent_id": MAIN}}
        requests[("post", f"{family}/")] = {"json": {"call_id": "x-1", "agent": MAIN}}
        requests[("post", f"{family}/evaluate_metrics/")] = {
            "json": {"agent_id": MAIN, "call_logs": [call_id], "metrics": [ONE_QUESTION]}}
        requests[("post", f"{family}/rerun_evaluation/")] = {"json": {"agent_id": MAIN, "call_logs": [call_id]}}
        requests[("get", f"{family}/{{id}}/")] = {}
        requests[("post", f"{family}/{{id}}/mark_metric_vote/")] = {
            "json": {"metric_id": ONE_QUESTION, "thumbs_up": True, "expected_value": None}}
    labs = "/test_framework/metric-reviews"
    requests[("post", f"{labs}/process_feedbacks/")] = {"json": {"metric_id": ONE_QUESTION}}
    requests[("post", f"{labs}/process_feedbacks_answer/")] = {"json": {"progress_id": progress_id},
                                                               "paused": True}
    requests[("post", f"{labs}/process_feedbacks_cancel/")] = {"json": {"progress_id": progress_id}}
    requests[("get", f"{labs}/process_feedbacks_progress/")] = {"params": {"progress_id": progress_id}}
    requests[("post", "/test_framework/test-sets/create_from_call_log/")] = {
        "json": {"call_log_id": call_id, "metrics": [{"metric": BOOKING, "feedback": "ok"}]}}
    for base in ("/test_framework/v1/metrics", "/test_framework/v1/metrics-external"):
        requests[("get", f"{base}/")] = {"params": {"agent_id": MAIN}}
        requests[("post", f"{base}/")] = {"json": {"project": 812, "name": "n", "eval_type": "numeric"}}
        requests[("get", f"{base}/{{id}}/")] = {}
        requests[("patch", f"{base}/{{id}}/")] = {"json": {"prompt": "p"}}
    external = "/test_framework/v1/metrics-external"
    requests[("get", "/observability/v2/call-logs/filters/")] = {}
    requests[("get", "/test_framework/billing/info/")] = {"headers": {"X-CEKURA-API-KEY": "org-tests"}}
    history = api.get(f"{external}/{ONE_QUESTION}/history/")
    first_version = history.json()["results"][-1]["history_id"] if history.status_code == 200 else 1
    requests[("get", f"{external}/{{id}}/history/")] = {}
    requests[("post", f"{external}/{{id}}/restore/")] = {"json": {"history_id": first_version}}
    judged = api.post(f"{external}/{ONE_QUESTION}/evaluate_llm_judge_metric/", json={
        "description": "Did the agent greet the caller?", "data": {"transcript": "Main Agent: Hello!"}}).json()
    requests[("post", f"{external}/{{id}}/evaluate_llm_judge_metric/")] = {"json": {
        "description": "Did the agent greet the caller?", "data": {"transcript": "Main Agent: Hello!"}}}
    requests[("get", f"{external}/evaluate_metric_progress/")] = {"params": {"progress_id": judged.get("progress_id")}}
    requests[("post", f"{external}/{{id}}/apply_optimisation_proposal/")] = {"proposal": True}
    requests[("post", f"{external}/{{id}}/dismiss_optimisation_proposal/")] = {"proposal": True}
    for request in requests.values():
        request["call_id"] = call_id
    return requests


# Answers whose schema in the spec is evidently a generator slip: `filters/` is typed as a CallLogDetail,
# and `evaluate_metric_progress/` as a MetricDetailV2 while its own text says "State object with status,
# output, error". Their shapes are tested in test_sandbox_documented.py.
SPEC_SLIPS = {"/observability/v2/call-logs/filters/", "/test_framework/v1/metrics-external/evaluate_metric_progress/"}


def _a_paused_run(api: httpx.Client) -> dict[str, Any]:
    """An answer for a run paused on a question (documented dialect)."""
    api.post("/_sandbox/auto-improve/questions", json={"count": 1})
    started = api.post("/test_framework/metric-reviews/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()
    (question,) = api.get("/test_framework/metric-reviews/process_feedbacks_progress/", params=started).json()[
        "questions"]
    return {**started, "answers": {question["id"]: {"action": "skip"}}}


def _finish_an_auto_improve(api: httpx.Client) -> None:
    """Leave a finished proposal waiting on ONE_QUESTION (for apply/dismiss)."""
    started = api.post("/test_framework/metric-reviews/process_feedbacks/", json={"metric_id": ONE_QUESTION}).json()
    for _ in range(50):  # bounded: a run that never finishes fails here instead of hanging the suite
        progress = api.get("/test_framework/metric-reviews/process_feedbacks_progress/", params=started).json()
        # The spec's flat answer, or the docs' wrapped one (`status` + `output`).
        if "improved_metric_description" in {**progress, **(progress.get("output") or {})}:
            return
    raise AssertionError(f"auto-improve did not finish in 50 polls: {progress}")


def _served_in_spec(path: str) -> bool:
    """The `spec` dialect serves what the sandbox served before issue 10: not the v2 call logs, billing,
    nor the metrics-external paths but the judge's."""
    new = path.startswith(("/observability/v2/", "/test_framework/billing/", "/test_framework/v1/metrics-external/"))
    return not new or path.endswith("/evaluate_llm_judge_metric/")


@pytest.mark.parametrize("dialect", ["documented", "spec"])
def test_every_spec_path_and_method_answers_in_both_slash_forms(api: httpx.Client, dapi: httpx.Client,
                                                                dialect: str) -> None:
    if dialect == "documented":
        api = dapi
    requests = _requests_for_every_spec_path(api)
    documented = {(m, p) for p, ops in spec()["paths"].items() for m in ops if m in ("get", "post", "patch")}
    assert documented == set(requests), "every documented operation has a request here"
    for (method, path), request in sorted(requests.items()):
        key = ONE_QUESTION if "metrics" in path else request["call_id"]
        concrete = path.replace("{id}", str(key))
        for form in (concrete, concrete.rstrip("/")):
            if request.get("proposal") and dialect == "documented":
                _finish_an_auto_improve(api)
            if request.get("paused") and dialect == "documented":
                request["json"] = _a_paused_run(api)
            answer = api.request(method.upper(), form, params=request.get("params"), json=request.get("json"),
                                 headers=request.get("headers"))
            if dialect == "spec" and not _served_in_spec(path):
                assert answer.status_code == 404 and answer.json() == {"detail": "Not found."}, (method, form)
                continue
            assert 200 <= answer.status_code < 300, (method, form, answer.status_code, answer.text[:200])
            responses = spec()["paths"][path][method]["responses"]
            # The "not yet" progress answer lacks the result's required fields on purpose (cekura-api.md).
            not_yet = path.endswith("progress/") and "improved_metric_description" not in answer.json()
            # The spec dialect's judge answers the verdict at once, as the sandbox did before issue 10.
            old_judge = dialect == "spec" and path.endswith("/evaluate_llm_judge_metric/")
            if "content" in responses.get(str(answer.status_code), {}) and not (not_yet or old_judge) \
                    and path not in SPEC_SLIPS:
                assert_response(method, path, answer.status_code, answer.json(), documented=dialect == "documented")
