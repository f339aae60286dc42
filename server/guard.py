"""The cost guard: the server, not the prompt, decides whether an evaluation may spend credits.

Rules:
1. Count before evaluate: a spend is planned over an exact, resolved set of calls (`SpendPlan`),
   counted by the server itself, with the credits each metric that will run costs. An empty set
   never opens the guard.
2. Confirm above the threshold: more than 100 calls, OR more credits than 100 calls of that agent
   would cost (so a judge loop in Python code counts, not only calls). Nothing is spent until the
   person confirms, through MCP elicitation where the client supports it, otherwise with a
   single-use token bound to exactly that plan (and to the client that asked), valid a few minutes.
3. No splitting around it: calls and credits allowed in a rolling window (default one hour, kept
   in the ledger, shared by every process and reviewer on the same ledger: the organisation's) are added
   before the threshold is applied. The window is read, a confirmation token redeemed and the allowance
   written in ONE exclusive ledger transaction (SQLite: `BEGIN IMMEDIATE`, the database file's lock;
   PostgreSQL: `pg_advisory_xact_lock`), so two processes, even on two hosts, cannot both slip under it.
4. Every decision, refusals included, is written to the audit log before anything is sent.
5. The client's spending methods take a `SpendPermit`, which only `CostGuard.authorize` mints:
   a spend that did not pass the guard does not type-check, and is refused at run time too.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from cekura_labs_mcp.server.errors import LabsError, OutcomeUnknownError
from cekura_labs_mcp.server.ledger import Ledger, SpendBook, SpendRecord, Window, owner
from cekura_labs_mcp.server.steps import Step

Approval = Literal["not_asked", "accepted", "declined", "cancelled"]
# The client methods that spend, each named after the Cekura endpoint it posts to.
Endpoint = Literal["rerun_evaluation", "evaluate_metrics", "evaluate_llm_judge_metric"]
ENDPOINTS: tuple[Endpoint, ...] = ("rerun_evaluation", "evaluate_metrics", "evaluate_llm_judge_metric")


@dataclass(frozen=True)
class PlannedMetric:
    """A metric that will run, and what one evaluation of it costs (Cekura's `metric_cost`, or the
    configured fallback when the metric does not say)."""

    id: int
    name: str
    credits: float
    cost_known: bool = True


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
    # What one call of this agent costs with all its metrics: the credit limit is `threshold` of them.
    credits_per_call: float = 0.0
    metrics: tuple[PlannedMetric, ...] = ()
    credits_remaining: float | None = None
    endpoint: Endpoint | None = None
    # How many spending requests the plan may send (a judge budget: calls x judge calls per call).
    requests: int = 1

    @property
    def call_count(self) -> int:
        return len(self.call_ids)

    @property
    def sends(self) -> Endpoint:
        if self.endpoint is not None:
            return self.endpoint
        if self.operation in ENDPOINTS:
            return self.operation
        return "evaluate_llm_judge_metric"

    @property
    def fingerprint(self) -> str:
        payload = json.dumps(
            [self.operation, self.agent_id, self.project_id, sorted(self.call_ids),
             sorted(self.judge_metric_ids + self.code_metric_ids), self.requests],
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def describe(self) -> str:
        scope = f"agent {self.agent_id}" if self.agent_id is not None else f"project {self.project_id}"
        return (
            f"{self.operation} on {self.call_count} call(s) of {scope}: every metric assigned to those "
            f"calls runs ({len(self.judge_metric_ids)} LLM-judge, {len(self.code_metric_ids)} custom_code), "
            f"about {self.credits:g} credits{remaining_text(self.credits_remaining)}"
        )


def remaining_text(credits_remaining: float | None) -> str:
    if credits_remaining is None:
        return " (credits remaining: unknown, billing info did not answer)"
    return f" (credits remaining: {credits_remaining:g})"


class GuardRefusal(LabsError):
    code = "guard_refused"


class ConfirmationRequired(LabsError):
    """Not an error of the caller: the answer that carries the figures and the token."""

    code = "confirmation_required"

    def __init__(self, plan: SpendPlan, why: str, token: str, ttl: int) -> None:
        self.plan = plan
        self.token = token
        self.ttl = ttl
        super().__init__(
            f"Confirmation required: {plan.describe()}. Nothing was spent: {why}.",
            f"Show the person these figures and ask whether to spend this. Only if they say yes, call the same "
            f"tool again with the same arguments and confirmation_token=\"{token}\" (single use, valid {ttl} s, "
            "only for exactly this set of calls).",
        )


_MINT = object()


class SpendPermit:
    """Proof that the guard allowed one plan. Only `CostGuard.authorize` makes one (the constructor
    refuses anything else); the client's spending methods require one and `use` it before sending, so a
    request outside the plan (other calls, another endpoint, more requests than allowed) never leaves."""

    __slots__ = ("_left", "_lock", "audit_id", "call_ids", "confirmation", "endpoint", "window")

    def __init__(self, mint: object, *, audit_id: int, confirmation: str, window: Window, endpoint: Endpoint,
                 call_ids: Collection[int], requests: int) -> None:
        if mint is not _MINT:
            raise TypeError("only the cost guard issues spend permits (CostGuard.authorize)")
        self.audit_id = audit_id
        self.confirmation = confirmation
        self.window = window
        self.endpoint = endpoint
        self.call_ids = frozenset(call_ids)
        self._left = requests
        self._lock = threading.Lock()

    @property
    def requests_left(self) -> int:
        return self._left

    def use(self, endpoint: Endpoint, call_ids: Collection[int] = ()) -> None:
        """Spend one request of the permit on `endpoint` for `call_ids`, or refuse before anything is sent."""
        if endpoint != self.endpoint:
            raise GuardRefusal(f"Not sent: the cost guard allowed {self.endpoint}, not {endpoint}. Nothing was spent.")
        outside = set(call_ids) - self.call_ids
        if outside:
            raise GuardRefusal(f"Not sent: {len(outside)} call(s) were not in the set the cost guard counted. "
                               "Nothing was spent.")
        with self._lock:
            if self._left <= 0:
                raise GuardRefusal("Not sent: the spend the cost guard allowed is used up. Nothing more was spent.")
            self._left -= 1


# Kept as the name the services already use for what `authorize` returns.
GuardDecision = SpendPermit


@dataclass(frozen=True)
class _Verdict:
    allowed: SpendPermit | None = None
    refusal: str | None = None
    confirm: tuple[str, str] | None = None  # (why, token)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class CostGuard:
    ledger: Ledger
    threshold: int = 100
    window_seconds: int = 3600
    token_ttl_seconds: int = 300
    # The least a call is taken to cost when an agent's metrics say less (or nothing): the credit limit
    # is never below `threshold` LLM-judge evaluations at the configured price.
    fallback_credits_per_call: float = 0.2
    # None: the ledger's clock, the database server's on PostgreSQL, so hosts whose clocks disagree still share one
    # window (a test may set its own).
    clock: Callable[[], float] | None = None

    def now(self) -> float:
        return self.clock() if self.clock is not None else self.ledger.now()

    def window(self) -> Window:
        return self.ledger.window_since(self.now() - self.window_seconds)

    def window_total(self) -> int:
        return self.window().calls

    def credit_limit(self, plan: SpendPlan) -> float:
        return round(self.threshold * max(plan.credits_per_call, self.fallback_credits_per_call), 4)

    def over_limit(self, plan: SpendPlan, window: Window) -> str | None:
        """Why this plan needs the person's yes on top of `window`, or None when it does not."""
        limit = self.credit_limit(plan)
        if plan.call_count > self.threshold:
            return f"{plan.call_count} calls is above the limit of {self.threshold}"
        if plan.credits > limit:
            return (f"{plan.credits:g} credits is above the limit of {limit:g} (what {self.threshold} calls of this "
                    "agent would cost)")
        if window.calls + plan.call_count > self.threshold:
            return (f"this server already evaluated {window.calls} calls in the current window, and "
                    f"{window.calls + plan.call_count} would pass the limit of {self.threshold}")
        if window.credits + plan.credits > limit:
            return (f"this server already spent about {window.credits:g} credits in the current window, and "
                    f"{window.credits + plan.credits:g} would pass the limit of {limit:g}")
        return None

    def needs_confirmation(self, plan: SpendPlan) -> bool:
        return self.over_limit(plan, self.window()) is not None

    def confirmation_question(self, plan: SpendPlan) -> str:
        window = self.window()
        return (
            f"Cekura will charge credits for this. {plan.describe()}. This server already evaluated "
            f"{window.calls} call(s) (about {window.credits:g} credits) in the last {self.window_seconds // 60} min. "
            "Spend it?"
        )

    async def authorize(self, plan: SpendPlan, *, token: str | None, approval: Approval) -> SpendPermit:
        """Allow the plan (a permit) or raise. The window is read and the allowance (audit outcome
        `pending`) written in one transaction that holds the ledger's write lock, so no other process
        or task can decide in between."""
        with self.ledger.spend_transaction() as book:
            now = self.clock() if self.clock is not None else book.now()
            verdict = self._decide(book, plan, token, approval, now)
        if verdict.allowed is not None:
            return verdict.allowed
        if verdict.confirm is not None:
            why, issued = verdict.confirm
            raise ConfirmationRequired(plan, why, issued, self.token_ttl_seconds)
        reason = verdict.refusal or "refused"
        raise GuardRefusal(
            f"Not evaluated: {reason}. Nothing was spent.",
            "Call the tool again without a token to get the current count and a fresh confirmation."
            if "token" in reason
            else f"Check the call selection ({Step.LIST_CALLS} shows what matches).",
        )

    def _decide(self, book: SpendBook, plan: SpendPlan, token: str | None, approval: Approval,
                now: float) -> _Verdict:
        if plan.call_count == 0:
            return self._refuse(book, plan, now, "no calls matched, so there is nothing to evaluate")
        if approval in ("declined", "cancelled"):
            return self._refuse(book, plan, now, f"the person {approval} the confirmation")
        window = book.window(now - self.window_seconds)
        confirmation = "none"
        why = self.over_limit(plan, window)
        if why is not None:
            if approval == "accepted":
                confirmation = "elicitation"
            elif token:
                problem = self._redeem(book, plan, token, now)
                if problem:
                    return self._refuse(book, plan, now, problem)
                confirmation = "token"
            else:
                issued = secrets.token_urlsafe(12)
                book.issue_token(_digest(issued), owner(), plan.fingerprint, now + self.token_ttl_seconds)
                book.record(self._record(plan, "needs_confirmation", "none", "not_sent", why), now)
                return _Verdict(confirm=(why, issued))
        elif token:
            # A token is never needed here; still burn it so it cannot be kept for later.
            book.take_token(_digest(token), owner())
        audit_id = book.record(self._record(plan, "allowed", confirmation, "pending"), now)
        permit = SpendPermit(_MINT, audit_id=audit_id, confirmation=confirmation, window=window,
                             endpoint=plan.sends, call_ids=plan.call_ids, requests=plan.requests)
        return _Verdict(allowed=permit)

    def finish(self, permit: SpendPermit, outcome: str, detail: str = "") -> None:
        self.ledger.set_spend_outcome(permit.audit_id, outcome, detail)

    def _redeem(self, book: SpendBook, plan: SpendPlan, token: str, now: float) -> str | None:
        entry = book.take_token(_digest(token), owner())
        if entry is None:
            return "the confirmation token is unknown or was already used (tokens are single use)"
        if entry.expires_at < now:
            return "the confirmation token has expired"
        if entry.fingerprint != plan.fingerprint:
            return "the confirmation token was issued for a different set of calls or metrics"
        return None

    def _refuse(self, book: SpendBook, plan: SpendPlan, now: float, reason: str) -> _Verdict:
        book.record(self._record(plan, "refused", "none", "not_sent", reason), now)
        return _Verdict(refusal=reason)

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


# ---- auto-improve (process_feedbacks): in the spend log, one run per metric and Lab set at a time ----------


class AutoImproveClaim:
    """The right to start one auto-improve run for one metric and Lab set: only `AutoImproveRuns.start`
    makes one, and the client's `process_feedbacks` requires it, so no start bypasses the log or the
    de-duplication."""

    __slots__ = ("_used", "audit_id", "metric_id", "test_set_ids")

    def __init__(self, mint: object, *, audit_id: int, metric_id: int, test_set_ids: tuple[int, ...]) -> None:
        if mint is not _MINT:
            raise TypeError("only the auto-improve log issues claims (AutoImproveRuns.start)")
        self.audit_id = audit_id
        self.metric_id = metric_id
        self.test_set_ids = test_set_ids
        self._used = False

    def use(self, metric_id: int, test_set_ids: Sequence[int] | None) -> None:
        if (metric_id, tuple(sorted(set(test_set_ids or ())))) != (self.metric_id, self.test_set_ids):
            raise GuardRefusal("Not sent: this auto-improve claim is for another metric or Lab set.")
        if self._used:
            raise GuardRefusal("Not sent: this auto-improve claim was already used.")
        self._used = True


@dataclass(frozen=True)
class AutoImproveStart:
    progress_id: str
    already_running: bool


def auto_improve_subject(metric_id: int, test_set_ids: Sequence[int] | None) -> str:
    sets = sorted(set(test_set_ids or ()))
    return f"metric {metric_id}; lab {','.join(map(str, sets)) if sets else 'all'}"


@dataclass
class AutoImproveRuns:
    """`process_feedbacks` starts, logged like every spend. A second start for the same metric and Lab set
    while one runs (checked on Cekura) returns the running one instead of starting another; the check and
    the claim are one ledger transaction, so two processes cannot both start."""

    ledger: Ledger
    clock: Callable[[], float] | None = None  # None: the ledger's clock (the database server's on PostgreSQL)
    # A start whose answer has not come back yet (another process is sending it) is trusted this long;
    # older, it is taken for a start that crashed before it was answered.
    in_flight_seconds: float = 120.0

    async def start(
        self, *, metric_id: int, test_set_ids: Sequence[int] | None,
        begin: Callable[[AutoImproveClaim], Awaitable[str]], running: Callable[[str], Awaitable[bool]],
    ) -> AutoImproveStart:
        subject = auto_improve_subject(metric_id, test_set_ids)
        sets = tuple(sorted(set(test_set_ids or ())))
        for _ in range(3):
            found = self.ledger.claim_run(subject, metric_id, sets, now=self.clock() if self.clock else None,
                                          in_flight_seconds=self.in_flight_seconds)
            if found.progress_id is None and found.claimed:
                break
            if found.progress_id is None:
                raise GuardRefusal(
                    f"An auto-improve start for {subject} is being sent right now (by this or another session).",
                    f"Wait a moment and look at {Step.SPEND_LOG} for its progress id, then "
                    f"{Step.WAIT_FOR_IMPROVEMENT} it.")
            if await running(found.progress_id):
                return AutoImproveStart(found.progress_id, already_running=True)
            self.ledger.set_spend_outcome(found.audit_id, "finished", found.progress_id)
        else:
            raise GuardRefusal(f"Could not claim the auto-improve start for {subject}.", "Try again.")
        claim = AutoImproveClaim(_MINT, audit_id=found.audit_id, metric_id=metric_id, test_set_ids=sets)
        try:
            progress_id = await begin(claim)
        except OutcomeUnknownError as exc:
            self.ledger.set_spend_outcome(found.audit_id, "unknown", exc.message)
            raise
        except BaseException as exc:
            self.ledger.set_spend_outcome(found.audit_id, "rejected", getattr(exc, "message", type(exc).__name__))
            raise
        self.ledger.set_spend_outcome(found.audit_id, "running", progress_id)
        return AutoImproveStart(progress_id, already_running=False)
