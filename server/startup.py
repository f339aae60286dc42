"""The start-up check: with a key, one cheap read tells the person (on stderr) which Cekura the server uses and
whether the key works, before any tool is called. A client shows a server whose key is refused as
"Connected" all the same, so a refusal is also repeated in the first tool answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import anyio
from cekura_labs_mcp.server.cekura.client import CekuraClient
from cekura_labs_mcp.server.errors import AuthenticationError, CekuraError, ServiceError
from cekura_labs_mcp.server.logs import get_logger

log = get_logger("startup")
# Long enough for one request to a distant API; short enough that a client's start-up never waits for retries.
CHECK_SECONDS = 8.0

Outcome = Literal["reached", "refused", "unreachable"]


@dataclass
class StartupCheck:
    url: str
    outcome: Outcome
    detail: str
    hint: str = ""
    reported: bool = False  # the refusal was repeated in a tool answer

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"

    def sentence(self) -> str:
        if self.outcome == "reached":
            return f"Cekura at {self.url} answered: {self.detail}"
        if self.outcome == "refused":
            return f"At start-up Cekura at {self.url} refused the API key: {self.detail}"
        return f"At start-up Cekura at {self.url} could not be reached: {self.detail}"


async def check_cekura(client: CekuraClient, url: str) -> StartupCheck:
    """One read of the metric list (a GET: nothing written, nothing spent). Any answer but 401/403 proves the
    key was accepted; no answer in time is said as such and the tools try again on their own."""
    check: StartupCheck | None = None
    with anyio.move_on_after(CHECK_SECONDS):
        try:
            metrics = await client.list_metrics()
            check = StartupCheck(url, "reached", f"the key works ({len(metrics)} metrics visible to it).")
        except AuthenticationError as exc:
            check = StartupCheck(url, "refused", exc.message, exc.hint)
        except ServiceError as exc:
            check = StartupCheck(url, "unreachable", exc.message, "The tools will try again on each call.")
        except CekuraError as exc:
            check = StartupCheck(url, "reached", f"the key was accepted (the check itself was answered: "
                                                 f"{exc.message})", exc.hint)
    if check is None:
        check = StartupCheck(url, "unreachable", f"no answer within {CHECK_SECONDS:g} s.",
                             "The tools will try again on each call.")
    _tell(check)
    return check


def _tell(check: StartupCheck) -> None:
    # The key never appears: only the URL and what came back (the log scrubs registered secrets as well).
    if check.outcome == "reached":
        log.warning("cekura_reached", url=check.url, note=check.sentence())
    elif check.refused:
        log.error("cekura_key_refused", url=check.url, note=check.sentence(), hint=check.hint)
    else:
        log.error("cekura_unreachable", url=check.url, note=check.sentence(), hint=check.hint)
