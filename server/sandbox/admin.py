"""Admin routes under `/_sandbox/` (no auth): inspect, arrange faults and latency, read the truth, reset."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import ApiError, field_error, not_found
from .render import value_fields
from .store import Store
from .validate import BAD_INT, query_int


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc


async def info(request: Request) -> JSONResponse:
    store = _store(request)
    counts: dict[int, int] = {}
    for call in store.calls.values():
        counts[call.agent_id] = counts.get(call.agent_id, 0) + 1
    return JSONResponse({
        "project_id": store.data.project_id,
        "project_name": store.data.project_name,
        "agents": [{"id": a.id, "name": a.name, "assistant_id": a.assistant_id, "call_count": counts.get(a.id, 0)}
                   for a in store.agents.values()],
        "main_agent_id": store.data.main_agent_id,
        "metrics": [{"id": m.id, "name": m.name, "eval_type": m.eval_type, "type": m.type, "agent_ids": m.agents}
                    for m in sorted(store.metrics.values(), key=lambda m: (m.display_order, m.id))],
        "seed": store.seed,
        "now": store.anchor.isoformat().replace("+00:00", "Z"),
    })


async def stats(request: Request) -> JSONResponse:
    store = _store(request)
    with store.lock:
        requests = [dict(r) for r in store.requests]
        body = {
            "credits_spent": store.credits_spent,
            "evaluations": {"llm_judge": store.evaluations.llm_judge, "custom_code": store.evaluations.custom_code},
            "requests": requests, "in_flight": store.in_flight, "max_in_flight": store.max_in_flight,
            "votes": len(store.votes), "test_sets": len(store.test_sets), "jobs": len(store.jobs),
        }
    return JSONResponse(body)


async def add_fault(request: Request) -> JSONResponse:
    body = await _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, {"non_field_errors": ["Expected a JSON object."]})
    rule = _store(request).faults.add(body)
    return JSONResponse(rule.describe(), status_code=201)


async def list_faults(request: Request) -> JSONResponse:
    return JSONResponse([r.describe() for r in _store(request).faults.live()])


async def clear_faults(request: Request) -> JSONResponse:
    return JSONResponse({"cleared": _store(request).faults.clear()})


async def latency(request: Request) -> JSONResponse:
    body = await _json(request)
    ms = body.get("ms") if isinstance(body, dict) else None
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0:
        raise field_error("ms", "A non-negative number of milliseconds is required.")
    _store(request).latency_ms = int(ms)
    return JSONResponse({"ms": int(ms)})


async def truth(request: Request) -> JSONResponse:
    store = _store(request)
    metric_id = query_int(request.query_params, "metric_id")
    if metric_id is None:
        raise field_error("metric_id", BAD_INT)
    metric = store.metrics.get(metric_id)
    table = store.data.truth.get(metric_id)
    if metric is None or table is None:
        raise not_found("No truth is recorded for this metric (only the seeded metrics have one).")
    calls: dict[str, Any] = {}
    for call_id, entry in table.items():
        result = store.calls[call_id].results.get(metric_id)
        actual = value_fields(result.value, metric.eval_type)[0] if result is not None else None
        calls[str(call_id)] = {"expected": entry.expected, "pattern": entry.pattern, "actual": actual}
    return JSONResponse({"metric_id": metric_id, "metric_name": metric.name, "calls": calls})


async def reset(request: Request) -> JSONResponse:
    store = _store(request)
    store.reset()
    return JSONResponse({"detail": "Sandbox restored to its seeded state.", "seed": store.seed})
