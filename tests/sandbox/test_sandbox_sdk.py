"""The official `cekura` SDK and its CLI (clients no one on this team wrote), pointed at the sandbox by their
own environment variables, run the labs workflow against both dialects."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cekura.cli._client as cli_client
import click
import httpx
import pytest
import typer
from cekura import AuthenticationError, Cekura, NotFoundError, ServerError
from cekura.cli.main import app as cli_app
from cekura_labs_mcp.server.sandbox import SandboxServer
from click.testing import CliRunner
from sandbox_helpers import BOOKING, KEY, MAIN, ONE_QUESTION, ORG_KEY, Admin, flat
from sandbox_spec import assert_component

DIALECTS = ["spec", "documented"]


@functools.cache
def cli_command() -> click.Command:
    """The CLI's click command, built once: typer's test runner builds it again from the app on every invoke (about
    0.3 s each for this CLI's hundreds of commands); the command it runs is the same."""
    return typer.main.get_command(cli_app)


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    chosen: str = request.param
    return chosen


@pytest.fixture
def http(dialect: str, request: pytest.FixtureRequest) -> httpx.Client:
    """The reset sandbox of the dialect (`api` is the spec one, `dapi` the documented one)."""
    client: httpx.Client = request.getfixturevalue("api" if dialect == "spec" else "dapi")
    return client


@pytest.fixture
def sdk(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cekura]:
    monkeypatch.setenv("CEKURA_API_URL", str(http.base_url))
    monkeypatch.setenv("CEKURA_API_KEY", KEY)
    client = Cekura()
    yield client
    client._http.close()


def land(http: httpx.Client, dialect: str) -> None:
    """Documented evaluations are asynchronous: let them land before reading the truth."""
    if dialect == "documented":
        http.post("/_sandbox/evaluations/finish").raise_for_status()


def value_of(result: dict[str, Any]) -> Any:
    """What the SDK hands its user for a binary result: `value` (spec) or `passed` / `score` (documented)."""
    if "value" in result:
        return result["value"]
    return {True: "TRUE", False: "FALSE", None: "N/A"}[result["passed"]] if "passed" in result else result["score"]


def test_the_sdk_reads_calls_and_metrics(sdk: Cekura, dialect: str) -> None:
    page = sdk.calls.list(agent_id=MAIN, page_size=5)
    assert page["count"] == 180 and len(page["results"]) == 5
    detail = sdk.calls.get(page["results"][0]["id"])
    assert_component(detail, "CallLogDetail", documented=dialect == "documented")
    first = detail["evaluation"]["metrics"][0]
    assert first["id"] == ONE_QUESTION and value_of(first) in ("TRUE", "FALSE", "N/A")
    metrics = sdk.metrics.list(agent_id=MAIN)
    assert [m["name"] for m in metrics][:2] == ["One Question Per Turn", "Appointment Booked Correctly"]
    assert sdk.metrics.get(BOOKING)["eval_type"] == "binary"
    with pytest.raises(NotFoundError):
        sdk.calls.get(1)


def test_the_sdk_runs_the_labs_cycle(sdk: Cekura, http: httpx.Client, dialect: str) -> None:
    admin = Admin(http)
    truth = admin.truth(ONE_QUESTION)
    misjudged = [c for c, t in truth.items() if t["pattern"]][:3]
    note = "At the confirmation turn the agent asked for postcode and address together: one related question."
    for call_id in misjudged:
        answer = sdk.calls.mark_metric_vote(call_id, metric_id=ONE_QUESTION, thumbs_up=False, expected_value=True,
                                            feedback=note)
        assert answer == {"detail": "Vote recorded."}
        test_set = sdk.test_sets.create_from_call_log(
            call_log_id=call_id, metrics=[{"metric": ONE_QUESTION, "feedback": note, "expected_value": True}])
        assert_component(test_set, "TestSetDetail")
    started = sdk.metric_reviews.process_feedbacks(metric_id=ONE_QUESTION)
    answers = [flat(sdk.metric_reviews.process_feedbacks_progress(progress_id=started["progress_id"]))
               for _ in range(4)]
    assert ["improved_metric_description" in a for a in answers] == [False, False, False, True]
    result = answers[-1]
    assert result["new_score"]["num_correct"] == 3 and result["old_score"]["num_correct"] == 0
    patched = sdk.metrics.update(ONE_QUESTION, description=result["improved_metric_description"])
    assert_component(patched, "SchemaPostMetricEdit")
    rerun = sdk.calls.rerun_evaluation(agent_id=MAIN, call_logs=misjudged)
    assert [r["id"] for r in rerun] == misjudged
    land(http, dialect)
    after = admin.truth(ONE_QUESTION)
    assert all(after[c]["actual"] == "TRUE" for c in misjudged)
    assert admin.credits() == pytest.approx(len(misjudged) * 0.8)


def test_the_sdk_retries_the_bare_id_crash_blindly(sdk: Cekura, http: httpx.Client,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cekura._http.RETRY_BACKOFF", 0.0)  # its fixed 0.5 s and 1 s pauses: how often, not when
    admin = Admin(http)
    call_id = next(iter(admin.truth(ONE_QUESTION)))
    with pytest.raises(ServerError):
        sdk.test_sets.create_from_call_log(call_log_id=call_id, metrics=[ONE_QUESTION])
    # The SDK retries every 5xx, POSTs included: the sandbox saw the same crashing POST three times.
    assert [r["status"] for r in admin.stats()["requests"]] == [500, 500, 500]


@pytest.mark.parametrize("chosen", DIALECTS)
def test_the_sdk_is_refused_with_the_wrong_key(monkeypatch: pytest.MonkeyPatch, chosen: str) -> None:
    with SandboxServer(api_key="only-this", dialect=chosen) as sandbox:  # type: ignore[arg-type]
        monkeypatch.setenv("CEKURA_API_URL", sandbox.url)
        monkeypatch.setenv("CEKURA_API_KEY", "not-this")
        with pytest.raises(AuthenticationError):
            Cekura().calls.list(agent_id=MAIN)
        assert Cekura(bearer_token="only-this").calls.list(agent_id=MAIN)["count"] == 180


# --- the CLI (`cekura[cli]`, the `cekura` command: cekura.cli.main:app) ------------------------------------


@pytest.fixture
def cli(http: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("CEKURA_API_URL", str(http.base_url))
    monkeypatch.setenv("CEKURA_API_KEY", KEY)
    monkeypatch.setenv("HOME", str(tmp_path))  # the CLI's config file (and any OAuth token) lives there
    monkeypatch.delenv("CEKURA_PROJECT_ID", raising=False)
    monkeypatch.setattr(cli_client, "_client", None)  # the CLI caches its client per process
    yield CliRunner()
    monkeypatch.setattr(cli_client, "_client", None)


def run(cli: CliRunner, *args: str) -> Any:
    outcome = cli.invoke(cli_command(), [*args, "--format", "json"])
    assert outcome.exit_code == 0, (args, outcome.output)
    return json.loads(outcome.stdout)


def test_the_cli_runs_the_labs_commands(cli: CliRunner, http: httpx.Client, dialect: str, tmp_path: Path) -> None:
    admin = Admin(http)
    calls = run(cli, "calls", "list", "--agent-id", str(MAIN))
    assert calls["count"] == 180 and calls["results"]
    call_id = next(c for c, t in admin.truth(ONE_QUESTION).items() if t["pattern"])
    detail = run(cli, "calls", "get", str(call_id))
    assert detail["id"] == call_id and detail["evaluation"]["metrics"][0]["id"] == ONE_QUESTION
    assert {m["id"] for m in run(cli, "metrics", "list", "--agent-id", str(MAIN))} >= {ONE_QUESTION, BOOKING}
    assert run(cli, "metrics", "get", str(ONE_QUESTION))["id"] == ONE_QUESTION
    vote = run(cli, "calls", "mark-metric-vote", str(call_id), "--metric-id", str(ONE_QUESTION), "--thumbs-down",
               "--expected-value", "true", "--feedback", "postcode and address together are one related question")
    assert vote == {"detail": "Vote recorded."}
    entry = {"call_log_id": call_id, "metrics": [{"metric": ONE_QUESTION, "expected_value": True,
                                                  "feedback": "postcode and address together are one question"}]}
    assert run(cli, "test-sets", "create-from-call-log", "--json", json.dumps(entry))["metric_reviews"]
    started = run(cli, "metric-reviews", "process-feedbacks", "--metric-id", str(ONE_QUESTION))
    polls = [run(cli, "metric-reviews", "progress", "--job-id", started["progress_id"]) for _ in range(4)]
    assert "improved_metric_description" in flat(polls[-1])  # the docs' wrapped form or the spec's flat one
    rerun_body = tmp_path / "rerun.json"
    rerun_body.write_text(json.dumps({"agent_id": MAIN, "call_logs": [call_id]}))
    assert [r["id"] for r in run(cli, "calls", "rerun-evaluation", "--from-file", str(rerun_body))] == [call_id]
    land(http, dialect)
    assert admin.truth(ONE_QUESTION)[call_id]["actual"] in ("TRUE", "FALSE")
    assert admin.credits() == pytest.approx(0.8)


def test_the_cli_evaluate_command_sends_no_scope(cli: CliRunner, http: httpx.Client) -> None:
    """`cekura calls evaluate` sends `call_log_ids`/`metric_ids` without an agent or project: the spec's
    request schema refuses that, and so does the sandbox, naming the field; the CLI shows it and exits 2."""
    call_id = http.get("/observability/v1/call-logs-external/", params={"agent_id": MAIN}).json()["results"][0]["id"]
    outcome = cli.invoke(cli_command(), ["calls", "evaluate", str(call_id), "--metric-ids", str(ONE_QUESTION)])
    assert outcome.exit_code == 2 and "agent_id" in outcome.output


def test_the_cli_reads_billing_with_an_organisation_key(cli: CliRunner, dialect: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if dialect == "spec":
        outcome = cli.invoke(cli_command(), ["billing", "info", "--format", "json"])
        assert outcome.exit_code == 2  # no billing endpoint in the spec dialect (as before issue 10)
        return
    refused = cli.invoke(cli_command(), ["billing", "info", "--format", "json"])
    assert refused.exit_code == 2 and "forbidden" in refused.output.lower()  # the 403 for a project key
    monkeypatch.setenv("CEKURA_API_KEY", ORG_KEY)
    monkeypatch.setattr(cli_client, "_client", None)
    assert run(cli, "billing", "info")["credits_remaining"] == "5000.00"
