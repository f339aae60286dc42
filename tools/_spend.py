"""What every spending tool shares (evaluate, validate, Python metrics): the estimate and token arguments, and
asking the person for their yes through elicitation where the client can. In its own module so that no tool
module imports another."""

from __future__ import annotations

from typing import Annotated, Any

from cekura_labs_mcp.server.guard import Approval, SpendPlan
from cekura_labs_mcp.tools._common import run_context
from cekura_labs_mcp.tools.steps import name_tools
from mcp.server.mcpserver import AcceptedElicitation, Context, DeclinedElicitation, Elicit, ElicitationResult
from pydantic import BaseModel, Field

Token = Annotated[str | None, Field(
    description="Only when a previous answer said confirmation is required AND the person said yes: the token "
                "it gave.", max_length=100)]
EstimateOnly = Annotated[bool, Field(
    description="true: spend nothing; answer the exact calls counted, the metrics that will run, the credits and the "
                "credits remaining. Show that to the person before any spend.")]


class SpendConfirmation(BaseModel):
    confirm: bool = Field(description="Yes, spend the credits for exactly these calls.")


def ask_spend(ctx: Context[Any, Any], plan: SpendPlan, estimate_only: bool = False) -> Elicit[SpendConfirmation] | str:
    """The person's yes, asked directly where the client can (an estimate asks nothing: it spends nothing)."""
    guard = run_context(ctx).guard
    caps = ctx.client_capabilities
    can_ask = caps is not None and caps.elicitation is not None
    if not estimate_only and plan.call_count > 0 and can_ask and guard.needs_confirmation(plan):
        return Elicit(name_tools(guard.confirmation_question(plan)), SpendConfirmation)
    return "not_asked"


def spend_approval(outcome: ElicitationResult[SpendConfirmation]) -> Approval:
    if isinstance(outcome, AcceptedElicitation):
        if isinstance(outcome.data, SpendConfirmation):
            return "accepted" if outcome.data.confirm else "declined"
        return "not_asked"
    return "declined" if isinstance(outcome, DeclinedElicitation) else "cancelled"
