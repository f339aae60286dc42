"""Manual fix first: count a metric's failing results, read a bounded sample of their explanations and group
them into recurring causes. A dominant cause the judge gets wrong is cheaper to fix by hand than in the Lab."""

from __future__ import annotations

from collections.abc import Sequence

from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.cekura.results import shown
from cekura_labs_mcp.server.errors import InputError
from cekura_labs_mcp.server.presenting import explanation_text, one_line
from cekura_labs_mcp.server.services.analysis import cluster_explanations
from cekura_labs_mcp.server.services.calls import CallFilter, find_calls
from cekura_labs_mcp.server.services.ranking import NUMERIC, numeric, pass_mark
from cekura_labs_mcp.server.steps import Step
from pydantic import BaseModel, Field

SAMPLE = 200


class Cause(BaseModel):
    cause: str = Field(description="The recurring reason, in the judge's own words (a representative line).")
    key_terms: list[str]
    count: int
    share: float
    example_call_ids: list[int]


class Triage(BaseModel):
    metric: str
    failing_value: str = Field(description='What counted as failing: a value, or for scores e.g. "below 3".')
    failing_total: int = Field(description="Failing results found (see `counted`).")
    counted: str = Field(description="Where failing_total comes from: Cekura's count, or a sample read.")
    read: int = Field(description="Explanations actually read (bounded sample).")
    causes: list[Cause]
    advice: str


class TriageService:
    def __init__(self, client: CekuraClient) -> None:
        self._client = client

    async def triage(self, *, agent_id: int, metric_id: int, failing_value: str | None, sample: int,
                     timestamp_from: str | None, timestamp_to: str | None) -> Triage:
        metric = await self._client.get_metric(metric_id)
        if metric.eval_type in NUMERIC:
            value, total, rows, counted = await self._numeric_failures(agent_id, metric, failing_value, sample,
                                                                       timestamp_from, timestamp_to)
        else:
            value = failing_value or _default_failing(metric)
            total, rows = await self._failures(agent_id, metric, value, sample, timestamp_from, timestamp_to)
            counted = "counted by Cekura before reading"
        # List rows may carry a result without its explanation: read those calls, concurrently (bounded).
        bare = [row.id for row in rows if (r := row.metric(metric_id)) is not None and not r.explanation]
        details = await self._client.get_calls(bare) if bare else {}
        items = [(row.id, explanation_text(r)) for row in rows
                 if (r := (details.get(row.id) or row).metric(metric_id)) is not None]
        clusters = cluster_explanations(items)
        read = len(items)
        causes = [Cause(cause=one_line(c.representative(), 200), key_terms=c.signature(5), count=len(c.members),
                        share=round(len(c.members) / read, 2), example_call_ids=c.members[:5])
                  for c in clusters if len(c.members) >= 2 or read < 10][:8]
        return Triage(metric=f"{metric.id}: {metric.name}", failing_value=value, failing_total=total,
                      counted=counted, read=read, causes=causes, advice=_triage_advice(causes, read))

    async def _failures(self, agent_id: int, metric: Metric, value: str, sample: int, timestamp_from: str | None,
                        timestamp_to: str | None) -> tuple[int, list[CallRow]]:
        selection = CallFilter(metric_id=metric.id, metric_value=value, timestamp_from=timestamp_from,
                               timestamp_to=timestamp_to)
        found = await find_calls(self._client, agent_id=agent_id, project_id=None, selection=selection,
                                 metric=metric, page_size=min(sample, SAMPLE))
        return found.count, found.rows[:sample]

    async def _numeric_failures(
        self, agent_id: int, metric: Metric, failing_value: str | None, sample: int, timestamp_from: str | None,
        timestamp_to: str | None,
    ) -> tuple[str, int, list[CallRow], str]:
        """Scores fail below a pass mark, half points included (2.5 fails a pass mark of 3). The API filters
        values by equality only, so one page of recent calls is read and the low scores kept."""
        highest = _highest_failing(failing_value) if failing_value is not None else None
        mark = pass_mark(metric)

        def fails(value: str | None) -> bool:
            score = numeric(value or "")
            if score is None:
                return False
            return score <= highest if highest is not None else score < mark

        page = await self._client.list_calls(agent_id=agent_id, page_size=SAMPLE, timestamp_from=timestamp_from,
                                             timestamp_to=timestamp_to)
        rows = [row for row in page.results if (r := row.metric(metric.id)) is not None and fails(shown(r, metric))]
        label = f"{highest:g} or lower" if highest is not None else f"below {mark:g}"
        return label, len(rows), rows[:sample], f"counted in the {len(page.results)} most recent calls"


def _default_failing(metric: Metric) -> str:
    if metric.eval_type == "binary":
        return "FALSE"
    if metric.eval_type == "enum" and metric.enum_values:
        return metric.enum_values[-1]
    raise InputError("failing_value", f"{metric.name} is {metric.eval_type}: which value counts as failing?",
                     "Pass failing_value (the label of a failing result).")


def _highest_failing(raw: str) -> float:
    score = numeric(raw.strip().lstrip("<=≤ "))
    if score is None:
        raise InputError("failing_value", f"{raw!r} is not a score.",
                         "For a numeric metric pass the highest failing score, e.g. 2.5 (2.5 and below fail).")
    return score


def _triage_advice(causes: Sequence[Cause], read: int) -> str:
    if not causes:
        return "No failing results in the window: nothing systemic to fix by hand."
    top = causes[0]
    if top.share >= 0.25 and top.count >= 3:
        return (f"{top.count} of {read} failures share one cause. Read two of the example calls; if the judge is "
                "wrong there, fix the prompt by hand first (SCOPE & FOCUS, a DO NOT FLAG clause, narrower "
                "FAILURE CONDITIONS), patch, and re-run a 20–30 call sample before spending Lab iterations.")
    return (f"Failures are spread over many causes: review calls one at a time ({Step.NEXT_CALL_TO_REVIEW}) and "
            "use the Lab.")
