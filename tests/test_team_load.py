"""The team load test in its small form (benchmarks/team_load.py runs 3 processes and 20 reviewers): a stateless
server process and a `serve --workers 2` (two processes on one port) on one PostgreSQL ledger (the test session's
throwaway cluster), four reviewers on one metric at once, every request to the next port. The team's Cekura is the
test session's sandbox (the benchmark starts one in its own process: here that would be a fourth process to start).
Nothing here depends on timing: the counts are checked against the sandbox's request log and the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pg_cluster import PgCluster  # noqa: E402
from support import SANDBOX_KEY, SandboxAdmin  # noqa: E402

from benchmarks.common import Admin  # noqa: E402
from benchmarks.team_load import LoadConfig, run_team_load  # noqa: E402


def test_three_processes_four_reviewers_lose_nothing_and_share_no_call(tmp_path: Path, postgres: PgCluster,
                                                                       sandbox: SandboxAdmin) -> None:
    # One `serve --stateless` process and one `serve --workers 2` (two processes on one port): three processes.
    config = LoadConfig(processes=2, workers=2, reviewers=4, reviews_each=4, spenders=2, spend_calls=60, overlap=0.5,
                        sloppy_every=2, max_seconds=240)
    cekura = Admin(sandbox.url, key=SANDBOX_KEY)
    try:
        report = run_team_load(config, tmp_path, database_url=postgres.fresh_database(), sandbox=cekura)
    finally:
        cekura.close()
    lines = "\n".join(report.lines())
    assert report.handed_twice_outside_overlap == 0, lines
    assert report.spends_past_window_unconfirmed == 0, lines
    assert (report.lost_votes, report.duplicated_votes) == (0, 0), lines
    assert (report.lost_lab_entries, report.duplicated_lab_entries) == (0, 0), lines
    assert report.problems == [], lines
    # The run did what it claims: verdicts from every reviewer, and the second 60-call spend needed a yes.
    assert report.votes >= 8 and len({n for v in report.tally.verdicts.values() for n in v}) == 4, lines
    assert report.tally.spends_allowed == 1 and report.tally.spends_confirm == 1, lines
