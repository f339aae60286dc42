"""`filters_v2`: the call list's JSON filter language (CallLogQueryFilter).

A condition is `{"field": F, "op": OP, "value": V}`; a group is
`{"operator": "and" | "or", "conditions": [...]}`, nested freely. Operators: eq neq gt gte lt lte
contains startswith in isnull (`contains` and `startswith` ignore case).

Metric results are filtered with `{"field": "metric_value", "metric_id": <id>, "op": ..., "value": ...}`.
Cekura's own name for this field is unpublished; `metric_value` is this sandbox's choice. The field
compares the result's shown value: "TRUE" / "FALSE" / "N/A" for binary metrics (eq and neq also
take true / false / null), the label for enum metrics, the number for numeric ones; `isnull: true`
matches calls without a result for that metric.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .engine import status_of
from .models import Call
from .render import value_fields
from .validate import parse_moment, to_int

Predicate = Callable[[Call], bool]
OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "contains", "startswith", "in", "isnull"})

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


def compile_filter(raw: str, metric_types: Mapping[int, str]) -> Predicate:
    try:
        tree = json.loads(raw)
    except ValueError as exc:
        raise FilterError(f"Invalid JSON: {exc}.") from exc
    return _node(tree, metric_types)


def _node(node: object, metric_types: Mapping[int, str]) -> Predicate:
    if not isinstance(node, dict):
        raise FilterError("Each filter must be an object with 'field'/'op'/'value' or 'operator'/'conditions'.")
    if "operator" in node or "conditions" in node:
        return _group(node, metric_types)
    return _condition(node, metric_types)


def _group(node: dict[str, Any], metric_types: Mapping[int, str]) -> Predicate:
    operator = str(node.get("operator", "and")).lower()
    conditions = node.get("conditions")
    if operator not in ("and", "or"):
        raise FilterError(f"Unsupported operator '{node.get('operator')}'; use 'and' or 'or'.")
    if not isinstance(conditions, list):
        raise FilterError("'conditions' must be a list.")
    parts = [_node(c, metric_types) for c in conditions]
    if operator == "and":
        return lambda call: all(p(call) for p in parts)
    return lambda call: any(p(call) for p in parts)


def _condition(node: dict[str, Any], metric_types: Mapping[int, str]) -> Predicate:
    field, op, value = node.get("field"), node.get("op"), node.get("value")
    if op not in OPS:
        raise FilterError(f"Unsupported op '{op}'. Supported: {', '.join(sorted(OPS))}.")
    if field == "metric_value":
        return _metric_condition(node, op, value, metric_types)
    if not isinstance(field, str) or field not in _FIELDS:
        raise FilterError(f"Unsupported field '{field}'. Supported: {', '.join(sorted(_FIELDS))}, metric_value.")
    kind, getter = _FIELDS[field]
    test = _test(kind, op, value, field)
    return lambda call: test(getter(call))


def _test(kind: str, op: str, value: object, field: str) -> Callable[[Any], bool]:
    if op == "isnull":
        wanted = _bool(value, field)
        return lambda actual: (actual is None) == wanted
    if op == "in":
        if not isinstance(value, list):
            raise FilterError(f"'in' on '{field}' needs a list value.")
        options = [_coerce(kind, v, field) for v in value]
        return lambda actual: actual is not None and _norm(kind, actual) in options
    if op in ("contains", "startswith"):
        needle = str(value).lower()
        if op == "contains":
            return lambda actual: actual is not None and needle in str(actual).lower()
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

