"""Does what the code set fit the metric? `_result` and `_explanation` checked against its `eval_type`.

Problems are what would make the metric fail or be unreadable on Cekura; warnings are accepted but
worth changing (a string "TRUE" for a binary metric, a label in the wrong case, an empty explanation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cekura_labs_mcp.server.custom_code.runner import CodeError, RunReport, Value

BINARY_TYPES = frozenset({"binary", "binary_workflow_adherence", "binary_qualitative"})
_TRUE_TEXT = {"true", "pass", "yes"}
_FALSE_TEXT = {"false", "fail", "no"}
_NA_TEXT = {"n/a", "na", "none", "null"}

Verdict = bool | float | str | None


@dataclass
class Checked:
    value: Verdict = None
    display: str = "N/A"
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_outputs(report: RunReport, eval_type: str, enum_values: Sequence[str] | None) -> Checked:
    checked = Checked()
    if report.error is not None:
        checked.problems.append(report.error.describe())
        return checked
    if not report.has_result or report.result is None:
        checked.problems.append("`_result` was never set: assign it before the code ends (on every path).")
    else:
        _check_result(checked, report.result, eval_type, list(enum_values or []))
    if not report.has_explanation or report.explanation is None:
        checked.problems.append("`_explanation` was never set: assign a string saying why (on every path).")
    else:
        _check_explanation(checked, report.explanation)
    if report.blocked:
        checked.warnings.append(f"the code tried something the runner blocks ({', '.join(report.blocked)}); "
                                "it would not work on Cekura either, or not in the same way.")
    return checked


def _check_explanation(checked: Checked, raw: Value) -> None:
    """Cekura: "`_explanation` - A string explaining the reasoning". A list is accepted with a warning, not
    refused: Cekura's own example (`_explanation = response.get("explanation")`) assigns the judge's list,
    so refusing would fail code its docs teach; the warning gives the fix."""
    value = raw.value
    if raw.type == "str":
        if not str(value).strip():
            checked.warnings.append("`_explanation` is empty: say why the result is what it is.")
        return
    if raw.type in ("list", "tuple") and isinstance(value, list):
        checked.warnings.append(
            "`_explanation` is a list; Cekura documents a string. It is shown joined here; write "
            "`_explanation = \" \".join(str(e) for e in explanation)` (the judge returns a list).")
        if not value or not " ".join(str(item) for item in value).strip():
            checked.warnings.append("`_explanation` is empty: say why the result is what it is.")
        return
    checked.problems.append(f"`_explanation` is a {raw.type}; set it to a string saying why.")


def _check_result(checked: Checked, raw: Value, eval_type: str, enum_values: list[str]) -> None:
    if raw.value is None and raw.type == "NoneType":
        checked.value, checked.display = None, "N/A"
        return
    if eval_type in BINARY_TYPES:
        _binary(checked, raw)
    elif eval_type == "enum":
        _enum(checked, raw, enum_values)
    elif eval_type in ("numeric", "continuous_qualitative"):
        _number(checked, raw, eval_type)
    else:
        checked.problems.append(f"the metric's eval_type {eval_type!r} is unknown to the checks.")


def _binary(checked: Checked, raw: Value) -> None:
    value = raw.value
    if raw.type == "bool":
        _set(checked, bool(value))
    elif raw.type in ("int", "float") and value in (0, 5, 1):
        _set(checked, value != 0)
        if value == 1:
            checked.warnings.append("`_result` is 1: read as TRUE, but the judge uses 0/5; prefer True/False.")
    elif raw.type == "str" and str(value).strip().lower() in _TRUE_TEXT | _FALSE_TEXT | _NA_TEXT:
        text = str(value).strip().lower()
        _set(checked, None if text in _NA_TEXT else text in _TRUE_TEXT)
        checked.warnings.append(f"`_result` is the string {value!r}; prefer True/False (or None for N/A).")
    else:
        shown = raw.repr or repr(value)
        checked.problems.append(f"`_result` is {shown} ({raw.type}), which does not fit a binary metric: set "
                                "True or False (None for N/A). The judge's 0/5 are accepted too.")


def _enum(checked: Checked, raw: Value, allowed: list[str]) -> None:
    if raw.type != "str":
        checked.problems.append(f"`_result` is a {raw.type}; an enum metric needs one of {allowed} (or None).")
        return
    text = str(raw.value)
    if text in allowed:
        _set(checked, text)
        return
    match = next((label for label in allowed if label.lower() == text.strip().lower()), None)
    if match is not None:
        _set(checked, match)
        checked.warnings.append(f"`_result` {text!r} matches the label {match!r} only ignoring case/spaces.")
    elif text.strip().lower() in _NA_TEXT:
        _set(checked, None)
    else:
        checked.problems.append(f"`_result` {text!r} is not one of this metric's values {allowed}.")


def _number(checked: Checked, raw: Value, eval_type: str) -> None:
    value = raw.value
    if raw.type == "str":
        try:
            value = float(str(raw.value))
        except ValueError:
            checked.problems.append(f"`_result` {raw.value!r} is text; a {eval_type} metric needs a number.")
            return
        checked.warnings.append(f"`_result` is the string {raw.value!r}; set the number itself.")
    elif raw.type not in ("int", "float"):
        checked.problems.append(f"`_result` is a {raw.type}; a {eval_type} metric needs a number (None for N/A).")
        return
    number = float(value)
    if not math.isfinite(number):
        checked.problems.append(f"`_result` is {number}; it must be a finite number.")
    elif eval_type == "continuous_qualitative" and not 0 <= number <= 5:
        checked.problems.append(f"`_result` {number:g} is outside 0–5, the range of a continuous metric.")
    else:
        _set(checked, number)


def _set(checked: Checked, value: Verdict) -> None:
    checked.value = value
    checked.display = display(value)


def display(value: Verdict) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def syntax_error(code: str) -> CodeError | None:
    """Compile (never run) the code here, to report a syntax error at once and without spending."""
    try:
        compile(code, "<custom_code>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        lines = code.splitlines()
        line = exc.lineno
        source = lines[line - 1].strip()[:200] if line and 0 < line <= len(lines) else None
        return CodeError("SyntaxError", str(exc.msg), line=line, source=source)
    except (ValueError, RecursionError, MemoryError) as exc:
        return CodeError("SyntaxError", f"the code cannot be compiled ({type(exc).__name__})")
    return None
