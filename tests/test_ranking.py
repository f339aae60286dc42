"""The review queue's ranking on its own: pure functions over the rows a client reads, no server."""

from __future__ import annotations

from typing import Any

from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.services.analysis import check_disagreement
from cekura_labs_mcp.server.services.ranking import NO_SIGN, is_failing, pass_mark, rank_candidates, value_key

SENTIMENT = Metric(id=1, name="Caller Sentiment", eval_type="enum", enum_values=["positive", "neutral", "negative"])
BOOKED = Metric(id=2, name="Appointment Booked", eval_type="binary")
EMPATHY = Metric(id=3, name="Empathy", eval_type="continuous_qualitative", description="Rate empathy from 0 to 5.")
OTHER = Metric(id=4, name="Resolved", eval_type="binary")


def row(call_id: int, metric: Metric, value: str, explanation: str, topic: str = "General",
        others: dict[int, str] | None = None) -> CallRow:
    results: list[dict[str, Any]] = [{"id": metric.id, "name": metric.name, "value": value,
                                      "explanation": [explanation]}]
    results += [{"id": mid, "name": f"metric {mid}", "value": v, "explanation": ["-"]}
                for mid, v in (others or {}).items()]
    return CallRow.model_validate({"id": call_id, "topic": topic, "evaluation": {"metrics": results}})


def first(rows: list[CallRow], metric: Metric, **kwargs: Any) -> tuple[int, list[str]]:
    top = rank_candidates(rows, metric, skip=kwargs.pop("skip", set()),
                          reviewed_values=kwargs.pop("reviewed", []), **kwargs)[0]
    return top.row.id, top.reasons


def typical_sentiment(start: int, count: int) -> list[CallRow]:
    labels = ["positive", "neutral", "negative"]
    lines = {"positive": "At 01:00 the caller said 'Thank you so much, that was helpful.'",
             "neutral": "At 01:00 the caller said 'That's everything, bye.'",
             "negative": "At 01:00 the caller said 'This is ridiculous, nobody calls me back.'"}
    return [row(start + i, SENTIMENT, labels[i % 3], lines[labels[i % 3]]) for i in range(count)]


def test_a_passing_label_whose_quote_complains_comes_first() -> None:
    sarcastic = row(99, SENTIMENT, "positive",
                    "At 01:24 the caller said 'Oh great, just great, another week of waiting.', expressing "
                    "satisfaction.")
    call_id, reasons = first([*typical_sentiment(1, 30), sarcastic], SENTIMENT)
    assert call_id == 99
    assert any("contradicts its value" in r for r in reasons)


def test_a_bad_label_that_quotes_only_praise_is_suspicious_too() -> None:
    odd = row(99, SENTIMENT, "negative", "At 02:10 the caller said 'Lovely, thank you so much.'")
    call_id, reasons = first([*typical_sentiment(1, 30), odd], SENTIMENT)
    assert call_id == 99 and "only praise" in reasons[0]


def test_a_kind_of_call_that_always_fails_points_at_scope() -> None:
    booked = [row(i, BOOKED, "TRUE", "At 01:00 the agent confirmed 'I've booked you in for Monday.'",
                  topic="Booking") for i in range(1, 21)]
    missed = [row(i, BOOKED, "FALSE", f"At 00:{i:02d} the caller asked for a slot; the agent never booked it.",
                  topic="Booking") for i in range(21, 24)]
    billing = [row(i, BOOKED, "FALSE", "No appointment was booked. The caller's invoice question was handled.",
                   topic="Billing") for i in range(30, 36)]
    ranked = rank_candidates([*booked, *missed, *billing], BOOKED, skip=set(), reviewed_values=[])
    top = [c.row.id for c in ranked[:6]]
    assert set(top) == set(range(30, 36))
    assert "may not apply" in " ".join(ranked[0].reasons)


def test_a_value_at_odds_with_another_metric_on_the_same_call() -> None:
    rows = [row(i, BOOKED, "TRUE", "At 01:00 the agent said 'You're booked in.'", others={OTHER.id: "TRUE"})
            for i in range(1, 16)]
    # Failures for many different reasons (no recurring cause to compete with).
    words = ["invoice", "postcode", "pharmacy", "weather", "parking", "voicemail", "hold music", "transfer",
             "language", "refund", "insurer", "complaint", "address", "results", "referral"]
    rows += [row(i, BOOKED, "FALSE", f"At 00:{i:02d} the {w} came up instead.", others={OTHER.id: "FALSE"})
             for i, w in zip(range(16, 31), words, strict=True)]
    rows.append(row(50, BOOKED, "TRUE", "At 01:00 the agent said 'You're booked in.'", others={OTHER.id: "FALSE"}))
    call_id, reasons = first(rows, BOOKED)
    assert call_id == 50
    assert any("at odds with the other metric" in r for r in reasons)


def test_a_passing_score_with_no_quoted_moment_is_credit_without_evidence() -> None:
    rows = [row(i, EMPATHY, "1.5", "The agent was transactional and never acknowledged the caller.")
            for i in range(1, 20)]
    rows += [row(i, EMPATHY, "3.5", "At 00:40 the agent said 'I'm sorry to hear that.', acknowledging the caller.")
             for i in range(20, 30)]
    rows.append(row(99, EMPATHY, "4", "The agent apologised 3 time(s), showing concern. Overall 4.0 out of 5."))
    call_id, reasons = first(rows, EMPATHY)
    assert call_id == 99 and any("without evidence" in r for r in reasons)


def test_half_points_fail_under_the_pass_mark() -> None:
    assert is_failing(EMPATHY, "2.5") and is_failing(EMPATHY, "1.5")
    assert not is_failing(EMPATHY, "3.0") and not is_failing(EMPATHY, "3.5") and not is_failing(EMPATHY, "N/A")
    strict = Metric(id=5, name="Strict", eval_type="numeric", description="Passing score: 4. Rate 0-5.")
    assert pass_mark(strict) == 4.0 and is_failing(strict, "3.5") and not is_failing(strict, "4")
    assert value_key("4.0") == value_key("4") and value_key("n/a") == "N/A"


def test_balance_moves_up_a_comparably_suspicious_call_from_the_other_side_only() -> None:
    sarcastic = row(99, SENTIMENT, "positive", "At 01:24 the caller said 'Oh brilliant, another hold queue.'")
    odd = row(98, SENTIMENT, "negative", "At 02:10 the caller said 'Lovely, thank you so much.'")
    rows = [*typical_sentiment(1, 30), sarcastic, odd]
    assert first(rows, SENTIMENT)[0] == 99
    # Two passing results reviewed: the next comes from the failing side, and says why.
    call_id, reasons = first(rows, SENTIMENT, reviewed=["positive", "neutral"])
    assert call_id == 98 and "balances the feedback" in reasons[-1]
    # With nothing as suspicious on the failing side, balance does not show a typical result instead.
    call_id, _ = first([*typical_sentiment(1, 30), sarcastic], SENTIMENT, reviewed=["positive", "neutral"])
    assert call_id == 99
    assert first(rows, SENTIMENT, reviewed=["positive", "neutral"], balance=False)[0] == 99


def test_reviewed_and_skipped_calls_never_come_back() -> None:
    rows = typical_sentiment(1, 12)
    ranked = rank_candidates(rows, SENTIMENT, skip={1, 2, 3}, reviewed_values=[])
    assert {c.row.id for c in ranked} == set(range(4, 13))
    assert all(c.reasons for c in ranked)
    assert ranked[-1].reasons == [NO_SIGN]


def test_a_score_with_its_reason_is_feedback_without_a_moment() -> None:
    assert check_disagreement("It should be 1.5, the agent only repeated a scripted apology", whole_call=True).ok
    assert not check_disagreement("It should be 1.5", whole_call=True).ok
    assert not check_disagreement("It should be 1.5, the agent only repeated a scripted apology").ok


def test_a_stock_phrase_cited_twice_is_over_counted_evidence() -> None:
    criteria = "Credit every apology or acknowledgement."
    rated = Metric(id=6, name="Warmth", eval_type="continuous_qualitative", description=criteria)
    genuine = ("At 00:40 the agent said 'I'm sorry to hear that. Let's fix it.', credited under \"Credit every "
               "apology or acknowledgement.\" At 01:10 the agent said 'I can imagine that's hard.', credited under "
               "\"Credit every apology or acknowledgement.\"")
    rows = [row(i, rated, "1.5", "Nothing the agent said matches what the metric credits.") for i in range(1, 20)]
    rows += [row(i, rated, "3.5", genuine) for i in range(20, 30)]
    rows.append(row(99, rated, "3.5", "At 00:14 the agent said 'I apologise for any inconvenience. Thanks.' At "
                                      "00:30 the agent said 'I apologise for any inconvenience. Let's see.'"))
    call_id, reasons = first(rows, rated)
    assert call_id == 99 and any("same words 2 times" in r for r in reasons)
    # Quoting the metric's own criteria twice is the judge citing its rules, not a repeated phrase.
    assert not any("same words" in r for c in rank_candidates(rows, rated, skip={99}, reviewed_values=[])
                   for r in c.reasons)
