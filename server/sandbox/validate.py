"""Readers for request bodies and query strings, with DRF's error wording."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, field_error

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
BAD_INT = "A valid integer is required."
BAD_BOOL = "Must be a valid boolean."
BAD_STR = "Not a valid string."

Body = dict[str, Any]


def as_object(raw: object) -> Body:
    if not isinstance(raw, dict):
        kind = type(raw).__name__ if raw is not None else "null"
        raise ApiError(400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]})
    return raw


def to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def req_int(body: Mapping[str, Any], field: str) -> int:
    if field not in body:
        raise field_error(field, REQUIRED)
    value = opt_int(body, field)
    if value is None:
        raise field_error(field, NOT_NULL)
    return value


def opt_int(body: Mapping[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    number = to_int(value)
    if number is None:
        raise field_error(field, BAD_INT)
    return number


def opt_str(body: Mapping[str, Any], field: str, nullable: bool = False) -> str | None:
    if field not in body:
        return None
    value = body[field]
    if value is None:
        if nullable:
            return None
        raise field_error(field, NOT_NULL)
    if not isinstance(value, str):
        raise field_error(field, BAD_STR)
    return value


def opt_bool(body: Mapping[str, Any], field: str, nullable: bool = False) -> bool | None:
    if field not in body:
        return None
    value = body[field]
    if value is None and nullable:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise field_error(field, BAD_BOOL)


def int_list(body: Mapping[str, Any], field: str, required: bool = True) -> list[int] | None:
    if field not in body:
        if required:
            raise field_error(field, REQUIRED)
        return None
    value = body[field]
    if not isinstance(value, list):
        raise field_error(field, f'Expected a list of items but got type "{type(value).__name__}".')
    numbers = [to_int(v) for v in value]
    if any(n is None for n in numbers):
        raise field_error(field, "Every item must be an integer id.")
    return [n for n in numbers if n is not None]


def choice(body: Mapping[str, Any], field: str, choices: Sequence[str]) -> str | None:
    value = opt_str(body, field)
    if value is not None and value not in choices:
        raise field_error(field, f'"{value}" is not a valid choice.')
    return value


def query_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    number = to_int(raw)
    if number is None:
        raise field_error(name, BAD_INT)
    return number


def parse_moment(raw: str) -> datetime | None:
    """ISO 8601, forgiving a '+' that arrived as a space because the client did not encode it."""
    text = raw.strip()
    candidates = [text]
    if " " in text:
        head, _, tail = text.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None
