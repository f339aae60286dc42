"""The labs loop: a review session per metric, the queue of calls to put before the person, recording
a verdict (vote + Lab entry, both in the ledger), hands-free auto-improve, and triage of failures."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric, MetricFeedback
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import CekuraError, InputError, OutcomeUnknownError
from cekura_labs_mcp.server.presenting import explanation_text, moments, one_line
from cekura_labs_mcp.server.services.analysis import check_disagreement, cluster_explanations, mentions_outcome
from cekura_labs_mcp.server.services.calls import CallFilter, CallReview, review_view
from cekura_labs_mcp.server.services.improve import ImprovementResult, ImproveService, ProgressCallback
from cekura_labs_mcp.server.state import Ledger, Review, Session
from cekura_labs_mcp.server.values import display, expected_from_input, result_as_expected
from pydantic import BaseModel, Field

SAMPLE = 200
SAMPLE_TTL_SECONDS = 300.0


class Progress(BaseModel):
    session_id: int
    metric: str
    reviewed: int
    agreed: int
    disagreed: int
    feedback: int = Field(description="Lab entries with feedback: auto-improve needs `needed`.")
    needed: int
    auto_improve: bool
    check: list[str] = Field(default_factory=list, description="Writes whose outcome must be checked by hand.")


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


class Cause(BaseModel):
    cause: str = Field(description="The recurring reason, in the judge's own words (a representative line).")
    key_terms: list[str]
    count: int
    share: float
    example_call_ids: list[int]


class Triage(BaseModel):
    metric: str
    failing_value: str
    failing_total: int = Field(description="Failing results in the window, counted before reading.")
    read: int = Field(description="Explanations actually read (bounded sample).")
    causes: list[Cause]
    advice: str


class ReviewService:
    def __init__(self, client: CekuraClient, ledger: Ledger, improve: ImproveService, settings: Settings) -> None:
        self._client = client
        self._ledger = ledger
        self._improve = improve
        self._settings = settings
        self._samples: dict[int, tuple[float, list[CallRow]]] = {}

    # ---- session -------------------------------------------------------------------------

    async def start(self, *, agent_id: int, metric_id: int, auto_improve: bool | None) -> Progress:
        metric = await self._client.get_metric(metric_id)
        session = self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)
        if auto_improve is not None:
            self._ledger.update_session(session.id, auto_improve=auto_improve)
        await self._reconcile(session)
        return self._progress(self._ledger.session(session.id), metric)

    async def _reconcile(self, session: Session) -> None:
        """After a crash: a vote left 'sending' landed iff Cekura shows the call reviewed; a Lab entry left
        'sending' cannot be checked through the API, so it is flagged for the person, never re-sent; a Lab
        entry never attempted is sent now."""
        for review in self._ledger.reviews(session.id):
            if review.vote_state == "sending":
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
            if review.lab_state == "sending":
                self._ledger.mark_lab(review.id, "unknown", answer="interrupted while adding to the Lab")
            elif review.lab_state in ("waiting", "failed"):
                # Never attempted (the ledger marks 'sending' before the request), or refused in a way that
                # proves it was not applied (429, 4xx, no connection): safe to send now.
                await self._add_to_lab(review.id, review.call_id, review.metric_id, review.expected, review.feedback)

    def _settling(self, review: Review) -> float:
        """Seconds before an unanswered vote can be told apart from a lost one (twice the HTTP timeout)."""
        return max(0.0, review.updated_at + 2 * self._settings.http_timeout_seconds - time.time())

    def _session(self, agent_id: int, metric_id: int) -> Session:
        return self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)

    def _progress(self, session: Session, metric: Metric) -> Progress:
        reviews = [r for r in self._ledger.reviews(session.id) if r.vote_state == "sent"]
        checks = [f"call {r.call_id}: Lab entry outcome unknown" for r in self._ledger.reviews(session.id)
                  if r.lab_state == "unknown"]
        checks += [f"call {r.call_id}: vote outcome not known yet (checked again by the next start_review or "
                   "record_review)" for r in self._ledger.reviews(session.id) if r.vote_state == "sending"]
        started = self._ledger.latest_improvement(session.id)
        if started is not None and not started.progress_id:
            checks.append("auto-improve: the start's outcome is unknown; look for a running improvement on the "
                          "metric's Labs page before starting one with process_feedbacks")
        return Progress(
            session_id=session.id, metric=f"{metric.id}: {metric.name}", reviewed=len(reviews),
            agreed=sum(r.agreed for r in reviews), disagreed=sum(not r.agreed for r in reviews),
            feedback=sum(1 for r in reviews if r.lab_state == "added"), needed=session.feedback_threshold,
            auto_improve=session.auto_improve, check=checks,
        )

    # ---- queue ---------------------------------------------------------------------------

    async def next_call(self, *, agent_id: int, metric_id: int) -> NextReview:
        return await self._next(agent_id, await self._client.get_metric(metric_id))

    async def _next(self, agent_id: int, metric: Metric) -> NextReview:
        metric_id = metric.id
        session = self._session(agent_id, metric_id)
        reviews = self._ledger.reviews(session.id)
        done = {r.call_id for r in reviews}
        rows = [r for r in await self._sample(agent_id) if r.metric(metric_id) is not None]
        ranked = rank_candidates(rows, metric, skip=done, reviewed_values=[r.result_was or "" for r in reviews])
        progress = self._progress(session, metric)
        if not ranked:
            return NextReview(progress=progress, why_picked=["every call in the sample is reviewed"])
        row, reasons = ranked[0]
        detail = await self._client.get_call(row.id)
        result = detail.metric(metric_id)
        cited = moments(result.explanation) if result else []
        view = review_view(detail, metric_id=metric_id, around=cited, window_seconds=20.0)
        return NextReview(
            progress=progress, call=view, why_picked=reasons,
            question=f"Call {row.id} was scored {view.metric.value if view.metric else '?'} on {metric.name}. "
                     "Do you agree? If not: what is the right value, and which moment shows it?",
        )

    async def _sample(self, agent_id: int) -> list[CallRow]:
        """The recent calls the queue ranks. A page of 200 calls with transcripts is heavy, so it is read
        once per few minutes, not once per review: reviewed calls are skipped through the ledger anyway."""
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
        earlier = next((r for r in self._ledger.reviews(session.id) if r.call_id == call_id), None)
        if earlier is not None and earlier.vote_state == "sent":
            raise InputError("call_id", f"call {call_id} is already reviewed in this session.",
                             "Call next_review for the next call.")
        if earlier is not None:
            wait = max(1, round(self._settling(earlier)))
            raise OutcomeUnknownError(
                f"The earlier vote on call {call_id}", "Cekura does not show it yet, and it may still arrive",
                f"Wait {wait} s and call record_review again: the server then checks once more and sends the "
                "vote only if it never arrived.")
        call = await self._client.get_call(call_id)
        result = call.metric(metric_id)
        if result is None:
            raise InputError("metric_id", f"metric {metric_id} has no result on call {call_id}.",
                             "Review a call the metric ran on (next_review picks one).")
        expected, feedback = self._feedback(metric, result.value, agree, expected_value, reason, insist)
        review_id = self._ledger.begin_review(session.id, call_id=call_id, metric_id=metric_id, agreed=agree,
                                              result_was=result.value, expected=expected, feedback=feedback)
        await self._send_vote(review_id, call_id, metric_id, agree, expected, feedback)
        lab_note = await self._add_to_lab(review_id, call_id, metric_id, expected, feedback)
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

    def _feedback(
        self, metric: Metric, actual: str | None, agree: bool, raw: Any, reason: str, insist: bool,
    ) -> tuple[Any, str]:
        if agree:
            expected = expected_from_input(metric, raw) if raw is not None else result_as_expected(metric, actual)
            text = reason.strip() or f"The result {display(expected)} is right for this call."
            return expected, text
        if raw is None:
            raise InputError("expected_value", "a disagreement must say what the right value is.",
                             'Ask the person: true/false or "N/A" for binary metrics, a label for enum ones.')
        expected = expected_from_input(metric, raw)
        verdict = check_disagreement(reason)
        if not verdict.ok and not insist:
            raise InputError("reason", "this feedback would teach auto-improve little: " + "; ".join(verdict.problems)
                             + ".", verdict.hint + " If the person insists on this wording, pass insist=true.")
        text = reason.strip()
        if not mentions_outcome(text, display(expected)):
            text += f" The correct result is {display(expected)}."
        return expected, text

    async def _send_vote(self, review_id: int, call_id: int, metric_id: int, agree: bool, expected: Any,
                         feedback: str) -> None:
        try:
            answer = await self._client.mark_metric_vote(call_id, metric_id=metric_id, thumbs_up=agree,
                                                         expected_value=expected, feedback=feedback)
        except OutcomeUnknownError:
            # Left as 'sending': the next start_review checks whether it landed.
            raise
        except CekuraError:
            self._ledger.forget_review(review_id)
            raise
        self._ledger.mark_vote(review_id, "sent", answer)

    async def _add_to_lab(self, review_id: int, call_id: int, metric_id: int, expected: Any, feedback: str) -> str:
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
        return f"added to the Lab (test set {test_set.id})."

    # ---- hands-free auto-improve ---------------------------------------------------------

    async def _maybe_improve(self, session: Session, metric: Metric,
                             on_progress: ProgressCallback) -> ImprovementResult | None:
        if not session.auto_improve or self._ledger.latest_improvement(session.id) is not None:
            return None
        test_sets = [r.test_set_id for r in self._ledger.reviews(session.id)
                     if r.lab_state == "added" and r.test_set_id is not None]
        if len(test_sets) < session.feedback_threshold:
            return None
        # Intent first: after an unknown outcome or a crash, auto-improve is never started a second time.
        improvement_id = self._ledger.add_improvement(session.id, "", test_sets)
        try:
            started = await self._improve.start(metric_id=metric.id, test_set_ids=test_sets)
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
        except CekuraError as exc:
            return ImprovementResult(progress_id=started.progress_id, done=False, metric_id=metric.id,
                                     message=f"Auto-improve is running, but waiting for it failed: {exc.message} "
                                             "Call poll_progress with this progress_id to resume.")
        if result.done:
            self._ledger.finish_improvement(improvement_id, result.status or "completed", result.model_dump())
        return result

    # ---- triage --------------------------------------------------------------------------

    async def triage(self, *, agent_id: int, metric_id: int, failing_value: str | None, sample: int,
                     timestamp_from: str | None, timestamp_to: str | None) -> Triage:
        metric = await self._client.get_metric(metric_id)
        value = failing_value or _default_failing(metric)
        selection = CallFilter(metric_id=metric_id, metric_value=value, timestamp_from=timestamp_from,
                               timestamp_to=timestamp_to)
        head = await self._client.list_calls(agent_id=agent_id, page_size=1, filters_v2=selection.filters_v2(),
                                             timestamp_from=timestamp_from, timestamp_to=timestamp_to)
        total = max(head.count or 0, len(head.results))
        rows: list[CallRow] = []
        if total:
            page = await self._client.list_calls(agent_id=agent_id, page_size=min(sample, SAMPLE),
                                                 filters_v2=selection.filters_v2(), timestamp_from=timestamp_from,
                                                 timestamp_to=timestamp_to)
            rows = page.results[:sample]
        # List rows may carry a result without its explanation: read those calls, concurrently (bounded).
        bare = [row.id for row in rows if (r := row.metric(metric_id)) is not None and not r.explanation]
        details = await self._client.get_calls(bare) if bare else {}
        items = [(row.id, explanation_text(r)) for row in rows
                 if (r := (details.get(row.id) or row).metric(metric_id)) is not None]
        clusters = cluster_explanations(items)
        read = len(items)
        causes = [Cause(cause=one_line(c.representative(), 200), key_terms=c.signature(5), count=len(c.members),
                        share=round(len(c.members) / read, 2), example_call_ids=c.members[:5])
                  for c in clusters if len(c.members) >= 2 or read < 10][:8]
        return Triage(metric=f"{metric.id}: {metric.name}", failing_value=value, failing_total=total, read=read,
                      causes=causes, advice=_triage_advice(causes, read))


def _default_failing(metric: Metric) -> str:
    if metric.eval_type == "binary":
        return "FALSE"
    if metric.eval_type == "enum" and metric.enum_values:
        return metric.enum_values[-1]
    raise InputError("failing_value", f"{metric.name} is {metric.eval_type}: which value counts as failing?",
                     "Pass failing_value (e.g. a low score like 1).")


def _triage_advice(causes: Sequence[Cause], read: int) -> str:
    if not causes:
        return "No failing results in the window: nothing systemic to fix by hand."
    top = causes[0]
    if top.share >= 0.25 and top.count >= 3:
        return (f"{top.count} of {read} failures share one cause. Read two of the example calls; if the judge is "
                "wrong there, fix the prompt by hand first (SCOPE & FOCUS, a DO NOT FLAG clause, narrower "
                "FAILURE CONDITIONS), patch, and re-run a 20–30 call sample before spending Lab iterations.")
    return "Failures are spread over many causes: review calls one at a time (next_review) and use the Lab."


def rank_candidates(
    rows: Sequence[CallRow], metric: Metric, *, skip: set[int], reviewed_values: Sequence[str],
) -> list[tuple[CallRow, list[str]]]:
    """Calls most likely misjudged first, skipping reviewed ones and leaning toward the side (pass or
    fail) that has had fewer reviews, so the feedback is not one-sided."""
    results = {row.id: r for row in rows if (r := row.metric(metric.id)) is not None}
    values = Counter((r.value or "") for r in results.values())
    failing = _failing_set(metric)
    clusters = cluster_explanations([(cid, explanation_text(r)) for cid, r in results.items()
                                     if (r.value or "") in failing])
    cluster_size = {cid: len(c.members) for c in clusters for cid in c.members}
    by_topic: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.id in results:
            by_topic[row.topic or ""][results[row.id].value or ""] += 1
    reviewed_fail = sum(1 for v in reviewed_values if v in failing)
    lean = reviewed_fail - (len(reviewed_values) - reviewed_fail)
    ranked: list[tuple[float, int, CallRow, list[str]]] = []
    for row in rows:
        result = results.get(row.id)
        if result is None or row.id in skip or row.is_reviewed:
            continue
        score, reasons = _suspicion(row, result.value or "", metric, values, failing, cluster_size, by_topic)
        is_fail = (result.value or "") in failing
        # Two reviews more on one side than the other: the next one comes from the other side.
        if (lean >= 2 and not is_fail) or (lean <= -2 and is_fail):
            score += 100.0
            reasons = [*reasons, "balances the feedback: the last reviews leaned to the other side"]
        ranked.append((score, -row.id, row, reasons or ["no warning sign: a check on a typical result"]))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return [(row, reasons) for _, _, row, reasons in ranked]


def _failing_set(metric: Metric) -> set[str]:
    if metric.eval_type == "binary":
        return {"FALSE"}
    if metric.eval_type == "enum" and metric.enum_values:
        return {metric.enum_values[-1]}
    return {v for v in ("0", "1", "2", "0.0", "1.0", "2.0")}


def _suspicion(
    row: CallRow, value: str, metric: Metric, values: Counter[str], failing: set[str],
    cluster_size: dict[int, int], by_topic: dict[str, Counter[str]],
) -> tuple[float, list[str]]:
    score, reasons = 0.0, []
    size = cluster_size.get(row.id, 0)
    if value in failing and size >= 3:
        score += 2.0 + size / max(1, sum(values[v] for v in failing))
        reasons.append(f"{value} for a reason shared by {size} failing calls: a recurring pattern may be misjudged")
    topic = by_topic.get(row.topic or "", Counter())
    majority, majority_count = topic.most_common(1)[0] if topic else ("", 0)
    if row.topic and sum(topic.values()) >= 5 and value != majority and majority_count >= 0.7 * sum(topic.values()):
        score += 1.5
        reasons.append(f"{value} while most '{row.topic}' calls are {majority}: disagrees with similar calls")
    total = sum(values.values())
    if value in ("N/A", "") and values[value] <= 0.15 * total:
        score += 1.0
        reasons.append("an unexpected N/A")
    if total and values[value] <= 0.1 * total and value not in failing:
        score += 0.5
        reasons.append(f"a rare value ({values[value]} of {total})")
    return score, reasons


def reviewed_calls(reviews: Sequence[Review]) -> list[Review]:
    return [r for r in reviews if r.vote_state == "sent"]
