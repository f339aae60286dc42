"""The cost guard: the server, not the prompt, decides whether an evaluation may spend credits.

Rules:
1. Count before evaluate: a spend is planned over an exact, resolved set of calls (`SpendPlan`),
   counted by the server itself. An empty set never opens the guard.
2. Confirm above the threshold (default 100 calls): nothing is spent until the person confirms,
   through MCP elicitation where the client supports it, otherwise with a single-use token bound
   to exactly that plan and valid for a few minutes.
3. No splitting around it: calls this server allowed in a rolling window (default one hour,
   kept in the ledger, so a restart does not reset it) are added before the threshold is applied.
4. Every decision, refusals included, is written to the audit log before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.state import Ledger, SpendRecord

Approval = Literal["not_asked", "accepted", "declined", "cancelled"]


@dataclass(frozen=True)
class SpendPlan:
    """Exactly what an evaluation will spend, as counted by the server."""

    operation: str
    agent_id: int | None
    project_id: int | None
    call_ids: tuple[int, ...]
    judge_metric_ids: tuple[int, ...]
    code_metric_ids: tuple[int, ...]
    credits: float

    @property
    def call_count(self) -> int:
        return len(self.call_ids)

    @property
    def fingerprint(self) -> str:
        payload = json.dumps(
            [self.operation, self.agent_id, self.project_id, sorted(self.call_ids),
             sorted(self.judge_metric_ids + self.code_metric_ids)],
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def describe(self) -> str:
        scope = f"agent {self.agent_id}" if self.agent_id is not None else f"project {self.project_id}"
        return (
            f"{self.operation} on {self.call_count} call(s) of {scope}: every metric assigned to those "
            f"calls runs ({len(self.judge_metric_ids)} LLM-judge, {len(self.code_metric_ids)} custom_code), "
            f"about {self.credits:g} credits"
        )


class GuardRefusal(LabsError):
    code = "guard_refused"


class ConfirmationRequired(LabsError):
    """Not an error of the caller: the answer that carries the figures and the token."""

    code = "confirmation_required"

    def __init__(self, plan: SpendPlan, window_total: int, threshold: int, token: str, ttl: int) -> None:
        self.plan = plan
        self.window_total = window_total
        self.token = token
        self.ttl = ttl
        why = (
            f"{plan.call_count} calls is above the limit of {threshold}"
            if plan.call_count > threshold
            else f"this server already evaluated {window_total} calls in the current window, and "
            f"{window_total + plan.call_count} would pass the limit of {threshold}"
        )
        super().__init__(
            f"Confirmation required: {plan.describe()}. Nothing was spent: {why}.",
            f"Ask the person whether to spend this. Only if they say yes, call the same tool again with the "
            f"same arguments and confirmation_token=\"{token}\" (single use, valid {ttl} s, only for exactly "
            "this set of calls).",
        )


@dataclass
class _Token:
    fingerprint: str
    expires_at: float


@dataclass
class GuardDecision:
    audit_id: int
    confirmation: str
    window_total: int


@dataclass
class CostGuard:
    ledger: Ledger
    threshold: int = 100
    window_seconds: int = 3600
    token_ttl_seconds: int = 300
    clock: Callable[[], float] = time.time
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    def window_total(self) -> int:
        return self.ledger.calls_allowed_since(self.clock() - self.window_seconds)

    def needs_confirmation(self, plan: SpendPlan) -> bool:
        return plan.call_count > self.threshold or self.window_total() + plan.call_count > self.threshold

    def confirmation_question(self, plan: SpendPlan) -> str:
        return (
            f"Cekura will charge credits for this. {plan.describe()}. This server already evaluated "
            f"{self.window_total()} call(s) in the last {self.window_seconds // 60} min. Spend it?"
        )

    async def authorize(self, plan: SpendPlan, *, token: str | None, approval: Approval) -> GuardDecision:
        """Allow the plan or raise. An allowed plan is in the audit log (outcome `pending`) before
        this returns, so two concurrent spends cannot both slip under the threshold."""
        async with self._lock:
            if plan.call_count == 0:
                self._refuse(plan, "no calls matched, so there is nothing to evaluate")
            window_total = self.window_total()
            if approval in ("declined", "cancelled"):
                self._refuse(plan, f"the person {approval} the confirmation")
            confirmation = "none"
            if plan.call_count > self.threshold or window_total + plan.call_count > self.threshold:
                confirmation = self._confirmation(plan, token, approval, window_total)
            elif token:
                # A token is never needed here; still burn it so it cannot be kept for later.
                self._tokens.pop(token, None)
            audit_id = self.ledger.record_spend(self._record(plan, "allowed", confirmation, "pending"), at=self.clock())
            return GuardDecision(audit_id=audit_id, confirmation=confirmation, window_total=window_total)

    def finish(self, decision: GuardDecision, outcome: str, detail: str = "") -> None:
        self.ledger.set_spend_outcome(decision.audit_id, outcome, detail)

    def _confirmation(self, plan: SpendPlan, token: str | None, approval: Approval, window_total: int) -> str:
        if approval == "accepted":
            return "elicitation"
        if token:
            self._redeem(plan, token)
            return "token"
        issued = secrets.token_urlsafe(12)
        self._tokens[issued] = _Token(plan.fingerprint, self.clock() + self.token_ttl_seconds)
        self.ledger.record_spend(self._record(plan, "needs_confirmation", "none", "not_sent"), at=self.clock())
        raise ConfirmationRequired(plan, window_total, self.threshold, issued, self.token_ttl_seconds)

    def _redeem(self, plan: SpendPlan, token: str) -> None:
        entry = self._tokens.pop(token, None)
        if entry is None:
            self._refuse(plan, "the confirmation token is unknown or was already used (tokens are single use)")
        elif entry.expires_at < self.clock():
            self._refuse(plan, "the confirmation token has expired")
        elif entry.fingerprint != plan.fingerprint:
            self._refuse(plan, "the confirmation token was issued for a different set of calls or metrics")

    def _refuse(self, plan: SpendPlan, reason: str) -> None:
        self.ledger.record_spend(self._record(plan, "refused", "none", "not_sent", reason), at=self.clock())
        raise GuardRefusal(
            f"Not evaluated: {reason}. Nothing was spent.",
            "Call the tool again without a token to get the current count and a fresh confirmation."
            if "token" in reason
            else "Check the call selection (list_calls shows what matches).",
        )

    @staticmethod
    def _record(plan: SpendPlan, decision: str, confirmation: str, outcome: str, detail: str = "") -> SpendRecord:
        return SpendRecord(
            operation=plan.operation, agent_id=plan.agent_id, project_id=plan.project_id,
            call_ids=plan.call_ids, metric_ids=plan.judge_metric_ids + plan.code_metric_ids,
            credits_estimated=plan.credits, decision=decision, confirmation=confirmation,
            outcome=outcome, detail=detail,
        )


def estimate_credits(call_metric_counts: Sequence[int], credits_per_evaluation: float) -> float:
    """Credits for evaluating each call with its number of LLM-judge metrics."""
    return round(sum(call_metric_counts) * credits_per_evaluation, 4)
