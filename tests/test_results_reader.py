"""The one metric-result reader, on every documented shape, and on every answer example from Cekura's docs and
skills kept in tests/fixtures/cekura_docs/ (each names the file it was copied from)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cekura_labs_mcp.server.cekura.models import CallDetail, CallRow, Metric, MetricResult
from cekura_labs_mcp.server.cekura.results import find_reading, read_result
from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.values import agreed_value

FIXTURES = Path(__file__).parent / "fixtures" / "cekura_docs"
BINARY = Metric(id=7, name="workflow-adherence-check", eval_type="binary")
ENUM = Metric(id=8, name="Outcome", eval_type="enum", enum_values=["booked", "declined", "transferred"])
NUMERIC = Metric(id=9, name="Turns", eval_type="numeric")
CONTINUOUS = Metric(id=10, name="Warmth", eval_type="continuous_qualitative")


def read(fields: dict[str, Any], metric: Metric | None = None) -> tuple[str, object]:
    reading = read_result(MetricResult.model_validate({"id": 7, "name": "m", **fields}), metric)
    return reading.kind, reading.expected


# ---- binary: passed, score 5/0/null, legacy type names, extra.trigger_failed, value text ---------------------

@pytest.mark.parametrize(("fields", "metric", "kind", "expected"), [
    # docs webhook-format.mdx: eval_type binary + boolean passed
    ({"eval_type": "binary", "passed": True}, None, "pass", True),
    ({"eval_type": "binary", "passed": False}, None, "fail", False),
    # the same page's legacy fields: type binary_workflow_adherence + score 5/0
    ({"type": "binary_workflow_adherence", "score": 5}, None, "pass", True),
    ({"type": "binary_workflow_adherence", "score": 0}, None, "fail", False),
    ({"eval_type": "binary", "passed": True, "type": "binary_workflow_adherence", "score": 5}, None, "pass", True),
    # skills api-reference.md: score 0/5/None, score_normalized, legacy binary_qualitative, trigger_failed
    ({"type": "binary_qualitative", "score": 0, "score_normalized": 0}, None, "fail", False),
    ({"type": "binary_qualitative", "score": None, "score_normalized": None}, None, "na", None),
    ({"type": "binary_qualitative", "score": None, "extra": {"trigger_failed": True}}, None, "na", None),
    ({"score": 5, "extra": {"trigger_failed": True}}, BINARY, "na", None),
    # the metric's definition reads a bare score when the result's own type says nothing
    ({"type": "llm_judge", "score": 5.0}, BINARY, "pass", True),
    ({"score": "0"}, BINARY, "fail", False),
    ({"score": None}, BINARY, "na", None),
    ({"eval_type": "binary", "passed": None}, None, "na", None),
    # the spec's schema: value text
    ({"type": "binary", "score": 5, "value": "TRUE"}, None, "pass", True),
    ({"type": "binary", "score": 0, "value": "FALSE"}, None, "fail", False),
    ({"type": "binary", "score": None, "value": "N/A"}, None, "na", None),
    # the spec's serializer (and the sandbox's spec dialect): N/A written out, the score left at its default 0
    ({"type": "llm_judge", "score": 0.0, "value": "N/A", "enum": ""}, BINARY, "na", None),
    ({"value": "FALSE"}, None, "fail", False),
    # the spec-shaped answer writes N/A out and puts a placeholder score of 0 beside it
    ({"type": "binary", "score": 0.0, "enum": "", "value": "N/A"}, None, "na", None),
    ({"type": "binary", "score": 0.0, "enum": "", "value": "N/A"}, BINARY, "na", None),
])
def test_binary_results_in_every_documented_shape(fields: dict[str, Any], metric: Metric | None, kind: str,
                                                  expected: object) -> None:
    assert read(fields, metric) == (kind, expected)


# ---- enum, numeric, continuous --------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "metric", "kind", "expected"), [
    ({"type": "enum", "enum": "booked", "value": "booked"}, ENUM, "label", "booked"),
    ({"type": "enum", "value": "Declined"}, ENUM, "label", "declined"),
    ({"type": "enum", "enum": "transferred"}, ENUM, "label", "transferred"),
    ({"type": "enum", "enum": None, "value": None}, ENUM, "na", None),
    ({"type": "enum", "value": "N/A"}, ENUM, "na", None),
    ({"type": "enum", "value": "booked", "extra": {"trigger_failed": True}}, ENUM, "na", None),
    ({"value": "callback"}, None, "label", "callback"),
    ({"type": "numeric", "score": 3}, NUMERIC, "number", 3),
    ({"type": "numeric", "score": 2.5}, None, "number", 2.5),
    ({"type": "numeric", "score": None}, None, "na", None),
    ({"type": "llm_judge", "score": 0.0, "value": "N/A"}, CONTINUOUS, "na", None),
    ({"type": "numeric", "score": 0.0, "value": "0"}, NUMERIC, "number", 0),
    ({"type": "continuous_qualitative", "score": 4.0}, CONTINUOUS, "number", 4),
    ({"score": 5}, CONTINUOUS, "number", 5),
    ({"type": "numeric", "value": "7"}, None, "number", 7),
    ({"value": "3.5"}, None, "number", 3.5),
    ({"type": "continuous_qualitative", "score": 1.5, "enum": "", "value": "1.5"}, None, "number", 1.5),
    ({"type": "continuous_qualitative", "score": 0.0, "enum": "", "value": "N/A"}, None, "na", None),
    ({"type": "enum", "score": 0.0, "enum": "", "value": "N/A"}, ENUM, "na", None),
    ({"type": "enum", "score": 0.0, "enum": "booked", "value": "booked"}, ENUM, "label", "booked"),
])
def test_enum_and_numeric_results(fields: dict[str, Any], metric: Metric | None, kind: str,
                                  expected: object) -> None:
    assert read(fields, metric) == (kind, expected)


# ---- what cannot be read is said to be unreadable, never guessed -----------------------------------------

@pytest.mark.parametrize(("fields", "metric", "problem"), [
    ({}, None, "no field says"),
    ({}, BINARY, "neither `passed`, a `score` nor a `value`"),
    ({"type": "llm_judge"}, BINARY, "neither"),
    ({"score": 5}, None, "no eval type"),
    ({"type": "llm_judge", "score": 0}, None, "no eval type"),
    ({"score": 3}, BINARY, "not 3"),
    ({"eval_type": "binary", "passed": True, "score": 0}, None, "disagree"),
    ({"passed": False, "value": "TRUE"}, None, "disagree"),
    ({"type": "binary", "score": 0, "value": "TRUE"}, None, "disagree"),
    ({"passed": True, "value": "N/A"}, BINARY, "disagree"),
    ({"type": "numeric", "score": 2, "value": "3"}, NUMERIC, "disagree"),
    ({"eval_type": "binary", "passed": "yes"}, None, "not true or false"),
    ({"value": "maybe"}, BINARY, "not a binary outcome"),
    ({"type": "enum", "value": "rescheduled"}, ENUM, "not one of the metric's values"),
    ({"type": "enum"}, ENUM, "without a `value`"),
    ({"type": "numeric", "value": "lots"}, NUMERIC, "not a number"),
    ({"type": "numeric"}, NUMERIC, "without a `score`"),
    ({"type": "numeric", "score": "high"}, NUMERIC, "without a `score`"),
])
def test_an_unreadable_result_is_reported_with_its_raw_fields(fields: dict[str, Any], metric: Metric | None,
                                                              problem: str) -> None:
    reading = read_result(MetricResult.model_validate({"id": 7, "name": "m", **fields}), metric)
    assert not reading.readable and reading.kind == "unreadable"
    assert reading.expected is None and not reading.is_na
    assert reading.problem is not None and problem in reading.problem
    assert reading.raw == {"id": 7, "name": "m", **fields}
    assert reading.text.startswith("unreadable (")
    for key, value in fields.items():
        assert f"{key}={value!r}" in reading.text


def test_texts_are_one_spelling_per_value() -> None:
    texts = [read_result(MetricResult.model_validate({"id": 1, **f}), m).text for f, m in [
        ({"passed": True}, None), ({"score": 0}, BINARY), ({"score": None}, BINARY), ({"value": "booked"}, ENUM),
        ({"score": 4.0}, NUMERIC), ({"score": 2.25}, NUMERIC)]]
    assert texts == ["TRUE", "FALSE", "N/A", "booked", "4", "2.25"]


def test_the_legacy_binary_eval_type_names_are_binary_on_metrics_too() -> None:
    for name in ("binary_workflow_adherence", "binary_qualitative"):
        metric = Metric.model_validate({"id": 1, "name": "m", "eval_type": name})
        assert metric.eval_type == "binary"
        assert read({"score": 5}, metric) == ("pass", True)


def test_find_reading_is_none_only_when_the_metric_has_no_result() -> None:
    results = [MetricResult.model_validate({"id": 7, "eval_type": "binary", "passed": False}),
               MetricResult.model_validate({"id": 8})]
    first, second = find_reading(results, 7), find_reading(results, 8)
    assert first is not None and first.kind == "fail"
    assert second is not None and second.kind == "unreadable"
    assert find_reading(results, 9) is None


# ---- every docs/skills example in the fixtures ----------------------------------------------------------

def _fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def _metric_lists(node: Any) -> Iterator[list[dict[str, Any]]]:
    """Every `evaluation.metrics` list (and list rows' `metrics`) anywhere in an example."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "evaluation" and isinstance(value, dict) and isinstance(value.get("metrics"), list):
                yield value["metrics"]
            elif key == "metrics" and isinstance(value, list) and all(isinstance(v, dict) and "id" in v
                                                                      for v in value):
                yield value
            else:
                yield from _metric_lists(value)
    elif isinstance(node, list):
        for item in node:
            yield from _metric_lists(item)


def test_the_docs_fixtures_are_there_and_name_their_source() -> None:
    files = _fixtures()
    assert len(files) >= 6
    for path in files:
        source = json.loads(path.read_text())["_source"]
        assert {"repo", "path"} <= set(source), path.name
        assert source["repo"] in ("cekura-ai/docs", "cekura-ai/cekura-skills"), path.name


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_every_result_in_every_docs_example_is_read(path: Path) -> None:
    example = json.loads(path.read_text())
    results = [entry for entries in _metric_lists(example) for entry in entries]
    for entry in results:
        reading = read_result(MetricResult.model_validate(entry))
        assert reading.readable, f"{path.name}: {reading.problem} in {entry}"
        if isinstance(entry.get("passed"), bool):
            assert reading.expected is entry["passed"]
            assert reading.kind == ("pass" if entry["passed"] else "fail")


def test_the_docs_call_log_examples_parse_as_calls_and_read_through_them() -> None:
    seen = 0
    for path in _fixtures():
        example = json.loads(path.read_text())
        data = example.get("data")
        if example.get("event_type") != "call_log.completed" or not isinstance(data, dict):
            continue
        for model in (CallDetail, CallRow):
            call = model.model_validate(data)
            assert call.updated_at and call.evaluation is not None
            for entry in data["evaluation"]["metrics"]:
                result = call.metric(entry["id"])
                assert result is not None
                assert read_result(result).expected is entry["passed"]
        seen += 1
    assert seen >= 2


# ---- votes: the agreed value per metric type ------------------------------------------------------------

@pytest.mark.parametrize(("fields", "metric", "expected"), [
    ({"eval_type": "binary", "passed": True}, BINARY, True),
    ({"type": "binary_qualitative", "score": 0}, BINARY, False),
    ({"score": None, "extra": {"trigger_failed": True}}, BINARY, None),
    ({"type": "enum", "value": "Declined"}, ENUM, "declined"),
    ({"type": "numeric", "score": 4.0}, NUMERIC, 4),
])
def test_agreeing_sends_the_result_itself_typed_per_metric(fields: dict[str, Any], metric: Metric,
                                                          expected: object) -> None:
    reading = read_result(MetricResult.model_validate({"id": metric.id, **fields}), metric)
    value = agreed_value(metric, reading)
    assert value == expected and type(value) is type(expected)


def test_agreeing_with_an_unreadable_result_asks_for_the_value_instead_of_guessing() -> None:
    reading = read_result(MetricResult.model_validate({"id": 7, "type": "llm_judge"}), BINARY)
    with pytest.raises(InputError) as failure:
        agreed_value(BINARY, reading)
    assert "`expected_value`" in str(failure.value) and "cannot be read" in str(failure.value)
    assert "true/false" in failure.value.hint
