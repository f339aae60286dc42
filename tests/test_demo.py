"""`cekura-labs-mcp demo` plays the whole session and ends with a report that matches the truth."""

from __future__ import annotations

import inspect

from cekura_labs_mcp.server import demo
from cekura_labs_mcp.server.sandbox import SandboxServer
from support import HTTP, demo_transcript

WIDTH = 72


def test_demo_runs_the_whole_session() -> None:
    text, report = demo_transcript(7, WIDTH)  # the same run README's excerpt is checked against
    for step in ("0. Which metric first", "1. Manual fix first", "2. Review one call", "3. Auto-improve proposal",
                 "4. The person approves"):
        assert step in text
    assert "] 100%" in text, "a progress bar while auto-improve runs"
    assert report["after"]["agreement"] == 1.0 > report["before"]["agreement"]
    assert report["fixed"] and not report["regressed"]
    assert report["credits_spent"] > 0
    # The metric comes from the overview, with its reason.
    chosen = report["metric"]
    assert f"Chosen: {chosen['id']}: {chosen['name']}" in text and chosen["why"]
    # Each step says what it spent, and the steps add up to the sandbox's counter.
    assert text.count("spent in this step:") == 5
    assert sum(report["spend_by_step"].values()) == report["credits_spent"]
    # Every verdict comes with the judge's reason and the person's.
    assert text.count("judge's reason:") == text.count("person: ") == report["calls"]
    # Wrapped to the width, never cut inside a word: a shortened line ends with "…" after a whole word.
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert all(line.rstrip("…")[-1:].isalnum() or line.rstrip("…")[-1:] in ".)'\"?!;:," for line in lines
               if line.endswith("…"))


def test_the_demo_names_no_metric_in_its_code() -> None:
    with SandboxServer(seed=3, api_key="k") as sandbox:
        names = [m["name"] for m in HTTP.get(f"{sandbox.url}/_sandbox/info").json()["metrics"]]
    # The person's sentences may speak of empathy; the code that runs the session names no metric.
    code = inspect.getsource(demo).lower()
    for sentence in demo.PERSON_REASONS.values():
        code = code.replace(sentence.lower(), "")
    assert not [name for name in names if name.lower() in code]
    assert "metric_hint" not in code
