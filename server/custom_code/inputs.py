"""The inputs Cekura gives a custom_code metric, rebuilt from a call as `get_call` returns it.

The names and shapes are those of seed 003 and Cekura's pages (`python-metric.mdx`, `metric-variables.mdx`)
for an observability call: the "both" and "observability" columns (simulation-only names such as `tags`
or `run_id` are absent, as they are on Cekura for these calls). Where each value comes from:
- `transcript`, `call_end_reason`, `timestamp`, `metadata`, `dynamic_variables`, `topic`: the call;
  `call_log_id`: its id; `voice_recording`: its recording URL;
- `transcript_json`: the call's turns as the docs show them, `{role, time ("MM:SS"), content, end_time,
  start_time}`;
- `call_duration`: seconds (the API's `MM:SS`, refined by the last turn's end when they agree);
- `date`: TODAY (UTC), "Current date in YYYY-MM-DD format", not the call's date (that is `timestamp`);
- `agent_description`: the agent's `description` (`GET /test_framework/v2/aiagents/{id}/`, fetched once
  per agent by the service and cached);
- `latency_data` and "Average Latency (in ms)": from the transcript's timestamps (Cekura measures on audio);
- `recording_data`: speaking segments from the transcript's timestamps, `has_audio_data` false;
- other metrics' results by metric name, read by the server's one result reader (`cekura/results.py`) and
  given in the form the judge gives code (`evaluate_llm_judge_metric`): binary 5 (pass) or 0 (fail), enum
  the label, numbers as numbers, N/A as None. Cekura's material does not say which form other metrics'
  binary results take in `data` (its examples show only numbers and labels); 5/0 is what its judge
  returns to code and what its API's `score` holds. Their explanations are lists under
  `data["explanation"]["<name>"]`. The metric under test and other custom_code metrics are left out
  (custom code runs after every other metric).
What cannot be known from the API is listed in `notes`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cekura_labs_mcp.server.cekura.models import CallDetail, Metric, MetricResult, TranscriptTurn
from cekura_labs_mcp.server.cekura.results import read_result

AGENT_ROLE = "Main Agent"
AVERAGE_LATENCY = "Average Latency (in ms)"
BINARY_FOR_CODE = {True: 5, False: 0}
DOCUMENTED_NAMES = (
    "transcript", "transcript_json", "call_duration", "call_end_reason", "voice_recording", "agent_description",
    "date", "timestamp", "metadata", "recording_data", "latency_data", AVERAGE_LATENCY, "dynamic_variables",
    "call_log_id", "topic", "explanation",
)
_MMSS = re.compile(r"^\s*(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)\s*$")


@dataclass
class CodeInputs:
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def today_utc() -> date:
    return datetime.now(UTC).date()


def build_inputs(call: CallDetail, *, metric_id: int, metrics: Iterable[Metric] = (),
                 agent_description: str | None = None, today: date | None = None) -> CodeInputs:
    """`data` for running metric `metric_id`'s code on `call`; `metrics` (the agent's metrics) tells which
    results are custom_code and how to read each; `agent_description` is the agent's, None when unknown."""
    known = {m.id: m for m in metrics}
    turns = [_turn(t) for t in call.transcript_object]
    duration = call_duration(call)
    latencies = latency_data(turns)
    notes: list[str] = []
    data: dict[str, Any] = {
        "transcript": call.transcript or transcript_text(turns),
        "transcript_json": turns,
        "call_duration": duration,
        "call_end_reason": call.call_ended_reason or "",
        "voice_recording": call.voice_recording_url or "",
        "agent_description": agent_description or "",
        "date": (today or today_utc()).isoformat(),
        "timestamp": call.timestamp or "",
        "metadata": dict(call.metadata),
        "recording_data": recording_data(turns, duration),
        "latency_data": latencies,
        AVERAGE_LATENCY: average_latency(latencies),
        "dynamic_variables": dict(call.dynamic_variables),
        "call_log_id": call.id,
        "topic": call.topic or "",
        "explanation": {},
    }
    if agent_description is None:
        notes.append("agent_description is empty: the agent's description could not be read "
                     "(GET /test_framework/v2/aiagents/{id}/).")
    if call.duration and not _precise_duration(call):
        notes.append("call_duration is the API's MM:SS, so whole seconds (Cekura may see up to 0.5 s more or less).")
    notes.append("latency_data, Average Latency (in ms) and recording_data's speaking segments are derived from "
                 "transcript timestamps (Cekura measures them on the audio); recording_data.has_audio_data is false.")
    for result in call.evaluation.metrics if call.evaluation else []:
        metric = known.get(result.id)
        if result.id == metric_id or (metric is not None and metric.type == "custom_code"):
            continue
        name = result.name or (metric.name if metric else "")
        if not name:
            continue
        if name in DOCUMENTED_NAMES:
            notes.append(f"metric {name!r} has the name of a built-in variable; data[{name!r}] keeps the variable.")
            continue
        reading = read_result(result, metric)
        data[name] = result_for_code(result, metric)
        if not reading.readable:
            notes.append(f"metric {name!r}'s result is {reading.text}: the code sees it as sent "
                         f"({data[name]!r}).")
        data["explanation"][name] = list(result.explanation)
    return CodeInputs(data=data, notes=notes)


def _turn(turn: TranscriptTurn) -> dict[str, Any]:
    """One turn as `transcript_json` shows it in Cekura's docs: role, time ("MM:SS"), content, end_time,
    start_time."""
    return code_turn(turn.role, turn.content, turn.start, turn.end_time)


def code_turn(role: str, content: str, start: float, end: float | None) -> dict[str, Any]:
    return {"role": role, "time": clock(start), "content": content,
            "end_time": end if end is not None else start, "start_time": start}


def transcript_text(turns: list[dict[str, Any]]) -> str:
    return "\n".join(f"[{clock(float(t['start_time']))}] {t['role']}: {t['content']}" for t in turns)


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def call_duration(call: CallDetail) -> float:
    """Seconds. The API gives `MM:SS`; the last turn's end is more precise when it agrees to the second."""
    listed = _seconds(call.duration)
    ends = [t.end_time for t in call.transcript_object if t.end_time is not None]
    if listed is None:
        return float(max(ends) if ends else 0.0)
    return float(max(ends)) if _precise_duration(call) else listed


def _precise_duration(call: CallDetail) -> bool:
    listed = _seconds(call.duration)
    ends = [t.end_time for t in call.transcript_object if t.end_time is not None]
    return listed is not None and bool(ends) and abs(max(ends) - listed) <= 1.0


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    match = _MMSS.match(text)
    if match is None:
        try:
            return float(text)
        except ValueError:
            return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def latency_data(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent turn that answers someone: the gap in milliseconds, as Cekura's `latency_data` lists it."""
    rows: list[dict[str, Any]] = []
    for previous, turn in itertools.pairwise(turns):
        if turn["role"] != AGENT_ROLE or previous["role"] == AGENT_ROLE:
            continue
        gap = (float(turn["start_time"]) - float(previous["end_time"])) * 1000
        if gap >= 0:
            rows.append({"latency": round(gap, 1), "speaker": AGENT_ROLE, "start_time": turn["start_time"]})
    return rows


def recording_data(turns: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """No audio here: speaking segments come from the transcript's timestamps."""

    def segments(agent: bool) -> list[list[float]]:
        return [[float(t["start_time"]), float(t["end_time"])] for t in turns if (t["role"] == AGENT_ROLE) == agent]

    return {"has_audio_data": False, "sample_rate": 0, "shape": [0, 2], "separable_channels": False,
            "total_duration": duration, "main_speaking": segments(True), "testing_speaking": segments(False)}


def average_latency(rows: list[dict[str, Any]]) -> float | None:
    """The mean of `latency_data` in ms; None when no agent turn answered anyone (the docs are silent)."""
    return round(sum(float(r["latency"]) for r in rows) / len(rows), 1) if rows else None


def result_for_code(result: MetricResult, metric: Metric | None) -> Any:
    """Another metric's result as custom code sees it (the judge's own form): binary 5/0, enum the label,
    numbers as floats, N/A as None. A result the reader cannot read is passed as Cekura sent it (its `value`,
    else its `score`), and the inputs' notes say so."""
    reading = read_result(result, metric)
    if reading.kind in ("pass", "fail"):
        return BINARY_FOR_CODE[reading.kind == "pass"]
    if reading.kind == "number" and isinstance(reading.expected, int | float):
        return float(reading.expected)
    if reading.kind == "unreadable":
        return result.raw.get("value", result.raw.get("score"))
    return reading.expected
