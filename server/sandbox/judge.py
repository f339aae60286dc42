"""The sandbox's deterministic stand-in for Cekura's LLM judge.

It is not a language model. Each metric carries a *rule* (one question per turn, booking workflow,
caller sentiment, empathy, prescription read-back, or a generic fallback); the rule reads the
transcript through the phrase lists in `lexicon` and reads the metric's **current description**
for a few scoping clauses. That is what makes the labs cycle observable offline: the seeded
descriptions lack those clauses, so the judge repeats the same mistakes a real judge makes on an
under-specified prompt, and once an improved description with the clause is PATCHed, a re-run
scores those calls correctly. Explanations are written the way an LLM judge writes them,
quoting the transcript moment with its timestamp.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import lexicon
from .models import AGENT_ROLE, CALLER_ROLE, Call, Turn, VoteValue
from .render import clock

BINARY_RULES = frozenset({"one_question", "booking", "refill"})
NUMERIC_TYPES = frozenset({"numeric", "continuous_qualitative"})

_SENTENCE_SPLIT = re.compile(r"(?<=[.?!])(?<!Dr\.)(?<!Mr\.)(?<!Ms\.)\s+")
_NA_SCOPE_PHRASES: tuple[str, ...] = (
    "no appointment was requested", "no booking was requested", "did not ask to book",
    "billing-only", "billing only", "not request",
)
_RELATED_DETAIL_KEYS: tuple[str, ...] = ("postcode", "address", "related detail", "date of birth")


@dataclass(frozen=True)
class Verdict:
    value: VoteValue
    explanation: list[str]


# --- what the description says -------------------------------------------------------------


def excuses_related_details(description: str) -> bool:
    text = description.lower()
    return "do not flag" in text and any(k in text for k in _RELATED_DETAIL_KEYS)


def scopes_out_unrequested_bookings(description: str) -> bool:
    text = description.lower()
    return "n/a" in text and any(k in text for k in _NA_SCOPE_PHRASES)


def reads_sarcasm(description: str) -> bool:
    return "sarcas" in description.lower()


def discounts_scripted_apologies(description: str) -> bool:
    text = description.lower()
    return "formulaic" in text or "scripted" in text


# --- transcript helpers ----------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text.strip()) if s]


def questions(text: str) -> list[str]:
    return [s for s in sentences(text) if s.endswith("?")]


def quote(text: str, limit: int = 110) -> str:
    first = " ".join(sentences(text)[:2]) or text
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def turns_of(call: Call, role: str) -> list[Turn]:
    return [t for t in call.turns if t.role == role]


def _related_pair(question: str) -> list[str]:
    details = lexicon.identity_details_in(question)
    return details if " and " in question.lower() and len(details) >= 2 else []


# --- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionFlag:
    at: str
    question: str
    follow_up: str | None = None
    details: tuple[str, ...] = ()


def question_flags(description: str, agent_turns: list[Turn]) -> tuple[list[QuestionFlag], list[QuestionFlag]]:
    """Agent turns with more than one question, split into (flagged, excused by the description)."""
    excuse = excuses_related_details(description)
    flagged: list[QuestionFlag] = []
    excused: list[QuestionFlag] = []
    for turn in agent_turns:
        asked = questions(turn.content)
        if len(asked) >= 2:
            flagged.append(QuestionFlag(clock(turn.start), asked[0], follow_up=asked[1]))
            continue
        pair_q = next((q for q in asked if _related_pair(q)), None)
        if pair_q is not None:
            flag = QuestionFlag(clock(turn.start), pair_q, details=tuple(_related_pair(pair_q)[:2]))
            (excused if excuse else flagged).append(flag)
    return flagged, excused


def _one_question(description: str, call: Call) -> Verdict:
    agent_turns = turns_of(call, AGENT_ROLE)
    if len(agent_turns) < 3:
        return Verdict(None, [
            f"The agent spoke only {len(agent_turns)} turn(s) before the call ended, too few to assess "
            "how questions were paced; scored N/A.",
        ])
    flagged, excused = question_flags(description, agent_turns)
    if flagged:
        return Verdict(False, _one_question_failure(flagged))
    explanation = [
        f"Reviewed {len(agent_turns)} agent turns; each asked at most one question before waiting for "
        "the caller's answer.",
    ]
    example = next((t for t in agent_turns[1:] if len(questions(t.content)) == 1), None)
    if example is not None:
        explanation.append(
            f"For example, at {clock(example.start)} the agent asked '{questions(example.content)[0]}' "
            "and waited for the reply."
        )
    if excused:
        first, second = excused[0].details
        explanation.append(
            f"At {excused[0].at} the agent asked for the {first} and {second} together; the metric's DO NOT "
            "FLAG clause treats a confirmation of related details as a single question."
        )
    return Verdict(True, explanation)


def _one_question_failure(flagged: list[QuestionFlag]) -> list[str]:
    flag = flagged[0]
    if flag.follow_up is not None:
        lead = (f"At {flag.at} the agent asked '{flag.question}' and, in the same turn, '{flag.follow_up}' "
                "— two questions in one turn.")
        why = "The caller had to answer both at once instead of one at a time."
    else:
        first, second = flag.details
        lead = f"At {flag.at} the agent asked '{flag.question}' — two questions in one turn."
        why = f"The agent requested the {first} and the {second} together instead of asking for each separately."
    explanation = [lead, why]
    if len(flagged) > 1:
        explanation.append(f"{len(flagged) - 1} further agent turn(s) also contained more than one question.")
    explanation.append("Because at least one turn contains more than one question, the metric fails.")
    return explanation


def _booking(description: str, call: Call) -> Verdict:
    caller_turns = turns_of(call, CALLER_ROLE)
    if len(caller_turns) < 2:
        return Verdict(None, [
            "The caller said fewer than two things before the call ended, so there was no booking "
            "workflow to assess; scored N/A.",
        ])
    request = next((t for t in caller_turns if lexicon.BOOKING_REQUEST_RE.search(t.content)), None)
    confirmation = next((t for t in turns_of(call, AGENT_ROLE) if _confirms_slot(t.content)), None)
    if request is not None and confirmation is not None:
        said = next(s for s in sentences(confirmation.content) if _confirms_slot(s))
        return Verdict(True, [
            f"At {clock(request.start)} the caller asked for an appointment: '{quote(request.content)}'",
            f"At {clock(confirmation.start)} the agent confirmed: '{said}'",
            "Identity was verified and the booked slot was read back to the caller, so the booking "
            "workflow was followed.",
        ])
    if request is not None:
        last = turns_of(call, AGENT_ROLE)[-2:][0]
        return Verdict(False, [
            f"At {clock(request.start)} the caller asked for an appointment: '{quote(request.content)}'",
            "The agent never booked a slot or read a confirmed day and time back to the caller; at "
            f"{clock(last.start)} the agent said '{quote(last.content)}'.",
            "The booking workflow was not completed, so the metric fails.",
        ])
    opening = caller_turns[0]
    if scopes_out_unrequested_bookings(description):
        return Verdict(None, [
            f"At {clock(opening.start)} the caller said '{quote(opening.content)}' — no appointment was "
            "requested at any point in the call.",
            "Per the metric's scope, calls where no appointment was requested are scored N/A.",
        ])
    return Verdict(False, [
        "No appointment was booked during the call.",
        f"The caller's request at {clock(opening.start)} ('{quote(opening.content)}') was handled, but the "
        "call ended without the agent booking a slot and reading it back.",
        "Step 4 of the workflow (book the slot and confirm the day and time) never happened, so the "
        "metric fails.",
    ])


def _confirms_slot(text: str) -> bool:
    return any(c.lower() in text.lower() for c in lexicon.BOOKING_CONFIRMATION_CUES) and any(
        d in text for d in lexicon.WEEKDAYS
    )


def _sentiment(description: str, call: Call, labels: dict[str, str]) -> Verdict:
    caller_turns = turns_of(call, CALLER_ROLE)
    if not caller_turns:
        return Verdict(None, ["The caller never spoke, so their sentiment cannot be assessed; scored N/A."])
    sarcasm_aware = reads_sarcasm(description)
    positive: list[Turn] = []
    negative: list[Turn] = []
    sarcastic: list[Turn] = []
    for turn in caller_turns:
        if sarcasm_aware and lexicon.SARCASM_RE.search(turn.content):
            sarcastic.append(turn)
        elif lexicon.NEGATIVE_RE.search(turn.content):
            negative.append(turn)
        elif lexicon.POSITIVE_RE.search(turn.content):
            positive.append(turn)
    down = len(negative) + len(sarcastic)
    if len(positive) > down:
        last = positive[-1]
        return Verdict(labels["positive"], [
            f"At {clock(last.start)} the caller said '{quote(last.content)}', expressing satisfaction.",
            "The caller's language is appreciative overall, so the sentiment is positive.",
        ])
    if down > len(positive):
        if sarcastic:
            turn = sarcastic[-1]
            return Verdict(labels["negative"], [
                f"At {clock(turn.start)} the caller said '{quote(turn.content)}' — sarcastic praise about a "
                "problem, which signals annoyance rather than satisfaction.",
                "Read as sarcasm, the caller's overall sentiment is negative.",
            ])
        turn = negative[-1]
        return Verdict(labels["negative"], [
            f"At {clock(turn.start)} the caller said '{quote(turn.content)}', which signals frustration.",
            "The caller ends the call unhappy, so the sentiment is negative.",
        ])
    return Verdict(labels["neutral"], [
        "The caller stayed matter-of-fact throughout; there is no clearly positive or negative language.",
        f"Their final words at {clock(caller_turns[-1].start)} were '{quote(caller_turns[-1].content)}'.",
    ])


def empathy_score(genuine: int, scripted: int, count_scripted: bool) -> float:
    raw = 1.5 + genuine + (0.75 * scripted if count_scripted else 0.0)
    return min(5.0, math.floor(raw * 2 + 0.5) / 2)


def _empathy(description: str, call: Call) -> Verdict:
    if len(turns_of(call, CALLER_ROLE)) < 2:
        return Verdict(None, ["The caller said fewer than two things, so empathy cannot be assessed; N/A."])
    agent_turns = turns_of(call, AGENT_ROLE)
    agent_text = " ".join(t.content for t in agent_turns)
    genuine = lexicon.distinct_phrases(agent_text, lexicon.GENUINE_EMPATHY)
    scripted = lexicon.count_phrases(agent_text, lexicon.SCRIPTED_APOLOGY)
    count_scripted = not discounts_scripted_apologies(description)
    score = empathy_score(len(genuine), scripted, count_scripted)
    explanation: list[str] = []
    for phrase in genuine[:2]:
        turn = next(t for t in agent_turns if phrase.lower() in t.content.lower())
        explanation.append(f"At {clock(turn.start)} the agent said '{quote(turn.content, 90)}', acknowledging "
                           "the caller.")
    if scripted and count_scripted:
        turn = next(t for t in agent_turns if lexicon.SCRIPTED_APOLOGY[0].lower() in t.content.lower())
        explanation.append(f"The agent apologised {scripted} time(s) (first at {clock(turn.start)}), showing "
                           "concern for the caller's experience.")
    elif scripted:
        explanation.append(f"The agent's {scripted} formulaic apolog{'y' if scripted == 1 else 'ies'} "
                           "('I apologise for any inconvenience') were not credited as empathy.")
    if not explanation:
        explanation.append("The agent was polite but transactional and never acknowledged the caller's "
                           "situation.")
    explanation.append(f"Overall empathy score: {score:.1f} out of 5.")
    return Verdict(score, explanation)


def _refill(call: Call) -> Verdict:
    caller_turns = turns_of(call, CALLER_ROLE)
    if len(caller_turns) < 2:
        return Verdict(None, ["The caller said fewer than two things before the call ended; scored N/A."])
    request = next((t for t in caller_turns if lexicon.REFILL_REQUEST_RE.search(t.content)), None)
    if request is None:
        return Verdict(None, [
            f"At {clock(caller_turns[0].start)} the caller said '{quote(caller_turns[0].content)}' — no repeat "
            "prescription was requested, so the read-back rule does not apply; scored N/A.",
        ])
    readback = next((t for t in turns_of(call, AGENT_ROLE) if _reads_back(t.content)), None)
    if readback is None:
        return Verdict(False, [
            f"At {clock(request.start)} the caller asked for a repeat prescription.",
            "The agent submitted the request without reading the medication and pharmacy back, so the "
            "metric fails.",
        ])
    return Verdict(True, [
        f"At {clock(readback.start)} the agent said '{quote(readback.content)}', reading the medication and "
        "the collection pharmacy back before submitting.",
    ])


def _reads_back(text: str) -> bool:
    lowered = text.lower()
    return "just to confirm" in lowered and any(m in lowered for m in lexicon.MEDICATIONS)


def generic(call: Call, eval_type: str, enum_values: Sequence[str]) -> Verdict:
    """Fallback for criteria the stand-in judge has no rule for: a fixed, clearly labelled guess."""
    note = "The sandbox's stand-in judge has no specific rule for this metric's criteria."
    if len(turns_of(call, CALLER_ROLE)) < 2:
        return Verdict(None, [note, "The caller said fewer than two things, so the call is scored N/A."])
    if eval_type == "binary":
        return Verdict(True, [note, "The call had a substantive exchange, so it is scored TRUE by default."])
    if eval_type == "enum":
        text = " ".join(t.content for t in call.turns).lower()
        label = next((v for v in enum_values if v.lower() in text), enum_values[0] if enum_values else None)
        return Verdict(label, [note, f"Chose '{label}' as the first label mentioned in the transcript."])
    return Verdict(3.0, [note, "Scored the midpoint, 3.0, by default."])


# --- dispatch --------------------------------------------------------------------------------


def infer_rule(name: str, description: str, eval_type: str) -> str:
    """Pick a rule for a metric created through the API, from keywords in its name and prompt."""
    text = f"{name} {description}".lower()
    candidates: list[tuple[str, Callable[[], bool]]] = [
        ("one_question", lambda: "question" in text and eval_type == "binary"),
        ("booking", lambda: ("appointment" in text or "booking" in text) and eval_type == "binary"),
        ("sentiment", lambda: "sentiment" in text and eval_type == "enum"),
        ("empathy", lambda: "empath" in text and eval_type in NUMERIC_TYPES),
        ("refill", lambda: ("prescription" in text or "refill" in text) and eval_type == "binary"),
    ]
    return next((rule for rule, matches in candidates if matches()), "generic")


def judge(rule: str, description: str, eval_type: str, enum_values: Sequence[str], call: Call) -> Verdict:
    """Score one call for one metric, as the metric's current description reads."""
    if rule in BINARY_RULES and eval_type == "binary":
        if rule == "one_question":
            return _one_question(description, call)
        if rule == "booking":
            return _booking(description, call)
        return _refill(call)
    if rule == "sentiment" and eval_type == "enum":
        labels = {v.lower(): v for v in enum_values}
        if all(k in labels for k in ("positive", "neutral", "negative")):
            return _sentiment(description, call, labels)
    if rule == "empathy" and eval_type in NUMERIC_TYPES:
        return _empathy(description, call)
    return generic(call, eval_type, enum_values)
