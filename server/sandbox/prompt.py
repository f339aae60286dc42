"""Reading a metric description the way the stand-in judge does: `{{variable}}` placeholders rendered per
Cekura's variable reference, then the text split into the documented sections (SCOPE & FOCUS, FAILURE
CONDITIONS, DO NOT FLAG, N/A CONDITIONS, CREDIT, classification labels) and their items.

The structure is documented for metric writers in `docs/sandbox-judge.md`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from .models import Agent, Call
from .render import iso, transcript_items, transcript_text

ItemKind = Literal["failure", "exempt", "na", "credit", "label", "pass"]
SectionKind = Literal["failure", "exempt", "na", "credit", "labels", "scope", "output", "other"]

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_BRACKET = re.compile(r"""^(\w+)\[\s*["']([^"']+)["']\s*\]$""")
# Observability calls (the sandbox's calls) have no simulation scenario: these exist only in simulation runs.
SIMULATION_ONLY = ("test_profile", "provider_call_data", "evaluator", "provider_call_id")
AGENT_FIELDS = ("description", "name", "language", "inbound", "contact_number")
OPEN_NAMESPACES = ("metadata", "dynamic_variables")


class PromptError(ValueError):
    """A description the judge cannot render; the message names the placeholder and the fix."""

    def __init__(self, placeholder: str, message: str) -> None:
        super().__init__(message)
        self.placeholder = placeholder


_QUOTE_RE = re.compile(r"\"([^\"]{3,})\"|“([^”]{3,})”|‘([^’]{3,})’|(?<![\w])'(.{3,}?)'(?![\w])")


def quotes_in(text: str) -> list[str]:
    """The quoted passages of a text ("…", “…”, ‘…’ or '…', an apostrophe inside a word is not a quote)."""
    return [next(g for g in m.groups() if g) for m in _QUOTE_RE.finditer(text)]


def without_quotes(text: str) -> str:
    return _QUOTE_RE.sub(" … ", text)


# --- {{variables}} ---------------------------------------------------------------------------


def placeholders(description: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(description)]


def check_placeholders(description: str) -> None:
    """Raise `PromptError` for the first placeholder that is not in Cekura's variable reference."""
    for name in placeholders(description):
        _split(name)


def _split(name: str) -> tuple[str, str | None]:
    bracket = _BRACKET.match(name)
    if bracket:
        namespace, key = bracket.group(1), bracket.group(2)
    elif "." in name:
        namespace, key = name.split(".", 1)
    else:
        namespace, key = name, None
    known = ("transcript", "transcript_json", "call_end_reason", "date", "timestamp", "agent", *OPEN_NAMESPACES)
    if namespace in SIMULATION_ONLY:
        raise PromptError(name, f"Unknown placeholder {{{{{name}}}}}: {namespace} is only available in simulation "
                          "runs, not on observability call logs. Remove it or use {{dynamic_variables.*}}.")
    if namespace not in known:
        raise PromptError(name, f"Unknown placeholder {{{{{name}}}}}: not a Cekura metric variable. Use one of "
                          "{{transcript}}, {{call_end_reason}}, {{date}}, {{timestamp}}, {{agent.*}}, "
                          "{{metadata.*}}, {{dynamic_variables.*}}.")
    if namespace == "agent" and key is not None and key not in AGENT_FIELDS:
        raise PromptError(name, f"Unknown placeholder {{{{{name}}}}}: the agent has no field '{key}'. Use one of "
                          + ", ".join(f"{{{{agent.{f}}}}}" for f in AGENT_FIELDS) + ".")
    if key is not None and namespace not in ("agent", *OPEN_NAMESPACES):
        raise PromptError(name, f"Unknown placeholder {{{{{name}}}}}: {{{{{namespace}}}}} has no fields.")
    return namespace, key


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, default=str)


def variable_value(name: str, call: Call, agent: Agent | None, today: str) -> str:
    """One placeholder's value for `call`. A key missing from metadata or dynamic variables renders empty
    (Cekura's reference: "Not all variables exist in every call - handle missing values")."""
    namespace, key = _split(name)
    if namespace == "transcript":
        return transcript_text(call)
    if namespace == "transcript_json":
        return _text(transcript_items(call))
    if namespace == "call_end_reason":
        return call.call_ended_reason
    if namespace == "date":
        return today
    if namespace == "timestamp":
        return iso(call.timestamp)
    if namespace == "agent":
        fields = _agent_fields(agent)
        return _text(fields) if key is None else _text(fields[key])
    source = dict(call.metadata) if namespace == "metadata" else dict(call.dynamic_variables)
    if namespace == "metadata":
        source.setdefault("call_end_reason", call.call_ended_reason)
    if key is None:
        return _text(source)
    return _text(source[key]) if key in source else ""


def _agent_fields(agent: Agent | None) -> dict[str, Any]:
    if agent is None:
        return {"description": "", "name": "", "language": "", "inbound": True, "contact_number": ""}
    return {"description": agent.description, "name": agent.name, "language": agent.language,
            "inbound": agent.inbound, "contact_number": agent.contact_number}


def render(description: str, call: Call, agent: Agent | None, today: str) -> str:
    if "{{" not in description:
        return description
    return _PLACEHOLDER.sub(lambda m: variable_value(m.group(1), call, agent, today), description)


@lru_cache(maxsize=512)
def template(description: str) -> str:
    """The description with each placeholder checked and marked, so the structure is read from the metric's
    own text: a transcript rendered into it can never add a section or an item."""
    check_placeholders(description)
    return _PLACEHOLDER.sub(lambda m: "{{" + m.group(1) + "}}", description)


def with_values(prompt: Prompt, call: Call, agent: Agent | None, today: str) -> Prompt:
    """The prompt's items with their placeholders rendered for one call."""
    if not any("{{" in i.text for i in prompt.items):
        return prompt
    items = tuple(Item(i.kind, render(i.text, call, agent, today), i.label) for i in prompt.items)
    return Prompt(items, prompt.labels, prompt.structured)


# --- sections and items ----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    kind: ItemKind
    text: str
    label: str = ""


@dataclass(frozen=True)
class Prompt:
    items: tuple[Item, ...]
    labels: tuple[str, ...]
    structured: bool  # at least one recognised section heading or inline FALSE:/N/A: item

    def of(self, kind: ItemKind) -> list[Item]:
        return [i for i in self.items if i.kind == kind]


_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_INLINE: tuple[tuple[re.Pattern[str], ItemKind], ...] = (
    (re.compile(r"^(?:do not|don't|never) (?:flag|fail|penali[sz]e|credit|count)\b[:\s]*", re.I), "exempt"),
    (re.compile(r"^ignore\b[:\s]*", re.I), "exempt"),
    (re.compile(r"^(?:score |return |mark )?N/?A(?: only)? (?:when|if)\b[:\s]*", re.I), "na"),
    (re.compile(r"^N/?A\s*[:—–-]\s*", re.I), "na"),
    (re.compile(r"^(?:score |return |mark )?FALSE (?:when|if)\b[:\s]*", re.I), "failure"),
    (re.compile(r"^(?:FALSE|FAIL)\s*[:—–-]\s*", re.I), "failure"),
    (re.compile(r"^(?:TRUE|PASS)\s*[:—–-]\s*", re.I), "pass"),
    (re.compile(r"^credit\b[:\s]*", re.I), "credit"),
)
_PROSE_NA = re.compile(r"\b(?:return|score|mark)\s+N/?A\s+(?:only\s+)?(?:when|if)\s+(.+)", re.I)
_PROSE_EXEMPT = re.compile(r"^(?:IGNORE|Does not evaluate|Do not evaluate|Do not flag)\b[:\s]*(.+)", re.I)


def heading_kind(line: str) -> SectionKind | None:
    """The kind of a section heading line, or None when the line is not a heading."""
    text = line.strip().strip("#*").strip()
    if not text or _BULLET.match(line) or len(text) > 80:
        return None
    letters = [c for c in re.sub(r"\(.*?\)", "", text) if c.isalpha()]  # "FAILURE CONDITIONS (Only These Count)"
    upper = letters and sum(c.isupper() for c in letters) / len(letters) >= 0.7
    title = text.endswith(":") and len(text) <= 40 and all(w[:1].isupper() or not w[:1].isalpha()
                                                            for w in text[:-1].split())
    if not upper and not title:  # "FAILURE CONDITIONS", "Do Not Flag:"; not "Only mark as FALSE if:"
        return None
    head = text.upper()
    if re.search(r"DO NOT (?:FLAG|CREDIT|COUNT)|DON'T FLAG|NOT FLAG|FALSE POSITIVES|EXCEPTIONS", head):
        return "exempt"
    if re.search(r"N/A|NOT APPLICABLE", head):
        return "na"
    if re.search(r"FAILURE|FAIL (?:WHEN|IF)", head):
        return "failure"
    if "CREDIT" in head or "WHAT COUNTS" in head:
        return "credit"
    if "SCOPE" in head:
        return "scope"
    if "OUTPUT" in head:
        return "output"
    if re.search(r"CLASSIF|LABELS", head):
        return "labels"
    return "other"


def _label_of(text: str, labels: Sequence[str]) -> tuple[str, str] | None:
    for label in labels:
        match = re.match(r"^\**" + re.escape(label) + r"\**\s*[:—–-]\s*(.*)$", text, re.I | re.S)
        if match:
            return label, match.group(1).strip()
    return None


def _item(text: str, section: SectionKind, labels: Sequence[str]) -> Item | None:
    text = text.strip()
    if not text:
        return None
    labelled = _label_of(text, labels) if labels else None
    if labelled is not None:
        return Item("label", labelled[1], labelled[0])
    for marker, kind in _INLINE:
        match = marker.match(text)
        if match:
            return Item(kind, text[match.end():].strip() or text)
    if section in ("failure", "exempt", "na", "credit"):
        return Item(section, text)
    if section == "scope":
        exempt = _PROSE_EXEMPT.match(text)
        if exempt:
            return Item("exempt", exempt.group(1).strip())
    prose_na = _PROSE_NA.search(text)
    if prose_na and section != "output":
        return Item("na", prose_na.group(1).strip())
    return None


@lru_cache(maxsize=512)
def parse(description: str, labels: tuple[str, ...] = ()) -> Prompt:
    section: SectionKind = "other"
    structured = False
    items: list[Item] = []
    pending: list[str] = []
    pending_bullet = False

    def flush() -> None:
        nonlocal pending, pending_bullet
        if pending:
            joined = " ".join(pending)
            sentences = [joined] if pending_bullet else [s for s in re.split(r"(?<=[.!?])\s+", joined) if s]
            for sentence in sentences:
                item = _item(sentence, section, labels) if pending_bullet or section in ("scope", "other") \
                    else _item(sentence, "other", labels)
                if item is not None:
                    items.append(item)
        pending, pending_bullet = [], False

    for raw in description.splitlines():
        line = raw.rstrip()
        if not line.strip() or set(line.strip()) <= set("-=_*"):
            flush()
            continue
        kind = heading_kind(line)
        if kind is not None:
            flush()
            section = kind
            structured = structured or kind in ("failure", "exempt", "na", "credit", "labels", "scope")
            continue
        bullet = _BULLET.match(line)
        if bullet:
            flush()
            pending, pending_bullet = [line[bullet.end():].strip()], True
        elif pending_bullet and raw[:1].isspace():
            pending.append(line.strip())
        else:
            if pending_bullet:
                flush()
            pending.append(line.strip())
    flush()
    structured = structured or any(i.kind == "failure" for i in items)
    return Prompt(tuple(items), labels, structured)
