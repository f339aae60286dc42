"""Scripted reviewers against the stand-in judge and optimizer: does feedback quality decide the outcome?

The sandbox's hidden truth plays the people here (and only here): it picks each reviewer's expected value
and, for the truthful reviewer, which behaviour to describe. The optimizer receives only the Lab entries
(call, expected value, note); the judge only the description and the call. Agreement is measured on the
metric's calls outside the Lab ("fresh" calls), before and after the proposal.

Run `python tests/sandbox/feedback_experiment.py [seeds...]` for the figures.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cekura_labs_mcp.server.sandbox import data as data_mod
from cekura_labs_mcp.server.sandbox.data import Dataset, generate
from cekura_labs_mcp.server.sandbox.engine import Evaluator
from cekura_labs_mcp.server.sandbox.models import Call, Truth, VoteValue
from cekura_labs_mcp.server.sandbox.render import clock, same_value, value_fields
from cekura_labs_mcp.server.sandbox.runner import InProcessRunner
from cekura_labs_mcp.server.sandbox.standin import LabEntry, Proposal, optimize, safe_judge

ANCHOR = datetime(2026, 3, 2, tzinfo=UTC)
MISJUDGED_METRICS = (data_mod.ONE_QUESTION_ID, data_mod.BOOKING_ID, data_mod.SENTIMENT_ID, data_mod.EMPATHY_ID)
LAB_MISJUDGED = 3
LAB_CORRECT = 3

# What a person who understood the mistake says about it (they know why the judge is wrong: the truth).
RIGHT_REASONS: dict[str, str] = {
    "related_details_confirmation": "That is one request to confirm related details, not two questions; it "
                                    "should not be flagged.",
    "no_booking_requested": "No appointment was requested at any point in this call, so the booking workflow "
                            "does not apply.",
    "sarcasm": "That is sarcasm: the caller is annoyed, not pleased.",
    "scripted_apology": "That is a scripted apology, not empathy, and should not be credited.",
}


_DATASETS: dict[int, Dataset] = {}


def dataset(seed: int) -> Dataset:
    """Generated once per seed (read-only here: proposals are judged, never applied)."""
    if seed not in _DATASETS:
        _DATASETS[seed] = generate(seed, ANCHOR, Evaluator(InProcessRunner()))
    return _DATASETS[seed]


def cited_turn(call: Call, explanation: list[str]) -> tuple[str, str, str]:
    """(time, who, words) of the moment the judge's explanation cites first, as a person would look it up."""
    stamp = next((m.group(1) for line in explanation for m in [re.search(r"\b(\d{2}:\d{2})\b", line)] if m), None)
    turn = next((t for t in call.turns if stamp is None or clock(t.start) >= stamp), call.turns[0])
    who = "agent" if turn.role == "Main Agent" else "caller"
    return clock(turn.start), who, turn.content


def shown(value: VoteValue, eval_type: str) -> str:
    return value_fields(value, eval_type)[0]


@dataclass(frozen=True)
class Note:
    expected: VoteValue
    feedback: str


Reviewer = Callable[[Call, Truth, list[str], str, list[str], random.Random], Note]
JUDGED: dict[int, VoteValue] = {}  # call id -> the judge's value, for the reviewer who agrees with everything


def truthful(call: Call, truth: Truth, explanation: list[str], eval_type: str, labels: list[str],
             rng: random.Random) -> Note:
    if truth.pattern is None:
        return Note(truth.expected, f"Agree: {shown(truth.expected, eval_type)} is right for this call.")
    at, who, words = cited_turn(call, explanation)
    return Note(truth.expected, f'At {at} the {who} said "{words}". {RIGHT_REASONS[truth.pattern]} '
                                f"It should be {shown(truth.expected, eval_type)}.")


def quote_only(call: Call, truth: Truth, explanation: list[str], eval_type: str, labels: list[str],
               rng: random.Random) -> Note:
    """Truthful values, and only the cited moment as the reason: no words about what is wrong with it."""
    if truth.pattern is None:
        return Note(truth.expected, "Agree.")
    at, who, words = cited_turn(call, explanation)
    return Note(truth.expected, f'At {at} the {who} said "{words}". It should be {shown(truth.expected, eval_type)}.')


def content_free(call: Call, truth: Truth, explanation: list[str], eval_type: str, labels: list[str],
                 rng: random.Random) -> Note:
    return Note(truth.expected, f"Wrong. It should be {shown(truth.expected, eval_type)}.")


def _wrong_value(truth: Truth, eval_type: str, labels: list[str]) -> VoteValue:
    value = truth.expected
    if eval_type == "binary":
        return value is not True
    if eval_type == "enum":
        return labels[(labels.index(str(value)) + 1) % len(labels)] if value is not None else labels[0]
    return 5.0 - float(value) if isinstance(value, (int, float)) and abs(float(value) - 2.5) >= 1 else 5.0


def wrong(call: Call, truth: Truth, explanation: list[str], eval_type: str, labels: list[str],
          rng: random.Random) -> Note:
    """Wrong on every call, with a confident reason that quotes the moment the judge cited."""
    expected = _wrong_value(truth, eval_type, labels)
    at, who, words = cited_turn(call, explanation)
    return Note(expected, f'At {at} the {who} said "{words}". That is exactly what decides this call; it should be '
                          f"{shown(expected, eval_type)}.")


def random_reviewer(call: Call, truth: Truth, explanation: list[str], eval_type: str, labels: list[str],
                    rng: random.Random) -> Note:
    options: list[VoteValue] = [True, False, None] if eval_type == "binary" else \
        [*labels, None] if eval_type == "enum" else [0.5, 1.5, 2.5, 3.5, 4.5, None]
    expected = rng.choice(options)
    turn = rng.choice(call.turns)
    return Note(expected, f'At {clock(turn.start)} they said "{turn.content}". It should be '
                          f"{shown(expected, eval_type)}.")


def agree_all(call: Call, truth: Truth, explanation: list[str], eval_type: str, labels: list[str],
              rng: random.Random) -> Note:
    return Note(JUDGED[call.id], "Agree, the result is right.")


REVIEWERS: dict[str, Reviewer] = {"truthful": truthful, "quote_only": quote_only, "content_free": content_free,
                                  "wrong": wrong, "random": random_reviewer, "agree_all": agree_all}


@dataclass(frozen=True)
class Outcome:
    metric: str
    seed: int
    reviewer: str
    lab_calls: tuple[int, ...]
    proposal: Proposal
    fresh_total: int
    fresh_before: int
    fresh_after: int
    fixed: int
    regressed: int


def lab_calls(ds: Dataset, metric_id: int, seed: int) -> list[int]:
    """3 misjudged calls and 3 correctly judged ones with a value, the latter spread over the values the metric
    gives (a balanced queue shows passes and failures alike)."""
    table = ds.truth[metric_id]
    rng = random.Random(seed * 1000 + metric_id)
    misjudged = sorted(c for c, t in table.items() if t.pattern)
    by_value: dict[str, list[int]] = {}
    for call_id, truth in sorted(table.items()):
        if not truth.pattern and truth.expected is not None:
            by_value.setdefault(repr(truth.expected), []).append(call_id)
    groups = [rng.sample(calls, len(calls)) for _, calls in sorted(by_value.items())]
    correct = [calls[i] for i in range(max(map(len, groups))) for calls in groups if i < len(calls)]
    return rng.sample(misjudged, LAB_MISJUDGED) + correct[:LAB_CORRECT]


def run(ds: Dataset, metric_id: int, reviewer: str) -> Outcome:
    metric = ds.metrics[metric_id]
    table = ds.truth[metric_id]
    labels = list(metric.enum_values)
    rng = random.Random(ds.seed * 7919 + metric_id)
    chosen = lab_calls(ds, metric_id, ds.seed)
    entries = []
    for call_id in chosen:
        call = ds.calls[call_id]
        result = call.results[metric_id]
        JUDGED[call.id] = result.value
        note = REVIEWERS[reviewer](call, table[call_id], result.explanation, metric.eval_type, labels, rng)
        entries.append(LabEntry(call, note.expected, note.feedback, ds.agents[call.agent_id]))
    proposal = optimize(metric.description, metric.eval_type, labels, entries)
    fresh = [c for c in table if c not in chosen]
    before = after = fixed = regressed = 0
    for call_id in fresh:
        call, truth = ds.calls[call_id], table[call_id]
        old = same_value(truth.expected, call.results[metric_id].value, metric.eval_type)
        new_value = safe_judge(proposal.description, metric.eval_type, labels, call, ds.agents[call.agent_id]).value
        new = same_value(truth.expected, new_value, metric.eval_type)
        before += old
        after += new
        fixed += new and not old
        regressed += old and not new
    return Outcome(metric.name, ds.seed, reviewer, tuple(chosen), proposal, len(fresh), before, after, fixed,
                   regressed)


def main(seeds: list[int]) -> None:
    print("metric | reviewer | seeds | fresh agreement before -> after (mean) | fixed | regressed | "
          "seeds with a regression | Lab score old -> new | description changed")
    for metric_id in MISJUDGED_METRICS:
        for reviewer in REVIEWERS:
            outcomes = [run(dataset(seed), metric_id, reviewer) for seed in seeds]
            n = len(outcomes)
            before = sum(o.fresh_before / o.fresh_total for o in outcomes) / n
            after = sum(o.fresh_after / o.fresh_total for o in outcomes) / n
            old = sum(o.proposal.old_score.score for o in outcomes) / n
            new = sum(o.proposal.new_score.score for o in outcomes) / n
            changed = sum(o.proposal.changed for o in outcomes)
            print(f"{outcomes[0].metric} | {reviewer} | {n} | {before:.3f} -> {after:.3f} | "
                  f"{sum(o.fixed for o in outcomes)} | {sum(o.regressed for o in outcomes)} | "
                  f"{sum(o.regressed > 0 for o in outcomes)}/{n} | "
                  f"{old:.2f} -> {new:.2f} | {changed}/{n}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [7, 11, 23])
