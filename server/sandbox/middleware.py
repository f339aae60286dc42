"""What stands in front of every Cekura path: the request log, latency, injected faults and auth.

Admin paths (`/_sandbox/...`) pass straight through: no auth, no log, no faults.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import DJANGO_500_PAGE
from .faults import HOLD_DROP, HOLDS, FaultRule, HeldRequest
from .store import Store

ADMIN_PREFIX = "/_sandbox"
DROP_KEY = "cekura_sandbox.drop"
# A `hold-drop` request: answered (dropped) at once, logged as ended only once it lands or is let go.
PARKED_KEY = "cekura_sandbox.parked"
ORG_KEY_FLAG = "cekura_sandbox.org_key"
ORG_KEY_PREFIX = "org-"
V2_PREFIX = "/observability/v2/"
# What the sandbox served before issue 10 is all the `spec` dialect serves: the v2 call logs, billing and
# the metrics-external paths (but its judge endpoint) answer 404 there, as on a deployment without them.
DOCUMENTED_ONLY = (V2_PREFIX, "/test_framework/billing/", "/test_framework/v1/metrics-external/")
SERVED_IN_SPEC = re.compile(r"^/test_framework/v1/metrics-external/[^/]+/evaluate_llm_judge_metric/?$")
MISSING = "Authentication credentials were not provided."
INVALID = "Invalid API key."
MALFORMED_BODY = b'{"count": 3, "next": null, "results": [{"id": 5181003, "call_id": "'


def credentials(scope: Scope) -> list[str]:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    found = [headers.get("x-cekura-api-key", "").strip()]
    authorization = headers.get("authorization", "").strip()
    if authorization.lower().startswith("bearer "):
        found.append(authorization[7:].strip())
    return [c for c in found if c]


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def parsed(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class CekuraGate:
    def __init__(self, app: ASGIApp, store: Store, api_key: str | None, org_api_key: str | None = None) -> None:
        self.app = app
        self.store = store
        self.api_key = api_key
        self.org_api_key = org_api_key
        self._parked: set[asyncio.Task[None]] = set()  # `hold-drop` requests waiting to land (a strong reference)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        entry: dict[str, Any] = {
            "method": scope["method"], "path": scope["path"],
            "query": dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            "body": parsed(body), "status": None, "started": time.time(), "ended": None, "fault": None,
        }
        store = self.store
        with store.lock:
            store.requests.append(entry)
            store.in_flight += 1
            store.max_in_flight = max(store.max_in_flight, store.in_flight)

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, replay(body, receive), logged_send, entry)
        except Exception:
            entry["status"] = entry["status"] or 500
            raise
        finally:
            if not scope.get(PARKED_KEY):
                self._finished(entry)

    def _finished(self, entry: dict[str, Any]) -> None:
        with self.store.lock:
            self.store.in_flight -= 1
        entry["ended"] = time.time()

    async def _handle(self, scope: Scope, receive: Receive, send: Send, entry: dict[str, Any]) -> None:
        if self.store.latency_ms > 0:
            await asyncio.sleep(self.store.latency_ms / 1000)
        rule = self.store.faults.take(scope["method"], scope["path"])
        # The log says which fault a request met: all but `delay` and the holds answer (or drop) without reaching
        # the API.
        entry["fault"] = rule.kind if rule is not None else None
        if rule is not None and rule.kind in HOLDS:
            held = self.store.faults.hold(rule, scope["method"], scope["path"])
            if rule.kind == HOLD_DROP:
                self._park(held, scope, receive, entry)
                return
            if not await held.released():
                scope[DROP_KEY] = True  # let go (reset, cleared): closed unanswered, never reaching the API
                return
        elif rule is not None and await self._fault(rule, scope, receive, send):
            return
        await self._pass_on(scope, receive, send)

    def _park(self, held: HeldRequest, scope: Scope, receive: Receive, entry: dict[str, Any]) -> None:
        """`hold-drop`: close the connection unanswered now; the request reaches the API when released."""
        parked = dict(scope)
        scope[DROP_KEY] = True
        scope[PARKED_KEY] = True
        task = asyncio.get_running_loop().create_task(self._land_when_released(held, parked, receive, entry))
        self._parked.add(task)
        task.add_done_callback(self._parked.discard)

    async def _land_when_released(self, held: HeldRequest, scope: Scope, receive: Receive,
                                  entry: dict[str, Any]) -> None:
        async def nobody_listens(message: Message) -> None:  # the client's connection is long closed
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]

        try:
            if await held.released():
                await self._pass_on(scope, receive, nobody_listens)
        except Exception:
            entry["status"] = entry["status"] or 500
        finally:
            self._finished(entry)

    async def _pass_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Past the faults: what the API itself answers (auth first)."""
        problem = self._auth_problem(scope)
        if problem is not None:
            response: Response = JSONResponse({"detail": problem}, status_code=401,
                                              headers={"WWW-Authenticate": 'Api-Key realm="api"'})
            await response(scope, receive, send)
            return
        scope[ORG_KEY_FLAG] = self._org_level(credentials(scope))
        if self._absent(scope["path"]):
            # A deployment without the v2 call-log endpoints (the admin route `/_sandbox/v2` turns them off).
            await JSONResponse({"detail": "Not found."}, status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _absent(self, path: str) -> bool:
        slashed = path + "/"
        if not self.store.documented and slashed.startswith(DOCUMENTED_ONLY) and not SERVED_IN_SPEC.match(path):
            return True
        return not self.store.v2_enabled and slashed.startswith(V2_PREFIX)

    def _org_level(self, given: list[str]) -> bool:
        """An organisation-level key: the configured `org_api_key`, or, when any key is accepted, a key
        starting with `org-`."""
        if self.org_api_key is not None and self.org_api_key in given:
            return True
        return self.api_key is None and any(k.startswith(ORG_KEY_PREFIX) for k in given)

    def _auth_problem(self, scope: Scope) -> str | None:
        given = credentials(scope)
        if not given:
            return MISSING
        if self.org_api_key is not None and self.org_api_key in given:
            return None
        if self.api_key is not None and self.api_key not in given:
            return INVALID
        return None

    async def _fault(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> bool:
        """Play one fault; True when it answered (or dropped) the request instead of the API."""
        if rule.kind == "delay":
            await asyncio.sleep(rule.delay_ms / 1000)
            return False
        if rule.kind == "drop":
            # Nothing is sent; the server wrapper sees this mark and closes the connection unanswered.
            scope[DROP_KEY] = True
            return True
        response: Response
        if rule.kind == "429":
            wait = int(rule.retry_after) if float(rule.retry_after).is_integer() else rule.retry_after
            response = JSONResponse({"detail": f"Request was throttled. Expected available in {wait} seconds."},
                                    status_code=429, headers={"Retry-After": str(wait)})
        elif rule.kind == "500":
            response = HTMLResponse(DJANGO_500_PAGE, status_code=500)
        else:
            response = Response(MALFORMED_BODY, status_code=200, media_type="application/json")
        await response(scope, receive, send)
        return True
