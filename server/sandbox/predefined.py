"""Predefined (platform) metrics the `documented` dialect adds to the demo project.

Cekura's predefined metrics carry their own price (docs `documentation/key-concepts/metrics/
pre-defined-metrics.mdx`: "Hallucination ... **Cost**: 0.6 credits per call"), which is what makes
`metric_cost` differ from the 0.2 of an LLM-judge metric. The sandbox adds one, assigned to the
pharmacy agent, so a client's cost estimate has a non-uniform price to get right.
"""

from __future__ import annotations

from datetime import datetime

from .models import Call, Metric, MetricResult

HALLUCINATION_ID = 9107
HALLUCINATION_COST = 0.6


def hallucination(project: int, agent_id: int, now: datetime) -> Metric:
    return Metric(
        id=HALLUCINATION_ID, name="Hallucination",
        description="Detects when the Main Agent provides information that contradicts or isn't supported by the "
                    "uploaded Knowledge Base files.",
        type="basic", eval_type="binary", enum_values=[], agents=[agent_id], project=project, rule="predefined",
        slug="hallucination", display_order=7, vocera_defined_metric_code="7fd534f5",
        function_name="check_hallucination", cost=HALLUCINATION_COST, created_at=now, updated_at=now,
    )


def evaluate(metric: Metric, call: Call) -> MetricResult:
    """The stand-in for a platform metric. The sandbox's agents have no Knowledge Base uploaded, so no
    statement can contradict one: the check passes, and says why."""
    if not call.turns:
        return MetricResult(metric.id, None, ["The call has no transcript to check."])
    return MetricResult(metric.id, True, [
        "No Main Agent statement contradicts the agent's Knowledge Base: this agent has no Knowledge Base "
        "files uploaded, so there is nothing to check the answers against.",
    ])
