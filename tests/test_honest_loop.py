"""The honest-loop benchmark's key properties, on one seed (`python -m benchmarks.honest_loop` runs ten):
the review queue finds misjudged results better than chance and than "failing results first", and only
truthful feedback improves the metric on calls the optimizer never saw. No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.honest_loop import queue_cases, reviewer_cases  # noqa: E402

SEED = 7


def test_the_queue_beats_chance_and_failing_first_on_every_misjudged_metric() -> None:
    cases = anyio.run(queue_cases, SEED)
    assert {"One Question Per Turn", "Appointment Booked Correctly", "Caller Sentiment", "Empathy"} <= \
        {c.metric for c in cases}
    for case in cases:
        assert case.queue_at_6 > case.base_rate, case
        assert case.queue_at_6 >= case.failing_first_at_6 and case.queue_at_12 >= case.failing_first_at_12, case
        # The balance rule costs no precision.
        assert case.queue_at_6 >= case.unbalanced_at_6 and case.queue_at_12 >= case.unbalanced_at_12, case
    # Misjudged passing results are reached too (sarcasm read as praise, apologies over-credited).
    passing_side = [c for c in cases if c.metric in ("Caller Sentiment", "Empathy") and c.agent_id == 2210]
    assert passing_side and all(c.queue_at_6 >= 0.5 for c in passing_side)


def test_only_truthful_feedback_improves_calls_the_optimizer_never_saw() -> None:
    cases = anyio.run(reviewer_cases, SEED, ("truth-telling", "content-free", "wrong"), "one question")
    by = {c.reviewer: c for c in cases}
    truthful, content_free, wrong = by["truth-telling"], by["content-free"], by["wrong"]
    assert truthful.fresh > 100 and truthful.applied
    assert truthful.after > truthful.before and truthful.fixed > 0 and truthful.regressed == 0
    assert content_free.after == content_free.before and content_free.fixed == content_free.regressed == 0
    assert wrong.regressed > 0 and wrong.after < wrong.before and wrong.fixed == 0
