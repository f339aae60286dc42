"""An LLM-judge prompt turned into a custom_code draft, in the style Cekura publishes for Python metrics.

The draft keeps the judge and the prompt (already validated on reviewed calls) and moves into code only
what needs no judgement: which speakers' turns the prompt reads (the judge then sees less, so it costs
less and drifts less) and the prompt's own "N/A when X said fewer than N things" rule. On request it
follows the patterns of Cekura's skills (`cekura-metric-design/references/pythonic-patterns.md`):
- a gate on another metric: N/A unless that metric's result is one of the given values (custom code runs
  after every other metric, so its result is in `data`);
- section extraction: only the named sections of the agent description reach the judge (exact heading,
  then keyword overlap), N/A when the description has none of them;
- `VALID_SKIP:` when the prompt has N/A cases: the judge is asked to start its explanation with it, and the
  code turns that into N/A (a binary judge cannot answer N/A itself);
and, always: a judge error is N/A with the reason, never FALSE; `_explanation` is one string.
The draft is plain, commented Python the person can read and edit, with no imports beyond `re`; it is
tested with test_custom_code on the calls before it is proposed.
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
    r"\b(?P<who>agent|caller|customer|user|patient)\s+(?:\w+\s+){0,2}?(?:spoke|said|speaks|says)\s+"
    r"(?:fewer|less)\s+than\s+(?P<n>\d+|one|two|three|four|five|six|seven|eight|nine|ten)\s+"
    r"(?:turns?|things?|times?|messages?)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


_NA_WORDS = re.compile(r"\bN/?A\b|not applicable|does not apply", re.IGNORECASE)


@dataclass(frozen=True)
class Gate:
    """Run only when metric `name`'s result (as code sees it: binary 5/0, enum the label) is in `values`."""

    name: str
    values: tuple[object, ...]


@dataclass
class Draft:
    code: str
    speakers: list[str] | None
    min_turns: dict[str, int]
    placeholders: list[str]
    steps: list[str] = field(default_factory=list)
    gate: Gate | None = None
    sections: tuple[str, ...] = ()
    valid_skip: bool = False


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


def draft_from_prompt(metric: Metric, *, gate: Gate | None = None, sections: tuple[str, ...] = ()) -> Draft:
    prompt = metric.description
    speakers = speakers_needed(prompt)
    rules = minimum_turns(prompt)
    placeholders = sorted(set(_PLACEHOLDER.findall(prompt)))
    valid_skip = bool(_NA_WORDS.search(prompt))
    steps = [
        *([f"answers N/A unless {gate.name!r} is one of {list(gate.values)} (a gate on another metric)"]
          if gate else []),
        *(f"answers N/A in code when the {_role_name(role)} has fewer than {n} turns (the prompt's rule), "
          "without a judge call" for role, n in rules.items()),
        *([f"gives the judge only the agent description's sections {list(sections)} (N/A when it has none)"]
          if sections else []),
        "passes the judge " + ("only the " + " and ".join(_role_name(r) for r in speakers) + "'s turns"
                                    if speakers else "the whole call (the prompt reads both speakers)"),
        "asks the judge with the metric's prompt, unchanged"
        + (f" (its {{{{...}}}} variables {placeholders} are rendered by the judge call)" if placeholders else ""),
        *(["asks the judge to start its explanation with VALID_SKIP: in the prompt's N/A cases, and answers N/A "
           "then"] if valid_skip else []),
        "answers N/A with the reason when the judge call fails (never FALSE)",
    ]
    code = _render(metric, speakers, rules, gate, sections, valid_skip)
    return Draft(code=code, speakers=speakers, min_turns=rules, placeholders=placeholders, steps=steps, gate=gate,
                 sections=sections, valid_skip=valid_skip)


def _role_name(role: str) -> str:
    return "agent" if role == AGENT else "caller"


def _literal(text: str) -> str:
    if '"""' in text or "\\" in text or text.endswith('"'):
        return repr(text)
    return '"""' + text + '"""'


_HELPERS = '''

def clock(seconds):
    seconds = int(seconds or 0)
    return "%02d:%02d" % (seconds // 60, seconds % 60)


def extract_section(text, headings):
    """The agent description's sections under these headings: the exact heading (any case), else the
    heading sharing most of its words (Cekura's section-extraction pattern); "" when none is found."""
    found = []
    for wanted in headings:
        level = len(wanted) - len(wanted.lstrip("#")) or 2
        title = wanted.lstrip("# ").strip()
        match = re.search(r"^#{%d}\\s+%s\\s*$" % (level, re.escape(title)), text, re.MULTILINE | re.IGNORECASE)
        if match is None:
            words = set(re.findall(r"\\w+", title.lower())) - STOP_WORDS
            best = 0.0
            for candidate in re.finditer(r"^#{%d}\\s+(.+?)\\s*$" % level, text, re.MULTILINE):
                theirs = set(re.findall(r"\\w+", candidate.group(1).lower())) - STOP_WORDS
                score = len(words & theirs) / max(len(words), len(theirs)) if words and theirs else 0.0
                if score >= 0.4 and score > best:
                    best, match = score, candidate
        if match is not None:
            rest = text[match.end():]
            following = re.search(r"^#{1,%d}\\s" % level, rest, re.MULTILINE)
            body = rest[:following.start()] if following else rest
            if body.strip():
                found.append(match.group(0).strip() + "\\n" + body.strip())
    return "\\n\\n".join(found)


def as_text(explanation):
    if isinstance(explanation, (list, tuple)):
        return " ".join(str(part) for part in explanation)
    return str(explanation or "")
'''


def _render(metric: Metric, speakers: list[str] | None, rules: dict[str, int], gate: Gate | None,
            sections: tuple[str, ...], valid_skip: bool) -> str:
    eval_type = JUDGE_EVAL_TYPES.get(metric.eval_type, metric.eval_type)
    lines = [
        f"# custom_code for metric {metric.id} ({metric.name}), converted from its LLM-judge prompt.",
        "# Code settles what needs no judgement; the judge keeps the prompt that was validated on reviewed calls.",
        "import re",
        "",
        f"PROMPT = {_literal(metric.description)}",
        f"EVAL_TYPE = {eval_type!r}",
        f"ENUM_VALUES = {list(metric.enum_values or []) if metric.eval_type == 'enum' else None!r}",
        f"SPEAKERS = {speakers!r}  # whose turns the judge sees; None = the whole call",
        f"MIN_TURNS = {rules!r}  # N/A below this many turns, per the prompt",
        f"GATE_METRIC = {gate.name if gate else None!r}  # run only when this metric's result is in GATE_VALUES",
        f"GATE_VALUES = {list(gate.values) if gate else []!r}  # binary results reach code as 5 (pass) / 0 (fail)",
        f"SECTIONS = {list(sections)!r}  # agent-description headings the judge gets; [] = none",
        "SKIP_RULE = " + (repr("\n\nIf this metric does not apply to the call (the N/A cases above), start your "
                               "explanation with \"VALID_SKIP:\" followed by the reason.") if valid_skip else "''"),
        'STOP_WORDS = {"the", "a", "an", "and", "or", "of", "for", "to", "in", "on", "at", "by"}',
        *_HELPERS.splitlines(),
        "",
        "",
        "def evaluate():",
        '    turns = list(data.get("transcript_json") or [])',
        "    if GATE_METRIC is not None:",
        "        upstream = data.get(GATE_METRIC)",
        "        if upstream not in GATE_VALUES:",
        '            return None, f"N/A: runs only when {GATE_METRIC!r} is one of {GATE_VALUES}; it is {upstream!r}."',
        "    for role, needed in MIN_TURNS.items():",
        '        spoken = sum(1 for t in turns if t.get("role") == role)',
        "        if spoken < needed:",
        '            return None, (f"N/A: the {role} spoke {spoken} turn(s), fewer than {needed} "',
        '                          "(the metric\'s own rule).")',
        "    description = PROMPT + SKIP_RULE",
        "    if SECTIONS:",
        '        context = extract_section(data.get("agent_description") or "", SECTIONS)',
        "        if not context:",
        '            return None, f"N/A: the agent description has no section {SECTIONS}."',
        '        if "{{agent.description}}" in description:',
        '            description = description.replace("{{agent.description}}", context)',
        "        else:",
        '            description += ("\\n\\nAGENT INSTRUCTIONS (extracted from the agent description):\\n---\\n"',
        '                            + context + "\\n---")',
        "    judged = dict(data)",
        "    if SPEAKERS is not None:",
        '        kept = [t for t in turns if t.get("role") in SPEAKERS]',
        '        judged["transcript_json"] = kept',
        '        judged["transcript"] = "\\n".join(',
        '            f"[{clock(t.get(\'start_time\'))}] {t.get(\'role\')}: {t.get(\'content\')}" '
        'for t in kept)',
        "    try:",
        "        verdict = evaluate_llm_judge_metric(judged, description=description, eval_type=EVAL_TYPE,",
        "                                            enum_values=ENUM_VALUES)",
        "    except Exception as exc:  # a failed judge call is N/A with its reason, never FALSE",
        '        verdict = {"result": None, "explanation": [f"Judge error: {exc}"]}',
        '    result, explanation = verdict.get("result"), as_text(verdict.get("explanation"))',
        '    if "VALID_SKIP" in explanation.upper():',
        '        return None, "N/A (valid skip): " + re.sub(r"(?i)valid_skip:?\\s*", "", explanation).strip()',
        "    if result is None:",
        '        return None, "N/A: the judge gave no result. " + (explanation or "No reason was given.")',
        *_result_lines(metric.eval_type),
        "",
        "",
        "_result, _explanation = evaluate()",
        "",
    ]
    return "\n".join(lines)


def _result_lines(eval_type: str) -> list[str]:
    if eval_type == "binary":
        return ["    # The judge answers 0 (fail) or 5 (pass) for binary metrics.",
                "    return (result if isinstance(result, bool) else float(result) >= 2.5), explanation"]
    if eval_type in ("numeric", "continuous_qualitative"):
        return ["    return float(result), explanation"]
    return ["    return result, explanation"]
