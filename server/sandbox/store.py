"""The sandbox's mutable state: the seeded data set plus everything the API has written since.

Handlers run on uvicorn's single event loop and mutate this state synchronously, so no request
sees another's half-done change; the lock additionally covers callers on other threads (tests,
the embedding process) reading or resetting the state directly.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cekura_labs_mcp.server.custom_code.inputs import today_utc

from . import predefined
from .data import PHARMACY_AGENT_ID, Dataset, clone, default_anchor, generate
from .dialect import DOCUMENTED, Dialect
from .engine import EvalCount, Evaluator, assigned, metric_cost, success_of
from .faults import FaultBook
from .judge import Verdict, safe_judge
from .models import Agent, Call, HistoryEntry, Job, JudgeJob, Metric, TestSet, Truth, Vote, VoteValue
from .runner import CodeRunner, InProcessRunner, IsolatedRunner

REQUEST_LOG_LIMIT = 10_000
INITIAL_CREDITS = 5000.0
# Fields a metric's history keeps and `restore/` puts back.
VERSIONED = ("name", "description", "type", "eval_type", "enum_values", "custom_code", "prompt",
             "evaluation_trigger", "evaluation_trigger_prompt", "trigger_type", "evaluation_trigger_custom_code",
             "configuration", "agents", "display_order", "audio_enabled", "simulation_enabled",
             "observability_enabled", "sampling_enabled")


# Seeded data sets by (seed, anchor, documented dialect, today), the oldest forgotten past the limit.
PRISTINE_LIMIT = 8
_PRISTINE: dict[tuple[int, datetime, bool, date], Dataset] = {}
_PRISTINE_LOCK = threading.Lock()


class Store:
    def __init__(self, seed: int = 7, now: datetime | None = None, progress_polls: int = 3,
                 runner: CodeRunner | None = None, dialect: Dialect = DOCUMENTED, evaluation_reads: int = 2,
                 judge_polls: int = 1, v2_enabled: bool = True) -> None:
        self.seed = seed
        self.dialect: Dialect = dialect
        self.documented = dialect == DOCUMENTED
        self.initial_evaluation_reads = evaluation_reads
        self.judge_polls = judge_polls
        self.initial_v2 = v2_enabled
        self.anchor = now.astimezone(UTC) if now is not None else default_anchor()
        # An explicit anchor shifts the sandbox's clock with it, so "the last 30 days" still means its data.
        self._offset = self.anchor - default_anchor() if now is not None else timedelta(0)
        self.progress_polls = progress_polls
        self.evaluator = Evaluator(InProcessRunner())
        self.lock = threading.RLock()
        # The seeded data set's own code runs in-process; code the API was given runs isolated.
        self._pristine = self._seeded()
        seeded = frozenset(m.custom_code for m in self._pristine.metrics.values() if m.custom_code)
        for code in seeded:
            self.evaluator.trust(code)
        self.evaluator.runner = runner or IsolatedRunner(trusted=seeded)
        self.reset()

    def _seeded(self) -> Dataset:
        """The seeded data set (never written to: `reset` clones it), generated once per process for each seed,
        anchor and dialect (and day: custom code reads today's date): the same ones always generate the same data,
        about 0.2 s of CPU each, and a process (the test suite, `--workers`' parent) starts many sandboxes."""
        key = (self.seed, self.anchor, self.documented, today_utc())
        with _PRISTINE_LOCK:
            pristine = _PRISTINE.get(key)
            if pristine is None:
                pristine = generate(self.seed, self.anchor, self.evaluator)
                if self.documented:
                    self._add_predefined(pristine)
                if len(_PRISTINE) >= PRISTINE_LIMIT:
                    _PRISTINE.pop(next(iter(_PRISTINE)))
                _PRISTINE[key] = pristine
            return pristine

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
            previous: FaultBook | None = getattr(self, "faults", None)
            if previous is not None:
                previous.let_go()  # a request held across a reset never lands in the fresh data
            self.faults = FaultBook()
            self.latency_ms = 0
            self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)
            # Requests still in flight (a delayed or held one from before the reset) finish after it: the count
            # goes on, so it never drops below 0 and the peak counts them.
            self.in_flight: int = getattr(self, "in_flight", 0)
            self.max_in_flight = self.in_flight
            # documented dialect: evaluations waiting to land (call id → reads seen since requested).
            self.pending: dict[int, int] = {}
            self.evaluation_reads = self.initial_evaluation_reads
            self.initial_credits = INITIAL_CREDITS
            self.judge_jobs: dict[str, JudgeJob] = {}
            self.questions_to_ask = 0
            # documented dialect: how finished auto-improve runs answer ("alternate": odd runs in the docs'
            # wrapped form, even ones flat), and how many of the next runs end in an error status.
            self.progress_shape = "alternate"
            self.runs_to_fail = 0
            self.run_failure = ""
            self.v2_enabled = self.initial_v2
            self.history: dict[int, list[HistoryEntry]] = {}
            self._ids["history"] = 1
            for metric in sorted(self.metrics.values(), key=lambda m: m.id):
                self.record_history(metric, "+", None, when=metric.created_at)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def next_id(self, kind: str) -> int:
        with self.lock:
            value = self._ids[kind]
            self._ids[kind] = value + 1
            return value

    @property
    def credits_spent(self) -> float:
        return round(self.evaluations.credits, 6)

    @property
    def credits_remaining(self) -> float:
        return round(self.initial_credits - self.evaluations.credits, 6)

    def cost_of(self, calls: list[Call]) -> float:
        """What evaluating every metric assigned to each call costs."""
        return round(sum(metric_cost(m) for c in calls for m in self.assigned(c.agent_id)), 6)

    def _add_predefined(self, data: Dataset) -> None:
        """The documented dialect's predefined metric, evaluated on its agent's calls (seeding is free)."""
        metric = predefined.hallucination(data.project_id, PHARMACY_AGENT_ID, self.anchor)
        data.metrics[metric.id] = metric
        truth = data.truth.setdefault(metric.id, {})
        for call in data.calls.values():
            if call.agent_id in metric.agents:
                self.evaluator.evaluate(call, data.agents[call.agent_id], [metric])
                # With no Knowledge Base there is nothing to contradict: the check is right on every call.
                truth[call.id] = Truth(call.results[metric.id].value, None)

    def record_history(self, metric: Metric, kind: str, reason: str | None, when: datetime | None = None) -> None:
        with self.lock:
            entry = HistoryEntry(self.next_id("history"), when or self.now(), kind, reason,
                                 {f: _copy(getattr(metric, f)) for f in VERSIONED})
            self.history.setdefault(metric.id, []).append(entry)

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
            # Strictly later than anything the call showed before, even within one clock tick.
            call.updated_at = max(self.now(), call.updated_at + timedelta(milliseconds=1))
            self.pending.pop(call.id, None)
            return count

    # --- asynchronous evaluation (documented dialect) ------------------------------------------

    def queue(self, call: Call, reset_success: bool) -> None:
        """Accept an evaluation that lands after `evaluation_reads` further call-log reads. A re-run
        resets `success` to null on calls no one reviewed (the spec's re-run text)."""
        with self.lock:
            if reset_success and not call.is_reviewed:
                call.success = None
            self.pending[call.id] = 0
            if self.evaluation_reads <= 0:
                self.run(call)

    def tick_reads(self) -> None:
        """One call-log read (list page or detail) happened: evaluations whose delay is over land now,
        before the read is answered."""
        with self.lock:
            due = []
            for call_id in list(self.pending):
                self.pending[call_id] += 1
                if self.pending[call_id] >= self.evaluation_reads:
                    due.append(call_id)
            for call_id in sorted(due):
                call = self.calls.get(call_id)
                if call is None:
                    self.pending.pop(call_id, None)
                    continue
                self.run(call)

    def finish_evaluations(self) -> list[int]:
        """Land every pending evaluation now (the admin route)."""
        with self.lock:
            landed = sorted(self.pending)
            for call_id in landed:
                call = self.calls.get(call_id)
                if call is not None:
                    self.run(call)
            self.pending.clear()
            return landed

    def judge_with(self, metric: Metric, description: str, call: Call) -> Verdict:
        """What the judge would say with another description, without storing or charging anything."""
        if metric.type == "custom_code":
            scratch = Call(**{**call.__dict__, "results": dict(call.results)})
            self.evaluator.evaluate(scratch, self.agents[call.agent_id], [metric])
            result = scratch.results[metric.id]
            return Verdict(result.value, result.explanation)
        return safe_judge(description, metric.eval_type, metric.enum_values, call, self.agents.get(call.agent_id))


def _copy(value: Any) -> Any:
    return copy.deepcopy(value)
