"""A small error hierarchy whose messages say what happened and what to do next.

Every error that can reach the assistant is a `LabsError`: a one-line message plus a hint.
Nothing else (no stack trace, no raw response dump, no secret) is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cekura_labs_mcp.server.logs import scrub
from cekura_labs_mcp.server.steps import Step

MAX_PROBLEM_CHARS = 400


class LabsError(Exception):
    """Base class: `message` says what went wrong, `hint` says what to do about it."""

    code = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = scrub(message)
        self.hint = scrub(hint)
        super().__init__(self.for_assistant())

    def for_assistant(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class InputError(LabsError):
    """The tool's own arguments are wrong; nothing was sent."""

    code = "invalid_input"

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        if len(problem) > MAX_PROBLEM_CHARS:  # the problem may quote the input: never echo a huge one back
            problem = f"{problem[:MAX_PROBLEM_CHARS // 2]} …[{len(problem) - MAX_PROBLEM_CHARS} characters left " \
                      f"out]… {problem[-MAX_PROBLEM_CHARS // 2:]}"
        super().__init__(f"Invalid `{field}`: {problem}", fix)


class CekuraError(LabsError):
    """Cekura (or the sandbox) answered with an error, or could not be reached."""

    code = "cekura_error"


class AuthenticationError(CekuraError):
    code = "authentication"

    def __init__(self, status: int) -> None:
        super().__init__(
            f"Cekura refused the credentials (HTTP {status}).",
            "Check CEKURA_API_KEY (Dashboard > Settings > API keys) and that it belongs to this "
            "project; unset it to use the built-in sandbox instead.",
        )


class NotFoundError(CekuraError):
    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} was not found on Cekura.",
            f"Check the id ({Step.LIST_CALLS} / {Step.LIST_METRICS} show valid ids) and that your API key can see it.",
        )


class ValidationFailedError(CekuraError):
    """HTTP 400 with Cekura's `{"field": ["message"]}` body."""

    code = "validation"

    def __init__(self, field_errors: Mapping[str, Sequence[str]]) -> None:
        self.field_errors = {k: list(v) for k, v in field_errors.items()}
        parts = [f"`{field}`: {' '.join(msgs)}" for field, msgs in self.field_errors.items()]
        super().__init__(
            "Cekura rejected the request: " + "; ".join(parts or ["no details given"]) + ".",
            "Fix the named field(s) and call the tool again.",
        )


class RateLimitedError(CekuraError):
    code = "rate_limited"

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after
        wait = f"{retry_after:g} s" if retry_after is not None else "a short while"
        super().__init__(
            f"Cekura is rate-limiting this API key (HTTP 429); it asks to wait {wait}.",
            f"Wait {wait} and call the tool again.",
        )


class ServiceError(CekuraError):
    """A read that failed after its retries: 5xx, timeout, connection error or malformed answer."""

    code = "unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Cekura could not answer: {detail}.",
            "This was a read, already retried; try again in a minute. If it persists, check "
            "CEKURA_API_URL and Cekura's status.",
        )


class OutcomeUnknownError(CekuraError):
    """A write or a spend failed in a way that does not tell whether it landed. Never retried."""

    code = "outcome_unknown"

    def __init__(self, operation: str, detail: str, check: str) -> None:
        super().__init__(
            f"{operation} may or may not have been applied: {detail}. It was NOT retried, because "
            "repeating it could apply it twice (or spend credits twice).",
            check,
        )


class RequestRejectedError(CekuraError):
    """Any other 4xx/5xx answer we cannot map more precisely."""

    code = "rejected"


class ProjectRequiredError(CekuraError):
    """HTTP 400 about `project_id`: an organisation-level API key must name the project."""

    code = "project_required"

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(
            f"{operation} was refused: Cekura needs `project_id` for this API key ({detail}). "
            "An organisation-level key must name the project it works on.",
            "Pass project_id to the tool, or set CEKURA_PROJECT_ID for the server (the project's id is in the "
            "Cekura dashboard's URL and settings).",
        )


class StillRunningError(CekuraError):
    """Cekura is still working on something we started; nothing is wrong, the answer is not there yet."""

    code = "still_running"


class JudgeStillRunningError(StillRunningError):
    def __init__(self, progress_id: str, waited: float) -> None:
        self.progress_id = progress_id
        super().__init__(
            f"The judge evaluation {progress_id} has not finished after {waited:g} s.",
            "Run the test again in a minute; the evaluation keeps going on Cekura's side.",
        )


class RunFailedError(CekuraError):
    """A run Cekura accepted (auto-improve) ended in an error status: it is over, nothing was proposed."""

    code = "run_failed"


class InsufficientCreditsError(CekuraError):
    """Cekura refused a spend: "Insufficient balance for this operation" (docs, e.g. websocket-chirp.mdx).
    Nothing was evaluated and nothing was charged."""

    code = "insufficient_credits"

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(
            f"{operation} was refused by Cekura: {detail.rstrip('.')}. Nothing was evaluated or charged.",
            "Check the credits remaining (Cekura dashboard > Billing), then top up or evaluate fewer calls.",
        )
