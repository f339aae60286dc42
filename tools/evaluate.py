"""Step 4b of the labs cycle: re-evaluate calls, behind the cost guard.

The guard runs in two resolvers before the tool body: one counts the exact set of calls (the plan),
the other asks the person through MCP elicitation when the client can and the plan needs it. The body
then asks the guard to authorize that same plan; without elicitation, the guard answers with a
single-use confirmation token bound to the plan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cekura_labs_mcp.server.guard import SpendPlan
from cekura_labs_mcp.server.services.calls import CallFilter, CallStatus
from cekura_labs_mcp.server.services.spend import CallSelection, SpendResult
from cekura_labs_mcp.tools._common import run_context, tool_errors
from cekura_labs_mcp.tools._spend import EstimateOnly, SpendConfirmation, Token, ask_spend, spend_approval
from mcp.server.mcpserver import (
    Context,
    Elicit,
    ElicitationResult,
    Resolve,
)
from pydantic import BaseModel, Field

CallIds = Annotated[list[int] | Literal["all"], Field(
    description='Call ids to evaluate, or "all" for every call matching the filters in the time window '
                "(default: last 30 days). The server counts them before anything is spent.")]
Success = Annotated[bool | None, Field(description='With "all": only successful/failed calls.')]
Status = Annotated[CallStatus | None, Field(description='With "all": only calls with this status.')]
Reviewed = Annotated[bool | None, Field(description='With "all": only reviewed (true) or unreviewed calls.')]
TimeFrom = Annotated[str | None, Field(description="ISO 8601 start of the window.", max_length=40)]
TimeTo = Annotated[str | None, Field(description="ISO 8601 end of the window.", max_length=40)]


def _selection(call_ids: list[int] | Literal["all"], success: bool | None, status: CallStatus | None,
               reviewed: bool | None, timestamp_from: str | None, timestamp_to: str | None) -> CallSelection:
    return CallSelection(call_ids=call_ids, selection=CallFilter(
        success=success, status=status, reviewed=reviewed, timestamp_from=timestamp_from,
        timestamp_to=timestamp_to))


@tool_errors
async def _rerun_plan(
    ctx: Context[Any, Any], agent_id: int, call_ids: list[int] | Literal["all"], success: bool | None,
    status: CallStatus | None, reviewed: bool | None, timestamp_from: str | None, timestamp_to: str | None,
) -> SpendPlan:
    chosen = _selection(call_ids, success, status, reviewed, timestamp_from, timestamp_to)
    return await run_context(ctx).spend.plan("rerun_evaluation", agent_id=agent_id, project_id=None, chosen=chosen)


@tool_errors
async def _evaluate_plan(
    ctx: Context[Any, Any], agent_id: int | None, project_id: int | None, call_ids: list[int] | Literal["all"],
    success: bool | None, status: CallStatus | None, reviewed: bool | None, timestamp_from: str | None,
    timestamp_to: str | None,
) -> SpendPlan:
    chosen = _selection(call_ids, success, status, reviewed, timestamp_from, timestamp_to)
    return await run_context(ctx).spend.plan("evaluate_metrics", agent_id=agent_id, project_id=project_id,
                                             chosen=chosen)


async def _ask_rerun(
    ctx: Context[Any, Any], plan: Annotated[SpendPlan, Resolve(_rerun_plan)], estimate_only: bool = False,
) -> Elicit[SpendConfirmation] | str:
    return ask_spend(ctx, plan, estimate_only)


async def _ask_evaluate(
    ctx: Context[Any, Any], plan: Annotated[SpendPlan, Resolve(_evaluate_plan)], estimate_only: bool = False,
) -> Elicit[SpendConfirmation] | str:
    return ask_spend(ctx, plan, estimate_only)




@tool_errors
async def rerun_evaluation(
    ctx: Context[Any, Any],
    agent_id: Annotated[int, Field(description="The agent whose calls are re-run.", ge=1)],
    call_ids: CallIds,
    plan: Annotated[SpendPlan, Resolve(_rerun_plan)],
    approval: Annotated[ElicitationResult[SpendConfirmation], Resolve(_ask_rerun)],
    success: Success = None,
    status: Status = None,
    reviewed: Reviewed = None,
    timestamp_from: TimeFrom = None,
    timestamp_to: TimeTo = None,
    confirmation_token: Token = None,
    estimate_only: EstimateOnly = False,
) -> SpendResult:
    """Re-evaluate calls with the agent's current metrics (e.g. to validate a patched prompt on the calls that
    were reviewed). Costs credits: every metric of the agent re-runs on each call (each metric's metric_cost).
    Call it with estimate_only=true first and show the person the estimate. Above 100 calls, or the credits of
    100 calls (also summed over the last hour), it spends nothing until the person confirms."""
    if estimate_only:
        return run_context(ctx).spend.estimate_only(plan)
    return await run_context(ctx).spend.execute(plan, token=confirmation_token, approval=spend_approval(approval),
                                         requested_metrics=())


@tool_errors
async def evaluate_metrics(
    ctx: Context[Any, Any],
    call_ids: CallIds,
    plan: Annotated[SpendPlan, Resolve(_evaluate_plan)],
    approval: Annotated[ElicitationResult[SpendConfirmation], Resolve(_ask_evaluate)],
    metrics: Annotated[list[int], Field(
        description="Metrics whose new results to show. Note: Cekura runs (and charges for) every metric "
                    "assigned to the calls anyway.", max_length=100)],
    agent_id: Annotated[int | None, Field(description="Agent id (this or project_id).", ge=1)] = None,
    project_id: Annotated[int | None, Field(description="Project id (this or agent_id).", ge=1)] = None,
    success: Success = None,
    status: Status = None,
    reviewed: Reviewed = None,
    timestamp_from: TimeFrom = None,
    timestamp_to: TimeTo = None,
    confirmation_token: Token = None,
    estimate_only: EstimateOnly = False,
) -> SpendResult:
    """Evaluate metrics on calls and return the new values. Costs credits, and Cekura runs every metric
    assigned to each call whatever `metrics` says, so the estimate counts them all. Same guard as
    rerun_evaluation: estimate_only=true first, confirmation by the person above the limit."""
    if estimate_only:
        return run_context(ctx).spend.estimate_only(plan)
    return await run_context(ctx).spend.execute(plan, token=confirmation_token, approval=spend_approval(approval),
                                         requested_metrics=metrics)


class SpendEntry(BaseModel):
    at: str = Field(description="UTC time of the decision.")
    operation: str
    calls: int
    credits_estimated: float
    decision: str = Field(description="allowed, needs_confirmation or refused.")
    confirmation: str = Field(description="none (under the limit), elicitation or token.")
    outcome: str = Field(description="succeeded, pending, unknown (may have landed), rejected or not_sent.")
    detail: str = ""
    by: str = Field(default="", description="Who asked for it (the reviewer, on a shared server); empty locally.")


class SpendLog(BaseModel):
    backend: str = Field(description="The Cekura API this log (and its window) belongs to, and its key's fingerprint.")
    window_calls: int = Field(description="Calls allowed in the current rolling window (counted against the limit).")
    window_credits: float = Field(description="Estimated credits allowed in the same window.")
    threshold: int
    entries: list[SpendEntry]


@tool_errors
async def spend_log(
    ctx: Context[Any, Any],
    limit: Annotated[int, Field(description="Most recent entries to show.", ge=1, le=200)] = 20,
) -> SpendLog:
    """The cost guard's audit log, newest first: every evaluation anyone on this backend asked for (and who), with
    its call count, estimated credits, the guard's decision, how it was confirmed and what became of it, plus the
    calls already counted in the current window. Use it to answer "what have we spent?" or to check a spend whose
    outcome is unknown."""
    state = run_context(ctx)
    # The organisation's log: the window is shared by everyone on this backend, so is the record of who spent.
    rows = state.ledger.audit_entries(limit, everyone=True)
    window = state.guard.window()
    return SpendLog(
        backend=state.ledger.backend,
        window_calls=window.calls, window_credits=window.credits, threshold=state.guard.threshold,
        entries=[SpendEntry(at=datetime.fromtimestamp(r["at"], UTC).strftime("%Y-%m-%d %H:%M:%S"),
                            operation=r["operation"], calls=r["call_count"],
                            credits_estimated=r["credits_estimated"], decision=r["decision"],
                            confirmation=r["confirmation"], outcome=r["outcome"], detail=r["detail"], by=r["owner"])
                 for r in rows],
    )
