"""The review session: one per metric, kept in the ledger. It puts the next call before the person (ranked by
`ranking`), records a verdict (vote + Lab entry, both in the ledger) or a skip (the session only), and starts
hands-free auto-improve when enough feedback is in. Triage lives in `triage`, the ranking in `ranking`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric, MetricFeedback
from cekura_labs_mcp.server.cekura.results import Reading, read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import CekuraError, InputError, OutcomeUnknownError, RunFailedError
from cekura_labs_mcp.server.ledger import Ledger, Review, Session, in_overlap, owner
from cekura_labs_mcp.server.presenting import moments
from cekura_labs_mcp.server.services.analysis import check_disagreement, mentions_outcome
from cekura_labs_mcp.server.services.calls import CallReview, review_view
from cekura_labs_mcp.server.services.improve import (
    ImprovementResult,
    ImproveService,
    ProgressCallback,
    auto_improve_due,
)
from cekura_labs_mcp.server.services.ranking import NUMERIC, Candidate, rank_candidates, score_all
from cekura_labs_mcp.server.services.team import MAX_OVERLAP, TeamAgreement, describe, same, team_agreement
from cekura_labs_mcp.server.steps import Step
from cekura_labs_mcp.server.values import agreed_value, display, expected_from_input
from pydantic import BaseModel, Field

SAMPLE = 200
SAMPLE_TTL_SECONDS = 300.0


class Progress(BaseModel):
    session_id: int
    metric: str
    reviewed: int
    skipped: int = Field(default=0, description="Calls the person could not judge: kept in this session only.")
    agreed: int
    disagreed: int
    feedback: int = Field(description="Lab entries with feedback: auto-improve needs `needed`.")
    needed: int
    auto_improve: bool
    check: list[str] = Field(default_factory=list, description="Writes whose outcome must be checked by hand.")
    team: TeamAgreement | None = Field(default=None, description="Set when several reviewers work on this metric: "
                                       "their agreement on shared calls, and disagreements to settle.")


class NextReview(BaseModel):
    progress: Progress
    call: CallReview | None = Field(default=None, description="The call to put before the person, or null if "
                                    "none is left in the sample.")
    why_picked: list[str] = Field(default_factory=list)
    question: str = ""


class RecordedReview(BaseModel):
    recorded: str
    progress: Progress
    improvement: ImprovementResult | None = Field(
        default=None, description="Set when this review completed the feedback and auto-improve ran.")
    next: NextReview | None = None


class ReviewService:
    def __init__(self, client: CekuraClient, ledger: Ledger, improve: ImproveService, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._ledger = ledger
        self._improve = improve
        self._settings = settings
        # What the wait for an unanswered vote is measured by (a test moves it on instead of sleeping).
        self._clock = clock
        self._samples: dict[int, tuple[float, list[CallRow]]] = {}
        self._sample_locks: dict[int, anyio.Lock] = {}
        self._scores: dict[tuple[int, int], tuple[tuple[float, str], list[Candidate]]] = {}

    # ---- session -------------------------------------------------------------------------

    async def start(self, *, agent_id: int, metric_id: int, auto_improve: bool | None,
                    overlap: float | None = None) -> Progress:
        metric = await self._client.get_metric(metric_id)
        if overlap is not None and not 0 <= overlap <= MAX_OVERLAP:
            raise InputError("overlap", f"{overlap} is not a share of calls between 0 and {MAX_OVERLAP}.",
                             "Pass e.g. 0.2 to hand one call in five to two reviewers, or 0 for none.")
        session = self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)
        if auto_improve is not None:
            self._ledger.update_session(session.id, auto_improve=auto_improve)
        if overlap is not None:
            self._ledger.set_overlap(metric_id, agent_id, overlap)
        await self._reconcile(session)
        return self._progress(self._ledger.session(session.id), metric)

    async def _reconcile(self, session: Session) -> None:
        """After a crash: a vote left 'sending' landed iff Cekura shows the call reviewed; a Lab entry left
        'sending' cannot be checked through the API, so it is flagged for the person, never re-sent; a Lab
        entry never attempted is sent now."""
        for review in self._ledger.reviews(session.id):
            vote_state = review.vote_state  # as it is now: a vote settled just below is sent, and so is its entry
            if vote_state == "sending":
                call = await self._client.get_call(review.call_id)
                if call.is_reviewed:
                    self._ledger.mark_vote(review.id, "sent", "reconciled: the call is reviewed")
                elif self._settling(review) > 0:
                    # A request that timed out may still be processed: only once that time has passed does
                    # "not reviewed" mean it never arrived. Until then it is left alone (and reported).
                    continue
                else:
                    await self._send_vote(review.id, review.call_id, review.metric_id, review.agreed,
                                          review.expected, review.feedback)
                vote_state = "sent"  # either way (_send_vote raises when the vote did not land)
            if review.lab_state == "sending":
                self._ledger.mark_lab(review.id, "unknown", answer="interrupted while adding to the Lab")
            elif review.lab_state in ("waiting", "failed") and vote_state == "sent":
                # Never attempted (the ledger marks 'sending' before the request), or refused in a way that
                # proves it was not applied (429, 4xx, no connection): safe to send now (a shared call only once
                # both reviewers agree).
                await self._lab_entry(review.id, review.call_id, review.metric_id, review.expected, review.feedback)

    def _settling(self, review: Review) -> float:
        """Seconds before an unanswered vote can be told apart from a lost one (twice the HTTP timeout)."""
        return max(0.0, review.updated_at + 2 * self._settings.http_timeout_seconds - self._clock())

    def _session(self, agent_id: int, metric_id: int) -> Session:
        return self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)

    def _progress(self, session: Session, metric: Metric) -> Progress:
        every = self._ledger.reviews(session.id)
        reviews = [r for r in every if r.vote_state == "sent"]
        checks = [f"call {r.call_id}: Lab entry outcome unknown" for r in every if r.lab_state == "unknown"]
        checks += [f"call {r.call_id}: vote outcome not known yet (checked again by the next {Step.OPEN_REVIEW} or "
                   f"{Step.RECORD_VERDICT})" for r in every if r.vote_state == "sending"]
        started = self._ledger.latest_improvement(session.id)
        if started is not None and not started.progress_id:
            checks.append("auto-improve: the start's outcome is unknown; look for a running improvement on the "
                          f"metric's Labs page before starting one with {Step.START_IMPROVEMENT}")
        skipped = sum(1 for r in every if r.vote_state == "skipped")
        return Progress(
            session_id=session.id, metric=f"{metric.id}: {metric.name}", reviewed=len(reviews), skipped=skipped,
            agreed=sum(r.agreed for r in reviews), disagreed=sum(not r.agreed for r in reviews),
            feedback=sum(1 for r in reviews if r.lab_state == "added"), needed=session.feedback_threshold,
            auto_improve=session.auto_improve, check=checks, team=self._team(session),
        )

    def _team(self, session: Session) -> TeamAgreement | None:
        return self.team(session.metric_id, session.agent_id)

    def team(self, metric_id: int, agent_id: int | None = None) -> TeamAgreement | None:
        """The team's agreement on this metric, when there is a team: an overlap sample, or another reviewer."""
        overlap = self._ledger.overlap_of(metric_id)
        reviewers = self._ledger.reviewers_of(metric_id, agent_id)
        if overlap <= 0 and len(reviewers - {owner()}) == 0:
            return None
        return team_agreement(self._ledger.team_verdicts(metric_id, agent_id), me=owner(), overlap=overlap,
                              reviewers=len(reviewers | {owner()}))

    # ---- queue ---------------------------------------------------------------------------

    async def next_call(self, *, agent_id: int, metric_id: int) -> NextReview:
        return await self._next(agent_id, await self._client.get_metric(metric_id))

    async def _next(self, agent_id: int, metric: Metric) -> NextReview:
        metric_id = metric.id
        session = self._session(agent_id, metric_id)
        reviews = self._ledger.reviews(session.id)
        done = {r.call_id for r in reviews}
        rows = [r for r in await self._sample(agent_id) if r.metric(metric_id) is not None]
        # Skips say nothing about either side, so only verdicts steer the balance rule. Calls the team has leased
        # are ranked even once Cekura shows them reviewed: the leases decide who else may still have them.
        ranked = rank_candidates(rows, metric, skip=done, keep=self._ledger.leased_calls(metric_id),
                                 reviewed_values=[r.result_was or "" for r in reviews if r.vote_state != "skipped"],
                                 scored=self._scored(agent_id, metric, rows))
        # The lease is taken in the ledger's write transaction: no other reviewer, in any process, gets this call
        # (outside the overlap sample) until it is skipped or its lease expires.
        overlap = self._ledger.overlap_of(metric_id)
        if self._settings.read_only:  # a look records nothing, so it holds no call back from the reviewers
            leased = ranked[0].row.id if ranked else None
        else:
            leased = self._ledger.lease_call(metric_id, owner(), [c.row.id for c in ranked], overlap=overlap,
                                             ttl=self._settings.review_lease_seconds)  # on the ledger's clock
        progress = self._progress(session, metric)
        picked = next((c for c in ranked if c.row.id == leased), None)
        if picked is None:
            why = "every call in the sample is reviewed, skipped, or in another reviewer's hands" if ranked else \
                "every call in the sample is reviewed or skipped"
            return NextReview(progress=progress, why_picked=[why])
        row, reasons = picked.row, picked.reasons
        if in_overlap(metric_id, row.id, overlap):
            reasons = [*reasons, "in the team's overlap sample: a second reviewer judges it too"]
        detail = await self._client.get_call(row.id)
        result = detail.metric(metric_id)
        cited = moments(result.explanation) if result else []
        view = review_view(detail, metric_id=metric_id, around=cited, window_seconds=20.0, metric=metric)
        return NextReview(
            progress=progress, call=view, why_picked=reasons,
            question=f"Call {row.id} was scored {view.metric.value if view.metric else '?'} on {metric.name}. "
                     "Do you agree? If not: what is the right value, and which moment shows it? (Not sure: "
                     "record skip=true.)",
        )

    def _scored(self, agent_id: int, metric: Metric, rows: list[CallRow]) -> list[Candidate]:
        """Every call of the sample scored, computed once per sample and metric version (scoring reads the whole
        sample; with many reviewers on one process it would otherwise be redone for every next call)."""
        key = (agent_id, metric.id)
        stamp = (self._samples[agent_id][0] if agent_id in self._samples else 0.0, metric.description)
        cached = self._scores.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, score_all(rows, metric))
            self._scores[key] = cached
        return cached[1]

    async def _sample(self, agent_id: int) -> list[CallRow]:
        """The recent calls the queue ranks. A page of 200 calls with transcripts is heavy, so it is read
        once per few minutes, not once per review: reviewed calls are skipped through the ledger anyway."""
        # Many reviewers asking at once (a team on one process) wait for one read instead of each making their own.
        async with self._sample_locks.setdefault(agent_id, anyio.Lock()):
            cached = self._samples.get(agent_id)
            if cached is not None and time.monotonic() - cached[0] < SAMPLE_TTL_SECONDS:
                return cached[1]
            page = await self._client.list_calls(agent_id=agent_id, page_size=SAMPLE)
            self._samples[agent_id] = (time.monotonic(), page.results)
            return page.results

    # ---- recording -----------------------------------------------------------------------

    async def record(
        self, *, agent_id: int, metric_id: int, call_id: int, agree: bool, expected_value: Any, reason: str,
        insist: bool, on_progress: ProgressCallback,
    ) -> RecordedReview:
        metric = await self._client.get_metric(metric_id)
        session = self._session(agent_id, metric_id)
        await self._reconcile(session)
        earlier = next((r for r in self._ledger.reviews(session.id)
                        if r.call_id == call_id and r.vote_state != "skipped"), None)
        if earlier is not None and earlier.vote_state == "sent" and earlier.lab_state != "held":
            raise InputError("call_id", f"call {call_id} is already reviewed in this session.",
                             f"Call {Step.NEXT_CALL_TO_REVIEW} for the next call.")
        if earlier is not None and earlier.vote_state != "sent":
            wait = max(1, round(self._settling(earlier)))
            raise OutcomeUnknownError(
                f"The earlier vote on call {call_id}", "Cekura does not show it yet, and it may still arrive",
                f"Wait {wait} s and call {Step.RECORD_VERDICT} again: the server then checks once more and sends the "
                "vote only if it never arrived.")
        call = await self._client.get_call(call_id)
        result = call.metric(metric_id)
        if result is None:
            raise InputError("metric_id", f"metric {metric_id} has no result on call {call_id}.",
                             f"Review a call the metric ran on ({Step.NEXT_CALL_TO_REVIEW} picks one).")
        reading = read_result(result, metric)
        expected, feedback = self._feedback(metric, reading, agree, expected_value, reason, insist)
        if any(r.call_id == call_id and r.vote_state == "skipped" for r in self._ledger.reviews(session.id)):
            self._ledger.forget_skip(session.id, call_id)
        if earlier is not None:
            # A shared call still held (waiting for, or disagreeing with, the other reviewer): the verdict is revised.
            self._ledger.revise_review(earlier.id, agreed=agree, result_was=reading.text, expected=expected,
                                       feedback=feedback)
            review_id = earlier.id
        else:
            review_id = self._ledger.begin_review(session.id, call_id=call_id, metric_id=metric_id, agreed=agree,
                                                  result_was=reading.text, expected=expected, feedback=feedback)
        await self._send_vote(review_id, call_id, metric_id, agree, expected, feedback, revised=earlier is not None)
        self._ledger.finish_lease(metric_id, call_id, owner())
        lab_note = await self._lab_entry(review_id, call_id, metric_id, expected, feedback)
        session = self._ledger.session(session.id)
        # The verdict is recorded: a failure from here on is reported with it, never instead of it.
        after = ""
        improvement: ImprovementResult | None = None
        following: NextReview | None = None
        try:
            improvement = await self._maybe_improve(session, metric, on_progress)
            if improvement is None:
                following = await self._next(agent_id, metric)
        except CekuraError as exc:
            after = f" Then: {exc.for_assistant()}"
        return RecordedReview(
            recorded=f"{'Agreed' if agree else 'Disagreed'} on call {call_id}: expected {display(expected)}. "
                     f"Vote sent; {lab_note}{after}",
            progress=self._progress(session, metric), improvement=improvement, next=following,
        )

    async def skip(self, *, agent_id: int, metric_id: int, call_id: int, reason: str) -> RecordedReview:
        """"Not sure": kept in this session so the call does not come back; no vote, no Lab entry."""
        metric = await self._client.get_metric(metric_id)
        session = self._session(agent_id, metric_id)
        reviews = self._ledger.reviews(session.id)
        if any(r.call_id == call_id and r.vote_state != "skipped" for r in reviews):
            raise InputError("call_id", f"call {call_id} is already reviewed in this session.",
                             f"Call {Step.NEXT_CALL_TO_REVIEW} for the next call.")
        if not any(r.call_id == call_id for r in reviews):
            call = await self._client.get_call(call_id)
            result = call.metric(metric_id)
            self._ledger.skip_review(session.id, call_id=call_id, metric_id=metric_id,
                                     result_was=read_result(result, metric).text if result else None,
                                     note=reason.strip())
        self._ledger.release_lease(metric_id, call_id, owner())  # another reviewer may take it
        return RecordedReview(
            recorded=f"Skipped call {call_id}: kept in this session only, nothing sent to Cekura; it will not come "
                     "back in this session.",
            progress=self._progress(session, metric), next=await self._next(agent_id, metric),
        )

    def _feedback(
        self, metric: Metric, actual: Reading, agree: bool, raw: Any, reason: str, insist: bool,
    ) -> tuple[Any, str]:
        if agree:
            expected = expected_from_input(metric, raw) if raw is not None else agreed_value(metric, actual)
            text = reason.strip() or f"The result {display(expected)} is right for this call."
            return expected, text
        if raw is None:
            raise InputError("expected_value", "a disagreement must say what the right value is.",
                             'Ask the person: true/false or "N/A" for binary metrics, a label for enum ones.')
        expected = expected_from_input(metric, raw)
        verdict = check_disagreement(reason, whole_call=metric.eval_type in NUMERIC)
        if not verdict.ok and not insist:
            raise InputError("reason", "this feedback would teach auto-improve little: " + "; ".join(verdict.problems)
                             + ".", verdict.hint + " If the person insists on this wording, pass insist=true.")
        text = reason.strip()
        if not mentions_outcome(text, display(expected)):
            text += f" The correct result is {display(expected)}."
        return expected, text

    async def _send_vote(self, review_id: int, call_id: int, metric_id: int, agree: bool, expected: Any,
                         feedback: str, *, revised: bool = False) -> None:
        try:
            answer = await self._client.mark_metric_vote(call_id, metric_id=metric_id, thumbs_up=agree,
                                                         expected_value=expected, feedback=feedback)
        except OutcomeUnknownError:
            # Left as 'sending': the next start_review checks whether it landed.
            raise
        except CekuraError:
            if not revised:  # a revision's first vote did land: the review stays, marked as not re-sent
                self._ledger.forget_review(review_id)
            else:
                self._ledger.mark_vote(review_id, "sent", "the revised vote was refused; the earlier one stands")
            raise
        self._ledger.mark_vote(review_id, "sent", answer)

    async def _lab_entry(self, review_id: int, call_id: int, metric_id: int, expected: Any, feedback: str) -> str:
        """The Lab entry of a verdict: sent at once, except on a call of the overlap sample, where it is sent once
        both reviewers' verdicts are in and agree (by whichever verdict completes the pair), and held otherwise."""
        # Outside the sample too, a second person's verdict on the call (handed on after a lease expired, or
        # recorded by id) is settled against the first: contradicting entries must not both reach the optimizer.
        alone = not in_overlap(metric_id, call_id, self._ledger.overlap_of(metric_id))
        decision = self._ledger.settle_lab(review_id, same, alone=alone)
        if decision.state == "send" and decision.partner is None:
            return await self._add_to_lab(review_id, call_id, metric_id, expected, feedback)
        if decision.state == "held" and decision.partner is None:
            return "the Lab entry is held until the second reviewer judges this call (overlap sample)."
        if decision.state == "held":
            return (f"the Lab entry is held: {decision.partner} judged this call differently. Settle it together; "
                    "either of you records the call again with the agreed verdict.")
        if decision.state == "shared":
            return f"{decision.partner} agreed; their Lab entry covers this call."
        note = await self._add_to_lab(review_id, call_id, metric_id, expected, feedback, shared=True)
        return f"{decision.partner} agreed; {note}"

    async def _add_to_lab(self, review_id: int, call_id: int, metric_id: int, expected: Any, feedback: str, *,
                          shared: bool = False) -> str:
        self._ledger.mark_lab(review_id, "sending")
        try:
            test_set = await self._client.create_test_set_from_call(
                call_log_id=call_id, metrics=[MetricFeedback(metric=metric_id, feedback=feedback,
                                                             expected_value=expected)])
        except OutcomeUnknownError as exc:
            self._ledger.mark_lab(review_id, "unknown", answer=exc.message)
            return "the Lab entry may not have been added (check the metric's Lab before adding it again)."
        except CekuraError as exc:
            self._ledger.mark_lab(review_id, "failed", answer=exc.message)
            return f"the Lab entry was refused: {exc.message}"
        self._ledger.mark_lab(review_id, "added", test_set.id)
        if shared:
            self._ledger.share_lab(review_id, test_set.id)  # the other reviewer's agreeing verdict names it too
        return f"added to the Lab (test set {test_set.id})."

    # ---- hands-free auto-improve ---------------------------------------------------------

    async def _maybe_improve(self, session: Session, metric: Metric,
                             on_progress: ProgressCallback) -> ImprovementResult | None:
        if not session.auto_improve:
            return None
        mix = auto_improve_due(self._ledger.reviews(session.id), self._ledger.latest_improvement(session.id),
                               min_entries=session.feedback_threshold,
                               min_disagreements=self._settings.improve_min_disagreements)
        if mix is None:
            return None
        test_sets = mix.test_set_ids
        # Intent first: after an unknown outcome or a crash, auto-improve is never started a second time.
        improvement_id = self._ledger.add_improvement(session.id, "", test_sets)
        try:
            started = await self._improve.start(metric_id=metric.id, test_set_ids=test_sets, used=mix)
        except OutcomeUnknownError:
            self._ledger.finish_improvement(improvement_id, "unknown", None)
            raise
        except CekuraError:
            self._ledger.forget_improvement(improvement_id)
            raise
        self._ledger.set_improvement_progress(improvement_id, started.progress_id)
        try:
            result = await self._improve.poll(progress_id=started.progress_id, metric_id=metric.id,
                                              timeout=self._settings.poll_timeout_seconds, on_progress=on_progress)
        except RunFailedError:
            self._ledger.finish_improvement(improvement_id, "failed", None)  # over: nothing to resume
            raise
        except CekuraError as exc:
            return ImprovementResult(progress_id=started.progress_id, done=False, metric_id=metric.id,
                                     message=f"Auto-improve is running, but waiting for it failed: {exc.message} "
                                             f"Call {Step.WAIT_FOR_IMPROVEMENT} with this progress_id to resume.")
        team = self._team(session)
        result.used = mix.describe() + (f"; {describe(team)}" if team is not None else "")
        if result.done:
            self._ledger.finish_improvement(improvement_id, result.status or "completed", result.model_dump())
        return result


def reviewed_calls(reviews: Sequence[Review]) -> list[Review]:
    return [r for r in reviews if r.vote_state == "sent"]
