"""The sandbox's mutable state: the seeded data set plus everything the API has written since.

Handlers run on uvicorn's single event loop and mutate this state synchronously, so no request
sees another's half-done change; the lock additionally covers callers on other threads (tests,
the embedding process) reading or resetting the state directly.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from .data import Dataset, clone, default_anchor, generate
from .engine import EvalCount, Evaluator, assigned, success_of
from .faults import FaultBook
from .judge import Verdict, safe_judge
from .models import Agent, Call, Job, Metric, TestSet, Vote, VoteValue
from .runner import CodeRunner, InProcessRunner, IsolatedRunner

CREDITS_PER_JUDGE_EVALUATION = 0.2
REQUEST_LOG_LIMIT = 10_000


class Store:
    def __init__(self, seed: int = 7, now: datetime | None = None, progress_polls: int = 3,
                 runner: CodeRunner | None = None) -> None:
        self.seed = seed
        self.anchor = now.astimezone(UTC) if now is not None else default_anchor()
        # An explicit anchor shifts the sandbox's clock with it, so "the last 30 days" still means its data.
        self._offset = self.anchor - default_anchor() if now is not None else timedelta(0)
        self.progress_polls = progress_polls
        self.evaluator = Evaluator(InProcessRunner())
        self.lock = threading.RLock()
        # The seeded data set's own code runs in-process; code the API was given runs isolated.
        self._pristine = generate(self.seed, self.anchor, self.evaluator)
        seeded = frozenset(m.custom_code for m in self._pristine.metrics.values() if m.custom_code)
        self.evaluator.runner = runner or IsolatedRunner(trusted=seeded)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.data: Dataset = clone(self._pristine)
            self.agents: dict[int, Agent] = self.data.agents
            self.metrics: dict[int, Metric] = self.data.metrics
            self.calls: dict[int, Call] = self.data.calls
            self.votes: list[Vote] = []
            self.test_sets: dict[int, TestSet] = {}
            self.jobs: dict[str, Job] = {}
            self._ids = {"test_set": 30001, "review": 70001, "job": 1, "metric": max(self.metrics) + 1,
                         "call": max(self.calls) + 1}
            self.evaluations = EvalCount()
            self.faults = FaultBook()
            self.latency_ms = 0
            self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)
            self.in_flight = 0
            self.max_in_flight = 0

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def next_id(self, kind: str) -> int:
        with self.lock:
            value = self._ids[kind]
            self._ids[kind] = value + 1
            return value

    @property
    def credits_spent(self) -> float:
        return round(self.evaluations.llm_judge * CREDITS_PER_JUDGE_EVALUATION, 6)

    def assigned(self, agent_id: int) -> list[Metric]:
        return assigned(self.metrics.values(), agent_id)

    def overrides(self, call_id: int) -> dict[int, VoteValue]:
        """The latest reviewer-expected value per metric of a call."""
        return {v.metric_id: v.expected for v in self.votes if v.call_id == call_id}

    def run(self, call: Call) -> EvalCount:
        """Re-evaluate every metric assigned to the call's agent, and pay for it."""
        with self.lock:
            count = self.evaluator.evaluate(call, self.agents[call.agent_id], self.assigned(call.agent_id))
            self.evaluations.add(count)
            call.success = success_of(call, self.metrics, self.overrides(call.id) if call.is_reviewed else None)
            call.updated_at = self.now()
            return count

    def judge_with(self, metric: Metric, description: str, call: Call) -> Verdict:
        """What the judge would say with another description, without storing or charging anything."""
        if metric.type == "custom_code":
            scratch = Call(**{**call.__dict__, "results": dict(call.results)})
            self.evaluator.evaluate(scratch, self.agents[call.agent_id], [metric])
            result = scratch.results[metric.id]
            return Verdict(result.value, result.explanation)
        return safe_judge(description, metric.eval_type, metric.enum_values, call, self.agents.get(call.agent_id))
