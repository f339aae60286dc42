"""Which call to put before the person next: pure functions over the rows a client reads.

Every signal uses only what a real Cekura client sees on a call list — each metric's value and
explanation, the call's topic, the other metrics' results on the same call — never anything the
judge knows and does not show. A call's suspicion is the sum of its signals, each with its reason, so
the person always hears why a call was picked.

The signals, and the misjudgment each one points at:
- a failing reason shared by many failing calls: a recurring pattern the judge may misread;
- a kind of call (topic) that always fails while others pass: the metric may not apply to it (N/A);
- a value that differs from most calls of the same topic: a call judged unlike its peers;
- an explanation whose quoted words contradict its value (a complaint labelled as praise, say);
- an explanation that cites the same stock phrase at several moments, or credits without quoting any;
- a value at odds with the other metrics on the same call;
- a rare value, an unexpected N/A.
They reach passing results as well as failing ones. The queue leans to the side (pass or fail) with
fewer reviews only when that side has a call nearly as suspicious as the top one: a balanced set of
Lab entries is worth having, but not at the price of showing calls little points at.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cekura_labs_mcp.server.cekura.models import CallRow, Metric, MetricResult
from cekura_labs_mcp.server.cekura.results import shown
from cekura_labs_mcp.server.presenting import explanation_text
from cekura_labs_mcp.server.services.analysis import cluster_explanations

NA = "N/A"
NUMERIC = ("numeric", "continuous_qualitative")
# A 0–5 score below the middle of the scale fails unless the metric says otherwise.
DEFAULT_NUMERIC_PASS = 3.0
# The other side's best call must score at least this share of the top call's to be moved up for balance.
BALANCE_SHARE = 0.75
NO_SIGN = "no warning sign: a check on a typical result"

# Words a caller uses to complain or to praise. Quoted in an explanation, they say which way the
# quoted moment leans, whatever label the judge gave it.
_COMPLAINT = re.compile(
    r"\b(wait(?:ing|ed)?|longer|hold|queue|again|still|another|nobody|never|ridiculous|frustrat\w*|annoy\w*|"
    r"fed up|not happy|unacceptable|useless|waste|complain\w*|worse|chasing|as always)\b", re.IGNORECASE)
# Praise said with a sneer: "oh great", "yeah, brilliant", "just perfect", "perfect, just perfect".
_IRONY = re.compile(r"\b(?:oh|yeah),? (?:great|brilliant|perfect|wonderful|fantastic)\b|\bjust (?:great|perfect|"
                    r"brilliant|wonderful)\b|\b(\w+), just \1\b", re.IGNORECASE)
_PRAISE = re.compile(
    r"\b(thank(?:s| you)|lovely|brilliant|wonderful|great|perfect|helpful|fantastic|appreciate\w*|pleased|"
    r"relieved|sorted)\b", re.IGNORECASE)
# Quoted words: 'single' (an apostrophe inside a word, as in "let's", does not end it), "double", “curly”.
_QUOTE = re.compile(r"(?<!\w)'((?:[^']|(?<=\w)'(?=\w)){6,}?)'(?!\w)|\"([^\"]{6,})\"|“([^”]{6,})”")
_PASS_MARK = re.compile(r"pass(?:es|ing)?(?: score| mark| threshold)?(?: is| at|:| of)?\s*(?:>=|≥)?\s*(\d+(?:\.\d+)?)",
                        re.IGNORECASE)
_GOOD_LABELS = ("positive", "pass", "good", "satisfied", "happy", "yes", "true")
_BAD_LABELS = ("negative", "fail", "bad", "unsatisfied", "unhappy", "no", "false", "frustrated", "angry")


@dataclass(frozen=True)
class Candidate:
    row: CallRow
    value: str
    failing: bool
    score: float
    reasons: list[str] = field(default_factory=list)


# ---- what counts as failing -----------------------------------------------------------------


def numeric(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def pass_mark(metric: Metric) -> float:
    """The score a numeric result needs to pass: `pass at N` / `passing score: N` in the description, else the
    middle of the 0–5 scale. Half points count: 2.5 fails a pass mark of 3."""
    return _pass_mark_in(metric.description)


@functools.lru_cache(maxsize=256)
def _pass_mark_in(description: str) -> float:
    # Read once per description: ranking a sample asks for every numeric result.
    match = _PASS_MARK.search(description)
    return float(match.group(1)) if match else DEFAULT_NUMERIC_PASS


def is_failing(metric: Metric, value: str | None) -> bool:
    """Binary FALSE, the last label of an enum metric (labels run from best to worst), a score under the pass
    mark. N/A never fails."""
    text = (value or "").strip()
    if not text or text.upper() == NA:
        return False
    if metric.eval_type == "binary":
        return text.upper() == "FALSE"
    if metric.eval_type == "enum":
        return bool(metric.enum_values) and text.lower() == (metric.enum_values or [""])[-1].lower()
    number = numeric(text)
    return number is not None and number < pass_mark(metric)


@functools.lru_cache(maxsize=4096)
def value_key(value: str | None) -> str:
    """One spelling per value: "4" and "4.0" are the same score, "n/a" is N/A. (Cached: a sample has few distinct
    values, and ranking spells each result several times.)"""
    text = (value or "").strip()
    if not text or text.upper() == NA:
        return NA
    number = numeric(text)
    return f"{number:g}" if number is not None else text


# ---- the queue ------------------------------------------------------------------------------


def score_all(rows: Sequence[CallRow], metric: Metric) -> list[Candidate]:
    """Every call of the sample with a result, scored, most suspicious first."""
    sample = Sample.of(rows, metric)
    scored = [sample.candidate(row) for row in rows if row.id in sample.results]
    scored.sort(key=lambda c: (-c.score, -c.row.id))
    return scored


def rank_candidates(
    rows: Sequence[CallRow], metric: Metric, *, skip: set[int], reviewed_values: Sequence[str],
    balance: bool = True, keep: set[int] | None = None, scored: Sequence[Candidate] | None = None,
) -> list[Candidate]:
    """Unreviewed calls, most likely misjudged first. `reviewed_values` are the results (as shown) of the calls
    already reviewed in the session: they decide which side the balance rule leans to. `keep`: calls ranked even
    though Cekura shows them reviewed (the team's own, whose leases say whether a second reviewer may have them).
    `scored`: `score_all(rows, metric)`, when the caller already has it."""
    kept = keep or set()
    ranked = [c for c in (score_all(rows, metric) if scored is None else scored)
              if c.row.id not in skip and (not c.row.is_reviewed or c.row.id in kept)]
    if balance:
        ranked = _balanced(ranked, metric, reviewed_values)
    return ranked


def _balanced(ranked: list[Candidate], metric: Metric, reviewed_values: Sequence[str]) -> list[Candidate]:
    """Two reviews more on one side than the other: the next call comes from the other side — if that side has a
    call nearly as suspicious as the top one. Otherwise the order stands: a call nothing points at teaches the
    optimizer little and costs the person a review."""
    failed = sum(1 for v in reviewed_values if is_failing(metric, v))
    lean = failed - (len(reviewed_values) - failed)
    if abs(lean) < 2 or not ranked:
        return ranked
    want_failing = lean <= -2
    pick = next((c for c in ranked if c.failing == want_failing and c.score >= BALANCE_SHARE * ranked[0].score > 0),
                None)
    if pick is None or pick is ranked[0]:
        return ranked
    side = "failing" if want_failing else "passing"
    moved = Candidate(pick.row, pick.value, pick.failing, pick.score,
                      [*pick.reasons, f"balances the feedback: the last reviews were mostly on the other side, "
                                      f"and this is the most suspicious {side} result"])
    return [moved, *(c for c in ranked if c is not pick)]


@dataclass
class Sample:
    """What the whole sample says, computed once: the value counts, failing causes, topic profiles and the
    metric's values against every other metric's values on the same calls."""

    metric: Metric
    results: dict[int, MetricResult]
    shown_as: dict[int, str]  # each call's result as shown, read once: reading a result is the costly part
    values: Counter[str]
    cluster_size: dict[int, int]
    failing_total: int
    by_topic: dict[str, Counter[str]]
    joint: dict[tuple[int, str], Counter[str]]
    others: dict[int, dict[int, str]]
    names: dict[int, str]
    _fails: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Sequence[CallRow], metric: Metric) -> Sample:
        results = {row.id: r for row in rows if (r := row.metric(metric.id)) is not None}
        shown_as = {cid: shown(r, metric) for cid, r in results.items()}
        values = Counter(value_key(text) for text in shown_as.values())
        failing = [(cid, explanation_text(r)) for cid, r in results.items() if is_failing(metric, shown_as[cid])]
        clusters = cluster_explanations(failing)
        by_topic: dict[str, Counter[str]] = defaultdict(Counter)
        joint: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
        others: dict[int, dict[int, str]] = {}
        names: dict[int, str] = {}
        for row in rows:
            if row.id not in results:
                continue
            value = value_key(shown_as[row.id])
            if row.topic:
                by_topic[row.topic][value] += 1
            seen = {}
            for other in _other_results(row, metric.id):
                names[other.id] = other.name or str(other.id)
                seen[other.id] = value_key(shown(other))
                joint[(other.id, seen[other.id])][value] += 1
            others[row.id] = seen
        return cls(metric, results, shown_as, values, {cid: len(c.members) for c in clusters for cid in c.members},
                   len(failing), by_topic, joint, others, names)

    def fails(self, value: str) -> bool:
        """`is_failing` for this sample's metric, once per distinct value (the signals ask for every call)."""
        known = self._fails.get(value)
        if known is None:
            known = self._fails[value] = is_failing(self.metric, value)
        return known

    def candidate(self, row: CallRow) -> Candidate:
        result = self.results[row.id]
        value = value_key(self.shown_as[row.id])
        failing = self.fails(self.shown_as[row.id])
        signs = [s for s in (
            self.recurring_cause(row.id, value, failing),
            self.topic_always_fails(row.topic, value, failing),
            self.unlike_its_topic(row.topic, value),
            contradicting_quote(self.metric, value, explanation_text(result)),
            self.at_odds_with_other_metrics(row.id, value),
            self.rare(value, failing),
            unsupported(value, failing, result),
            repeated_evidence(value, result, self.metric.description),
        ) if s is not None]
        score = sum(points for points, _ in signs)
        return Candidate(row, value, failing, round(score, 3), [reason for _, reason in signs] or [NO_SIGN])

    def mostly_failing(self) -> bool:
        applicable = sum(n for v, n in self.values.items() if v != NA)
        return self.failing_total > 0.5 * applicable

    # Each signal: None, or (points, the reason in words the person understands).

    def recurring_cause(self, call_id: int, value: str, failing: bool) -> tuple[float, str] | None:
        """A failing verdict claims a defect; the same defect in the same words on many calls is either the agent's
        systemic fault or the judge misreading a pattern, worth a look either way. Not for enum metrics (their
        last label is a category, and a category's calls share its reason by definition), nor where most results
        fail (then failing is what is typical)."""
        size = self.cluster_size.get(call_id, 0)
        if not failing or size < 3 or self.metric.eval_type == "enum" or self.mostly_failing():
            return None
        return 1.5 + size / max(1, self.failing_total), \
            f"{value} for a reason shared by {size} failing calls: a recurring pattern may be misjudged"

    def topic_always_fails(self, topic: str | None, value: str, failing: bool) -> tuple[float, str] | None:
        profile = self.by_topic.get(topic or "")
        if not failing or profile is None:
            return None
        size = sum(profile.values())
        fails = sum(n for v, n in profile.items() if self.fails(v))
        passes_elsewhere = sum(n for v, n in self.values.items() if not self.fails(v) and v != NA) \
            - sum(n for v, n in profile.items() if not self.fails(v) and v != NA)
        if size < 4 or fails < 0.9 * size or passes_elsewhere < 5 or self.mostly_failing():
            return None
        return 2.0, (f"every '{topic}' call fails ({fails} of {size}) while other calls pass: the metric may not "
                     "apply to this kind of call (N/A?)")

    def unlike_its_topic(self, topic: str | None, value: str) -> tuple[float, str] | None:
        profile = self.by_topic.get(topic or "")
        if profile is None:
            return None
        size = sum(profile.values())
        majority, count = profile.most_common(1)[0]
        if size < 5 or value == majority or count < 0.7 * size:
            return None
        return 0.75, f"{value} while most '{topic}' calls are {majority}: disagrees with similar calls"

    def at_odds_with_other_metrics(self, call_id: int, value: str) -> tuple[float, str] | None:
        """The value is rare among calls that share another metric's value with this one (at most 1 in 10 of at
        least 8 such calls) though common overall: the two metrics tell different stories about the call."""
        total = sum(self.values.values())
        worst: tuple[float, str] | None = None
        for other_id, other_value in self.others.get(call_id, {}).items():
            if other_value == NA or value == NA:
                continue
            peers = self.joint[(other_id, other_value)]
            size = sum(peers.values())
            share = peers[value] / size if size else 1.0
            overall = self.values[value] / total if total else 1.0
            if size >= 8 and share <= 0.1 and overall >= 0.15 and (worst is None or share < worst[0]):
                worst = (share, f"{value}, yet only {peers[value]} of {size} calls with "
                                f"{self.names[other_id]} = {other_value} have it: at odds with the other metric")
        return None if worst is None else (1.0, worst[1])

    def rare(self, value: str, failing: bool) -> tuple[float, str] | None:
        total = sum(self.values.values())
        if not total:
            return None
        if value == NA and self.values[value] <= 0.15 * total:
            return 1.0, f"an unexpected N/A ({self.values[value]} of {total})"
        if value != NA and not failing and self.values[value] <= 0.1 * total:
            return 0.5, f"a rare value ({self.values[value]} of {total})"
        return None


def contradicting_quote(metric: Metric, value: str, explanation: str) -> tuple[float, str] | None:
    """A good label whose explanation quotes a complaint, or a bad label that quotes only praise: the judge read
    the words one way and labelled them the other (sarcasm read as praise, say)."""
    lean = _label_lean(metric, value)
    if lean == 0:
        return None
    quoted = " ".join(next(g for g in m.groups() if g) for m in _QUOTE.finditer(explanation))
    complaints = _words([m.group(0) for m in _IRONY.finditer(quoted)] + _COMPLAINT.findall(quoted))
    praise = _words(_PRAISE.findall(quoted))
    if lean > 0 and complaints:
        return 2.0, f"{value}, but the quoted words complain ({', '.join(complaints[:3])}): the explanation " \
                    "contradicts its value"
    if lean < 0 and praise and not complaints:
        return 1.5, f"{value}, but the quoted words only praise ({', '.join(praise[:3])}): the explanation " \
                    "contradicts its value"
    return None


def unsupported(value: str, failing: bool, result: MetricResult) -> tuple[float, str] | None:
    """A passing verdict that quotes nothing from the call: the judge gave credit without showing the moment
    that earned it."""
    if failing or value == NA or _QUOTE.search(explanation_text(result)):
        return None
    return 1.0, f"{value} with no quoted moment in the explanation: credit given without evidence"


def repeated_evidence(value: str, result: MetricResult, criteria: str = "") -> tuple[float, str] | None:
    """The explanation cites the same words at two or more moments: a stock phrase (a scripted apology, a
    greeting formula) counted as fresh evidence each time it is said. Quotes of the metric's own criteria are
    the judge citing its rules, not the call, and are left out."""
    if value == NA:
        return None
    rules = " ".join(criteria.lower().split())
    quotes = [next(g for g in m.groups() if g) for m in _QUOTE.finditer(explanation_text(result))]
    openings = Counter(_opening(q) for q in quotes if " ".join(q.lower().split()) not in rules)
    phrase, times = openings.most_common(1)[0] if openings else ("", 0)
    if times < 2 or len(phrase) < 8:
        return None
    return 1.5, f"{value} citing the same words {times} times ('{phrase}'): a stock phrase may be over-counted"


def _opening(quote: str) -> str:
    """The first sentence of a quote, lower-cased: what a stock phrase repeats."""
    return re.split(r"(?<=[.!?])\s", quote.strip(), maxsplit=1)[0].lower()


def _label_lean(metric: Metric, value: str) -> int:
    """+1 for a label that says things went well, -1 for one that says they went badly, 0 when it says neither.
    Only enum labels that name a feeling or a verdict lean: what a caller's words sound like says nothing about
    whether a binary criterion (one question per turn, a booking) was met."""
    if metric.eval_type != "enum" or value == NA:
        return 0
    text = value.lower()
    if any(text.startswith(w) for w in _BAD_LABELS):
        return -1
    if any(text.startswith(w) for w in _GOOD_LABELS):
        return 1
    return 0


def _words(found: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(w.lower() for w in found))


def _other_results(row: CallRow, metric_id: int) -> list[MetricResult]:
    listed = list(row.evaluation.metrics) if row.evaluation else []
    seen = {m.id for m in listed}
    listed += [m for m in row.metrics if m.id not in seen]
    return [m for m in listed if m.id != metric_id]
