"""Telling new evaluation results from old ones.

Cekura evaluates in the background: `evaluate_metrics` and `rerun_evaluation` answer with the calls "in
their current state", which is the state before the new results. So the server never reads "after" from
those answers. It reads each call's `updated_at` (and `success`) just before spending, then polls the call
list with `call_ids` (one request for up to 200 calls) until each call has moved past that mark:

- `updated_at` later than the mark taken before the spend, and
- `success` set again where it was set before (a re-run resets it to null on unreviewed calls while it runs;
  a read showing that reset is remembered, and only a later change counts as the result).

A call whose rows carry no `updated_at` can never be shown to be fresh: it stays "still evaluating" rather
than being reported with a value that may be the old one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import CallRow
from pydantic import BaseModel


class Mark(BaseModel):
    """What a call looked like at one read: enough to recognise a later change."""

    updated_at: str | None = None
    success: bool | None = None


def mark_of(row: CallRow) -> Mark:
    return Mark(updated_at=row.updated_at, success=row.success)


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _later(a: str | None, b: str | None) -> bool:
    first, second = _moment(a), _moment(b)
    if first is None or second is None:
        return False
    if (first.tzinfo is None) != (second.tzinfo is None):
        first, second = first.replace(tzinfo=None), second.replace(tzinfo=None)
    return first > second


def is_reset(base: Mark, now: Mark) -> bool:
    """The call was touched after the spend but its `success` went back to null: evaluation under way."""
    return _later(now.updated_at, base.updated_at) and now.success is None and base.success is not None


def is_fresh(base: Mark, reset: Mark | None, now: Mark) -> bool:
    """True only when `now` is provably a read taken after the new evaluation finished."""
    if not _later(now.updated_at, base.updated_at):
        return False
    if reset is not None and not _later(now.updated_at, reset.updated_at):
        return False
    return now.success is not None or base.success is None


async def read_calls(client: CekuraClient, *, agent_id: int | None, project_id: int | None,
                     call_ids: Sequence[int]) -> dict[int, CallRow]:
    """The listed calls as the list endpoint shows them now: one request per 200 calls."""
    return await client.calls_by_ids(sorted(set(call_ids)), agent_id=agent_id, project_id=project_id)


async def wait_for_fresh(client: CekuraClient, *, agent_id: int | None, project_id: int | None,
                         marks: Mapping[int, Mark], deadline: float, interval: float,
                         ) -> tuple[dict[int, CallRow], list[int]]:
    """Poll the listed calls (one request per 200 per poll, backing off) until each has a result newer than its
    mark, or until `deadline` (a `time.monotonic()` value). Returns the calls read fresh, and those still
    evaluating: their rows may hold old results, so they are never handed back as new."""
    fresh: dict[int, CallRow] = {}
    resets: dict[int, Mark] = {}
    wait = interval
    while True:
        waiting = [call_id for call_id in marks if call_id not in fresh]
        rows = await read_calls(client, agent_id=agent_id, project_id=project_id, call_ids=waiting)
        for call_id in waiting:
            row = rows.get(call_id)
            if row is None:
                continue
            now = mark_of(row)
            if call_id not in resets and is_reset(marks[call_id], now):
                resets[call_id] = now
            elif is_fresh(marks[call_id], resets.get(call_id), now):
                fresh[call_id] = row
        pending = [call_id for call_id in marks if call_id not in fresh]
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            return fresh, pending
        await anyio.sleep(min(wait, remaining))
        wait = min(5 * interval, wait * 1.5)
