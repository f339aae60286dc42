"""Step 2 of the labs cycle: record the person's verdict on a result, and add the call to the Lab."""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.cekura.models import MetricFeedback
from cekura_labs_mcp.server.services.feedback import LabEntry, VoteReceipt, reject_bare_metric_ids
from cekura_labs_mcp.tools._common import run_context, tool_errors
from mcp.server.mcpserver import Context
from pydantic import BaseModel, BeforeValidator, Field

Expected = bool | float | str | None


@tool_errors
async def mark_metric_vote(
    ctx: Context[Any, Any],
    call_id: Annotated[int, Field(description="The call voted on.", ge=1)],
    metric_id: Annotated[int, Field(description="The metric whose result is judged.", ge=1)],
    thumbs_up: Annotated[bool, Field(description="true = the person agrees with the result; false = disagrees.")],
    feedback: Annotated[str | None, Field(
        description="Why: a transcript moment (time or quote) and what the right outcome is. Required when "
                    "disagreeing.", max_length=4000)] = None,
    expected_value: Annotated[Expected, Field(
        description='The correct value: true/false or "N/A" (binary), an enum label, or a number. Required '
                    'when disagreeing (write "N/A", not null, for not applicable); when agreeing it defaults '
                    "to the current result.")] = None,
) -> VoteReceipt:
    """Record the person's agree/disagree vote on one metric result of one call, with the correct value and the
    reason, exactly as Cekura expects (`thumbs_up`, `expected_value`, `feedback`). The call becomes reviewed.
    N/A is sent as an explicit null, never omitted. Only vote what the person actually said."""
    return await run_context(ctx).feedback.vote(
        call_id=call_id, metric_id=metric_id, thumbs_up=thumbs_up, feedback=feedback,
        expected_value=expected_value, expected_given=expected_value is not None,
    )


class LabFeedback(BaseModel):
    metric: int = Field(description="Metric id.", ge=1)
    feedback: str = Field(description="What the metric got wrong or right, citing the transcript.",
                          min_length=1, max_length=4000)
    expected_value: Expected = Field(
        description='Correct value (required): true/false or "N/A", an enum label, or a number.')


@tool_errors
async def create_test_set_from_call(
    ctx: Context[Any, Any],
    call_log_id: Annotated[int, Field(description="The call to add to the metric's Lab.", ge=1)],
    metrics: Annotated[list[LabFeedback], BeforeValidator(reject_bare_metric_ids), Field(
        description='One object per metric: [{"metric": 123, "feedback": "...", "expected_value": true}]. '
                    "Bare ids are refused.", min_length=1, max_length=20)],
    name: Annotated[str | None, Field(description="Optional test-set name.", max_length=200)] = None,
    project: Annotated[int | None, Field(description="Optional project id.", ge=1)] = None,
) -> LabEntry:
    """Add a call to each given metric's Lab (a test set) with per-metric feedback and the expected value, so
    Cekura's auto-improve (process_feedbacks) can learn from it. Returns the test set id: keep it to pass to
    process_feedbacks. Six or more pieces of feedback give auto-improve enough signal."""
    entries = [MetricFeedback(metric=m.metric, feedback=m.feedback, expected_value=m.expected_value)
               for m in metrics]
    return await run_context(ctx).feedback.add_to_lab(call_log_id=call_log_id, entries=entries, name=name,
                                               project=project)
