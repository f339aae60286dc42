"""Validation that proves something: Cekura's Metric Lab regression check, done in conversation.

A check re-evaluates two groups of calls with the changed metric, in one spend behind the cost guard:
- the calls the person reviewed (the Lab the optimizer fitted to), scored against the person's labels;
- a fresh sample of recent calls the metric already scored in production, excluding every call in the
  Lab (and every call marked reviewed, and every call an earlier check used), which no optimizer saw.

Evaluation is asynchronous in Cekura, so "after" values are read only once each call has provably moved
past the mark taken just before the spend (`freshness`). When that takes longer than the client waits, the
check is left "evaluating" in the ledger and `validate_metric` resumes it without spending again.

Fresh-sample results that changed go to the person one at a time: the new label is right (a fix) or wrong
(a regression, with the right label); N/A <-> applicable is flagged as an applicability flip. Rejected
regressions are grouped by failure mode, and a representative few are proposed as new Lab entries, added
only on the person's confirmation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric, MetricFeedback, MetricResult
from cekura_labs_mcp.server.cekura.results import read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import InputError, LabsError, OutcomeUnknownError
from cekura_labs_mcp.server.guard import Approval, SpendPlan
from cekura_labs_mcp.server.ledger import Ledger, Session
from cekura_labs_mcp.server.presenting import explanation_text, one_line
from cekura_labs_mcp.server.services.analysis import agreement, cluster_explanations, confusion
from cekura_labs_mcp.server.services.freshness import Mark, is_fresh, is_reset, mark_of, read_calls
from cekura_labs_mcp.server.services.review import reviewed_calls
from cekura_labs_mcp.server.services.spend import CallSelection, SpendEstimate, SpendService, start_auto_improve
from cekura_labs_mcp.server.steps import Step
from cekura_labs_mcp.server.values import NA, display, expected_from_input
from pydantic import BaseModel, Field

ProgressCallback = Callable[[float, str], Awaitable[None]]
OPERATION: Literal["evaluate_metrics"] = "evaluate_metrics"
EXPLANATION_CHARS = 240
RECENT_PAGE = 200
PICKS_PER_GROUP = 2


# ---- the check as kept in the ledger -------------------------------------------------------------

class Seen(BaseModel):
    """One result of the metric on one call, as read."""

    value: str
    explanation: str = ""


class CheckCall(BaseModel):
    call_id: int
    group: Literal["reviewed", "fresh"]
    expected: str | None = Field(default=None, description="The person's label (reviewed calls).")
    before: Seen
    base: Mark
    reset: Mark | None = None
    after: Seen | None = None
    verdict: Literal["fixed", "regression"] | None = None
    right_value: str | None = None
    note: str = ""
    test_set_id: int | None = None


class CheckState(BaseModel):
    metric_id: int
    metric_name: str
    agent_id: int
    fingerprint: str
    status: Literal["spending", "evaluating", "judging", "done"]
    spent_at: float = 0.0
    credits_estimated: float = 0.0
    confirmation: str = "none"
    outcome_unknown: bool = False
    polls: int = 0
    calls: list[CheckCall]
    not_evaluated: list[int] = Field(default_factory=list)
    lab_progress_id: str | None = None

    def group(self, name: str) -> list[CheckCall]:
        return [c for c in self.calls if c.group == name]

    def changed(self) -> list[CheckCall]:
        return [c for c in self.group("fresh") if c.after is not None and c.after.value != c.before.value]

    def waiting(self) -> list[CheckCall]:
        return [c for c in self.calls if c.after is None and c.call_id not in self.not_evaluated]


# ---- what the tools answer -----------------------------------------------------------------------

class Scores(BaseModel):
    agreement: float = Field(description="Share of calls where the metric matches the person.")
    kappa: float = Field(description="Cohen's kappa between the metric and the person.")
    matrix: dict[str, dict[str, int]] = Field(description="Rows: the person's value; columns: the metric's.")


class Change(BaseModel):
    call_id: int
    expected: str
    before: str
    after: str


class FixedCall(Change):
    explanation_before: str
    explanation_after: str


class GroupReport(BaseModel):
    calls: int
    before: Scores
    after: Scores
    fixed: list[FixedCall] = Field(description="Was wrong, now right: the judge's explanations side by side.")
    regressed: list[Change] = Field(description="Was right, now wrong.")
    still_wrong: list[Change]
    unchanged_right: int


class ChangeToJudge(BaseModel):
    call_id: int
    before: str = Field(description="What production said.")
    after: str = Field(description="What the changed metric says now.")
    applicability_flip: bool = Field(description="N/A <-> applicable: the relevance condition moved.")
    explanation_before: str
    explanation_after: str
    remaining: int = Field(description="Changed results still to judge after this one.")
    question: str


class FreshReport(BaseModel):
    calls: int = Field(description="Recent calls outside the Lab that were re-evaluated.")
    changed: int
    applicability_flips: int
    judged: int
    fixed: list[FixedCall] = Field(description="The person says the new label is right: the judge's "
                                   "explanations before and after, side by side.")
    regressed: list[Change] = Field(description="The person says the new label is wrong.")
    still_wrong: list[Change] = Field(description="Changed, but neither label is what the person says.")
    basis: str
    before: Scores | None = None
    after: Scores | None = None


class RegressionGroup(BaseModel):
    failure_mode: str
    call_ids: list[int]
    proposed: list[int] = Field(description="A representative subset, pre-selected for the Lab.")


class RegressionCheck(BaseModel):
    check_id: int
    metric: str
    status: Literal["evaluating", "judging", "done", "estimate"] = Field(
        description=f"evaluating: Cekura is still evaluating (call {Step.REGRESSION_CHECK} with check_id to resume, "
                    "nothing is spent again); judging: changed fresh results wait for the person; done; "
                    "estimate: estimate_only, nothing was run or spent.")
    message: str
    credits_estimated: float
    confirmation: str
    waiting_for: int = Field(description="Calls whose new results have not arrived yet.")
    not_evaluated: list[int] = Field(default_factory=list, description="Gave up waiting for these calls.")
    reviewed: GroupReport | None = None
    fresh: FreshReport | None = None
    next_change: ChangeToJudge | None = None
    regression_groups: list[RegressionGroup] = Field(default_factory=list)
    verdict: str = ""
    estimate: SpendEstimate | None = Field(default=None, description="With estimate_only: what the check would "
                                                                     "re-evaluate and cost.")


class LabProposal(BaseModel):
    check_id: int
    applied: bool
    entries: list[dict[str, Any]] = Field(description="call_id, expected value, feedback (and test_set_id once "
                                          "added).")
    message: str
    progress_id: str | None = Field(default=None, description="The re-optimisation run, if one was started.")


# ---- the service ---------------------------------------------------------------------------------

class ValidationService:
    def __init__(self, client: CekuraClient, ledger: Ledger, spend: SpendService, settings: Settings) -> None:
        self._client = client
        self._ledger = ledger
        self._spend = spend
        self._settings = settings

    # -- planning (runs before the tool body, and before the guard asks anyone) --

    async def plan(self, *, agent_id: int, metric_id: int, check_id: int | None, fresh_sample: int,
                   restart: bool) -> SpendPlan:
        session = self._session(metric_id, agent_id)
        if self._resumable(session, check_id, restart) is not None:
            return _nothing(agent_id)
        metric = await self._client.get_metric(metric_id)
        if self._unchanged_since(session, metric, restart) is not None:
            return _nothing(agent_id)
        self._refuse_if_nothing_changed(session, metric)
        reviewed = self._reviewed_ids(session)
        if not reviewed:
            raise InputError("metric_id", "no call of this metric has been reviewed in the session yet.",
                             f"Review calls first ({Step.NEXT_CALL_TO_REVIEW} / {Step.RECORD_VERDICT}); validation "
                             "re-runs those.")
        fresh = await self._fresh_sample(session, metric, fresh_sample)
        chosen = CallSelection(call_ids=sorted(set(reviewed) | set(fresh)))
        return await self._spend.plan(OPERATION, agent_id=agent_id, project_id=None, chosen=chosen)

    # -- the check --

    async def estimate(self, plan: SpendPlan, *, metric_id: int) -> RegressionCheck:
        """estimate_only: the exact calls the check would re-evaluate, the metrics, credits and balance."""
        metric = await self._client.get_metric(metric_id)
        figures = self._spend.estimate(plan)
        message = (f"Estimate only, nothing was spent: re-evaluating {figures.calls} call(s) would cost about "
                   f"{figures.credits:g} credits." if plan.call_ids else
                   "Estimate only: this would resume a check or find nothing changed, so nothing would be spent.")
        return RegressionCheck(check_id=0, metric=f"{metric_id}: {metric.name}", status="estimate", message=message,
                               credits_estimated=plan.credits, confirmation="not_sent", waiting_for=0,
                               estimate=figures)

    async def run(self, plan: SpendPlan, *, metric_id: int, check_id: int | None, token: str | None,
                  approval: Approval, restart: bool, on_progress: ProgressCallback) -> RegressionCheck:
        deadline = time.monotonic() + self._settings.poll_timeout_seconds
        assert plan.agent_id is not None
        session = self._session(metric_id, plan.agent_id)
        pending = self._resumable(session, check_id, restart)
        if pending is not None:
            found_id, state = pending
            return await self._advance(found_id, state, deadline, on_progress, resumed=True)
        metric = await self._client.get_metric(metric_id)
        earlier = self._unchanged_since(session, metric, restart)
        if earlier is not None:
            found_id, state = earlier
            view = self._view(found_id, state)
            view.message = (f"The metric has not changed since check {found_id}, so nothing was re-run and "
                            f"nothing spent; its results stand. {view.message}")
            return view
        if not plan.call_ids:
            raise InputError("check_id", "there is no check to resume and nothing to evaluate.",
                             f"Call {Step.REGRESSION_CHECK} without check_id after a change to the metric.")
        state = await self._baseline(session, metric, plan)
        new_id = self._ledger.add_validation(session.id, state.model_dump())
        try:
            spent = await self._spend.execute(plan, token=token, approval=approval, requested_metrics=(metric_id,),
                                              wait_for_results=False)
        except OutcomeUnknownError:
            # It may have landed: the results, if they come, are recognised by their marks. Never re-sent.
            state.status, state.outcome_unknown, state.spent_at = "evaluating", True, time.time()
            self._ledger.update_validation(new_id, state.model_dump())
            return await self._advance(new_id, state, deadline, on_progress, resumed=False)
        except LabsError:
            self._ledger.forget_validation(new_id)  # refused, not confirmed, or rejected: nothing was spent
            raise
        state.status, state.spent_at = "evaluating", time.time()
        state.credits_estimated, state.confirmation = spent.credits_estimated, spent.confirmation
        self._ledger.update_validation(new_id, state.model_dump())
        return await self._advance(new_id, state, deadline, on_progress, resumed=False)

    async def _baseline(self, session: Session, metric: Metric, plan: SpendPlan) -> CheckState:
        """Every call's result and mark, read just before the spend: "before", and what "after" must pass."""
        reviews = {r.call_id: r for r in reviewed_calls(self._ledger.reviews(session.id))}
        rows = await read_calls(self._client, agent_id=plan.agent_id, project_id=None, call_ids=plan.call_ids)
        bare = [i for i in plan.call_ids if i not in reviews and _explanation(rows.get(i), metric.id) == ""]
        details = await self._client.get_calls(bare) if bare else {}
        calls: list[CheckCall] = []
        for call_id in plan.call_ids:
            row = rows.get(call_id)
            base = mark_of(row) if row is not None else Mark()
            review = reviews.get(call_id)
            if review is not None:
                calls.append(CheckCall(
                    call_id=call_id, group="reviewed", expected=_label(metric, review.expected), base=base,
                    before=Seen(value=_label(metric, review.result_was),
                                explanation=_explanation(row, metric.id))))
            else:
                source = details.get(call_id) or row
                result = source.metric(metric.id) if source is not None else None
                calls.append(CheckCall(call_id=call_id, group="fresh", base=base,
                                       before=_seen(metric, result)))
        return CheckState(metric_id=metric.id, metric_name=metric.name, agent_id=session.agent_id,
                          fingerprint=fingerprint(metric), status="spending", calls=calls,
                          credits_estimated=plan.credits)

    async def _advance(self, check_id: int, state: CheckState, deadline: float, on_progress: ProgressCallback,
                       *, resumed: bool) -> RegressionCheck:
        """Poll until every call's new result is in, or the client's patience runs out."""
        metric = await self._client.get_metric(state.metric_id)
        wait = self._settings.poll_interval_seconds
        while state.status == "evaluating":
            await self._poll(state, metric)
            total = len(state.calls)
            done = total - len(state.waiting())
            await on_progress(done / total if total else 1.0, f"{done} of {total} calls re-evaluated")
            if not state.waiting():
                await self._finish(state, metric)
                break
            if time.time() - state.spent_at > self._settings.evaluation_give_up_seconds:
                state.not_evaluated = [c.call_id for c in state.waiting()]
                await self._finish(state, metric)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await anyio.sleep(min(wait, remaining))
            wait = min(5 * self._settings.poll_interval_seconds, wait * 1.5)
        self._ledger.update_validation(check_id, state.model_dump())
        view = self._view(check_id, state)
        if resumed and state.status != "evaluating":
            view.message = f"Resumed check {check_id}; nothing was spent again. {view.message}"
        return view

    async def _poll(self, state: CheckState, metric: Metric) -> None:
        waiting = {c.call_id: c for c in state.waiting()}
        rows = await read_calls(self._client, agent_id=state.agent_id, project_id=None, call_ids=list(waiting))
        state.polls += 1
        for call_id, item in waiting.items():
            row = rows.get(call_id)
            if row is None:
                continue
            now = mark_of(row)
            if item.reset is None and is_reset(item.base, now):
                item.reset = now
            elif is_fresh(item.base, item.reset, now):
                item.after = _seen(metric, row.metric(metric.id))

    async def _finish(self, state: CheckState, metric: Metric) -> None:
        """All results are in: fetch the explanations a list row left out, then wait for the person."""
        show = [c for c in state.calls if c.after is not None and not c.after.explanation
                and (c in state.changed() or c.group == "reviewed")]
        if show:
            details = await self._client.get_calls([c.call_id for c in show])
            for item in show:
                detail = details.get(item.call_id)
                result = detail.metric(metric.id) if detail is not None else None
                if item.after is not None and result is not None:
                    item.after.explanation = one_line(explanation_text(result), EXPLANATION_CHARS)
        state.status = "judging" if any(c.verdict is None for c in state.changed()) else "done"

    # -- the person's verdicts on changed fresh results --

    async def judge(self, *, check_id: int, call_id: int, correct: bool, right_value: Any,
                    note: str) -> RegressionCheck:
        _, state = self._load(check_id)
        item = next((c for c in state.changed() if c.call_id == call_id), None)
        if item is None or item.after is None:
            raise InputError("call_id", f"call {call_id} is not a changed result of check {check_id}.",
                             "Judge the call the check's next_change names.")
        if correct:
            item.verdict, item.right_value, item.note = "fixed", item.after.value, note.strip()
        else:
            if right_value is None:
                raise InputError("right_value", "a regression needs the right label.",
                                 'Ask the person: true/false or "N/A" for binary metrics, a label for enum ones.')
            right = display(expected_from_input(await self._client.get_metric(state.metric_id), right_value,
                                                "right_value"))
            if right == item.after.value:
                raise InputError("right_value", f"{right} is the new label itself, which the person called wrong.",
                                 "Pass correct=true if the new label is right, or the label that is right.")
            item.verdict, item.right_value, item.note = "regression", right, note.strip()
        if all(c.verdict is not None for c in state.changed()) and state.status == "judging":
            state.status = "done"
        self._ledger.update_validation(check_id, state.model_dump())
        return self._view(check_id, state)

    async def add_to_lab(self, *, check_id: int, call_ids: Sequence[int] | None, confirm: bool,
                         reoptimize: bool) -> LabProposal:
        session_id, state = self._load(check_id)
        rejected = {c.call_id: c for c in state.changed() if c.verdict == "regression"}
        if not rejected:
            raise InputError("check_id", f"check {check_id} has no regression the person rejected.",
                             f"Judge the changed results first ({Step.JUDGE_CHANGE}); only rejected ones go to the "
                             "Lab.")
        groups = regression_groups(list(rejected.values()))
        chosen = list(call_ids) if call_ids else [i for g in groups for i in g.proposed]
        unknown = [i for i in chosen if i not in rejected]
        if unknown:
            raise InputError("call_ids", f"{unknown} are not regressions the person rejected in this check.",
                             f"Choose among {sorted(rejected)}.")
        metric = await self._client.get_metric(state.metric_id)
        entries = [_lab_entry(metric, rejected[i]) for i in chosen]
        if not confirm:
            return LabProposal(check_id=check_id, applied=False, entries=entries,
                               message="Nothing was added. Show these entries (the optimizer's picks: one or two per "
                                       "failure mode) and every other rejected regression; only on the person's yes "
                                       f"call {Step.ADD_REGRESSIONS} with their call_ids and confirm=true.")
        added: list[dict[str, Any]] = []
        for entry in entries:
            item = rejected[entry["call_id"]]
            if item.test_set_id is not None:
                added.append({**entry, "test_set_id": item.test_set_id})
                continue
            test_set = await self._client.create_test_set_from_call(
                call_log_id=item.call_id, metrics=[MetricFeedback(
                    metric=state.metric_id, feedback=entry["feedback"],
                    expected_value=expected_from_input(metric, item.right_value))])
            item.test_set_id = test_set.id
            self._ledger.update_validation(check_id, state.model_dump())
            added.append({**entry, "test_set_id": test_set.id})
        progress_id = None
        if reoptimize:
            lab = self._lab_test_sets(session_id)
            progress_id = (await start_auto_improve(self._client, self._ledger, metric_id=state.metric_id,
                                                    test_set_ids=lab)).progress_id
            state.lab_progress_id = progress_id
            self._ledger.update_validation(check_id, state.model_dump())
        return LabProposal(
            check_id=check_id, applied=True, entries=added, progress_id=progress_id,
            message=f"Added {len(added)} regression(s) to the Lab."
                    + (f" Re-optimising on the enlarged Lab: {Step.WAIT_FOR_IMPROVEMENT} with "
                       f'progress_id="{progress_id}" and '
                       f"metric_id={state.metric_id}." if progress_id else " The current proposal stays in place."))

    # -- reading the ledger --

    def _session(self, metric_id: int, agent_id: int) -> Session:
        return self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)

    def _load(self, check_id: int) -> tuple[int, CheckState]:
        found = self._ledger.validation(check_id)
        if found is None or "calls" not in found[1]:
            raise InputError("check_id", f"there is no regression check {check_id}.",
                             f"Use the check_id {Step.REGRESSION_CHECK} returned.")
        return found[0], CheckState.model_validate(found[1])

    def _checks(self, session: Session) -> list[tuple[int, CheckState]]:
        return [(i, CheckState.model_validate(r)) for i, r in self._ledger.validations(session.id) if "calls" in r]

    def _resumable(self, session: Session, check_id: int | None, restart: bool) -> tuple[int, CheckState] | None:
        if check_id is not None:
            found_session, state = self._load(check_id)
            if found_session != session.id:
                raise InputError("check_id", f"check {check_id} belongs to another metric or agent.",
                                 "Pass the agent_id and metric_id the check was started with.")
            return (check_id, _interrupted(state)) if state.status in ("spending", "evaluating") else None
        if restart:
            return None
        evaluating = [(i, s) for i, s in self._checks(session) if s.status in ("spending", "evaluating")]
        return (evaluating[-1][0], _interrupted(evaluating[-1][1])) if evaluating else None

    def _unchanged_since(self, session: Session, metric: Metric, restart: bool) -> tuple[int, CheckState] | None:
        """The last finished check, if the metric has not changed since. One where no result ever arrived
        measured nothing: it stands only until the person asks to start again (restart)."""
        checks = [(i, s) for i, s in self._checks(session) if s.status in ("judging", "done")]
        if not checks or checks[-1][1].fingerprint != fingerprint(metric):
            return None
        measured_nothing = len(checks[-1][1].not_evaluated) == len(checks[-1][1].calls)
        return None if measured_nothing and restart else checks[-1]

    def _refuse_if_nothing_changed(self, session: Session, metric: Metric) -> None:
        """After an identical proposal, with no change applied through this server in the session, a re-run
        would pay to measure the metric against itself."""
        latest = self._ledger.latest_improvement(session.id)
        if latest is None or not (latest.proposal or {}).get("identical"):
            return
        if any(v.at >= session.started_at for v in self._ledger.metric_versions(metric.id)):
            return
        raise LabsError("Nothing to validate: the last auto-improve proposal was identical to the metric and no "
                        "change has been applied since, so a re-run would spend credits to measure nothing. "
                        "Nothing was spent.",
                        "Review more calls (disagreements with a transcript moment teach the optimizer most), "
                        "then run auto-improve again.")

    def _reviewed_ids(self, session: Session) -> list[int]:
        return sorted({r.call_id for r in reviewed_calls(self._ledger.reviews(session.id))})

    def _lab_test_sets(self, session_id: int) -> list[int]:
        session = self._ledger.session(session_id)
        ids = [r.test_set_id for r in self._ledger.reviews(session_id) if r.lab_state == "added" and r.test_set_id]
        ids += [c.test_set_id for _, s in self._checks(session) for c in s.calls if c.test_set_id]
        return sorted({i for i in ids if i is not None})

    def lab_calls(self, session: Session) -> set[int]:
        """Every call this server put (or may have put) in the metric's Lab, and every call a check used."""
        calls = {r.call_id for r in self._ledger.reviews(session.id)}
        calls |= {c.call_id for _, s in self._checks(session) for c in s.calls}
        return calls

    async def _fresh_sample(self, session: Session, metric: Metric, size: int) -> list[int]:
        """The most recent calls the metric scored in production, outside the Lab: the optimizer never saw
        them. Calls marked reviewed are left out too, since a vote usually comes with a Lab entry."""
        excluded = self.lab_calls(session)
        page = await self._client.list_calls(agent_id=session.agent_id, page_size=RECENT_PAGE)
        rows = sorted(page.results, key=lambda r: (r.timestamp or "", r.id), reverse=True)
        picked = [r.id for r in rows if r.id not in excluded and not r.is_reviewed and r.metric(metric.id) is not None]
        return picked[:size]

    # -- the report --

    def _view(self, check_id: int, state: CheckState) -> RegressionCheck:
        metric = f"{state.metric_id}: {state.metric_name}"
        waiting = len(state.waiting())
        base: dict[str, Any] = dict(check_id=check_id, metric=metric, credits_estimated=state.credits_estimated,
                                    confirmation=state.confirmation, waiting_for=waiting,
                                    not_evaluated=state.not_evaluated)
        if state.status in ("evaluating", "spending"):
            unknown = (" The spend's outcome was unknown (no answer from Cekura); results that arrive are still "
                       "recognised, and nothing is sent again." if state.outcome_unknown else "")
            return RegressionCheck(
                **base, status="evaluating",
                message=f"Cekura is still evaluating: {waiting} of {len(state.calls)} calls have no new result "
                        f"yet. Nothing read so far is reported as 'after'.{unknown} Call {Step.REGRESSION_CHECK} again "
                        f"with check_id={check_id} to keep waiting; nothing is spent again.")
        reviewed = _group_report(state.group("reviewed"))
        fresh = _fresh_report(state)
        pending = [c for c in state.changed() if c.verdict is None]
        groups = regression_groups([c for c in state.changed() if c.verdict == "regression"])
        next_change = _to_judge(pending[0], len(pending) - 1) if pending else None
        status: Literal["judging", "done"] = "judging" if pending else "done"
        verdict = _verdict(reviewed, fresh)
        if pending:
            message = (f"{len(pending)} fresh result(s) changed. Show next_change to the person (both explanations)"
                       f" and record their verdict with {Step.JUDGE_CHANGE}; the next one follows.")
        elif groups:
            message = ("Every change is judged. The rejected regressions are grouped by failure mode with a "
                       "representative subset proposed for the Lab: show them; only on the person's yes call "
                       f"{Step.ADD_REGRESSIONS} (with reoptimize=true to run auto-improve on the enlarged Lab).")
        else:
            message = "Every change is judged; no regression was found on calls the optimizer never saw."
        if state.not_evaluated:
            lost = (f"{len(state.not_evaluated)} call(s) never showed a new result "
                    f"({self._settings.evaluation_give_up_seconds:g} s after the spend); they are left out of every "
                    "figure, never counted with their old result.")
            if len(state.not_evaluated) == len(state.calls):
                lost = ("No new result arrived for any call, so there is nothing to report."
                        + (f" The spend's outcome was unknown: check {Step.SPEND_LOG} before starting again with "
                           "restart=true." if state.outcome_unknown else " Start again with restart=true."))
            message = f"{lost} {message}" if reviewed or fresh else lost
        return RegressionCheck(**base, status=status, message=message, reviewed=reviewed, fresh=fresh,
                               next_change=next_change, regression_groups=groups, verdict=verdict)


def _interrupted(state: CheckState) -> CheckState:
    """A check the server stopped during its spend (a crash): the spend may have landed, so it is waited for
    like any evaluation, never sent again; calls that never change end up as not evaluated."""
    if state.status == "spending":
        state.status, state.outcome_unknown = "evaluating", True
        state.spent_at = state.spent_at or time.time()
    return state


def _nothing(agent_id: int) -> SpendPlan:
    """The plan of a check that spends nothing (resumed, or the metric is unchanged): no one is asked."""
    return SpendPlan(operation=OPERATION, agent_id=agent_id, project_id=None, call_ids=(), judge_metric_ids=(),
                     code_metric_ids=(), credits=0.0)


def fingerprint(metric: Metric) -> str:
    """What the metric judges by: a check of the same fingerprint would measure nothing new."""
    parts = [metric.type, metric.description, metric.custom_code or "", metric.evaluation_trigger or "",
             metric.evaluation_trigger_prompt or "", metric.eval_type, json.dumps(metric.enum_values)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _label(metric: Metric, value: object) -> str:
    """One spelling per value, so "3", "3.0" and 3 compare equal, and so do "true" and "TRUE"."""
    try:
        return display(expected_from_input(metric, value))
    except InputError:
        return str(value)


def _seen(metric: Metric, result: MetricResult | None) -> Seen:
    if result is None:
        return Seen(value="(no result)")
    reading = read_result(result, metric)
    value = _label(metric, reading.expected) if reading.readable else reading.text
    return Seen(value=value, explanation=one_line(explanation_text(result), EXPLANATION_CHARS))


def _explanation(row: CallRow | None, metric_id: int) -> str:
    result = row.metric(metric_id) if row is not None else None
    return one_line(explanation_text(result), EXPLANATION_CHARS) if result is not None else ""


def _scores(judged: list[str], truth: list[str]) -> Scores:
    a = agreement(judged, truth)
    return Scores(agreement=a.rate, kappa=a.kappa, matrix=confusion(judged, truth))


def _group_report(items: list[CheckCall]) -> GroupReport | None:
    rows = [c for c in items if c.after is not None and c.expected is not None]
    if not rows:
        return None
    expected = [c.expected or "" for c in rows]
    before = [c.before.value for c in rows]
    after = [c.after.value if c.after else "" for c in rows]
    fixed: list[FixedCall] = []
    regressed: list[Change] = []
    still: list[Change] = []
    right_both = 0
    for item, want, was, now in zip(rows, expected, before, after, strict=True):
        change = Change(call_id=item.call_id, expected=want, before=was, after=now)
        if was != want and now == want:
            fixed.append(FixedCall(**change.model_dump(), explanation_before=item.before.explanation,
                                   explanation_after=item.after.explanation if item.after else ""))
        elif was == want and now != want:
            regressed.append(change)
        elif now != want:
            still.append(change)
        else:
            right_both += 1
    return GroupReport(calls=len(rows), before=_scores(before, expected), after=_scores(after, expected),
                       fixed=fixed, regressed=regressed, still_wrong=still, unchanged_right=right_both)


def _fresh_report(state: CheckState) -> FreshReport | None:
    rows = [c for c in state.group("fresh") if c.after is not None]
    if not rows:
        return None
    changed = state.changed()
    judged = [c for c in changed if c.verdict is not None]
    fixed = [FixedCall(call_id=c.call_id, expected=c.after.value if c.after else "", before=c.before.value,
                       after=c.after.value if c.after else "", explanation_before=c.before.explanation,
                       explanation_after=c.after.explanation if c.after else "")
             for c in judged if c.verdict == "fixed"]
    regressed = [Change(call_id=c.call_id, expected=c.right_value or "", before=c.before.value,
                        after=c.after.value if c.after else "")
                 for c in judged if c.verdict == "regression" and c.right_value == c.before.value]
    still = [Change(call_id=c.call_id, expected=c.right_value or "", before=c.before.value,
                    after=c.after.value if c.after else "")
             for c in judged if c.verdict == "regression" and c.right_value != c.before.value]
    flips = sum(1 for c in changed if _flip(c))
    report = FreshReport(
        calls=len(rows), changed=len(changed), applicability_flips=flips, judged=len(judged), fixed=fixed,
        regressed=regressed, still_wrong=still,
        basis="Only changed results are judged (as in Cekura's regression check); scores count an unchanged "
              "result as right, and are given once every change is judged.")
    if len(judged) == len(changed):
        truth = [c.right_value if c.verdict is not None and c.right_value else c.before.value for c in rows]
        report.before = _scores([c.before.value for c in rows], truth)
        report.after = _scores([c.after.value if c.after else "" for c in rows], truth)
    return report


def _flip(item: CheckCall) -> bool:
    return item.after is not None and (item.before.value == NA) != (item.after.value == NA)


def _to_judge(item: CheckCall, remaining: int) -> ChangeToJudge:
    after = item.after.value if item.after else ""
    flip = _flip(item)
    kind = " This is an applicability flip: the metric now " + (
        "does not apply to this call." if after == NA else "applies to a call it called N/A.") if flip else ""
    return ChangeToJudge(
        call_id=item.call_id, before=item.before.value, after=after, applicability_flip=flip,
        explanation_before=item.before.explanation, explanation_after=item.after.explanation if item.after else "",
        remaining=remaining,
        question=f"On call {item.call_id} production said {item.before.value}; the changed metric says {after}."
                 f"{kind} Is the new label correct? If not, what is the right label, and why (a moment or a quote)?")


def regression_groups(items: list[CheckCall]) -> list[RegressionGroup]:
    """Rejected regressions grouped by failure mode: the same change of label, for the same kind of reason
    (the judge's new explanation and the person's note). One or two of each are proposed for the Lab: adding
    near-identical cases teaches the optimizer the same lesson again and spends Lab budget for nothing."""
    by_change: dict[str, list[CheckCall]] = {}
    for item in items:
        key = f"{item.before.value} → {item.after.value if item.after else ''} (right: {item.right_value})"
        by_change.setdefault(key, []).append(item)
    groups: list[RegressionGroup] = []
    for change, members in by_change.items():
        texts = [(c.call_id, f"{c.after.explanation if c.after else ''} {c.note}") for c in members]
        for cluster in cluster_explanations(texts):
            reason = one_line(cluster.representative(), 160)
            groups.append(RegressionGroup(failure_mode=f"{change}: {reason}", call_ids=cluster.members,
                                          proposed=cluster.members[:PICKS_PER_GROUP]))
    return sorted(groups, key=lambda g: (-len(g.call_ids), g.call_ids[0]))


def _lab_entry(metric: Metric, item: CheckCall) -> dict[str, Any]:
    after = item.after.value if item.after else ""
    feedback = item.note or (f"The changed metric said {after} here, but production's {item.before.value} was "
                             "right.")
    if (item.right_value or "").lower() not in feedback.lower():
        feedback += f" The correct result is {item.right_value}."
    return {"call_id": item.call_id, "expected": item.right_value, "feedback": feedback}


def _verdict(reviewed: GroupReport | None, fresh: FreshReport | None) -> str:
    parts: list[str] = []
    if reviewed is not None:
        parts.append(f"Reviewed calls ({reviewed.calls}): agreement {reviewed.before.agreement:.0%} → "
                     f"{reviewed.after.agreement:.0%} (kappa {reviewed.before.kappa:+.2f} → "
                     f"{reviewed.after.kappa:+.2f}); {len(reviewed.fixed)} fixed, {len(reviewed.regressed)} "
                     f"regressed, {len(reviewed.still_wrong)} still wrong.")
    if fresh is not None:
        line = f"Fresh sample ({fresh.calls} calls outside the Lab): {fresh.changed} changed"
        if fresh.applicability_flips:
            line += f" ({fresh.applicability_flips} applicability flips)"
        if fresh.judged < fresh.changed:
            line += f"; {fresh.changed - fresh.judged} still to judge."
        else:
            line += (f"; {len(fresh.fixed)} fixed, {len(fresh.regressed)} regressed, "
                     f"{len(fresh.still_wrong)} still wrong.")
            if fresh.before is not None and fresh.after is not None:
                line += (f" Agreement {fresh.before.agreement:.0%} → {fresh.after.agreement:.0%} (kappa "
                         f"{fresh.before.kappa:+.2f} → {fresh.after.kappa:+.2f}).")
        parts.append(line)
    return " ".join(parts)

