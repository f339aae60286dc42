"""The call list: scope, pagination, time windows, call_ids and every filters_v2 operator."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sandbox_helpers import (
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


def ids(rows: list[dict[str, Any]]) -> set[int]:
    return {r["id"] for r in rows}


def value(row: dict[str, Any], metric_id: int) -> str | None:
    return next((m["value"] for m in row["metrics"] if m["id"] == metric_id), None)


def filtered(api: httpx.Client, tree: dict[str, Any], **params: Any) -> set[int]:
    answer = api.get(f"{EXTERNAL}/", params={"agent_id": MAIN, "page_size": 200, "filters_v2": json.dumps(tree),
                                             **params})
    assert answer.status_code == 200, answer.text
    assert answer.json()["count"] == len(answer.json()["results"])
    return ids(answer.json()["results"])


def test_scope_is_required_and_typed(api: httpx.Client) -> None:
    none = api.get(f"{CALLS}/")
    assert none.status_code == 400 and none.json() == {"agent_id": ["Either agent_id or project_id is required."]}
    assert list(api.get(f"{CALLS}/", params={"agent_id": "abc"}).json()) == ["agent_id"]
    assert api.get(f"{CALLS}/", params={"project_id": 812}).json()["count"] == 220
    assert api.get(f"{CALLS}/", params={"agent_id": PHARMACY}).json()["count"] == 40
    assert api.get(f"{CALLS}/", params={"project_id": 812, "assistant_id": "asst_nw_pharmacy_2c91"}).json()[
        "count"] == 40
    assert api.get(f"{CALLS}/", params={"agent_id": 999}).json()["count"] == 0


def test_pages_walk_every_call_newest_first(api: httpx.Client) -> None:
    first = api.get(f"{CALLS}/", params={"agent_id": MAIN})
    assert len(first.json()["results"]) == 10 and first.json()["previous"] is None
    url: str | None = str(api.base_url) + f"{CALLS}/?agent_id={MAIN}&page_size=25"
    seen: list[dict[str, Any]] = []
    pages = 0
    while url:
        page = api.get(url).json()
        assert page["count"] == 180
        seen += page["results"]
        url = page["next"]
        if url:
            assert url.startswith("http://127.0.0.1:") and "agent_id=2210" in url and "page_size=25" in url
        pages += 1
    assert pages == 8 and len(seen) == 180 == len(ids(seen))
    order = [(r["timestamp"], r["id"]) for r in seen]
    assert order == sorted(order, reverse=True)


def test_previous_links_and_bad_pages(api: httpx.Client) -> None:
    params = {"agent_id": MAIN, "page_size": 20}
    second = api.get(f"{CALLS}/", params={**params, "page": 2}).json()
    assert "page=" not in second["previous"] and "page_size=20" in second["previous"]
    third = api.get(f"{CALLS}/", params={**params, "page": 3}).json()
    assert "page=2" in third["previous"]
    last = api.get(f"{CALLS}/", params={**params, "page": 9}).json()
    assert last["next"] is None and len(last["results"]) == 20
    for page in (0, 10, "x"):
        answer = api.get(f"{CALLS}/", params={**params, "page": page})
        assert answer.status_code == 404 and answer.json() == {"detail": "Invalid page."}


def test_page_size_is_capped_at_200(api: httpx.Client) -> None:
    page = api.get(f"{CALLS}/", params={"project_id": 812, "page_size": 500}).json()
    assert page["count"] == 220 and len(page["results"]) == 200 and page["next"]


def test_time_window(api: httpx.Client) -> None:
    rows = main_calls(api)
    stamps = sorted(datetime.fromisoformat(r["timestamp"]) for r in rows)
    start = stamps[-1] - timedelta(days=7)
    window = {"timestamp_from": start.isoformat(), "timestamp_to": stamps[-1].isoformat()}
    inside = ids(main_calls(api, **window))
    assert inside == {r["id"] for r in rows if datetime.fromisoformat(r["timestamp"]) >= start} and inside
    exactly = api.get(f"{CALLS}/", params={"agent_id": MAIN, "timestamp_from": "2026-01-01T00:00:00Z",
                                           "timestamp_to": "2026-02-03T00:00:00Z"})
    assert exactly.status_code == 200
    wide = api.get(f"{CALLS}/", params={"agent_id": MAIN, "timestamp_from": "2026-01-01T00:00:00Z",
                                        "timestamp_to": "2026-02-03T00:00:01Z"})
    assert wide.status_code == 400 and list(wide.json()) == ["timestamp_from"]
    garbled = api.get(f"{CALLS}/", params={"agent_id": MAIN, "timestamp_to": "last tuesday"})
    assert garbled.status_code == 400 and list(garbled.json()) == ["timestamp_to"]
    backwards = api.get(f"{CALLS}/", params={"agent_id": MAIN, "timestamp_from": "2026-02-01T00:00:00Z",
                                             "timestamp_to": "2026-01-01T00:00:00Z"})
    assert list(backwards.json()) == ["timestamp_to"]
    # A '+' the client forgot to encode arrives as a space; it is still read as an offset.
    query = f"agent_id={MAIN}&page_size=200&timestamp_from={start.isoformat()}&timestamp_to={stamps[-1].isoformat()}"
    raw = api.get(f"{CALLS}/?{query}")
    assert "+" in query
    assert ids(raw.json()["results"]) == inside


def test_call_ids(api: httpx.Client) -> None:
    picked = sorted(ids(main_calls(api)))[:3]
    answer = api.get(f"{CALLS}", params={"agent_id": MAIN, "call_ids": ",".join(map(str, picked))})
    assert sorted(ids(answer.json()["results"])) == picked
    bad = api.get(f"{CALLS}", params={"agent_id": MAIN, "call_ids": "12,abc"})
    assert bad.status_code == 400 and list(bad.json()) == ["call_ids"]


def test_every_operator_on_call_fields(api: httpx.Client) -> None:
    rows = main_calls(api)
    long_calls = {r["id"] for r in rows if value(r, UNDER_FIVE) == "FALSE"}
    assert long_calls and filtered(api, {"field": "duration", "op": "gte", "value": 300}) == long_calls
    assert filtered(api, {"field": "duration", "op": "lt", "value": 300}) == ids(rows) - long_calls
    assert filtered(api, {"field": "success", "op": "eq", "value": False}) == {
        r["id"] for r in rows if r["success"] is False}
    assert filtered(api, {"field": "call_ended_reason", "op": "neq", "value": "voicemail"}) == {
        r["id"] for r in rows if r["call_ended_reason"] != "voicemail"}
    assert filtered(api, {"field": "topic", "op": "contains", "value": "BILLING"}) == {
        r["id"] for r in rows if "billing" in r["topic"].lower()}
    sample = rows[5]
    assert filtered(api, {"field": "call_id", "op": "startswith", "value": sample["call_id"][:8]}) == {sample["id"]}
    assert filtered(api, {"field": "call_id", "op": "eq", "value": sample["call_id"]}) == {sample["id"]}
    reasons = ["voicemail", "silence-timed-out"]
    assert filtered(api, {"field": "call_ended_reason", "op": "in", "value": reasons}) == {
        r["id"] for r in rows if r["call_ended_reason"] in reasons}
    assert filtered(api, {"field": "success", "op": "isnull", "value": False}) == ids(rows)
    assert filtered(api, {"field": "success", "op": "isnull", "value": True}) == set()
    tenth = sorted(rows, key=lambda r: r["timestamp"], reverse=True)[9]["timestamp"]
    assert len(filtered(api, {"field": "timestamp", "op": "gte", "value": tenth})) == 10
    assert len(filtered(api, {"field": "created_at", "op": "lte", "value": "2000-01-01T00:00:00Z"})) == 0
    assert filtered(api, {"field": "agent_id", "op": "eq", "value": PHARMACY}, agent_id="", project_id=812) == ids(
        api.get(f"{CALLS}/", params={"agent_id": PHARMACY, "page_size": 200}).json()["results"])


def test_and_or_groups_nest(api: httpx.Client) -> None:
    rows = main_calls(api)
    tree = {"operator": "or", "conditions": [
        {"field": "topic", "op": "contains", "value": "billing"},
        {"operator": "and", "conditions": [
            {"field": "success", "op": "eq", "value": True},
            {"field": "call_ended_reason", "op": "eq", "value": "customer-ended-call"}]},
    ]}
    expected = {r["id"] for r in rows if "billing" in r["topic"].lower() or (
        r["success"] is True and r["call_ended_reason"] == "customer-ended-call")}
    assert expected and filtered(api, tree) == expected
    both = {"operator": "and", "conditions": tree["conditions"]}
    assert filtered(api, both) == {r["id"] for r in rows if "billing" in r["topic"].lower()
                                   and r["success"] is True and r["call_ended_reason"] == "customer-ended-call"}


def test_metric_value_filters(api: httpx.Client) -> None:
    rows = main_calls(api)
    failed = {r["id"] for r in rows if value(r, ONE_QUESTION) == "FALSE"}
    assert failed
    assert filtered(api, {"field": "metric_value", "metric_id": ONE_QUESTION, "op": "eq", "value": "FALSE"}) == failed
    assert filtered(api, {"field": "metric_value", "metric_id": ONE_QUESTION, "op": "eq", "value": False}) == failed
    assert filtered(api, {"field": "metric_value", "metric_id": ONE_QUESTION, "op": "neq", "value": "FALSE"}) == (
        ids(rows) - failed)
    assert filtered(api, {"field": "metric_value", "metric_id": ONE_QUESTION, "op": "eq", "value": None}) == {
        r["id"] for r in rows if value(r, ONE_QUESTION) == "N/A"}
    assert filtered(api, {"field": "metric_value", "metric_id": ONE_QUESTION, "op": "in", "value": [True, None]}) == {
        r["id"] for r in rows if value(r, ONE_QUESTION) in ("TRUE", "N/A")}
    assert filtered(api, {"field": "metric_value", "metric_id": SENTIMENT, "op": "eq", "value": "negative"}) == {
        r["id"] for r in rows if value(r, SENTIMENT) == "negative"}
    assert filtered(api, {"field": "metric_value", "metric_id": SENTIMENT, "op": "contains", "value": "neg"}) == {
        r["id"] for r in rows if value(r, SENTIMENT) == "negative"}
    caring = {r["id"] for r in rows if value(r, EMPATHY) not in (None, "N/A") and float(value(r, EMPATHY) or 0) >= 3}
    assert caring and filtered(api, {"field": "metric_value", "metric_id": EMPATHY, "op": "gte", "value": 3}) == caring
    assert filtered(api, {"field": "metric_value", "metric_id": REFILL, "op": "isnull", "value": True}) == ids(rows)


@pytest.mark.parametrize("tree", [
    "{not json",
    json.dumps({"field": "success", "op": "like", "value": True}),
    json.dumps({"field": "mood", "op": "eq", "value": 1}),
    json.dumps({"field": "metric_value", "op": "eq", "value": "TRUE"}),
    json.dumps({"field": "metric_value", "metric_id": 1, "op": "eq", "value": "TRUE"}),
    json.dumps({"field": "success", "op": "gt", "value": True}),
    json.dumps({"field": "duration", "op": "in", "value": 3}),
    json.dumps({"field": "duration", "op": "gte", "value": "long"}),
    json.dumps({"operator": "xor", "conditions": []}),
    json.dumps({"operator": "and", "conditions": {}}),
    json.dumps([1, 2]),
])
def test_bad_filters_name_filters_v2(api: httpx.Client, tree: str) -> None:
    answer = api.get(f"{CALLS}/", params={"agent_id": MAIN, "filters_v2": tree})
    assert answer.status_code == 400 and list(answer.json()) == ["filters_v2"]
    assert isinstance(answer.json()["filters_v2"][0], str)
