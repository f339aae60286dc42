"""The official `cekura` SDK (a client no one on this team wrote), pointed at the sandbox by its own
environment variables, runs the whole labs workflow."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cekura import AuthenticationError, Cekura, NotFoundError, ServerError
from cekura_labs_mcp.server.sandbox import SandboxServer
from sandbox_helpers import BOOKING, KEY, MAIN, ONE_QUESTION, Admin
from sandbox_spec import assert_component


@pytest.fixture
def sdk(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cekura]:
    monkeypatch.setenv("CEKURA_API_URL", str(api.base_url))
    monkeypatch.setenv("CEKURA_API_KEY", KEY)
    client = Cekura()
    yield client
    client._http.close()


def test_the_sdk_reads_calls_and_metrics(sdk: Cekura) -> None:
    page = sdk.calls.list(agent_id=MAIN, page_size=5)
    assert page["count"] == 180 and len(page["results"]) == 5
    detail = sdk.calls.get(page["results"][0]["id"])
    assert_component(detail, "CallLogDetail")
    assert detail["evaluation"]["metrics"][0]["id"] == ONE_QUESTION
    metrics = sdk.metrics.list(agent_id=MAIN)
    assert [m["name"] for m in metrics][:2] == ["One Question Per Turn", "Appointment Booked Correctly"]
    assert sdk.metrics.get(BOOKING)["eval_type"] == "binary"
    with pytest.raises(NotFoundError):
        sdk.calls.get(1)


def test_the_sdk_runs_the_labs_cycle(sdk: Cekura, admin: Admin) -> None:
    truth = admin.truth(ONE_QUESTION)
    misjudged = [c for c, t in truth.items() if t["pattern"]][:3]
    note = "At the confirmation turn the agent asked for postcode and address together: one related question."
    for call_id in misjudged:
        answer = sdk.calls.mark_metric_vote(call_id, metric_id=ONE_QUESTION, thumbs_up=False, expected_value=True,
                                            feedback=note)
        assert answer == {"detail": "Vote recorded."}
        test_set = sdk.test_sets.create_from_call_log(
            call_log_id=call_id, metrics=[{"metric": ONE_QUESTION, "feedback": note, "expected_value": True}])
        assert_component(test_set, "TestSetDetail")
    started = sdk.metric_reviews.process_feedbacks(metric_id=ONE_QUESTION)
    answers = [sdk.metric_reviews.process_feedbacks_progress(progress_id=started["progress_id"]) for _ in range(4)]
    assert ["improved_metric_description" in a for a in answers] == [False, False, False, True]
    result = answers[-1]
    assert result["new_score"]["num_correct"] == 3 and result["old_score"]["num_correct"] == 0
    patched = sdk.metrics.update(ONE_QUESTION, description=result["improved_metric_description"])
    assert_component(patched, "SchemaPostMetricEdit")
    rerun = sdk.calls.rerun_evaluation(agent_id=MAIN, call_logs=misjudged)
    assert [r["id"] for r in rerun] == misjudged
    after = admin.truth(ONE_QUESTION)
    assert all(after[c]["actual"] == "TRUE" for c in misjudged)
    assert admin.credits() == pytest.approx(len(misjudged) * 0.8)


def test_the_sdk_retries_the_bare_id_crash_blindly(sdk: Cekura, admin: Admin) -> None:
    call_id = next(iter(admin.truth(ONE_QUESTION)))
    with pytest.raises(ServerError):
        sdk.test_sets.create_from_call_log(call_log_id=call_id, metrics=[ONE_QUESTION])
    # The SDK retries every 5xx, POSTs included: the sandbox saw the same crashing POST three times.
    assert [r["status"] for r in admin.stats()["requests"]] == [500, 500, 500]


def test_the_sdk_is_refused_with_the_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with SandboxServer(api_key="only-this") as sandbox:
        monkeypatch.setenv("CEKURA_API_URL", sandbox.url)
        monkeypatch.setenv("CEKURA_API_KEY", "not-this")
        with pytest.raises(AuthenticationError):
            Cekura().calls.list(agent_id=MAIN)
        assert Cekura(bearer_token="only-this").calls.list(agent_id=MAIN)["count"] == 180
