"""Injected faults: the next N requests matching a path prefix fail the way a real service fails.

Two kinds hold a request until the test releases it (`POST /_sandbox/faults/release`), so a test can act while a
request is certainly in flight instead of betting on a delay outlasting what it does meanwhile:
- `hold`: the connection stays open, unanswered; released, the request reaches the API and is answered.
- `hold-drop`: the connection is closed at once, unanswered (the answer is lost); released, the request still
  reaches the API (it lands), as a request a proxy gave up on can.
Reset and `DELETE /_sandbox/faults` let held requests go without reaching the API.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, field_error

HOLD = "hold"
HOLD_DROP = "hold-drop"
HOLDS = (HOLD, HOLD_DROP)
KINDS = ("429", "500", "delay", "malformed", "drop", *HOLDS)


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


@dataclass(eq=False)
class HeldRequest:
    """A request a `hold` fault keeps from the API until it is released (or let go unanswered)."""

    rule_id: int
    method: str
    path: str
    _loop: asyncio.AbstractEventLoop
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    lands: bool = False

    async def released(self) -> bool:
        """Wait for the release; True when the request is to reach the API, False when it is let go."""
        await self._released.wait()
        return self.lands

    def release(self, lands: bool) -> None:
        """From any thread: the event belongs to the sandbox's loop."""
        self.lands = lands
        self._loop.call_soon_threadsafe(self._released.set)

    def describe(self) -> dict[str, Any]:
        return {"fault_id": self.rule_id, "method": self.method, "path": self.path}


class FaultBook:
    """Rules in the order they were added; a request consumes the first live rule that matches it.

    The prefix matches whole path segments: `/observability/v1/call-logs` covers
    `/observability/v1/call-logs/123/` but not `/observability/v1/call-logs-external/`.
    """

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.held: list[HeldRequest] = []
        self._held_lock = threading.Lock()
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
        self.let_go()
        return live

    def hold(self, rule: FaultRule, method: str, path: str) -> HeldRequest:
        """Called on the sandbox's loop, by the request the rule matched."""
        held = HeldRequest(rule.id, method, path, asyncio.get_running_loop())
        with self._held_lock:
            self.held.append(held)
        return held

    def release(self, rule_id: int | None = None) -> int:
        """Let the held requests (of one rule, or all) reach the API; how many were released."""
        taken = self._take_held(rule_id)
        for held in taken:
            held.release(True)
        return len(taken)

    def let_go(self) -> int:
        """Let every held request go without reaching the API (reset, clear): nothing stays held forever."""
        taken = self._take_held(None)
        for held in taken:
            held.release(False)
        return len(taken)

    def held_requests(self) -> list[HeldRequest]:
        with self._held_lock:
            return list(self.held)

    def _take_held(self, rule_id: int | None) -> list[HeldRequest]:
        taken: list[HeldRequest] = []
        kept: list[HeldRequest] = []
        with self._held_lock:
            for held in self.held:
                (taken if rule_id is None or held.rule_id == rule_id else kept).append(held)
            self.held = kept
        return taken

    def live(self) -> list[FaultRule]:
        return [r for r in self.rules if r.remaining > 0]


def _number(body: dict[str, Any], field: str, default: float) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ApiError(400, {field: ["A non-negative number is required."]})
    return float(value)
