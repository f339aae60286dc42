"""Every MCP tool, registered in one place. Annotations are set here, on the cautious side: a tool is
read-only only if it never changes anything on Cekura; every tool is open-world (it talks to Cekura)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cekura_labs_mcp.tools._common import compact_text
from cekura_labs_mcp.tools.calls import get_call, get_metric, list_calls, list_metrics
from cekura_labs_mcp.tools.evaluate import evaluate_metrics, rerun_evaluation, spend_log
from cekura_labs_mcp.tools.feedback import create_test_set_from_call, mark_metric_vote
from cekura_labs_mcp.tools.improve import (
    answer_improvement_question,
    apply_proposal,
    cancel_improvement,
    patch_metric,
    poll_progress,
    process_feedbacks,
    rollback_metric,
)
from cekura_labs_mcp.tools.overview import metric_overview
from cekura_labs_mcp.tools.python_metrics import convert_to_custom_code, test_custom_code
from cekura_labs_mcp.tools.review import next_review, record_review, start_review, triage_failures
from cekura_labs_mcp.tools.validate import add_regressions_to_lab, judge_change, validate_metric
from mcp.server import MCPServer
from mcp.types import ToolAnnotations


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    title: str
    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    # Replaces the docstring's last sentence on a read-only server, where it would point at a write.
    read_only_ending: str = ""

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def description(self) -> str:
        """The docstring as one paragraph: its line breaks and indentation are not worth tokens."""
        return " ".join((self.fn.__doc__ or "").split())

    def description_for(self, read_only: bool) -> str:
        if not (read_only and self.read_only_ending):
            return self.description
        head, _, _last = self.description.rstrip(".").rpartition(". ")
        return f"{head}. {self.read_only_ending}"

    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=None if self.read_only else self.destructive,
            idempotent_hint=True if self.read_only else self.idempotent,
            open_world_hint=True,
        )


READ_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(metric_overview, "Which metric to improve first", read_only=True),
    ToolSpec(list_calls, "List calls with a metric's results", read_only=True),
    ToolSpec(get_call, "Read one call for review", read_only=True,
             read_only_ending="Then discuss with the person whether the result holds (nothing is recorded here)."),
    ToolSpec(list_metrics, "List an agent's metrics", read_only=True),
    ToolSpec(get_metric, "Read a metric's full prompt", read_only=True),
    ToolSpec(spend_log, "What the cost guard allowed and refused", read_only=True),
    ToolSpec(poll_progress, "Wait for an auto-improve run", read_only=True),
    ToolSpec(next_review, "Next call to review", read_only=True,
             read_only_ending="Show it and discuss it with the person; read-only: no verdict is recorded."),
    ToolSpec(triage_failures, "Group a metric's failures into causes", read_only=True),
)

WRITE_TOOLS: tuple[ToolSpec, ...] = (
    # A new vote replaces the person's earlier vote on the same result.
    ToolSpec(mark_metric_vote, "Vote on a metric result", read_only=False, destructive=True, idempotent=True),
    ToolSpec(create_test_set_from_call, "Add a call to a metric's Lab", read_only=False),
    ToolSpec(process_feedbacks, "Start auto-improve for a metric", read_only=False),
    ToolSpec(answer_improvement_question, "Answer an auto-improve question", read_only=False),
    ToolSpec(cancel_improvement, "Cancel an auto-improve run", read_only=False, destructive=True, idempotent=True),
    ToolSpec(apply_proposal, "Apply or dismiss an auto-improve proposal (with confirmation)", read_only=False,
             destructive=True, idempotent=True),
    ToolSpec(patch_metric, "Change a metric's prompt (with confirmation)", read_only=False, destructive=True,
             idempotent=True),
    ToolSpec(rollback_metric, "Restore a metric's previous prompt", read_only=False, destructive=True,
             idempotent=True),
    ToolSpec(rerun_evaluation, "Re-run evaluation (costs credits, guarded)", read_only=False, destructive=True),
    ToolSpec(evaluate_metrics, "Evaluate metrics on calls (costs credits, guarded)", read_only=False,
             destructive=True),
    # Writes only to the server's own ledger (the session and its auto-improve setting).
    ToolSpec(start_review, "Start or resume a review session", read_only=False, idempotent=True),
    ToolSpec(record_review, "Record the person's verdict on a call", read_only=False),
    ToolSpec(validate_metric, "Regression check of a changed metric (costs credits, guarded)", read_only=False,
             destructive=True),
    # Writes only to the server's ledger: a verdict replaces the earlier one on the same call.
    ToolSpec(judge_change, "Record the person's verdict on a changed result", read_only=False, idempotent=True),
    ToolSpec(add_regressions_to_lab, "Add rejected regressions to the Lab (with confirmation)", read_only=False),
    # Run code locally; change nothing on Cekura. Only the code's own judge calls spend (guarded).
    ToolSpec(test_custom_code, "Test custom_code locally on calls (judge calls guarded)", read_only=False),
    ToolSpec(convert_to_custom_code, "Draft custom_code from a judge prompt, tested on reviewed calls",
             read_only=False),
)

ALL_TOOLS: tuple[ToolSpec, ...] = READ_TOOLS + WRITE_TOOLS


def register_tools(server: MCPServer[Any], *, read_only: bool = False) -> None:
    """`read_only`: a lockdown for exploring a real account - no tool that writes to or spends on Cekura is
    even offered, so no prompt can talk the assistant into one."""
    for spec in READ_TOOLS if read_only else ALL_TOOLS:
        server.add_tool(compact_text(spec.fn), name=spec.name, title=spec.title,
                        description=spec.description_for(read_only),
                        annotations=spec.annotations(), structured_output=True)
        _compact_schemas(server, spec.name)


def _compact_schemas(server: MCPServer[Any], name: str) -> None:
    """Every client reads tools/list into the model's context, so the published schemas carry no noise:
    no pydantic-generated `title`s ("Call Id" for `call_id`), `X | None` written as a type list, and in
    output schemas no defaults and no descriptions of nested models (the top-level fields keep theirs).
    Validation is unchanged: each rewrite is equivalent JSON Schema."""
    tool = server._tool_manager.get_tool(name)  # the SDK has no public hook for the published schema
    if tool is None:
        return
    tool.parameters = lean_input_schema(compact_schema(tool.parameters))
    if tool.fn_metadata.output_schema is not None:
        tool.fn_metadata.output_schema = inline_refs(compact_schema(tool.fn_metadata.output_schema, output=True))


_NOISE = frozenset({"title"})
_OUTPUT_NOISE = frozenset({"title", "default"})


def compact_schema(schema: Any, *, output: bool = False, nested: bool = False, is_mapping: bool = False) -> Any:
    """`is_mapping`: `schema` is a `properties`/`$defs` mapping, whose keys are names, not keywords."""
    if isinstance(schema, list):
        return [compact_schema(item, output=output, nested=nested) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if is_mapping:
        return {key: compact_schema(value, output=output, nested=nested) for key, value in schema.items()}
    noise = _OUTPUT_NOISE | ({"description"} if output and nested else set()) if output else _NOISE
    kept = {key: compact_schema(value, output=output, nested=nested or key == "$defs",
                                is_mapping=key in ("properties", "$defs"))
            for key, value in schema.items() if not (key in noise and isinstance(value, str | int | float | None))}
    return _collapse_nullable(kept)


def _collapse_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(o for o in options if o != {"type": "null"})
        if isinstance(other, dict) and set(other) == {"type"} and isinstance(other["type"], str):
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**rest, "type": [other["type"], "null"]}
    return schema


# Bounds the server enforces anyway (a breach is answered with one line naming the field and the limit): in the
# published schema they cost tokens in every conversation and tell the model nothing it needs to call right.
_ENFORCED_BOUNDS = frozenset({"maxLength", "maxItems", "maxProperties"})


def lean_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema as the model reads it. An optional argument whose default is null is written as its
    plain type (leaving it out is how a model says "none"), anti-abuse length bounds go, and so does
    `minimum: 1` on ids. The server still validates every call against the full signature, so nothing the
    schema no longer says is accepted: the rewrite only drops what costs tokens without guiding the call."""
    required = set(schema.get("required", []))
    properties = {name: _lean_property(name, prop, optional=name not in required)
                  for name, prop in schema.get("properties", {}).items()}
    lean = {**schema, "properties": properties} if "properties" in schema else dict(schema)
    if "$defs" in schema:
        lean["$defs"] = {name: _without_bounds(definition, is_id=False) for name, definition in schema["$defs"].items()}
    return lean


def _lean_property(name: str, prop: Any, *, optional: bool) -> Any:
    if not isinstance(prop, dict):
        return prop
    lean = _without_bounds(prop, is_id=name.endswith(("_id", "_ids")))
    if optional and "default" in lean and lean["default"] is None:
        lean = {k: v for k, v in lean.items() if k != "default"}
        options = lean.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            base = {k: v for k, v in lean.items() if k != "anyOf"}
            lean = {**base, **rest[0]} if len(rest) == 1 and isinstance(rest[0], dict) else {**base, "anyOf": rest}
        kind = lean.get("type")
        if isinstance(kind, list) and "null" in kind:
            kept = [k for k in kind if k != "null"]
            lean["type"] = kept[0] if len(kept) == 1 else kept
    return lean


def _without_bounds(schema: Any, *, is_id: bool) -> Any:
    if isinstance(schema, list):
        return [_without_bounds(item, is_id=is_id) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ENFORCED_BOUNDS or (is_id and key == "minimum" and value == 1):
            continue
        if key == "properties" and isinstance(value, dict):
            kept[key] = {n: _without_bounds(v, is_id=n.endswith(("_id", "_ids"))) for n, v in value.items()}
        else:
            kept[key] = _without_bounds(value, is_id=is_id)
    return kept


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every `$ref` to its own `$defs` replaced by the definition, when none is recursive.
    Clients validate each result against the output schema; resolving references for every transcript turn
    was a third of that validation's time (jsonschema's `referencing`), and an inlined schema is no longer."""
    definitions = schema.get("$defs")
    if not isinstance(definitions, dict):
        return schema

    def expand(node: Any, trail: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [expand(item, trail) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in trail or name not in definitions:
                raise _Recursive
            rest = {k: expand(v, trail) for k, v in node.items() if k != "$ref"}
            return {**expand(definitions[name], (*trail, name)), **rest}
        return {k: expand(v, trail) for k, v in node.items() if k != "$defs"}

    try:
        inlined: dict[str, Any] = expand(schema, ())
    except _Recursive:
        return schema
    return inlined


class _Recursive(Exception):
    """A definition refers to itself (directly or not): such a schema keeps its references."""
