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
        "dialect": store.dialect,
        "now": store.anchor.isoformat().replace("+00:00", "Z"),
    })


async def stats(request: Request) -> JSONResponse:
    store = _store(request)
    with store.lock:
        requests = [dict(r) for r in store.requests]
        body = {
            "credits_spent": store.credits_spent, "credits_remaining": store.credits_remaining,
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


async def held_requests(request: Request) -> JSONResponse:
    """The requests a `hold` or `hold-drop` fault holds now (what a test waits for before it acts)."""
    return JSONResponse([h.describe() for h in _store(request).faults.held_requests()])


async def release_held(request: Request) -> JSONResponse:
    """`{"id": N}` (a fault's id) or `{}` (all): the held requests reach the API now."""
    body = await _json(request)
    rule_id = body.get("id") if isinstance(body, dict) else None
    if rule_id is not None and (isinstance(rule_id, bool) or not isinstance(rule_id, int)):
        raise field_error("id", BAD_INT)
    return JSONResponse({"released": _store(request).faults.release(rule_id)})


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


async def evaluations(request: Request) -> JSONResponse:
    """GET: the evaluations waiting to land and the delay; POST `{"reads": N}`: set the delay (the number
    of call-log reads after which an accepted evaluation lands; 0 lands at once)."""
    store = _store(request)
    if request.method == "POST":
        body = await _json(request)
        reads = body.get("reads") if isinstance(body, dict) else None
        if isinstance(reads, bool) or not isinstance(reads, int) or reads < 0:
            raise field_error("reads", "A non-negative integer is required.")
        store.evaluation_reads = reads
    with store.lock:
        return JSONResponse({"reads": store.evaluation_reads, "pending": sorted(store.pending)})


async def finish_evaluations(request: Request) -> JSONResponse:
    """Land every pending evaluation now."""
    return JSONResponse({"landed": _store(request).finish_evaluations()})


async def ask_questions(request: Request) -> JSONResponse:
    """`{"count": N}`: the next N auto-improve runs that would not pause otherwise pause with a question."""
    body = await _json(request)
    count = body.get("count", 1) if isinstance(body, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise field_error("count", "A non-negative integer is required.")
    store = _store(request)
    store.questions_to_ask = count
    return JSONResponse({"count": count})


SHAPES = ("alternate", "wrapped", "flat")


async def auto_improve_answers(request: Request) -> JSONResponse:
    """How finished auto-improve runs answer (documented dialect). `{"shape": "alternate" | "wrapped" | "flat"}`:
    the docs' form (`status` + `output.*` + `output.meta_harness`), the spec's flat fields, or by run (odd runs
    wrapped, the default); `{"fail": N, "error": "text"}`: the next N runs end in `status: "error"` with that
    text. GET reads the settings."""
    store = _store(request)
    if request.method == "POST":
        body = await _json(request)
        body = body if isinstance(body, dict) else {}
        shape, fail, error = body.get("shape"), body.get("fail"), body.get("error")
        if shape is not None and shape not in SHAPES:
            raise field_error("shape", f"Use one of {', '.join(SHAPES)}.")
        if fail is not None and (isinstance(fail, bool) or not isinstance(fail, int) or fail < 0):
            raise field_error("fail", "A non-negative integer is required.")
        if error is not None and not isinstance(error, str):
            raise field_error("error", "A string is required.")
        with store.lock:
            if shape is not None:
                store.progress_shape = shape
            if fail is not None:
                store.runs_to_fail = fail
                store.run_failure = error or "The optimization failed."
    with store.lock:
        return JSONResponse({"shape": store.progress_shape, "fail": store.runs_to_fail, "error": store.run_failure})


async def v2(request: Request) -> JSONResponse:
    """GET: whether the v2 call-log paths answer; POST `{"enabled": false}`: make them answer 404."""
    store = _store(request)
    if request.method == "POST":
        body = await _json(request)
        enabled = body.get("enabled") if isinstance(body, dict) else None
        if not isinstance(enabled, bool):
            raise field_error("enabled", "Use true or false.")
        store.v2_enabled = enabled
    return JSONResponse({"enabled": store.v2_enabled})


async def billing(request: Request) -> JSONResponse:
    """`{"credits_remaining": N}`: set the balance (what billing info reports and evaluations may spend)."""
    body = await _json(request)
    wanted = body.get("credits_remaining") if isinstance(body, dict) else None
    if isinstance(wanted, bool) or not isinstance(wanted, (int, float)) or wanted < 0:
        raise field_error("credits_remaining", "A non-negative number of credits is required.")
    store = _store(request)
    with store.lock:
        store.initial_credits = float(wanted) + store.evaluations.credits
        return JSONResponse({"credits_remaining": store.credits_remaining})
