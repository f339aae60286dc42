"""`{{variable}}` placeholders in a judge description, rendered as Cekura's variable reference defines them.

Custom code may pass `evaluate_llm_judge_metric` a description holding `{{transcript}}`,
`{{dynamic_variables.order_number}}`, `{{agent.description}}`, ... (`python-metric.mdx`: "You can use
context variables in the description using `{{variable}}` syntax"; the list is `metric-variables.mdx`).
The server renders them from the `data` the code passed and the call's agent before the judge call, so
the judge sees the same text on the sandbox and on Cekura, and a typo fails here, naming the placeholder,
instead of reaching a paid judge as literal braces.

For an observability call (what this server reads):
- system variables: `transcript`, `call_end_reason`, `date`, `timestamp`;
- namespaces: `dynamic_variables.*`, `agent.*` (`description`, `name`, `language`, `inbound`,
  `contact_number`) and `metadata.*`. The reference's table marks `metadata.*` simulation-only, while its
  own text says custom metadata sent through the observability API is accessible: the server follows the
  text (and Python code has `data["metadata"]` either way);
- dot and bracket notation (`{{metadata.customer_id}}`, `{{metadata["customer_id"]}}`), nested keys, and a
  bare namespace (`{{dynamic_variables}}`, as Cekura's section-extraction example uses) as JSON;
- simulation-only variables (`test_profile.*`, `provider_call_data.*`, `evaluator.*`, `provider_call_id`)
  and anything else are errors naming the placeholder. A known namespace without the key ("Not all
  variables exist in every call") renders empty and is reported; Cekura's material does not say what it
  renders there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_PATH_PART = re.compile(r"""\.?([A-Za-z_][\w-]*)|\[\s*(?:"([^"]*)"|'([^']*)'|(\d+))\s*\]""")
SYSTEM_VARIABLES = ("transcript", "call_end_reason", "date", "timestamp")
NAMESPACES = ("metadata", "dynamic_variables", "agent")
AGENT_FIELDS = ("description", "name", "language", "inbound", "contact_number")
SIMULATION_ONLY = ("test_profile", "provider_call_data", "evaluator", "provider_call_id")


class PlaceholderError(ValueError):
    """A placeholder the variable reference does not offer on an observability call."""


@dataclass
class Rendered:
    text: str
    missing: list[str] = field(default_factory=list)


def placeholders(text: str) -> list[str]:
    return [match.group(1) for match in PLACEHOLDER.finditer(text)]


def render(text: str, data: Mapping[str, Any], agent: Mapping[str, Any]) -> Rendered:
    """`text` with every placeholder replaced; raises PlaceholderError naming the first unknown one."""
    rendered = Rendered(text="")

    def replace(match: re.Match[str]) -> str:
        return _show(_value(match.group(1), data, agent, rendered))

    rendered.text = PLACEHOLDER.sub(replace, text)
    return rendered


def _value(raw: str, data: Mapping[str, Any], agent: Mapping[str, Any], rendered: Rendered) -> Any:
    path = _path(raw)
    if path is None:
        raise PlaceholderError(f"the placeholder {{{{{raw}}}}} is not a variable name")
    root, keys = path[0], path[1:]
    if root in SYSTEM_VARIABLES and not keys:
        return data.get(root, "")
    if root in SIMULATION_ONLY:
        raise PlaceholderError(f"the placeholder {{{{{raw}}}}} is only available on simulation runs, not on "
                               "observability calls (Cekura's variable reference)")
    if root == "agent":
        if keys and keys[0] not in AGENT_FIELDS:
            raise PlaceholderError(f"unknown placeholder {{{{{raw}}}}}: agent.* offers "
                                   f"{', '.join('agent.' + f for f in AGENT_FIELDS)}")
        source: Any = dict(agent)
    elif root in NAMESPACES:
        source = data.get(root) or {}
    else:
        raise PlaceholderError(f"unknown placeholder {{{{{raw}}}}}: observability calls offer "
                               f"{', '.join('{{' + v + '}}' for v in SYSTEM_VARIABLES)} and "
                               f"{', '.join('{{' + n + '.*}}' for n in NAMESPACES)}")
    for key in keys:
        if isinstance(source, Mapping) and key in source:
            source = source[key]
        elif isinstance(source, list) and key.isdigit() and int(key) < len(source):
            source = source[int(key)]
        else:
            rendered.missing.append(raw)
            return ""
    return source


def _path(raw: str) -> list[str] | None:
    parts: list[str] = []
    position = 0
    while position < len(raw):
        match = _PATH_PART.match(raw, position)
        if match is None or (position == 0 and not match.group(1)) or (position > 0 and match.group(0) == ""):
            return None
        parts.append(next(g for g in match.groups() if g is not None))
        position = match.end()
    return parts or None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)
