"""The `documented` dialect answers in the shapes of the real answer examples in Cekura's docs and skills
(tests/fixtures/cekura_docs/, each naming its source): every key an example has, the sandbox's answer has,
with the same JSON type (null matching anything: an example's null says nothing about the type)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_helpers import MAIN, ONE_QUESTION, ORG_KEY, V2, Admin

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cekura_docs"


def fixtures() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}


def example(name: str) -> dict[str, Any]:
    return {k: v for k, v in fixtures()[name].items() if k != "_source"}


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def shape_problems(documented: Any, served: Any, where: str = "") -> Iterator[str]:
    """Keys of `documented` missing from `served`, or of another type; lists compare their first items."""
    if documented is None or served is None:
        return
    if kind(documented) != kind(served):
        yield f"{where or '.'}: {kind(served)} served, {kind(documented)} documented"
        return
    if isinstance(documented, dict):
        for key, value in documented.items():
            if key not in served:
                yield f"{where}.{key}: missing"
            else:
                yield from shape_problems(value, served[key], f"{where}.{key}")
    elif isinstance(documented, list) and documented and served:
        yield from shape_problems(documented[0], served[0], f"{where}[0]")


def assert_same_shape(documented: Any, served: Any) -> None:
    problems = list(shape_problems(documented, served))
    assert not problems, problems


def metric_entries(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        evaluation = node.get("evaluation")
        if isinstance(evaluation, dict) and isinstance(evaluation.get("metrics"), list):
            yield from evaluation["metrics"]
        for value in node.values():
            yield from metric_entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from metric_entries(item)


def test_every_fixture_names_its_source() -> None:
    assert len(fixtures()) >= 14
    for name, body in fixtures().items():
        assert {"repo", "path", "commit"} <= set(body["_source"]), name


@pytest.mark.parametrize("name", [n for n, b in fixtures().items() if b.get("event_type") == "call_log.completed"])
def test_call_log_detail_has_the_shape_of_the_docs_call_logs(dapi: httpx.Client, name: str) -> None:
    documented = dict(example(name)["data"])
    documented_metrics = documented.pop("evaluation")["metrics"]
    call_id = dapi.get(f"{V2}/", params={"agent_id": MAIN, "page_size": 1}).json()["results"][0]["id"]
    served = dapi.get(f"{V2}/{call_id}/").json()
    assert_same_shape(documented, served)
    webhook_style = next(m for m in served["evaluation"]["metrics"] if m["id"] == ONE_QUESTION)
    for entry in documented_metrics:
        assert_same_shape(entry, webhook_style)


def test_every_binary_result_in_the_docs_has_a_served_twin(dapi: httpx.Client, dadmin: Admin) -> None:
    """Each documented binary result (`passed` true and false) has a served result with its keys and types."""
    entries = [e for body in fixtures().values() for e in metric_entries(body) if "passed" in e]
    assert {e["passed"] for e in entries} == {True, False}
    truth = dadmin.truth(ONE_QUESTION)
    for passed in (True, False):
        call_id = next(c for c, t in truth.items() if t["actual"] == ("TRUE" if passed else "FALSE"))
        served = next(m for m in dapi.get(f"{V2}/{call_id}/").json()["evaluation"]["metrics"]
                      if m["id"] == ONE_QUESTION)
        assert served["passed"] is passed
        for entry in (e for e in entries if e["passed"] is passed):
            assert_same_shape(entry, served)


def test_lists_are_paginated_like_the_docs_example(dapi: httpx.Client) -> None:
    documented = example("outbound-evaluators.paginated-list.json")
    served = dapi.get(f"{V2}/", params={"agent_id": MAIN, "page_size": 1}).json()
    assert_same_shape({k: v for k, v in documented.items() if k != "results"}, served)
    assert served["next"].startswith("http") and served["previous"] is None


def test_insufficient_balance_is_answered_in_the_docs_words(dapi: httpx.Client) -> None:
    assert dapi.post("/_sandbox/billing", json={"credits_remaining": 0.5}).json() == {"credits_remaining": 0.5}
    call_id = dapi.get(f"{V2}/", params={"agent_id": MAIN, "page_size": 1}).json()["results"][0]["id"]
    refused = dapi.post(f"{V2}/rerun_evaluation/", json={"agent_id": MAIN, "call_logs": [call_id]})
    assert refused.status_code == 400
    for name in ("websocket-chirp.error-insufficient-balance.json", "agora.error-insufficient-balance.json",
                 "elevenlabs-testing.error-insufficient-balance.json"):
        assert refused.json() == example(name)
    assert dapi.get("/_sandbox/evaluations").json()["pending"] == []


def test_errors_have_the_docs_two_shapes(dapi: httpx.Client) -> None:
    detail = dapi.get(f"{V2}/1/")
    assert detail.status_code == 404
    for name in ("websocket-chirp.error-missing-credentials.json", "dashboards.error-timestamp-too-far.json"):
        assert_same_shape(example(name), detail.json())
    field = dapi.get(f"{V2}/", params={"agent_id": MAIN, "timestamp_from": "2020-01-01T00:00:00Z"})
    assert field.status_code == 400
    (served_key,) = field.json()
    for name in ("websocket-chirp.error-missing-websocket-url.json", "websocket-chirp.error-invalid-scenarios.json"):
        ((_, messages),) = example(name).items()
        assert_same_shape(messages, field.json()[served_key])


def test_billing_has_the_spec_example_subscription_shape(dapi: httpx.Client) -> None:
    served = dapi.get("/test_framework/billing/info/", headers={"X-CEKURA-API-KEY": ORG_KEY}).json()
    assert_same_shape(example("openapi.billing-subscription-status.json"), served["subscription_status"])
