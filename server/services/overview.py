"""The front door of the labs cycle: which of an agent's metrics most needs work, and why.

For each metric over a time window: its result distribution (pass / fail / N/A, or a histogram for
enum and numeric metrics), its failure and N/A rates, the change against the window before, and what
the person's reviews so far say (from the ledger). Metrics are ranked by how likely their judge is
misaligned, from signals the labs workflow names: disagreements in reviews, a sudden shift, unexpected
N/A results, a failure rate far from its peers, results that vary across similar calls, and failures
that share one recurring reason. Every score comes with its reasons, so the person can weigh them.

Reads are bounded: the calls of each window (newest first, pages of up to 200, `max_calls` in all; each
call carries every metric's result), so one read serves every metric. When a window holds more calls
than were read, the answer says so and its rates describe the newest calls only.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.cekura.results import NA_TEXT, UNREADABLE_TEXT, read_result
from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.ledger import Ledger, Review
from cekura_labs_mcp.server.presenting import explanation_text, one_line
from cekura_labs_mcp.server.services.analysis import cluster_explanations
from cekura_labs_mcp.server.services.calls import require_scope
from pydantic import BaseModel, Field

PAGE = 200
MAX_CALLS = 1000
MAX_WINDOW_DAYS = 33  # Cekura lists at most 33 days at once
NA = NA_TEXT
UNREADABLE = UNREADABLE_TEXT
# Below these many results a rate says too little to rank on (it is still shown).
MIN_RESULTS = 20
MIN_TOPIC = 5


# ---- what the tool returns ----------------------------------------------------------------


class Reviews(BaseModel):
    reviewed: int
    disagreed: int
    by_verdict: dict[str, str] = Field(
        description="The metric's result at review time → 'disagreed/reviewed' for that result.")


class MetricHealth(BaseModel):
    rank: int
    metric: str = Field(description="`id: name`.")
    kind: str = Field(description="eval type; `code` marks a custom_code metric.")
    agents: list[int] | None = Field(default=None, description="The agents it scores (project scope only).")
    results: int = Field(description="Results read in the window.")
    dist: dict[str, int] = Field(description="Result → count (numbers binned by whole points, e.g. `2` = 2-2.9).")
    fail_rate: float | None = Field(default=None, description="FALSE share of applicable results (binary only).")
    na_rate: float
    change: str | None = Field(default=None, description="The largest move against the previous window.")
    reviews: Reviews | None = None
    score: float = Field(description="Likelihood of misalignment, relative to the others (higher: look first).")
    why: list[str] = Field(description="The signals behind the score, strongest first.")
    note: str | None = Field(default=None, description="Something to check that is not a sign of misjudging, e.g. "
                             "a metric passing every call for one stated reason.")


class Window(BaseModel):
    start: str
    end: str
    calls: int = Field(description="Calls in the window, as counted by Cekura.")
    read: int = Field(description="Calls actually read (newest first).")


class Overview(BaseModel):
    scope: str
    window: Window
    previous: Window
    sampled: str | None = Field(default=None, description="Set when a window held more calls than were read.")
    metrics: list[MetricHealth]
    next_step: str = ""


# ---- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One metric's result on one call, as the overview weighs it."""

    call_id: int
    topic: str | None
    value: str
    explanation: str


def observations(rows: Sequence[CallRow], metric: Metric) -> list[Observation]:
    """The metric's results on the calls read, through the one result reader; calls it did not run on are
    left out. A result the reader cannot read counts as `unreadable`, never as N/A or FALSE."""
    found: list[Observation] = []
    for row in rows:
        result = row.metric(metric.id)
        if result is None:
            continue
        reading = read_result(result, metric)
        value = reading.text if reading.readable else UNREADABLE
        found.append(Observation(row.id, row.topic or None, value, explanation_text(result)))
    return found


@dataclass(frozen=True)
class CallsRead:
    rows: list[CallRow]
    count: int


class OverviewService:
    def __init__(self, client: CekuraClient, ledger: Ledger) -> None:
        self._client = client
        self._ledger = ledger

    async def overview(
        self, *, agent_id: int | None, project_id: int | None, days: int, until: str | None,
        metric_ids: Sequence[int] | None, max_calls: int, now: datetime | None = None,
    ) -> Overview:
        require_scope(agent_id, project_id)
        end = _instant(until) if until else (now or datetime.now(UTC))
        start = end - timedelta(days=days)
        before = start - timedelta(days=days)
        metrics = await self._client.list_metrics(agent_id=agent_id, project_id=project_id)
        if metric_ids:
            wanted = set(metric_ids)
            metrics = [m for m in metrics if m.id in wanted]
            if not metrics:
                raise InputError("metric_ids", "none of these metrics belongs to the agent or project.",
                                 "Leave metric_ids out, or use ids of the agent's or project's own metrics.")
        current: CallsRead | None = None
        previous: CallsRead | None = None

        async def read_current() -> None:
            nonlocal current
            current = await self._read(agent_id, project_id, start, end, max_calls)

        async def read_previous() -> None:
            nonlocal previous
            previous = await self._read(agent_id, project_id, before, start, max_calls)

        async with anyio.create_task_group() as group:
            group.start_soon(read_current)
            group.start_soon(read_previous)
        assert current is not None and previous is not None
        reviews = {m.id: self._ledger.metric_reviews(m.id, agent_id=agent_id, since=self._changed_at(m.id))
                   for m in metrics}
        ranked = rank_metrics(metrics, current.rows, previous.rows, reviews)
        if agent_id is None:
            agents = {m.id: sorted(a for a in m.agents if a is not None) for m in metrics}
            ranked = [h.model_copy(update={"agents": agents.get(_metric_id(h))}) for h in ranked]
        sampled = _sampling_note(current, previous)
        scope = f"agent {agent_id}" if agent_id is not None else f"project {project_id}"
        return Overview(
            scope=scope,
            window=Window(start=_iso(start), end=_iso(end), calls=current.count, read=len(current.rows)),
            previous=Window(start=_iso(before), end=_iso(start), calls=previous.count, read=len(previous.rows)),
            sampled=sampled, metrics=ranked,
        )

    def _changed_at(self, metric_id: int) -> float:
        """Reviews judged the metric as it was: after this server changed its prompt, only later ones count."""
        versions = self._ledger.metric_versions(metric_id)
        return max((v.at for v in versions), default=0.0)

    async def _read(self, agent_id: int | None, project_id: int | None, start: datetime, end: datetime,
                    max_calls: int) -> CallsRead:
        """The newest calls of the window: one page, then (if the window holds more and `max_calls` allows)
        the further pages at once, within the client's concurrency limit."""
        frm, to = _iso(start), _iso(end)
        size = min(PAGE, max_calls)
        first = await self._client.list_calls(agent_id=agent_id, project_id=project_id, page=1, page_size=size,
                                              timestamp_from=frm, timestamp_to=to)
        count = max(first.count or 0, len(first.results))
        pages: dict[int, list[CallRow]] = {1: first.results}
        wanted = min(math.ceil(min(count, max_calls) / size), math.ceil(max_calls / size))
        if first.next is not None and wanted > 1:
            async def one(page: int) -> None:
                answer = await self._client.list_calls(agent_id=agent_id, project_id=project_id, page=page,
                                                       page_size=size, timestamp_from=frm, timestamp_to=to)
                pages[page] = answer.results

            async with anyio.create_task_group() as group:
                for page in range(2, wanted + 1):
                    group.start_soon(one, page)
        rows = [row for page in sorted(pages) for row in pages[page]][:max_calls]
        # `count` has been seen to be 0 while results exist: never report fewer calls than were read.
        return CallsRead(rows=rows, count=max(count, len(rows)))


def _metric_id(health: MetricHealth) -> int:
    return int(health.metric.split(":", 1)[0])


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("until", f"{text!r} is not an ISO 8601 time.",
                         'Give it like "2026-11-30" or "2026-11-30T12:00:00Z", or leave it out for now.') from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sampling_note(current: CallsRead, previous: CallsRead) -> str | None:
    parts = [f"{label}: the newest {len(w.rows)} of {w.count} calls"
             for label, w in (("window", current), ("previous window", previous)) if w.count > len(w.rows)]
    if not parts:
        return None
    return "; ".join(parts) + ". Rates describe those calls only; raise max_calls (up to 1000) to read more."


# ---- ranking (pure: the metrics, the calls read, the reviews) ------------------------------

# How much each signal can add to a metric's score. A person's disagreements are direct evidence; the
# rest are the warning signs the labs workflow lists, each only a reason to look.
WEIGHTS = {
    "disagreement": 3.0,
    "shift": 1.5,
    "unexpected_na": 1.0,
    "peers": 1.0,
    "variance": 1.0,
    "recurring": 1.0,
    "topic": 1.0,
}


@dataclass(frozen=True)
class Signal:
    name: str
    strength: float  # 0..1
    reason: str

    @property
    def points(self) -> float:
        return WEIGHTS[self.name] * self.strength


def rank_metrics(
    metrics: Sequence[Metric], current: Sequence[CallRow], previous: Sequence[CallRow],
    reviews: dict[int, list[Review]],
) -> list[MetricHealth]:
    now = {m.id: observations(current, m) for m in metrics}
    before = {m.id: observations(previous, m) for m in metrics}
    uniforms = {m.id: uniform for m in metrics if (uniform := uniform_pass(m, now[m.id])) is not None}
    # A metric whose verdict does not depend on the call is no yardstick for the others' failure rates either.
    fail_rates = {m.id: rate for m in metrics if (rate := fail_rate(m, now[m.id])) is not None
                  and applicable(now[m.id]) >= MIN_RESULTS and m.id not in uniforms}
    rows: list[tuple[float, int, MetricHealth]] = []
    for metric in metrics:
        if not now[metric.id] and not reviews.get(metric.id):
            continue
        peers = [rate for other, rate in fail_rates.items() if other != metric.id]
        uniform = uniforms.get(metric.id)
        signals = assess(metric, now[metric.id], before[metric.id], [] if uniform else peers,
                         reviews.get(metric.id, []))
        signals.sort(key=lambda s: -s.points)
        score = round(sum(s.points for s in signals), 2)
        health = MetricHealth(
            rank=0, metric=f"{metric.id}: {metric.name}", kind=_kind(metric), results=len(now[metric.id]),
            dist=distribution(metric, now[metric.id]), fail_rate=fail_rate(metric, now[metric.id]),
            na_rate=_share(sum(o.value == NA for o in now[metric.id]), len(now[metric.id])),
            change=change_line(metric, now[metric.id], before[metric.id]),
            reviews=review_summary(reviews.get(metric.id, [])), score=score,
            why=[s.reason for s in signals if s.points >= 0.1] or ["no warning sign"],
            note=uniform_note(metric, uniform) if uniform else None,
        )
        rows.append((score, metric.id, health))
    rows.sort(key=lambda item: (-item[0], item[1]))
    return [health.model_copy(update={"rank": i}) for i, (_, _, health) in enumerate(rows, start=1)]


def assess(metric: Metric, now: Sequence[Observation], before: Sequence[Observation], peer_fail_rates: Sequence[float],
           reviews: Sequence[Review]) -> list[Signal]:
    found = [disagreement(reviews), shift(metric, now, before), unexpected_na(now),
             peers(metric, now, peer_fail_rates)]
    if metric.is_llm_judge:
        # A custom_code metric's results follow its code and its explanations are templates: results that
        # vary across similar calls, or failures sharing one reason, say nothing about judging there.
        found += [variance(metric, now), recurring(metric, now), topic_outlier(metric, now)]
    return [s for s in found if s is not None]


def bucket(metric: Metric, value: str) -> str:
    """Numbers are binned by whole points (2.5 → "2"), so a histogram of a 0-5 score has six bins."""
    if value == NA or metric.eval_type not in ("numeric", "continuous_qualitative"):
        return value
    try:
        return str(math.floor(float(value)))
    except ValueError:
        return value


def distribution(metric: Metric, results: Sequence[Observation]) -> dict[str, int]:
    counts = Counter(bucket(metric, o.value) for o in results)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def scored(observation: Observation) -> bool:
    """A result that says pass, fail, a label or a number (not N/A, not unreadable)."""
    return observation.value not in (NA, UNREADABLE)


def applicable(results: Sequence[Observation]) -> int:
    return sum(scored(o) for o in results)


def fail_rate(metric: Metric, results: Sequence[Observation]) -> float | None:
    if metric.eval_type != "binary":
        return None
    judged = applicable(results)
    return _share(sum(o.value.upper() == "FALSE" for o in results), judged) if judged else None


def _failing(metric: Metric, observation: Observation) -> bool:
    return metric.eval_type == "binary" and observation.value.upper() == "FALSE"


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def _kind(metric: Metric) -> str:
    return f"{metric.eval_type} code" if not metric.is_llm_judge else metric.eval_type


def _pct(rate: float) -> str:
    return f"{round(rate * 100)}%"


# ---- the signals ---------------------------------------------------------------------------


def disagreement(reviews: Sequence[Review]) -> Signal | None:
    """The person's own verdicts: the strongest evidence, weighed by how many there are (1 review is a hint)."""
    done = [r for r in reviews if r.vote_state == "sent"]
    if not done:
        return None
    disagreed = sum(not r.agreed for r in done)
    if not disagreed:
        return Signal("disagreement", 0.0, f"the person agreed with all {len(done)} reviewed results")
    confidence = len(done) / (len(done) + 2)
    return Signal("disagreement", disagreed / len(done) * confidence,
                  f"the person disagreed with {disagreed} of {len(done)} reviewed results")


def review_summary(reviews: Sequence[Review]) -> Reviews | None:
    done = [r for r in reviews if r.vote_state == "sent"]
    if not done:
        return None
    by: dict[str, list[bool]] = defaultdict(list)
    for review in done:
        by[review.result_was or NA].append(review.agreed)
    return Reviews(reviewed=len(done), disagreed=sum(not r.agreed for r in done),
                   by_verdict={value: f"{sum(not a for a in agreed)}/{len(agreed)}"
                               for value, agreed in sorted(by.items())})


# Chi-square critical values at p = 0.01 for 1..10 degrees of freedom: a move smaller than this is noise.
_CHI2_01 = (6.63, 9.21, 11.34, 13.28, 15.09, 16.81, 18.48, 20.09, 21.67, 23.21)


def shift(metric: Metric, now: Sequence[Observation], before: Sequence[Observation]) -> Signal | None:
    """A sudden change of the distribution against the previous window (a chi-square test at p < 0.01, so a
    sample's noise does not count), scored by how far it moved (total variation distance)."""
    if len(now) < MIN_RESULTS or len(before) < MIN_RESULTS:
        return None
    a, b = Counter(bucket(metric, o.value) for o in now), Counter(bucket(metric, o.value) for o in before)
    labels = sorted(set(a) | set(b))
    if len(labels) < 2:
        return None
    n_a, n_b = len(now), len(before)
    chi2 = 0.0
    for label in labels:
        total = a[label] + b[label]
        for count, n in ((a[label], n_a), (b[label], n_b)):
            expected = total * n / (n_a + n_b)
            chi2 += (count - expected) ** 2 / expected
    critical = _CHI2_01[min(len(labels) - 2, len(_CHI2_01) - 1)]
    moved = 0.5 * sum(abs(a[label] / n_a - b[label] / n_b) for label in labels)
    if chi2 < critical:
        return None
    return Signal("shift", min(1.0, moved / 0.3), f"a sudden shift: {change_line(metric, now, before)}")


def change_line(metric: Metric, now: Sequence[Observation], before: Sequence[Observation]) -> str | None:
    """The result whose share moved most, e.g. "FALSE 12% → 31% (previous window: 80 results)"."""
    if not now or not before:
        return None
    a, b = Counter(bucket(metric, o.value) for o in now), Counter(bucket(metric, o.value) for o in before)
    label = max(sorted(set(a) | set(b)), key=lambda v: abs(a[v] / len(now) - b[v] / len(before)))
    return f"{label} {_pct(b[label] / len(before))} → {_pct(a[label] / len(now))} (previous: {len(before)} results)"


def unexpected_na(now: Sequence[Observation]) -> Signal | None:
    """N/A where similar calls (the same topic) are mostly scored: the judge may be skipping calls it should
    judge. N/A on calls of a kind that is mostly N/A (hang-ups, wrong numbers) is expected and not counted."""
    by_topic = _by_topic(now)
    odd = 0
    for results in by_topic.values():
        na = sum(o.value == NA for o in results)
        if len(results) >= MIN_TOPIC and na and applicable(results) >= 0.7 * len(results):
            odd += na
    if not odd:
        return None
    return Signal("unexpected_na", min(1.0, odd / max(3.0, 0.1 * len(now))),
                  f"{odd} unexpected N/A: on calls whose topic is otherwise scored")


def peers(metric: Metric, now: Sequence[Observation], peer_rates: Sequence[float]) -> Signal | None:
    """A failure rate far from the other metrics' (the median, so one odd peer does not move the yardstick)."""
    rate = fail_rate(metric, now)
    if rate is None or applicable(now) < MIN_RESULTS or len(peer_rates) < 2:
        return None
    middle = sorted(peer_rates)[len(peer_rates) // 2] if len(peer_rates) % 2 else \
        sum(sorted(peer_rates)[len(peer_rates) // 2 - 1: len(peer_rates) // 2 + 1]) / 2
    gap = abs(rate - middle)
    if gap < 0.15:
        return None
    strength = min(1.0, (gap - 0.1) / 0.3)
    if rate < middle:
        # Failing far less than the others is only a weak sign: a metric may rightly have little to catch. The
        # labs workflow's systemic sign is the other direction, a high (false-)fail rate.
        return Signal("peers", strength / 2, f"fails only {_pct(rate)} of scored calls; the other metrics' median "
                                             f"is {_pct(middle)}: too lenient?")
    return Signal("peers", strength, f"fails {_pct(rate)} of scored calls; the other metrics' median is {_pct(middle)}")


@dataclass(frozen=True)
class UniformPass:
    scored: int
    same_reason: int
    reason: str


def uniform_pass(metric: Metric, now: Sequence[Observation]) -> UniformPass | None:
    """A binary metric that passes every call it scored, nearly all for one stated reason: its verdict does not
    depend on the call, and the reason says why (e.g. "there is nothing to check the answers against"). Its 0%
    failure rate then reflects that reason, not a lenient judge, so it is not weighed against the other metrics'
    rates (which measure other things, often on other calls); the reason is shown as a note instead. A metric
    that passes every call with call-specific reasons is judging, and keeps its signals."""
    if metric.eval_type != "binary":
        return None
    judged = [o for o in now if scored(o)]
    if len(judged) < MIN_RESULTS or any(o.value.upper() != "TRUE" for o in judged):
        return None
    explained = [o for o in judged if o.explanation]
    if len(explained) < 0.9 * len(judged):
        return None
    top = cluster_explanations([(o.call_id, o.explanation) for o in explained])[0]
    if len(top.members) < 0.9 * len(judged):
        return None
    return UniformPass(len(judged), len(top.members), top.representative())


def uniform_note(metric: Metric, uniform: UniformPass) -> str:
    share = "all" if uniform.same_reason == uniform.scored else f"{uniform.same_reason} of them"
    cost = f"; it costs {metric.metric_cost:g} credits a call" if metric.metric_cost else ""
    return (f"passes all {uniform.scored} scored calls, {share} for one reason: \"{one_line(uniform.reason, 140)}\". "
            f"Its result does not depend on the call: check that reason (a missing setup?) before reviewing its "
            f"verdicts{cost}.")


def variance(metric: Metric, now: Sequence[Observation]) -> Signal | None:
    """Results that vary across similar calls (the same topic): the spread within topics, in bits of
    entropy, so a metric with more possible results has more room to be inconsistent."""
    spread, weight = 0.0, 0
    for results in _by_topic(now).values():
        if len(results) < MIN_TOPIC:
            continue
        counts = Counter(bucket(metric, o.value) for o in results)
        spread += len(results) * -sum(c / len(results) * math.log2(c / len(results)) for c in counts.values())
        weight += len(results)
    if weight < MIN_RESULTS:
        return None
    bits = spread / weight
    if bits < 0.3:
        return None
    return Signal("variance", min(1.0, bits / 1.5),
                  f"varies across similar calls: {bits:.1f} bits of spread within a topic")


def recurring(metric: Metric, now: Sequence[Observation]) -> Signal | None:
    """Most failures give one reason, on different kinds of call: a systemic pattern ("cross-pollination from
    other flows", in the labs workflow's words), which it says to check and fix by hand first. A reason
    confined to one kind of call is more likely that kind's real problem, so it counts only when calls carry
    no topic to tell."""
    failing = [o for o in now if _failing(metric, o) and o.explanation]
    if len(failing) < MIN_TOPIC:
        return None
    top = cluster_explanations([(o.call_id, o.explanation) for o in failing])[0]
    share = len(top.members) / len(failing)
    if len(top.members) < MIN_TOPIC or share < 0.4:
        return None
    members = set(top.members)
    topics = Counter(o.topic for o in failing if o.call_id in members and o.topic)
    spread = len(topics)
    if topics and spread < 2:
        return None
    where = f", on {spread} kinds of call" if topics else ""
    return Signal("recurring", share, f"{len(top.members)} of {len(failing)} failures give one reason{where}: "
                                      f"\"{one_line(top.representative(), 90)}\"")


def topic_outlier(metric: Metric, now: Sequence[Observation]) -> Signal | None:
    """A topic that fails far more often than the rest: the metric may apply where it should say N/A, or
    judge one kind of call by another kind's rules."""
    best: tuple[float, str, int, int, float] | None = None
    by_topic = _by_topic(now)
    for topic, results in by_topic.items():
        judged = [o for o in results if scored(o)]
        rest = [o for t, rs in by_topic.items() if t != topic for o in rs if scored(o)]
        if len(judged) < MIN_TOPIC or len(rest) < MIN_TOPIC:
            continue
        here = sum(_failing(metric, o) for o in judged) / len(judged)
        there = sum(_failing(metric, o) for o in rest) / len(rest)
        if here - there >= 0.5 and (best is None or here - there > best[0]):
            best = (here - there, topic, sum(_failing(metric, o) for o in judged), len(judged), there)
    if best is None:
        return None
    gap, topic, failed, scored_n, there = best
    return Signal("topic", min(1.0, gap / 0.7),
                  f"fails {failed} of {scored_n} '{topic}' calls against {_pct(there)} of the others: "
                  "should it apply there, or score N/A?")


def _by_topic(results: Sequence[Observation]) -> dict[str, list[Observation]]:
    grouped: dict[str, list[Observation]] = defaultdict(list)
    for o in results:
        if o.topic:
            grouped[o.topic].append(o)
    return grouped
