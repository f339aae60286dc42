"""Auto-improve (Cekura's Labs `process_feedbacks`), its polling, and applying a change safely."""

from __future__ import annotations

import difflib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.cekura.models import ImprovementProposal, Metric, MetricPatch, Score
from cekura_labs_mcp.server.custom_code.checks import syntax_error
from cekura_labs_mcp.server.errors import CekuraError, InputError, LabsError, OutcomeUnknownError
from cekura_labs_mcp.server.state import Ledger
from pydantic import BaseModel, Field

ProgressCallback = Callable[[float, str], Awaitable[None]]
MAX_DIFF_LINES = 120


class ImprovementStarted(BaseModel):
    metric_id: int
    progress_id: str
    test_set_ids: list[int] | None = Field(description="The Lab test sets used; null means all of the Lab.")
    next_step: str


class ScoreView(BaseModel):
    correct: int | None = None
    total: int | None = None
    score: float | None = None


class ImprovementResult(BaseModel):
    progress_id: str
    done: bool
    status: str | None = None
    message: str
    metric_id: int | None = None
    diff: str | None = Field(default=None, description="Unified diff: current description → proposed.")
    proposed_description: str | None = None
    proposed_type: str | None = None
    proposed_custom_code: str | None = None
    old_score: ScoreView | None = None
    new_score: ScoreView | None = None
    summary: str | None = None
    unresolved: int = 0


class PatchPreview(BaseModel):
    metric_id: int
    name: str
    applied: bool
    diff: str
    message: str
    version_id: int | None = Field(default=None, description="Ledger id of the saved previous version.")


def description_diff(old: str, new: str, old_label: str = "current", new_label: str = "proposed") -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, lineterm="", n=2))
    if not lines:
        return "(no change)"
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"… {len(lines) - MAX_DIFF_LINES} more diff lines"]
    return "\n".join(lines)


def _score(score: Score | None) -> ScoreView | None:
    if score is None:
        return None
    return ScoreView(correct=score.num_correct, total=score.num_total, score=score.score)


class ImproveService:
    def __init__(self, client: CekuraClient, ledger: Ledger, poll_interval: float = 1.0) -> None:
        self._client = client
        self._ledger = ledger
        self._interval = poll_interval

    async def start(self, *, metric_id: int, test_set_ids: Sequence[int] | None) -> ImprovementStarted:
        await self._client.get_metric(metric_id)  # a clear "not found" before anything is started
        progress_id = await self._client.process_feedbacks(metric_id=metric_id, test_set_ids=test_set_ids)
        return ImprovementStarted(
            metric_id=metric_id, progress_id=progress_id,
            test_set_ids=list(test_set_ids) if test_set_ids else None,
            next_step=f'Call poll_progress with progress_id="{progress_id}" and metric_id={metric_id}.',
        )

    async def poll(
        self, *, progress_id: str, metric_id: int | None, timeout: float, on_progress: ProgressCallback,
    ) -> ImprovementResult:
        deadline = time.monotonic() + timeout
        wait = self._interval
        max_interval = max(self._interval, 5.0 * self._interval)
        polls = 0
        while True:
            state = await self._client.get_progress(progress_id)
            polls += 1
            if state.done and state.proposal is not None:
                await on_progress(1.0, "auto-improve finished")
                result = await self._finished(progress_id, metric_id, state.proposal)
                self._ledger.record_proposal(progress_id, "completed", result.model_dump())
                return result
            if state.done:
                return ImprovementResult(
                    progress_id=progress_id, done=True, status=state.status, metric_id=metric_id,
                    message=f"Auto-improve ended without a proposal ({state.status}: {state.error or 'no detail'}).",
                )
            await on_progress(state.progress if state.progress is not None else 0.0,
                              f"waiting for auto-improve ({state.status or 'running'}, poll {polls})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ImprovementResult(
                    progress_id=progress_id, done=False, status=state.status, metric_id=metric_id,
                    message=f"Auto-improve is still running after {timeout:g} s ({polls} polls). Nothing is "
                            f'lost: call poll_progress again with progress_id="{progress_id}" to keep waiting.',
                )
            await anyio.sleep(min(wait, remaining))
            wait = min(max_interval, wait * 1.5)

    async def _finished(
        self, progress_id: str, metric_id: int | None, proposal: ImprovementProposal
    ) -> ImprovementResult:
        current = await self._client.get_metric(metric_id) if metric_id is not None else None
        diff = description_diff(current.description, proposal.improved_metric_description) if current else None
        code = proposal.custom_code if proposal.type == "custom_code" and proposal.custom_code else None
        return ImprovementResult(
            progress_id=progress_id, done=True, status="completed", metric_id=metric_id,
            message="Proposal ready. Nothing is applied yet: show the diff and scores to the person, and only "
                    "on their yes call patch_metric with the proposed description and confirm=true.",
            diff=diff, proposed_description=proposal.improved_metric_description,
            proposed_type=proposal.type, proposed_custom_code=code,
            old_score=_score(proposal.old_score), new_score=_score(proposal.new_score),
            summary=proposal.optimization_summary, unresolved=len(proposal.unresolved_samples),
        )

    async def patch(self, *, metric_id: int, patch: MetricPatch, confirm: bool, reason: str) -> PatchPreview:
        if not patch.body():
            raise InputError("description", "nothing to change was given.",
                             "Pass the new description (or custom_code with type=custom_code).")
        if patch.type == "custom_code" and not (patch.custom_code or "").strip():
            raise InputError("custom_code", "type custom_code needs the code.", "Pass custom_code as well.")
        broken = syntax_error(patch.custom_code) if patch.custom_code else None
        if broken is not None:
            raise InputError("custom_code", f"it does not compile: {broken.describe()}.",
                             "Fix it (test_custom_code runs it on calls and shows each error's line); nothing "
                             "was changed.")
        current, diff = await self.preview(metric_id, patch)
        if not confirm:
            return PatchPreview(metric_id=metric_id, name=current.name, applied=False, diff=diff,
                                message="Not applied. Show this diff to the person; if they approve, call "
                                        "patch_metric again with the same change and confirm=true.")
        previous = _snapshot(current, patch)
        # Saved before the PATCH: if the server dies after Cekura applied it, the old text is still here.
        version_id = self._ledger.record_metric_version(metric_id, reason, previous, patch.body())
        try:
            await self._client.patch_metric(metric_id, patch)
        except OutcomeUnknownError:
            raise
        except CekuraError:
            self._ledger.forget_metric_version(version_id)
            raise
        return PatchPreview(metric_id=metric_id, name=current.name, applied=True, diff=diff, version_id=version_id,
                            message=f"Applied. The previous version is saved (version {version_id}); "
                                    "rollback_metric restores it. Re-run the reviewed calls to validate.")

    async def preview(self, metric_id: int, patch: MetricPatch) -> tuple[Metric, str]:
        """The metric as it is now, and the diff the patch would make to it."""
        current = await self._client.get_metric(metric_id)
        return current, self._diff(current, patch)

    def rollback_patch(self, metric_id: int) -> MetricPatch:
        versions = [v for v in self._ledger.metric_versions(metric_id) if v.reason != "rollback"]
        if not versions:
            raise LabsError(f"No earlier version of metric {metric_id} was saved by this server.",
                            "Only changes applied through patch_metric can be rolled back.")
        return MetricPatch.model_validate(versions[0].previous)

    async def rollback(self, *, metric_id: int, confirm: bool) -> PatchPreview:
        return await self.patch(metric_id=metric_id, patch=self.rollback_patch(metric_id), confirm=confirm,
                                reason="rollback")

    @staticmethod
    def _diff(current: Metric, patch: MetricPatch) -> str:
        parts: list[str] = []
        if patch.description is not None:
            parts.append(description_diff(current.description, patch.description))
        if patch.custom_code is not None:
            parts.append(description_diff(current.custom_code or "", patch.custom_code,
                                          "current custom_code", "new custom_code"))
        if patch.type is not None and patch.type != current.type:
            parts.append(f"type: {current.type} → {patch.type}")
        for name in ("evaluation_trigger", "evaluation_trigger_prompt"):
            new = getattr(patch, name)
            if new is not None and new != getattr(current, name):
                parts.append(f"{name}: {getattr(current, name)!r} → {new!r}")
        return "\n".join(parts) or "(no change)"


def _snapshot(current: Metric, patch: MetricPatch) -> dict[str, Any]:
    """The current values of exactly the fields the patch changes."""
    return {name: getattr(current, name) for name in patch.body()}
