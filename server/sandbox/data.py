"""The seeded demo data set: one clinic group, two voice agents, their calls, metrics and hidden truth.

Same seed and anchor → byte-identical data. Calls fall in the 29 days before the anchor (default:
today's midnight, UTC), so the API's default 30-day window shows all of them.
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from . import judge as judge_mod
from .engine import Evaluator, assigned, success_of
from .models import AGENT_ROLE, CALLER_ROLE, Agent, Call, Metric, Truth
from .render import iso, transcript_text
from .transcripts import (
    BOOKING_KINDS,
    MAIN_KINDS,
    NO_BOOKING_KINDS,
    PHARMACY_KINDS,
    TOPICS,
    Conversation,
    kind_deck,
    make_conversation,
)

PROJECT_ID = 812
PROJECT_NAME = "Northwind Health"
MAIN_AGENT_ID = 2210
PHARMACY_AGENT_ID = 2231
MAIN_CALLS = sum(MAIN_KINDS.values())
PHARMACY_CALLS = sum(PHARMACY_KINDS.values())
FIRST_CALL_ID = 5181000
WINDOW_DAYS = 29

ONE_QUESTION_ID = 9101
BOOKING_ID = 9102
SENTIMENT_ID = 9103
EMPATHY_ID = 9104
UNDER_FIVE_ID = 9105
REFILL_ID = 9106

# The seeded descriptions follow Cekura's prompt pattern (seed 000; cekura-metric-design's prompt-patterns):
# SCOPE & FOCUS, FAILURE CONDITIONS, DO NOT FLAG, N/A CONDITIONS. Each one misjudges some calls because of
# what it literally says, which the stand-in judge applies as written (docs/sandbox-judge.md):
# - One Question Per Turn: failure condition 2 is too literal (a request for related details is "several
#   questions") and there is no DO NOT FLAG section.
# - Appointment Booked Correctly: the failure condition covers every call without a booking, and no N/A
#   condition scopes out calls where no appointment was requested.
# - Caller Sentiment: the labels' signals say nothing about sarcasm, so sarcastic praise reads as praise.
# - Empathy: CREDIT says "every apology", so scripted apologies earn points.

ONE_QUESTION_PROMPT = """You are reviewing a phone call handled by Northwind Health's front-desk voice agent.

SCOPE & FOCUS
This metric evaluates question pacing ONLY. Callers on the phone can only process one request at a time: \
the agent must ask at most ONE question per turn and wait for the answer before asking the next.

INPUTS:
- {{transcript}}

FAILURE CONDITIONS (Only These Count)
1. An agent turn contains two or more questions.
2. An agent asks for several pieces of information in one compound request (it counts as several questions).

N/A CONDITIONS
- The agent spoke fewer than three turns (hang-ups, voicemail, wrong numbers).

OUTPUT INSTRUCTIONS
Return: TRUE | FALSE | N/A. If FALSE, quote the turn and its MM:SS timestamp."""

BOOKING_PROMPT = """Evaluate whether the agent followed Northwind Health's booking workflow correctly.

SCOPE & FOCUS
This metric evaluates the booking workflow ONLY.

WORKFLOW
1. Verify the caller's identity.
2. Establish the reason for the visit and the caller's preferred time.
3. Offer available slots with a named clinician.
4. Book the chosen slot and read the day, date and time back to the caller.

FAILURE CONDITIONS (Only These Count)
1. The agent did not complete a booking, or ended the call without confirming the booked slot back to \
the caller.

N/A CONDITIONS
- The caller hung up or said fewer than two things before the call ended.

OUTPUT INSTRUCTIONS
Return: TRUE | FALSE | N/A. TRUE when an appointment was booked (or moved) and the day and time were read back."""

SENTIMENT_PROMPT = """Classify the caller's overall sentiment by the end of the call.

CLASSIFICATION
- positive: the caller is pleased, grateful or relieved.
- neutral: the caller is matter-of-fact; no clear emotion either way.
- negative: the caller is frustrated, annoyed or upset.

PRIORITY RULES
Base the label on what the caller says, weighing the end of the call most heavily.

N/A CONDITIONS
- The caller never speaks."""

EMPATHY_PROMPT = """Rate how empathetic the agent was, on a scale from 0 to 5.

SCORING
- 5: the agent consistently acknowledges the caller's feelings and situation.
- 3: the agent is polite and acknowledges the caller at least once.
- 1: the agent is transactional and ignores clear signs of distress.

CREDIT
- Every apology, acknowledgement or expression of understanding from the agent.

N/A CONDITIONS
- The caller said fewer than two things."""

UNDER_FIVE_CODE = '''# Pass when the call lasted under five minutes: long calls mean the caller waited on hold.
LIMIT_SECONDS = 300

duration = float(data.get("call_duration") or 0.0)
minutes, seconds = divmod(int(round(duration)), 60)
_result = duration < LIMIT_SECONDS
if _result:
    _explanation = f"The call lasted {minutes}m {seconds:02d}s, under the five-minute limit."
else:
    _explanation = (
        f"The call lasted {minutes}m {seconds:02d}s, over the five-minute limit of "
        f"{LIMIT_SECONDS // 60} minutes."
    )
'''

REFILL_PROMPT = """Check that the agent read the prescription details back before submitting a repeat \
prescription request.

FAILURE CONDITIONS (Only These Count)
1. The request was submitted without reading the medication and the collection pharmacy back to the caller \
("Just to confirm, ...").

N/A CONDITIONS
- The caller did not ask for a repeat prescription.
- The caller said fewer than two things before the call ended."""


@dataclass
class Dataset:
    seed: int
    now: datetime
    project_id: int
    project_name: str
    main_agent_id: int
    agents: dict[int, Agent]
    metrics: dict[int, Metric]
    calls: dict[int, Call]
    truth: dict[int, dict[int, Truth]]


def default_anchor() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def seed_agents() -> dict[int, Agent]:
    return {
        MAIN_AGENT_ID: Agent(
            MAIN_AGENT_ID, "Northwind Front Desk (Ava)", "asst_nw_frontdesk_7f3a",
            "Ava, the front-desk voice agent for Northwind Health's four clinics in Leeds and Harrogate. "
            "Books and moves appointments, answers billing and insurance questions, and verifies the "
            "caller's identity before discussing any record.",
        ),
        PHARMACY_AGENT_ID: Agent(
            PHARMACY_AGENT_ID, "Northwind Pharmacy Line (Sam)", "asst_nw_pharmacy_2c91",
            "Sam, the Northwind Pharmacy Line voice agent. Takes repeat prescription requests, reads the "
            "medication and collection pharmacy back to the caller, and answers prescription status questions.",
        ),
    }


def seed_metrics(now: datetime) -> dict[int, Metric]:
    created = now - timedelta(days=60)
    both = [MAIN_AGENT_ID, PHARMACY_AGENT_ID]
    specs: list[dict[str, Any]] = [
        dict(id=ONE_QUESTION_ID, name="One Question Per Turn", description=ONE_QUESTION_PROMPT, type="llm_judge",
             eval_type="binary", enum_values=[], agents=[MAIN_AGENT_ID], rule="one_question",
             slug="one_question_per_turn"),
        dict(id=BOOKING_ID, name="Appointment Booked Correctly", description=BOOKING_PROMPT, type="llm_judge",
             eval_type="binary", enum_values=[], agents=[MAIN_AGENT_ID], rule="booking",
             slug="appointment_booked_correctly"),
        dict(id=SENTIMENT_ID, name="Caller Sentiment", description=SENTIMENT_PROMPT, type="llm_judge",
             eval_type="enum", enum_values=["positive", "neutral", "negative"], agents=both, rule="sentiment",
             slug="caller_sentiment"),
        dict(id=EMPATHY_ID, name="Empathy", description=EMPATHY_PROMPT, type="llm_judge",
             eval_type="continuous_qualitative", enum_values=[], agents=both, rule="empathy", slug="empathy"),
        dict(id=UNDER_FIVE_ID, name="Call Under Five Minutes",
             description="Passes when the call lasted under five minutes (300 seconds). Evaluated in Python.",
             type="custom_code", eval_type="binary", enum_values=[], agents=[MAIN_AGENT_ID], rule="generic",
             slug="call_under_five_minutes", custom_code=UNDER_FIVE_CODE),
        dict(id=REFILL_ID, name="Refill Details Confirmed", description=REFILL_PROMPT, type="llm_judge",
             eval_type="binary", enum_values=[], agents=[PHARMACY_AGENT_ID], rule="refill",
             slug="refill_details_confirmed"),
    ]
    metrics: dict[int, Metric] = {}
    for order, spec in enumerate(specs, start=1):
        metric = Metric(project=PROJECT_ID, display_order=order, created_at=created, updated_at=created, **spec)
        metrics[metric.id] = metric
    return metrics


def _call_times(rng: random.Random, now: datetime, count: int) -> list[datetime]:
    days = list(range(WINDOW_DAYS))
    weights = [{5: 0.35, 6: 0.15}.get((now - timedelta(days=d + 1)).weekday(), 1.0) for d in days]
    hours = list(range(8, 19))
    hour_weights = [0.6, 1.3, 1.2, 1.0, 0.9, 1.0, 1.1, 1.0, 0.9, 0.7, 0.4]
    moments = []
    for _ in range(count):
        day = now - timedelta(days=rng.choices(days, weights)[0] + 1)
        hour = rng.choices(hours, hour_weights)[0]
        moments.append(day.replace(hour=hour, minute=rng.randint(0, 59), second=rng.randint(0, 59)))
    return moments


def _ended_reason(conv: Conversation, rng: random.Random) -> str:
    kind = conv.plan.kind
    if kind == "voicemail":
        return "voicemail"
    if kind == "hangup":
        return "silence-timed-out" if conv.count(CALLER_ROLE) == 0 else "customer-ended-call"
    if kind == "wrong_number":
        return "customer-ended-call"
    return "assistant-ended-call" if rng.random() < 0.6 else "customer-ended-call"


def _context(conv: Conversation, main: bool, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    sc, plan = conv.scene, conv.plan
    known = plan.kind not in ("hangup", "wrong_number")
    caller_type = rng.choices(("existing_patient", "new_patient", "family_member"), (0.75, 0.15, 0.1))[0]
    metadata: dict[str, Any] = {
        "caller_type": caller_type if known else "unknown",
        "clinic" if main else "pharmacy": sc.clinic if main else sc.pharmacy,
        "channel": "phone",
        "direction": "outbound" if plan.kind == "voicemail" else "inbound",
        "language": "en-GB",
    }
    variables: dict[str, Any] = {"clinic": sc.clinic} if main else {"pharmacy": sc.pharmacy}
    if known:
        variables.update(patient_name=f"{sc.person.first} {sc.person.last}", patient_id=sc.person.patient_id)
    if plan.kind in BOOKING_KINDS or plan.kind == "voicemail":
        variables.update(doctor=sc.doctor, appointment_slot=sc.chosen)
    if plan.kind == "insurance":
        variables["insurer"] = sc.insurer
    if plan.kind in ("refill", "status"):
        variables["medication"] = sc.medication
    return metadata, variables


def _truth(rule: str, conv: Conversation) -> Truth:
    plan = conv.plan
    agent_turns, caller_turns = conv.count(AGENT_ROLE), conv.count(CALLER_ROLE)
    if rule == "one_question":
        if agent_turns < 3:
            return Truth(None, None)
        if plan.genuine_double:
            return Truth(False, None)
        return Truth(True, "related_details_confirmation" if plan.related_pair else None)
    if rule == "booking":
        if caller_turns < 2 or plan.kind not in BOOKING_KINDS | NO_BOOKING_KINDS:
            return Truth(None, None)
        if plan.kind in NO_BOOKING_KINDS:
            return Truth(None, "no_booking_requested")
        return Truth(plan.booking_ok, None)
    if rule == "sentiment":
        if caller_turns == 0:
            return Truth(None, None)
        return Truth("negative", "sarcasm") if plan.sarcastic else Truth(plan.mood, None)
    if rule == "empathy":
        if caller_turns < 2:
            return Truth(None, None)
        score = judge_mod.scale_score(float(plan.empathy))
        return Truth(score, "scripted_apology" if plan.scripted else None)
    if rule == "refill":
        if caller_turns < 2 or plan.kind != "refill":
            return Truth(None, None)
        return Truth(plan.readback, None)
    return Truth(conv.duration < 300, None)


def generate(seed: int, now: datetime, evaluator: Evaluator) -> Dataset:
    rng = random.Random(seed)
    agents = seed_agents()
    metrics = seed_metrics(now)
    for metric in metrics.values():
        if metric.custom_code:
            evaluator.trust(metric.custom_code)
    slots = [(t, MAIN_AGENT_ID) for t in _call_times(rng, now, MAIN_CALLS)]
    slots += [(t, PHARMACY_AGENT_ID) for t in _call_times(rng, now, PHARMACY_CALLS)]
    slots.sort()
    decks = {MAIN_AGENT_ID: kind_deck(rng, main=True), PHARMACY_AGENT_ID: kind_deck(rng, main=False)}
    calls: dict[int, Call] = {}
    truth: dict[int, dict[int, Truth]] = {m: {} for m in metrics}
    call_id = FIRST_CALL_ID
    for when, agent_id in slots:
        call_id += rng.randint(3, 47)
        main = agent_id == MAIN_AGENT_ID
        conv = make_conversation(rng, when, decks[agent_id].pop(), main)
        metadata, variables = _context(conv, main, rng)
        created = when + timedelta(seconds=int(conv.duration + rng.uniform(8, 40)))
        call = Call(
            id=call_id, agent_id=agent_id, project_id=PROJECT_ID,
            provider_call_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            timestamp=when, created_at=created, updated_at=created + timedelta(seconds=rng.randint(25, 140)),
            turns=conv.turns, duration_s=conv.duration, call_ended_reason=_ended_reason(conv, rng),
            customer_number=f"+447700900{rng.randint(0, 999):03d}", topic=TOPICS[conv.plan.kind],
            metadata=metadata, dynamic_variables=variables,
        )
        on_call = assigned(metrics.values(), agent_id)
        evaluator.evaluate(call, agents[agent_id], on_call)
        call.success = success_of(call, metrics)
        for metric in on_call:
            truth[metric.id][call.id] = _truth(metric.rule if metric.type != "custom_code" else "duration", conv)
        calls[call.id] = call
    return Dataset(seed, now, PROJECT_ID, PROJECT_NAME, MAIN_AGENT_ID, agents, metrics, calls, truth)


def clone(ds: Dataset) -> Dataset:
    """A copy whose calls, metrics and truth tables can be written to without touching `ds` (turns, results and
    truths are replaced, never changed in place, so they are shared). `ds` may be the seeded set of several stores
    (`Store._seeded`)."""
    metrics = {i: replace(m, enum_values=list(m.enum_values), agents=list(m.agents),
                          configuration=dict(m.configuration)) for i, m in ds.metrics.items()}
    calls = {i: _call_copy(c) for i, c in ds.calls.items()}
    truth = {i: dict(table) for i, table in ds.truth.items()}
    return replace(ds, agents=dict(ds.agents), metrics=metrics, calls=calls, truth=truth)


def _call_copy(call: Call) -> Call:
    """`replace(call, ...)` with fresh results, metadata and variables, for half the CPU (every sandbox reset copies
    every call): a shallow copy of the record, then its three dicts."""
    copied = copy.copy(call)
    copied.results = dict(call.results)
    copied.metadata = dict(call.metadata)
    copied.dynamic_variables = dict(call.dynamic_variables)
    return copied


def snapshot(ds: Dataset) -> dict[str, Any]:
    """Everything generated, JSON-ready (for determinism checks)."""
    return {
        "seed": ds.seed, "now": iso(ds.now),
        "metrics": {m.id: [m.name, m.description, m.custom_code] for m in ds.metrics.values()},
        "calls": [
            {"id": c.id, "agent": c.agent_id, "call_id": c.provider_call_id, "timestamp": iso(c.timestamp),
             "created_at": iso(c.created_at), "updated_at": iso(c.updated_at), "duration": c.duration_s,
             "transcript": transcript_text(c), "ended": c.call_ended_reason, "number": c.customer_number,
             "topic": c.topic, "metadata": c.metadata, "variables": c.dynamic_variables, "success": c.success,
             "results": {m: [r.value, r.explanation] for m, r in c.results.items()}}
            for c in ds.calls.values()
        ],
        "truth": {m: {c: [t.expected, t.pattern] for c, t in calls.items()} for m, calls in ds.truth.items()},
    }
