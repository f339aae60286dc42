"""What the assistant should do next, as a kind of step: the layers below the tools say which step, never which
tool takes it. A message written here reads `f"Call {Step.WAIT_FOR_IMPROVEMENT} to see where it is."`; the tool
layer (tools/steps.py) writes each step as the name of the tool that takes it before anything reaches the
assistant, so renaming a tool touches the tool layer only (tests/test_tool_names.py keeps tool names out of the
messages made here)."""

from __future__ import annotations

import re
from enum import StrEnum


class Step(StrEnum):
    """Each value is the marker the tool layer replaces (`⟨NAME⟩`: brackets no message otherwise uses)."""

    OVERVIEW = "⟨OVERVIEW⟩"
    LIST_CALLS = "⟨LIST_CALLS⟩"
    READ_CALL = "⟨READ_CALL⟩"
    LIST_METRICS = "⟨LIST_METRICS⟩"
    READ_METRIC = "⟨READ_METRIC⟩"
    TRIAGE = "⟨TRIAGE⟩"
    OPEN_REVIEW = "⟨OPEN_REVIEW⟩"
    NEXT_CALL_TO_REVIEW = "⟨NEXT_CALL_TO_REVIEW⟩"
    RECORD_VERDICT = "⟨RECORD_VERDICT⟩"
    VOTE = "⟨VOTE⟩"
    ADD_TO_LAB = "⟨ADD_TO_LAB⟩"
    START_IMPROVEMENT = "⟨START_IMPROVEMENT⟩"
    WAIT_FOR_IMPROVEMENT = "⟨WAIT_FOR_IMPROVEMENT⟩"
    ANSWER_QUESTION = "⟨ANSWER_QUESTION⟩"
    CANCEL_IMPROVEMENT = "⟨CANCEL_IMPROVEMENT⟩"
    APPLY_PROPOSAL = "⟨APPLY_PROPOSAL⟩"
    CHANGE_METRIC = "⟨CHANGE_METRIC⟩"
    ROLL_BACK = "⟨ROLL_BACK⟩"
    RERUN = "⟨RERUN⟩"
    EVALUATE = "⟨EVALUATE⟩"
    REGRESSION_CHECK = "⟨REGRESSION_CHECK⟩"
    JUDGE_CHANGE = "⟨JUDGE_CHANGE⟩"
    ADD_REGRESSIONS = "⟨ADD_REGRESSIONS⟩"
    SPEND_LOG = "⟨SPEND_LOG⟩"
    TEST_CODE = "⟨TEST_CODE⟩"
    DRAFT_CODE = "⟨DRAFT_CODE⟩"


MARK = "⟨"
STEP = re.compile(r"⟨([A-Z_]+)⟩")
