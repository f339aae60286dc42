"""Python (custom_code) metrics: run a metric's code on real calls, locally and isolated, before it costs
anything; and turn a validated LLM-judge prompt into a custom_code draft, tested before it is proposed.

Judge calls made by the code (`evaluate_llm_judge_metric`) are the only spend. A test run whose code
can call the judge is a `SpendPlan` authorized once by the cost guard (calls × judge calls allowed per
call); the runner stops a call that asks more, and the bridge refuses any judge call without that
decision, so a loop cannot spend past what was approved.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import Agent, CallDetail, ExpectedValue, Metric, normalise_eval_type
from cekura_labs_mcp.server.cekura.results import read_result
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.custom_code.checks import Checked, check_outputs, syntax_error
from cekura_labs_mcp.server.custom_code.convert import JUDGE_EVAL_TYPES, Draft, Gate, draft_from_prompt
from cekura_labs_mcp.server.custom_code.inputs import build_inputs
from cekura_labs_mcp.server.custom_code.placeholders import PlaceholderError, render
from cekura_labs_mcp.server.custom_code.runner import (
    UNSANDBOXED_WARNING,
    CodeError,
    CodeRunner,
    JudgeAnswer,
    JudgeRequest,
    JudgeUnavailable,
    RunReport,
)
from cekura_labs_mcp.server.errors import CekuraError, InputError, LabsError, OutcomeUnknownError
from cekura_labs_mcp.server.guard import Approval, CostGuard, GuardDecision, PlannedMetric, SpendPlan
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.presenting import CODE_OUTPUT_NOTE, clip, one_line
from cekura_labs_mcp.server.services.review import reviewed_calls
from cekura_labs_mcp.server.services.spend import SpendEstimate, credits_remaining, estimate_of, metric_credits
from cekura_labs_mcp.server.steps import Step
from cekura_labs_mcp.server.values import display as show
from cekura_labs_mcp.server.values import result_as_expected, same_value
from pydantic import BaseModel, Field

MAX_CALLS = 50
MAX_JUDGE_CALLS_PER_CALL = 10
JUDGE_FUNCTION = "evaluate_llm_judge_metric"


class NoSandboxError(LabsError):
    """No OS sandbox works on this machine and the person has not opted in to running code without one."""

    code = "no_sandbox"


@dataclass(frozen=True)
class JudgeBudget(SpendPlan):
    """The judge calls a test run may make: `per_call` for each of `call_ids`."""

    per_call: int = 1

    def describe(self) -> str:
        return (f"testing custom_code of metric {self.judge_metric_ids[0]} on {self.call_count} call(s), each "
                f"allowed up to {self.per_call} judge call(s) (evaluate_llm_judge_metric): at most "
                f"{self.credits:g} credits")


@dataclass(frozen=True)
class CodeTestPlan:
    metric: Metric
    code: str
    call_ids: tuple[int, ...]
    per_call: int
    budget: JudgeBudget | None = None
    compile_error: CodeError | None = None


@dataclass(frozen=True)
class ConversionPlan:
    test: CodeTestPlan
    draft: Draft
    expected: dict[int, ExpectedValue]


class CallRun(BaseModel):
    call_id: int
    status: str = Field(description="ok, error, timeout, cpu_limit, memory_limit, output_limit, judge_limit, "
                                    "crashed or no_result.")
    result: str = Field(description="`_result` as the metric would show it (TRUE/FALSE/N/A, label, number).")
    explanation: list[str]
    ok: bool = Field(description="Ran, and set `_result`/`_explanation` that fit the metric.")
    errors: list[str] = Field(default_factory=list, description="What to fix, with line numbers.")
    warnings: list[str] = Field(default_factory=list)
    printed: str | None = Field(default=None, description="What the code printed (start of it).")
    duration_ms: float
    judge_calls: int
    current: str | None = Field(default=None, description="The metric's current result on this call on Cekura.")
    matches_current: bool | None = None


class CodeTestReport(BaseModel):
    note: str = CODE_OUTPUT_NOTE
    metric: str
    eval_type: str
    compile_error: str | None = Field(default=None, description="Set when the code does not compile: no call ran.")
    calls: list[CallRun]
    ok: int
    failed: int
    matches_current: int
    judge_calls: int
    credits_estimated: float = Field(description="Judge calls made × credits per LLM-judge evaluation.")
    confirmation: str = Field(description="How the judge budget was allowed: none, elicitation, token, or "
                                          "not_needed (the code never calls the judge).")
    median_ms: float | None = None
    sandbox: str = Field(description="bwrap or seatbelt (an OS sandbox), or unsandboxed (only with "
                                     "CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1: the code could read the server "
                                     "user's files).")
    isolation: list[str]
    inputs_notes: list[str]
    summary: str
    estimate: SpendEstimate | None = Field(default=None, description="With estimate_only: the judge calls the "
                                                                     "run may make, their credits and the balance.")


class ConversionRow(BaseModel):
    call_id: int
    judge: str | None = Field(description="The LLM-judge version's result on this call.")
    draft: str = Field(description="The draft code's result.")
    person: str | None = Field(default=None, description="The person's verdict from the review, if any.")
    same_as_judge: bool
    errors: list[str] = Field(default_factory=list)


class ConversionProposal(BaseModel):
    note: str = CODE_OUTPUT_NOTE
    metric: str
    ready: bool = Field(description="True when the draft ran cleanly on every call: it may be proposed.")
    custom_code: str
    what_it_does: list[str]
    tested_on: int
    matches_judge: int
    matches_person: int
    person_verdicts: int
    rows: list[ConversionRow]
    judge_calls: int
    credits_estimated: float
    confirmation: str
    sandbox: str = Field(description="Where the draft ran: bwrap or seatbelt, or unsandboxed (opt-in only).")
    next_step: str
    estimate: SpendEstimate | None = Field(default=None, description="With estimate_only: what testing the draft "
                                                                     "would cost; nothing was run.")


class _JudgeBridge:
    """Serves the code's judge calls from a worker thread, within the budget the guard allowed. Each call's
    `{{variable}}` placeholders are rendered first (an unknown one is refused before anything is spent)."""

    def __init__(self, client: CekuraClient, metric: Metric, permit: GuardDecision | None) -> None:
        self._client = client
        self._metric = metric
        self._permit = permit
        self._allowed = permit.requests_left if permit is not None else 0
        self._lock = threading.Lock()
        self.made = 0
        self.outcome_unknown = False
        self.missing: list[str] = []

    def for_call(self, agent: dict[str, Any]) -> Callable[[JudgeRequest], JudgeAnswer]:
        return lambda request: self(request, agent)

    def __call__(self, request: JudgeRequest, agent: dict[str, Any]) -> JudgeAnswer:
        metric = self._metric
        try:
            rendered = render(request.description or metric.description, request.data, agent)
        except PlaceholderError as exc:
            raise JudgeUnavailable(f"{exc}; no judge call was made") from None
        with self._lock:
            if self.made >= self._allowed:
                raise JudgeUnavailable(
                    "no judge call is allowed for this run (the code was not expected to call "
                    f"{JUDGE_FUNCTION}, or the approved budget is used up)")
            self.made += 1
            self.missing.extend(m for m in rendered.missing if m not in self.missing)
        try:
            verdict = anyio.from_thread.run(self._ask, request, rendered.text)
        except OutcomeUnknownError as exc:
            self.outcome_unknown = True
            raise JudgeUnavailable(exc.message) from None
        except CekuraError as exc:
            raise JudgeUnavailable(exc.message) from None
        return JudgeAnswer(result=verdict.result, explanation=verdict.explanation)

    async def _ask(self, request: JudgeRequest, description: str) -> Any:
        assert self._permit is not None  # `made` stays 0 without a permit, so no request gets here
        metric = self._metric
        eval_type = request.eval_type or JUDGE_EVAL_TYPES.get(metric.eval_type, metric.eval_type)
        enum_values = request.enum_values if request.enum_values is not None else (
            metric.enum_values if metric.eval_type == "enum" else None)
        # The client starts the evaluation and polls its progress id until the verdict (bounded wait).
        return await self._client.evaluate_llm_judge_metric(
            self._permit, metric.id, data=request.data, description=description, eval_type=eval_type,
            enum_values=enum_values)


def agent_fields(agent: Agent | None) -> dict[str, Any]:
    """What `{{agent.*}}` renders (the variable reference's fields)."""
    if agent is None:
        return {}
    return {"description": agent.description, "name": agent.agent_name, "language": agent.language,
            "inbound": agent.inbound, "contact_number": agent.contact_number}


class PythonMetricsService:
    def __init__(self, client: CekuraClient, guard: CostGuard, ledger: Ledger, settings: Settings,
                 runner: CodeRunner | None = None) -> None:
        self._client = client
        self._guard = guard
        self._ledger = ledger
        self._settings = settings
        self.runner = runner or CodeRunner()
        self._slots = anyio.CapacityLimiter(2)
        self._agents: dict[int, Agent] = {}  # fetched once per agent: custom code's `agent_description`

    # ---- test_custom_code ----------------------------------------------------------------

    async def plan_test(self, *, metric_id: int, call_ids: Sequence[int], code: str | None,
                        judge_calls_per_call: int | None) -> CodeTestPlan:
        ids = tuple(sorted(set(call_ids)))
        if not ids:
            raise InputError("call_ids", "the list is empty.",
                             f"Pass the ids of one or more calls ({Step.LIST_CALLS}).")
        if len(ids) > MAX_CALLS:
            raise InputError("call_ids", f"{len(ids)} calls is more than a local test needs (max {MAX_CALLS}).",
                             "Pick the reviewed calls, or a sample of up to 50.")
        metric = await self._client.get_metric(metric_id)
        source = code if code is not None else (metric.custom_code or "")
        if not source.strip():
            raise InputError("code", f"metric {metric_id} has no custom_code and none was given.",
                             f"Pass the code to test, or draft it with {Step.DRAFT_CODE}.")
        compile_error = syntax_error(source)
        isolation = await anyio.to_thread.run_sync(lambda: self.runner.isolation)  # probed once, may take a second
        if isolation.kind == "refused":
            raise NoSandboxError(isolation.refusal)
        per_call = judge_calls_per_call or min(4, max(1, source.count(JUDGE_FUNCTION + "(")))
        budget = None
        if compile_error is None and JUDGE_FUNCTION in source:
            agent_id = next((a for a in metric.agents if a is not None), None)
            budget = JudgeBudget(
                operation="custom_code_test", agent_id=agent_id,
                project_id=metric.project if agent_id is None else None, call_ids=ids,
                judge_metric_ids=(metric.id,), code_metric_ids=(),
                credits=round(len(ids) * per_call * self._settings.credits_per_judge_evaluation, 4),
                credits_per_call=await self._call_cost(agent_id), per_call=per_call,
                requests=len(ids) * per_call, endpoint="evaluate_llm_judge_metric",
                metrics=(PlannedMetric(metric.id, metric.name,
                                       round(per_call * self._settings.credits_per_judge_evaluation, 4), False),),
                credits_remaining=await credits_remaining(self._client))
        return CodeTestPlan(metric=metric, code=source, call_ids=ids, per_call=per_call, budget=budget,
                            compile_error=compile_error)

    async def _call_cost(self, agent_id: int | None) -> float:
        """What one call of the agent costs with all its metrics: the guard asks above 100 of these, so a
        judge loop is weighed against what the agent's ordinary evaluations cost."""
        if agent_id is None:
            return 0.0
        fallback = self._settings.credits_per_judge_evaluation
        return sum(metric_credits(m, fallback)[0] for m in await self._client.list_metrics(agent_id=agent_id))

    async def run_test(self, plan: CodeTestPlan, *, token: str | None, approval: Approval) -> CodeTestReport:
        metric = plan.metric
        if plan.compile_error is not None:
            return self._report(plan, [], {}, [], 0, "not_needed", [])
        calls = await self._fetch_calls(plan.call_ids)
        metrics = await self._agent_metrics(calls)
        agents = await self._agents_of(calls)
        decision: GuardDecision | None = None
        if plan.budget is not None:
            decision = await self._guard.authorize(plan.budget, token=token, approval=approval)
        bridge = _JudgeBridge(self._client, metric, decision)
        limits = dataclasses.replace(self.runner.limits, max_judge_calls=plan.per_call)
        runs: dict[int, tuple[RunReport, Checked]] = {}
        notes: list[str] = []

        async def one(call: CallDetail) -> None:
            agent = agents.get(call.agent) if call.agent is not None else None
            inputs = build_inputs(call, metric_id=metric.id, metrics=metrics.get(call.agent, []),
                                  agent_description=agent.description if agent is not None else None)
            notes.extend(n for n in inputs.notes if n not in notes)
            report = await anyio.to_thread.run_sync(
                self.runner.run, plan.code, inputs.data, bridge.for_call(agent_fields(agent)), limits,
                limiter=self._slots)
            runs[call.id] = (report, check_outputs(report, metric.eval_type, metric.enum_values))

        outcome = "unknown"
        try:
            async with anyio.create_task_group() as group:
                for call in calls:
                    group.start_soon(one, call)
            outcome = "unknown" if bridge.outcome_unknown else "succeeded"
        finally:
            # A run that broke off may still have made judge calls: its outcome stays "unknown".
            if decision is not None:
                self._guard.finish(decision, outcome, f"{bridge.made} judge call(s) made by custom_code")
        rows = [self._row(metric, call, *runs[call.id]) for call in calls]
        reports = [runs[call.id][0] for call in calls]
        # The placeholder's text comes from the code's own judge description: quoted, and short.
        notes.extend(f"the judge description's placeholder {one_line('{{' + m + '}}', 80)!r} has no value on some "
                     "call(s); it was rendered empty (Cekura's material does not say what it renders there)"
                     for m in bridge.missing[:5])
        confirmation = decision.confirmation if decision else "not_needed"
        return self._report(plan, rows, runs, reports, bridge.made, confirmation, notes)

    def _report(self, plan: CodeTestPlan, rows: list[CallRun], runs: dict[int, tuple[RunReport, Checked]],
                reports: list[RunReport], judge_calls: int, confirmation: str, notes: list[str]) -> CodeTestReport:
        metric = plan.metric
        durations = sorted(r.duration_ms - r.judge_ms for r in reports)
        median = durations[len(durations) // 2] if durations else None
        credits = round(judge_calls * self._settings.credits_per_judge_evaluation, 4)
        ok = sum(1 for r in rows if r.ok)
        matching = sum(1 for r in rows if r.matches_current)
        if plan.compile_error is not None:
            # The error quotes the code's own line: it stays in compile_error, under the note, not in the summary.
            summary = "The code does not compile (see compile_error). No call was run."
        else:
            summary = (f"{ok}/{len(rows)} call(s) ran cleanly; {matching} match the metric's current result on "
                       f"Cekura; {judge_calls} judge call(s), about {credits:g} credits.")
        isolation = self.runner.isolation
        if isolation.kind == "unsandboxed":
            summary = f"The code {UNSANDBOXED_WARNING}. {summary}"
        return CodeTestReport(
            metric=f"{metric.id}: {metric.name}", eval_type=metric.eval_type,
            compile_error=clip(plan.compile_error.describe()) if plan.compile_error else None, calls=rows, ok=ok,
            failed=len(rows) - ok, matches_current=matching, judge_calls=judge_calls, credits_estimated=credits,
            confirmation=confirmation, median_ms=median, sandbox=isolation.kind, isolation=isolation.summary(),
            inputs_notes=notes, summary=summary)

    def _row(self, metric: Metric, call: CallDetail, report: RunReport, checked: Checked) -> CallRun:
        stored = call.metric(metric.id)
        reading = read_result(stored, metric) if stored is not None else None
        current = reading.text if reading is not None else None
        matches = None
        if reading is not None and reading.readable and checked.ok:
            matches = same_value(metric, reading.expected, checked.value)
        # A failed judge call reaches the code as Cekura documents it (result None, the error as explanation);
        # the run then proves nothing about the judge's verdict, so the call is not counted as clean.
        errors = checked.problems + [
            f"JudgeCallFailed: {error} (the code got result None and the error as the explanation, as on Cekura)"
            for error in report.judge_errors]
        # Everything but status, result (one of the metric's own values) and the counts is text the code
        # controls: each string is clipped, and the report's note says it is data.
        return CallRun(
            call_id=call.id, status=report.status, result=checked.display, explanation=_explanation(report),
            ok=not errors and report.status == "ok", errors=[clip(e) for e in errors],
            warnings=[clip(w) for w in checked.warnings], printed=clip(report.output) or None,
            duration_ms=report.duration_ms, judge_calls=report.judge_calls,
            current=current, matches_current=matches)

    async def _fetch_calls(self, ids: Sequence[int]) -> list[CallDetail]:
        found: dict[int, CallDetail] = {}

        async def fetch(call_id: int) -> None:
            found[call_id] = await self._client.get_call(call_id)

        async with anyio.create_task_group() as group:
            for call_id in ids:
                group.start_soon(fetch, call_id)
        return [found[i] for i in ids]

    async def _agents_of(self, calls: Sequence[CallDetail]) -> dict[int, Agent]:
        """Each call's agent, read once per agent and kept (its description is `agent_description`). An agent
        that cannot be read leaves `agent_description` empty, and the report says so."""
        for agent_id in sorted({call.agent for call in calls if call.agent is not None} - set(self._agents)):
            try:
                self._agents[agent_id] = await self._client.get_agent(agent_id)
            except CekuraError:
                continue
        return self._agents

    async def _agent_metrics(self, calls: Sequence[CallDetail]) -> dict[int | None, list[Metric]]:
        agents = {call.agent for call in calls if call.agent is not None}
        return {agent: await self._client.list_metrics(agent_id=agent) for agent in sorted(agents)}

    # ---- convert_to_custom_code ----------------------------------------------------------

    async def plan_conversion(self, *, metric_id: int, agent_id: int | None, call_ids: Sequence[int] | None,
                              gate_metric: str | None = None, gate_values: Sequence[str] | None = None,
                              sections: Sequence[str] | None = None) -> ConversionPlan:
        metric = await self._client.get_metric(metric_id)
        if metric.type == "custom_code":
            raise InputError("metric_id", f"metric {metric_id} is already custom_code.",
                             f"Use {Step.TEST_CODE} to check its code on calls.")
        if not metric.description.strip():
            raise InputError("metric_id", f"metric {metric_id} has no judge prompt to convert.",
                             f"Write and validate the prompt first ({Step.CHANGE_METRIC}, {Step.REGRESSION_CHECK}).")
        gate = await self._gate(metric, agent_id, gate_metric, gate_values) if gate_metric else None
        heads = tuple(h if h.lstrip().startswith("#") else f"## {h.strip()}" for h in sections or () if h.strip())
        expected = self._reviewed(metric_id, agent_id) if agent_id is not None else {}
        ids = sorted(set(call_ids or expected))
        if not ids:
            raise InputError("call_ids", "there are no reviewed calls of this metric to test the draft on.",
                             "Pass call_ids, or review calls first "
                             f"({Step.NEXT_CALL_TO_REVIEW} / {Step.RECORD_VERDICT}) and pass agent_id.")
        draft = draft_from_prompt(metric, gate=gate, sections=heads)
        test = await self.plan_test(metric_id=metric_id, call_ids=ids, code=draft.code, judge_calls_per_call=1)
        return ConversionPlan(test=test, draft=draft, expected={i: expected[i] for i in ids if i in expected})

    async def _gate(self, metric: Metric, agent_id: int | None, name: str, values: Sequence[str] | None) -> Gate:
        """The gate in the form code sees the other metric's result: binary 5/0, enum the label, numbers."""
        agent = agent_id if agent_id is not None else next((a for a in metric.agents if a is not None), None)
        others = await self._client.list_metrics(agent_id=agent) if agent is not None else []
        upstream = next((m for m in others if m.name == name and m.id != metric.id), None)
        if upstream is None or upstream.type == "custom_code":
            names = sorted(m.name for m in others if m.id != metric.id and m.type != "custom_code")
            raise InputError("gate_metric", f"{name!r} is not another (non-custom_code) metric of the agent.",
                             f"Use one of: {', '.join(names) or 'none found'}.")
        wanted = list(values or (["TRUE"] if normalise_eval_type(upstream.eval_type) == "binary" else []))
        if not wanted:
            raise InputError("gate_values", f"say which results of {name!r} let this metric run.",
                             f"Pass gate_values, e.g. {list(upstream.enum_values or [])[:2] or ['3']}.")
        return Gate(name, tuple(_gate_value(upstream, v) for v in wanted))

    def _reviewed(self, metric_id: int, agent_id: int) -> dict[int, ExpectedValue]:
        session = self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)
        return {r.call_id: r.expected for r in reviewed_calls(self._ledger.reviews(session.id))}

    def estimate_test(self, plan: CodeTestPlan) -> CodeTestReport:
        """estimate_only: nothing runs; the judge calls the code may make, what they cost, and the balance."""
        report = self._report(plan, [], {}, [], 0, "not_sent", [])
        budget = plan.budget
        report.estimate = estimate_of(self._guard, budget) if budget is not None else None
        report.summary = (f"Estimate only, nothing was run or spent: up to {budget.requests} judge call(s), at most "
                          f"{budget.credits:g} credits." if budget is not None else
                          "Estimate only: the code never calls the judge, so running it costs nothing.")
        return report

    def estimate_conversion(self, plan: ConversionPlan) -> ConversionProposal:
        report = self.estimate_test(plan.test)
        return ConversionProposal(
            metric=report.metric, ready=False, custom_code=plan.draft.code, what_it_does=plan.draft.steps,
            tested_on=0, matches_judge=0, matches_person=0, person_verdicts=len(plan.expected), rows=[],
            judge_calls=0, credits_estimated=0.0, confirmation="not_sent", sandbox=report.sandbox,
            next_step=f"{report.summary} Call again without estimate_only to test the draft.",
            estimate=report.estimate)

    async def run_conversion(self, plan: ConversionPlan, *, token: str | None, approval: Approval
                             ) -> ConversionProposal:
        metric = plan.test.metric
        report = await self.run_test(plan.test, token=token, approval=approval)
        rows = [ConversionRow(
            call_id=run.call_id, judge=run.current, draft=run.result,
            person=show(plan.expected[run.call_id]) if run.call_id in plan.expected else None,
            same_as_judge=bool(run.matches_current), errors=run.errors) for run in report.calls]
        person_total = sum(1 for r in rows if r.person is not None)
        person_matches = sum(
            1 for run in report.calls if run.call_id in plan.expected and run.ok
            and same_value(metric, plan.expected[run.call_id], result_as_expected(metric, run.result)))
        ready = report.compile_error is None and report.failed == 0 and bool(report.calls)
        return ConversionProposal(
            metric=report.metric, ready=ready, custom_code=plan.draft.code, what_it_does=plan.draft.steps,
            tested_on=len(report.calls), matches_judge=report.matches_current, matches_person=person_matches,
            person_verdicts=person_total, rows=rows, judge_calls=report.judge_calls,
            credits_estimated=report.credits_estimated, confirmation=report.confirmation, sandbox=report.sandbox,
            next_step=_next_step(metric, ready, report))


def _gate_value(upstream: Metric, raw: str) -> object:
    kind = normalise_eval_type(upstream.eval_type)
    text = str(raw).strip()
    if kind == "binary":
        if text.upper() not in ("TRUE", "FALSE", "5", "0"):
            raise InputError("gate_values", f"{raw!r} is not a result of the binary metric {upstream.name!r}.",
                             "Use TRUE or FALSE.")
        return 5 if text.upper() in ("TRUE", "5") else 0  # binary results reach custom code as 5/0
    if kind == "enum":
        if text not in (upstream.enum_values or []):
            raise InputError("gate_values", f"{raw!r} is not one of {upstream.name!r}'s values.",
                             f"Use one of {list(upstream.enum_values or [])}.")
        return text
    try:
        return float(text)
    except ValueError:
        raise InputError("gate_values", f"{raw!r} is not a number ({upstream.name!r} is {kind}).",
                         "Pass the number the gate lets through.") from None


def _next_step(metric: Metric, ready: bool, report: CodeTestReport) -> str:
    if not ready:
        return ("Not proposed: the draft did not run cleanly on every call (see rows[].errors). Fix the prompt or "
                f"edit the draft and check it with {Step.TEST_CODE}.")
    return (f"Show the person the draft and how its results compare ({report.matches_current}/{len(report.calls)} "
            f"match the judge). Only if they approve: call {Step.CHANGE_METRIC} with metric_id={metric.id}, "
            "custom_code=<custom_code above> and type=\"custom_code\" (first without confirm, to show the diff; then "
            f"confirm=true), and validate it with {Step.REGRESSION_CHECK}.")


def _explanation(report: RunReport) -> list[str]:
    """The explanation as one text (a list is joined, as the checks warn), in the API's list form."""
    raw = report.explanation.value if report.explanation is not None else None
    if raw is None:
        return []
    if isinstance(raw, list):
        return [clip(" ".join(str(item) for item in raw))]
    return [clip(str(raw))]
