"""Template-built voice-call transcripts for the demo data set, with the facts the judge must see.

Every call is scripted from a `Plan` (the call's kind, the caller's mood, whether the agent asked two
questions at once, and so on). The plan is the ground truth; the script is what the judge reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from . import lexicon
from .models import AGENT_ROLE, CALLER_ROLE, Turn

FIRST_NAMES = (
    "Amelia", "Oliver", "Priya", "James", "Fatima", "George", "Chloe", "Mohammed", "Sophie", "Daniel",
    "Hannah", "Tomasz", "Grace", "Samuel", "Aisha", "Liam", "Ruth", "Kwame", "Eleanor", "Marek",
    "Isla", "Arjun", "Megan", "Callum", "Zara", "Peter", "Niamh", "Hassan", "Lucy", "Owen",
)
LAST_NAMES = (
    "Hughes", "Patel", "Clarke", "Nowak", "Begum", "Walsh", "Okafor", "Turner", "Ahmed", "Fletcher",
    "Kowalski", "Robinson", "Khan", "Ellis", "Murray", "Brennan", "Shah", "Taylor", "Adeyemi", "Lloyd",
)
STREETS = (
    "Kirkstall Road", "Otley Road", "Harehills Lane", "Chapel Street", "Meanwood Road", "Station Parade",
    "Victoria Terrace", "Spen Lane", "Roundhay Road", "Cardigan Road",
)
POSTCODE_AREAS = ("LS6", "LS7", "LS8", "LS16", "LS4", "BD18", "HG1", "LS17")
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
CLINICS: dict[str, tuple[str, ...]] = {
    "Riverside Clinic": ("Dr. Patel", "Dr. Lindqvist"),
    "Harbour View Medical Centre": ("Dr. Okafor", "Dr. Harris"),
    "Elm Street Practice": ("Dr. Nguyen", "Dr. Brennan"),
    "Northgate Family Clinic": ("Dr. Osei", "Dr. Mackenzie"),
}
REASONS = (
    "a chest infection that won't clear", "lower back pain", "a rash on my arm", "a repeat blood test",
    "my asthma review", "an ear infection", "recurring headaches", "a sprained ankle",
)
SERVICES = (
    "physiotherapy session", "private blood test", "travel vaccination", "ear microsuction",
    "dietitian consultation",
)
INSURERS = ("Bupa", "AXA Health", "Vitality", "Aviva")
SLOT_TIMES = ("8:40", "9:10", "9:30", "10:20", "11:00", "11:45", "14:00", "14:30", "15:15", "16:10")
MEDICATION_DOSES: dict[str, str] = {
    "sertraline": "50 milligram tablets", "amlodipine": "5 milligram tablets",
    "salbutamol": "100 microgram inhaler", "levothyroxine": "75 microgram tablets",
    "metformin": "500 milligram tablets", "omeprazole": "20 milligram capsules",
}
PHARMACIES = (
    "Boots on Briggate", "Headingley Pharmacy", "Kirkstall Road Pharmacy", "Well Pharmacy Chapel Allerton",
)

EMPATHY_LINES: dict[str, str] = {
    "I'm sorry to hear": "I'm sorry to hear that.",
    "I completely understand": "I completely understand.",
    "I can imagine": "I can imagine that's been difficult.",
    "that sounds really": "Oh, that sounds really unpleasant.",
    "I understand how": "I understand how stressful this can be.",
}
SCRIPTED_LINE = "I apologise for any inconvenience."

MID_LINES: dict[str, tuple[str, ...]] = {
    "positive": ("Oh lovely, that's really helpful.", "Perfect, thank you."),
    "negative": (
        "I've been trying to get through since eight this morning, it's ridiculous.",
        "This is so frustrating, nobody ever calls me back.",
        "I'm really fed up with this, to be honest.",
    ),
    "sarcastic": ("Oh brilliant, so I'll be waiting even longer.", "Oh wonderful, another hold queue."),
}
CLOSING_LINES: dict[str, tuple[str, ...]] = {
    "positive": (
        "No, that's everything. Thank you so much, you've been really helpful!",
        "No, that's brilliant, thanks for sorting it.",
        "That's lovely, thank you. Bye!",
    ),
    "neutral": ("No, that's everything, thanks.", "No, that's all. Bye.", "That's it, thanks. Bye."),
    "negative": (
        "No. Honestly, it's ridiculous how long it took to get through today.",
        "No. I'm not happy about the wait, but fine.",
        "No. I'm fed up of chasing this, to be honest.",
    ),
    "sarcastic": (
        "No. Oh great, just great, another week of waiting.",
        "Yeah, great. Brilliant service as always.",
        "No. Oh perfect, just perfect.",
    ),
}

# How many calls of each kind an agent receives (a shuffled deck, so every seed has the same mix).
MAIN_KINDS: dict[str, int] = {
    "booking": 70, "reschedule": 30, "billing": 19, "insurance": 8, "combo": 10, "hangup": 17,
    "voicemail": 13, "wrong_number": 13,
}
PHARMACY_KINDS: dict[str, int] = {"refill": 22, "status": 10, "hangup": 4, "wrong_number": 4}
TOPICS: dict[str, str] = {
    "booking": "Appointment booking", "reschedule": "Rescheduling", "billing": "Billing enquiry",
    "insurance": "Insurance question", "combo": "Billing enquiry and booking", "hangup": "Caller hung up",
    "voicemail": "Appointment reminder", "wrong_number": "Wrong number", "refill": "Repeat prescription",
    "status": "Prescription status",
}
BOOKING_KINDS = frozenset({"booking", "reschedule", "combo"})
NO_BOOKING_KINDS = frozenset({"billing", "insurance"})


@dataclass
class Person:
    first: str
    last: str
    dob: str
    postcode: str
    address: str
    patient_id: str


@dataclass
class Plan:
    """The truth about a call, decided before its script is written."""

    kind: str
    mood: str
    sarcastic: bool = False
    related_pair: bool = False
    genuine_double: bool = False
    booking_ok: bool = True
    readback: bool = True
    scripted: int = 0
    empathy: int = 0
    hold: float = 0.0


@dataclass
class Line:
    role: str
    text: str
    hold_before: float = 0.0
    acknowledges: bool = False  # an agent reply where an acknowledgement of the caller fits
    priority: bool = False  # the reply right after the caller showed their mood


@dataclass
class Script:
    lines: list[Line] = field(default_factory=list)
    double_used: bool = False

    def agent(self, text: str, acknowledges: bool = True, hold: float = 0.0) -> None:
        self.lines.append(Line(AGENT_ROLE, text, hold, acknowledges))

    def caller(self, text: str) -> None:
        self.lines.append(Line(CALLER_ROLE, text))


@dataclass
class Scene:
    """Everything a script may mention."""

    person: Person
    clinic: str
    doctor: str
    reason: str
    slots: tuple[str, str]
    chosen: str
    old_slot: str
    greeting: str
    amount: int
    service: str
    insurer: str
    medication: str
    pharmacy: str


@dataclass
class Conversation:
    plan: Plan
    scene: Scene
    turns: tuple[Turn, ...]
    duration: float

    def count(self, role: str) -> int:
        return sum(1 for t in self.turns if t.role == role)


# --- scene -----------------------------------------------------------------------------------


def make_person(rng: random.Random) -> Person:
    dob = datetime(1940, 1, 1) + timedelta(days=rng.randint(0, 65 * 365))
    postcode = (f"{rng.choice(POSTCODE_AREAS)} {rng.randint(1, 9)}"
                f"{rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}")
    return Person(
        first=rng.choice(FIRST_NAMES), last=rng.choice(LAST_NAMES),
        dob=f"{dob.day} {dob:%B %Y}", postcode=postcode,
        address=f"{rng.randint(2, 180)} {rng.choice(STREETS)}", patient_id=f"NW-{rng.randint(100000, 999999)}",
    )


def slot_after(rng: random.Random, when: datetime, min_days: int, max_days: int) -> str:
    day = when + timedelta(days=rng.randint(min_days, max_days))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return f"{day:%A} {day.day} {day:%B} at {rng.choice(SLOT_TIMES)}"


def make_scene(rng: random.Random, when: datetime) -> Scene:
    clinic = rng.choice(sorted(CLINICS))
    slots = (slot_after(rng, when, 1, 6), slot_after(rng, when, 7, 12))
    part = "morning" if when.hour < 12 else "afternoon"
    return Scene(
        person=make_person(rng), clinic=clinic, doctor=rng.choice(CLINICS[clinic]),
        reason=rng.choice(REASONS), slots=slots, chosen=rng.choice(slots),
        old_slot=slot_after(rng, when, 1, 5), greeting=f"Good {part}",
        amount=rng.choice((45, 60, 75, 90, 120, 145, 180)), service=rng.choice(SERVICES),
        insurer=rng.choice(INSURERS), medication=rng.choice(sorted(MEDICATION_DOSES)),
        pharmacy=rng.choice(PHARMACIES),
    )


def kind_deck(rng: random.Random, main: bool) -> list[str]:
    counts = MAIN_KINDS if main else PHARMACY_KINDS
    deck = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(deck)
    return deck


def make_plan(rng: random.Random, kind: str, main: bool) -> Plan:
    if kind in ("hangup", "voicemail", "wrong_number"):
        return Plan(kind=kind, mood="neutral")
    mood = rng.choices(("positive", "neutral", "negative"), weights=(0.35, 0.4, 0.25))[0]
    plan = Plan(kind=kind, mood=mood)
    plan.sarcastic = mood == "negative" and rng.random() < 0.25
    plan.related_pair = rng.random() < 0.17
    plan.genuine_double = main and rng.random() < 0.12
    plan.booking_ok = rng.random() > 0.12
    plan.readback = rng.random() > 0.15
    if mood == "negative" and rng.random() < 0.25:
        plan.scripted = rng.choice((2, 3))
    else:
        plan.empathy = rng.choice((1, 1, 2, 3) if mood == "negative" else (0, 0, 1))
    roll = rng.random()
    if kind == "insurance" or roll < 0.12:
        plan.hold = rng.uniform(150.0, 290.0)
    elif roll < 0.45:
        plan.hold = rng.uniform(15.0, 90.0)
    return plan


# --- shared script pieces --------------------------------------------------------------------


def greet(s: Script, sc: Scene, pharmacy: bool) -> None:
    if pharmacy:
        s.agent(f"{sc.greeting}, Northwind Pharmacy Line, this is Sam. How can I help?", acknowledges=False)
    else:
        s.agent(f"{sc.greeting}, Northwind Health, you're speaking with Ava. How can I help you today?",
                acknowledges=False)


def identify(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    p = sc.person
    opener = rng.choice(("Of course, I can help with that.", "Certainly.", "No problem at all."))
    if plan.related_pair:
        if rng.random() < 0.5:
            s.agent(f"{opener} Can I have your postcode and the first line of your address?")
            s.caller(f"It's {p.postcode}, {p.address}.")
        else:
            s.agent(f"{opener} Could you confirm your date of birth and your full name for me?")
            s.caller(f"{p.dob}, and it's {p.first} {p.last}.")
        return
    s.agent(f"{opener} Could I take your full name, please?")
    s.caller(f"It's {p.first} {p.last}.")
    s.agent(f"Thank you, {p.first}. And what's your date of birth?")
    s.caller(f"{p.dob}.")


def mood_moment(s: Script, plan: Plan, rng: random.Random) -> None:
    """The caller lets their mood show mid-call; the agent's reply is the natural place to acknowledge it."""
    key = "sarcastic" if plan.sarcastic else plan.mood
    chance = {"positive": 0.4, "negative": 0.7, "sarcastic": 0.5}.get(key, 0.0)
    if rng.random() < chance:
        s.lines[-1].text += " " + rng.choice(MID_LINES[key])
        s.agent(rng.choice(("Let me see what I can do for you.", "Let's get this sorted for you.")))
        s.lines[-1].priority = True


def ask(s: Script, plan: Plan, first: tuple[str, str], second: tuple[str, str]) -> None:
    """Two questions; an agent prone to stacking questions asks both in one turn."""
    if plan.genuine_double and not s.double_used:
        s.double_used = True
        s.agent(f"{first[0]} {second[0]}")
        s.caller(f"{first[1]} {second[1]}")
        return
    s.agent(first[0])
    s.caller(first[1])
    s.agent(second[0])
    s.caller(second[1])


def hold_then(s: Script, plan: Plan, announce: str, text: str) -> None:
    if plan.hold > 0:
        s.agent(announce)
        s.agent(f"Thanks for holding. {text}", hold=plan.hold)
    else:
        s.agent(text)


def close(s: Script, plan: Plan, rng: random.Random, pharmacy: bool) -> None:
    key = "sarcastic" if plan.sarcastic else plan.mood
    s.caller(rng.choice(CLOSING_LINES[key]))
    place = "Northwind Pharmacy Line" if pharmacy else "Northwind Health"
    s.agent(f"Thank you for calling {place}. Take care, goodbye.", acknowledges=False)


def offer_and_book(s: Script, sc: Scene, plan: Plan, rng: random.Random, moved: bool) -> None:
    hold_then(s, plan, "Let me check the diary for you, one moment.",
              f"I have {sc.slots[0]} or {sc.slots[1]} with {sc.doctor}. Which would suit you better?")
    s.caller(rng.choice((f"{sc.chosen} works for me.", f"The {sc.chosen} one, please.")))
    anything_else = "Is there anything else I can help you with today?"
    if not plan.booking_ok:
        s.agent("I'm having trouble with the booking system and can't confirm that slot at the moment. "
                f"I'll pass your details to the team and someone will call you back today. {anything_else}")
    elif moved:
        s.agent(f"Done. I've moved your appointment to {sc.chosen} with {sc.doctor}. You'll get a new "
                f"confirmation text. {anything_else}")
    else:
        s.agent(f"Lovely. I've booked you in with {sc.doctor} at {sc.clinic} on {sc.chosen}. You'll get a text "
                f"confirmation shortly. {anything_else}")


# --- flows -----------------------------------------------------------------------------------


def booking_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    greet(s, sc, pharmacy=False)
    s.caller(rng.choice((
        f"Hi, I'd like to book an appointment with {sc.doctor}, please.",
        f"Hello, I need to see a doctor about {sc.reason}.",
        f"Hi there, can I make an appointment? I've had {sc.reason} for a few days now.",
    )))
    identify(s, sc, plan, rng)
    mood_moment(s, plan, rng)
    ask(s, plan, (f"Thanks, I've found your record at {sc.clinic}. What's the appointment for?",
                  f"It's for {sc.reason}."),
        ("And would you prefer a morning or an afternoon?", "Mornings, ideally."))
    offer_and_book(s, sc, plan, rng, moved=False)
    close(s, plan, rng, pharmacy=False)


def reschedule_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    greet(s, sc, pharmacy=False)
    s.caller(f"Hi, I need to move my appointment on {sc.old_slot}. Something's come up at work.")
    identify(s, sc, plan, rng)
    mood_moment(s, plan, rng)
    ask(s, plan, (f"Thanks, {sc.person.first}. I can see you're down to see {sc.doctor} on {sc.old_slot}. "
                  "What day would work better for you?", "Later that week if possible."),
        (f"And is it still for {sc.reason.replace('my ', 'your ')}?", "Yes, same thing."))
    offer_and_book(s, sc, plan, rng, moved=True)
    close(s, plan, rng, pharmacy=False)


def billing_part(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    greet(s, sc, pharmacy=False)
    s.caller(rng.choice((
        f"Hi, I've had a bill through for £{sc.amount} and I'm not sure what it's for.",
        f"Hello, I'm calling about an invoice I received. It says I owe £{sc.amount}.",
    )))
    identify(s, sc, plan, rng)
    mood_moment(s, plan, rng)
    hold_then(s, plan, "Let me pull up your account, one moment.",
              f"Thanks, {sc.person.first}. That charge is for the {sc.service} at {sc.clinic} last month; it "
              "isn't covered by your plan.")
    s.caller(rng.choice(("Right. Can I pay it in instalments?", "Okay. Is there any way to spread the cost?")))
    ask(s, plan, ("Yes, we can split it over three months. Would you like me to set that up now?", "Yes, please."),
        ("And shall I email the payment schedule to you?", "Email is fine."))


def billing_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    billing_part(s, sc, plan, rng)
    s.agent(f"Done. I've set up a payment plan of £{sc.amount // 3} a month starting on the 1st. "
            "Is there anything else I can help you with today?")
    close(s, plan, rng, pharmacy=False)


def combo_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    billing_part(s, sc, plan, rng)
    s.agent(f"Done. I've set up a payment plan of £{sc.amount // 3} a month starting on the 1st.")
    s.caller(f"While I've got you, could I also book an appointment? It's for {sc.reason}.")
    offer_and_book(s, sc, replace(plan, hold=0.0), rng, moved=False)
    close(s, plan, rng, pharmacy=False)


def insurance_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    greet(s, sc, pharmacy=False)
    s.caller(f"Hello, I wanted to check whether my {sc.insurer} policy covers a {sc.service}.")
    identify(s, sc, plan, rng)
    mood_moment(s, plan, rng)
    hold_then(s, plan, "Let me check that with the insurer's portal for you, it'll just take a moment.",
              f"Your {sc.insurer} policy covers a {sc.service} up to £{sc.amount * 4} a year, but you'd need a "
              "referral from your GP first.")
    s.caller("Okay. How do I get the referral?")
    ask(s, plan, ("Your GP can send it to us directly. Would you like me to note that you're expecting one?",
                  "Yes, please."),
        ("And is this the best number to reach you on?", "Yes, it is."))
    s.agent("That's noted on your record. Is there anything else I can help you with today?")
    close(s, plan, rng, pharmacy=False)


def hangup_flow(s: Script, sc: Scene, rng: random.Random, pharmacy: bool) -> None:
    greet(s, sc, pharmacy)
    if rng.random() < 0.5:
        s.caller(rng.choice(("Hi, sorry, I was just—", "Hello? Hello?", "Oh— hang on, one sec.")))
    else:
        s.agent("Hello, are you still there? I can't hear anything, so I'll end the call now. Please call back "
                "if you need us.", hold=rng.uniform(5.0, 9.0))


def wrong_number_flow(s: Script, sc: Scene, rng: random.Random, pharmacy: bool) -> None:
    greet(s, sc, pharmacy)
    s.caller(rng.choice(("Oh, sorry, I think I've dialled the wrong number.", "Sorry, is that the taxi firm?")))
    s.agent("No problem at all. Have a good day!", acknowledges=False)


def voicemail_flow(s: Script, sc: Scene) -> None:
    p = sc.person
    s.agent(f"Hello, this is Ava from Northwind Health calling for {p.first} {p.last} about your appointment on "
            f"{sc.chosen}. Please call us back on 0113 496 0000 if you need to change it. Thank you, goodbye.",
            acknowledges=False)


def refill_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    greet(s, sc, pharmacy=True)
    s.caller(rng.choice((
        f"Hi, I need to order a repeat prescription for my {sc.medication}.",
        f"Hello, I've nearly run out of my {sc.medication} and need a refill.",
    )))
    identify(s, sc, plan, rng)
    mood_moment(s, plan, rng)
    s.agent(f"Thank you, {sc.person.first}. Which pharmacy would you like it sent to?")
    s.caller(f"{sc.pharmacy}, please.")
    ready = "It'll be ready to collect in two working days. Is there anything else I can help with?"
    if plan.readback:
        s.agent(f"Just to confirm, that's {sc.medication} {MEDICATION_DOSES[sc.medication]}, sent to "
                f"{sc.pharmacy}. {ready}")
    else:
        s.agent(f"That's all submitted. {ready}")
    close(s, plan, rng, pharmacy=True)


def status_flow(s: Script, sc: Scene, plan: Plan, rng: random.Random) -> None:
    greet(s, sc, pharmacy=True)
    s.caller("Hi, I'm calling to check whether my prescription is ready to collect.")
    identify(s, sc, plan, rng)
    mood_moment(s, plan, rng)
    hold_then(s, plan, "Let me look that up, one moment.",
              f"It's ready for collection at {sc.pharmacy}. Is there anything else I can help with?")
    close(s, plan, rng, pharmacy=True)


def write_script(plan: Plan, sc: Scene, rng: random.Random, pharmacy: bool) -> Script:
    s = Script()
    if plan.kind == "booking":
        booking_flow(s, sc, plan, rng)
    elif plan.kind == "reschedule":
        reschedule_flow(s, sc, plan, rng)
    elif plan.kind == "billing":
        billing_flow(s, sc, plan, rng)
    elif plan.kind == "combo":
        combo_flow(s, sc, plan, rng)
    elif plan.kind == "insurance":
        insurance_flow(s, sc, plan, rng)
    elif plan.kind == "refill":
        refill_flow(s, sc, plan, rng)
    elif plan.kind == "status":
        status_flow(s, sc, plan, rng)
    elif plan.kind == "voicemail":
        voicemail_flow(s, sc)
    elif plan.kind == "wrong_number":
        wrong_number_flow(s, sc, rng, pharmacy)
    else:
        hangup_flow(s, sc, rng, pharmacy)
    return s


# --- acknowledgements and timing --------------------------------------------------------------


def weave_acknowledgements(s: Script, plan: Plan, rng: random.Random) -> None:
    """Prefix acknowledgements onto agent replies; records how many actually fit in the plan."""
    slots = [i for i, line in enumerate(s.lines) if line.acknowledges and i > 0]
    rng.shuffle(slots)
    slots.sort(key=lambda i: not s.lines[i].priority)
    if plan.scripted:
        chosen = slots[: plan.scripted]
        for i in chosen:
            s.lines[i].text = f"{SCRIPTED_LINE} {s.lines[i].text}"
        plan.scripted = len(chosen)
        return
    phrases = rng.sample(list(EMPATHY_LINES), min(plan.empathy, len(slots), len(EMPATHY_LINES)))
    chosen = slots[: len(phrases)]
    for i, phrase in zip(chosen, phrases, strict=True):
        s.lines[i].text = f"{EMPATHY_LINES[phrase]} {s.lines[i].text}"
    plan.empathy = len(phrases)


def time_turns(s: Script, rng: random.Random) -> tuple[tuple[Turn, ...], float]:
    at = rng.uniform(0.6, 1.8)
    turns: list[Turn] = []
    for line in s.lines:
        at += line.hold_before
        spoken = len(line.text.split()) / rng.uniform(2.3, 2.8) + rng.uniform(0.3, 0.9)
        turns.append(Turn(line.role, line.text, round(at, 2), round(at + spoken, 2)))
        at += spoken + rng.uniform(0.5, 1.6)
    return tuple(turns), round(at + rng.uniform(0.5, 2.5), 2)


def make_conversation(rng: random.Random, when: datetime, kind: str, main: bool) -> Conversation:
    plan = make_plan(rng, kind, main)
    scene = make_scene(rng, when)
    script = write_script(plan, scene, rng, pharmacy=not main)
    weave_acknowledgements(script, plan, rng)
    turns, duration = time_turns(script, rng)
    return Conversation(plan, scene, turns, duration)


def empathy_lexicon_check() -> bool:
    """Every acknowledgement line carries exactly its own phrase (guards the lexicon/generator pact)."""
    return all(
        lexicon.distinct_phrases(line, lexicon.GENUINE_EMPATHY) == [phrase]
        for phrase, line in EMPATHY_LINES.items()
    )
