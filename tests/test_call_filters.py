"""Selecting calls: the documented `filters_v2` forms (docs `documentation/guides/dashboards.mdx`), and what
happens when a deployment refuses one: said in the answer, applied here to a bounded scan, never unfiltered."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient, RetryPolicy
from cekura_labs_mcp.server.cekura.models import Metric
from cekura_labs_mcp.server.errors import InputError, ValidationFailedError
from cekura_labs_mcp.server.services.calls import SCAN_PAGE_SIZE, SCAN_PAGES, CallFilter, find_calls
from pydantic import SecretStr

pytestmark = pytest.mark.anyio
BINARY = Metric(id=9, name="Polite", eval_type="binary")
ENUM = Metric(id=8, name="Outcome", eval_type="enum", enum_values=["booked", "declined"])
LIST = "/observability/v2/call-logs/"


def test_a_metric_value_is_sent_as_same_row_metric_evaluations() -> None:
    assert CallFilter(metric_id=9, metric_value="FALSE").filters_v2(BINARY) == {
        "operator": "same_row", "conditions": [
            {"field": "metric_evaluations.metric.id", "op": "eq", "value": 9},
            {"field": "metric_evaluations.value", "op": "eq", "value": False}]}
    na = CallFilter(metric_id=9, metric_value="N/A").filters_v2(BINARY)
    assert na is not None and na["conditions"][1] == {"field": "metric_evaluations.value", "op": "isnull",
                                                      "value": True}
    label = CallFilter(metric_id=8, metric_value="Booked").filters_v2(ENUM)
    assert label is not None and label["conditions"][1]["value"] == "booked"
    number = CallFilter(metric_id=3, metric_value="2.5").filters_v2()
    assert number is not None and number["conditions"][1]["value"] == 2.5


def test_call_fields_topic_reviewed_and_metadata_are_the_documented_ones() -> None:
    selection = CallFilter(success=False, reviewed=False, topic="Billing", metadata={"region": "EU", "tier": "gold"})
    assert selection.filters_v2() == {"operator": "and", "conditions": [
        {"field": "success", "op": "eq", "value": False},
        {"field": "is_reviewed", "op": "eq", "value": False},
        {"field": "topic", "op": "eq", "value": "Billing"},
        {"field": "metadata.region", "op": "eq", "value": "EU"},
        {"field": "metadata.tier", "op": "eq", "value": "gold"}]}


@pytest.mark.parametrize(("selection", "field"), [
    (CallFilter(metric_value="FALSE"), "metric_value"),
    (CallFilter(metadata={"address.city": "Paris"}), "metadata"),
])
def test_a_filter_that_cannot_be_sent_names_its_field(selection: CallFilter, field: str) -> None:
    with pytest.raises(InputError, match=f"`{field}`"):
        selection.filters_v2(BINARY)


def test_a_value_the_metric_cannot_have_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(InputError, match="not a binary outcome"):
        CallFilter(metric_id=9, metric_value="maybe").filters_v2(BINARY)


def _row(call_id: int, value: bool | None, **fields: Any) -> dict[str, Any]:
    result = {"id": 9, "name": "Polite", "eval_type": "binary", "passed": value}
    return {"id": call_id, "call_id": f"c{call_id}", "success": True, "is_reviewed": False, "metrics": [result],
            **fields}


class RefusingCekura:
    """`calls` calls, newest first; answers 400 to any `filters_v2`, pages otherwise."""

    def __init__(self, calls: int, refusal: dict[str, Any] | None = None) -> None:
        self.rows = [_row(i, i % 3 != 0, topic="Billing" if i % 2 else "Booking") for i in range(calls, 0, -1)]
        self.refusal = refusal or {"filters_v2": ["Unsupported operator 'same_row'; use 'and' or 'or'."]}
        self.pages: list[int] = []
        self.details: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != LIST:
            call_id = int(request.url.path.rstrip("/").split("/")[-1])
            self.details.append(call_id)
            return httpx.Response(200, json={**_row(call_id, True), "metadata": {"region": "EU" if call_id % 4
                                                                                  else "US"}})
        if "filters_v2" in request.url.params:
            return httpx.Response(400, json=self.refusal)
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        self.pages.append(page)
        chunk = self.rows[(page - 1) * size:page * size]
        more = page * size < len(self.rows)
        return httpx.Response(200, json={"count": len(self.rows), "next": f"?page={page + 1}" if more else None,
                                         "previous": None, "results": chunk})


def _client(fake: RefusingCekura) -> CekuraClient:
    return CekuraClient("https://cekura.test", SecretStr("k"), retry=RetryPolicy(max_retries=0),
                        transport=httpx.MockTransport(fake))


async def test_a_refused_filter_is_applied_here_to_a_bounded_scan_and_said() -> None:
    fake = RefusingCekura(calls=1500)
    async with _client(fake) as client:
        found = await find_calls(client, agent_id=1, project_id=None, metric=BINARY, page=2, page_size=100,
                                 selection=CallFilter(metric_id=9, metric_value="FALSE", topic="Billing"))
    assert fake.pages == list(range(1, SCAN_PAGES + 1)), "the scan is bounded"
    scanned = fake.rows[:SCAN_PAGES * SCAN_PAGE_SIZE]
    wanted = [r["id"] for r in scanned if r["metrics"][0]["passed"] is False and r["topic"] == "Billing"]
    assert found.count == len(wanted) and [r.id for r in found.rows] == wanted[100:200]
    assert found.has_more is (len(wanted) > 200)
    assert found.note is not None
    assert "refused the filter" in found.note and "same_row" in found.note
    assert f"the {SCAN_PAGES * SCAN_PAGE_SIZE} most recent calls" in found.note and "Older calls" in found.note


async def test_a_small_window_is_scanned_whole() -> None:
    fake = RefusingCekura(calls=250)
    async with _client(fake) as client:
        found = await find_calls(client, agent_id=1, project_id=None, selection=CallFilter(reviewed=True))
    assert fake.pages == [1, 2]
    assert found.count == 0 and found.rows == [] and not found.has_more
    assert found.note is not None and "all calls in the time window: 0 match" in found.note


async def test_metadata_is_read_call_by_call_when_the_list_does_not_carry_it() -> None:
    fake = RefusingCekura(calls=30)
    async with _client(fake) as client:
        found = await find_calls(client, agent_id=1, project_id=None, page_size=50,
                                 selection=CallFilter(topic="Billing", metadata={"region": "US"}))
    billing = [r["id"] for r in fake.rows if r["topic"] == "Billing"]
    assert sorted(fake.details) == sorted(billing), "only calls matching everything else are read"
    assert [r.id for r in found.rows] == [i for i in billing if i % 4 == 0]


async def test_a_400_about_something_else_is_not_taken_for_a_refused_filter() -> None:
    fake = RefusingCekura(calls=10, refusal={"timestamp_from": ["The window may span at most 33 days."]})
    async with _client(fake) as client:
        with pytest.raises(ValidationFailedError, match="33 days"):
            await find_calls(client, agent_id=1, project_id=None, selection=CallFilter(reviewed=False))
    assert fake.pages == []


async def test_an_accepted_filter_is_cekuras_answer_as_is() -> None:
    seen: list[dict[str, Any]] = []

    def cekura(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.url.params["filters_v2"]))
        return httpx.Response(200, json={"count": 0, "next": None, "previous": None,
                                         "results": [_row(5, False)]})

    async with CekuraClient("https://cekura.test", SecretStr("k"), transport=httpx.MockTransport(cekura)) as client:
        found = await find_calls(client, agent_id=1, project_id=None, metric=BINARY,
                                 selection=CallFilter(metric_id=9, metric_value="FALSE"))
    assert found.note is None and [r.id for r in found.rows] == [5] and found.count == 1
    assert seen[0]["operator"] == "same_row"
