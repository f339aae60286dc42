"""Phrases shared by the transcript generator and the stand-in judge.

The judge reads transcripts through these lists, and the generator writes transcripts from them, so
the two stay in step: a test checks that the seeded judge agrees with the hidden truth everywhere
except on the deliberate, named misjudgment patterns.
"""

from __future__ import annotations

import re

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


def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")", re.IGNORECASE)


POSITIVE_RE = _pattern(POSITIVE_CUES)
NEGATIVE_RE = _pattern(NEGATIVE_CUES)
SARCASM_RE = _pattern(SARCASM_MARKERS)
BOOKING_REQUEST_RE = _pattern(BOOKING_REQUEST_CUES)
REFILL_REQUEST_RE = _pattern(REFILL_REQUEST_CUES)


def count_phrases(text: str, phrases: tuple[str, ...]) -> int:
    lowered = text.lower()
    return sum(lowered.count(p.lower()) for p in phrases)


def distinct_phrases(text: str, phrases: tuple[str, ...]) -> list[str]:
    lowered = text.lower()
    return [p for p in phrases if p.lower() in lowered]


def identity_details_in(sentence: str) -> list[str]:
    lowered = sentence.lower()
    return [d for d in IDENTITY_DETAILS if d in lowered]
