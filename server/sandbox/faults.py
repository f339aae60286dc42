"""Injected faults: the next N requests matching a path prefix fail the way a real service fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ApiError, field_error

KINDS = ("429", "500", "delay", "malformed", "drop")


def normalise(path: str) -> str:
    trimmed = path.rstrip("/")
    return trimmed or "/"


@dataclass
class FaultRule:
    id: int
    path: str
    method: str | None
    kind: str
    remaining: int
    retry_after: float
    delay_ms: int

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0 or (self.method is not None and self.method != method.upper()):
            return False
        target = normalise(path)
        return target == self.path or target.startswith(self.path.rstrip("/") + "/")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "method": self.method, "kind": self.kind,
                "remaining": self.remaining, "retry_after": self.retry_after, "delay_ms": self.delay_ms}


class FaultBook:
    """Rules in the order they were added; a request consumes the first live rule that matches it.

    The prefix matches whole path segments: `/observability/v1/call-logs` covers
    `/observability/v1/call-logs/123/` but not `/observability/v1/call-logs-external/`.
    """

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, body: dict[str, Any]) -> FaultRule:
        path = body.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise field_error("path", "A path prefix starting with '/' is required.")
        kind = str(body.get("kind", ""))
        if kind not in KINDS:
            raise field_error("kind", f"Use one of {', '.join(KINDS)}.")
        method = body.get("method")
        if method is not None and not isinstance(method, str):
            raise field_error("method", "Not a valid string.")
        count = _number(body, "count", 1.0)
        if count < 1 or not float(count).is_integer():
            raise field_error("count", "A positive integer is required.")
        rule = FaultRule(
            id=self._next_id, path=normalise(path), method=method.upper() if method else None, kind=kind,
            remaining=int(count), retry_after=_number(body, "retry_after", 1.0),
            delay_ms=int(_number(body, "delay_ms", 1000.0)),
        )
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path):
                rule.remaining -= 1
                return rule
        return None

    def clear(self) -> int:
        live = sum(1 for r in self.rules if r.remaining > 0)
        self.rules.clear()
        return live

    def live(self) -> list[FaultRule]:
        return [r for r in self.rules if r.remaining > 0]


def _number(body: dict[str, Any], field: str, default: float) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ApiError(400, {field: ["A non-negative number is required."]})
    return float(value)
