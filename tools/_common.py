"""What every tool shares: reaching the server's state, and turning errors into one clear line."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from cekura_labs_mcp.server.context import RunContext
from cekura_labs_mcp.server.errors import InputError, LabsError
from cekura_labs_mcp.server.logs import get_logger
from cekura_labs_mcp.server.steps import MARK
from cekura_labs_mcp.tools.steps import name_tools, name_tools_in
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

P = ParamSpec("P")
R = TypeVar("R")
log = get_logger("tools")
# Cekura's ids are 64-bit: a larger number names nothing (and the ledger's SQLite could not even hold it).
MAX_ID = 2**63 - 1


def run_context(ctx: Context[Any, Any]) -> RunContext:
    state = ctx.request_context.lifespan_context
    if not isinstance(state, RunContext):
        raise ToolError("The server is still starting; try again in a moment.")
    startup = state.startup
    if startup is not None and startup.refused and not startup.reported:
        # A client lists a server whose key was refused as connected: the first answer says it plainly.
        startup.reported = True
        raise ToolError(f"[authentication] {startup.sentence()} Nothing was sent. Hint: {startup.hint}")
    return state


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Every failure reaches the assistant as one actionable line; a crash is logged (to stderr)
    with an id the person can quote, and its details stay on the server."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        outcome = "ok"
        try:
            _check_numbers(kwargs)
            try:
                return await fn(*args, **kwargs)
            except ExceptionGroup as group:  # concurrent reads (a task group) failed: report it like one read
                inner = _labs_error_in(group)
                if inner is None:
                    raise
                raise inner from None
        except LabsError as exc:
            outcome = exc.code
            raise ToolError(f"[{exc.code}] {name_tools(exc.for_assistant())}") from None
        except ToolError:
            outcome = "tool_error"
            raise
        except Exception:
            incident = uuid.uuid4().hex[:8]
            outcome = f"crash:{incident}"
            log.exception("tool_crash", tool=fn.__name__, incident=incident)
            raise ToolError(
                f"[internal] Unexpected failure in {fn.__name__} (incident {incident}); nothing more was "
                "sent. Hint: retry once; if it repeats, report the incident id."
            ) from None
        finally:
            log.info("tool_call", tool=fn.__name__, outcome=outcome,
                     duration_ms=round((time.perf_counter() - started) * 1000, 1))

    return wrapper


def _labs_error_in(group: BaseExceptionGroup[BaseException]) -> LabsError | None:
    """The first LabsError of a group made only of LabsErrors (anything else is a crash)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop(0)
        if isinstance(item, BaseExceptionGroup):
            pending[:0] = list(item.exceptions)
        else:
            leaves.append(item)
    if leaves and all(isinstance(leaf, LabsError) for leaf in leaves):
        first = leaves[0]
        assert isinstance(first, LabsError)
        return first
    return None


def _check_numbers(arguments: dict[str, Any]) -> None:
    for name, value in arguments.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_ID for v in values):
            raise InputError(name, "the number is larger than any Cekura id can be.",
                             "Check the id (list_calls and list_metrics show valid ones).")


def compact_text(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    """The text block clients put in the model's context carries the result as compact JSON: the SDK's
    default indents it, which costs about a quarter more tokens for the same content. The structured
    content is the same as before, and still checked against the tool's output schema by the SDK."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        result = await fn(*args, **kwargs)
        if not isinstance(result, BaseModel):
            return result
        data = result.model_dump(mode="json", by_alias=True)
        # pydantic's own JSON (compact, UTF-8 as is): the same text as json.dumps(data, separators=(",", ":"),
        # ensure_ascii=False), written in Rust in a quarter of the time.
        text = result.model_dump_json(by_alias=True)
        if MARK in text:  # a message from below names a step: write it as the tool's name (tools/steps.py)
            text, data = name_tools(text), name_tools_in(data)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)

    return wrapper
