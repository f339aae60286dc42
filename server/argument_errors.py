"""Arguments that fail the tool's input schema come back from the SDK as pydantic's multi-line report
(error types, links to pydantic's docs). This middleware rewrites that report into the server's own
one-line form: which argument, what is wrong with it, and what to do."""

from __future__ import annotations

import re
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

_HEADER = re.compile(r"^Error executing tool (?P<tool>[\w-]+): \d+ validation errors? for \w+Arguments$")
_MAX_PROBLEMS = 5


def rewrite_validation_report(text: str) -> str | None:
    """pydantic's report → `Error executing tool T: [invalid_input] Invalid argument `field`: problem; ...
    Hint: ...` (the shape of every other tool error), or None if `text` is not such a report."""
    lines = text.splitlines()
    if not lines or not (header := _HEADER.match(lines[0])):
        return None
    problems: list[str] = []
    field: str | None = None
    for line in lines[1:]:
        if not line.startswith(" "):
            field = line.strip()
        elif field is not None and not line.startswith("    "):
            # The message, then pydantic's "[type=..., input_value=..., ...]" (the input may hold brackets).
            message = line.strip().rsplit(" [type=", 1)[0].removeprefix("Value error, ")
            problems.append(f"`{field}`: {message}")
            field = None
    if not problems:
        return None
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
    tool = header.group("tool")
    return (f"Error executing tool {tool}: [invalid_input] Invalid argument {shown}{more}. Nothing was sent. "
            f"Hint: fix the named argument(s) as the {tool} tool's input schema describes, and call it again.")


class ArgumentErrors:
    """`ServerMiddleware`: rewrites the text of `tools/call` results that are argument-validation reports."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not isinstance(result, dict) or not result.get("isError"):
            return result
        content = result.get("content")
        if isinstance(content, list) and content and isinstance(content[0], dict):
            rewritten = rewrite_validation_report(str(content[0].get("text", "")))
            if rewritten is not None:
                content[0] = {**content[0], "text": rewritten}
        return result
