"""The seeded data set: determinism, its shape, the hidden truth, and the judge and runner behind it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cekura_labs_mcp.server.sandbox import data as data_mod
from cekura_labs_mcp.server.sandbox import judge
from cekura_labs_mcp.server.sandbox.data import generate, snapshot
from cekura_labs_mcp.server.sandbox.engine import Evaluator
from cekura_labs_mcp.server.sandbox.models import Metric
from cekura_labs_mcp.server.sandbox.render import same_value, transcript_text
from cekura_labs_mcp.server.sandbox.runner import CodeOutcome, InProcessRunner, LlmJudgeFn
from cekura_labs_mcp.server.sandbox.transcripts import empathy_lexicon_check

ANCHOR = datetime(2026, 3, 2, tzinfo=UTC)


def dataset(seed: int = 7, anchor: datetime = ANCHOR) -> data_mod.Dataset:
    return generate(seed, anchor, Evaluator(InProcessRunner()))


def dump(seed: int, anchor: datetime = ANCHOR) -> str:
    return json.dumps(snapshot(dataset(seed, anchor)), sort_keys=True, default=str)


def test_same_seed_same_bytes_other_seed_other_data() -> None:
    assert dump(7) == dump(7)
    assert dump(7) != dump(8)
    assert dump(7) != dump(7, ANCHOR + timedelta(days=1))


def test_shape_of_the_data_set() -> None:
    ds = dataset()
    per_agent = Counter(c.agent_id for c in ds.calls.values())
    assert per_agent == {data_mod.MAIN_AGENT_ID: 180, data_mod.PHARMACY_AGENT_ID: 40}
    assert all(ANCHOR - timedelta(days=30) < c.timestamp < ANCHOR for c in ds.calls.values())
    assert len(ds.metrics) == 6 and sum(m.type == "custom_code" for m in ds.metrics.values()) == 1
    topics = Counter(c.topic for c in ds.calls.values() if c.agent_id == data_mod.MAIN_AGENT_ID)
    assert topics["Appointment booking"] == 70 and topics["Billing enquiry"] == 19
    long_calls = sum(1 for c in ds.calls.values() if c.duration_s >= 300)
    assert 5 <= long_calls <= 40
    assert len({c.provider_call_id for c in ds.calls.values()}) == 220
    sample = next(c for c in ds.calls.values() if c.topic == "Appointment booking")
    assert sample.metadata["channel"] == "phone" and sample.dynamic_variables["appointment_slot"]


MISJUDGMENTS = {"related_details_confirmation", "no_booking_requested", "sarcasm", "scripted_apology"}


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_the_judge_is_right_except_on_the_named_patterns(seed: int) -> None:
    ds = dataset(seed)
    for metric_id, table in ds.truth.items():
        metric = ds.metrics[metric_id]
        for call_id, truth in table.items():
            actual = ds.calls[call_id].results[metric_id].value
            assert same_value(truth.expected, actual, metric.eval_type) == (truth.pattern is None), (
                metric.name, call_id, truth, actual)
    share = {m: sum(1 for t in ds.truth[m].values() if t.pattern) / 180
             for m in (data_mod.ONE_QUESTION_ID, data_mod.BOOKING_ID)}
    assert all(0.07 <= s <= 0.2 for s in share.values()), share
    patterns = {t.pattern for table in ds.truth.values() for t in table.values()} - {None}
    assert patterns == MISJUDGMENTS


def test_misjudged_explanations_quote_the_moment_and_the_clause_behind_it() -> None:
    ds = dataset()
    table = ds.truth[data_mod.ONE_QUESTION_ID]
    call_id = next(c for c, t in table.items() if t.pattern == "related_details_confirmation")
    lead, why = ds.calls[call_id].results[data_mod.ONE_QUESTION_ID].explanation[:2]
    assert lead.startswith("At ") and "one request for several related details" in lead
    moment = lead[3:8]
    assert f"[{moment}] Main Agent:" in transcript_text(ds.calls[call_id])
    assert "compound request" in why and "failure condition" in why
    booking = next(c for c, t in ds.truth[data_mod.BOOKING_ID].items() if t.pattern)
    lead, why = ds.calls[booking].results[data_mod.BOOKING_ID].explanation[:2]
    assert lead.startswith("At ") and "without the agent booking a slot" in lead
    assert 'failure condition "The agent did not complete a booking' in why
    assert empathy_lexicon_check()


def test_an_unstructured_description_is_read_sentence_by_sentence() -> None:
    call = next(c for c in dataset().calls.values() if c.topic == "Appointment booking")
    flag = judge.judge("Flag any turn where the agent asks two or more questions.", "binary", [], call)
    lenient = judge.judge("Did the agent greet the caller?", "binary", [], call)
    assert lenient.value is True and "no failure condition it can check" in lenient.explanation[0]
    assert flag.value in (True, False) and flag.explanation
    assert judge.judge("", "enum", ["happy", "sad"], call).value == "happy"


def _code_metric(code: str) -> Metric:
    return Metric(id=1, name="Code", description="", type="custom_code", eval_type="binary", enum_values=[],
                  agents=[data_mod.MAIN_AGENT_ID], project=data_mod.PROJECT_ID, rule="generic", slug="code",
                  display_order=1, custom_code=code)


@pytest.mark.parametrize(("code", "value", "words"), [
    ("_result = 5\n_explanation = ['fine']", True, "fine"),
    ("_result = call_duration > 0 and len(transcript_json) > 0\n_explanation = topic", True, ""),
    ("import re\n_result = bool(re.search('Northwind', transcript))\n_explanation = 'found'", True, "found"),
    ("_result = data['Caller Sentiment'] == 'positive' or True\n_explanation = str(data['explanation'])", True, ""),
    ("_result = 1 / 0", None, "ZeroDivisionError"),
    ("import os\n_result = True", None, "not allowed"),
    ("open('/etc/passwd')", None, "NameError"),
    ("x = 1", None, "did not set _result"),
    ("def broken(:", None, "failed to compile"),
])
def test_the_in_process_runner(code: str, value: object, words: str) -> None:
    ds = dataset()
    call = next(c for c in ds.calls.values() if c.agent_id == data_mod.MAIN_AGENT_ID and c.topic != "Voicemail")
    metric = _code_metric(code)
    Evaluator(InProcessRunner()).evaluate(call, ds.agents[call.agent_id],
                                          [ds.metrics[data_mod.SENTIMENT_ID], metric])
    result = call.results[metric.id]
    assert result.value == value
    assert words in " ".join(result.explanation)


def test_only_the_data_sets_own_code_is_trusted_in_process() -> None:
    class Recording:
        def __init__(self) -> None:
            self.codes: list[str] = []

        def run(self, code: str, data: Mapping[str, Any], llm_judge: LlmJudgeFn) -> CodeOutcome:
            self.codes.append(code)
            return CodeOutcome(True, ["recorded"])

    isolated = Recording()
    evaluator = Evaluator(isolated, trusted_runner=InProcessRunner())
    ds = generate(7, ANCHOR, evaluator)
    assert isolated.codes == [], "the seeded metric's code ran in-process"
    call = next(c for c in ds.calls.values() if c.agent_id == data_mod.MAIN_AGENT_ID)
    given = _code_metric("_result = True")
    evaluator.evaluate(call, ds.agents[call.agent_id], [ds.metrics[data_mod.UNDER_FIVE_ID], given])
    assert isolated.codes == ["_result = True"]
