"""Steps 3 and 4 of the labs cycle: auto-improve from the Lab's feedback, then apply on approval."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cekura_labs_mcp.server.cekura.models import MetricPatch
from cekura_labs_mcp.server.services.improve import ImprovementResult, ImprovementStarted, PatchPreview
from cekura_labs_mcp.tools._common import labs, tool_errors
from mcp.server.mcpserver import Context
from pydantic import Field

MetricId = Annotated[int, Field(description="The metric's id.", ge=1)]


@tool_errors
async def process_feedbacks(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    test_set_ids: Annotated[list[int] | None, Field(
        description="Lab test sets to learn from (from create_test_set_from_call); omit to use the whole Lab.",
        max_length=500)] = None,
) -> ImprovementStarted:
    """Start Cekura's auto-improve (Labs) for a metric from the feedback in its Lab; best with 6+ feedback
    items. Returns a progress id at once; the run takes a while, so follow with poll_progress. Nothing is
    applied to the metric by this: a proposal only becomes live through patch_metric."""
    return await labs(ctx).improve.start(metric_id=metric_id, test_set_ids=test_set_ids)


@tool_errors
async def poll_progress(
    ctx: Context[Any, Any],
    progress_id: Annotated[str, Field(description="From process_feedbacks.", min_length=1, max_length=100)],
    metric_id: Annotated[int | None, Field(description="The metric, to diff against its current prompt.",
                                           ge=1)] = None,
    wait_seconds: Annotated[float | None, Field(
        description="How long to wait before answering (default 45 s; some clients drop longer calls).",
        gt=0, le=600)] = None,
) -> ImprovementResult:
    """Wait for an auto-improve run, polling with backoff and sending progress notifications. When done, returns
    the proposed prompt as a unified diff against the current one, old and new scores over the Lab, and the
    optimizer's summary: show these to the person. If it is not done in time, says so; call again to resume."""
    state = labs(ctx)

    async def progress(fraction: float, message: str) -> None:
        await ctx.report_progress(fraction, 1.0, message)

    return await state.improve.poll(
        progress_id=progress_id, metric_id=metric_id,
        timeout=wait_seconds or state.settings.poll_timeout_seconds, on_progress=progress,
    )


@tool_errors
async def patch_metric(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    description: Annotated[str | None, Field(description="New judge prompt.", max_length=50_000)] = None,
    custom_code: Annotated[str | None, Field(description="New Python code (with type=custom_code).",
                                             max_length=100_000)] = None,
    type: Annotated[Literal["llm_judge", "custom_code"] | None, Field(
        description="Switch the metric's active kind.")] = None,
    confirm: Annotated[bool, Field(
        description="false (default): only show the diff. true: apply it - only after the person approved "
                    "this exact diff.")] = False,
) -> PatchPreview:
    """Change a metric's prompt (or its custom_code and type). Without confirm it only reads the metric and
    returns the diff of what would change; with confirm=true, after the person approved that diff, it saves the
    current version in the ledger (so rollback_metric can restore it) and applies the change."""
    patch = MetricPatch(description=description, custom_code=custom_code, type=type)
    return await labs(ctx).improve.patch(metric_id=metric_id, patch=patch, confirm=confirm, reason="patch")


@tool_errors
async def rollback_metric(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    confirm: Annotated[bool, Field(description="false: show what would be restored; true: restore it.")] = False,
) -> PatchPreview:
    """Restore the version of a metric that this server saved before its last patch_metric. Without confirm it
    shows the diff back to that version; with confirm=true it applies it."""
    return await labs(ctx).improve.rollback(metric_id=metric_id, confirm=confirm)
