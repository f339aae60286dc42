"""Validate a changed metric on the calls the person reviewed: re-run them (through the cost guard) and
compare every new result with the person's expected value, before and after."""

from __future__ import annotations

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import Metric
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.guard import Approval, SpendPlan
from cekura_labs_mcp.server.services.analysis import agreement, confusion
from cekura_labs_mcp.server.services.review import reviewed_calls
from cekura_labs_mcp.server.services.spend import CallSelection, SpendService
from cekura_labs_mcp.server.state import Ledger
from cekura_labs_mcp.server.values import display, expected_from_input
from pydantic import BaseModel, Field


class Scores(BaseModel):
    agreement: float = Field(description="Share of reviewed calls where the metric matches the person.")
    kappa: float = Field(description="Cohen's kappa between the metric and the person.")
    matrix: dict[str, dict[str, int]] = Field(description="Rows: the person's value; columns: the metric's.")


class Change(BaseModel):
    call_id: int
    expected: str
    before: str
    after: str


class ValidationReport(BaseModel):
    metric: str
    calls: int
    before: Scores
    after: Scores
    fixed: list[Change] = Field(description="Was wrong, now right.")
    regressed: list[Change] = Field(description="Was right, now wrong: look at each before keeping the change.")
    still_wrong: list[Change]
    unchanged_right: int
    credits_estimated: float
    confirmation: str
    verdict: str


class ValidationService:
    def __init__(self, client: CekuraClient, ledger: Ledger, spend: SpendService, settings: Settings) -> None:
        self._client = client
        self._ledger = ledger
        self._spend = spend
        self._settings = settings

    async def plan(self, *, agent_id: int, metric_id: int) -> SpendPlan:
        session = self._ledger.open_session(metric_id, agent_id, self._settings.feedback_threshold)
        reviews = reviewed_calls(self._ledger.reviews(session.id))
        if not reviews:
            raise InputError("metric_id", "no call of this metric has been reviewed in the session yet.",
                             "Review calls first (next_review / record_review); validation re-runs those.")
        chosen = CallSelection(call_ids=sorted({r.call_id for r in reviews}))
        return await self._spend.plan("rerun_evaluation", agent_id=agent_id, project_id=None, chosen=chosen)

    async def run(self, plan: SpendPlan, *, metric_id: int, token: str | None, approval: Approval) -> ValidationReport:
        assert plan.agent_id is not None
        metric = await self._client.get_metric(metric_id)
        session = self._ledger.open_session(metric_id, plan.agent_id, self._settings.feedback_threshold)
        reviews = {r.call_id: r for r in reviewed_calls(self._ledger.reviews(session.id))}
        spent = await self._spend.execute(plan, token=token, approval=approval, requested_metrics=(metric_id,))
        new_values = {int(row["call"] or 0): str(row["value"]) for row in spent.results if row["metric"] == metric_id}
        expected, before, after, changes = [], [], [], []
        for call_id, review in sorted(reviews.items()):
            want = _label(metric, review.expected)
            was = _label(metric, review.result_was)
            now = _label(metric, new_values.get(call_id, review.result_was))
            expected.append(want.upper())
            before.append(was.upper())
            after.append(now.upper())
            changes.append(Change(call_id=call_id, expected=want, before=was, after=now))
        report = _report(metric.name, metric_id, changes, expected, before, after, spent.credits_estimated,
                         spent.confirmation)
        self._ledger.add_validation(session.id, report.model_dump())
        return report


def _label(metric: Metric, value: object) -> str:
    """One spelling per value, so "3", "3.0" and 3 compare equal, and so do "true" and "TRUE"."""
    try:
        return display(expected_from_input(metric, value))
    except InputError:
        return str(value)


def _report(name: str, metric_id: int, changes: list[Change], expected: list[str], before: list[str],
            after: list[str], credits: float, confirmation: str) -> ValidationReport:
    right_before = [b == e for b, e in zip(before, expected, strict=True)]
    right_after = [a == e for a, e in zip(after, expected, strict=True)]
    fixed = [c for c, rb, ra in zip(changes, right_before, right_after, strict=True) if not rb and ra]
    regressed = [c for c, rb, ra in zip(changes, right_before, right_after, strict=True) if rb and not ra]
    still = [c for c, rb, ra in zip(changes, right_before, right_after, strict=True) if not rb and not ra]
    a_before, a_after = agreement(before, expected), agreement(after, expected)
    verdict = (f"Agreement {a_before.rate:.0%} → {a_after.rate:.0%} (kappa {a_before.kappa:+.2f} → "
               f"{a_after.kappa:+.2f}); {len(fixed)} fixed, {len(regressed)} regressed, {len(still)} still wrong.")
    return ValidationReport(
        metric=f"{metric_id}: {name}", calls=len(changes),
        before=Scores(agreement=a_before.rate, kappa=a_before.kappa, matrix=confusion(before, expected)),
        after=Scores(agreement=a_after.rate, kappa=a_after.kappa, matrix=confusion(after, expected)),
        fixed=fixed, regressed=regressed, still_wrong=still,
        unchanged_right=sum(1 for rb, ra in zip(right_before, right_after, strict=True) if rb and ra),
        credits_estimated=credits, confirmation=confirmation, verdict=verdict,
    )
