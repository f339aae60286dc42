"""Typed views of the Cekura answers the tools use, derived from the spec subset.

Models are tolerant (`extra="ignore"`): Cekura adds fields freely, and a new field must not break
a review. Where the spec types a field as a string but the service may send structure (list rows'
`evaluation` and `transcript_object`), both forms are accepted.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EvalType = Literal["binary", "continuous_qualitative", "numeric", "enum"]
MetricType = Literal["basic", "custom_prompt", "custom_code", "llm_judge"]
ExpectedValue = bool | float | int | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None
    return value


class TranscriptTurn(_Model):
    role: str = ""
    content: str = ""
    timestamp: float | None = None
    start_time: float | None = None
    end_time: float | None = None

    @property
    def start(self) -> float:
        if self.start_time is not None:
            return self.start_time
        return self.timestamp or 0.0


class MetricResult(_Model):
    """One metric's result on one call (`CallLogListSerializerMetrics[WithExplanation]`)."""

    id: int
    name: str = ""
    type: str = ""
    score: float | None = None
    enum: str | None = None
    value: str | None = None
    explanation: list[str] = Field(default_factory=list)
    extra: dict[str, Any] | None = None

    @field_validator("explanation", mode="before")
    @classmethod
    def _explanation_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value_text(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        return str(value)


class Evaluation(_Model):
    metrics: list[MetricResult] = Field(default_factory=list)


class _CallBase(_Model):
    id: int
    call_id: str | None = None
    timestamp: str | None = None
    duration: str | None = None
    status: str | None = None
    success: bool | None = None
    is_reviewed: bool = False
    agent: int | None = None
    agent_name: str | None = None
    topic: str | None = None
    call_ended_reason: str | None = None
    transcript: str | None = None
    evaluation: Evaluation | None = None
    transcript_object: list[TranscriptTurn] = Field(default_factory=list)

    @field_validator("evaluation", mode="before")
    @classmethod
    def _evaluation(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        if isinstance(parsed, list):
            return {"metrics": parsed}
        return parsed if isinstance(parsed, dict) else None

    @field_validator("transcript_object", mode="before")
    @classmethod
    def _turns(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        return parsed if isinstance(parsed, list) else []

    def metric(self, metric_id: int) -> MetricResult | None:
        for result in self.evaluation.metrics if self.evaluation else []:
            if result.id == metric_id:
                return result
        return None


class CallRow(_CallBase):
    """A row of the call list (`CallLogList`)."""

    metrics: list[MetricResult] = Field(default_factory=list)

    def metric(self, metric_id: int) -> MetricResult | None:
        detailed = super().metric(metric_id)
        if detailed is not None:
            return detailed
        return next((m for m in self.metrics if m.id == metric_id), None)


class CallDetail(_CallBase):
    """One call (`CallLogDetail`)."""

    project: int | None = None
    agent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    dynamic_variables: dict[str, Any] = Field(default_factory=dict)
    customer_number: str | None = None
    error_message: str | None = None
    voice_recording_url: str | None = None

    @field_validator("metadata", "dynamic_variables", mode="before")
    @classmethod
    def _dict(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        return parsed if isinstance(parsed, dict) else {}


class JudgeVerdict(_Model):
    """The answer of `evaluate_llm_judge_metric`: binary results are 0 or 5, enum results a label."""

    result: Any = None
    explanation: list[str] = Field(default_factory=list)

    @field_validator("explanation", mode="before")
    @classmethod
    def _explanation_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class CallPage(_Model):
    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[CallRow] = Field(default_factory=list)


class Metric(_Model):
    """`MetricDetailV2` / `MetricList`: only what the labs cycle reads."""

    id: int
    name: str
    description: str = ""
    type: str = "llm_judge"
    eval_type: str = "binary"
    enum_values: list[str] | None = None
    custom_code: str | None = None
    evaluation_trigger: str | None = None
    evaluation_trigger_prompt: str | None = None
    agents: list[int | None] = Field(default_factory=list)
    project: int | None = None

    @field_validator("enum_values", mode="before")
    @classmethod
    def _enum_values(cls, value: Any) -> Any:
        parsed = _maybe_json(value) if isinstance(value, str) else value
        return parsed if isinstance(parsed, list) else None

    @property
    def is_llm_judge(self) -> bool:
        return self.type != "custom_code"


class MetricPatch(_Model):
    """The fields `patch_metric` may change (`PatchedSchemaPostMetricEdit`)."""

    description: str | None = None
    custom_code: str | None = None
    type: MetricType | None = None
    evaluation_trigger: Literal["always", "automatic", "custom"] | None = None
    evaluation_trigger_prompt: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class MetricFeedback(_Model):
    """One entry of `create_from_call_log.metrics` (`MetricWithFeedback`)."""

    metric: int
    feedback: str
    expected_value: ExpectedValue = None


class MetricReview(_Model):
    id: int
    metric: int | None = None
    metric_name: str | None = None
    expected_value: Any = None
    feedback: str | None = None


class TestSet(_Model):
    id: int
    agent: int | None = None
    name: str | None = None
    metric_reviews: list[MetricReview] = Field(default_factory=list)


class Score(_Model):
    num_correct: int | None = None
    num_total: int | None = None
    score: float | None = None


class ReviewResult(_Model):
    review_id: int | None = None
    test_set_id: int | None = None
    actual_value: Any = None
    success: bool | None = None
    error: str | None = None


class ImprovementProposal(_Model):
    """A finished `ProcessFeedbacksResponse`."""

    improved_metric_description: str
    improved_evaluation_trigger: str | None = None
    improved_trigger_kind: str | None = None
    custom_code: str | None = None
    type: str | None = None
    optimization_summary: str | None = None
    old_score: Score | None = None
    new_score: Score | None = None
    review_results: list[ReviewResult] = Field(default_factory=list)
    unresolved_samples: list[Any] = Field(default_factory=list)

    @field_validator("old_score", "new_score", mode="before")
    @classmethod
    def _score(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"score": float(value)}
        return value if isinstance(value, dict) else None


class ProgressState(_Model):
    """The progress endpoint's answer: done once `improved_metric_description` is present."""

    done: bool
    status: str | None = None
    progress: float | None = None
    error: str | None = None
    proposal: ImprovementProposal | None = None
