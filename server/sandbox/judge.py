"""The sandbox's deterministic stand-in for Cekura's LLM judge, driven by the metric's description alone.

It is not a language model. It renders the description's `{{variables}}`, splits it into the documented
sections (`prompt.parse`), reads each item through its vocabulary (`lexicon.BEHAVIOURS`: the words that
name a behaviour, and the behaviours a quoted transcript line shows), and applies the items to the call:

- binary: an N/A condition that holds → N/A; else a moment matching a FAILURE CONDITION that no DO NOT
  FLAG item covers → FALSE; else TRUE.
- enum: each caller turn is read as the labels whose signals it shows; the most frequent label wins,
  a tie goes to the label with no signals (e.g. "neutral").
- numeric: 1.5 plus what each CREDIT item's behaviours add, less what DO NOT CREDIT items exclude,
  rounded to half points, at most 5.

So what it flags follows from what the description literally says: a too-literal failure condition
flags too much, a missing DO NOT FLAG or N/A clause misjudges calls, and adding the clause fixes them.
It never sees the sandbox's hidden truth. `docs/sandbox-judge.md` documents the structure for writers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

from . import lexicon
from .lexicon import BY_NAME, Behaviour
from .models import AGENT_ROLE, CALLER_ROLE, Agent, Call, Turn, VoteValue
from .prompt import Item, Prompt, PromptError, parse, quotes_in, render, template, with_values, without_quotes
from .render import clock

NUMERIC_TYPES = frozenset({"numeric", "continuous_qualitative"})
BASE_SCORE = 1.5
TOP_SCORE = 5.0
ITEM_QUOTE_LIMIT = 160

_SENTENCE_SPLIT = re.compile(r"(?<=[.?!])(?<!Dr\.)(?<!Mr\.)(?<!Ms\.)\s+")
_TURN_COUNT_RE = re.compile(
    r"\b(testing agent|main agent|caller|agent)\b[^.;]*?\b(?:fewer|less) than (\d+|"
    + "|".join(lexicon.NUMBER_WORDS) + r")\b", re.I)
_SILENT_CALLER_RE = re.compile(r"\bcaller\b[^.;]*?\b(?:never (?:speaks|spoke|says|said)|is silent|said nothing)", re.I)
_FLAG_WORDS = re.compile(r"\b(?:flag|fail|false)\b", re.I)


@dataclass(frozen=True)
class Verdict:
    value: VoteValue
    explanation: list[str]


__all__ = ["PromptError", "Verdict", "judge", "questions", "quote", "read_item", "scale_score", "sentences"]


# --- transcript helpers ----------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return list(_sentences(text))


@lru_cache(maxsize=8192)
def _sentences(text: str) -> tuple[str, ...]:
    return tuple(s for s in _SENTENCE_SPLIT.split(text.strip()) if s)


def questions(text: str) -> list[str]:
    return [s for s in sentences(text) if s.endswith("?")]


def quote(text: str, limit: int = 110) -> str:
    first = " ".join(sentences(text)[:2]) or text
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def short(text: str, limit: int = ITEM_QUOTE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def scale_score(points: float) -> float:
    """The numeric scale: 1.5 plus the credited points, rounded to half points, at most 5."""
    raw = BASE_SCORE + points
    return max(0.0, min(TOP_SCORE, math.floor(raw * 2 + 0.5) / 2))


# --- what a turn shows -----------------------------------------------------------------------

Span = tuple[int, int]


def _whole(text: str) -> list[Span]:
    return [(0, len(text))]


def _stacked(text: str) -> list[Span]:
    return _whole(text) if len(questions(text)) >= 2 else []


def _related_request(text: str) -> list[Span]:
    for asked in questions(text):
        if " and " in asked.lower() and len(lexicon.identity_details_in(asked)) >= 2:
            return _whole(text)
    return []


_CONFIRMS_RE = re.compile("|".join(re.escape(c) for c in lexicon.BOOKING_CONFIRMATION_CUES), re.I)
_WEEKDAY_RE = re.compile("|".join(lexicon.WEEKDAYS))
_MEDICATION_RE = re.compile("|".join(lexicon.MEDICATIONS), re.I)


def _confirms_slot(text: str) -> list[Span]:
    return _whole(text) if _CONFIRMS_RE.search(text) and _WEEKDAY_RE.search(text) else []


def _reads_back(text: str) -> list[Span]:
    return _whole(text) if "just to confirm" in text.lower() and _MEDICATION_RE.search(text) else []


def _matches(regex: re.Pattern[str]) -> Callable[[str], list[Span]]:
    return lambda text: [m.span() for m in regex.finditer(text)] if regex.search(text) else []


TURN_DETECTORS: dict[str, Callable[[str], list[Span]]] = {
    "stacked_questions": _stacked,
    "related_details_request": _related_request,
    "booking_request": _matches(lexicon.BOOKING_REQUEST_RE),
    "booking_confirmed": _confirms_slot,
    "refill_request": _matches(lexicon.REFILL_REQUEST_RE),
    "readback": _reads_back,
    "positive_language": _matches(lexicon.POSITIVE_RE),
    "negative_language": _matches(lexicon.NEGATIVE_RE),
    "sarcastic_praise": _matches(lexicon.SARCASM_RE),
    "apology": _matches(lexicon.APOLOGY_RE),
    "formulaic_apology": _matches(lexicon.SCRIPTED_APOLOGY_RE),
    "acknowledgement": _matches(lexicon.EMPATHY_RE),
}


@lru_cache(maxsize=16384)
def _detected(name: str, text: str) -> tuple[Span, ...]:
    """Where a turn's text shows a behaviour (cached: every metric of a call reads the same turns)."""
    return tuple(TURN_DETECTORS[name](text))


def shown_in_text(text: str) -> frozenset[str]:
    """The turn-level behaviours a piece of transcript text shows, after overrides (used for quotes)."""
    shown = {name for name, detect in TURN_DETECTORS.items() if detect(text)}
    return frozenset(_without_overridden(shown))


def _without_overridden(shown: set[str]) -> set[str]:
    hidden = {o for name in shown for o in BY_NAME[name].overrides}
    return shown - hidden


class Hit(NamedTuple):
    """One place a behaviour shows: the turn's index, the span in its text, the words (a NamedTuple: a call
    has hundreds of these and they are built on every evaluation)."""

    behaviour: str
    turn: int
    span: Span
    phrase: str


@dataclass
class Seen:
    """What the judge has looked for in one call, computed once per behaviour."""

    call: Call
    _roles: dict[str, list[tuple[int, Turn]]] = field(default_factory=dict)
    _hits: dict[str, tuple[Hit, ...]] = field(default_factory=dict)
    _turns: dict[str, frozenset[int]] = field(default_factory=dict)

    def role_turns(self, scope: str) -> list[tuple[int, Turn]]:
        if scope not in self._roles:
            role = AGENT_ROLE if scope == "agent" else CALLER_ROLE
            self._roles[scope] = [(i, t) for i, t in enumerate(self.call.turns) if t.role == role]
        return self._roles[scope]

    def hits(self, name: str) -> tuple[Hit, ...]:
        if name not in self._hits:
            behaviour = BY_NAME[name]
            self._hits[name] = () if behaviour.scope == "call" else tuple(
                Hit(name, index, span, turn.content[span[0]:span[1]].lower())
                for index, turn in self.role_turns(behaviour.scope) for span in _detected(name, turn.content))
        return self._hits[name]

    def turns_with(self, name: str) -> frozenset[int]:
        if name not in self._turns:
            self._turns[name] = frozenset(h.turn for h in self.hits(name))
        return self._turns[name]

    def holds(self, name: str) -> bool:
        """A call-level absence holds when its counterpart never shows; a turn-level behaviour when it shows."""
        behaviour = BY_NAME[name]
        if behaviour.scope == "call":
            return not self.hits(behaviour.counterpart)
        return bool(self.hits(name))

    def count(self, scope: str) -> int:
        return len(self.role_turns(scope))

    def anchor(self) -> int:
        """The turn an absence is pinned to: the caller's first words, or the first turn."""
        callers = self.role_turns("caller")
        return callers[0][0] if callers else 0


# --- what an item means ----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnCount:
    scope: str
    below: int


@dataclass(frozen=True)
class Reading:
    """An item as the judge understands it: the behaviours its words name, the behaviours a transcript line
    it quotes shows, and turn-count limits."""

    item: Item
    named: frozenset[str]
    quoted: frozenset[str]
    counts: tuple[TurnCount, ...]

    @property
    def behaviours(self) -> frozenset[str]:
        return self.named | self.quoted

    @property
    def understood(self) -> bool:
        return bool(self.behaviours or self.counts)

    def as_exception_to(self, flaggable: set[str]) -> Reading:
        """A DO NOT FLAG / DO NOT CREDIT item's quote is an example of something the metric would otherwise
        flag or credit: it stands for those behaviours it shows, not for every other thing in the line."""
        return Reading(self.item, self.named, self.quoted & frozenset(flaggable), self.counts)


def _negated(text: str, start: int) -> bool:
    window = text[max(0, start - 28):start]
    return bool(lexicon.NEGATORS_RE.search(window))


# Compiled once, at import: a prompt's words are matched against every term of every behaviour.
_TERMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (b.name, re.compile(r"(?<![\w])" + term, re.I)) for b in lexicon.BEHAVIOURS for term in b.terms)


@lru_cache(maxsize=4096)
def named_behaviours(text: str) -> frozenset[str]:
    """Behaviours whose terms the (quote-free) text uses: longest matches first, a plain term preceded by a
    negation ("not two questions") does not count."""
    found = [(match.start(), match.end(), name) for name, term in _TERMS for match in term.finditer(text)]
    found.sort(key=lambda f: (f[0] - f[1], f[0]))
    taken: list[tuple[int, int]] = []
    names: set[str] = set()
    for start, end, name in found:
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        if not BY_NAME[name].absence and _negated(text, start):
            continue
        names.add(name)
    return frozenset(names)


def _turn_counts(text: str) -> tuple[TurnCount, ...]:
    counts: list[TurnCount] = []
    for match in _TURN_COUNT_RE.finditer(text):
        who, number = match.group(1).lower(), match.group(2).lower()
        scope = "agent" if who in ("agent", "main agent") else "caller"
        counts.append(TurnCount(scope, int(number) if number.isdigit() else lexicon.NUMBER_WORDS[number]))
    if _SILENT_CALLER_RE.search(text):
        counts.append(TurnCount("caller", 1))
    return tuple(counts)


@lru_cache(maxsize=4096)
def read_item(item: Item) -> Reading:
    bare = without_quotes(item.text)
    quoted: set[str] = set()
    for text in quotes_in(item.text):
        quoted |= shown_in_text(text)
    return Reading(item, named_behaviours(bare), frozenset(quoted), _turn_counts(bare))


def _holds(reading: Reading, seen: Seen) -> bool:
    return any(seen.holds(b) for b in reading.behaviours) or any(
        seen.count(c.scope) < c.below for c in reading.counts)


# --- verdicts --------------------------------------------------------------------------------


def _who(turn: Turn) -> str:
    return "agent" if turn.role == AGENT_ROLE else "caller"


def _na(prompt: Prompt, seen: Seen) -> Verdict | None:
    for reading in (read_item(i) for i in prompt.of("na")):
        for count in reading.counts:
            n = seen.count(count.scope)
            if n < count.below:
                who = "agent" if count.scope == "agent" else "caller"
                return Verdict(None, [
                    f"The {who} spoke only {n} turn(s) before the call ended.",
                    f'This meets the N/A condition "{short(reading.item.text)}", so the call is scored N/A.',
                ])
        for name in sorted(reading.behaviours):
            if seen.holds(name):
                return Verdict(None, [_moment_line(seen, name), f'This meets the N/A condition '
                                      f'"{short(reading.item.text)}", so the call is scored N/A.'])
    return None


def _moment_line(seen: Seen, name: str, turn_index: int | None = None) -> str:
    behaviour = BY_NAME[name]
    if turn_index is None:
        hits = seen.hits(name) if behaviour.scope != "call" else []
        turn_index = hits[0].turn if hits else seen.anchor()
    if not seen.call.turns:
        return f"The call has no turns: {behaviour.says}."
    turn = seen.call.turns[turn_index]
    return f"At {clock(turn.start)} the {_who(turn)} said '{quote(turn.content)}' — {behaviour.says}."


@dataclass(frozen=True)
class Moment:
    turn: int
    behaviour: str
    reading: Reading


def _failure_moments(readings: Sequence[Reading], seen: Seen) -> list[Moment]:
    moments: list[Moment] = []
    for reading in readings:
        for name in sorted(reading.behaviours):
            if BY_NAME[name].scope == "call":
                if seen.holds(name):
                    moments.append(Moment(seen.anchor(), name, reading))
            else:
                moments += [Moment(h.turn, name, reading) for h in seen.hits(name)]
    return sorted(moments, key=lambda m: m.turn)


def _excused_by(moment: Moment, exempt: Sequence[Reading], seen: Seen) -> Reading | None:
    for reading in exempt:
        for name in reading.behaviours:
            if BY_NAME[name].scope == "call":
                if seen.holds(name):
                    return reading
            elif moment.turn in seen.turns_with(name):
                return reading
        if any(seen.count(c.scope) < c.below for c in reading.counts):
            return reading
    return None


def _prose_failures(description: str) -> list[Item]:
    """An unstructured binary description: its sentences that say what to flag or fail."""
    return [Item("failure", s) for s in sentences(" ".join(description.split())) if _FLAG_WORDS.search(s)]


def _binary(prompt: Prompt, seen: Seen) -> Verdict:
    na = _na(prompt, seen)
    if na is not None:
        return na
    failures = [r for r in (read_item(i) for i in prompt.of("failure")) if r.understood]
    if not failures:
        return Verdict(True, [
            "The sandbox's stand-in judge found no failure condition it can check in this description "
            "(see the sandbox judge's documented prompt structure), so the call is scored TRUE.",
        ])
    flaggable = {b for r in failures for b in r.behaviours}
    exempt = [r for r in (read_item(i).as_exception_to(flaggable) for i in prompt.of("exempt")) if r.understood]
    flagged: list[Moment] = []
    excused: list[tuple[Moment, Reading]] = []
    for moment in _failure_moments(failures, seen):
        cover = _excused_by(moment, exempt, seen)
        if cover is None:
            flagged.append(moment)
        else:
            excused.append((moment, cover))
    if flagged:
        first = flagged[0]
        explanation = [_moment_line(seen, first.behaviour, first.turn),
                       f'This matches the failure condition "{short(first.reading.item.text)}", so the metric fails.']
        others = len({m.turn for m in flagged}) - 1
        if others > 0:
            explanation.append(f"{others} further moment(s) also match a failure condition.")
        return Verdict(False, explanation)
    explanation = [f"Reviewed {len(seen.call.turns)} turns; no moment matches the metric's failure conditions."]
    for reading in failures:
        for name in sorted(reading.behaviours):
            counterpart = BY_NAME[name].counterpart
            if counterpart and seen.hits(counterpart):
                explanation.append(_moment_line(seen, counterpart))
    if excused:
        moment, cover = excused[0]
        explanation.append(_moment_line(seen, moment.behaviour, moment.turn)
                           + f' Not flagged, per the DO NOT FLAG item "{short(cover.item.text)}".')
    return Verdict(True, explanation)


def _enum(prompt: Prompt, labels: Sequence[str], seen: Seen) -> Verdict:
    na = _na(prompt, seen)
    if na is not None:
        return na
    if not labels:
        return Verdict(None, ["The metric has no labels to choose from; scored N/A."])
    signals: dict[str, set[str]] = {label: set() for label in labels}
    items: dict[str, Item] = {}
    for item in prompt.of("label"):
        canonical = next(label for label in labels if label.lower() == item.label.lower())
        signals[canonical] |= read_item(item).behaviours
        items.setdefault(canonical, item)
    in_play = set().union(*signals.values())
    fallback = next((label for label in labels if not signals[label]), labels[0])
    counts = {label: 0 for label in labels}
    last: dict[str, int] = {}
    where = {name: seen.turns_with(name) for name in in_play if BY_NAME[name].scope != "call"}
    for index in sorted(set().union(*where.values()) if where else ()):
        shown = {name for name, turns in where.items() if index in turns}
        for label in labels:
            if signals[label] & _without_overridden(shown):
                counts[label] += 1
                last[label] = index
    best = max(counts.values())
    winners = [label for label in labels if counts[label] == best]
    if best == 0 or len(winners) > 1:
        closing = [t for t in seen.call.turns if t.role == CALLER_ROLE] or list(seen.call.turns)
        end = closing[-1] if closing else None
        said = f" Their final words at {clock(end.start)} were '{quote(end.content)}'." if end else ""
        return Verdict(fallback, [f"No label's signals outweigh the others in what was said, so the label is "
                                  f"{fallback}.{said}"])
    label = winners[0]
    turn = seen.call.turns[last[label]]
    signal = items.get(label)
    why = f' ("{label}: {short(signal.text, 90)}")' if signal else ""
    return Verdict(label, [
        f"At {clock(turn.start)} the {_who(turn)} said '{quote(turn.content)}', which reads as {label}{why}.",
        f"{best} turn(s) read as {label}, more than any other label, so the label is {label}.",
    ])


def _numeric(prompt: Prompt, seen: Seen) -> Verdict:
    na = _na(prompt, seen)
    if na is not None:
        return na
    credit = [r for r in (read_item(i) for i in prompt.of("credit")) if r.understood]
    creditable = {b for r in credit for b in r.behaviours}
    exempt = [r for r in (read_item(i).as_exception_to(creditable) for i in prompt.of("exempt")) if r.understood]
    excluded_names = {n for r in exempt for n in r.behaviours if BY_NAME[n].scope != "call"}
    excluded = [h for n in excluded_names for h in seen.hits(n)]
    points = 0.0
    credited: list[tuple[Hit, Reading]] = []
    skipped: list[tuple[Hit, Reading]] = []
    distinct: set[tuple[str, str]] = set()
    claimed: list[Hit] = []
    for reading in credit:
        for name in sorted(reading.behaviours):
            behaviour: Behaviour = BY_NAME[name]
            if behaviour.scope == "call":
                continue
            for hit in seen.hits(name):
                if any(_overlap(hit, other) for other in claimed):
                    continue
                cover = next((r for r in exempt if any(_overlap(hit, e) for e in excluded
                                                      if e.behaviour in r.behaviours)), None)
                if cover is not None:
                    skipped.append((hit, cover))
                    claimed.append(hit)
                    continue
                if behaviour.distinct and (name, hit.phrase) in distinct:
                    continue
                distinct.add((name, hit.phrase))
                claimed.append(hit)
                points += behaviour.weight
                credited.append((hit, reading))
    score = scale_score(points)
    explanation: list[str] = []
    for hit, reading in credited[:2]:
        turn = seen.call.turns[hit.turn]
        explanation.append(f"At {clock(turn.start)} the {_who(turn)} said '{quote(turn.content, 90)}', credited under "
                           f'"{short(reading.item.text, 90)}".')
    if skipped:
        hit, cover = skipped[0]
        turn = seen.call.turns[hit.turn]
        explanation.append(f"{len(skipped)} moment(s) like '{quote(turn.content, 70)}' (at {clock(turn.start)}) were "
                           f'not credited, per "{short(cover.item.text, 90)}".')
    if not credited:
        explanation.append("Nothing the agent said matches what the metric credits.")
    explanation.append(f"Overall score: {score:.1f} out of 5.")
    return Verdict(score, explanation)


def _overlap(a: Hit, b: Hit) -> bool:
    return a.turn == b.turn and a.span[0] < b.span[1] and b.span[0] < a.span[1]


def judge(description: str, eval_type: str, enum_values: Sequence[str], call: Call, agent: Agent | None = None,
          today: str | None = None) -> Verdict:
    """Score one call as the metric's current description reads. Raises `PromptError` when a
    `{{placeholder}}` is not a Cekura variable (the message names it)."""
    day = today or datetime.now(UTC).date().isoformat()
    marked = template(description)
    prompt = with_values(parse(marked, tuple(enum_values) if eval_type == "enum" else ()), call, agent, day)
    seen = Seen(call)
    if eval_type == "enum":
        return _enum(prompt, list(enum_values), seen)
    if eval_type in NUMERIC_TYPES:
        return _numeric(prompt, seen)
    if not prompt.structured:
        prose = tuple(Item("failure", render(i.text, call, agent, day)) for i in _prose_failures(marked))
        prompt = Prompt(prompt.items + prose, (), True)
    return _binary(prompt, seen)


def safe_judge(description: str, eval_type: str, enum_values: Sequence[str], call: Call,
               agent: Agent | None = None) -> Verdict:
    """`judge`, with a description it cannot render scored as a failed evaluation (N/A with the reason)."""
    try:
        return judge(description, eval_type, enum_values, call, agent)
    except PromptError as error:
        return Verdict(None, [f"Evaluation failed: {error}"])
