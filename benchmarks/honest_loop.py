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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow, Metric
from cekura_labs_mcp.server.services.ranking import is_failing, rank_candidates, value_key
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


def truly_wrong(truth: dict[str, Any], row: CallRow, metric_id: int) -> bool:
    result = row.metric(metric_id)
    expected = truth[str(row.id)]["expected"]
    return result is not None and value_key(display(expected)).lower() != value_key(result.value).lower()


def queue_picks(rows: Sequence[CallRow], metric: Metric, k: int, *, balance: bool) -> list[CallRow]:
    """The first k calls the queue puts before the person, one review at a time."""
    picked: list[CallRow] = []
    for _ in range(k):
        ranked = rank_candidates(rows, metric, skip={r.id for r in picked},
                                 reviewed_values=[(r.metric(metric.id) or _none()).value or "" for r in picked],
                                 balance=balance)
        if not ranked:
            break
        picked.append(ranked[0].row)
    return picked


def failing_first(rows: Sequence[CallRow], metric: Metric, k: int) -> list[CallRow]:
    """The obvious queue: failing results first, newest first."""
    with_result = [r for r in rows if r.metric(metric.id) is not None]
    return sorted(with_result, key=lambda r: (not is_failing(metric, (r.metric(metric.id) or _none()).value),
                                              -r.id))[:k]


def _none() -> Any:
    from cekura_labs_mcp.server.cekura.models import MetricResult

    return MetricResult(id=0)


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

                    def wrong(row: CallRow, truth: dict[str, Any] = truth, metric_id: int = metric.id) -> bool:
                        return truly_wrong(truth, row, metric_id)

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
            sum(1 for c in mine if c.queue_at_12 == 0)))
    return out


def print_queue(summaries: Sequence[QueueSummary], seeds: Sequence[int], out: Any) -> None:
    print(f"Review queue precision (share of picks truly misjudged), seeds {seeds[0]}–{seeds[-1]} "
          f"({len(seeds)} seeds), mean per metric:", file=out)
    header = (f"{'metric':30} {'cases':>5} {'wrong':>6} {'base':>5} {'q@6':>5} {'q@12':>5} {'nobal@6':>7} "
              f"{'nobal@12':>8} {'fail1st@6':>9} {'fail1st@12':>10} {'q@12=0':>6}")
    print(header, file=out)
    for s in summaries:
        print(f"{s.metric[:30]:30} {s.cases:5d} {s.misjudged:6.1f} {s.base_rate:5.2f} {s.queue_at_6:5.2f} "
              f"{s.queue_at_12:5.2f} {s.unbalanced_at_6:7.2f} {s.unbalanced_at_12:8.2f} "
              f"{s.failing_first_at_6:9.2f} {s.failing_first_at_12:10.2f} {s.zero_at_12:6d}", file=out)


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
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.honest_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (1..N)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--part", choices=("queue", "reviewers", "all"), default="all")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    parts = ("queue", "reviewers") if args.part == "all" else (args.part,)
    random.seed(0)
    anyio.run(run, seeds, parts, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
