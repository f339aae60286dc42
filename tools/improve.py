"""Steps 3 and 4 of the labs cycle: auto-improve from the Lab's feedback, then apply on approval."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cekura_labs_mcp.server.cekura.models import Metric, MetricPatch
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.services.improve import ImprovementResult, ImprovementStarted, PatchPreview
from cekura_labs_mcp.server.services.team import describe
from cekura_labs_mcp.tools._common import run_context, tool_errors
from cekura_labs_mcp.tools.steps import name_tools
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from pydantic import BaseModel, Field

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
    items, some of them disagreements. Returns a progress id at once; the run takes a while, so follow with
    poll_progress. Nothing is applied to the metric by this: a proposal only becomes live through apply_proposal."""
    state = run_context(ctx)
    started = await state.improve.start(metric_id=metric_id, test_set_ids=test_set_ids)
    team = state.review.team(metric_id)
    if team is not None:  # a team reviewed this metric: what the people agreed on, before the optimizer learns
        started.used = f"{started.used}; {describe(team)}" if started.used else describe(team)
    return started


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
    the whole proposal: the description as a unified diff, the trigger and its kind, old vs new Lab score (a drop
    is flagged), unresolved samples, and whether it is identical to the current metric (then nothing is applied or
    re-run). If the run pauses with a question, returns it: put it to the person and answer it with
    answer_improvement_question. If it is not done in time, says so; call again to resume."""
    state = run_context(ctx)

    async def progress(fraction: float, message: str) -> None:
        await ctx.report_progress(fraction, 1.0, message)

    return await state.improve.poll(
        progress_id=progress_id, metric_id=metric_id,
        timeout=wait_seconds or state.settings.poll_timeout_seconds, on_progress=progress,
    )


class ApplyConfirmation(BaseModel):
    apply: bool = Field(description="Yes, apply exactly this change to the metric.")


MAX_QUESTION_DIFF = 2000


def _can_ask(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.elicitation is not None


def _question(metric: Metric, diff: str, what: str) -> str:
    shown = diff if len(diff) <= MAX_QUESTION_DIFF else diff[:MAX_QUESTION_DIFF] + "\n… (diff shortened)"
    return (f"{what} metric {metric.id} ({metric.name})? The current version is saved first, so it can be "
            f"restored.\n\n{shown}")


@tool_errors
async def _ask_patch(
    ctx: Context[Any, Any], metric_id: int, description: str | None, custom_code: str | None,
    type: Literal["llm_judge", "custom_code"] | None, confirm: bool,
) -> Elicit[ApplyConfirmation] | str:
    if not confirm or not _can_ask(ctx):
        return "not_asked"
    patch = MetricPatch(description=description, custom_code=custom_code, type=type)
    if not patch.body():
        return "not_asked"  # the tool itself explains what is missing
    metric, diff = await run_context(ctx).improve.preview(metric_id, patch)
    return Elicit(_question(metric, diff, "Apply this change to"), ApplyConfirmation)


@tool_errors
async def _ask_rollback(ctx: Context[Any, Any], metric_id: int, confirm: bool) -> Elicit[ApplyConfirmation] | str:
    if not confirm or not _can_ask(ctx):
        return "not_asked"
    improve = run_context(ctx).improve
    metric, diff = await improve.preview(metric_id, improve.rollback_patch(metric_id))
    return Elicit(_question(metric, diff, "Restore the earlier version of"), ApplyConfirmation)


def _refuse_unless_approved(outcome: ElicitationResult[ApplyConfirmation]) -> None:
    """Where the client can ask the person, the change waits for their own yes, not only the assistant's."""
    if isinstance(outcome, AcceptedElicitation) and (not isinstance(outcome.data, ApplyConfirmation)
                                                     or outcome.data.apply):
        return
    raise LabsError("The person did not approve the change; nothing was applied.",
                    "Ask what they would change, or leave the metric as it is.")


@tool_errors
async def patch_metric(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    approval: Annotated[ElicitationResult[ApplyConfirmation], Resolve(_ask_patch)],
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
    current version in the ledger (so rollback_metric can restore it) and applies the change. Where the client
    supports it, the person is also asked directly, with the diff, before anything is applied."""
    _refuse_unless_approved(approval)
    patch = MetricPatch(description=description, custom_code=custom_code, type=type)
    return await run_context(ctx).improve.patch(metric_id=metric_id, patch=patch, confirm=confirm, reason="patch")


@tool_errors
async def rollback_metric(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    approval: Annotated[ElicitationResult[ApplyConfirmation], Resolve(_ask_rollback)],
    confirm: Annotated[bool, Field(description="false: show what would be restored; true: restore it.")] = False,
) -> PatchPreview:
    """Restore the version of a metric that this server saved before its last patch_metric. Without confirm it
    shows the diff back to that version; with confirm=true it applies it (asking the person directly where the
    client supports it)."""
    _refuse_unless_approved(approval)
    return await run_context(ctx).improve.rollback(metric_id=metric_id, confirm=confirm)


@tool_errors
async def _ask_proposal(ctx: Context[Any, Any], metric_id: int, progress_id: str,
                        decision: Literal["apply", "dismiss"], confirm: bool) -> Elicit[ApplyConfirmation] | str:
    if decision != "apply" or not confirm or not _can_ask(ctx):
        return "not_asked"
    improve = run_context(ctx).improve
    preview = await improve.decide(metric_id=metric_id, progress_id=progress_id, decision="apply", confirm=False,
                                   accept_score_drop=True)
    if not preview.applied and preview.diff == "(no change)":
        return "not_asked"  # identical: nothing will be applied, so nothing to ask
    metric = await run_context(ctx).client.get_metric(metric_id)
    warning = await improve.score_drop_warning(progress_id)
    return Elicit((name_tools(warning) + "\n\n" if warning else "") + _question(metric, preview.diff,
                                                                                "Apply this proposal to"),
                  ApplyConfirmation)


@tool_errors
async def apply_proposal(
    ctx: Context[Any, Any],
    metric_id: MetricId,
    progress_id: Annotated[str, Field(description="The finished auto-improve run.", min_length=1, max_length=100)],
    approval: Annotated[ElicitationResult[ApplyConfirmation], Resolve(_ask_proposal)],
    decision: Annotated[Literal["apply", "dismiss"], Field(
        description="apply the proposal, or dismiss it (the metric stays as it is).")] = "apply",
    confirm: Annotated[bool, Field(description="false (default): only show what would change. true: apply it - "
                                               "only after the person approved this exact change.")] = False,
    accept_score_drop: Annotated[bool, Field(
        description="Only when the person explicitly said yes to a proposal the Lab scores LOWER.")] = False,
) -> PatchPreview:
    """Apply or dismiss a finished auto-improve proposal (description, custom_code, trigger) exactly as shown. An
    identical proposal is never applied (nothing to re-run either). A proposal the Lab scores lower is refused
    unless the person explicitly accepts the drop. The current version is saved first (rollback_metric restores
    it); Cekura's own apply is used where the deployment has it, a PATCH otherwise. Where the client supports it,
    the person is asked directly, with the diff and any score drop."""
    asked = isinstance(approval, AcceptedElicitation) and isinstance(approval.data, ApplyConfirmation)
    if decision == "apply" and confirm:
        _refuse_unless_approved(approval)
    return await run_context(ctx).improve.decide(metric_id=metric_id, progress_id=progress_id, decision=decision,
                                          confirm=confirm, accept_score_drop=accept_score_drop or asked)


class QuestionReply(BaseModel):
    answer: str = Field(default="", description="Your answer to the optimizer's question.")
    skip: bool = Field(default=False, description="Skip it: let the optimizer decide without your answer.")


@tool_errors
async def _ask_question(ctx: Context[Any, Any], progress_id: str, question_id: str | None, answer: str | None,
                        skip: bool) -> Elicit[QuestionReply] | str:
    if skip or (answer or "").strip() or not _can_ask(ctx):
        return "not_asked"
    asked = await run_context(ctx).improve.question(progress_id, question_id)
    options = f"\nOptions: {', '.join(asked.options)}" if asked.options else ""
    context = f"\n\nThe sample (call text, shown as data):\n{asked.context[:1500]}" if asked.context else ""
    return Elicit(f"Cekura's auto-improve asks: {asked.text}{options}{context}", QuestionReply)


@tool_errors
async def answer_improvement_question(
    ctx: Context[Any, Any],
    progress_id: Annotated[str, Field(description="The paused auto-improve run.", min_length=1, max_length=100)],
    reply: Annotated[ElicitationResult[QuestionReply], Resolve(_ask_question)],
    question_id: Annotated[str | None, Field(description="The question (default: the first one asked).",
                                             max_length=200)] = None,
    answer: Annotated[str | None, Field(description="The person's answer, in their words.", max_length=4000)] = None,
    skip: Annotated[bool, Field(description="The person would rather not decide: skip the question.")] = False,
    metric_id: Annotated[int | None, Field(description="The metric, to diff the proposal against.", ge=1)] = None,
) -> ImprovementResult:
    """Answer (or skip) the question a paused auto-improve run asks, then keep waiting for it like poll_progress.
    Without an answer, where the client supports it, the question is put to the person directly."""
    if isinstance(reply, AcceptedElicitation) and isinstance(reply.data, QuestionReply):
        answer, skip = reply.data.answer, reply.data.skip or not reply.data.answer.strip()
    elif not isinstance(reply, AcceptedElicitation):
        raise LabsError("The person closed the question without answering; nothing was sent.",
                        "Ask again later, skip it (skip=true), or cancel the run (cancel_improvement).")
    state = run_context(ctx)

    async def progress(fraction: float, message: str) -> None:
        await ctx.report_progress(fraction, 1.0, message)

    return await state.improve.answer(progress_id=progress_id, question_id=question_id, answer=answer, skip=skip,
                                      metric_id=metric_id, timeout=state.settings.poll_timeout_seconds,
                                      on_progress=progress)


@tool_errors
async def cancel_improvement(
    ctx: Context[Any, Any],
    progress_id: Annotated[str, Field(description="The auto-improve run to stop.", min_length=1, max_length=100)],
    metric_id: Annotated[int | None, Field(description="The metric it improves.", ge=1)] = None,
) -> ImprovementResult:
    """Stop a running (or paused) auto-improve run: nothing it proposed is applied. Use it when the person wants to
    correct a Lab label a question exposed, then start again."""
    return await run_context(ctx).improve.cancel(progress_id=progress_id, metric_id=metric_id)
