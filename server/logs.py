"""structlog to stderr only (stdout belongs to the stdio transport), with redaction of secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

REDACTED = "[redacted]"

_SECRET_KEYS = re.compile(r"(api[_-]?key|authorization|token|secret|password|bearer)", re.IGNORECASE)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_HEADER_KEY = re.compile(r"(?i)(x-cekura-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+")
_CREDENTIAL_WORDS = re.compile(r"(?i)bearer|x-cekura-api-key")  # what _BEARER and _HEADER_KEY both start from

_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that any later log line, error or tool result can scrub it by value."""
    if value and len(value) >= 4:
        _known_secrets.add(value)


def scrub(text: str) -> str:
    """Remove every known secret and anything shaped like a credential from free text."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _CREDENTIAL_WORDS.search(text) is None:  # one pass decides for both patterns (every log line comes here)
        return text
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _HEADER_KEY.sub(lambda m: m.group(1) + REDACTED, text)


def _scrub_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):  # most fields of an event; nothing to hide
        return value
    if _SECRET_KEYS.search(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(key, v) for v in value]
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _scrub_value(key, event_dict[key])
    return event_dict


def plain_console(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """One readable line per event (`time [level] event key=value ...`, keys sorted, an exception's traceback
    on the lines after). structlog's ConsoleRenderer says the same but pads, styles and inspects every value:
    at two events a tool call it was a larger share of a call's CPU time than the tool's own code."""
    fields = dict(event_dict)
    stamp = fields.pop("timestamp", "")
    level = fields.pop("level", "")
    event = str(fields.pop("event", ""))
    exception = fields.pop("exception", None)
    pairs = " ".join(f"{key}={_shown(value)}" for key, value in sorted(fields.items()))
    line = f"{stamp} [{level:<8}] {event:<30} {pairs}".rstrip()
    return f"{line}\n{exception}" if exception else line


def _shown(value: Any) -> str:
    if isinstance(value, str) and value and not any(c in value for c in " '\"=\n"):
        return value
    return repr(value)


def _final_scrub(_logger: Any, _method: str, rendered: str) -> str:
    # Last line of defence: the rendered line itself, after every other processor.
    return scrub(rendered)


def configure_logging(
    fmt: Literal["console", "json"] = "console", level: str = "info", stream: Any = None
) -> None:
    out = stream if stream is not None else sys.stderr
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else plain_console
    processors: Iterable[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
        renderer,
        _final_scrub,
    ]
    structlog.configure(
        processors=list(processors),
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (mcp, uvicorn, httpx) must not print to stdout either.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_StdlibScrubber())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


class _StdlibScrubber(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
