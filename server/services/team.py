"""Reviewing as a team: several reviewers on one metric, each with their own session, sharing one queue.

- **Leases.** The queue hands each call to one reviewer at a time: a lease in the ledger, taken in the ledger's
  write transaction (one writer at a time, across processes and hosts), released when the reviewer skips it,
  made permanent by their verdict, and free again once it expires. Two reviewers never get the same call...
- **...outside the overlap sample.** A metric's plan may set an overlap (a share of calls, 0–0.5): those calls are
  handed to two different reviewers. Which calls they are is a pure function of the metric, the call and the
  share (a hash), so every process agrees without asking anyone.
- **Agreement between people.** On the calls both reviewers judged, Cohen's kappa between the two, shown in every
  progress answer before auto-improve runs.
- **Disagreements go back to the people.** A call of the overlap sample gets its Lab entry only once both verdicts
  are in and say the same: until then the first verdict's entry is held; when they differ, both are held and
  the call is listed to the two reviewers to settle (either records the call again). The optimizer never sees
  a held entry; agreeing verdicts give one Lab entry, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cekura_labs_mcp.server.ledger import TeamVerdict
from cekura_labs_mcp.server.services.analysis import agreement
from cekura_labs_mcp.server.values import display
from pydantic import BaseModel, Field

MAX_OVERLAP = 0.5
MAX_LISTED = 5


@dataclass(frozen=True)
class Pair:
    call_id: int
    first: TeamVerdict
    second: TeamVerdict

    @property
    def agree(self) -> bool:
        return same(self.first.expected, self.second.expected)


def same(a: Any, b: Any) -> bool:
    """Two verdicts say the same value (as the person would read it: TRUE, FALSE, N/A, a label, a number)."""
    return display(a).strip().lower() == display(b).strip().lower()


def pairs(verdicts: Sequence[TeamVerdict]) -> list[Pair]:
    """The calls two different reviewers judged: their first two verdicts, in the order they were given."""
    by_call: dict[int, list[TeamVerdict]] = {}
    for verdict in sorted(verdicts, key=lambda v: v.review_id):
        by_call.setdefault(verdict.call_id, []).append(verdict)
    found = []
    for call_id, given in by_call.items():
        people = list({v.reviewer: v for v in given}.values())  # one verdict per reviewer (a revision updates it)
        if len(people) >= 2:
            found.append(Pair(call_id, people[0], people[1]))
    return found


class TeamAgreement(BaseModel):
    """The team on this metric: who reviews, the overlap sample, and how far the people agree on it."""

    reviewers: int
    overlap: float = Field(description="Share of calls handed to two reviewers.")
    shared_calls: int = Field(description="Calls two reviewers have both judged.")
    agreed: int
    kappa: float | None = Field(default=None, description="Cohen's kappa between the reviewers on the shared calls "
                                                          "(null until two are judged).")
    waiting: int = Field(default=0, description="Your verdicts on shared calls waiting for the second reviewer "
                                                "(their Lab entries are held until then).")
    to_settle: list[str] = Field(default_factory=list, description="Shared calls where you and another reviewer "
                                 "disagree: their Lab entries are held from auto-improve until you two settle "
                                 "(either records the call again with the agreed verdict).")


def team_agreement(verdicts: Sequence[TeamVerdict], *, me: str, overlap: float, reviewers: int) -> TeamAgreement:
    found = pairs(verdicts)
    score = agreement([display(p.first.expected) for p in found], [display(p.second.expected) for p in found])
    mine = [p for p in found if me in (p.first.reviewer, p.second.reviewer)]
    disputes = [p for p in mine if not p.agree]
    paired = {p.call_id for p in found}
    waiting = sum(1 for v in verdicts if v.reviewer == me and v.lab_state == "held" and v.call_id not in paired)
    listed = [_dispute(p, me) for p in disputes[:MAX_LISTED]]
    if len(disputes) > MAX_LISTED:
        listed.append(f"... and {len(disputes) - MAX_LISTED} more")
    return TeamAgreement(reviewers=reviewers, overlap=overlap, shared_calls=len(found), agreed=score.agreed,
                         kappa=score.kappa if len(found) >= 2 else None, waiting=waiting, to_settle=listed)


def _dispute(pair: Pair, me: str) -> str:
    mine, theirs = (pair.first, pair.second) if pair.first.reviewer == me else (pair.second, pair.first)
    return f"call {pair.call_id}: you said {display(mine.expected)}, {theirs.reviewer} said {display(theirs.expected)}"


def describe(team: TeamAgreement) -> str:
    """One line for an auto-improve answer: what the people agreed on before the optimizer learns from it."""
    kappa = "n/a" if team.kappa is None else f"{team.kappa:.2f}"
    held = f"; {len(team.to_settle)} of your disagreements held back until settled" if team.to_settle else ""
    return (f"reviewers agreed on {team.agreed} of {team.shared_calls} shared calls (kappa {kappa}){held}")
