"""Metric values in their two forms: as Cekura shows a result, and as a vote's `expected_value`.

A result's `value` is text: binary "TRUE" / "FALSE" / "N/A", an enum label, or a number. A vote's
`expected_value` is typed: binary true / false, null for N/A (explicitly: an absent value and a
null mean different things to Cekura), the enum label, or a number.
"""

from __future__ import annotations

from typing import Any

from cekura_labs_mcp.server.cekura.models import ExpectedValue, Metric
from cekura_labs_mcp.server.cekura.results import Reading
from cekura_labs_mcp.server.errors import InputError

NA = "N/A"
_TRUE = {"true", "pass", "passed", "yes", "5", "5.0", "1"}
_FALSE = {"false", "fail", "failed", "no", "0", "0.0"}
_NA = {"n/a", "na", "none", "null", "not applicable"}


def expected_from_input(metric: Metric, raw: Any, field: str = "expected_value") -> ExpectedValue:
    """Turn what the person said into the typed value Cekura expects, or explain the fix."""
    if metric.eval_type == "binary":
        return _binary(raw, field)
    if metric.eval_type == "enum":
        return _enum(metric, raw, field)
    return _number(metric, raw, field)


def result_as_expected(metric: Metric, value: str | None) -> ExpectedValue:
    """A result's shown value, in vote form (used when the person agrees)."""
    if value is None:
        return None
    try:
        return expected_from_input(metric, value)
    except InputError:
        return value


def agreed_value(metric: Metric, reading: Reading, field: str = "expected_value") -> ExpectedValue:
    """The vote's `expected_value` when the person agrees with the result: the result itself, typed per metric
    type (binary true/false, null for N/A, the label, the number). An unreadable result has nothing to agree
    with: the person must say the value."""
    if not reading.readable:
        raise InputError(field, f"the result of {metric.name} on this call cannot be read ({reading.problem}), so "
                         "agreeing with it gives Cekura no value to record.",
                         'Pass the right value explicitly: true/false or "N/A" for binary metrics, a label for '
                         "enum metrics, a number for numeric ones.")
    return reading.expected


def display(value: ExpectedValue) -> str:
    if value is None:
        return NA
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def same_value(metric: Metric, a: ExpectedValue, b: ExpectedValue) -> bool:
    if metric.eval_type in ("numeric", "continuous_qualitative") and isinstance(a, int | float) \
            and isinstance(b, int | float) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) < 0.5
    return display(a).lower() == display(b).lower()


def _binary(raw: Any, field: str) -> ExpectedValue:
    if raw is None or isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _NA:
        return None
    raise InputError(field, f"{raw!r} is not a binary outcome.",
                     'Use true (pass), false (fail) or "N/A" (the metric does not apply to this call).')


def _enum(metric: Metric, raw: Any, field: str) -> ExpectedValue:
    allowed = metric.enum_values or []
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NA):
        return None
    text = str(raw).strip()
    for label in allowed:
        if label.lower() == text.lower():
            return label
    raise InputError(field, f"{raw!r} is not one of this metric's values.",
                     f"Use one of {allowed} (or \"N/A\").")


def _number(metric: Metric, raw: Any, field: str) -> ExpectedValue:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NA):
        return None
    if isinstance(raw, bool):
        raise InputError(field, "a numeric metric needs a number, not true/false.", "Give the correct score.")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise InputError(field, f"{raw!r} is not a number.", "Give the correct score as a number.") from None
    if metric.eval_type == "continuous_qualitative" and not 0 <= number <= 5:
        raise InputError(field, f"{number:g} is outside 0–5.", "Continuous metrics score from 0 to 5.")
    return int(number) if number.is_integer() else number
