"""Votes and Lab entries: the two writes that carry a person's judgement to Cekura."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import ExpectedValue, Metric, MetricFeedback
from cekura_labs_mcp.server.cekura.results import Reading, read_result
from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.steps import Step
from cekura_labs_mcp.server.values import agreed_value, display, expected_from_input
from pydantic import BaseModel, Field

LAB_ENTRY_SHAPE = '[{"metric": 123, "feedback": "At 01:12 the agent ... so this should be TRUE", ' \
                  '"expected_value": true}]'


class VoteReceipt(BaseModel):
    call_id: int
    metric_id: int
    agreed: bool
    result_was: str | None = Field(description="The metric's value on the call when voted.")
    expected: str = Field(description="The value the person says is right.")
    cekura: str = Field(description="Cekura's answer.")


class LabEntry(BaseModel):
    test_set_id: int
    call_log_id: int
    metrics: list[dict[str, Any]] = Field(description="Per metric: review id, expected value, feedback.")


class FeedbackService:
    def __init__(self, client: CekuraClient) -> None:
        self._client = client

    async def vote(
        self, *, call_id: int, metric_id: int, thumbs_up: bool, expected_value: Any, expected_given: bool,
        feedback: str | None,
    ) -> VoteReceipt:
        metric = await self._client.get_metric(metric_id)
        call = await self._client.get_call(call_id)
        result = call.metric(metric_id)
        if result is None:
            raise InputError("metric_id", f"metric {metric_id} ({metric.name}) has no result on call {call_id}.",
                             f"Vote on a metric that ran on this call ({Step.READ_CALL} lists them).")
        reading = read_result(result, metric)
        expected = self._expected(metric, reading, thumbs_up, expected_value, expected_given)
        if not thumbs_up and not (feedback or "").strip():
            raise InputError("feedback", "a disagreement needs a reason.",
                             "Say what the transcript shows (a time or a quote) and what the right outcome is.")
        detail = await self._client.mark_metric_vote(
            call_id, metric_id=metric_id, thumbs_up=thumbs_up, expected_value=expected,
            feedback=(feedback or "").strip() or None,
        )
        return VoteReceipt(call_id=call_id, metric_id=metric_id, agreed=thumbs_up, result_was=reading.text,
                           expected=display(expected), cekura=detail or "recorded")

    @staticmethod
    def _expected(
        metric: Metric, actual: Reading, thumbs_up: bool, raw: Any, given: bool,
    ) -> ExpectedValue:
        if given:
            return expected_from_input(metric, raw)
        if thumbs_up:
            return agreed_value(metric, actual)
        raise InputError("expected_value", "a disagreement must say what the right value is.",
                         'Pass expected_value: true/false/"N/A" for binary metrics, a label for enum '
                         "metrics, a number for numeric ones.")

    async def add_to_lab(
        self, *, call_log_id: int, entries: Sequence[MetricFeedback], name: str | None, project: int | None,
    ) -> LabEntry:
        if not entries:
            raise InputError("metrics", "no metric feedback was given.", f"Pass metrics as {LAB_ENTRY_SHAPE}.")
        checked = [await self._checked(entry) for entry in entries]
        test_set = await self._client.create_test_set_from_call(
            call_log_id=call_log_id, metrics=checked, name=name, project=project)
        return LabEntry(
            test_set_id=test_set.id, call_log_id=call_log_id,
            metrics=[{"review_id": r.id, "metric": r.metric, "expected": r.expected_value, "feedback": r.feedback}
                     for r in test_set.metric_reviews],
        )

    async def _checked(self, entry: MetricFeedback) -> MetricFeedback:
        if not entry.feedback.strip():
            raise InputError("metrics.feedback", f"the feedback for metric {entry.metric} is empty.",
                             "Explain what the metric got wrong or right, citing the transcript.")
        metric = await self._client.get_metric(entry.metric)
        expected = expected_from_input(metric, entry.expected_value, field="metrics.expected_value")
        return MetricFeedback(metric=entry.metric, feedback=entry.feedback.strip(), expected_value=expected)


def reject_bare_metric_ids(value: Any) -> Any:
    """`create_from_call_log` answers 500 to `"metrics": [123]`; stop that before it is sent."""
    if isinstance(value, list) and any(isinstance(item, int | str) and not isinstance(item, bool)
                                       for item in value):
        raise ValueError(f"bare metric ids are not accepted (Cekura answers 500 to them); "
                         f"pass objects: {LAB_ENTRY_SHAPE}")
    return value
