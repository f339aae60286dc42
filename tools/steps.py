"""The tool that takes each kind of step (server/steps.py): where the messages made below the tool layer get
the tools' names, just before they reach the assistant (tool errors in `tool_errors`, results in
`compact_text`). tools/__init__.py checks that every step names a registered tool."""

from __future__ import annotations

from typing import Any

from cekura_labs_mcp.server.steps import MARK, STEP, Step

TOOL_FOR_STEP: dict[Step, str] = {
    Step.OVERVIEW: "metric_overview",
    Step.LIST_CALLS: "list_calls",
    Step.READ_CALL: "get_call",
    Step.LIST_METRICS: "list_metrics",
    Step.READ_METRIC: "get_metric",
    Step.TRIAGE: "triage_failures",
    Step.OPEN_REVIEW: "start_review",
    Step.NEXT_CALL_TO_REVIEW: "next_review",
    Step.RECORD_VERDICT: "record_review",
    Step.VOTE: "mark_metric_vote",
    Step.ADD_TO_LAB: "create_test_set_from_call",
    Step.START_IMPROVEMENT: "process_feedbacks",
    Step.WAIT_FOR_IMPROVEMENT: "poll_progress",
    Step.ANSWER_QUESTION: "answer_improvement_question",
    Step.CANCEL_IMPROVEMENT: "cancel_improvement",
    Step.APPLY_PROPOSAL: "apply_proposal",
    Step.CHANGE_METRIC: "patch_metric",
    Step.ROLL_BACK: "rollback_metric",
    Step.RERUN: "rerun_evaluation",
    Step.EVALUATE: "evaluate_metrics",
    Step.REGRESSION_CHECK: "validate_metric",
    Step.JUDGE_CHANGE: "judge_change",
    Step.ADD_REGRESSIONS: "add_regressions_to_lab",
    Step.SPEND_LOG: "spend_log",
    Step.TEST_CODE: "test_custom_code",
    Step.DRAFT_CODE: "convert_to_custom_code",
}
_BY_MARKER = {step.value: tool for step, tool in TOOL_FOR_STEP.items()}


def name_tools(text: str) -> str:
    """`text` with every step written as its tool's name (a fast `in` test first: most texts name none)."""
    if MARK not in text:
        return text
    return STEP.sub(lambda m: _BY_MARKER.get(m.group(0), m.group(0)), text)


def name_tools_in(value: Any) -> Any:
    """The same through a result's JSON data (dicts, lists, strings), for its structured content."""
    if isinstance(value, str):
        return name_tools(value)
    if isinstance(value, dict):
        return {key: name_tools_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [name_tools_in(item) for item in value]
    return value
