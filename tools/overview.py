"""Step 0 of the labs cycle: which metric to improve first, and why."""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.services.overview import MAX_CALLS, MAX_WINDOW_DAYS, PAGE, Overview
from cekura_labs_mcp.tools._common import run_context, tool_errors
from mcp.server.mcpserver import Context
from pydantic import Field


@tool_errors
async def metric_overview(
    ctx: Context[Any, Any],
    agent_id: Annotated[int | None, Field(description="Cekura agent id (this or project_id).", ge=1)] = None,
    project_id: Annotated[int | None, Field(description="Cekura project id (this or agent_id).", ge=1)] = None,
    days: Annotated[int, Field(description="Window length; the previous window of the same length is the baseline.",
                               ge=1, le=MAX_WINDOW_DAYS)] = 14,
    until: Annotated[str | None, Field(description="ISO 8601 end of the window (default: now).", max_length=40)] = None,
    metric_ids: Annotated[list[int] | None, Field(description="Only these metrics (default: all).",
                                                  max_length=50)] = None,
    max_calls: Annotated[int, Field(description="Calls read per window, newest first, in pages of 200.",
                                    ge=1, le=MAX_CALLS)] = PAGE,
) -> Overview:
    """Start here: which metric to improve first. For each metric of an agent or project over the last `days`: its
    results (pass/fail/N/A, or a histogram), failure and N/A rates, the change against the previous window, and the
    person's reviews so far; ranked by how likely the judge is misaligned, each with its reasons. Reads only; says
    when it sampled. Then triage_failures on the top metric."""
    state = run_context(ctx)
    overview = await state.overview.overview(agent_id=agent_id, project_id=project_id, days=days, until=until,
                                             metric_ids=metric_ids, max_calls=max_calls)
    return overview.model_copy(update={"next_step": next_step(overview, agent_id, read_only=state.settings.read_only)})


def next_step(overview: Overview, agent_id: int | None, *, read_only: bool) -> str:
    """The tools to call next, named here in the tool layer (the service knows no tool names). The review tools
    work per agent: for a project, the first agent the metric scores."""
    if not overview.metrics:
        return "No metric had results in the window: widen it (days) or check the metrics with list_metrics."
    top = overview.metrics[0]
    if top.score <= 0:
        return f"No warning sign in any metric; spot-check {top.metric} if the person suspects it."
    metric_id = top.metric.split(":", 1)[0]
    agent = agent_id if agent_id is not None else next(iter(top.agents or []), None)
    scope = f"agent_id={agent}, " if agent is not None else ""
    then = ("then read a few of its calls with next_review or get_call" if read_only
            else "then review calls one at a time with start_review and next_review")
    return (f"Start with {top.metric} ({top.why[0]}): triage_failures({scope}metric_id={metric_id}) groups its "
            f"failures into causes to check by hand first, {then}.")
