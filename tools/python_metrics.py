"""The last step of the labs cycle: a Python (custom_code) metric, tested locally before it is applied.

Both tools run the code in an isolated local process on real calls. Only the code's own judge calls
(`evaluate_llm_judge_metric`) cost credits; they pass the cost guard once per run, like an evaluation.
"""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.services.python_metrics import (
    MAX_CALLS,
    MAX_JUDGE_CALLS_PER_CALL,
    CodeTestPlan,
    CodeTestReport,
    ConversionPlan,
    ConversionProposal,
)
from cekura_labs_mcp.tools._common import run_context, tool_errors
from cekura_labs_mcp.tools._spend import EstimateOnly, SpendConfirmation, ask_spend, spend_approval
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

MetricId = Annotated[int, Field(description="The metric's id.", ge=1)]
Token = Annotated[str | None, Field(
    description="Only when a previous answer said confirmation is required AND the person said yes: the token "
                "it gave.", max_length=100)]
Code = Annotated[str | None, Field(
    description="Python to test; omit to test the metric's current custom_code. It sees `data` and the "
                "documented variables, and must set `_result` and `_explanation`.", max_length=100_000)]
TestCalls = Annotated[list[int], Field(
    description="Calls to run the code on (the reviewed calls are the best test).", min_length=1,
    max_length=MAX_CALLS)]
PerCall = Annotated[int | None, Field(
    description="Judge calls the code may make per call (default: how often it calls evaluate_llm_judge_metric, "
                "at most 4). A call that asks more is stopped.", ge=1, le=MAX_JUDGE_CALLS_PER_CALL)]


@tool_errors
async def _test_plan(ctx: Context[Any, Any], metric_id: int, call_ids: list[int], code: str | None,
                     judge_calls_per_call: int | None) -> CodeTestPlan:
    return await run_context(ctx).python_metrics.plan_test(
        metric_id=metric_id, call_ids=call_ids, code=code, judge_calls_per_call=judge_calls_per_call)


async def _ask_test(ctx: Context[Any, Any], plan: Annotated[CodeTestPlan, Resolve(_test_plan)],
                    estimate_only: bool = False) -> Elicit[SpendConfirmation] | str:
    return ask_spend(ctx, plan.budget, estimate_only) if plan.budget is not None else "not_asked"


@tool_errors
async def _conversion_plan(ctx: Context[Any, Any], metric_id: int, agent_id: int | None,
                           call_ids: list[int] | None, gate_metric: str | None, gate_values: list[str] | None,
                           sections: list[str] | None) -> ConversionPlan:
    return await run_context(ctx).python_metrics.plan_conversion(
        metric_id=metric_id, agent_id=agent_id, call_ids=call_ids, gate_metric=gate_metric,
        gate_values=gate_values, sections=sections)


async def _ask_conversion(ctx: Context[Any, Any], plan: Annotated[ConversionPlan, Resolve(_conversion_plan)],
                          estimate_only: bool = False) -> Elicit[SpendConfirmation] | str:
    return ask_spend(ctx, plan.test.budget, estimate_only) if plan.test.budget is not None else "not_asked"


@tool_errors
async def test_custom_code(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    call_ids: TestCalls,
    plan: Annotated[CodeTestPlan, Resolve(_test_plan)],
    approval: Annotated[ElicitationResult[SpendConfirmation], Resolve(_ask_test)],
    code: Code = None,
    judge_calls_per_call: PerCall = None,
    confirmation_token: Token = None,
    estimate_only: EstimateOnly = False,
) -> CodeTestReport:
    """Run a metric's custom_code (or a draft) locally on real calls, with the inputs Cekura gives it, in an
    isolated process (time, CPU, memory and output limits, no network, no API key). Per call: the result as
    the metric would show it, the explanation, errors with line numbers, whether `_result`/`_explanation` fit
    the metric's eval_type, and how it compares with the metric's current result. Nothing changes on Cekura;
    only judge calls made by the code cost credits, and they pass the cost guard first."""
    if estimate_only:
        return run_context(ctx).python_metrics.estimate_test(plan)
    return await run_context(ctx).python_metrics.run_test(plan, token=confirmation_token,
                                                   approval=spend_approval(approval))


@tool_errors
async def convert_to_custom_code(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    plan: Annotated[ConversionPlan, Resolve(_conversion_plan)],
    approval: Annotated[ElicitationResult[SpendConfirmation], Resolve(_ask_conversion)],
    agent_id: Annotated[int | None, Field(
        description="The agent whose review session holds the reviewed calls to test on.", ge=1)] = None,
    call_ids: Annotated[list[int] | None, Field(
        description="Calls to test on instead of the reviewed ones.", min_length=1, max_length=MAX_CALLS)] = None,
    gate_metric: Annotated[str | None, Field(
        description="Another metric's name: the draft answers N/A unless its result is in gate_values.",
        max_length=200)] = None,
    gate_values: Annotated[list[str] | None, Field(
        description="Results of gate_metric that let this metric run (binary: TRUE/FALSE, default TRUE).",
        max_length=20)] = None,
    sections: Annotated[list[str] | None, Field(
        description="Agent-description headings (e.g. \"## Booking Flow\"): only these reach the judge.",
        max_length=20)] = None,
    confirmation_token: Token = None,
    estimate_only: EstimateOnly = False,
) -> ConversionProposal:
    """Turn a metric's validated LLM-judge prompt into a custom_code draft in Cekura's published style: code
    passes the judge only the turns the prompt reads, settles the prompt's own N/A rule without a judge call,
    optionally gates on another metric's result and gives the judge only named sections of the agent
    description, turns a judge's VALID_SKIP or a judge error into N/A with the reason, and asks the judge
    with the same prompt. The draft is tested on the reviewed calls (one judge call each, through the cost
    guard) and compared with the judge version's results and the person's verdicts. Nothing is applied: on
    the person's yes, apply it with patch_metric (custom_code + type custom_code), then validate_metric."""
    if estimate_only:
        return run_context(ctx).python_metrics.estimate_conversion(plan)
    return await run_context(ctx).python_metrics.run_conversion(plan, token=confirmation_token,
                                                         approval=spend_approval(approval))
