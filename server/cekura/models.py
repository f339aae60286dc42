"""Typed views of the Cekura answers the tools use, derived from the spec subset.

Models are tolerant (`extra="ignore"`): Cekura adds fields freely, and a new field must not break
a review. Where the spec types a field as a string but the service may send structure (list rows'
`evaluation`, a call's `transcript_object`), both forms are accepted.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
            return parse_json(text)
        except ValueError:
            return None
    return value


def parse_json(text: str | bytes) -> Any:
    """`json.loads`, by pydantic-core's parser where it can: a third of the CPU on a page of 200 calls, whose
    rows embed their transcripts and results as JSON text. What that parser refuses and `json.loads` takes (an
    escaped lone surrogate, a UTF-8 byte-order mark) goes to `json.loads`, so exactly the same texts parse, to the
    same values, and the same ones raise `ValueError`."""
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)


def _decimal_or_none(value: Any) -> Any:
    """Cekura sends money as decimal strings (`"7436.08"`) and sometimes as numbers."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool):
        return None
    return value


LEGACY_BINARY_EVAL_TYPES = frozenset({"binary_workflow_adherence", "binary_qualitative"})
EVAL_TYPES = frozenset({"binary", "continuous_qualitative", "numeric", "enum"})


def normalise_eval_type(name: str | None) -> str | None:
    """`binary`, `continuous_qualitative`, `numeric` or `enum`; the legacy binary names
    (`binary_workflow_adherence`, `binary_qualitative`) are binary. Anything else is unknown (None)."""
    if not name:
        return None
    key = name.strip().lower()
    if key in LEGACY_BINARY_EVAL_TYPES:
        return "binary"
    return key if key in EVAL_TYPES else None


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
    """One metric's result on one call (`CallLogListSerializerMetrics[WithExplanation]`, and the shapes
    Cekura's docs show: `eval_type` + `passed` on binary metrics, legacy `type` names with `score` 5/0/null,
    `extra.trigger_failed` for N/A, `value` only on enum metrics).

    What the result SAYS (`passed`, `score`, `value`, `enum`) is kept only in `raw`, exactly as sent: the one
    reader, `server.cekura.results.read_result`, is the only code that interprets it (mypy enforces it: there
    is no `.value` or `.score` to read by mistake)."""

    id: int
    name: str = ""
    type: str = ""
    eval_type: str | None = None
    explanation: list[str] = Field(default_factory=list)
    extra: dict[str, Any] | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, data: Any) -> Any:
        # Called for every result of every row (a page of 200 calls holds 2,000): two copies made in C, and the
        # fields the model would refuse left out (the reader finds them in `raw`).
        if isinstance(data, dict) and "raw" not in data:
            raw = dict(data)
            raw.pop("explanation", None)
            data = {**data, "raw": raw}
            extra = data.get("extra")
            if extra is not None and not isinstance(extra, dict):
                del data["extra"]
            eval_type = data.get("eval_type")
            if eval_type is not None and not isinstance(eval_type, str):
                del data["eval_type"]
            if not isinstance(data.get("type"), str):
                data.pop("type", None)
        return data

    @field_validator("explanation", mode="before")
    @classmethod
    def _explanation_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value


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
    created_at: str | None = None
    updated_at: str | None = Field(default=None, description="Moves when results are written: how a poll "
                                   "tells a fresh evaluation from the one before.")
    transcript: str | None = None
    evaluation: Evaluation | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        return parsed if isinstance(parsed, dict) else {}

    @field_validator("evaluation", mode="before")
    @classmethod
    def _evaluation(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        if isinstance(parsed, list):
            return {"metrics": parsed}
        return parsed if isinstance(parsed, dict) else None

    def metric(self, metric_id: int) -> MetricResult | None:
        for result in self.evaluation.metrics if self.evaluation else []:
            if result.id == metric_id:
                return result
        return None


class CallRow(_CallBase):
    """A row of the call list (`CallLogList`). Its `transcript_object` (a JSON text there, 30-odd turns a call) is
    not read: what reads turns (the call view, a Python metric's inputs) reads the call (`CallDetail`), and parsing
    and validating every row's turns was a third of the CPU of reading a page of 200 calls."""

    metrics: list[MetricResult] = Field(default_factory=list)

    def metric(self, metric_id: int) -> MetricResult | None:
        detailed = super().metric(metric_id)
        if detailed is not None:
            return detailed
        return next((m for m in self.metrics if m.id == metric_id), None)


class CallDetail(_CallBase):
    """One call (`CallLogDetail`)."""

    transcript_object: list[TranscriptTurn] = Field(default_factory=list)
    project: int | None = None
    agent_id: str | None = None
    dynamic_variables: dict[str, Any] = Field(default_factory=dict)
    customer_number: str | None = None
    error_message: str | None = None
    voice_recording_url: str | None = None

    @field_validator("dynamic_variables", mode="before")
    @classmethod
    def _dict(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        return parsed if isinstance(parsed, dict) else {}

    @field_validator("transcript_object", mode="before")
    @classmethod
    def _turns(cls, value: Any) -> Any:
        parsed = _maybe_json(value)
        return parsed if isinstance(parsed, list) else []


class Agent(_Model):
    """`GET /test_framework/v2/aiagents/{id}/`: the fields the variable reference's `{{agent.*}}` lists."""

    id: int
    agent_name: str = ""
    description: str = ""
    language: str | None = None
    inbound: bool | None = None
    contact_number: str | None = None

    @field_validator("agent_name", "description", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else value


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
    trigger_type: str | None = None
    evaluation_trigger_custom_code: str | None = None
    agents: list[int | None] = Field(default_factory=list)
    project: int | None = None
    metric_cost: float | None = Field(default=None, description="Credits per evaluation of this metric, where "
                                      "Cekura says (the metric list's `metric_cost`); None when not sent.")

    @field_validator("metric_cost", mode="before")
    @classmethod
    def _cost(cls, value: Any) -> Any:
        return _decimal_or_none(value)

    @field_validator("eval_type", mode="before")
    @classmethod
    def _eval_type(cls, value: Any) -> Any:
        # The legacy binary names still appear (skills' create schema, webhooks): one name for binary.
        if isinstance(value, str) and value.strip().lower() in LEGACY_BINARY_EVAL_TYPES:
            return "binary"
        return value if isinstance(value, str) and value else "binary"

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
    trigger_type: Literal["llm_judge", "custom_code"] | None = None
    evaluation_trigger_custom_code: str | None = None

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
    """A finished `ProcessFeedbacksResponse`: the whole proposal, not only the description.

    `improved_evaluation_trigger` is read by `improved_trigger_kind`: `always` (run on every call), an LLM-judge
    trigger prompt (`llm_judge`) or Python source (`custom_code`). `old_score`/`new_score` are the Lab's
    accuracy before and after over the same samples; a lower `new_score` is a regression to show."""

    improved_metric_description: str
    improved_evaluation_trigger: str | None = None
    improved_trigger_kind: Literal["always", "llm_judge", "custom_code"] | None = None
    trigger_type: str | None = None
    custom_code: str | None = None
    type: str | None = None
    optimization_summary: str | None = None
    old_score: Score | None = None
    new_score: Score | None = None
    review_results: list[ReviewResult] = Field(default_factory=list)
    unresolved_samples: list[Any] = Field(default_factory=list)
    feedback_edits: list[Any] = Field(default_factory=list)
    unauthorized_label_changes: list[Any] = Field(default_factory=list)

    @field_validator("old_score", "new_score", mode="before")
    @classmethod
    def _score(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"score": float(value)}
        return value if isinstance(value, dict) else None

    @field_validator("improved_trigger_kind", mode="before")
    @classmethod
    def _trigger_kind(cls, value: Any) -> Any:
        return value if value in ("always", "llm_judge", "custom_code") else None

    @field_validator("unresolved_samples", "feedback_edits", "unauthorized_label_changes", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return value if isinstance(value, list) else []

    @property
    def score_dropped(self) -> bool:
        """True when the Lab scores the proposal lower than the current metric."""
        old = self.old_score.score if self.old_score else None
        new = self.new_score.score if self.new_score else None
        return old is not None and new is not None and new < old


class ProgressQuestion(_Model):
    """A question a paused auto-improve run asks (docs `metric-lab.mdx`, "Answer Questions During
    Optimization": contradictory labels, or a sample whose label is ambiguous, shown "with the sample's
    transcript and context"). Cekura publishes no schema for it; the answer endpoint keys answers by question
    id. The reader accepts the names a question is likely to carry (`id`/`question_id`; `question`/`text`/
    `prompt`/`message`; `options`/`choices`; `context`/`sample`; `call_log_ids`/`call_log_id`) and keeps the
    rest in `raw`. `context` is call text: untrusted data, shown as such."""

    id: str
    text: str
    kind: str | None = None
    options: list[str] = Field(default_factory=list)
    context: str | None = None
    call_ids: list[int] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {"id": "", "text": str(data), "raw": {"question": data}}
        if "raw" in data and "text" in data:
            return data
        qid = _first(data, "id", "question_id", "key")
        text = _first(data, "question", "text", "prompt", "message", "title")
        options = _first(data, "options", "choices")
        context = _first(data, "context", "sample", "details")
        calls = _first(data, "call_log_ids", "call_ids", "call_log_id", "call_id")
        kind = _first(data, "kind", "type")
        return {
            "id": "" if qid is None else str(qid),
            "text": "" if text is None else str(text),
            "kind": kind if isinstance(kind, str) else None,
            "options": [str(o.get("label", o.get("value", o)) if isinstance(o, dict) else o)
                        for o in options] if isinstance(options, list) else [],
            "context": _context_text(context),
            "call_ids": [c for c in (calls if isinstance(calls, list) else [calls])
                         if isinstance(c, int) and not isinstance(c, bool)],
            "raw": dict(data),
        }


def _context_text(context: Any, limit: int = 4000) -> str | None:
    """A question's context as text: a string as is; a list of `{call_log_id, transcript}` (or any
    structure) as lines; bounded, because it may hold whole transcripts."""
    if context is None:
        return None
    if isinstance(context, str):
        text = context
    elif isinstance(context, list):
        lines = []
        for item in context:
            if isinstance(item, dict) and "transcript" in item:
                head = f"call {item.get('call_log_id', item.get('call_id', '?'))}:"
                lines.append(f"{head}\n{item['transcript']}")
            else:
                lines.append(item if isinstance(item, str) else json.dumps(item, default=str))
        text = "\n\n".join(lines)
    else:
        text = json.dumps(context, default=str)
    return text if len(text) <= limit else text[:limit] + f" …[{len(text) - limit} characters left out]"


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) not in (None, ""):
            return data[name]
    return None


class ProgressState(_Model):
    """The progress endpoint's answer: done once `improved_metric_description` is present (at the top level or
    under `output`), or once the run failed or was cancelled; `waiting` while the run is paused on `questions`
    (answer them with `process_feedbacks_answer`)."""

    done: bool
    status: str | None = None
    progress: float | None = None
    error: str | None = None
    failed: bool = Field(default=False, description="The run ended in an error (not a cancellation): nothing "
                         "was proposed.")
    proposal: ImprovementProposal | None = None
    questions: list[ProgressQuestion] = Field(default_factory=list)

    @property
    def waiting(self) -> bool:
        return not self.done and bool(self.questions)


class SkipQuestion(_Model):
    """The documented way to skip one question: `{"action": "skip"}`."""

    action: Literal["skip"] = "skip"


QuestionAnswer = str | SkipQuestion


class MetricVersion(_Model):
    """One entry of a metric's history (`MetricHistory`): what `restore` takes back."""

    history_id: int
    history_date: str | None = None
    history_type: str | None = None
    history_change_reason: str | None = None
    version_id: str | None = None
    version_name: str | None = None
    name: str | None = None
    description: str | None = None
    type: str | None = None
    eval_type: str | None = None
    custom_code: str | None = None
    evaluation_trigger: str | None = None
    evaluation_trigger_prompt: str | None = None


class MetricHistoryPage(_Model):
    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[MetricVersion] = Field(default_factory=list)


class BillingInfo(_Model):
    """`GET /test_framework/billing/info/` (`BillingInfo`): credits as decimal strings, read as numbers."""

    organization: int | None = None
    credits_remaining: float | None = None
    credits_used: float | None = None
    initial_balance: float | None = None
    balance_expiry: str | None = None
    subscription_status: dict[str, Any] | None = None

    @field_validator("credits_remaining", "credits_used", "initial_balance", mode="before")
    @classmethod
    def _credits(cls, value: Any) -> Any:
        return _decimal_or_none(value)

    @field_validator("subscription_status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else None


class JudgeProgress(_Model):
    """`GET .../metrics-external/evaluate_metric_progress/`: "State object with status, output, error"
    (the spec's text; its schema is a generator's placeholder). Done when a verdict or an error is there."""

    done: bool
    status: str | None = None
    verdict: JudgeVerdict | None = None
    error: str | None = None
