"""The Starlette application: Cekura's paths (both call-log families, with and without the trailing
slash), the admin routes, and DRF-style error answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pydantic_core
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import admin, calls_api, labs_api, metrics_api, serialize
from .dialect import Dialect, default_dialect
from .errors import DJANGO_500_PAGE, ApiError, ServerErrorPage
from .middleware import ORG_KEY_FLAG, CekuraGate
from .store import Store

V1_FAMILIES = ("/observability/v1/call-logs", "/observability/v1/call-logs-external")
V2 = "/observability/v2/call-logs"
CALL_FAMILIES = (*V1_FAMILIES, V2)
METRICS_EXTERNAL = "/test_framework/v1/metrics-external"
Handler = Callable[[Request], Awaitable[Response]]
# The spec marks v1 list and detail deprecated; v2 is their successor.
DEPRECATED = {"Deprecation": "true", "Link": f'<{V2}/>; rel="successor-version"'}


class ApiJSON(JSONResponse):
    """An answer's JSON as starlette's `JSONResponse` writes it (compact, UTF-8, keys in order; only some numbers
    are spelled differently, `1e-05` as `0.00001`), encoded by pydantic-core: about a fifth of the CPU of
    `json.dumps` on a page of 200 calls. A non-finite number is not JSON: pydantic-core would write `NaN` or
    `Infinity`, so a body with those words is encoded again by starlette's `json.dumps(allow_nan=False)`, which
    refuses the number as before (and writes the same JSON when the words are only inside a string)."""

    def render(self, content: Any) -> bytes:
        body = pydantic_core.to_json(content)
        if b"NaN" in body or b"Infinity" in body:
            return super().render(content)
        return body


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _org_key(request: Request) -> bool:
    return bool(request.scope.get(ORG_KEY_FLAG))


def _deprecation(request: Request) -> dict[str, str]:
    return {} if request.url.path.startswith(V2) else DEPRECATED


async def list_calls(request: Request) -> Response:
    body = calls_api.list_calls(_store(request), _query(request), request.url, org_key=_org_key(request))
    return ApiJSON(body, headers=_deprecation(request))


async def create_call(request: Request) -> Response:
    return ApiJSON(calls_api.create_call(_store(request), await _body(request)), status_code=201)


async def get_call(request: Request) -> Response:
    return ApiJSON(calls_api.get_call(_store(request), request.path_params["id"]), headers=_deprecation(request))


async def call_filters(request: Request) -> Response:
    return ApiJSON(calls_api.filter_fields(_store(request)))


async def billing(request: Request) -> Response:
    if not _org_key(request):
        # The spec: "403 Project-scoped API keys are not allowed" (the SDK CLI says the same).
        return ApiJSON({"detail": "Project-scoped API keys are not allowed. Use an organization-level API key."},
                            status_code=403)
    return ApiJSON(serialize.billing_info(_store(request)))


async def vote(request: Request) -> Response:
    return ApiJSON(calls_api.mark_metric_vote(_store(request), request.path_params["id"], await _body(request)))


async def evaluate_metrics(request: Request) -> Response:
    return ApiJSON(calls_api.evaluate_metrics(_store(request), await _body(request)))


async def rerun_evaluation(request: Request) -> Response:
    return ApiJSON(calls_api.rerun_evaluation(_store(request), await _body(request)))


async def create_test_set(request: Request) -> Response:
    return ApiJSON(labs_api.create_from_call_log(_store(request), await _body(request)))


async def process_feedbacks(request: Request) -> Response:
    return ApiJSON(labs_api.process_feedbacks(_store(request), await _body(request)))


async def progress(request: Request) -> Response:
    return ApiJSON(labs_api.progress(_store(request), _query(request)))


async def cancel(request: Request) -> Response:
    return ApiJSON(labs_api.cancel(_store(request), await _body(request)))


async def answer(request: Request) -> Response:
    return ApiJSON(labs_api.answer(_store(request), await _body(request)))


async def list_metrics(request: Request) -> Response:
    return ApiJSON(metrics_api.list_metrics(_store(request), _query(request)))


async def create_metric(request: Request) -> Response:
    return ApiJSON(metrics_api.create_metric(_store(request), await _body(request)), status_code=201)


async def metric(request: Request) -> Response:
    key = request.path_params["key"]
    if request.method == "PATCH":
        return ApiJSON(metrics_api.patch_metric(_store(request), key, await _body(request)))
    return ApiJSON(metrics_api.get_metric(_store(request), key))


async def agent(request: Request) -> Response:
    return ApiJSON(metrics_api.get_agent(_store(request), str(request.path_params["id"])))


async def judge_metric(request: Request) -> Response:
    return ApiJSON(metrics_api.evaluate_llm_judge_metric(_store(request), request.path_params["key"],
                                                              await _body(request)))


async def judge_progress(request: Request) -> Response:
    return ApiJSON(metrics_api.judge_progress(_store(request), _query(request)))


async def history(request: Request) -> Response:
    return ApiJSON(metrics_api.history(_store(request), request.path_params["key"], _query(request),
                                            request.url))


async def restore(request: Request) -> Response:
    return ApiJSON(metrics_api.restore(_store(request), request.path_params["key"], await _body(request)))


async def apply_proposal(request: Request) -> Response:
    return ApiJSON(metrics_api.apply_proposal(_store(request), request.path_params["key"]))


async def dismiss_proposal(request: Request) -> Response:
    return ApiJSON(metrics_api.dismiss_proposal(_store(request), request.path_params["key"]))


def _both(path: str, endpoint: Handler, methods: list[str]) -> list[BaseRoute]:
    """Cekura's paths end in '/'; the official SDK drops it. Serve both, without redirects."""
    return [Route(path + "/", endpoint, methods=methods), Route(path, endpoint, methods=methods)]


def cekura_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    routes += _both(f"{V2}/filters", call_filters, ["GET"])
    for base in CALL_FAMILIES:
        routes += _both(f"{base}/evaluate_metrics", evaluate_metrics, ["POST"])
        routes += _both(f"{base}/rerun_evaluation", rerun_evaluation, ["POST"])
        routes += _both(f"{base}/{{id:int}}/mark_metric_vote", vote, ["POST"])
        routes += _both(f"{base}/{{id:int}}", get_call, ["GET"])
        routes += [Route(f"{base}/", list_calls, methods=["GET"]), Route(base, list_calls, methods=["GET"])]
        routes += [Route(f"{base}/", create_call, methods=["POST"]), Route(base, create_call, methods=["POST"])]
    labs = "/test_framework/metric-reviews"
    routes += _both(f"{labs}/process_feedbacks", process_feedbacks, ["POST"])
    routes += _both(f"{labs}/process_feedbacks_progress", progress, ["GET"])
    routes += _both(f"{labs}/process_feedbacks_cancel", cancel, ["POST"])
    routes += _both(f"{labs}/process_feedbacks_answer", answer, ["POST"])
    routes += _both("/test_framework/test-sets/create_from_call_log", create_test_set, ["POST"])
    routes += _both(f"{METRICS_EXTERNAL}/evaluate_metric_progress", judge_progress, ["GET"])
    for base in ("/test_framework/v1/metrics", METRICS_EXTERNAL):
        routes += _both(base, list_metrics, ["GET"])
        routes += _both(base, create_metric, ["POST"])
        routes += _both(f"{base}/{{key}}", metric, ["GET", "PATCH"])
    routes += _both(f"{METRICS_EXTERNAL}/{{key}}/evaluate_llm_judge_metric", judge_metric, ["POST"])
    routes += _both(f"{METRICS_EXTERNAL}/{{key}}/history", history, ["GET"])
    routes += _both(f"{METRICS_EXTERNAL}/{{key}}/restore", restore, ["POST"])
    routes += _both(f"{METRICS_EXTERNAL}/{{key}}/apply_optimisation_proposal", apply_proposal, ["POST"])
    routes += _both(f"{METRICS_EXTERNAL}/{{key}}/dismiss_optimisation_proposal", dismiss_proposal, ["POST"])
    routes += _both("/test_framework/billing/info", billing, ["GET"])
    for version in ("v1", "v2"):  # not in the spec subset; the docs' Get Agent is v2, the skills' AGENTS.md v1
        routes += _both(f"/test_framework/{version}/aiagents/{{id}}", agent, ["GET"])
    return routes


def admin_routes() -> list[BaseRoute]:
    return [
        Route("/_sandbox/info", admin.info, methods=["GET"]),
        Route("/_sandbox/stats", admin.stats, methods=["GET"]),
        Route("/_sandbox/faults", admin.add_fault, methods=["POST"]),
        Route("/_sandbox/faults", admin.list_faults, methods=["GET"]),
        Route("/_sandbox/faults", admin.clear_faults, methods=["DELETE"]),
        Route("/_sandbox/faults/held", admin.held_requests, methods=["GET"]),
        Route("/_sandbox/faults/release", admin.release_held, methods=["POST"]),
        Route("/_sandbox/latency", admin.latency, methods=["POST"]),
        Route("/_sandbox/truth", admin.truth, methods=["GET"]),
        Route("/_sandbox/reset", admin.reset, methods=["POST"]),
        Route("/_sandbox/evaluations", admin.evaluations, methods=["GET", "POST"]),
        Route("/_sandbox/evaluations/finish", admin.finish_evaluations, methods=["POST"]),
        Route("/_sandbox/auto-improve/questions", admin.ask_questions, methods=["POST"]),
        Route("/_sandbox/auto-improve/answers", admin.auto_improve_answers, methods=["GET", "POST"]),
        Route("/_sandbox/v2", admin.v2, methods=["GET", "POST"]),
        Route("/_sandbox/billing", admin.billing, methods=["POST"]),
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return ApiJSON(exc.payload, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return ApiJSON({"detail": f'Method "{request.method}" not allowed.'}, status_code=405)
    if exc.status_code == 404:
        return ApiJSON({"detail": "Not found."}, status_code=404)
    return ApiJSON({"detail": exc.detail}, status_code=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return HTMLResponse(DJANGO_500_PAGE, status_code=500)


def build_app(seed: int = 7, api_key: str | None = None, progress_polls: int = 3,
              now: datetime | None = None, dialect: Dialect | None = None, org_api_key: str | None = None,
              evaluation_reads: int = 2, judge_polls: int = 1, v2: bool = True) -> Starlette:
    """The sandbox as an ASGI app. `api_key=None` accepts any non-empty key; `org_api_key` is accepted
    too and is organisation-level (so are keys starting with `org-` when any key is accepted); `now`
    anchors the data set (default: today's midnight, UTC); `dialect=None` reads
    `CEKURA_LABS_SANDBOX_DIALECT` (see `dialect`)."""
    store = Store(seed=seed, now=now, progress_polls=progress_polls, dialect=dialect or default_dialect(),
                  evaluation_reads=evaluation_reads, judge_polls=judge_polls, v2_enabled=v2)
    app = Starlette(
        routes=cekura_routes() + admin_routes(),
        middleware=[Middleware(CekuraGate, store=store, api_key=api_key, org_api_key=org_api_key)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, ServerErrorPage: _server_error,
                            Exception: _server_error},
    )
    app.state.store = store
    return app
