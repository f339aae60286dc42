"""`cekura-labs-mcp demo`: the whole labs session in the terminal, against the sandbox, through a real
MCP client. The "person" answering is played by the sandbox's hidden truth, so every vote is right."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.values import display
from mcp import Client
from pydantic import SecretStr

DEMO_KEY = "demo-sandbox-key"
METRIC_HINT = "one question"


class Transcript:
    """What the demo prints, and how many characters of tool output the assistant would have read."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tool_chars = 0
        self.tool_calls = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str) -> None:
        self.say()
        self.say(f"== {title}")


async def _tool(client: Client, show: Transcript, name: str, args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result = await client.call_tool(name, args, **kwargs)
    text = "\n".join(getattr(block, "text", "") for block in result.content)
    show.tool_chars += len(text)
    show.tool_calls += 1
    if result.is_error:
        raise RuntimeError(f"{name} failed: {text}")
    return dict(result.structured_content or {})


def _bar(show: Transcript) -> Callable[[float, float | None, str | None], Any]:
    # On a terminal the bar redraws in place; in a log or a pipe each update is a line of its own.
    live = show.out.isatty()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        fraction = progress / (total or 1.0)
        filled = int(fraction * 30)
        bar = f"   [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {message or ''}"[:100]
        show.out.write(f"\r{bar.ljust(100)}" if live else f"{bar}\n")
        if live and fraction >= 1.0:
            show.out.write("\n")
        show.out.flush()

    return on_progress


def person_from_truth(truth: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    """What a careful person answers about the call `next_review` showed, from the sandbox's hidden truth:
    agree when the result is right, otherwise the right value and the moment the judge cited. Never the
    truth's pattern name: a person would not know it, and the optimizer must not be handed it."""
    call = review["call"]
    metric = call["metric"]
    expected = truth[str(call["id"])]["expected"]
    if display(expected).upper() == str(metric["value"]).upper():
        return {"agree": True}
    agent_turns = [t for t in call["transcript"]["turns"] if t["who"] == "agent"] or call["transcript"]["turns"]
    cited = metric["moments"][0] if metric["moments"] else agent_turns[0]["t"]
    quote = next((t["text"] for t in agent_turns if t["t"] >= cited), agent_turns[0]["text"])[:120]
    return {"agree": False, "expected_value": "N/A" if expected is None else expected,
            "reason": f'At {cited} the agent said "{quote}"; the judge misread the call, it should be '
                      f"{display(expected)}."}


async def run_demo(out: TextIO = sys.stdout, seed: int = 7, data_dir: Path | None = None) -> dict[str, Any]:
    from cekura_labs_mcp.server.sandbox import SandboxServer

    show = Transcript(out)
    with SandboxServer(seed=seed, api_key=DEMO_KEY) as sandbox, tempfile.TemporaryDirectory() as scratch:
        admin = httpx.Client(base_url=sandbox.url, timeout=10)
        info = admin.get("/_sandbox/info").json()
        agent = info["main_agent_id"]
        metric = next(m for m in info["metrics"] if METRIC_HINT in m["name"].lower())
        truth = admin.get("/_sandbox/truth", params={"metric_id": metric["id"]}).json()["calls"]
        settings = Settings(api_key=SecretStr(DEMO_KEY), api_url=sandbox.url, data_dir=data_dir or Path(scratch),
                            poll_timeout_seconds=60)
        show.say(f"Cekura labs demo — sandbox at {sandbox.url} (stand-in judge, no real credits)")
        show.say(f"Agent {agent}, metric {metric['id']}: {metric['name']} ({metric['eval_type']})")
        async with Client(build_server(settings)) as client:
            report = await _session(client, show, agent, metric["id"], truth)
        report["credits_spent"] = admin.get("/_sandbox/stats").json()["credits_spent"]
    show.step("Done")
    show.say(f"{show.tool_calls} tool calls; their output came to {show.tool_chars} characters "
             f"(≈{show.tool_chars // 4} tokens at 4 characters a token). Sandbox credits spent: "
             f"{report['credits_spent']:g}.")
    report["tool_chars"] = show.tool_chars
    return report


async def _session(client: Client, show: Transcript, agent: int, metric_id: int, truth: dict[str, Any]
                   ) -> dict[str, Any]:
    show.step("1. Manual fix first: triage the failures")
    triage = await _tool(client, show, "triage_failures", {"agent_id": agent, "metric_id": metric_id})
    show.say(f"   {triage['failing_total']} failing results; read {triage['read']} explanations.")
    for cause in triage["causes"][:4]:
        show.say(f"   - {cause['count']:3d} × {cause['cause'][:110]}")
    show.say(f"   {triage['advice']}")

    show.step("2. Review one call at a time (auto-improve on)")
    progress = await _tool(client, show, "start_review", {"agent_id": agent, "metric_id": metric_id,
                                                           "auto_improve": True})
    improvement = None
    review = await _tool(client, show, "next_review", {"agent_id": agent, "metric_id": metric_id})
    while improvement is None and review.get("call"):
        call = review["call"]
        answer = person_from_truth(truth, review)
        show.say(f"   Call {call['id']}: scored {call['metric']['value']} — {review['why_picked'][0]}")
        show.say(f"     judge: {call['metric']['explanation'][:140]}")
        show.say(f"     person: {'agree' if answer['agree'] else 'disagree: ' + answer['reason'][:120]}")
        recorded = await _tool(client, show, "record_review",
                               {"agent_id": agent, "metric_id": metric_id, "call_id": call["id"], **answer},
                               progress_callback=_bar(show))
        progress = recorded["progress"]
        show.say(f"     feedback {progress['feedback']}/{progress['needed']} "
                 f"(agreed {progress['agreed']}, disagreed {progress['disagreed']})")
        improvement = recorded.get("improvement")
        review = recorded.get("next") or {}
    if not improvement or not improvement.get("done"):
        raise RuntimeError("auto-improve did not finish")

    show.step("3. Auto-improve proposal")
    show.say(improvement["diff"])
    show.say(f"   score on the Lab: {improvement['old_score']['score']} → {improvement['new_score']['score']}")
    show.say(f"   {improvement['summary']}")

    show.step("4. The person approves: apply, then validate on the reviewed calls")
    await _tool(client, show, "patch_metric", {"metric_id": metric_id,
                                               "description": improvement["proposed_description"], "confirm": True})
    check = await _tool(client, show, "validate_metric", {"agent_id": agent, "metric_id": metric_id})
    show.say(f"   {check['verdict'] or check['message']}")
    report = check.get("reviewed") or {}
    if report:
        show.say(f"   confusion after (rows: person, columns: metric): {json.dumps(report['after']['matrix'])}")
        for change in report["fixed"]:
            show.say(f"   fixed     call {change['call_id']}: {change['before']} → {change['after']}")
        for change in report["regressed"]:
            show.say(f"   REGRESSED call {change['call_id']}: {change['before']} → {change['after']}")
    report = {**report, "check": check}
    return report


def main(seed: int = 7) -> int:
    try:
        anyio.run(run_demo, sys.stdout, seed)
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0
