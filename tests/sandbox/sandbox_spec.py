"""Validate sandbox answers against the spec's own component schemas (tests/spec/...json).

The loaded copy is patched for two OpenAPI 3.0 leftovers that JSON Schema 2020-12 reads differently:
`nullable: true` (null allowed), and drf-spectacular's `oneOf: [{}, {"type": "null"}]` for "any
value or null", which strict `oneOf` would reject for null (both branches match).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "spec" / "cekura-openapi-subset.json"
SPEC_URI = "urn:cekura-openapi-subset"
ANY_OR_NULL = [{}, {"type": "null"}]


def _patch(node: Any) -> Any:
    if isinstance(node, dict):
        patched = {k: _patch(v) for k, v in node.items()}
        if patched.pop("nullable", False) and isinstance(patched.get("type"), str):
            patched["type"] = [patched["type"], "null"]
        if patched.get("oneOf") == ANY_OR_NULL:
            del patched["oneOf"]
        return patched
    if isinstance(node, list):
        return [_patch(v) for v in node]
    return node


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = _patch(json.loads(SPEC_PATH.read_text()))
    return loaded


RESULT_SCHEMAS = ("CallLogListSerializerMetrics", "CallLogListSerializerMetricsWithExplanation")


@lru_cache(maxsize=1)
def documented_spec() -> dict[str, Any]:
    """The spec with its metric-result schemas read by their own field text, as the `documented` dialect
    serves them: `score` "present if metric type is not enum", `enum` / `value` "present if metric type
    is enum", so none of the three is required, and each may be null (N/A)."""
    loaded: dict[str, Any] = _patch(json.loads(SPEC_PATH.read_text()))
    for name in RESULT_SCHEMAS:
        schema = loaded["components"]["schemas"][name]
        schema["required"] = [f for f in schema["required"] if f not in ("score", "enum", "value")]
        for field in ("score", "enum", "value"):
            schema["properties"][field]["type"] = [schema["properties"][field]["type"], "null"]
    return loaded


@lru_cache(maxsize=2)
def _registry(documented: bool = False) -> Registry[Any]:
    contents = documented_spec() if documented else spec()
    resource: Resource[Any] = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def validator(schema: dict[str, Any], documented: bool = False) -> Draft202012Validator:
    return Draft202012Validator(_rebase(schema), registry=_registry(documented))


def _rebase(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (SPEC_URI + v if k == "$ref" and v.startswith("#") else _rebase(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def assert_component(instance: Any, name: str, documented: bool = False) -> None:
    """`instance` is a valid `#/components/schemas/<name>`."""
    errors = sorted(validator({"$ref": f"#/components/schemas/{name}"}, documented).iter_errors(instance), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    operation = spec()["paths"][path][method.lower()]
    schema: dict[str, Any] = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    return schema


def assert_response(method: str, path: str, status: int, body: Any, documented: bool = False) -> None:
    """`body` matches what the spec documents for `method path` answering `status` (`documented`: with
    the metric-result schemas read by their field text, see `documented_spec`)."""
    errors = sorted(validator(response_schema(method, path, status), documented).iter_errors(body), key=str)
    assert not errors, f"{method} {path}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
