"""An LLM-judge prompt turned into a custom_code draft.

The draft keeps the judge and the prompt (already validated on reviewed calls) and moves into code
only what needs no judgement: which speakers' turns the prompt reads (the judge then sees less, so it
costs less and drifts less) and the prompt's own "N/A when X said fewer than N things" rule. The draft
is plain, commented Python the person can read and edit; it is tested on the reviewed calls before
it is proposed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cekura_labs_mcp.server.cekura.models import Metric

AGENT = "Main Agent"
CALLER = "Testing Agent"
JUDGE_EVAL_TYPES = {"binary": "binary_workflow_adherence", "continuous_qualitative": "continuous_qualitative",
                    "numeric": "numeric", "enum": "enum"}
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10}
_AGENT_WORDS = re.compile(r"\b(agent|assistant|bot|main agent|representative)s?\b", re.IGNORECASE)
_CALLER_WORDS = re.compile(r"\b(caller|customer|user|patient|client|testing agent)s?('s)?\b", re.IGNORECASE)
_MIN_TURNS = re.compile(
    r"\b(?P<who>agent|caller|customer|user|patient)\b[^.\n]{0,40}?\b(?:spoke|said|speaks|says)\s+"
    r"(?:fewer|less)\s+than\s+(?P<n>\d+|one|two|three|four|five|six|seven|eight|nine|ten)\s+"
    r"(?:turns?|things?|times?|messages?)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


@dataclass
class Draft:
    code: str
    speakers: list[str] | None
    min_turns: dict[str, int]
    placeholders: list[str]
    steps: list[str] = field(default_factory=list)


def speakers_needed(prompt: str) -> list[str] | None:
    """The roles whose turns the prompt reads; None when it reads both (or names neither)."""
    agent = bool(_AGENT_WORDS.search(prompt))
    caller = bool(_CALLER_WORDS.search(prompt))
    if agent and not caller:
        return [AGENT]
    if caller and not agent:
        return [CALLER]
    return None


def minimum_turns(prompt: str) -> dict[str, int]:
    """The prompt's "N/A: the agent spoke fewer than three turns" rules, by role."""
    rules: dict[str, int] = {}
    for match in _MIN_TURNS.finditer(prompt):
        raw = match.group("n").lower()
        count = int(raw) if raw.isdigit() else _NUMBERS[raw]
        role = AGENT if match.group("who").lower() == "agent" else CALLER
        rules[role] = max(rules.get(role, 0), count)
    return rules


def draft_from_prompt(metric: Metric) -> Draft:
    prompt = metric.description
    speakers = speakers_needed(prompt)
    rules = minimum_turns(prompt)
    placeholders = sorted(set(_PLACEHOLDER.findall(prompt)))
    steps = [
        "passes the judge " + ("only the " + " and ".join(_role_name(r) for r in speakers) + "'s turns"
                                    if speakers else "the whole call (the prompt reads both speakers)"),
        *(f"answers N/A in code when the {_role_name(role)} has fewer than {n} turns (the prompt's rule), "
          "without a judge call" for role, n in rules.items()),
        "asks the judge with the metric's prompt, unchanged"
        + (f" (its {{{{...}}}} variables {placeholders} are filled from data)" if placeholders else ""),
    ]
    return Draft(code=_render(metric, speakers, rules), speakers=speakers, min_turns=rules,
                 placeholders=placeholders, steps=steps)


def _role_name(role: str) -> str:
    return "agent" if role == AGENT else "caller"


def _literal(text: str) -> str:
    if '"""' in text or "\\" in text or text.endswith('"'):
        return repr(text)
    return '"""' + text + '"""'


def _render(metric: Metric, speakers: list[str] | None, rules: dict[str, int]) -> str:
    eval_type = JUDGE_EVAL_TYPES.get(metric.eval_type, metric.eval_type)
    lines = [
        f"# custom_code for metric {metric.id} ({metric.name}), converted from its LLM-judge prompt.",
        "# Code settles what needs no judgement; the judge keeps the prompt that was validated on reviewed calls.",
        "",
        f"PROMPT = {_literal(metric.description)}",
        f"EVAL_TYPE = {eval_type!r}",
        f"ENUM_VALUES = {list(metric.enum_values or []) if metric.eval_type == 'enum' else None!r}",
        f"SPEAKERS = {speakers!r}  # whose turns the judge sees; None = the whole call",
        f"MIN_TURNS = {rules!r}  # N/A below this many turns, per the prompt",
        "",
        "",
        "def clock(seconds):",
        "    seconds = int(seconds or 0)",
        '    return "%02d:%02d" % (seconds // 60, seconds % 60)',
        "",
        "",
        'turns = list(data.get("transcript_json") or [])',
        'counts = {role: sum(1 for t in turns if t.get("role") == role) for role in MIN_TURNS}',
        "short = [(role, n) for role, n in MIN_TURNS.items() if counts[role] < n]",
        "",
        "if short:",
        "    role, needed = short[0]",
        "    _result = None",
        '    _explanation = (f"The {role} spoke {counts[role]} turn(s), fewer than {needed}: "',
        '                    "N/A by the metric\'s own rule.")',
        "else:",
        "    judged = dict(data)",
        "    if SPEAKERS is not None:",
        '        kept = [t for t in turns if t.get("role") in SPEAKERS]',
        '        judged["transcript_json"] = kept',
        '        judged["transcript"] = "\\n".join(',
        '            f"[{clock(t.get(\'start_time\'))}] {t.get(\'role\')}: {t.get(\'content\')}" for t in kept)',
        "    verdict = evaluate_llm_judge_metric(judged, description=PROMPT, eval_type=EVAL_TYPE,",
        "                                        enum_values=ENUM_VALUES)",
        '    result = verdict.get("result")',
        *_result_lines(metric.eval_type),
        '    _explanation = verdict.get("explanation") or ["The judge gave no explanation."]',
        "",
    ]
    return "\n".join(lines)


def _result_lines(eval_type: str) -> list[str]:
    if eval_type == "binary":
        return ["    # The judge answers 0 or 5 for binary metrics.",
                "    _result = result if result is None or isinstance(result, bool) else float(result) >= 2.5"]
    if eval_type in ("numeric", "continuous_qualitative"):
        return ["    _result = None if result is None else float(result)"]
    return ["    _result = result"]
