"""The labs loop as a conversation: triage first, then one call at a time, then validate.

The person only answers "agree or disagree, and why"; the server keeps the session in its ledger,
picks the next call, sends the vote and the Lab entry, starts auto-improve when enough feedback is in
(if the person turned that on), and after a patch re-runs the reviewed calls to prove the effect."""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.services.review import NextReview, Progress, RecordedReview
from cekura_labs_mcp.server.services.triage import Triage
from cekura_labs_mcp.tools._common import run_context, tool_errors
from mcp.server.mcpserver import Context
from pydantic import Field

AgentId = Annotated[int, Field(description="The agent whose calls are reviewed.", ge=1)]
MetricId = Annotated[int, Field(description="The metric being improved.", ge=1)]


@tool_errors
async def start_review(
    ctx: Context[Any, Any], agent_id: AgentId, metric_id: MetricId,
    auto_improve: Annotated[bool | None, Field(
        description="true: once enough feedback is in, start auto-improve without being asked again (the "
                    "proposal is still only applied on the person's yes). Omit to keep the current setting.")] = None,
    overlap: Annotated[float | None, Field(
        description="Team review: share of calls also given to a second reviewer.", ge=0, le=0.5)] = None,
) -> Progress:
    """Open (or resume) the review session for a metric: the server remembers every review in its ledger across
    restarts, checks any write a crash interrupted, and reports progress toward the feedback auto-improve needs.
    Ask the person once whether auto-improve should start by itself, and pass their answer as auto_improve."""
    return await run_context(ctx).review.start(agent_id=agent_id, metric_id=metric_id, auto_improve=auto_improve,
                                               overlap=overlap)


@tool_errors
async def next_review(ctx: Context[Any, Any], agent_id: AgentId, metric_id: MetricId) -> NextReview:
    """The single next call to put before the person: the metric's result and explanation, the transcript moments
    the explanation cites, and why this call was picked (likely misjudged first, passing or failing; reviewed and
    skipped calls left out). Show it, then ask the question it gives; record the answer with record_review."""
    state = run_context(ctx)
    review = await state.review.next_call(agent_id=agent_id, metric_id=metric_id)
    if state.settings.read_only and review.call is not None and review.call.metric is not None:
        # Nothing can record a verdict here: ask for a look, not for a vote.
        metric = review.call.metric
        review = review.model_copy(update={"question": (
            f"Call {review.call.id} was scored {metric.value} on {metric.name}. Read the cited moments with the "
            "person: does the explanation hold up? Read-only mode: no verdict is recorded.")})
    return review


@tool_errors
async def record_review(
    ctx: Context[Any, Any], agent_id: AgentId, metric_id: MetricId,
    call_id: Annotated[int, Field(description="The call the person judged.", ge=1)],
    agree: Annotated[bool | None, Field(
        description="true if the person agrees with the metric's result, false if not; omit only with skip.")] = None,
    reason: Annotated[str, Field(
        description="The person's reason in their words: the transcript moment (a time like 01:12 or a quote) and "
                    "what the right outcome is. May be empty when agreeing.", max_length=4000)] = "",
    expected_value: Annotated[bool | float | str | None, Field(
        description='The right value when disagreeing: true/false or "N/A", an enum label, or a number.')] = None,
    insist: Annotated[bool, Field(
        description="Only if the person insists on feedback the server sent back as too vague.")] = False,
    skip: Annotated[bool, Field(
        description="true when the person is not sure: kept in this session only, nothing is sent to Cekura, and "
                    "the call does not come back.")] = False,
) -> RecordedReview:
    """Record the person's verdict on one call: votes on Cekura, adds the call to the metric's Lab with the feedback,
    and keeps both in the ledger. Vague disagreements (no transcript moment, or only "this is wrong") are sent back
    with a hint. Returns the updated progress and the next call; when this review completes the feedback and
    auto-improve is on, it runs auto-improve and returns the proposed change instead (apply only on a yes). "Not
    sure" is skip=true: nothing is sent and the queue moves on."""
    state = run_context(ctx)
    if skip:
        return await state.review.skip(agent_id=agent_id, metric_id=metric_id, call_id=call_id, reason=reason)
    if agree is None:
        raise InputError("agree", "the person's verdict is missing.",
                         "Pass agree=true or agree=false, or skip=true if the person is not sure.")

    async def progress(fraction: float, message: str) -> None:
        await ctx.report_progress(fraction, 1.0, message)

    return await state.review.record(agent_id=agent_id, metric_id=metric_id, call_id=call_id, agree=agree,
                                     expected_value=expected_value, reason=reason, insist=insist,
                                     on_progress=progress)


@tool_errors
async def triage_failures(
    ctx: Context[Any, Any], agent_id: AgentId, metric_id: MetricId,
    failing_value: Annotated[str | None, Field(
        description='Which value counts as failing (default "FALSE" for binary metrics, the last label of an enum '
                    "metric); for scores, the highest failing score (2.5: 2.5 and below fail; default: below the "
                    "pass mark, 3 on a 0–5 scale).", max_length=100)] = None,
    sample: Annotated[int, Field(description="Most explanations to read.", ge=5, le=200)] = 100,
    timestamp_from: Annotated[str | None, Field(description="ISO 8601 start of the window.", max_length=40)] = None,
    timestamp_to: Annotated[str | None, Field(description="ISO 8601 end of the window.", max_length=40)] = None,
) -> Triage:
    """Manual fix first: count a metric's failing results, read a bounded sample of their explanations and group
    them into recurring causes with counts and example call ids. A dominant cause the judge gets wrong is cheaper to
    fix by editing the prompt (SCOPE & FOCUS, DO NOT FLAG, narrower FAILURE CONDITIONS) than with Lab iterations."""
    return await run_context(ctx).triage.triage(agent_id=agent_id, metric_id=metric_id, failing_value=failing_value,
                                         sample=sample, timestamp_from=timestamp_from, timestamp_to=timestamp_to)
