"""Plain data records of the sandbox: the seeded data set and what the API writes on top of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# A metric value in "vote form", the shape a vote's `expected_value` takes: binary → True/False/None
# (None is N/A), enum → the label (None is N/A), numeric and continuous → a float (None is N/A).
VoteValue = bool | float | str | None

EvalType = Literal["binary", "continuous_qualitative", "numeric", "enum"]
EVAL_TYPES: tuple[str, ...] = ("binary", "continuous_qualitative", "numeric", "enum")
METRIC_TYPES: tuple[str, ...] = ("basic", "custom_prompt", "custom_code", "llm_judge")
TRIGGERS: tuple[str, ...] = ("always", "automatic", "custom")
TRIGGER_TYPES: tuple[str, ...] = ("llm_judge", "custom_code")

AGENT_ROLE = "Main Agent"
CALLER_ROLE = "Testing Agent"


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    start: float
    end: float


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    assistant_id: str
    description: str
    # Read by the judge's {{agent.*}} placeholders (Cekura's variable reference lists these fields).
    language: str = "en"
    inbound: bool = True
    contact_number: str = ""


@dataclass
class Metric:
    id: int
    name: str
    description: str
    type: str
    eval_type: str
    enum_values: list[str]
    agents: list[int]
    project: int
    rule: str
    slug: str
    display_order: int
    custom_code: str = ""
    audio_enabled: bool = False
    prompt: str = ""
    simulation_enabled: bool = False
    observability_enabled: bool = True
    sampling_enabled: bool = False
    evaluation_trigger: str = "always"
    evaluation_trigger_prompt: str = ""
    trigger_type: str = "llm_judge"
    evaluation_trigger_custom_code: str = ""
    configuration: dict[str, Any] = field(default_factory=dict)
    add_to_new_agents: bool | None = False
    assistant_id: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Predefined (platform) metrics: their code and price per evaluation; None → 0.2, custom code 0.
    vocera_defined_metric_code: str = ""
    function_name: str | None = None
    cost: float | None = None
    # The finished auto-improve proposal waiting for apply/dismiss (`documented` dialect).
    pending_proposal: dict[str, Any] | None = None


@dataclass
class MetricResult:
    metric_id: int
    value: VoteValue
    explanation: list[str]


@dataclass(frozen=True)
class Truth:
    """What a careful human reviewer would score, and the name of the judge's recurring mistake
    this call exhibits for the metric (None when the seeded judge gets it right)."""

    expected: VoteValue
    pattern: str | None


@dataclass
class Call:
    id: int
    agent_id: int
    project_id: int
    provider_call_id: str
    timestamp: datetime
    created_at: datetime
    updated_at: datetime
    turns: tuple[Turn, ...]
    duration_s: float
    call_ended_reason: str
    customer_number: str
    topic: str
    metadata: dict[str, Any]
    dynamic_variables: dict[str, Any]
    results: dict[int, MetricResult] = field(default_factory=dict)
    success: bool | None = None
    is_reviewed: bool = False
    feedback: str = ""


@dataclass(frozen=True)
class Vote:
    call_id: int
    metric_id: int
    thumbs_up: bool | None
    expected: VoteValue
    expected_given: bool
    feedback: str | None
    actual: VoteValue
    created_at: datetime


@dataclass
class MetricReview:
    id: int
    metric_id: int
    test_set_id: int
    expected: VoteValue
    actual: VoteValue
    explanation: list[str]
    feedback: str
    created_at: datetime
    updated_at: datetime


@dataclass
class TestSet:
    id: int
    agent_id: int
    call_id: int
    name: str
    reviews: dict[int, MetricReview]
    created_at: datetime
    updated_at: datetime

    __test__ = False  # not a pytest test class, despite the name


@dataclass
class Question:
    """What a paused auto-improve run asks the person (`documented` dialect)."""

    id: str
    kind: str
    text: str
    review_ids: list[int]
    call_log_ids: list[int]
    test_set_ids: list[int]
    answer: str | None = None
    skipped: bool = False

    @property
    def open(self) -> bool:
        return self.answer is None and not self.skipped


@dataclass
class Job:
    """One `process_feedbacks` run: the result is computed up front (or, when the run pauses with
    questions, once they are answered) and revealed after some polls."""

    id: int
    progress_id: str
    metric_id: int
    result: dict[str, Any]
    polls: int = 0
    cancelled: bool = False
    questions: list[Question] = field(default_factory=list)
    test_set_ids: list[int] = field(default_factory=list)
    metric_type: str | None = None
    skip_evaluation: bool = False
    proposal_recorded: bool = False
    # documented dialect: the error this run ends in (set by `POST /_sandbox/auto-improve/answers`), if any.
    failure: str | None = None

    @property
    def paused(self) -> bool:
        return any(q.open for q in self.questions)


@dataclass
class JudgeJob:
    """One asynchronous `evaluate_llm_judge_metric` call: the verdict is computed at once and revealed
    after some polls of `evaluate_metric_progress`."""

    progress_id: str
    metric_id: int
    output: dict[str, Any]
    polls: int = 0


@dataclass(frozen=True)
class HistoryEntry:
    """One row of a metric's history (django-simple-history style): the metric as it was after a change."""

    history_id: int
    date: datetime
    kind: str  # "+" created, "~" changed
    reason: str | None
    snapshot: dict[str, Any]
