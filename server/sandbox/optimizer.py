"""The sandbox's deterministic stand-in for Labs' `process_feedbacks` optimizer, driven by feedback text alone.

For each Lab entry it asks the judge what the metric's current description scores (the judge's value,
as Cekura's Labs re-runs the prompt on its samples). Where the reviewer's expected value disagrees, it
takes the reviewer's *reason* — their sentences and quotes, minus verdict boilerplate ("Wrong. It should
be TRUE.") — and writes it, in the reviewer's own words, into the section that expected value calls for:

- binary: expected TRUE over a FALSE → DO NOT FLAG; expected FALSE over a TRUE → FAILURE CONDITIONS;
- enum: expected label L → a signal line "L: <reason>" under CLASSIFICATION;
- numeric: expected lower → DO NOT CREDIT; expected higher → CREDIT;
- any type: expected N/A over a value → N/A CONDITIONS.

It knows nothing else: not the judge's vocabulary, not the sandbox's hidden truth, not the demo's
misjudgment patterns. So feedback that names the behaviour (a quote, what should not be flagged) fixes
the calls that show it, wrong feedback writes a wrong clause that the judge then applies to every call,
and feedback with no reason changes nothing. Old and new scores come from running the judge with the old
and the new description over the same entries. Nothing is applied: the caller has to PATCH.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .judge import Verdict, safe_judge
from .models import Agent, Call, VoteValue
from .render import same_value

MAX_CLAUSES = 8
MIN_CONTENT_WORDS = 2
HEADINGS: dict[str, str] = {
    "failure": "FAILURE CONDITIONS (FROM LABS FEEDBACK)",
    "exempt": "DO NOT FLAG THESE (FROM LABS FEEDBACK)",
    "exempt_numeric": "DO NOT CREDIT (FROM LABS FEEDBACK)",
    "credit": "CREDIT (FROM LABS FEEDBACK)",
    "na": "N/A CONDITIONS (FROM LABS FEEDBACK)",
    "label": "CLASSIFICATION (FROM LABS FEEDBACK)",
}
NUMERIC_TYPES = frozenset({"numeric", "continuous_qualitative"})

# Words that carry no reason: verdicts, judge talk, filler. A note made only of these says nothing.
_EMPTY_WORDS = frozenset(str.split("""
a an the this that these those it its it's is was were be been being are am should would could have has had
i i'm we you they he she me my our so and or but to of in on at for with as by from than then there here not no
yes very really just also too wrong wrongly incorrect incorrectly correct correctly right result results metric
judge judged score scored value label true false n/a na pass passed fail failed failing agree disagree disagreed
call calls think marked misread misjudged mistake error please fix fixed actually instead rating rated verdict
outcome one ok okay yeah nope bad good do does did got get sure maybe agent caller customer said says
"""))
_TIMESTAMP = re.compile(r"\b(?:at\s+)?\d{1,2}:\d{2}(?::\d{2})?\b,?", re.I)
_VALUE = r"(?:N/?A|TRUE|FALSE|PASS|FAIL|-?\d+(?:\.\d+)?|[A-Za-z_-]+)\b"
_BOILERPLATE = (
    re.compile(r"[,;:]?\s*(?:so|and|which means|therefore)?\s*(?:it|this|that|the (?:result|metric|score|value|"
               r"label|call|outcome|answer))?\s*should (?:have been|be|read|say)\s+(?:scored |marked |rated )?(?:as )?"
               + _VALUE, re.I),
    re.compile(r"[,;:]?\s*the correct (?:result|value|label|score|outcome|answer) (?:is|was|would be)\s+" + _VALUE,
               re.I),
    re.compile(r"[,;:]?\s*the (?:judge|metric) (?:misread|misjudged|got (?:it|this|this one) wrong|(?:was|is) wrong)"
               r"(?: (?:the|this) call| it| this)?", re.I),
    re.compile(r"^\s*(?:wrong|incorrect|i disagree|disagree|not correct)\b[.!,;:]*", re.I),
)
_WORD = re.compile(r"[a-z][a-z'/-]*", re.I)
_QUOTED = re.compile(r"\"[^\"]{3,}\"|“[^”]{3,}”|‘[^’]{3,}’|(?<![\w])'.{3,}?'(?![\w])")


@dataclass(frozen=True)
class LabEntry:
    """One reviewed call: the call, the value the person expects, and their note."""

    call: Call
    expected: VoteValue
    feedback: str
    agent: Agent | None = None


@dataclass(frozen=True)
class Score:
    num_correct: int
    num_total: int

    @property
    def score(self) -> float:
        return round(self.num_correct / self.num_total, 4) if self.num_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"num_correct": self.num_correct, "num_total": self.num_total, "score": self.score}


@dataclass(frozen=True)
class Clause:
    section: str
    text: str
    label: str = ""

    def line(self) -> str:
        return f"- {self.label}: {self.text}" if self.label else f"- {self.text}"


@dataclass(frozen=True)
class Proposal:
    description: str
    changed: bool
    clauses: tuple[Clause, ...]
    old_score: Score
    new_score: Score
    old_verdicts: tuple[Verdict, ...]
    new_verdicts: tuple[Verdict, ...]
    disagreements: int
    without_reason: int
    summary: str


JudgeFn = Callable[[str, LabEntry], Verdict]


# --- reading the feedback --------------------------------------------------------------------


def reason_of(feedback: str, labels: Sequence[str] = ()) -> str:
    """The part of a note that says something about the call: its sentences with content words or a quote,
    stripped of timestamps and verdict boilerplate. "" when the note carries no reason."""
    stash: list[str] = []

    def keep(match: re.Match[str]) -> str:
        stash.append(match.group(0))
        return f"QUOTE{len(stash) - 1}Q"

    text = _QUOTED.sub(keep, " ".join(feedback.split()))
    empty = _EMPTY_WORDS | {label.lower() for label in labels}
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        cleaned = _TIMESTAMP.sub(" ", sentence)
        for boilerplate in _BOILERPLATE:
            cleaned = boilerplate.sub(" ", cleaned)
        cleaned = " ".join(cleaned.split()).strip(" ,;:-—–")
        words = [w for w in _WORD.findall(re.sub(r"QUOTE\d+Q", " ", cleaned)) if w.lower() not in empty]
        if "QUOTE" in cleaned or len(words) >= MIN_CONTENT_WORDS:
            kept.append(cleaned.rstrip(".!? ") + ".")
    reason = " ".join(kept)
    reason = re.sub(r"QUOTE(\d+)Q", lambda m: stash[int(m.group(1))], reason)
    reason = reason.replace("{{", "{").replace("}}", "}")  # a note must not add a placeholder
    return reason[:1].upper() + reason[1:] if reason else ""


def section_for(expected: VoteValue, judged: VoteValue, eval_type: str) -> str | None:
    """Which section a disagreement's reason belongs in, from the two values alone."""
    if expected is None:
        return "na" if judged is not None else None
    if judged is None:
        return None  # an over-broad N/A condition: the reviewer's words cannot narrow it
    if eval_type == "enum":
        return "label"
    if eval_type in NUMERIC_TYPES and isinstance(expected, (int, float)) and isinstance(judged, (int, float)):
        return "exempt_numeric" if float(expected) < float(judged) else "credit"
    if expected is True and judged is False:
        return "exempt"
    if expected is False and judged is True:
        return "failure"
    return None


# --- writing the description -----------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def with_clauses(description: str, clauses: Sequence[Clause]) -> str:
    """The description with each clause added as a bullet of its section: into an existing Labs section
    of that name, or a new one at the end."""
    text = description.rstrip()
    for heading in dict.fromkeys(c.section for c in clauses):
        bullets = [c.line() for c in clauses if c.section == heading]
        lines = text.split("\n")
        if heading in (line.strip() for line in lines):
            at = next(i for i, line in enumerate(lines) if line.strip() == heading) + 1
            while at < len(lines) and lines[at].strip().startswith("-"):
                at += 1
            lines[at:at] = bullets
            text = "\n".join(lines)
        else:
            text += "\n\n" + heading + "\n" + "\n".join(bullets)
    return text


def _clauses(description: str, eval_type: str, labels: Sequence[str], entries: Sequence[LabEntry],
             old: Sequence[Verdict]) -> tuple[list[Clause], int, int]:
    clauses: list[Clause] = []
    seen = {_normal(description)}
    disagreements = without_reason = 0
    for entry, verdict in zip(entries, old, strict=True):
        if same_value(entry.expected, verdict.value, eval_type):
            continue
        disagreements += 1
        reason = reason_of(entry.feedback, labels)
        section = section_for(entry.expected, verdict.value, eval_type)
        if not reason:
            without_reason += 1
            continue
        if section is None:
            continue
        label = str(entry.expected) if section == "label" else ""
        clause = Clause(HEADINGS[section], reason, label)
        key = _normal(clause.line())
        if any(key[2:] in s for s in seen) or len(clauses) >= MAX_CLAUSES:
            continue
        seen.add(key)
        clauses.append(clause)
    return clauses, disagreements, without_reason


def _scored(description: str, eval_type: str, entries: Sequence[LabEntry], judge_fn: JudgeFn
            ) -> tuple[Score, tuple[Verdict, ...]]:
    verdicts = tuple(judge_fn(description, e) for e in entries)
    correct = sum(1 for e, v in zip(entries, verdicts, strict=True) if same_value(e.expected, v.value, eval_type))
    return Score(correct, len(entries)), verdicts


def optimize(description: str, eval_type: str, enum_values: Sequence[str], entries: Sequence[LabEntry],
             judge_fn: JudgeFn | None = None, rewrite: bool = True) -> Proposal:
    """Propose a new description from the Lab entries' expected values and notes, and score both on them.

    `judge_fn(description, entry)` scores one entry (default: the stand-in judge on the entry's call);
    `rewrite=False` only scores (custom-code metrics: the optimizer does not rewrite Python)."""
    def default(text: str, entry: LabEntry) -> Verdict:
        return safe_judge(text, eval_type, enum_values, entry.call, entry.agent)

    score_with = judge_fn or default
    labels = list(enum_values) if eval_type == "enum" else []
    old_score, old = _scored(description, eval_type, entries, score_with)
    clauses, disagreements, without_reason = _clauses(description, eval_type, labels, entries, old) if rewrite \
        else ([], 0, 0)
    proposed = with_clauses(description, clauses) if clauses else description
    new_score, new = (old_score, old) if proposed == description else _scored(proposed, eval_type, entries, score_with)
    summary = _summary(len(entries), disagreements, without_reason, clauses, old_score, new_score, rewrite)
    return Proposal(proposed, proposed != description, tuple(clauses), old_score, new_score, old, new,
                    disagreements, without_reason, summary)


def _summary(total: int, disagreements: int, without_reason: int, clauses: Sequence[Clause], old: Score,
             new: Score, rewrite: bool) -> str:
    parts = [f"Analysed {total} Lab entr{'y' if total == 1 else 'ies'}; {disagreements} disagreed with the "
             "current prompt."]
    if not rewrite:
        parts.append("This is a custom_code metric: the sandbox optimizer does not rewrite Python, so the code is "
                     "returned unchanged.")
    if without_reason:
        parts.append(f"{without_reason} disagreement(s) gave no reason beyond the verdict (for example 'Wrong. It "
                     "should be TRUE.'), so they changed nothing.")
    if clauses:
        sections = sorted({c.section for c in clauses})
        parts.append(f"Added {len(clauses)} clause(s) in the reviewers' words under " + ", ".join(sections) + ".")
    elif rewrite:
        parts.append("No change: the description is returned as it was.")
    parts.append(f"Accuracy on these samples: {old.num_correct}/{old.num_total} before, "
                 f"{new.num_correct}/{new.num_total} after.")
    parts.append("Nothing has been applied: PATCH the metric's description to use the improved prompt.")
    return " ".join(parts)
