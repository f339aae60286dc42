"""The custom_code runner's contract: the inputs Cekura documents, the `_result`/`_explanation` checks, and
what happens when the code misbehaves (each isolation failure ends with a clear result, never a hung or
crashed server)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cekura_labs_mcp.server.cekura.models import CallDetail, Metric
from cekura_labs_mcp.server.custom_code.checks import check_outputs
from cekura_labs_mcp.server.custom_code.inputs import build_inputs
from cekura_labs_mcp.server.custom_code.runner import (
    CodeRunner,
    Isolation,
    JudgeAnswer,
    JudgeRequest,
    JudgeUnavailable,
    Limits,
    RunReport,
    default_isolation,
)
from cekura_labs_mcp.server.sandbox import SandboxServer
from support import SANDBOX_KEY, SandboxAdmin

# The wall clock starts at spawn, so on a loaded machine (2 cores, many processes) an interpreter can take
# seconds just to start: a short wall limit would turn a CPU-limit or an ordinary run into `timeout`. It is a
# bound here, not what the tests measure; the one test of the wall clock sets its own short limit.
FAST = Limits(wall_seconds=60, cpu_seconds=1)
WALL_TEST = Limits(wall_seconds=1.5, cpu_seconds=1)
RUNNER = CodeRunner(limits=FAST)
CALLS = "/observability/v1/call-logs-external/"

SHAPES = '''
import re
def kind(value):
    return type(value).__name__
names = ["transcript", "transcript_json", "call_duration", "call_end_reason", "voice_recording",
         "agent_description", "date", "timestamp", "metadata", "recording_data", "latency_data",
         "dynamic_variables", "call_log_id", "topic"]
_result = {
    "top_level": {name: kind(globals()[name]) for name in names},
    "in_data": sorted(name for name in names if name in data),
    "turn_keys": sorted(transcript_json[0]),
    "turn_roles": sorted({t["role"] for t in transcript_json}),
    "date_ok": bool(re.fullmatch(r"\\d{4}-\\d{2}-\\d{2}", date)),
    "recording": {k: kind(v) for k, v in recording_data.items()},
    "latency_keys": sorted(latency_data[0]) if latency_data else [],
    "explanation_kind": kind(data["explanation"]),
    "results": {k: v for k, v in data.items()
                if k not in names and k not in ("explanation", "Average Latency (in ms)")},
    "average_latency": kind(data["Average Latency (in ms)"]),
    "explanations": {k: kind(v) for k, v in data["explanation"].items()},
    "simulation_only": [n for n in ("tags", "run_id", "test_profile") if n in data],
}
_explanation = "shapes"
'''


def _call(sandbox: SandboxAdmin, call_id: int) -> CallDetail:
    return CallDetail.model_validate(sandbox.api("GET", f"{CALLS}{call_id}/"))


def _metrics(sandbox: SandboxAdmin) -> list[Metric]:
    rows = sandbox.api("GET", "/test_framework/v1/metrics/", params={"agent_id": sandbox.info()["main_agent_id"]})
    return [Metric.model_validate(m) for m in (rows["results"] if isinstance(rows, dict) else rows)]


def _run(code: str, data: dict[str, Any] | None = None, **kwargs: Any) -> RunReport:
    return RUNNER.run(code, data or {"transcript": "hi"}, **kwargs)


def test_every_documented_variable_has_its_documented_shape(sandbox: SandboxAdmin) -> None:
    one_question = sandbox.metric_named("one question")["id"]
    call_id = int(next(iter(sandbox.truth(one_question))))
    call = _call(sandbox, call_id)
    inputs = build_inputs(call, metric_id=9105, metrics=_metrics(sandbox))
    report = _run(SHAPES, inputs.data)
    assert report.status == "ok", report.error
    assert report.result is not None
    shapes = report.result.value
    assert shapes["top_level"] == {
        "transcript": "str", "transcript_json": "list", "call_duration": "float", "call_end_reason": "str",
        "voice_recording": "str", "agent_description": "str", "date": "str", "timestamp": "str",
        "metadata": "dict", "recording_data": "dict", "latency_data": "list", "dynamic_variables": "dict",
        "call_log_id": "int", "topic": "str"}
    assert len(shapes["in_data"]) == 14
    assert shapes["turn_keys"] == ["content", "end_time", "role", "start_time", "time"]  # as python-metric.mdx
    assert shapes["turn_roles"] == ["Main Agent", "Testing Agent"]
    assert shapes["date_ok"]
    assert shapes["recording"] == {
        "has_audio_data": "bool", "sample_rate": "int", "shape": "list", "separable_channels": "bool",
        "total_duration": "float", "main_speaking": "list", "testing_speaking": "list"}
    assert shapes["latency_keys"] == ["latency", "speaker", "start_time"]
    assert shapes["explanation_kind"] == "dict"
    assert shapes["average_latency"] in ("float", "NoneType")
    # Other metrics by name (binary as 5/0, enum as the label, numbers as floats); the metric under test and
    # other custom_code metrics are left out, since custom code runs after every other metric.
    results = shapes["results"]
    assert results["One Question Per Turn"] in (0, 5, None)
    assert "Call Under Five Minutes" not in results
    assert results["Caller Sentiment"] in ("positive", "neutral", "negative", None)
    assert results.get("Empathy") is None or isinstance(results["Empathy"], float)
    assert set(shapes["explanations"]) == set(results)
    assert set(shapes["explanations"].values()) == {"list"}
    assert shapes["simulation_only"] == []
    assert inputs.data["call_log_id"] == call_id
    assert inputs.data["voice_recording"].startswith("https://")


def test_the_sandbox_gives_code_the_same_inputs(sandbox_server: SandboxServer, sandbox: SandboxAdmin) -> None:
    """What a re-run in the sandbox hands the code is what test_custom_code builds from the API's call and
    the agents endpoint."""
    store = sandbox_server.app.state.store
    metrics = _metrics(sandbox)
    agent_id = sandbox.info()["main_agent_id"]
    description = sandbox.api("GET", f"/test_framework/v2/aiagents/{agent_id}/")["description"]
    for call_id in sorted(c.id for c in store.calls.values() if c.agent_id == agent_id)[:12]:
        call = store.calls[call_id]
        there = store.evaluator.code_data(call, store.agents[agent_id], store.assigned(agent_id))
        here = build_inputs(_call(sandbox, call_id), metric_id=9105, metrics=metrics,
                            agent_description=description).data
        assert set(there) == set(here)
        assert abs(there.pop("call_duration") - here.pop("call_duration")) <= 0.5  # the API gives MM:SS
        there["recording_data"].pop("total_duration")
        here["recording_data"].pop("total_duration")
        assert there == here and here["agent_description"]


# ---- each input from its source (seed 003, python-metric.mdx, metric-variables.mdx) ---------------

SOURCE_CALL = {
    "id": 7, "agent": 3, "duration": "00:12", "timestamp": "2026-01-02T03:04:05Z", "call_ended_reason": "hangup",
    "topic": "Billing", "metadata": {"clinic": "A"}, "dynamic_variables": {"name": "B"},
    "voice_recording_url": "https://rec.example/7.wav", "transcript": "[00:00] Main Agent: Hello?\n...",
    "transcript_object": [
        {"role": "Main Agent", "content": "Hello?", "start_time": 0.5, "end_time": 2.0},
        {"role": "Testing Agent", "content": "Hi.", "start_time": 2.5, "end_time": 3.0},
        {"role": "Main Agent", "content": "Bye.", "start_time": 63.75, "end_time": 71.8},
    ],
    "evaluation": {"metrics": [
        {"id": 1, "name": "Judge A", "eval_type": "binary", "passed": True, "score": 5, "explanation": "fine"},
        {"id": 5, "name": "Judge B", "type": "binary_workflow_adherence", "score": 0, "explanation": ["no"]},
        {"id": 6, "name": "Judge C", "eval_type": "binary", "score": None, "explanation": []},
        {"id": 2, "name": "Mood", "value": "calm", "enum": "calm", "explanation": ["x"]},
        {"id": 3, "name": "Score", "eval_type": "numeric", "score": 3.5, "explanation": []},
        {"id": 4, "name": "Unknown", "value": "N/A", "explanation": []},
        {"id": 8, "name": "Mystery", "score": 2, "explanation": []},
        {"id": 9, "name": "Itself", "value": "FALSE", "explanation": []},
    ]},
}
TODAY = date(2026, 11, 30)


def _source_inputs() -> dict[str, Any]:
    return build_inputs(CallDetail.model_validate(SOURCE_CALL), metric_id=9, agent_description="## Booking\nBook.",
                        today=TODAY).data


@pytest.mark.parametrize(("name", "expected"), [
    ("transcript", SOURCE_CALL["transcript"]),  # the call's own transcript text
    ("transcript_json", [  # the call's turns, in the docs' keys (time is MM:SS of the start)
        {"role": "Main Agent", "time": "00:00", "content": "Hello?", "end_time": 2.0, "start_time": 0.5},
        {"role": "Testing Agent", "time": "00:02", "content": "Hi.", "end_time": 3.0, "start_time": 2.5},
        {"role": "Main Agent", "time": "01:03", "content": "Bye.", "end_time": 71.8, "start_time": 63.75}]),
    ("call_duration", 12.0),  # the API's MM:SS (the last turn ends at 71.8 s: they disagree, MM:SS wins)
    ("call_end_reason", "hangup"),
    ("voice_recording", "https://rec.example/7.wav"),
    ("agent_description", "## Booking\nBook."),  # the agent's description (the agents endpoint), passed in
    ("date", "2026-11-30"),  # TODAY, not the call's date (2026-01-02): "Current date in YYYY-MM-DD format"
    ("timestamp", "2026-01-02T03:04:05Z"),  # the call's timestamp
    ("metadata", {"clinic": "A"}),
    ("dynamic_variables", {"name": "B"}),
    ("call_log_id", 7),
    ("topic", "Billing"),
    ("latency_data", [{"latency": 60750.0, "speaker": "Main Agent", "start_time": 63.75}]),
    ("Average Latency (in ms)", 60750.0),
    ("recording_data", {"has_audio_data": False, "sample_rate": 0, "shape": [0, 2], "separable_channels": False,
                        "total_duration": 12.0, "main_speaking": [[0.5, 2.0], [63.75, 71.8]],
                        "testing_speaking": [[2.5, 3.0]]}),
    # Other metrics by name, read by the one result reader, in the judge's form for code:
    ("Judge A", 5),  # binary pass (`passed: true`) -> 5
    ("Judge B", 0),  # legacy binary_workflow_adherence, score 0 -> 0
    ("Judge C", None),  # binary with score None -> N/A -> None
    ("Mood", "calm"),  # enum -> the label
    ("Score", 3.5),  # numeric -> the number
    ("Unknown", None),  # "N/A" -> None
    ("Mystery", 2),  # a bare score with no eval type is unreadable: passed as Cekura sent it (and a note)
    ("explanation", {"Judge A": ["fine"], "Judge B": ["no"], "Judge C": [], "Mood": ["x"], "Score": [],
                     "Unknown": [], "Mystery": []}),
])
def test_each_input_comes_from_its_source(name: str, expected: Any) -> None:
    data = _source_inputs()
    assert data[name] == expected
    assert "Itself" not in data  # the metric under test is not among its own inputs


def test_date_defaults_to_today_and_unknown_inputs_are_noted() -> None:
    inputs = build_inputs(CallDetail.model_validate(SOURCE_CALL), metric_id=9)
    assert inputs.data["date"] == datetime.now(UTC).date().isoformat()
    assert any("agent_description is empty" in n for n in inputs.notes)
    assert any("'Mystery'" in n and "unreadable" in n and "as sent (2)" in n for n in inputs.notes)


BINARY = ("binary", None)
ENUM = ("enum", ["positive", "neutral", "negative"])


@pytest.mark.parametrize(("kind", "code", "display", "problem", "warning"), [
    (BINARY, "_result = True\n_explanation = 'ok'", "TRUE", None, None),
    (BINARY, "_result = 5\n_explanation = ['judge says']", "TRUE", None, "is a list; Cekura documents a string"),
    (BINARY, "_result = 0\n_explanation = 'no'", "FALSE", None, None),
    (BINARY, "_result = None\n_explanation = 'not applicable'", "N/A", None, None),
    (BINARY, "_result = 'TRUE'\n_explanation = 'x'", "TRUE", None, "string"),
    (BINARY, "_result = 3\n_explanation = 'x'", "N/A", "does not fit a binary metric", None),
    (BINARY, "_result = {1, 2}\n_explanation = 'x'", "N/A", "does not fit a binary metric", None),
    (BINARY, "_explanation = 'x'", "N/A", "`_result` was never set", None),
    (BINARY, "_result = True", "TRUE", "`_explanation` was never set", None),
    (BINARY, "_result = True\n_explanation = 42", "TRUE", "`_explanation` is a int", None),
    (BINARY, "_result = True\n_explanation = None", "TRUE", "`_explanation` is a NoneType", None),
    (("binary_workflow_adherence", None), "_result = False\n_explanation = 'x'", "FALSE", None, None),
    (BINARY, "_result = True\n_explanation = ''", "TRUE", None, "empty"),
    (ENUM, "_result = 'neutral'\n_explanation = 'x'", "neutral", None, None),
    (ENUM, "_result = 'Neutral '\n_explanation = 'x'", "neutral", None, "ignoring case"),
    (ENUM, "_result = 'angry'\n_explanation = 'x'", "N/A", "not one of this metric's values", None),
    (ENUM, "_result = 1\n_explanation = 'x'", "N/A", "an enum metric needs one of", None),
    (("numeric", None), "_result = 42\n_explanation = 'x'", "42", None, None),
    (("numeric", None), "_result = True\n_explanation = 'x'", "N/A", "needs a number", None),
    (("numeric", None), "_result = float('nan')\n_explanation = 'x'", "N/A", "finite", None),
    (("continuous_qualitative", None), "_result = 4.5\n_explanation = 'x'", "4.5", None, None),
    (("continuous_qualitative", None), "_result = 7\n_explanation = 'x'", "N/A", "outside 0–5", None),
    (("continuous_qualitative", None), "_result = '3'\n_explanation = 'x'", "3", None, "string"),
])
def test_result_and_explanation_checks(kind: tuple[str, list[str] | None], code: str, display: str,
                                       problem: str | None, warning: str | None) -> None:
    eval_type, enum_values = kind
    checked = check_outputs(_run(code), eval_type, enum_values)
    assert checked.display == display
    if problem is None:
        assert checked.ok, checked.problems
    else:
        assert any(problem in p for p in checked.problems), checked.problems
    if warning is not None:
        assert any(warning in w for w in checked.warnings), checked.warnings


def test_errors_carry_the_line_number() -> None:
    report = _run("x = 1\n\n_result = tarnscript\n")
    assert report.status == "error" and report.error is not None
    assert (report.error.kind, report.error.line, report.error.source) == ("NameError", 3, "_result = tarnscript")
    nested = _run("def helper(t):\n    return t['missing']\n\n_result = helper({})\n")
    assert nested.error is not None and nested.error.line == 2
    assert [f[0] for f in nested.error.frames] == [4, 2]
    syntax = _run("if True\n    _result = 1\n")
    assert syntax.error is not None and (syntax.error.kind, syntax.error.line) == ("SyntaxError", 1)


def test_values_cross_the_process_boundary_intact() -> None:
    tricky = 'é"\\\n\x00' + chr(0xD800) + "😀"
    report = _run(f"_result = {{'text': {tricky!r}, 'n': [1, 2.5, float('inf')], 'deep': [[[None, True]]]}}\n"
                  "_explanation = ('a', 'b')\n", {"transcript": tricky})
    assert report.status == "ok" and report.result is not None and report.explanation is not None
    assert report.result.value == {"text": tricky, "n": [1, 2.5, float("inf")], "deep": [[[None, True]]]}
    assert (report.explanation.type, report.explanation.value) == ("tuple", ["a", "b"])
    odd = _run("_result = {1, 2}\n_explanation = 'x'")
    assert odd.result is not None and (odd.result.type, odd.result.value, odd.result.repr) == ("set", None, "{1, 2}")


def test_printed_output_is_returned() -> None:
    report = _run("print('turns:', len(transcript))\n_result = True\n_explanation = 'x'")
    assert report.status == "ok" and report.output.strip() == "turns: 2"


# ---- isolation ------------------------------------------------------------------------------------


def test_infinite_loop_stops_at_the_cpu_limit_with_its_line() -> None:
    report = _run("x = 0\nwhile True:\n    x += 1\n", limits=FAST)
    assert report.status == "cpu_limit" and report.error is not None
    assert report.error.line in (2, 3) and "CPU" in report.error.message


def test_a_loop_that_swallows_the_cpu_signal_is_killed_at_the_hard_limit() -> None:
    report = _run("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n",
                  limits=FAST)
    assert report.status == "cpu_limit" and report.exit_code == -9


def test_blocking_code_stops_at_the_wall_clock_with_its_line() -> None:
    report = _run("import time\n\ntime.sleep(60)\n", limits=WALL_TEST)
    assert report.status == "timeout" and report.error is not None
    assert report.error.line == 3 and report.duration_ms < 4000
    assert "Thread" not in report.output  # the line dump is parsed, not shown as output


def test_crash_is_reported() -> None:
    report = _run("import faulthandler\nfaulthandler._sigsegv()\n")
    assert report.status == "crashed" and report.error is not None and "SIGSEGV" in report.error.message


def test_memory_limit() -> None:
    report = _run("blob = 'x' * (2 ** 31)\n")
    assert report.status == "memory_limit" and report.error is not None and report.error.line == 1


def test_huge_output_is_cut_and_stopped() -> None:
    report = _run("while True:\n    print('x' * 10000)\n")
    assert report.status == "output_limit" and report.output_truncated
    assert len(report.output) <= FAST.output_keep


def test_huge_result_is_refused() -> None:
    report = _run("_result = 'x' * 5_000_000\n_explanation = 'big'\n")
    assert report.status == "error" and report.error is not None and report.error.kind == "ResultTooLarge"


def test_sockets_are_refused_and_nothing_leaves() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept())

    waiter = threading.Thread(target=accept)
    waiter.start()
    report = _run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}))\n_result = True\n")
    waiter.join()
    listener.close()
    assert report.status == "error" and report.error is not None
    assert report.error.kind == "PermissionError" and report.error.line == 2
    assert any(b.startswith("socket.") for b in report.blocked)
    assert accepted == []


def test_processes_signals_and_outside_files_are_refused() -> None:
    for code in ("import os\nos.kill(os.getppid(), 9)\n", "import subprocess\nsubprocess.run(['true'])\n",
                 f"open('/proc/{os.getpid()}/environ').read()\n", "open('/etc/passwd').read()\n",
                 "import ctypes\n", "open('/tmp/escape.txt', 'w').write('x')\n"):
        report = _run(code)
        assert report.status == "error", code
        assert report.error is not None and report.error.kind in ("PermissionError", "ImportError"), report.error
    assert not os.path.exists("/tmp/escape.txt")
    flood = _run("for i in range(1000):\n    open(f'f{i}', 'w').write('x' * 1000)\n")
    assert flood.error is not None and "more than 32 times" in flood.error.message and flood.error.line == 2


def test_the_child_has_a_clean_environment_and_its_own_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEKURA_API_KEY", SANDBOX_KEY)
    report = _run("import os, tempfile\nopen('scratch.txt', 'w').write('ok')\nkept = tempfile.mkdtemp()\n"
                  "_result = {'env': dict(os.environ), 'cwd': os.getcwd(), 'files': sorted(os.listdir('.'))}\n"
                  "_explanation = 'env'")
    assert report.status == "ok" and report.result is not None, report.error
    assert report.sandbox == "bwrap"
    seen = report.result.value
    assert SANDBOX_KEY not in str(seen) and "CEKURA_API_KEY" not in seen["env"] and "HOME" not in seen["env"]
    assert set(seen["env"]) <= {"LC_CTYPE"}  # the interpreter's own UTF-8 locale coercion, nothing inherited
    # A tmpfs inside the sandbox: empty at the start, gone with it; the temporary directory went there too.
    assert seen["cwd"] == "/sandbox" and seen["files"][0] == "scratch.txt" and len(seen["files"]) == 2
    assert not os.path.exists("/sandbox")


def test_judge_calls_go_through_the_parent_and_a_runaway_loop_is_stopped() -> None:
    asked: list[JudgeRequest] = []

    def judge(request: JudgeRequest) -> JudgeAnswer:
        asked.append(request)
        return JudgeAnswer(5, ["fine"])

    one = _run("r = evaluate_llm_judge_metric(data, api_key='ignored', description='Was it fine?',"
               " eval_type='binary_qualitative')\n_result = r['result'] == 5\n_explanation = r['explanation']\n",
               judge=judge)
    assert one.status == "ok" and one.judge_calls == 1 and one.result is not None and one.result.value is True
    assert asked[0].description == "Was it fine?" and asked[0].data == {"transcript": "hi"}
    assert "ignored" not in repr(asked[0])
    asked.clear()
    loop = _run("while True:\n    try:\n        evaluate_llm_judge_metric(data)\n    except Exception:\n"
                "        pass\n", judge=judge)
    assert loop.status == "judge_limit" and len(asked) == FAST.max_judge_calls


def test_a_refused_judge_call_reaches_the_code_as_cekura_documents_an_error() -> None:
    """python-metric.mdx: `explanation` is "List of String explaining the evaluation result or error message":
    a failed judge call returns, it does not raise; the runner records it for the report."""
    def refuse(_request: JudgeRequest) -> JudgeAnswer:
        raise JudgeUnavailable("not approved")

    report = _run("r = evaluate_llm_judge_metric(data)\n_result = r['result']\n_explanation = r['explanation']\n",
                  judge=refuse)
    assert report.status == "ok" and report.result is not None and report.explanation is not None
    assert report.result.value is None and report.explanation.value == ["Judge error: not approved"]
    assert report.judge_errors == ["not approved"]


def test_without_namespace_or_user_drop_the_audit_hook_still_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback where `unshare` or root is missing: the server's own interpreter and user."""
    monkeypatch.setenv("CEKURA_API_KEY", SANDBOX_KEY)
    weakest = CodeRunner(limits=FAST, isolation=Isolation(os.path.realpath(sys.executable)))
    for code in ("import socket\nsocket.getaddrinfo('example.com', 80)\n",
                 f"open('/proc/{os.getpid()}/environ', 'rb').read()\n", "import os\nos.kill(os.getppid(), 0)\n"):
        report = weakest.run(code, {})
        assert report.status == "error" and report.error is not None and report.error.kind == "PermissionError"
    env = weakest.run("import os\n_result = dict(os.environ)\n_explanation = ''\n", {})
    assert env.result is not None and "CEKURA_API_KEY" not in env.result.value
    assert env.sandbox == "unsandboxed" and env.unsandboxed


def test_isolation_is_described_honestly() -> None:
    isolation = default_isolation()
    assert isolation.kind == "bwrap", isolation.refusal  # CI installs bubblewrap (.ci/run)
    summary = " ".join(isolation.summary())
    assert "bubblewrap" in summary and "network" in summary and "API key" in summary
    weak = Isolation(os.path.realpath(sys.executable))
    assert weak.summary()[0].startswith("ran UNSANDBOXED")


def test_the_embedded_sandbox_says_when_code_ran_unsandboxed_or_was_refused() -> None:
    """The sandbox's API re-runs code with the same runner: its answers carry the same refusal and warning."""
    from cekura_labs_mcp.server.sandbox.runner import IsolatedRunner

    def judge(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {"result": 5, "explanation": ["ok"]}

    code = "_result = True\n_explanation = 'ran'\n"
    refused = IsolatedRunner(CodeRunner(limits=FAST, isolation=Isolation(
        sys.executable, kind="refused", refusal="custom code was not run: no sandbox here"))).run(code, {}, judge)
    assert refused.error == "NoSandbox" and refused.explanation == ["custom code was not run: no sandbox here"]
    weak = IsolatedRunner(CodeRunner(limits=FAST, isolation=Isolation(os.path.realpath(sys.executable))))
    ran = weak.run(code, {}, judge)
    assert ran.result is True and ran.explanation[0] == "ran" and "UNSANDBOXED" in ran.explanation[-1]
    sandboxed = IsolatedRunner(CodeRunner(limits=FAST)).run(code, {}, judge)
    assert sandboxed.explanation == ["ran"]


def test_the_seatbelt_profile_denies_by_default(tmp_path: Path) -> None:
    """macOS's profile (not runnable on this Linux machine; the probe refuses code where it fails)."""
    from cekura_labs_mcp.server.custom_code import sandboxing

    profile = sandboxing.seatbelt_profile(None, sys.executable)
    lines = profile.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"] and "(deny network*)" in lines
    assert '(allow file-read* file-write* (subpath (param "WORKDIR")))' in lines
    assert not any("network" in line and "allow" in line for line in lines)
    assert "(allow signal (target self))" in lines and "(allow process-info* (target self))" in lines
    assert not any("file-write" in line and "WORKDIR" not in line for line in lines)
    # The person's installed packages stay out even where they sit inside a readable standard library.
    stdlib = tmp_path / "lib" / "python3"
    (stdlib / "site-packages").mkdir(parents=True)
    files = sandboxing.InterpreterFiles(sys.executable, (str(stdlib),), ())
    denied = f'(deny file-read* (subpath "{stdlib}/site-packages")'
    assert any(line.startswith(denied) for line in sandboxing.seatbelt_profile(files, sys.executable).splitlines())
