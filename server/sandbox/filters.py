"""`filters_v2`: the call list's JSON filter language (CallLogQueryFilter).

A condition is `{"field": F, "op": OP, "value": V}`; a group is
`{"operator": "and" | "or", "conditions": [...]}`, nested freely. Operators: eq neq gt gte lt lte
contains startswith in isnull (`contains` and `startswith` ignore case).

`documented` dialect (docs `documentation/guides/dashboards.mdx`): also `endswith` and `regex`; the
fields `dropoff_point`, `agent.id`, `agent.agent_name`, `metadata.<top-level key>`; relative times
(`now`, `now-7d`, `today`, `today-2h`, units s m h d w M y) on datetime fields; and the metric
evaluation fields `metric_evaluations.metric.id`, `metric_evaluations.metric.name` and
`metric_evaluations.value`. Conditions on those fields joined by `{"operator": "same_row", ...}` must
all hold on ONE result of the call; under `and` / `or` each holds on any result (the docs' warning).
`metric_evaluations.value` compares what a result row holds:
- binary metrics: the score, 5 (pass) or 0 (fail); `true` / `false` (and "TRUE" / "FALSE") are read
  as 5 / 0, so `{"op": "eq", "value": false}` and `{"op": "eq", "value": 0}` both find failures;
- numeric and continuous metrics: the number; enum metrics: the label (text operators ignore case);
- N/A (a null score, or no label): matched only by `isnull: true` or `eq null`; never by a
  comparison or by `neq`.
The old `{"field": "metric_value", "metric_id": ...}` form is unknown there (400, like any unknown
field).

`spec` dialect (the sandbox before issue 10): metric results are filtered with `{"field":
"metric_value", "metric_id": <id>, "op": ..., "value": ...}`, an unpublished name this sandbox chose.
It compares the result's shown value: "TRUE" / "FALSE" / "N/A" for binary metrics (eq and neq also
take true / false / null), the label for enum metrics, the number for numeric ones; `isnull: true`
matches calls without a result for that metric.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .dialect import DOCUMENTED, Dialect
from .engine import status_of
from .models import Agent, Call, Metric, MetricResult
from .render import value_fields
from .validate import parse_moment, to_int

Predicate = Callable[[Call], bool]
RowPredicate = Callable[[Metric, MetricResult], bool]
OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "contains", "startswith", "in", "isnull"})
DOCUMENTED_OPS = OPS | {"endswith", "regex"}
METRIC_FIELDS = ("metric_evaluations.metric.id", "metric_evaluations.metric.name", "metric_evaluations.value")
_RELATIVE = re.compile(r"^(now|today)(?:([+-])(\d+)([smhdwMy]))?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}

_FIELDS: dict[str, tuple[str, Callable[[Call], Any]]] = {
    "success": ("bool", lambda c: c.success),
    "is_reviewed": ("bool", lambda c: c.is_reviewed),
    "status": ("str", status_of),
    "duration": ("number", lambda c: c.duration_s),
    "id": ("int", lambda c: c.id),
    "call_id": ("str", lambda c: c.provider_call_id),
    "timestamp": ("datetime", lambda c: c.timestamp),
    "created_at": ("datetime", lambda c: c.created_at),
    "updated_at": ("datetime", lambda c: c.updated_at),
    "call_ended_reason": ("str", lambda c: c.call_ended_reason),
    "customer_number": ("str", lambda c: c.customer_number),
    "topic": ("str", lambda c: c.topic),
    "agent_id": ("int", lambda c: c.agent_id),
    "agent": ("int", lambda c: c.agent_id),
}


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Context:
    metrics: Mapping[int, Metric]
    agents: Mapping[int, Agent]
    dialect: Dialect

    @property
    def documented(self) -> bool:
        return self.dialect == DOCUMENTED

    @property
    def metric_types(self) -> dict[int, str]:
        return {m.id: m.eval_type for m in self.metrics.values()}

    @property
    def ops(self) -> frozenset[str]:
        return DOCUMENTED_OPS if self.documented else OPS


def compile_filter(raw: str, metrics: Mapping[int, Metric], agents: Mapping[int, Agent],
                   dialect: Dialect) -> Predicate:
    try:
        tree = json.loads(raw)
    except ValueError as exc:
        raise FilterError(f"Invalid JSON: {exc}.") from exc
    return _node(tree, Context(metrics, agents, dialect))


def _node(node: object, ctx: Context) -> Predicate:
    if not isinstance(node, dict):
        raise FilterError("Each filter must be an object with 'field'/'op'/'value' or 'operator'/'conditions'.")
    if "operator" in node or "conditions" in node:
        return _group(node, ctx)
    return _condition(node, ctx)


def _group(node: dict[str, Any], ctx: Context) -> Predicate:
    operator = str(node.get("operator", "and")).lower()
    conditions = node.get("conditions")
    allowed = ("and", "or", "same_row") if ctx.documented else ("and", "or")
    if operator not in allowed:
        choices = " or ".join(repr(a) for a in allowed)
        raise FilterError(f"Unsupported operator '{node.get('operator')}'; use {choices}.")
    if not isinstance(conditions, list):
        raise FilterError("'conditions' must be a list.")
    if operator == "same_row":
        return _same_row(conditions, ctx)
    parts = [_node(c, ctx) for c in conditions]
    if operator == "and":
        return lambda call: all(p(call) for p in parts)
    return lambda call: any(p(call) for p in parts)


def _same_row(conditions: list[Any], ctx: Context) -> Predicate:
    """Every condition holds on one and the same metric result of the call."""
    if not conditions:
        raise FilterError("'same_row' needs at least one condition.")
    tests: list[RowPredicate] = []
    for condition in conditions:
        if not isinstance(condition, dict) or condition.get("field") not in METRIC_FIELDS:
            raise FilterError("'same_row' conditions must each be a condition on "
                              + ", ".join(METRIC_FIELDS) + ".")
        tests.append(_row_condition(condition, ctx))
    return lambda call: any(all(t(metric, result) for t in tests) for metric, result in _rows(call, ctx))


def _rows(call: Call, ctx: Context) -> list[tuple[Metric, MetricResult]]:
    return [(ctx.metrics[r.metric_id], r) for r in call.results.values() if r.metric_id in ctx.metrics]


def _condition(node: dict[str, Any], ctx: Context) -> Predicate:
    field, op, value = node.get("field"), node.get("op"), node.get("value")
    if op not in ctx.ops:
        raise FilterError(f"Unsupported op '{op}'. Supported: {', '.join(sorted(ctx.ops))}.")
    if not ctx.documented and field == "metric_value":
        return _metric_condition(node, op, value, ctx.metric_types)
    if ctx.documented and field in METRIC_FIELDS:
        row_test = _row_condition(node, ctx)
        return lambda call: any(row_test(metric, result) for metric, result in _rows(call, ctx))
    if ctx.documented and isinstance(field, str) and field.startswith("metadata."):
        return _metadata_condition(field, op, value)
    fields = _documented_fields(ctx) if ctx.documented else _FIELDS
    if not isinstance(field, str) or field not in fields:
        extra = ", metadata.<key>, " + ", ".join(METRIC_FIELDS) if ctx.documented else ", metric_value"
        raise FilterError(f"Unsupported field '{field}'. Supported: {', '.join(sorted(fields))}{extra}.")
    kind, getter = fields[field]
    test = _test(kind, op, _relative(value, op) if kind == "datetime" and ctx.documented else value, field)
    return lambda call: test(getter(call))


def _documented_fields(ctx: Context) -> dict[str, tuple[str, Callable[[Call], Any]]]:
    agents = ctx.agents
    return {
        **_FIELDS,
        "dropoff_point": ("str", lambda c: ""),
        "agent.id": ("int", lambda c: c.agent_id),
        "agent.agent_name": ("str", lambda c: agents[c.agent_id].name if c.agent_id in agents else None),
    }


def _metadata_condition(field: str, op: str, value: object) -> Predicate:
    key = field.removeprefix("metadata.")
    if not key or "." in key:
        raise FilterError(f"'{field}': only top-level metadata keys are supported (metadata.<key>).")
    test = _test("str", op, value, field)
    return lambda call: test(None if call.metadata.get(key) is None else str(call.metadata.get(key)))


def _relative(value: object, op: str) -> object:
    """`now`, `now-7d`, `today`, `today-2h`...: `today` is the day's start for gt/gte, its end otherwise."""
    if not isinstance(value, str):
        return value
    match = _RELATIVE.match(value.strip())
    if match is None:
        return value
    base, sign, amount, unit = match.groups()
    now = datetime.now(UTC)
    moment = now
    if base == "today":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        moment = start if op in ("gt", "gte") else start + timedelta(days=1, microseconds=-1)
    if amount:
        delta = timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])
        moment = moment - delta if sign == "-" else moment + delta
    return moment.isoformat()


def _row_condition(node: dict[str, Any], ctx: Context) -> RowPredicate:
    field, op, value = node.get("field"), node.get("op"), node.get("value")
    if op not in ctx.ops:
        raise FilterError(f"Unsupported op '{op}'. Supported: {', '.join(sorted(ctx.ops))}.")
    if field == "metric_evaluations.metric.id":
        id_test = _test("int", op, value, str(field))
        return lambda metric, result: id_test(metric.id)
    if field == "metric_evaluations.metric.name":
        name_test = _test("str", op, value, str(field))
        return lambda metric, result: name_test(metric.name)
    return _row_value_condition(op, value)


def _row_value(metric: Metric, result: MetricResult) -> float | str | None:
    value = result.value
    if value is None:
        return None
    if metric.eval_type == "binary":
        return 5.0 if value is True else 0.0
    if metric.eval_type == "enum":
        return str(value).lower()
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _wanted_row_value(value: object) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 5.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in ("TRUE", "FALSE"):
            return 5.0 if text.upper() == "TRUE" else 0.0
        number = _number(text)
        return number if number is not None else text.lower()
    raise FilterError("'metric_evaluations.value' needs a scalar value.")


def _row_value_condition(op: str, value: object) -> RowPredicate:
    field = "metric_evaluations.value"
    if op == "isnull":
        wanted = _bool(value, field)
        return lambda metric, result: (_row_value(metric, result) is None) == wanted
    if op in ("contains", "startswith", "endswith", "regex"):
        text_test = _test("str", op, value, field)
        return lambda metric, result: text_test(_text_of(_row_value(metric, result)))
    options = value if op == "in" else [value]
    if not isinstance(options, list):
        raise FilterError(f"'in' on '{field}' needs a list value.")
    targets = [_wanted_row_value(v) for v in options]

    def check(metric: Metric, result: MetricResult) -> bool:
        actual = _row_value(metric, result)
        if op in ("eq", "in"):
            return any(_same_row_value(actual, t) for t in targets)
        if actual is None or targets[0] is None:
            return False
        if op == "neq":
            return not _same_row_value(actual, targets[0])
        return _ordered(op, actual, targets[0])

    return check


def _text_of(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return format(value, "g")


def _same_row_value(actual: float | str | None, target: float | str | None) -> bool:
    if actual is None or target is None:
        return actual is None and target is None
    if isinstance(actual, float) and isinstance(target, float):
        return actual == target
    return str(actual).lower() == str(target).lower()


def _ordered(op: str, actual: float | str, target: float | str) -> bool:
    if isinstance(actual, float) != isinstance(target, float):
        return False
    check = _compare(op, "number" if isinstance(actual, float) else "str", target)
    return check(actual)


def _test(kind: str, op: str, value: object, field: str) -> Callable[[Any], bool]:
    if op == "isnull":
        wanted = _bool(value, field)
        return lambda actual: (actual is None) == wanted
    if op == "in":
        if not isinstance(value, list):
            raise FilterError(f"'in' on '{field}' needs a list value.")
        options = [_coerce(kind, v, field) for v in value]
        return lambda actual: actual is not None and _norm(kind, actual) in options
    if op == "regex":
        try:
            pattern = re.compile(str(value))
        except re.error as exc:
            raise FilterError(f"'regex' on '{field}': invalid pattern ({exc}).") from exc
        return lambda actual: actual is not None and pattern.search(str(actual)) is not None
    if op in ("contains", "startswith", "endswith"):
        needle = str(value).lower()
        if op == "contains":
            return lambda actual: actual is not None and needle in str(actual).lower()
        if op == "endswith":
            return lambda actual: actual is not None and str(actual).lower().endswith(needle)
        return lambda actual: actual is not None and str(actual).lower().startswith(needle)
    if value is None and op in ("eq", "neq"):
        return (lambda actual: actual is None) if op == "eq" else (lambda actual: actual is not None)
    if op in ("gt", "gte", "lt", "lte") and kind == "bool":
        raise FilterError(f"'{op}' does not apply to '{field}'.")
    target = _coerce(kind, value, field)
    return _compare(op, kind, target)


def _compare(op: str, kind: str, target: Any) -> Callable[[Any], bool]:
    def check(actual: Any) -> bool:
        if actual is None:
            return op == "neq"
        left = _norm(kind, actual)
        if op == "eq":
            return bool(left == target)
        if op == "neq":
            return bool(left != target)
        if op == "gt":
            return bool(left > target)
        if op == "gte":
            return bool(left >= target)
        if op == "lt":
            return bool(left < target)
        return bool(left <= target)

    return check


def _norm(kind: str, actual: Any) -> Any:
    return actual.lower() if kind == "str" and isinstance(actual, str) else actual


def _bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FilterError(f"'{field}' needs true or false.")


def _coerce(kind: str, value: object, field: str) -> Any:
    if kind == "bool":
        return _bool(value, field)
    if kind in ("number", "int"):
        number = _number(value)
        if number is None:
            raise FilterError(f"'{field}' needs a number, got {value!r}.")
        return number
    if kind == "datetime":
        moment = parse_moment(value) if isinstance(value, str) else None
        if moment is None:
            raise FilterError(f"'{field}' needs an ISO 8601 date-time, got {value!r}.")
        return moment
    if isinstance(value, (dict, list)):
        raise FilterError(f"'{field}' needs a text value.")
    return str(value).lower()


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        whole = to_int(value)
        if whole is not None:
            return float(whole)
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _metric_condition(node: dict[str, Any], op: str, value: object, metric_types: Mapping[int, str]) -> Predicate:
    metric_id = to_int(node.get("metric_id"))
    if metric_id is None:
        raise FilterError("'metric_value' needs an integer 'metric_id'.")
    if metric_id not in metric_types:
        raise FilterError(f"Unknown metric_id {metric_id}.")
    eval_type = metric_types[metric_id]

    def shown(call: Call) -> str | None:
        result = call.results.get(metric_id)
        return None if result is None else value_fields(result.value, eval_type)[0]

    if op == "isnull":
        wanted = _bool(value, "metric_value")
        return lambda call: (shown(call) is None) == wanted
    if op in ("gt", "gte", "lt", "lte"):
        target = _number(value)
        if target is None:
            raise FilterError(f"'{op}' on 'metric_value' needs a number.")
        compare = _compare(op, "number", target)
        return lambda call: (number := _number(shown(call))) is not None and compare(number)
    if op in ("contains", "startswith"):
        test = _test("str", op, value, "metric_value")
        return lambda call: test(shown(call))
    options = value if op == "in" else [value]
    if not isinstance(options, list):
        raise FilterError("'in' on 'metric_value' needs a list value.")
    wanted_values = [_metric_text(v, eval_type) for v in options]

    def matches(call: Call) -> bool:
        text = shown(call)
        hit = text is not None and any(_same_shown(text, w) for w in wanted_values)
        return not hit if op == "neq" else hit

    return matches


def _metric_text(value: object, eval_type: str) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)) and eval_type != "binary":
        return repr(float(value))
    if isinstance(value, (dict, list)):
        raise FilterError("'metric_value' needs a scalar value.")
    return str(value)


def _same_shown(shown: str, wanted: str) -> bool:
    if shown.lower() == wanted.lower():
        return True
    left, right = _number(shown), _number(wanted)
    return left is not None and right is not None and left == right



SPEC_FIELDS = frozenset(_FIELDS)
