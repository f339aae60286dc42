"""`cekura-labs-mcp demo` plays the whole session and ends with a report that matches the truth."""

from __future__ import annotations

import io
from pathlib import Path

import anyio
from cekura_labs_mcp.server.demo import run_demo


def test_demo_runs_the_whole_session(tmp_path: Path) -> None:
    out = io.StringIO()
    report = anyio.run(run_demo, out, 7, tmp_path)
    text = out.getvalue()
    for step in ("1. Manual fix first", "2. Review one call", "3. Auto-improve proposal", "4. The person approves"):
        assert step in text
    assert "[##############################] 100%" in text, "a progress bar while auto-improve runs"
    assert report["after"]["agreement"] == 1.0 > report["before"]["agreement"]
    assert report["fixed"] and not report["regressed"]
    assert report["credits_spent"] > 0
