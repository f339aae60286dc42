"""Step 5 of the labs cycle: the regression check (Cekura's Metric Lab "Run a Regression Check", in conversation).

`validate_metric` re-evaluates the reviewed calls and a fresh sample outside the Lab in one guarded spend,
waits for Cekura's asynchronous results (resumable, never paid twice), and hands the changed fresh results
to the person one at a time through `judge_change`. Rejected regressions go to the Lab only through
`add_regressions_to_lab` with the person's yes."""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.guard import SpendPlan
from cekura_labs_mcp.server.services.validation import LabProposal, RegressionCheck
from cekura_labs_mcp.tools._common import run_context, tool_errors
from cekura_labs_mcp.tools._spend import EstimateOnly, SpendConfirmation, Token, ask_spend, spend_approval
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from pydantic import BaseModel, Field

AgentId = Annotated[int, Field(description="The agent whose calls are reviewed.", ge=1)]
MetricId = Annotated[int, Field(description="The metric being improved.", ge=1)]
CheckId = Annotated[int, Field(description="The regression check's id (from validate_metric).", ge=1)]


@tool_errors
async def _validation_plan(ctx: Context[Any, Any], agent_id: int, metric_id: int, check_id: int | None,
                           fresh_sample: int | None, restart: bool) -> SpendPlan:
    state = run_context(ctx)
    return await state.validation.plan(agent_id=agent_id, metric_id=metric_id, check_id=check_id,
                                       fresh_sample=fresh_sample or state.settings.fresh_sample_size,
                                       restart=restart)


async def _ask_validation(
    ctx: Context[Any, Any], plan: Annotated[SpendPlan, Resolve(_validation_plan)], estimate_only: bool = False,
) -> Elicit[SpendConfirmation] | str:
    return ask_spend(ctx, plan, estimate_only)


@tool_errors
async def validate_metric(
    ctx: Context[Any, Any], agent_id: AgentId, metric_id: MetricId,
    plan: Annotated[SpendPlan, Resolve(_validation_plan)],
    approval: Annotated[ElicitationResult[SpendConfirmation], Resolve(_ask_validation)],
    check_id: Annotated[int | None, Field(
        description="Resume this check (it said 'evaluating'); nothing is spent again.", ge=1)] = None,
    fresh_sample: Annotated[int | None, Field(
        description="Recent calls outside the Lab to re-evaluate (default 25).", ge=20, le=30)] = None,
    restart: Annotated[bool, Field(
        description="Start a new check even though one is still evaluating (spends again).")] = False,
    confirmation_token: Token = None,
    estimate_only: EstimateOnly = False,
) -> RegressionCheck:
    """After a change to a metric: re-evaluate the reviewed calls AND a fresh sample of recent calls outside the
    Lab (the optimizer never saw them), in one spend under the cost guard. New results are read only once Cekura
    has finished evaluating; if that takes longer than the client waits, the answer says 'evaluating' with a
    check_id: call again with it, nothing is spent again. Reports both groups separately (agreement, kappa,
    confusion matrix, fixed / regressed / still wrong, fixed calls' explanations before and after), then hands
    the changed fresh results to the person one at a time (next_change -> judge_change)."""
    state = run_context(ctx)
    if estimate_only:
        return await state.validation.estimate(plan, metric_id=metric_id)

    async def progress(fraction: float, message: str) -> None:
        await ctx.report_progress(fraction, 1.0, message)

    return await state.validation.run(plan, metric_id=metric_id, check_id=check_id, token=confirmation_token,
                                      approval=spend_approval(approval), restart=restart, on_progress=progress)


@tool_errors
async def judge_change(
    ctx: Context[Any, Any], check_id: CheckId,
    call_id: Annotated[int, Field(description="The changed call the person judged (next_change).", ge=1)],
    new_label_correct: Annotated[bool, Field(
        description="true: the changed metric fixed a label production got wrong. false: a regression.")],
    right_value: Annotated[bool | float | str | None, Field(
        description='With new_label_correct=false: the right label (true/false, "N/A", an enum label, a number).'
    )] = None,
    note: Annotated[str, Field(description="The person's reason: why the new label is wrong (a moment or a quote). "
                                           "It becomes the Lab feedback if the call is added.", max_length=4000)] = "",
) -> RegressionCheck:
    """Record the person's verdict on one changed fresh result of a regression check, and get the next one. Only
    the server's ledger changes (nothing is sent to Cekura). When every change is judged, the answer groups the
    rejected regressions by failure mode and proposes a representative few for the Lab."""
    return await run_context(ctx).validation.judge(check_id=check_id, call_id=call_id, correct=new_label_correct,
                                            right_value=right_value, note=note)


class LabConfirmation(BaseModel):
    add: bool = Field(description="Yes, add exactly these calls to the metric's Lab.")


@tool_errors
async def _ask_lab(ctx: Context[Any, Any], check_id: int, call_ids: list[int] | None, confirm: bool,
                   reoptimize: bool) -> Elicit[LabConfirmation] | str:
    caps = ctx.client_capabilities
    if not confirm or caps is None or caps.elicitation is None:
        return "not_asked"
    preview = await run_context(ctx).validation.add_to_lab(check_id=check_id, call_ids=call_ids, confirm=False,
                                                    reoptimize=False)
    lines = [f"call {e['call_id']}: expected {e['expected']}: {e['feedback'][:200]}" for e in preview.entries]
    then = " Then start auto-improve again on the enlarged Lab." if reoptimize else ""
    return Elicit("Add these rejected regressions to the metric's Lab?" + then + "\n" + "\n".join(lines),
                  LabConfirmation)


@tool_errors
async def add_regressions_to_lab(
    ctx: Context[Any, Any], check_id: CheckId,
    approval: Annotated[ElicitationResult[LabConfirmation], Resolve(_ask_lab)],
    call_ids: Annotated[list[int] | None, Field(
        description="The rejected regressions to add (default: the representative subset the check proposed).",
        max_length=200)] = None,
    confirm: Annotated[bool, Field(description="false: only show the entries. true: add them, after the "
                                               "person approved this exact list.")] = False,
    reoptimize: Annotated[bool, Field(description="With confirm: then start auto-improve on the enlarged Lab.")
                          ] = False,
) -> LabProposal:
    """Add rejected regressions of a regression check to the metric's Lab, with the person's label and note as
    feedback, only on their confirmation (asked directly where the client supports it). Optionally re-optimise
    right away; otherwise the current proposal stays in place."""
    if confirm and not (isinstance(approval, AcceptedElicitation)
                        and (not isinstance(approval.data, LabConfirmation) or approval.data.add)):
        raise LabsError("The person did not approve adding these calls; nothing was added to the Lab.",
                        "Ask which calls they want in the Lab, if any.")
    return await run_context(ctx).validation.add_to_lab(check_id=check_id, call_ids=call_ids, confirm=confirm,
                                                 reoptimize=reoptimize)
