"""Small formatting helpers shared by the serializers, the judge's data and the custom-code runner."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

from .models import Call, Turn, VoteValue

RECORDING_HOST = "https://recordings.sandbox.cekura.invalid"
# A call's turns never change once it exists (an immutable tuple, shared by the store's clones), and a call list
# renders every call's transcript again on every page: the text and the JSON text of each tuple are made once.
# Keyed by the tuple's identity; an entry holds its tuple, so the id cannot be reused while the entry lives.
# Bounded: a test process builds many stores, and all of them are forgotten at once past the bound.
_RENDERED_LIMIT = 4096
_rendered: dict[int, tuple[tuple[Turn, ...], str, str]] = {}


@functools.lru_cache(maxsize=16384)
def iso(moment: datetime) -> str:
    # Cached: a call list writes each call's three moments on every page (equal moments, whatever their zone,
    # are the same UTC text).
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def mmss(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def transcript_text(call: Call) -> str:
    return _rendered_turns(call.turns)[1]


def transcript_json(call: Call) -> str:
    """`transcript_items` as the JSON text the list rows carry (`json.dumps`' default spelling)."""
    return _rendered_turns(call.turns)[2]


def _rendered_turns(turns: tuple[Turn, ...]) -> tuple[tuple[Turn, ...], str, str]:
    entry = _rendered.get(id(turns))
    if entry is None or entry[0] is not turns:
        if len(_rendered) >= _RENDERED_LIMIT:
            _rendered.clear()
        text = "\n".join(f"[{clock(t.start)}] {t.role}: {t.content}" for t in turns)
        entry = _rendered[id(turns)] = (turns, text, json.dumps(_items(turns)))
    return entry


def transcript_items(call: Call) -> list[dict[str, Any]]:
    return _items(call.turns)


def _items(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    return [
        {"role": t.role, "content": t.content, "timestamp": t.start, "start_time": t.start, "end_time": t.end}
        for t in turns
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
