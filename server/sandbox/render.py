"""Small formatting helpers shared by the serializers, the judge's data and the custom-code runner."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .models import Call, VoteValue

RECORDING_HOST = "https://recordings.sandbox.cekura.invalid"


def iso(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def mmss(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def transcript_text(call: Call) -> str:
    return "\n".join(f"[{clock(t.start)}] {t.role}: {t.content}" for t in call.turns)


def transcript_items(call: Call) -> list[dict[str, Any]]:
    return [
        {"role": t.role, "content": t.content, "timestamp": t.start, "start_time": t.start, "end_time": t.end}
        for t in call.turns
    ]


def recording_url(call: Call) -> str:
    return f"{RECORDING_HOST}/northwind/{call.provider_call_id}.wav"


def format_number(value: float) -> str:
    return repr(float(value))


def value_fields(value: VoteValue, eval_type: str) -> tuple[str, float, str]:
    """(value, score, enum) of a metric result, as Cekura's call-log serializers render them."""
    if eval_type == "binary":
        if value is None:
            return "N/A", 0.0, ""
        return ("TRUE", 5.0, "") if value is True else ("FALSE", 0.0, "")
    if eval_type == "enum":
        return ("N/A", 0.0, "") if value is None else (str(value), 0.0, str(value))
    if value is None or isinstance(value, (bool, str)):
        return "N/A", 0.0, ""
    return format_number(value), float(value), ""


def same_value(expected: VoteValue, actual: VoteValue, eval_type: str) -> bool:
    """Does a judged value match a reviewer's? Numbers agree when less than half a point apart."""
    if eval_type in ("numeric", "continuous_qualitative"):
        if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
            if isinstance(expected, bool) or isinstance(actual, bool):
                return expected is actual
            return abs(float(expected) - float(actual)) < 0.5
        return expected is None and actual is None
    if eval_type == "enum" and isinstance(expected, str) and isinstance(actual, str):
        return expected.lower() == actual.lower()
    return expected == actual and type(expected) is type(actual)
