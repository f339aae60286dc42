"""The one reader of a metric's result on a call. Everything that reads a result goes through `read_result`:
list rows, the call view, triage, votes, validation, the inputs of Python metrics.

Cekura's answers carry a result in several shapes, all documented:
- binary metrics: `eval_type: "binary"` + boolean `passed` (docs `documentation/advanced/webhook-format.mdx`),
  with the legacy `type: "binary_workflow_adherence"` and `score` 5/0 beside them; `score` 0 = FAIL, 5 = PASS,
  None = N/A and `extra.trigger_failed: true` = N/A, "the `value` field does NOT exist" (skills
  `plugins/cekura-metrics/skills/cekura-metric-design/references/api-reference.md`); the legacy names
  `binary_workflow_adherence` and `binary_qualitative` both mean binary;
- enum metrics: the label in `value` (and `enum`); the spec's field text: "`value`: present if metric type is
  enum", "`score`: present if metric type is not enum";
- numeric and continuous metrics: the number in `score`;
- the spec's schema (and older deployments): a `value` text on every result ("TRUE", "FALSE", "N/A", a label,
  a number).

A result whose fields do not say what it is (nothing readable, fields that contradict each other, a bare
score with no eval type to read it by) is `unreadable`, with its raw fields. It is never taken for N/A or
FALSE: an absent field and a null one mean different things.
"""

from __future__ import annotations

from typing import Any, Literal

from cekura_labs_mcp.server.cekura.models import ExpectedValue, Metric, MetricResult, normalise_eval_type
from pydantic import BaseModel, ConfigDict, Field

ReadingKind = Literal["pass", "fail", "na", "label", "number", "unreadable"]
NA_TEXT = "N/A"
UNREADABLE_TEXT = "unreadable"
_TRUE = {"true", "pass", "passed", "yes"}
_FALSE = {"false", "fail", "failed", "no"}
_NA = {"n/a", "na", "none", "null", "not applicable", ""}
PASS_SCORE = 5.0
FAIL_SCORE = 0.0


class Reading(BaseModel):
    """What one result says, in the forms the workflow needs."""

    model_config = ConfigDict(frozen=True)

    metric_id: int
    name: str = ""
    kind: ReadingKind
    expected: ExpectedValue = Field(
        default=None, description="The result as a vote's `expected_value`: true/false, the label, the number; "
                                  "None for N/A (and for an unreadable result: check `readable` first).")
    source: str = Field(default="", description="The field the result was read from.")
    problem: str | None = Field(default=None, description="Why the result could not be read.")
    raw: dict[str, Any] | None = Field(default=None, description="The answer's fields, when unreadable.")

    @property
    def readable(self) -> bool:
        return self.kind != "unreadable"

    @property
    def is_na(self) -> bool:
        return self.kind == "na"

    @property
    def text(self) -> str:
        """One spelling per value: TRUE / FALSE / N/A / the label / the number / unreadable (…)."""
        if self.kind == "pass":
            return "TRUE"
        if self.kind == "fail":
            return "FALSE"
        if self.kind == "na":
            return NA_TEXT
        if self.kind == "unreadable":
            shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted((self.raw or {}).items())
                              if k not in ("id", "name", "explanation"))
            return f"{UNREADABLE_TEXT} ({shown or 'no result fields'})"
        if self.kind == "number" and isinstance(self.expected, int | float):
            return format_number(float(self.expected))
        return str(self.expected)


def read_result(result: MetricResult, metric: Metric | None = None, *, eval_type: str | None = None) -> Reading:
    """Read one result. `metric` (its definition) or `eval_type` says how to read a bare score; without them
    the result's own `eval_type` / legacy `type` is used, and a bare score with neither is unreadable."""
    eval_type = _eval_type_of(result, metric, eval_type)
    if _trigger_failed(result):
        return _reading(result, "na", None, "extra.trigger_failed")
    if eval_type == "binary":
        return _binary(result)
    if eval_type == "enum":
        return _enum(result, metric)
    if eval_type in ("numeric", "continuous_qualitative"):
        return _number(result)
    return _untyped(result)


def shown(result: MetricResult, metric: Metric | None = None) -> str:
    """The result as one text (TRUE / FALSE / N/A / label / number / "unreadable (…)"), for code that
    compares or counts results as text."""
    return read_result(result, metric).text


def find_reading(results: list[MetricResult], metric_id: int, metric: Metric | None = None) -> Reading | None:
    """The reading of `metric_id`'s result among `results`; None when the metric has no result there."""
    for result in results:
        if result.id == metric_id:
            return read_result(result, metric)
    return None


def format_number(number: float) -> str:
    return str(int(number)) if number.is_integer() else f"{number:.4g}"


# ---- by eval type --------------------------------------------------------------------------------------

def _binary(result: MetricResult) -> Reading:
    votes: list[tuple[bool, str]] = []
    if isinstance(result.raw.get("passed"), bool):
        votes.append((bool(result.raw["passed"]), "passed"))
    elif "passed" in result.raw and result.raw["passed"] is not None:
        return _unreadable(result, f"`passed` is {result.raw['passed']!r}, not true or false")
    text = _value_text(result)
    if text is not None and text.strip().lower() in _NA - {""}:
        # A written-out N/A is the result (the spec's shape puts a placeholder score of 0 beside it).
        if votes:
            return _unreadable(result, f"its fields disagree (passed={votes[0][0]}, value={text})")
        return _reading(result, "na", None, "value")
    score = _score(result)
    if score is not None:
        if score == PASS_SCORE:
            votes.append((True, "score"))
        elif score == FAIL_SCORE:
            votes.append((False, "score"))
        else:
            return _unreadable(result, f"a binary metric's score is 5 (pass) or 0 (fail), not {score:g}")
    if text is not None and text.strip():
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in ("5", "5.0"):
            votes.append((True, "value"))
        elif lowered in _FALSE or lowered in ("0", "0.0"):
            votes.append((False, "value"))
        else:
            return _unreadable(result, f"{text!r} is not a binary outcome")
    outcomes = {outcome for outcome, _ in votes}
    if len(outcomes) > 1:
        return _unreadable(result, "its fields disagree (" + ", ".join(f"{s}={o}" for o, s in votes) + ")")
    if votes:
        outcome, source = votes[0]
        return _reading(result, "pass" if outcome else "fail", outcome, source)
    if _explicit_null(result, "score") or _explicit_null(result, "passed"):
        return _reading(result, "na", None, "score" if "score" in result.raw else "passed")
    return _unreadable(result, "it has neither `passed`, a `score` nor a `value`")


def _enum(result: MetricResult, metric: Metric | None) -> Reading:
    label, source = _label(result)
    if label is None:
        if _explicit_null(result, "value") or _explicit_null(result, "enum") or _explicit_null(result, "score"):
            return _reading(result, "na", None, "value")
        return _unreadable(result, "an enum result without a `value` or `enum` label")
    if label.strip().lower() in _NA:
        return _reading(result, "na", None, source)
    allowed = (metric.enum_values or []) if metric is not None else []
    if allowed:
        match = next((a for a in allowed if a.lower() == label.strip().lower()), None)
        if match is None:
            return _unreadable(result, f"{label!r} is not one of the metric's values {allowed}")
        return _reading(result, "label", match, source)
    return _reading(result, "label", label.strip(), source)


def _number(result: MetricResult) -> Reading:
    text = _value_text(result)
    if text is not None and text.strip().lower() in _NA - {""}:
        # A written-out N/A is the result (the spec's shape puts a placeholder score of 0 beside it).
        return _reading(result, "na", None, "value")
    score = _score(result)
    written: float | None = None
    if text is not None and text.strip():
        try:
            written = float(text)
        except ValueError:
            return _unreadable(result, f"{text!r} is not a number")
    if score is not None and written is not None and score != written:
        return _unreadable(result, f"its fields disagree (score={score:g}, value={text})")
    if score is not None:
        return _reading(result, "number", _plain(score), "score")
    if written is not None:
        return _reading(result, "number", _plain(written), "value")
    if _explicit_null(result, "score"):
        return _reading(result, "na", None, "score")
    return _unreadable(result, "a numeric result without a `score`")


def _untyped(result: MetricResult) -> Reading:
    """No eval type known: read only what the fields say on their own."""
    if isinstance(result.raw.get("passed"), bool):
        return _binary(result)
    text = _value_text(result)
    if text is not None:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return _binary(result)
        if lowered in _NA:
            return _reading(result, "na", None, "value")
        try:
            return _reading(result, "number", _plain(float(text)), "value")
        except ValueError:
            return _reading(result, "label", text.strip(), "value")
    label, source = _label(result)
    if label is not None:
        return _reading(result, "label", label.strip(), source)
    if _score(result) is not None:
        return _unreadable(result, "a bare score, and no eval type to say whether it is a pass/fail or a number")
    return _unreadable(result, "no field says what the result is")


# ---- fields --------------------------------------------------------------------------------------------

def _eval_type_of(result: MetricResult, metric: Metric | None, given: str | None) -> str | None:
    for name in (metric.eval_type if metric is not None else None, given, result.eval_type, result.type):
        known = normalise_eval_type(name)
        if known is not None:
            return known
    return None


def _trigger_failed(result: MetricResult) -> bool:
    extra = result.raw.get("extra")
    return isinstance(extra, dict) and extra.get("trigger_failed") is True


def _score(result: MetricResult) -> float | None:
    """`score` as a number, when it is one (numbers and numeric strings); None otherwise."""
    raw = result.raw.get("score")
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            return None
    return None


def _explicit_null(result: MetricResult, key: str) -> bool:
    return key in result.raw and result.raw[key] is None


def _value_text(result: MetricResult) -> str | None:
    raw = result.raw.get("value")
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "TRUE" if raw else "FALSE"
    return str(raw)


def _label(result: MetricResult) -> tuple[str | None, str]:
    for key in ("value", "enum"):
        raw = result.raw.get(key)
        if isinstance(raw, str) and raw.strip():
            return raw, key
    return None, ""


def _plain(number: float) -> int | float:
    return int(number) if number.is_integer() else number


def _reading(result: MetricResult, kind: ReadingKind, expected: ExpectedValue, source: str) -> Reading:
    return Reading(metric_id=result.id, name=result.name, kind=kind, expected=expected, source=source)


def _unreadable(result: MetricResult, problem: str) -> Reading:
    return Reading(metric_id=result.id, name=result.name, kind="unreadable", problem=problem,
                   raw={k: v for k, v in result.raw.items() if k != "explanation"})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
