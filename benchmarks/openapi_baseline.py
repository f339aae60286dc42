"""The obvious alternative, for comparison: an MCP server generated from Cekura's OpenAPI document, one
tool per operation, whose tools answer with the API's raw JSON.

Its `tools/list` is built here the way such generators build it (name from `operationId`, description
from summary and description, input schema from the parameters plus the request body, `$ref`s inlined).
It is built from the spec subset this project keeps (the 17 operations the labs cycle touches), not the
whole Cekura API, and without output schemas: both choices make the baseline smaller, never larger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import SPEC

METHODS = ("get", "post", "put", "patch", "delete")


def _resolve(spec: dict[str, Any], node: Any, seen: frozenset[str] = frozenset(), writing: bool = False) -> Any:
    if isinstance(node, list):
        return [_resolve(spec, item, seen, writing) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return {"type": "object"}
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(spec, target, seen | {ref}, writing)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and writing and isinstance(value, dict):
            # Read-only fields are not sent, so a generator leaves them out of a request body.
            value = {k: v for k, v in value.items() if not (isinstance(v, dict) and v.get("readOnly"))}
        out[key] = _resolve(spec, value, seen, writing)
    return out


def openapi_tools(path: Path = SPEC) -> list[dict[str, Any]]:
    spec = json.loads(path.read_text())
    tools: list[dict[str, Any]] = []
    for route, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            properties: dict[str, Any] = {}
            required: list[str] = []
            for raw in [*item.get("parameters", []), *operation.get("parameters", [])]:
                parameter = _resolve(spec, raw)
                schema = dict(parameter.get("schema", {}))
                if parameter.get("description"):
                    schema["description"] = parameter["description"]
                properties[parameter["name"]] = schema
                if parameter.get("required"):
                    required.append(parameter["name"])
            body = operation.get("requestBody")
            if isinstance(body, dict):
                content = body.get("content", {})
                media = content.get("application/json") or next(iter(content.values()), {})
                if "schema" in media:
                    properties["body"] = _resolve(spec, media["schema"], writing=True)
                    if body.get("required"):
                        required.append("body")
            name = operation.get("operationId") or f"{method}_{route.strip('/').replace('/', '_')}"
            description = "\n\n".join(p for p in (operation.get("summary"), operation.get("description")) if p)
            tools.append({"name": name, "description": description,
                          "inputSchema": {"type": "object", "properties": properties, "required": required}})
    return tools
