"""Does the labs loop earn its keep? Two measurements over many seeds, against SandboxServer instances run
in-process (bounded in time: no subprocesses, no real credits).

    python -m benchmarks.honest_loop                 # 10 seeds, queue and reviewers
    python -m benchmarks.honest_loop --seeds 3 --part queue

1. The review queue. For every sandbox metric with misjudged results (per agent, as the queue samples one
   agent's calls), the share of the queue's first 6 and 12 picks that are truly misjudged — against the base
   rate (a random pick) and against "failing results first". The queue sees only what a client sees (the
   rows of one `list_calls` page through the server's own Cekura client); the sandbox's truth only scores.
   The picks are sequential: each pick is reviewed before the next is ranked, so the balance rule acts as it
   would in a session; the figure without the balance rule is printed too.

2. Scripted reviewers. A person reviews through the real MCP tools (start_review, next_review,
   record_review, auto-improve, patch_metric), then the metric's agreement with the truth is measured on a
   fresh sample: calls the optimizer never saw. Reviewers: truth-telling, content-free, wrong on every call,
   random, agree-all. Only truth-telling feedback should improve the fresh sample.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.cekura.results import shown
from cekura_labs_mcp.server.demo import disagreement, person_from_truth
from cekura_labs_mcp.server.logs import configure_logging
from cekura_labs_mcp.server.presenting import shorten
from cekura_labs_mcp.server.services.ranking import NUMERIC, is_failing, rank_candidates, score_all, value_key
from cekura_labs_mcp.server.values import display
from pydantic import SecretStr

KEY = "honest-loop-key"
PAGE = 200


# ---- 1. the review queue --------------------------------------------------------------------


@dataclass(frozen=True)
class QueueCase:
    seed: int
    agent_id: int
    metric: str
    results: int
    misjudged: int
    queue_at_6: float
    queue_at_12: float
    unbalanced_at_6: float
    unbalanced_at_12: float
    failing_first_at_6: float
    failing_first_at_12: float

    @property
    def base_rate(self) -> float:
        return self.misjudged / self.results if self.results else 0.0

    def ideal(self, k: int) -> float:
        """The best any queue can do: every pick misjudged until none is left."""
        return min(self.misjudged, k) / k


def value_on(row: CallRow, metric: Metric) -> str:
    """The metric's result on the call as shown ("" when it has none), through the one result reader."""
    result = row.metric(metric.id)
    return shown(result, metric) if result is not None else ""


def truly_wrong(truth: dict[str, Any], row: CallRow, metric: Metric) -> bool:
    expected = truth[str(row.id)]["expected"]
    return row.metric(metric.id) is not None and \
        value_key(display(expected)).lower() != value_key(value_on(row, metric)).lower()


def queue_picks(rows: Sequence[CallRow], metric: Metric, k: int, *, balance: bool) -> list[CallRow]:
    """The first k calls the queue puts before the person, one review at a time. The sample is scored once, as
    the review service does (`ReviewService._scored`): each pick only skips the calls picked before."""
    picked: list[CallRow] = []
    scored = score_all(rows, metric)
    for _ in range(k):
        ranked = rank_candidates(rows, metric, skip={r.id for r in picked},
                                 reviewed_values=[value_on(r, metric) for r in picked],
                                 balance=balance, scored=scored)
        if not ranked:
            break
        picked.append(ranked[0].row)
    return picked


def failing_first(rows: Sequence[CallRow], metric: Metric, k: int) -> list[CallRow]:
    """The obvious queue: failing results first, newest first."""
    with_result = [r for r in rows if r.metric(metric.id) is not None]
    return sorted(with_result, key=lambda r: (not is_failing(metric, value_on(r, metric)),
                                              -r.id))[:k]


def precision(picks: Sequence[CallRow], wrong: Callable[[CallRow], bool], k: int) -> float:
    return sum(1 for r in picks[:k] if wrong(r)) / k


async def queue_cases(seed: int) -> list[QueueCase]:
    from cekura_labs_mcp.server.sandbox import SandboxServer

    cases: list[QueueCase] = []
    with SandboxServer(seed=seed, api_key=KEY) as sandbox:
        admin = httpx.Client(base_url=sandbox.url, timeout=30)
        client = CekuraClient(sandbox.url, SecretStr(KEY))
        try:
            info = admin.get("/_sandbox/info").json()
            for agent in info["agents"]:
                rows = (await client.list_calls(agent_id=agent["id"], page_size=PAGE)).results
                for listed in info["metrics"]:
                    if agent["id"] not in listed["agent_ids"]:
                        continue
                    metric = await client.get_metric(listed["id"])
                    truth = admin.get("/_sandbox/truth", params={"metric_id": metric.id}).json()["calls"]
                    mine = [r for r in rows if r.metric(metric.id) is not None and str(r.id) in truth]

                    def wrong(row: CallRow, truth: dict[str, Any] = truth, metric: Metric = metric) -> bool:
                        return truly_wrong(truth, row, metric)

                    misjudged = sum(1 for r in mine if wrong(r))
                    if not misjudged:
                        continue
                    balanced = queue_picks(mine, metric, 12, balance=True)
                    plain = queue_picks(mine, metric, 12, balance=False)
                    obvious = failing_first(mine, metric, 12)
                    cases.append(QueueCase(
                        seed, agent["id"], metric.name, len(mine), misjudged,
                        precision(balanced, wrong, 6), precision(balanced, wrong, 12),
                        precision(plain, wrong, 6), precision(plain, wrong, 12),
                        precision(obvious, wrong, 6), precision(obvious, wrong, 12)))
        finally:
            await client.aclose()
            admin.close()
    return cases


@dataclass(frozen=True)
class QueueSummary:
    metric: str
    cases: int
    misjudged: float
    base_rate: float
    queue_at_6: float
    queue_at_12: float
    unbalanced_at_6: float
    unbalanced_at_12: float
    failing_first_at_6: float
    failing_first_at_12: float
    zero_at_12: int
    ideal_at_6: float = 0.0
    ideal_at_12: float = 0.0


def summarise_queue(cases: Sequence[QueueCase]) -> list[QueueSummary]:
    """Per metric (agents pooled), the mean over seeds."""
    names = list(dict.fromkeys(c.metric for c in cases))
    out: list[QueueSummary] = []
    for name in names:
        mine = [c for c in cases if c.metric == name]

        def mean(values: Sequence[float]) -> float:
            return round(sum(values) / len(values), 2)

        out.append(QueueSummary(
            name, len(mine), mean([c.misjudged for c in mine]), mean([c.base_rate for c in mine]),
            mean([c.queue_at_6 for c in mine]), mean([c.queue_at_12 for c in mine]),
            mean([c.unbalanced_at_6 for c in mine]), mean([c.unbalanced_at_12 for c in mine]),
            mean([c.failing_first_at_6 for c in mine]), mean([c.failing_first_at_12 for c in mine]),
            sum(1 for c in mine if c.queue_at_12 == 0), mean([c.ideal(6) for c in mine]),
            mean([c.ideal(12) for c in mine])))
    return out


def print_queue(summaries: Sequence[QueueSummary], seeds: Sequence[int], out: Any) -> None:
    print(f"Review queue precision (share of picks truly misjudged), seeds {seeds[0]}–{seeds[-1]} "
          f"({len(seeds)} seeds), mean per metric:", file=out)
    header = (f"{'metric':30} {'cases':>5} {'wrong':>6} {'base':>5} {'q@6':>5} {'q@12':>5} {'nobal@6':>7} "
              f"{'nobal@12':>8} {'fail1st@6':>9} {'fail1st@12':>10} {'best@6':>6} {'best@12':>7} {'q@12=0':>6}")
    print(header, file=out)
    for s in summaries:
        print(f"{s.metric[:30]:30} {s.cases:5d} {s.misjudged:6.1f} {s.base_rate:5.2f} {s.queue_at_6:5.2f} "
              f"{s.queue_at_12:5.2f} {s.unbalanced_at_6:7.2f} {s.unbalanced_at_12:8.2f} "
              f"{s.failing_first_at_6:9.2f} {s.failing_first_at_12:10.2f} {s.ideal_at_6:6.2f} {s.ideal_at_12:7.2f} "
              f"{s.zero_at_12:6d}", file=out)


# ---- 2. scripted reviewers ------------------------------------------------------------------

Answer = dict[str, Any]
Reviewer = Callable[[dict[str, Any], dict[str, Any], random.Random], Answer]
REVIEWERS = ("truth-telling", "content-free", "wrong", "random", "agree-all")
MAX_REVIEWS = 12
# What the wrong and the random reviewer say for themselves: as confident as the truth-teller, and no more.
CONFIDENT = "That moment is exactly what decides this call."


def values_of(metric: Metric) -> list[Any]:
    """Every value a person could give, N/A included (scores in half points)."""
    if metric.eval_type == "binary":
        return [True, False, None]
    if metric.eval_type == "enum":
        return [*(metric.enum_values or []), None]
    return [x / 2 for x in range(11)] + [None]


def wrong_value(metric: Metric, shown: str, expected: Any) -> Any:
    """A value that is not the truth and, where the metric allows, not the shown result either: so a wrong
    reviewer disagrees with every result, and is wrong each time."""
    def key(value: Any) -> str:
        return value_key(display(value)).lower()

    options = [v for v in values_of(metric) if key(v) != key(expected)]
    disagreeing = [v for v in options if key(v) != value_key(shown).lower()]
    if metric.eval_type in NUMERIC and disagreeing and isinstance(expected, int | float):
        # The score furthest from the truth: as wrong as a person can be.
        return max((v for v in disagreeing if v is not None), key=lambda v: abs(float(v) - float(expected)))
    return (disagreeing or options)[0]


def make_reviewers(metric: Metric, truth: dict[str, Any]) -> dict[str, Reviewer]:
    def right(review: dict[str, Any]) -> tuple[bool, Any]:
        call = review["call"]
        expected = truth[str(call["id"])]["expected"]
        return value_key(display(expected)).lower() == value_key(call["metric"]["value"]).lower(), expected

    def truth_telling(review: dict[str, Any], _: dict[str, Any], rng: random.Random) -> Answer:
        return person_from_truth(truth, review)

    def content_free(review: dict[str, Any], _: dict[str, Any], rng: random.Random) -> Answer:
        ok, expected = right(review)
        if ok:
            return {"agree": True}
        return {"agree": False, "expected_value": "N/A" if expected is None else expected,
                "reason": f"Wrong. It should be {display(expected)}.", "insist": True}

    def wrong(review: dict[str, Any], _: dict[str, Any], rng: random.Random) -> Answer:
        expected = truth[str(review["call"]["id"])]["expected"]
        return disagreement(review, wrong_value(metric, review["call"]["metric"]["value"], expected), CONFIDENT)

    def random_reviewer(review: dict[str, Any], _: dict[str, Any], rng: random.Random) -> Answer:
        """A value drawn from every possible one, and a moment drawn from the whole call."""
        value = rng.choice(values_of(metric))
        if value_key(display(value)).lower() == value_key(review["call"]["metric"]["value"]).lower():
            return {"agree": True}
        turn = rng.choice(review["call"]["transcript"]["turns"])
        return {"agree": False, "expected_value": "N/A" if value is None else value,
                "reason": f'At {turn["t"]} the {turn["who"]} said "{shorten(turn["text"], 120)}". {CONFIDENT} '
                          f"It should be {display(value)}."}

    def agree_all(review: dict[str, Any], _: dict[str, Any], rng: random.Random) -> Answer:
        return {"agree": True}

    return {"truth-telling": truth_telling, "content-free": content_free, "wrong": wrong,
            "random": random_reviewer, "agree-all": agree_all}


@dataclass(frozen=True)
class ReviewerCase:
    seed: int
    metric: str
    reviewer: str
    reviews: int
    disagreements: int
    improved: bool = False
    applied: bool = False
    fresh: int = 0
    before: float = 0.0
    after: float = 0.0
    fixed: int = 0
    regressed: int = 0
    note: str = ""


async def _tool(client: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    if result.is_error:
        text = "\n".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(f"{name}: {text}")
    return dict(result.structured_content or {})


async def reviewer_case(url: str, agent_id: int, metric: Metric, reviewer: str, answer: Reviewer,
                        truth: dict[str, Any], seed: int, scratch: Path) -> ReviewerCase:
    """One session on a fresh sandbox state: reviews through the real tools until auto-improve proposes a change
    (or MAX_REVIEWS), the person applies it, and the metric is re-run on every call the optimizer never saw."""
    from cekura_labs_mcp.server.app import build_server
    from cekura_labs_mcp.server.config import Settings
    from mcp import Client

    settings = Settings(api_key=SecretStr(KEY), api_url=url, data_dir=scratch, poll_timeout_seconds=60,
                        poll_interval_seconds=0.05, confirm_threshold=1000)
    rng = random.Random(f"{seed}-{metric.id}-{reviewer}")
    ids = {"agent_id": agent_id, "metric_id": metric.id}
    reviewed: list[int] = []
    disagreements = 0
    improvement: dict[str, Any] | None = None
    async with Client(build_server(settings)) as client:
        await _tool(client, "start_review", {**ids, "auto_improve": True})
        review = await _tool(client, "next_review", ids)
        while improvement is None and review.get("call") and len(reviewed) < MAX_REVIEWS:
            reply = answer(review, truth, rng)
            reviewed.append(review["call"]["id"])
            disagreements += not reply["agree"]
            recorded = await _tool(client, "record_review", {**ids, "call_id": review["call"]["id"], **reply})
            improvement = recorded.get("improvement")
            review = recorded.get("next") or {}
        rows = await _rows(url, agent_id)
        fresh = [r for r in rows if r.metric(metric.id) is not None and r.id not in reviewed and str(r.id) in truth]
        before = {r.id: value_key(value_on(r, metric)) for r in fresh}
        base = ReviewerCase(seed, metric.name, reviewer, len(reviewed), disagreements, fresh=len(fresh),
                            before=_agreement(before, truth), after=_agreement(before, truth))
        if not improvement or not improvement.get("done"):
            return _replace(base, note="auto-improve did not run")
        proposed = improvement.get("proposed_description") or ""
        if not proposed or proposed.strip() == metric.description.strip():
            return _replace(base, improved=True, note="no change proposed")
        await _tool(client, "patch_metric", {"metric_id": metric.id, "description": proposed, "confirm": True})
        await _tool(client, "rerun_evaluation", {"agent_id": agent_id, "call_ids": sorted(before)})
        # A re-run is asynchronous in the documented dialect: land it before reading the "after" results.
        httpx.post(f"{url}/_sandbox/evaluations/finish", timeout=30).raise_for_status()
    after_rows = {r.id: r for r in await _rows(url, agent_id)}
    after = {cid: value_key(value_on(after_rows[cid], metric)) for cid in before}
    expected = {cid: value_key(display(truth[str(cid)]["expected"])).lower() for cid in before}
    fixed = sum(1 for c in before if before[c].lower() != expected[c] and after[c].lower() == expected[c])
    regressed = sum(1 for c in before if before[c].lower() == expected[c] and after[c].lower() != expected[c])
    return _replace(base, improved=True, applied=True, after=_agreement(after, truth), fixed=fixed,
                    regressed=regressed)


def _replace(case: ReviewerCase, **changes: Any) -> ReviewerCase:
    from dataclasses import replace

    return replace(case, **changes)


def _agreement(values: dict[int, str], truth: dict[str, Any]) -> float:
    if not values:
        return 0.0
    right = sum(1 for c, v in values.items() if v.lower() == value_key(display(truth[str(c)]["expected"])).lower())
    return right / len(values)


async def _rows(url: str, agent_id: int) -> list[CallRow]:
    client = CekuraClient(url, SecretStr(KEY))
    try:
        return (await client.list_calls(agent_id=agent_id, page_size=PAGE)).results
    finally:
        await client.aclose()


async def reviewer_cases(seed: int, reviewers: Sequence[str], metric_filter: str | None = None) -> list[ReviewerCase]:
    """Every reviewer on every metric of the main agent that misjudges some calls, each from the seeded state."""
    from cekura_labs_mcp.server.sandbox import SandboxServer

    cases: list[ReviewerCase] = []
    with SandboxServer(seed=seed, api_key=KEY) as sandbox, tempfile.TemporaryDirectory() as scratch:
        admin = httpx.Client(base_url=sandbox.url, timeout=30)
        try:
            info = admin.get("/_sandbox/info").json()
            agent_id = int(info["main_agent_id"])
            rows = await _rows(sandbox.url, agent_id)
            for listed in info["metrics"]:
                wanted = metric_filter is None or metric_filter in listed["name"].lower()
                if agent_id not in listed["agent_ids"] or not wanted:
                    continue
                truth = admin.get("/_sandbox/truth", params={"metric_id": listed["id"]}).json()["calls"]
                seeded = await _metric(sandbox.url, listed["id"])
                if not any(truly_wrong(truth, r, seeded) for r in rows if r.metric(seeded.id) is not None
                           and str(r.id) in truth):
                    continue
                for name in reviewers:
                    admin.post("/_sandbox/reset").raise_for_status()
                    metric = await _metric(sandbox.url, listed["id"])
                    answer = make_reviewers(metric, truth)[name]
                    data = Path(scratch) / f"{listed['id']}-{name}"
                    cases.append(await reviewer_case(sandbox.url, agent_id, metric, name, answer, truth, seed, data))
        finally:
            admin.close()
    return cases


async def _metric(url: str, metric_id: int) -> Metric:
    client = CekuraClient(url, SecretStr(KEY))
    try:
        return await client.get_metric(metric_id)
    finally:
        await client.aclose()


@dataclass(frozen=True)
class ReviewerSummary:
    metric: str
    reviewer: str
    cases: int
    applied: int
    before: float
    after: float
    fixed: int
    regressed: int


def summarise_reviewers(cases: Sequence[ReviewerCase]) -> list[ReviewerSummary]:
    out: list[ReviewerSummary] = []
    for metric in dict.fromkeys(c.metric for c in cases):
        for reviewer in dict.fromkeys(c.reviewer for c in cases):
            mine = [c for c in cases if c.metric == metric and c.reviewer == reviewer]
            if not mine:
                continue
            out.append(ReviewerSummary(
                metric, reviewer, len(mine), sum(c.applied for c in mine),
                round(sum(c.before for c in mine) / len(mine), 3), round(sum(c.after for c in mine) / len(mine), 3),
                sum(c.fixed for c in mine), sum(c.regressed for c in mine)))
    return out


def print_reviewers(summaries: Sequence[ReviewerSummary], seeds: Sequence[int], out: Any) -> None:
    print(f"\nScripted reviewers: fresh-sample agreement with the truth before and after auto-improve (calls the "
          f"optimizer never saw), seeds {seeds[0]}–{seeds[-1]}, main agent:", file=out)
    print(f"{'metric':30} {'reviewer':14} {'runs':>4} {'applied':>7} {'before':>6} {'after':>6} {'change':>7} "
          f"{'fixed':>5} {'regressed':>9}", file=out)
    for s in summaries:
        print(f"{s.metric[:30]:30} {s.reviewer:14} {s.cases:4d} {s.applied:7d} {s.before:6.3f} {s.after:6.3f} "
              f"{s.after - s.before:+7.3f} {s.fixed:5d} {s.regressed:9d}", file=out)


# ---- entry point ----------------------------------------------------------------------------


async def run(seeds: Sequence[int], parts: Sequence[str], out: Any) -> dict[str, Any]:
    report: dict[str, Any] = {}
    started = time.monotonic()
    if "queue" in parts:
        cases = [case for seed in seeds for case in await queue_cases(seed)]
        report["queue"] = summarise_queue(cases)
        report["queue_cases"] = cases
        print_queue(report["queue"], seeds, out)
        print(f"(queue: {time.monotonic() - started:.0f} s)", file=out)
    if "reviewers" in parts:
        started = time.monotonic()
        people: list[ReviewerCase] = []
        for seed in seeds:
            people += await reviewer_cases(seed, REVIEWERS)
            print(f"(reviewers: seed {seed} done after {time.monotonic() - started:.0f} s)", file=sys.stderr)
        report["reviewers"] = summarise_reviewers(people)
        report["reviewer_cases"] = people
        print_reviewers(report["reviewers"], seeds, out)
        print(f"(reviewers: {time.monotonic() - started:.0f} s)", file=out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.honest_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (1..N)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--part", choices=("queue", "reviewers", "all"), default="all")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    parts = ("queue", "reviewers") if args.part == "all" else (args.part,)
    configure_logging("console", "warning")  # the in-process servers log every tool call at info
    anyio.run(run, seeds, parts, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
