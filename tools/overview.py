"""Step 0 of the labs cycle: which metric to improve first, and why."""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.services.overview import MAX_CALLS, MAX_WINDOW_DAYS, PAGE, Overview
from cekura_labs_mcp.tools._common import labs, tool_errors
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
    when it sampled. Then triage_failures and start_review on the top metric."""
    return await labs(ctx).overview.overview(agent_id=agent_id, project_id=project_id, days=days, until=until,
                                             metric_ids=metric_ids, max_calls=max_calls)
