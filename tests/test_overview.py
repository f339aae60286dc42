"""The metric overview: it ranks the metrics whose judge is wrong above the ones whose judge is right,
from the results alone (never the sandbox's hidden truth), counts the person's disagreements, reads
within its bounds and says when it sampled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.ledger import Ledger
from cekura_labs_mcp.server.sandbox import SandboxServer
from cekura_labs_mcp.server.sandbox.dialect import DOCUMENTED, SPEC, Dialect
from cekura_labs_mcp.server.services.overview import (
    Observation,
    Overview,
    OverviewService,
    rank_metrics,
    shift,
    topic_outlier,
)
from pydantic import SecretStr
from support import HTTP, SANDBOX_KEY, SandboxAdmin, ToolFailed, call, connect

pytestmark = pytest.mark.anyio

MAIN_AGENT, PHARMACY_AGENT, PROJECT = 2210, 2231, 812
# (scope, window in days): the pharmacy line takes ~40 calls a month, so it is judged over the whole month.
SCOPES: tuple[tuple[dict[str, int], int], ...] = (
    ({"agent_id": MAIN_AGENT}, 14), ({"project_id": PROJECT}, 14), ({"agent_id": PHARMACY_AGENT}, 29))


@pytest.fixture
async def overview_of(tmp_path: Path) -> AsyncIterator[Any]:
    clients: list[CekuraClient] = []
    ledger = Ledger(tmp_path / "ledger.db")

    def make(url: str) -> OverviewService:
        client = CekuraClient(url, SecretStr(SANDBOX_KEY))
        clients.append(client)
        return OverviewService(client, ledger)

    yield make
    for client in clients:
        await client.aclose()
    ledger.close()


def _ranks(overview: Overview) -> dict[int, int]:
    return {int(m.metric.split(":")[0]): m.rank for m in overview.metrics}


def _misjudged(admin: SandboxAdmin, metric_ids: list[int]) -> tuple[set[int], set[int]]:
    """From the hidden truth (read by the test only, after the overview): metrics with a recurring judging
    mistake, and metrics with none. A platform metric the sandbox keeps no truth for is in neither."""
    wrong, right = set(), set()
    for metric_id in metric_ids:
        answer = HTTP.get(f"{admin.url}/_sandbox/truth", params={"metric_id": metric_id})
        if answer.status_code == 404:
            continue
        patterns = {entry["pattern"] for entry in answer.json()["calls"].values()}
        (wrong if patterns - {None} else right).add(metric_id)
    return wrong, right


# Every seed on the default (documented) dialect, whose pharmacy agent also has a platform metric that passes
# every call for one stated reason; two on the spec dialect.
@pytest.mark.parametrize(("seed", "dialect"), [(1, DOCUMENTED), (2, DOCUMENTED), (3, DOCUMENTED), (5, DOCUMENTED),
                                               (7, DOCUMENTED), (2, SPEC), (5, SPEC)])
async def test_misjudged_metrics_rank_above_well_judged_ones(seed: int, dialect: Dialect, overview_of: Any) -> None:
    with SandboxServer(seed=seed, api_key=SANDBOX_KEY, dialect=dialect) as server:
        admin = SandboxAdmin(server.url)
        service: OverviewService = overview_of(server.url)
        # The sandbox's calls end at its anchor (midnight): windows end there too, so they hold the same calls
        # at any hour of the day.
        until = admin.info()["now"]
        results = []
        for scope, days in SCOPES:
            results.append((scope, await service.overview(**{"agent_id": None, "project_id": None, **scope},
                                                          days=days, until=until, metric_ids=None, max_calls=200)))
        # The overview read only what Cekura serves: not one request reached the sandbox's admin routes.
        assert not [r for r in admin.stats()["requests"] if r["path"].startswith("/_sandbox")]
        for scope, overview in results:
            ranks = _ranks(overview)
            wrong, right = _misjudged(admin, list(ranks))
            assert wrong and right, (scope, ranks)
            scores = {m.metric: m.score for m in overview.metrics}
            assert max(ranks[m] for m in wrong) < min(ranks[m] for m in right), (seed, scope, scores)
            top = overview.metrics[0]
            assert top.score > 0 and top.why and top.why[0] != "no warning sign"


async def test_disagreements_in_the_ledger_raise_a_metric(sandbox: SandboxAdmin, overview_of: Any,
                                                          tmp_path: Path) -> None:
    service: OverviewService = overview_of(sandbox.url)
    until = sandbox.info()["now"]
    before = await service.overview(agent_id=MAIN_AGENT, project_id=None, days=14, until=until, metric_ids=None,
                                    max_calls=200)
    quiet = next(m for m in before.metrics if m.metric.startswith("9105:"))
    assert quiet.reviews is None and quiet.rank > 1
    ledger = service._ledger
    session = ledger.open_session(9105, MAIN_AGENT, 6)
    for i, (result, agreed) in enumerate([("TRUE", False), ("TRUE", False), ("TRUE", False), ("FALSE", True)]):
        review = ledger.begin_review(session.id, call_id=1000 + i, metric_id=9105, agreed=agreed, result_was=result,
                                     expected=not agreed, feedback="At 04:59 the call was still under five minutes.")
        ledger.mark_vote(review, "sent")
    unsent = ledger.begin_review(session.id, call_id=2000, metric_id=9105, agreed=False, result_was="TRUE",
                                 expected=False, feedback="not sent yet")
    assert unsent
    after = await service.overview(agent_id=MAIN_AGENT, project_id=None, days=14, until=until, metric_ids=None,
                                   max_calls=200)
    flagged = after.metrics[0]
    assert flagged.metric.startswith("9105:")
    assert flagged.reviews is not None
    assert (flagged.reviews.reviewed, flagged.reviews.disagreed) == (4, 3)  # the unsent vote does not count
    assert flagged.reviews.by_verdict == {"FALSE": "0/1", "TRUE": "3/3"}
    assert flagged.why[0] == "the person disagreed with 3 of 4 reviewed results"
    # A prompt change this server applied afterwards makes those reviews history.
    ledger.record_metric_version(9105, "test", {"description": "old"}, {"description": "new"})
    later = await service.overview(agent_id=MAIN_AGENT, project_id=None, days=14, until=until, metric_ids=[9105],
                                   max_calls=200)
    assert [m.reviews for m in later.metrics] == [None]


async def test_reads_are_bounded_and_sampling_is_said(sandbox: SandboxAdmin, overview_of: Any) -> None:
    service: OverviewService = overview_of(sandbox.url)
    total = sum(agent["call_count"] for agent in sandbox.info()["agents"])
    assert total > 200
    until = sandbox.info()["now"]
    sampled = await service.overview(agent_id=None, project_id=PROJECT, days=30, until=until, metric_ids=None,
                                     max_calls=200)
    assert (sampled.window.calls, sampled.window.read) == (total, 200)
    assert sampled.sampled is not None and f"the newest 200 of {total} calls" in sampled.sampled
    lists = sandbox.requests("GET", "call-logs")
    assert len(lists) == 2 and all(int(r["query"]["page_size"]) <= 200 for r in lists)  # one page per window

    sandbox.reset()
    whole = await service.overview(agent_id=None, project_id=PROJECT, days=30, until=until, metric_ids=None,
                                   max_calls=400)
    assert (whole.window.read, whole.sampled) == (total, None)
    pages = sorted(int(r["query"]["page"]) for r in sandbox.requests("GET", "call-logs"))
    assert pages == [1, 1, 2]  # the previous window (empty) took one page, this one two
    assert sum(m.results for m in whole.metrics if m.metric.startswith("9105:")) == sum(
        a["call_count"] for a in sandbox.info()["agents"] if a["id"] == MAIN_AGENT)


async def test_metric_overview_tool_is_lean_and_read_only(settings: Settings, sandbox: SandboxAdmin) -> None:
    async with connect(settings) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["metric_overview"].annotations is not None
        assert tools["metric_overview"].annotations.read_only_hint is True
        result = await client.call_tool("metric_overview", {"agent_id": MAIN_AGENT})
        assert not result.is_error
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert len(text) < 6000, len(text)  # five metrics, with reasons: well under 2,000 tokens
        top = result.structured_content["metrics"][0]
        assert result.structured_content["next_step"].startswith(f"Start with {top['metric']}")
        assert f"triage_failures(agent_id={MAIN_AGENT}, metric_id={top['metric'].split(':')[0]})" in \
            result.structured_content["next_step"]
        project = await call(client, "metric_overview", {"project_id": PROJECT})
        assert all(m["agents"] for m in project["metrics"]) and "triage_failures(agent_id=" in project["next_step"]
        data = await call(client, "metric_overview", {"agent_id": MAIN_AGENT, "metric_ids": [9101, 9105]})
        assert sorted(m["metric"].split(":")[0] for m in data["metrics"]) == ["9101", "9105"]
        with pytest.raises(ToolFailed, match=r"\[invalid_input\].*agent_id"):
            await call(client, "metric_overview", {})
        with pytest.raises(ToolFailed, match=r"\[invalid_input\].*until"):
            await call(client, "metric_overview", {"agent_id": MAIN_AGENT, "until": "last tuesday"})
        with pytest.raises(ToolFailed, match=r"\[invalid_input\].*metric_ids"):
            await call(client, "metric_overview", {"agent_id": MAIN_AGENT, "metric_ids": [424242]})
    assert not sandbox.requests("POST") and not sandbox.requests("PATCH")


# ---- the signals on hand-made results --------------------------------------------------------

BINARY = Metric(id=1, name="m", eval_type="binary")


def _results(spec: dict[str, int], topic: str | None = None, start: int = 0) -> list[Observation]:
    rows: list[Observation] = []
    for value, count in spec.items():
        rows += [Observation(start + len(rows) + i, topic, value, "") for i in range(count)]
    return rows


def test_a_shift_counts_only_beyond_noise() -> None:
    steady = shift(BINARY, _results({"TRUE": 85, "FALSE": 15}), _results({"TRUE": 90, "FALSE": 10}))
    assert steady is None
    moved = shift(BINARY, _results({"TRUE": 50, "FALSE": 50}), _results({"TRUE": 90, "FALSE": 10}))
    assert moved is not None and moved.strength == 1.0
    assert "FALSE 10% → 50%" in moved.reason


def test_a_topic_failing_far_more_than_the_rest_is_named() -> None:
    now = _results({"FALSE": 8}, "Billing") + _results({"TRUE": 40, "FALSE": 4}, "Booking", start=100)
    signal = topic_outlier(BINARY, now)
    assert signal is not None and "8 of 8 'Billing' calls" in signal.reason
    assert topic_outlier(BINARY, _results({"TRUE": 7, "FALSE": 1}, "Billing")
                         + _results({"TRUE": 40, "FALSE": 4}, "Booking", start=100)) is None


def _calls(count: int, verdicts: dict[int, Any]) -> list[CallRow]:
    """`count` calls on four topics; `verdicts[metric_id](i)` gives call i's (score, explanation)."""
    topics = ("Refill", "Billing", "Booking", "Cancel")
    return [CallRow.model_validate({
        "id": 100 + i, "topic": topics[i % 4],
        "metrics": [{"id": mid, "score": verdict(i)[0], "explanation": [verdict(i)[1]]}
                    for mid, verdict in verdicts.items()],
    }) for i in range(count)]


def _fails_every(n: int) -> Any:
    return lambda i: (0, f"At 00:{10 + i % 40:02d} the agent asked two questions at once.") if i % n == 0 else \
        (5, f"At 00:{10 + i % 40:02d} the agent asked one thing at a time.")


FAILING = [Metric(id=11, name="a", eval_type="binary"), Metric(id=12, name="b", eval_type="binary"),
           Metric(id=13, name="c", eval_type="binary")]


def test_a_metric_passing_every_call_for_one_reason_is_a_note_not_a_lenient_judge() -> None:
    uniform = Metric(id=20, name="kb check", eval_type="binary", metric_cost=0.6)
    verdicts = {11: _fails_every(3), 12: _fails_every(3), 13: _fails_every(4),
                20: lambda i: (5, "No statement contradicts the Knowledge Base: no files are uploaded, so there is "
                                  "nothing to check the answers against.")}
    ranked = {h.metric.split(":")[0]: h for h in rank_metrics([*FAILING, uniform], _calls(40, verdicts), [], {})}
    flagged = ranked["20"]
    assert (flagged.fail_rate, flagged.score, flagged.why) == (0.0, 0.0, ["no warning sign"])
    assert flagged.note is not None and flagged.note.startswith("passes all 40 scored calls, all for one reason: ")
    assert "nothing to check the answers against" in flagged.note and "0.6 credits a call" in flagged.note
    assert flagged.rank == 4 and all(ranked[m].note is None for m in ("11", "12", "13"))


def test_a_metric_passing_every_call_for_its_own_reasons_is_still_weighed_against_its_peers() -> None:
    judging = Metric(id=20, name="lenient", eval_type="binary")
    verdicts = {11: _fails_every(3), 12: _fails_every(3), 13: _fails_every(4),
                20: lambda i: (5, f"At 00:{10 + i % 40:02d} the agent read back the "
                                  f"{('dose', 'date', 'name', 'address')[i % 4]} "
                                  f"{('twice', 'clearly', 'slowly', 'once')[i // 4 % 4]}.")}
    ranked = {h.metric.split(":")[0]: h for h in rank_metrics([*FAILING, judging], _calls(40, verdicts), [], {})}
    assert ranked["20"].note is None
    assert ranked["20"].score > 0 and ranked["20"].why[0].startswith("fails only 0% of scored calls")
