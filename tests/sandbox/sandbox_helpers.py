"""Constants and small clients shared by the sandbox tests."""

from __future__ import annotations

from typing import Any

import httpx

KEY = "sk-sandbox-tests"
ORG_KEY = "sk-sandbox-tests-organisation"
MAIN = 2210
PHARMACY = 2231
ONE_QUESTION, BOOKING, SENTIMENT, EMPATHY, UNDER_FIVE, REFILL = 9101, 9102, 9103, 9104, 9105, 9106
HALLUCINATION = 9107  # documented dialect only: a predefined metric at 0.6 credits
CALLS = "/observability/v1/call-logs"
EXTERNAL = "/observability/v1/call-logs-external"
V2 = "/observability/v2/call-logs"
METRICS_EXTERNAL = "/test_framework/v1/metrics-external"
LABS = "/test_framework/metric-reviews"


class Admin:
    """The admin routes, and the truth table as a dict."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/stats").json())

    def credits(self) -> float:
        return float(self.stats()["credits_spent"])

    def truth(self, metric_id: int) -> dict[int, dict[str, Any]]:
        calls = self.http.get("/_sandbox/truth", params={"metric_id": metric_id}).json()["calls"]
        return {int(k): v for k, v in calls.items()}

    def finish(self) -> list[int]:
        """Land every pending evaluation (documented dialect)."""
        landed: list[int] = self.http.post("/_sandbox/evaluations/finish").json()["landed"]
        return landed

    def fault(self, path: str, kind: str, count: int = 1, **extra: Any) -> dict[str, Any]:
        answer = self.http.post("/_sandbox/faults", json={"path": path, "kind": kind, "count": count, **extra})
        answer.raise_for_status()
        return dict(answer.json())


def main_calls(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = api.get(f"{EXTERNAL}/", params={"agent_id": MAIN, "page_size": 200, **params})
    answer.raise_for_status()
    rows: list[dict[str, Any]] = answer.json()["results"]
    return rows


def flat(answer: dict[str, Any]) -> dict[str, Any]:
    """A progress answer's fields whichever form it came in: the docs' (`status` + `output.*`, the code, type and
    score under `output.meta_harness`) read as the spec's flat fields; a flat answer as it is."""
    output = answer.get("output")
    if not isinstance(output, dict):
        return answer
    harness = output.get("meta_harness") if isinstance(output.get("meta_harness"), dict) else {}
    view = {**{k: v for k, v in answer.items() if k != "output"},
            **{k: v for k, v in output.items() if k != "meta_harness"}}
    if harness:
        view.update(custom_code=harness.get("optimized_code", ""), type=harness.get("type"))
        if harness.get("num_total") is not None:
            view["new_score"] = {k: harness.get(k) for k in ("num_correct", "num_total", "score")}
    return view

