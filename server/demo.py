"""`cekura-labs-mcp demo`: the whole labs session in the terminal, against the sandbox, through a real
MCP client. The metric is chosen the way a person would start: from the metric overview, with its reason.
The "person" answering is played by the sandbox's hidden truth, so every vote is right; the truth plays
the person only, it never steers the choice of metric or call.

Every step says what it spent (the sandbox's credit counter), every verdict comes with its reason (the
judge's explanation and the person's answer), and the headline is the regression check on calls the
optimizer never saw, when the server offers one."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.presenting import shorten, terminal_width, wrap
from cekura_labs_mcp.server.values import display
from mcp import Client
from pydantic import SecretStr

DEMO_KEY = "demo-sandbox-key"
INDENT = "   "


class Transcript:
    """What the demo prints (wrapped to the terminal, never cut inside a word), how many characters of tool
    output the assistant would have read, and what each step spent."""

    def __init__(self, out: TextIO, width: int | None = None, credits: Callable[[], float] | None = None) -> None:
        self.out = out
        self.width = width or terminal_width(out)
        self.tool_chars = 0
        self.tool_calls = 0
        self._credits = credits or (lambda: 0.0)
        self._step_start = 0.0
        self.spend: dict[str, float] = {}
        self._step = ""

    def say(self, text: str = "", indent: str = INDENT, first: str | None = None) -> None:
        print(wrap(text, self.width, indent=indent, first=first) if text else "", file=self.out, flush=True)

    def line(self, text: str, indent: str = INDENT) -> None:
        """One line, shortened with "…" to the terminal width (for diff lines and transcript quotes)."""
        print(indent + shorten(text, max(10, self.width - len(indent))), file=self.out, flush=True)

    def step(self, title: str) -> None:
        self.end_step()
        self._step, self._step_start = title, self._credits()
        print(file=self.out)
        self.say(f"== {title}", indent="")

    def end_step(self) -> None:
        if not self._step:
            return
        spent = self._credits() - self._step_start
        self.spend[self._step] = round(spent, 2)
        self.say(f"spent in this step: {spent:g} credits")
        self._step = ""


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
    cells = max(10, min(30, show.width - 20))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        fraction = progress / (total or 1.0)
        filled = int(fraction * cells)
        bar = f"{INDENT}[{'#' * filled}{'.' * (cells - filled)}] {fraction:4.0%} "
        bar += shorten(message or "", max(1, show.width - len(bar) - 1))
        show.out.write(f"\r{bar.ljust(show.width - 1)}" if live else f"{bar.rstrip()}\n")
        if live and fraction >= 1.0:
            show.out.write("\n")
        show.out.flush()

    return on_progress


def cited_moment(review: dict[str, Any]) -> tuple[str, str, str]:
    """The moment a person points at in the call `next_review` showed: the first one the judge cited (else the
    agent's first turn), as (time, who spoke, what they said)."""
    call = review["call"]
    turns = call["transcript"]["turns"]
    agent_turns = [t for t in turns if t["who"] == "agent"] or turns
    moments = call["metric"]["moments"]
    cited = moments[0] if moments else agent_turns[0]["t"]
    turn = next((t for t in turns if t["t"] == cited), None) or next((t for t in turns if t["t"] >= cited),
                                                                      agent_turns[0])
    return turn["t"], turn["who"], shorten(turn["text"], 120)


# What a person who understood the judge's mistake says about it, in their own words. The truth's pattern
# only picks the sentence (the person knows why the judge is wrong); its name never reaches the server.
# (tests/sandbox/feedback_experiment.py words its truthful reviewer the same way.)
PERSON_REASONS: dict[str, str] = {
    "related_details_confirmation": "That is one request to confirm related details, not two questions; it "
                                    "should not be flagged.",
    "no_booking_requested": "No appointment was requested at any point in this call, so the booking workflow "
                            "does not apply.",
    "sarcasm": "That is sarcasm: the caller is annoyed, not pleased.",
    "scripted_apology": "That is a scripted apology, not empathy, and should not be credited.",
}


def disagreement(review: dict[str, Any], value: Any, why: str = "The judge misread the call.") -> dict[str, Any]:
    """A disagreement in a careful person's words: the moment, quoted, why, and the value they say is right."""
    at, who, quote = cited_moment(review)
    return {"agree": False, "expected_value": "N/A" if value is None else value,
            "reason": f'At {at} the {who} said "{quote}". {why} It should be {display(value)}.'}


def person_from_truth(truth: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    """What a careful person answers about the call `next_review` showed, from the sandbox's hidden truth:
    agree when the result is right, otherwise the right value, the moment the judge cited (quoted as it was
    said, by the caller or the agent) and why the judge is wrong, in plain words. Never the truth's pattern
    name: a person would not know it, and the optimizer must not be handed it."""
    known = truth[str(review["call"]["id"])]
    expected = known["expected"]
    if display(expected).upper() == str(review["call"]["metric"]["value"]).upper():
        return {"agree": True}
    why = PERSON_REASONS.get(known.get("pattern") or "", "The judge misread the call.")
    return disagreement(review, expected, why)


def choose_metric(overview: dict[str, Any]) -> dict[str, Any]:
    """The overview's top metric that the Lab can improve: an LLM judge (a code metric is fixed by editing its
    code, not by feedback)."""
    judged = [m for m in overview["metrics"] if "code" not in m["kind"].split()]
    if not judged:
        raise RuntimeError("the overview lists no LLM-judge metric to improve")
    return dict(judged[0])


async def run_demo(out: TextIO = sys.stdout, seed: int = 7, data_dir: Path | None = None,
                   width: int | None = None) -> dict[str, Any]:
    from cekura_labs_mcp.server.sandbox import SandboxServer

    with SandboxServer(seed=seed, api_key=DEMO_KEY) as sandbox, tempfile.TemporaryDirectory() as scratch, \
            httpx.Client(base_url=sandbox.url, timeout=10) as admin:
        def credits() -> float:
            return float(admin.get("/_sandbox/stats").json()["credits_spent"])

        show = Transcript(out, width, credits)
        info = admin.get("/_sandbox/info").json()
        agent = info["main_agent_id"]
        # The sandbox's runs move on with each poll, not with time: polled at Cekura's pace (1 s, growing to 5 s) the
        # demo spent most of its run asleep (10.8 s in all, 3.3 s at 0.2 s, with the same transcript).
        settings = Settings(api_key=SecretStr(DEMO_KEY), api_url=sandbox.url, data_dir=data_dir or Path(scratch),
                            poll_timeout_seconds=60, poll_interval_seconds=0.2)
        show.say(f"Cekura labs demo — sandbox at {sandbox.url} (a stand-in judge; its credits are not real)",
                 indent="")
        async with Client(build_server(settings)) as client:
            # The sandbox's calls end at its anchor: the overview's window ends there too, so the demo reads
            # the same calls whatever the hour.
            metric = await _choose(client, show, agent, until=info["now"])
            truth = admin.get("/_sandbox/truth", params={"metric_id": metric["id"]}).json()["calls"]
            report = await _session(client, show, agent, metric["id"], truth)
        show.end_step()
        report["metric"] = metric
        report["credits_spent"] = credits()
        report["spend_by_step"] = show.spend
    print(file=out)
    show.say("== Done", indent="")
    show.say(f"{show.tool_calls} tool calls; their output came to {show.tool_chars} characters "
             f"(≈{show.tool_chars // 4} tokens at 4 characters a token). Sandbox credits spent: "
             f"{report['credits_spent']:g}.")
    report["tool_chars"] = show.tool_chars
    return report


async def _choose(client: Client, show: Transcript, agent: int, until: str | None = None) -> dict[str, Any]:
    show.step("0. Which metric first: the metric overview")
    overview = await _tool(client, show, "metric_overview", {"agent_id": agent, **({"until": until} if until else {})})
    for item in overview["metrics"][:4]:
        show.say(f"{item['rank']}. {item['metric']} — " + (item["why"][0] if item["why"] else "no warning sign"),
                 first=INDENT, indent=INDENT + "   ")
    chosen = choose_metric(overview)
    metric_id = int(chosen["metric"].split(":", 1)[0])
    reason = "; ".join(chosen["why"][:2]) or "the highest misalignment score"
    show.say(f"Chosen: {chosen['metric']} ({chosen['kind']}), because {reason}")
    return {"id": metric_id, "name": chosen["metric"].split(":", 1)[1].strip(), "why": chosen["why"]}


async def _session(client: Client, show: Transcript, agent: int, metric_id: int, truth: dict[str, Any]
                   ) -> dict[str, Any]:
    ids = {"agent_id": agent, "metric_id": metric_id}
    show.step("1. Manual fix first: triage the failures")
    triage = await _tool(client, show, "triage_failures", ids)
    show.say(f"{triage['failing_total']} failing results ({triage['failing_value']}; {triage['counted']}); "
             f"read {triage['read']} explanations.")
    for cause in triage["causes"][:4]:
        show.line(f"- {cause['count']:3d} × {cause['cause']}")
    show.say(triage["advice"])

    show.step("2. Review one call at a time (auto-improve on)")
    await _tool(client, show, "start_review", {**ids, "auto_improve": True})
    improvement = None
    review = await _tool(client, show, "next_review", ids)
    while improvement is None and review.get("call"):
        call = review["call"]
        answer = person_from_truth(truth, review)
        show.say(f"Call {call['id']}: scored {call['metric']['value']}. Picked because "
                 f"{'; '.join(review['why_picked'])}.", first=INDENT, indent=INDENT + "  ")
        show.say("judge's reason: " + " ".join(call["metric"]["explanation"].split()), indent=INDENT + "  ",
                 first=INDENT + "  ")
        said = (f"agree — the call shows what the judge says, so {call['metric']['value']} stands"
                if answer["agree"] else f"disagree — {answer['reason']}")
        show.say(f"person: {said}", indent=INDENT + "  ", first=INDENT + "  ")
        recorded = await _tool(client, show, "record_review", {**ids, "call_id": call["id"], **answer},
                               progress_callback=_bar(show))
        progress = recorded["progress"]
        show.say(f"feedback {progress['feedback']}/{progress['needed']} (agreed {progress['agreed']}, "
                 f"disagreed {progress['disagreed']})", indent=INDENT + "  ")
        improvement = recorded.get("improvement")
        review = recorded.get("next") or {}
    if not improvement or not improvement.get("done"):
        raise RuntimeError("auto-improve did not finish")

    show.step("3. Auto-improve proposal")
    for line in (improvement.get("diff") or "").splitlines():
        show.line(line)
    old, new = improvement.get("old_score") or {}, improvement.get("new_score") or {}
    show.say(f"score on the Lab: {old.get('score')} → {new.get('score')}")
    if improvement.get("summary"):
        show.say(improvement["summary"])

    show.step("4. The person approves: apply, then validate")
    await _tool(client, show, "patch_metric", {"metric_id": metric_id,
                                               "description": improvement["proposed_description"], "confirm": True})
    check = await _tool(client, show, "validate_metric", ids)
    while check["status"] == "evaluating":
        check = await _tool(client, show, "validate_metric", {**ids, "check_id": check["check_id"]})
    check = await _judge_changes(client, show, check, truth)
    _show_validation(show, check)
    return {**(check.get("reviewed") or {}), "check": check}


async def _judge_changes(client: Client, show: Transcript, check: dict[str, Any], truth: dict[str, Any]
                         ) -> dict[str, Any]:
    """The fresh results the change moved, put to the person one at a time: is the new label right?"""
    change = check.get("next_change")
    if change:
        show.say("The change moved results on calls outside the Lab; the person judges each:")
    while change:
        expected = truth[str(change["call_id"])]["expected"]
        right = display(expected).upper() == str(change["after"]).upper()
        flip = " (applicability flip)" if change["applicability_flip"] else ""
        args: dict[str, Any] = {"check_id": check["check_id"], "call_id": change["call_id"],
                                "new_label_correct": right}
        if not right:
            args.update(right_value="N/A" if expected is None else expected,
                        note=f"The new label {change['after']} is wrong for this call; it should be "
                             f"{display(expected)}.")
        show.say(f"call {change['call_id']}: {change['before']} → {change['after']}{flip}: "
                 f"{'right, a fix' if right else 'wrong, a regression (should be ' + display(expected) + ')'}",
                 first=INDENT + "  ", indent=INDENT + "    ")
        check = await _tool(client, show, "judge_change", args)
        change = check.get("next_change")
    return check


def _show_validation(show: Transcript, check: dict[str, Any]) -> None:
    fresh = check.get("fresh") or {}
    if fresh.get("calls"):
        scores = ""
        if fresh.get("before") and fresh.get("after"):
            scores = f" agreement {fresh['before']['agreement']:.0%} → {fresh['after']['agreement']:.0%};"
        show.say(f"HEADLINE — on {fresh['calls']} recent calls the optimizer never saw:{scores} "
                 f"{fresh['changed']} changed, {len(fresh['fixed'])} fixed, {len(fresh['regressed'])} regressed, "
                 f"{len(fresh['still_wrong'])} still wrong. {fresh['basis']}")
        for change in fresh["regressed"]:
            show.say(f"REGRESSED call {change['call_id']}: {change['before']} → {change['after']}, should be "
                     f"{change['expected']}")
    else:
        show.say("No fresh sample in this check: the figures below cover only the reviewed calls, which the "
                 "optimizer was shown.")
    reviewed = check.get("reviewed") or {}
    if reviewed:
        show.say(f"On the {reviewed['calls']} reviewed calls (the optimizer's own examples):")
        for fixed in reviewed["fixed"]:
            show.say(f"fixed call {fixed['call_id']}: {fixed['before']} → {fixed['after']}", first=INDENT + "  ",
                     indent=INDENT + "    ")
    if check.get("verdict"):
        show.say(check["verdict"])


def main(seed: int = 7) -> int:
    try:
        anyio.run(run_demo, sys.stdout, seed)
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0
