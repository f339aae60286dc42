"""Evaluating calls: the stand-in judge for LLM-judge metrics, the code runner for custom code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cekura_labs_mcp.server.custom_code.inputs import (
    AVERAGE_LATENCY,
    average_latency,
    code_turn,
    latency_data,
    recording_data,
    today_utc,
)

from . import judge as judge_mod
from . import predefined
from .models import Agent, Call, Metric, MetricResult, VoteValue
from .render import iso, recording_url, transcript_text
from .runner import CodeRunner, LlmJudgeFn

BINARY_ALIASES = frozenset({"binary", "binary_workflow_adherence", "binary_qualitative"})
JUDGE_COST = 0.2


def metric_cost(metric: Metric) -> float:
    """Credits one evaluation of the metric costs: its own price (predefined metrics), 0 for custom
    code, else 0.2 (Cekura's FAQ: "0.2 credits per metric run")."""
    if metric.cost is not None:
        return metric.cost
    return 0.0 if metric.type == "custom_code" else JUDGE_COST


@dataclass
class EvalCount:
    llm_judge: int = 0
    custom_code: int = 0
    credits: float = 0.0

    def add(self, other: EvalCount) -> None:
        self.llm_judge += other.llm_judge
        self.custom_code += other.custom_code
        self.credits = round(self.credits + other.credits, 6)


def assigned(metrics: Iterable[Metric], agent_id: int) -> list[Metric]:
    """The metrics that run on an agent's production calls, in display order."""
    chosen = [m for m in metrics if agent_id in m.agents and m.observability_enabled]
    return sorted(chosen, key=lambda m: (m.display_order, m.id))


def coerce(result: object, eval_type: str) -> VoteValue:
    """A custom-code `_result` in vote form for the metric's eval type (None when unreadable)."""
    if result is None:
        return None
    if eval_type == "binary":
        return _coerce_binary(result)
    if eval_type == "enum":
        return str(result)
    if isinstance(result, bool):
        return 5.0 if result else 0.0
    if isinstance(result, (int, float)):
        return float(result)
    try:
        return float(str(result))
    except ValueError:
        return None


def _coerce_binary(result: object) -> bool | None:
    if isinstance(result, bool):
        return result
    if isinstance(result, (int, float)):
        return result > 0
    text = str(result).strip().upper()
    if text in ("TRUE", "PASS", "YES", "5"):
        return True
    if text in ("FALSE", "FAIL", "NO", "0"):
        return False
    return None


def judge_value_for_code(value: VoteValue, eval_type: str) -> object:
    """How another metric's result (or the judge helper's result) looks to custom code: binary as 5/0."""
    if eval_type == "binary" and isinstance(value, bool):
        return 5 if value else 0
    return value


class Evaluator:
    """Runs LLM-judge metrics through the stand-in judge and custom code through `runner`.

    Code the data set itself ships (trusted with `trust`) runs in-process through `trusted_runner`:
    it is product code, and it runs on every call of every re-run, where a process per run would cost
    seconds. Any other code — whatever the API was given — goes to `runner`.
    """

    def __init__(self, runner: CodeRunner, trusted_runner: CodeRunner | None = None) -> None:
        self.runner = runner
        self.trusted_runner = trusted_runner or runner
        self._trusted: set[str] = set()

    def trust(self, code: str) -> None:
        self._trusted.add(code)

    def runner_for(self, code: str) -> CodeRunner:
        return self.trusted_runner if code in self._trusted else self.runner

    def evaluate(self, call: Call, agent: Agent, metrics: Sequence[Metric]) -> EvalCount:
        """Score `call` on each metric, LLM-judge ones first (custom code may read their results)."""
        count = EvalCount()
        for metric in metrics:
            if metric.vocera_defined_metric_code:
                call.results[metric.id] = predefined.evaluate(metric, call)
                count.llm_judge += 1
                count.credits += metric_cost(metric)
            elif metric.type != "custom_code":
                # The judge reads the description only; an unrenderable one is a failed evaluation.
                verdict = judge_mod.safe_judge(metric.description, metric.eval_type, metric.enum_values, call, agent)
                call.results[metric.id] = MetricResult(metric.id, verdict.value, verdict.explanation)
                count.llm_judge += 1
                count.credits += metric_cost(metric)
        coded = [m for m in metrics if m.type == "custom_code"]
        if coded:
            data = self.code_data(call, agent, metrics)
            for metric in coded:
                runner = self.runner_for(metric.custom_code)
                outcome = runner.run(metric.custom_code, data, self._llm_judge_helper(metric, call, agent))
                value = coerce(outcome.result, metric.eval_type)
                call.results[metric.id] = MetricResult(metric.id, value, outcome.explanation)
                count.custom_code += 1
                count.credits += metric_cost(metric)
        return count

    def code_data(self, call: Call, agent: Agent, metrics: Sequence[Metric]) -> dict[str, Any]:
        # The turns, the date (today, as Cekura's "current date") and the latency figures as test_custom_code
        # builds them from a call, so a local test and a re-run here see the same inputs.
        turns = [code_turn(t.role, t.content, t.start, t.end) for t in call.turns]
        latencies = latency_data(turns)
        data: dict[str, Any] = {
            "transcript": transcript_text(call),
            "transcript_json": turns,
            "call_duration": call.duration_s,
            "call_end_reason": call.call_ended_reason,
            "voice_recording": recording_url(call),
            "agent_description": agent.description,
            "date": today_utc().isoformat(),
            "timestamp": iso(call.timestamp),
            "metadata": dict(call.metadata),
            # Derived as test_custom_code derives them from a call, so a local test and a re-run here agree.
            "recording_data": recording_data(turns, call.duration_s),
            "latency_data": latencies,
            AVERAGE_LATENCY: average_latency(latencies),
            "dynamic_variables": dict(call.dynamic_variables),
            "call_log_id": call.id,
            "topic": call.topic,
            "explanation": {},
        }
        for metric in metrics:
            result = call.results.get(metric.id)
            if metric.type != "custom_code" and result is not None:
                data[metric.name] = judge_value_for_code(result.value, metric.eval_type)
                data["explanation"][metric.name] = list(result.explanation)
        return data

    def _llm_judge_helper(self, metric: Metric, call: Call, agent: Agent) -> LlmJudgeFn:
        def evaluate_llm_judge_metric(
            data: dict[str, Any], api_key: str | None = None, description: str = "",
            eval_type: str | None = None, enum_values: list[str] | None = None,
        ) -> dict[str, Any]:
            kind = "binary" if (eval_type or metric.eval_type) in BINARY_ALIASES else (eval_type or metric.eval_type)
            verdict = judge_mod.safe_judge(description, kind, enum_values or metric.enum_values, call, agent)
            return {"result": judge_value_for_code(verdict.value, kind), "explanation": verdict.explanation}

        return evaluate_llm_judge_metric


def success_of(call: Call, metrics: dict[int, Metric], overrides: dict[int, VoteValue] | None = None) -> bool | None:
    """A call succeeds when no binary metric failed; reviewers' expected values override the judge's."""
    values: list[VoteValue] = []
    for metric_id, result in call.results.items():
        metric = metrics.get(metric_id)
        if metric is None or metric.eval_type != "binary":
            continue
        values.append(overrides[metric_id] if overrides and metric_id in overrides else result.value)
    if not call.results:
        return None
    return not any(v is False for v in values)


def status_of(call: Call) -> str:
    passed = call.success is not False
    if call.is_reviewed:
        return "reviewed_success" if passed else "reviewed_failure"
    return "success" if passed else "failure"
