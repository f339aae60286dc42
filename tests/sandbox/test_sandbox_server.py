"""The server around the API: start-up, auth, admin routes, fault injection, latency and the request log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cekura_labs_mcp.server.sandbox import SandboxServer, build_app
from sandbox_helpers import BOOKING, CALLS, EXTERNAL, MAIN, ONE_QUESTION, Admin, main_calls
from support import HTTP

MISSING = {"detail": "Authentication credentials were not provided."}


@pytest.fixture(scope="module")
def keyed() -> Iterator[SandboxServer]:
    with SandboxServer(seed=7, api_key="right-key") as running:
        yield running


def test_start_answers_and_stop_closes_the_port() -> None:
    # How fast it starts is a benchmark figure (benchmarks/run.py, start-up with the embedded sandbox),
    # not a wall-clock assertion on a loaded machine.
    sandbox = SandboxServer(seed=3).start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url) and sandbox.port > 0
        assert HTTP.get(sandbox.url + "/_sandbox/info").json()["seed"] == 3
        assert sandbox.app.state.store.seed == 3
    finally:
        sandbox.stop()
    with pytest.raises(httpx.ConnectError):
        HTTP.get(sandbox.url + "/_sandbox/info")


def test_build_app_is_a_plain_starlette_app() -> None:
    app = build_app(seed=9, api_key="k", progress_polls=1)
    assert app.state.store.seed == 9 and app.state.store.progress_polls == 1


def test_auth_by_default_accepts_any_key(api: httpx.Client) -> None:
    url = f"{CALLS}/?agent_id={MAIN}&page_size=1"
    assert api.get(url, headers={"X-CEKURA-API-KEY": ""}).status_code == 401
    bare = HTTP.get(str(api.base_url) + url)
    assert bare.status_code == 401 and bare.json() == MISSING
    assert HTTP.get(str(api.base_url) + url, headers={"Authorization": "Bearer any-token"}).status_code == 200
    assert HTTP.get(str(api.base_url) + url, headers={"Authorization": "Basic abc"}).json() == MISSING
    assert HTTP.get(str(api.base_url) + "/_sandbox/info").status_code == 200


def test_a_configured_key_is_the_only_one_accepted(keyed: SandboxServer) -> None:
    url = f"{keyed.url}{EXTERNAL}/?agent_id={MAIN}&page_size=1"
    wrong = HTTP.get(url, headers={"X-CEKURA-API-KEY": "wrong-key"})
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid API key."}
    assert HTTP.get(url, headers={"Authorization": "Bearer wrong-key"}).status_code == 401
    assert HTTP.get(url).json() == MISSING
    assert HTTP.get(url, headers={"X-CEKURA-API-KEY": "right-key"}).status_code == 200
    assert HTTP.get(url, headers={"Authorization": "Bearer right-key"}).status_code == 200


def test_faults_of_every_kind(api: httpx.Client, admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    path = f"{CALLS}/{call_id}"
    admin.fault(path, "429", retry_after=7)
    throttled = api.get(path + "/")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert "throttled" in throttled.json()["detail"]
    admin.fault(path + "/", "500", count=2)
    assert [api.get(path).status_code for _ in range(3)] == [500, 500, 200]
    admin.fault(path, "malformed")
    garbled = api.get(path)
    assert garbled.status_code == 200
    with pytest.raises(ValueError):
        garbled.json()
    admin.fault(path, "delay", delay_ms=300)
    started = time.perf_counter()
    assert api.get(path).status_code == 200 and time.perf_counter() - started >= 0.3
    admin.fault(path, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(path)
    assert api.get(path).status_code == 200
    statuses = [r["status"] for r in admin.stats()["requests"] if r["path"].startswith(path)]
    assert statuses == [429, 500, 500, 200, 200, 200, None, 200]


def test_fault_matching_rules(api: httpx.Client, admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    admin.fault(f"{CALLS}/", "500", method="post")
    assert api.get(f"{CALLS}/{call_id}").status_code == 200
    assert api.get(f"{EXTERNAL}/{call_id}").status_code == 200  # a prefix matches whole segments only
    vote = api.post(f"{CALLS}/{call_id}/mark_metric_vote", json={"metric_id": ONE_QUESTION, "thumbs_up": True})
    assert vote.status_code == 500 and api.get(f"{EXTERNAL}/{call_id}").json()["is_reviewed"] is False
    admin.fault(f"{EXTERNAL}/{call_id}", "429")
    admin.fault(f"{EXTERNAL}/{call_id}", "500")
    assert [api.get(f"{EXTERNAL}/{call_id}").status_code for _ in range(3)] == [429, 500, 200]
    admin.fault(f"{EXTERNAL}/{call_id}", "500", count=5)
    assert len(api.get("/_sandbox/faults").json()) == 1
    assert api.delete("/_sandbox/faults").json() == {"cleared": 1}
    assert api.get(f"{EXTERNAL}/{call_id}").status_code == 200
    bad = api.post("/_sandbox/faults", json={"path": CALLS, "kind": "explode"})
    assert bad.status_code == 400 and list(bad.json()) == ["kind"]
    assert list(api.post("/_sandbox/faults", json={"path": CALLS, "kind": "500", "count": 0}).json()) == ["count"]


def test_the_request_log(api: httpx.Client, admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    body = {"metric_id": BOOKING, "thumbs_up": False, "expected_value": None, "feedback": "N/A"}
    api.post(f"{CALLS}/{call_id}/mark_metric_vote/", json=body)
    requests = admin.stats()["requests"]
    assert [r["method"] for r in requests] == ["GET", "POST"], "admin routes are not logged"
    listed, voted = requests
    assert listed["query"] == {"agent_id": str(MAIN), "page_size": "1"} and listed["body"] is None
    assert voted["body"] == body and voted["status"] == 200 and voted["started"] <= voted["ended"]


def test_latency_and_peak_concurrency(api: httpx.Client, admin: Admin) -> None:
    assert api.post("/_sandbox/latency", json={"ms": 150}).json() == {"ms": 150}
    url = f"{CALLS}/?agent_id={MAIN}&page_size=1"
    started = time.perf_counter()
    assert api.get(url).status_code == 200 and time.perf_counter() - started >= 0.15

    def fetch() -> None:
        with httpx.Client(base_url=str(api.base_url), headers=api.headers, verify=False) as client:
            client.get(url).raise_for_status()

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 4 <= admin.stats()["max_in_flight"] <= 5
    assert list(api.post("/_sandbox/latency", json={"ms": -1}).json()) == ["ms"]


def test_reset_restores_the_seeded_state(api: httpx.Client, admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    api.patch(f"/test_framework/v1/metrics/{ONE_QUESTION}/", json={"description": "changed"})
    api.post(f"{CALLS}/{call_id}/mark_metric_vote/", json={"metric_id": ONE_QUESTION, "thumbs_up": True})
    api.post(f"{CALLS}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": [call_id]})
    admin.fault(CALLS, "500", count=3)
    api.post("/_sandbox/latency", json={"ms": 5})
    assert api.post("/_sandbox/reset").status_code == 200
    stats = admin.stats()
    assert stats["credits_spent"] == 0 and stats["requests"] == [] and stats["votes"] == 0
    assert api.get("/_sandbox/faults").json() == []
    assert api.get(f"/test_framework/v1/metrics/{ONE_QUESTION}").json()["description"].startswith("You are reviewing")
    assert api.get(f"{CALLS}/{call_id}").json()["is_reviewed"] is False


def test_truth_route(api: httpx.Client, admin: Admin) -> None:
    table = admin.truth(ONE_QUESTION)
    assert len(table) == 180
    entry = next(t for t in table.values() if t["pattern"])
    assert entry == {"expected": True, "pattern": "related_details_confirmation", "actual": "FALSE"}
    assert api.get("/_sandbox/truth").status_code == 400
    assert api.get("/_sandbox/truth", params={"metric_id": 1}).status_code == 404


def test_the_sdk_judge_path_used_by_custom_code(api: httpx.Client, admin: Admin) -> None:
    call_id = next(c for c, t in admin.truth(ONE_QUESTION).items() if t["pattern"])
    path = f"/test_framework/v1/metrics-external/{ONE_QUESTION}/evaluate_llm_judge_metric/"
    prompt = api.get(f"/test_framework/v1/metrics/{ONE_QUESTION}").json()["description"]
    strict = api.post(path, json={"data": {"call_log_id": call_id}, "description": prompt,
                                  "eval_type": "binary_workflow_adherence"})
    assert strict.status_code == 200 and strict.json()["result"] == 0
    improved = prompt + "\n\nDO NOT FLAG THESE\n- A single request to confirm related details (postcode and address)."
    turns = api.get(f"{CALLS}/{call_id}").json()["transcript_object"]
    lenient = api.post(path, json={"data": {"transcript_json": turns}, "description": improved})
    assert lenient.json()["result"] == 5 and lenient.json()["explanation"]
    assert admin.credits() == pytest.approx(0.4)
    assert list(api.post(path, json={"description": "x"}).json()) == ["data"]


def test_serve_forever_prints_its_url_on_stderr_only() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    script = "from cekura_labs_mcp.server.sandbox import serve_forever; serve_forever('127.0.0.1', 0, 5, 'k')"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=Path(__file__).parent, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url and "seed 5" in line, line
        assert HTTP.get(url.group(0) + "/_sandbox/info").json()["seed"] == 5
        answer = HTTP.get(url.group(0) + f"{CALLS}/", params={"agent_id": MAIN}, headers={"X-CEKURA-API-KEY": "k"})
        assert answer.status_code == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert out == ""


def _wait_held(api: httpx.Client, count: int) -> list[dict[str, object]]:
    """Until `count` requests are held: a bound against a hang, not a timing the test relies on."""
    deadline = time.monotonic() + 60
    while len(held := api.get("/_sandbox/faults/held").json()) < count:
        assert time.monotonic() < deadline, "the request was never held"
        time.sleep(0.01)
    return list(held)


def test_a_held_request_waits_for_its_release(api: httpx.Client, admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    vote = f"{CALLS}/{call_id}/mark_metric_vote"
    rule = admin.fault(vote, "hold")
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(
        api.post(vote, json={"metric_id": ONE_QUESTION, "thumbs_up": True}).status_code))
    sender.start()
    assert _wait_held(api, 1) == [{"fault_id": rule["id"], "method": "POST", "path": vote}]
    # Held: not answered, not applied, logged as in flight; however long the test takes meanwhile.
    assert answers == [] and api.get(f"{EXTERNAL}/{call_id}").json()["is_reviewed"] is False
    assert [r["ended"] for r in admin.stats()["requests"] if r["path"] == vote] == [None]
    assert api.post("/_sandbox/faults/release", json={"id": rule["id"]}).json() == {"released": 1}
    sender.join(timeout=60)
    assert answers == [200] and api.get(f"{EXTERNAL}/{call_id}").json()["is_reviewed"] is True
    assert api.get("/_sandbox/faults/held").json() == []
    bad = api.post("/_sandbox/faults/release", json={"id": "one"})
    assert bad.status_code == 400 and list(bad.json()) == ["id"]


def test_a_hold_drop_loses_the_answer_and_lands_on_release(api: httpx.Client, admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    vote = f"{CALLS}/{call_id}/mark_metric_vote"
    admin.fault(vote, "hold-drop")
    with pytest.raises(httpx.RemoteProtocolError):  # the connection closes unanswered at once
        api.post(vote, json={"metric_id": ONE_QUESTION, "thumbs_up": True})
    assert len(_wait_held(api, 1)) == 1 and api.get(f"{EXTERNAL}/{call_id}").json()["is_reviewed"] is False
    assert api.post("/_sandbox/faults/release", json={}).json() == {"released": 1}
    deadline = time.monotonic() + 60
    while not (logged := [r for r in admin.stats()["requests"] if r["path"] == vote])[0]["ended"]:
        assert time.monotonic() < deadline, "the released request never landed"
        time.sleep(0.01)
    assert [(r["status"], r["fault"]) for r in logged] == [(200, "hold-drop")]
    assert api.get(f"{EXTERNAL}/{call_id}").json()["is_reviewed"] is True


def test_clearing_the_faults_lets_held_requests_go_without_reaching_the_api(api: httpx.Client,
                                                                           admin: Admin) -> None:
    call_id = main_calls(api, page_size=1)[0]["id"]
    vote = f"{CALLS}/{call_id}/mark_metric_vote"
    admin.fault(vote, "hold")
    failures: list[type[Exception]] = []

    def send() -> None:
        try:
            api.post(vote, json={"metric_id": ONE_QUESTION, "thumbs_up": True})
        except httpx.HTTPError as exc:
            failures.append(type(exc))

    sender = threading.Thread(target=send)
    sender.start()
    _wait_held(api, 1)
    api.delete("/_sandbox/faults").raise_for_status()
    sender.join(timeout=60)
    assert failures == [httpx.RemoteProtocolError]
    assert api.get(f"{EXTERNAL}/{call_id}").json()["is_reviewed"] is False
