"""The seam where `custom_code` metrics run.

`IsolatedRunner` runs the metric's Python with the server's own runner (`custom_code.runner`: a separate,
limited process per run, the one `test_custom_code` uses), so a metric converted to code is re-run
and validated here exactly as it was tested. Its `evaluate_llm_judge_metric(...)` calls come back to
this process and are answered by the sandbox's judge.

`InProcessRunner` executes the Python with `exec()` in this process, with a trimmed set of builtins and
a short list of importable modules. It is not a security boundary: it runs only the seeded data set's
own code (shipped with the sandbox, evaluated on every call at start-up and by bulk re-runs), where a
process per run would cost seconds; any other code runs isolated.

The code sees what Cekura documents: a `data` dict, the same keys as variables, and
`evaluate_llm_judge_metric(...)`; it must set `_result` and `_explanation`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any, Protocol

from cekura_labs_mcp.server.custom_code import runner as isolated

LlmJudgeFn = Callable[..., dict[str, Any]]

ALLOWED_MODULES = frozenset(
    {"re", "json", "math", "statistics", "datetime", "collections", "itertools", "string", "functools"}
)
_BLOCKED_BUILTINS = frozenset(
    {"open", "exec", "eval", "compile", "input", "breakpoint", "exit", "quit", "help", "globals", "locals",
     "vars", "memoryview", "__import__", "__build_class__"}
)


@dataclass(frozen=True)
class CodeOutcome:
    result: object
    explanation: list[str]
    error: str | None = None


class CodeRunner(Protocol):
    def run(self, code: str, data: Mapping[str, Any], llm_judge: LlmJudgeFn) -> CodeOutcome: ...


def _restricted_import(name: str, *args: Any, **kwargs: Any) -> Any:
    if name.split(".")[0] not in ALLOWED_MODULES:
        raise ImportError(f"import of '{name}' is not allowed in custom code")
    return __import__(name, *args, **kwargs)


def _safe_builtins() -> dict[str, Any]:
    table = {k: v for k, v in vars(builtins).items() if k not in _BLOCKED_BUILTINS}
    table["__import__"] = _restricted_import
    table["__build_class__"] = builtins.__build_class__
    return table


class InProcessRunner:
    """Runs custom code with `exec()`; compiled code is cached by source text."""

    def __init__(self) -> None:
        self._compiled: dict[str, CodeType] = {}
        self._builtins = _safe_builtins()

    def _compile(self, code: str) -> CodeType:
        compiled = self._compiled.get(code)
        if compiled is None:
            compiled = compile(code, "<custom_code>", "exec")
            self._compiled[code] = compiled
        return compiled

    def run(self, code: str, data: Mapping[str, Any], llm_judge: LlmJudgeFn) -> CodeOutcome:
        try:
            compiled = self._compile(code)
        except SyntaxError as exc:
            return CodeOutcome(None, [f"Custom code failed to compile: {exc}"], error="SyntaxError")
        namespace: dict[str, Any] = {k: v for k, v in data.items() if k.isidentifier()}
        namespace.update(__builtins__=self._builtins, data=dict(data), evaluate_llm_judge_metric=llm_judge)
        try:
            exec(compiled, namespace)
        except Exception as exc:  # the metric's own code failed: report it as the result
            return CodeOutcome(None, [f"Custom code raised {type(exc).__name__}: {exc}"], error=type(exc).__name__)
        if "_result" not in namespace:
            return CodeOutcome(None, ["Custom code did not set _result."], error="MissingResult")
        return CodeOutcome(namespace["_result"], _explanation_list(namespace.get("_explanation")))


def _explanation_list(raw: object) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, (list, tuple)):
        return [str(item) for item in raw]
    return [str(raw)]


class IsolatedRunner:
    """Custom code in a separate, limited process; its judge calls answered by `llm_judge` in this one.
    Code in `trusted` (the sandbox's own seeded programs, byte for byte) runs in-process instead."""

    def __init__(self, runner: isolated.CodeRunner | None = None, trusted: frozenset[str] = frozenset()) -> None:
        self._runner = runner or isolated.CodeRunner()
        self._trusted = trusted
        self._in_process = InProcessRunner()

    def run(self, code: str, data: Mapping[str, Any], llm_judge: LlmJudgeFn) -> CodeOutcome:
        if code in self._trusted:
            return self._in_process.run(code, data, llm_judge)

        def judge(request: isolated.JudgeRequest) -> isolated.JudgeAnswer:
            answer = llm_judge(request.data, description=request.description, eval_type=request.eval_type,
                               enum_values=request.enum_values)
            return isolated.JudgeAnswer(answer.get("result"), _explanation_list(answer.get("explanation")))

        report = self._runner.run(code, dict(data), judge)
        if report.status == "refused" and report.error is not None:
            return CodeOutcome(None, [report.error.message], error="NoSandbox")
        if report.error is not None:
            return CodeOutcome(None, [f"Custom code failed: {report.error.describe()}"], error=report.error.kind)
        if not report.has_result or report.result is None:
            return CodeOutcome(None, ["Custom code did not set _result."], error="MissingResult")
        explanation = report.explanation.value if report.explanation is not None else None
        said = _explanation_list(explanation)
        if report.unsandboxed:
            said.append(f"(This custom code {isolated.UNSANDBOXED_WARNING}.)")
        return CodeOutcome(report.result.value, said)
