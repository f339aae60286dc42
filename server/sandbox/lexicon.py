"""The stand-in judge's vocabulary: the behaviours it can see in a transcript, and the words by which a
metric description (or a reviewer's note copied into one) refers to each of them.

The transcript generator writes calls from the phrase lists below, and the judge reads calls through
them, so the two stay in step. The `BEHAVIOURS` table is the judge's "reading" of prompt text: an item
of a description means the behaviours whose terms it uses (or that a transcript quote in it shows).
It is language knowledge applied the same way to every description; it names no metric, no demo
pattern and no truth. `docs/sandbox-judge.md` lists it for people writing metrics for the sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Details a receptionist confirms together when verifying identity.
IDENTITY_DETAILS: tuple[str, ...] = ("postcode", "address", "date of birth", "name", "phone number")

POSITIVE_CUES: tuple[str, ...] = (
    "brilliant", "wonderful", "fantastic", "great", "perfect", "lovely", "thank you so much",
    "really helpful",
)
NEGATIVE_CUES: tuple[str, ...] = (
    "ridiculous", "frustrat", "fed up", "unacceptable", "not happy", "waste of time", "useless",
)
SARCASM_MARKERS: tuple[str, ...] = (
    "just great", "just perfect", "oh brilliant", "oh perfect", "yeah, great", "oh wonderful",
)

GENUINE_EMPATHY: tuple[str, ...] = (
    "I'm sorry to hear", "I completely understand", "I can imagine", "that sounds really",
    "I understand how",
)
SCRIPTED_APOLOGY: tuple[str, ...] = ("I apologise for any inconvenience",)
APOLOGY_WORDS: tuple[str, ...] = ("I apologise", "I apologize", "apologies", "sorry for")

BOOKING_REQUEST_CUES: tuple[str, ...] = (
    "appointment", "book", "reschedule", "move my", "see a doctor", "see the nurse",
)
BOOKING_CONFIRMATION_CUES: tuple[str, ...] = (
    "I've booked you in", "you're booked in", "I've moved your appointment", "I've rebooked you",
)
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

REFILL_REQUEST_CUES: tuple[str, ...] = ("repeat prescription", "refill", "run out of")
MEDICATIONS: tuple[str, ...] = (
    "sertraline", "amlodipine", "salbutamol", "levothyroxine", "metformin", "omeprazole",
)


def _phrases_re(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")", re.IGNORECASE)


POSITIVE_RE = _phrases_re(POSITIVE_CUES)
NEGATIVE_RE = _phrases_re(NEGATIVE_CUES)
SARCASM_RE = _phrases_re(SARCASM_MARKERS)
BOOKING_REQUEST_RE = _phrases_re(BOOKING_REQUEST_CUES)
REFILL_REQUEST_RE = _phrases_re(REFILL_REQUEST_CUES)
APOLOGY_RE = _phrases_re(APOLOGY_WORDS)
SCRIPTED_APOLOGY_RE = _phrases_re(SCRIPTED_APOLOGY)
EMPATHY_RE = _phrases_re(GENUINE_EMPATHY)


def count_phrases(text: str, phrases: tuple[str, ...]) -> int:
    lowered = text.lower()
    return sum(lowered.count(p.lower()) for p in phrases)


def distinct_phrases(text: str, phrases: tuple[str, ...]) -> list[str]:
    lowered = text.lower()
    return [p for p in phrases if p.lower() in lowered]


def identity_details_in(sentence: str) -> list[str]:
    lowered = sentence.lower()
    return [d for d in IDENTITY_DETAILS if d in lowered]


# --- behaviours: what the judge can see, and how prompt text names it ---------------------------

Scope = Literal["agent", "caller", "call"]
_NEG = r"(?:no|not|never|without|nothing|n't)"


@dataclass(frozen=True)
class Behaviour:
    """Something observable in a call. `terms` are regular expressions (matched case-insensitively at a
    word start) by which prompt text refers to it. `scope` says where it is seen: in an agent turn, in a
    caller turn, or of the call as a whole (an absence, such as "no appointment was requested").
    `absence` terms carry their own negation, so a "not" before them does not cancel them.
    `overrides`: a turn showing this behaviour is not also read as those (sarcastic praise is not praise).
    `weight` and `distinct`: what one occurrence adds to a numeric score when a CREDIT item names it.
    `counterpart`: for an absence, the moment whose presence shows the absence does not hold."""

    name: str
    says: str
    scope: Scope
    terms: tuple[str, ...]
    absence: bool = False
    overrides: tuple[str, ...] = ()
    weight: float = 0.0
    distinct: bool = False
    counterpart: str = ""


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour("stacked_questions", "two separate questions in one turn", "agent", (
        r"(?:two|2|several|multiple|more than one)(?: or more)? (?:separate |unrelated |different )?questions?",
        r"stack(?:ed|ing)? questions", r"question stacking", r"unrelated questions", r"second question",
    )),
    Behaviour("related_details_request", "one request for several related details", "agent", (
        r"related (?:identity )?details", r"identity details", r"compound requests?",
        r"(?:several |multiple )?pieces of information", r"postcode", r"(?:first line of (?:the |your )?)?address",
        r"date of birth", r"dob", r"full name", r"details together", r"verification (?:question|details)",
        r"identity check",
    )),
    Behaviour("booking_request", "the caller asks for an appointment", "caller", (
        r"(?:asked|asks|wanted|wants|requested|requests) (?:to book|for an appointment|an appointment|"
        r"to reschedule|to move (?:an|their|the) appointment)", r"booking requests?",
    )),
    Behaviour("no_booking_request", "no appointment was requested at any point in the call", "call", (
        _NEG + r"\b[\w\s,'-]{0,25}?\b(?:appointments?|to book|book(?:ing)? (?:was |is )?requested|booking request)",
        r"billing[- ]only", r"insurance[- ]only", r"unrequested bookings?",
        r"(?:booking|appointment)s? (?:is|was|were)(?: not|n't) (?:relevant|requested|asked for|wanted|needed)",
    ), absence=True, counterpart="booking_request"),
    Behaviour("booking_confirmed", "the agent books a slot and reads the day and time back", "agent", (
        r"(?:confirmed|read|reads|confirms) (?:the |a )?(?:booked )?(?:slot|day|date|time|appointment)"
        r"(?: and time)? back", r"booking (?:was |is )?confirmed", r"confirm(?:ed|s)? the booking",
    )),
    Behaviour("no_booking_confirmed",
              "the call ended without the agent booking a slot and reading the day and time back", "call", (
                  _NEG + r"\b[\w\s,'-]{0,30}?\b(?:complet\w* (?:a |the )?booking|book(?:ed)? (?:a |the )?slot|"
                  r"confirm\w*|booked)",
              ), absence=True, counterpart="booking_confirmed"),
    Behaviour("refill_request", "the caller asks for a repeat prescription", "caller", (
        r"(?:asked|asks|requested|requests) (?:for )?(?:a )?(?:repeat prescription|refill)",
        r"repeat prescription requests?",
    )),
    Behaviour("no_refill_request", "no repeat prescription was requested", "call", (
        _NEG + r"\b[\w\s,'-]{0,25}?\b(?:repeat prescriptions?|refills?)",
    ), absence=True, counterpart="refill_request"),
    Behaviour("readback", "the agent reads the medication and pharmacy back", "agent", (
        r"read\w* (?:the \w+ )?back", r"just to confirm", r"repeated the medication",
    )),
    Behaviour("no_readback", "the request was submitted without reading the medication and pharmacy back",
              "call", (
                  r"without (?:a )?read-?back", r"without reading", r"no read-?back",
                  _NEG + r"\b[\w\s,'-]{0,15}?\bread\w* (?:\w+ ){0,6}?back",
              ), absence=True, counterpart="readback"),
    Behaviour("positive_language", "pleased or appreciative words", "caller", (
        r"pleased", r"grateful", r"relieved", r"happy", r"satisf\w*", r"apprecia\w*", r"thank\w*", r"prais\w*",
    )),
    Behaviour("negative_language", "frustrated or annoyed words", "caller", (
        r"frustrat\w*", r"annoy\w*", r"upset", r"angry", r"unhappy", r"irritat\w*", r"complain\w*", r"fed up",
    ), overrides=("positive_language",)),
    Behaviour("sarcastic_praise", "sarcastic praise about a problem", "caller", (
        r"sarcas\w*(?: praise)?", r"iron(?:y|ic\w*)", r"mock\w*", r"facetious", r"tongue[- ]in[- ]cheek",
        r"passive[- ]aggressive",
        r"not (?:actually|really|genuinely) (?:happy|pleased|praise\w*|positive)",
    ), overrides=("positive_language",)),
    Behaviour("apology", "an apology", "agent", (r"apolog\w*", r"sorry"), weight=0.75),
    Behaviour("formulaic_apology", "a formulaic apology", "agent", (
        r"script\w*", r"formulaic", r"boilerplate", r"canned", r"for any inconvenience", r"generic apolog\w*",
        r"insincere", r"hollow", r"robotic", r"rote apolog\w*",
        r"stock (?:phrases?|apolog\w*)",
    ), weight=0.75),
    Behaviour("acknowledgement", "an acknowledgement of the caller's situation", "agent", (
        r"acknowledg\w*", r"expressions? of understanding", r"understanding", r"sympath\w*", r"feelings",
    ), weight=1.0, distinct=True),
)
BY_NAME: dict[str, Behaviour] = {b.name: b for b in BEHAVIOURS}

NEGATORS_RE = re.compile(r"\b(?:not|no|never|without|nor|rather than|instead of)\b|n't\b", re.IGNORECASE)
NUMBER_WORDS: dict[str, int] = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
