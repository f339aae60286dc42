"""Run a custom_code metric in an operating-system sandbox, as Cekura would, and report what happened.

Every run is a fresh `python -I -S -B` process inside the sandbox `sandboxing.py` builds (bubblewrap on
Linux, Seatbelt on macOS): it sees only the interpreter and its standard library, an empty working
directory that disappears with it, no home, no other process, no network (loopback included), no
descriptor but its own pipes, and a cleared environment. Inside it, enforced for every run:
- kernel limits set by the child before the code runs: CPU seconds (soft limit raises `CpuTimeLimit` at
  the running line, hard limit one second later kills), address space, size of any file written, open
  files, no core dumps, no child processes or threads (RLIMIT_NPROC);
- a wall-clock limit (time spent waiting for the judge excluded), then SIGUSR1 (the child dumps the line
  it is on) and SIGKILL to the process group;
- caps on what it prints, on the result message and on the number of judge calls; judge calls go out
  through the parent on the pipe, never from the sandbox, and the parent decides whether they are spent;
- an audit hook refusing sockets, processes, signals, ctypes and files outside the working directory: a
  second line behind the sandbox, never the only one.

Where no OS sandbox works (no bubblewrap, user namespaces blocked, no `sandbox-exec`), code is refused
with one line saying so, unless the person sets `CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1`. Then it runs in
the old, weaker way (a separate limited process, a private network namespace where `unshare` allows it,
the drop to `nobody` under root, and the audit hook) and every report says it ran unsandboxed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import marshal
import os
import re
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cekura_labs_mcp.server.custom_code import sandboxing
from cekura_labs_mcp.server.logs import get_logger

log = get_logger("custom_code.runner")

CHILD_SOURCE = (Path(__file__).parent / "child.py").read_text(encoding="utf-8")
_DUMP_LINE = re.compile(r'File "<custom_code>", line (\d+)')
_READ_CHUNK = 65536

Status = Literal["ok", "error", "timeout", "cpu_limit", "memory_limit", "output_limit", "judge_limit",
                 "crashed", "no_result", "refused"]
Kind = Literal["bwrap", "seatbelt", "unsandboxed", "refused"]
UNSANDBOXED_WARNING = ("ran UNSANDBOXED: no OS sandbox is available and CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1 is set, "
                       "so the code could read what the server's user can read and reach the network")


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 5.0
    cpu_seconds: int = 3
    memory_mb: int = 512
    file_mb: int = 8
    disk_mb: int = 64
    open_files: int = 64
    output_bytes: int = 1_000_000
    output_keep: int = 4000
    message_bytes: int = 4_000_000
    max_judge_calls: int = 4

    def for_child(self) -> dict[str, int]:
        return {"cpu_seconds": self.cpu_seconds, "memory_bytes": self.memory_mb * 1024 * 1024,
                "file_bytes": self.file_mb * 1024 * 1024, "open_files": self.open_files,
                "message_bytes": self.message_bytes}


@dataclass(frozen=True)
class JudgeRequest:
    """What the code passed to `evaluate_llm_judge_metric` (its `api_key` argument is never forwarded)."""

    data: dict[str, Any]
    description: str
    eval_type: str | None
    enum_values: list[str] | None


@dataclass(frozen=True)
class JudgeAnswer:
    result: Any
    explanation: list[str]


class JudgeUnavailable(Exception):
    """The judge call was refused or failed; the message reaches the code as `JudgeCallFailed`."""


JudgeFn = Callable[[JudgeRequest], JudgeAnswer]


def no_judge(_request: JudgeRequest) -> JudgeAnswer:
    raise JudgeUnavailable("no judge is available to this run")


@dataclass(frozen=True)
class CodeError:
    kind: str
    message: str
    line: int | None = None
    source: str | None = None
    frames: tuple[tuple[int, str], ...] = ()

    def describe(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        code = f" (`{self.source}`)" if self.source else ""
        return f"{self.kind}{where}{code}: {self.message}"


@dataclass(frozen=True)
class Value:
    """`_result` or `_explanation` as the child saw it: its JSON form and its Python type name."""

    value: Any
    type: str
    repr: str | None = None


@dataclass
class RunReport:
    status: Status
    result: Value | None = None
    explanation: Value | None = None
    has_result: bool = False
    has_explanation: bool = False
    error: CodeError | None = None
    output: str = ""
    output_truncated: bool = False
    judge_calls: int = 0
    judge_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    judge_ms: float = 0.0
    cpu_ms: float = 0.0
    exit_code: int | None = None
    sandbox: Kind = "refused"

    @property
    def unsandboxed(self) -> bool:
        return self.sandbox == "unsandboxed"


@dataclass(frozen=True)
class Isolation:
    """How runs are isolated on this machine (probed once; see the module docstring).

    `prefix` is the command the interpreter runs under (bubblewrap's or sandbox-exec's arguments, or
    `unshare` when unsandboxed); `spawn_user` is who that command is started as (root starts bubblewrap as
    `nobody`); `user` is who the child drops to itself (unsandboxed under root only)."""

    interpreter: str
    kind: Kind = "unsandboxed"
    prefix: tuple[str, ...] = ()
    user: tuple[int, int] | None = None
    spawn_user: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()
    refusal: str = ""

    @property
    def sandboxed(self) -> bool:
        return self.kind in ("bwrap", "seatbelt")

    @property
    def network_namespace(self) -> bool:
        return self.kind == "bwrap" or (self.kind == "unsandboxed" and bool(self.prefix))

    def summary(self) -> list[str]:
        if self.kind == "refused":
            return [f"refused: {self.refusal}"]
        limits = ("separate process with CPU, memory, file-size, open-file and process limits; wall-clock kill; "
                  "clean environment (no API key); audit hook against sockets, processes and files outside the "
                  "working directory as a second line")
        if self.kind == "bwrap":
            who = " (bubblewrap started as nobody)" if self.spawn_user else ""
            return [f"sandbox: bubblewrap{who}: own user, PID, network (no loopback to the host), IPC and UTS "
                    "namespaces; read-only file system of the interpreter and its standard library only; empty "
                    "tmpfs working directory; no /proc, no home; capabilities dropped", limits, *self.notes]
        if self.kind == "seatbelt":
            return ["sandbox: Seatbelt (sandbox-exec), deny by default: the interpreter's files, a fresh "
                    "working directory, no network, no processes, no signals outside itself", limits, *self.notes]
        return [
            UNSANDBOXED_WARNING, limits,
            "network: private network namespace" if self.prefix else "network: blocked by the audit hook only",
            f"user: runs as uid {self.user[0]} (unprivileged)" if self.user else "user: runs as the server's own user",
            *self.notes,
        ]


class _Killed(Exception):
    def __init__(self, status: Status, error: CodeError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


@dataclass
class _Run:
    """The state of one child while its pipes are served."""

    proc: subprocess.Popen[bytes]
    msg_fd: int
    out_fd: int
    limits: Limits
    judge: JudgeFn
    pending_in: bytearray
    deadline: float
    messages: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)
    output_total: int = 0
    result: dict[str, Any] | None = None
    judge_calls: int = 0
    judge_seconds: float = 0.0
    judge_errors: list[str] = field(default_factory=list)
    wrapped: bool = False  # the code runs under a wrapper process (bubblewrap) rather than as `proc` itself
    started: float = field(default_factory=time.monotonic)


class CodeRunner:
    """Runs custom_code in an isolated child process. Thread-safe: each `run` is independent."""

    def __init__(self, limits: Limits | None = None, isolation: Isolation | None = None) -> None:
        self.limits = limits or Limits()
        self._isolation = isolation
        self._lock = threading.Lock()

    @property
    def isolation(self) -> Isolation:
        with self._lock:
            if self._isolation is None:
                self._isolation = default_isolation()
            return self._isolation

    def run(self, code: str, data: dict[str, Any], judge: JudgeFn = no_judge,
            limits: Limits | None = None) -> RunReport:
        return run_isolated(code, data, judge, limits or self.limits, self.isolation)


def run_isolated(code: str, data: dict[str, Any], judge: JudgeFn, limits: Limits, isolation: Isolation) -> RunReport:
    if isolation.kind == "refused":
        return RunReport(status="refused", sandbox="refused", error=CodeError("NoSandbox", isolation.refusal))
    started = time.perf_counter()
    # Under bubblewrap the working directory is a tmpfs inside the sandbox: nothing on the host to clean.
    workdir = None if isolation.kind == "bwrap" else os.path.realpath(tempfile.mkdtemp(prefix="cekura-code-"))
    try:
        if workdir is not None and isolation.user is not None:
            os.chown(workdir, *isolation.user)
        report = _spawn_and_serve(code, data, judge, limits, isolation, workdir)
    finally:
        if workdir is not None:
            _remove_workdir(workdir)
    report.sandbox = isolation.kind
    report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return report


def _remove_workdir(workdir: str) -> None:
    """Delete a host working directory (Seatbelt, unsandboxed) whatever the code did to it: a directory it
    made unreadable (`chmod 0`) would stop `rmtree` and stay behind. Its processes are gone by now (killed and
    reaped, none could fork), so nothing changes under us; symlinks are never followed, so a link the code
    planted cannot turn the chmod onto a file outside."""
    if not os.path.islink(workdir):
        with contextlib.suppress(OSError):
            os.chmod(workdir, 0o700)
    for root, dirs, _files in os.walk(workdir):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)
    shutil.rmtree(workdir, ignore_errors=True)


def _command(isolation: Isolation, workdir: str | None, msg_fd: int) -> list[str]:
    prefix = list(isolation.prefix)
    if isolation.kind == "seatbelt" and workdir is not None:
        prefix[1:1] = ["-D", f"WORKDIR={workdir}"]
    return [*prefix, isolation.interpreter, "-I", "-S", "-B", "-c", CHILD_SOURCE, str(msg_fd)]


def _spawn_and_serve(code: str, data: dict[str, Any], judge: JudgeFn, limits: Limits, isolation: Isolation,
                     workdir: str | None) -> RunReport:
    msg_r, msg_w = os.pipe()
    config = {"code": code, "data": data, "limits": limits.for_child(),
              "user": list(isolation.user) if isolation.user else None}
    spawn: dict[str, Any] = {}
    if isolation.spawn_user is not None:
        spawn = {"user": isolation.spawn_user[0], "group": isolation.spawn_user[1], "extra_groups": []}
    try:
        proc = subprocess.Popen(
            _command(isolation, workdir, msg_w), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, pass_fds=(msg_w,), cwd=workdir or "/",
            env={} if workdir is None else _clean_env(workdir), start_new_session=True, close_fds=True, **spawn)
    except BaseException:
        os.close(msg_r)
        raise
    finally:
        os.close(msg_w)
    assert proc.stdin is not None and proc.stdout is not None
    run = _Run(proc=proc, msg_fd=msg_r, out_fd=proc.stdout.fileno(), limits=limits, judge=judge,
               pending_in=bytearray(_frame(config)),
               deadline=time.monotonic() + limits.wall_seconds, wrapped=isolation.kind == "bwrap")
    killed: _Killed | None = None
    try:
        _serve(run)
    except _Killed as exc:
        killed = exc
    finally:
        os.close(msg_r)
    exit_code, cpu_seconds = _finish(proc)
    if run.wrapped:
        # wait4 measures bubblewrap, not the interpreter it starts: use what the child measured itself, or,
        # when it was killed, the wall time (a single-threaded process cannot use more CPU than that).
        reported = run.result.get("cpu_seconds") if run.result else None
        cpu_seconds = float(reported) if isinstance(reported, int | float) else time.monotonic() - run.started
    if run.wrapped and exit_code > 128:
        exit_code = 128 - exit_code  # bubblewrap reports a child killed by signal N as 128 + N
    return _report(run, killed, exit_code, cpu_seconds)


def _frame(message: dict[str, Any]) -> bytes:
    """A length-prefixed `marshal` frame for the child: it loads these without importing `json`. Only
    the parent writes them; what the child sends back is parsed as JSON, never unmarshalled."""
    plain = json.loads(json.dumps(message, default=str))
    blob = marshal.dumps(plain)
    return len(blob).to_bytes(8, "big") + blob


def _clean_env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}


def _serve(run: _Run) -> None:
    """Feed stdin, read messages and output, answer judge calls, until both pipes close or a limit hits."""
    stdin = run.proc.stdin
    assert stdin is not None
    for fd in (run.msg_fd, run.out_fd, stdin.fileno()):
        os.set_blocking(fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(run.msg_fd, selectors.EVENT_READ)
        selector.register(run.out_fd, selectors.EVENT_READ)
        open_reads = 2
        while open_reads:
            _sync_stdin(selector, run)
            remaining = run.deadline - time.monotonic()
            if remaining <= 0:
                _stop_for_time(run)
            for key, events in selector.select(timeout=remaining):
                if events & selectors.EVENT_WRITE:
                    _write_stdin(run)
                    continue
                chunk = _read(key.fd)
                if chunk is None:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    open_reads -= 1
                elif key.fd == run.msg_fd:
                    _on_messages(run, chunk)
                else:
                    _on_output(run, chunk)


def _sync_stdin(selector: selectors.BaseSelector, run: _Run) -> None:
    stdin = run.proc.stdin
    assert stdin is not None
    fd = stdin.fileno()
    registered = fd in selector.get_map()
    if run.pending_in and not registered:
        selector.register(fd, selectors.EVENT_WRITE)
    elif not run.pending_in and registered:
        selector.unregister(fd)


def _write_stdin(run: _Run) -> None:
    stdin = run.proc.stdin
    assert stdin is not None
    try:
        written = os.write(stdin.fileno(), run.pending_in[:_READ_CHUNK])
    except BlockingIOError:
        return
    except BrokenPipeError:
        run.pending_in.clear()  # the child is gone; its exit is reported from its status
        return
    del run.pending_in[:written]


def _read(fd: int) -> bytes | None:
    """A chunk, b"" at end of file, None when nothing is there after all."""
    try:
        return os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _on_output(run: _Run, chunk: bytes) -> None:
    run.output_total += len(chunk)
    room = run.limits.output_keep * 4 - len(run.output)
    if room > 0:
        run.output.extend(chunk[:room])
    if run.output_total > run.limits.output_bytes:
        _kill(run)
        raise _Killed("output_limit", CodeError(
            "OutputLimit", f"the code printed more than {run.limits.output_bytes:,} bytes and was stopped"))


def _on_messages(run: _Run, chunk: bytes) -> None:
    run.messages.extend(chunk)
    if len(run.messages) > run.limits.message_bytes * 2:
        _kill(run)
        raise _Killed("error", CodeError("MessageTooLarge", "the code sent more data to the runner than allowed"))
    while b"\n" in run.messages:
        line, _, rest = bytes(run.messages).partition(b"\n")
        run.messages[:] = rest
        _on_message(run, line)


def _on_message(run: _Run, line: bytes) -> None:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # a line nested deeper than `json` recurses is garbage too
        _kill(run)
        raise _Killed("error", CodeError("ProtocolError", "the code wrote garbage on the runner's channel")) from None
    if not isinstance(message, dict):
        return
    if run.result is not None:
        # The child writes exactly one result, last. The code shares its process and can write on this pipe
        # too, so every line is untrusted data; a second result, or anything after the result, was forged.
        _kill(run)
        raise _Killed("error", CodeError(
            "ProtocolError", "the code wrote its own messages on the runner's channel; the run was refused"))
    if message.get("type") == "result":
        if not _well_formed_result(message):
            # Only the code can have written it: the child's own result always has these shapes.
            _kill(run)
            raise _Killed("error", CodeError(
                "ProtocolError", "the code wrote a malformed result on the runner's channel; the run was refused"))
        run.result = message
    elif message.get("type") == "judge":
        _serve_judge(run, message)


def _well_formed_result(message: dict[str, Any]) -> bool:
    """The fields `_report` reads have the types the child writes (anything else would raise in the server)."""
    blocked, error = message.get("blocked"), message.get("error")
    if not (blocked is None or isinstance(blocked, list)):
        return False
    if error is not None and not (isinstance(error, dict) and isinstance(error.get("frames") or [], list)):
        return False
    return all(message.get(name) is None or isinstance(message.get(name), dict) for name in ("result", "explanation"))


def _serve_judge(run: _Run, message: dict[str, Any]) -> None:
    run.judge_calls += 1
    if run.judge_calls > run.limits.max_judge_calls:
        _kill(run)
        raise _Killed("judge_limit", CodeError(
            "JudgeLimit", f"the code asked the judge more than {run.limits.max_judge_calls} times for one call "
                          "(a loop?) and was stopped; no further judge call was made"))
    data = message.get("data")
    request = JudgeRequest(
        data=data if isinstance(data, dict) else {},
        description=str(message.get("description") or ""),
        eval_type=message.get("eval_type") if isinstance(message.get("eval_type"), str) else None,
        enum_values=[str(v) for v in message["enum_values"]] if isinstance(message.get("enum_values"), list) else None)
    started = time.monotonic()
    try:
        answer = run.judge(request)
        reply: dict[str, Any] = {"result": answer.result, "explanation": answer.explanation}
    except JudgeUnavailable as exc:
        reply = {"error": str(exc) or "the judge call failed"}
    except Exception as exc:  # any failure of the judge reaches the code as an error, never the runner
        log.warning("judge_call_failed", error=type(exc).__name__)
        reply = {"error": f"the judge call failed ({type(exc).__name__}: {str(exc)[:200]})"}
    if "error" in reply:
        run.judge_errors.append(str(reply["error"]))
    waited = time.monotonic() - started
    run.judge_seconds += waited
    run.deadline += waited
    run.pending_in.extend(_frame(reply))


def _stop_for_time(run: _Run) -> None:
    """Ask the child where it is (faulthandler on SIGUSR1), give it a moment to say, then kill it."""
    before = len(run.output)
    targets = sandboxing.sandboxed_leaves(run.proc.pid) if run.wrapped else [run.proc.pid]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGUSR1)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        ready, _, _ = select.select([run.out_fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        chunk = _read(run.out_fd)
        if not chunk:
            break
        run.output.extend(chunk[: max(0, 64_000 - len(run.output))])
    dump = bytes(run.output[before:]).decode(errors="replace")
    del run.output[before:]
    _kill(run)
    line_match = _DUMP_LINE.search(dump)
    line = int(line_match.group(1)) if line_match else None
    raise _Killed("timeout", CodeError(
        "TimeLimit", f"the code ran longer than {run.limits.wall_seconds:g} s (wall clock, judge calls excluded) "
                     "and was stopped", line=line))


def _kill(run: _Run) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signal.SIGKILL)


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Kill whatever is left of the group (before reaping, so the group id cannot be reused), then reap
    the child with its CPU usage."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return code, usage.ru_utime + usage.ru_stime


def _report(run: _Run, killed: _Killed | None, exit_code: int, cpu_seconds: float) -> RunReport:
    output = bytes(run.output).decode(errors="replace")
    keep = run.limits.output_keep
    report = RunReport(status="ok", output=output[:keep], output_truncated=run.output_total > len(output[:keep]),
                       judge_calls=min(run.judge_calls, run.limits.max_judge_calls), judge_errors=run.judge_errors,
                       judge_ms=round(run.judge_seconds * 1000, 1), cpu_ms=round(cpu_seconds * 1000, 1),
                       exit_code=exit_code)
    if killed is not None:
        report.status, report.error = killed.status, killed.error
        return report
    message = run.result
    if message is None:
        report.status, report.error = _no_result(exit_code, cpu_seconds, run.limits, output)
        return report
    report.blocked = [str(b) for b in message.get("blocked") or []]
    report.has_result = bool(message.get("has_result"))
    report.has_explanation = bool(message.get("has_explanation"))
    report.result = _value(message.get("result"))
    report.explanation = _value(message.get("explanation"))
    error = message.get("error")
    if isinstance(error, dict):
        report.error = _code_error(error, run.limits)
        report.status = _ERROR_STATUS.get(report.error.kind, "error")
    return report


_ERROR_STATUS: dict[str, Status] = {"CpuTimeLimit": "cpu_limit", "MemoryError": "memory_limit"}


def _value(raw: Any) -> Value | None:
    if not isinstance(raw, dict):
        return None
    return Value(value=raw.get("value"), type=str(raw.get("type") or "NoneType"),
                 repr=raw.get("repr") if isinstance(raw.get("repr"), str) else None)


def _code_error(raw: dict[str, Any], limits: Limits) -> CodeError:
    kind = str(raw.get("type") or "Error")
    message = str(raw.get("message") or "")
    if kind == "CpuTimeLimit":
        message = f"the code used more than {limits.cpu_seconds} s of CPU time and was stopped"
    elif kind == "MemoryError":
        message = f"the code needed more than the {limits.memory_mb} MB memory limit"
    frames = tuple((int(f["line"]), str(f.get("function") or "")) for f in raw.get("frames") or []
                   if isinstance(f, dict) and isinstance(f.get("line"), int))
    line = raw.get("line") if isinstance(raw.get("line"), int) else None
    return CodeError(kind, message, line=line, source=raw.get("source") if isinstance(raw.get("source"), str) else None,
                     frames=frames)


def _no_result(exit_code: int, cpu_seconds: float, limits: Limits, output: str) -> tuple[Status, CodeError]:
    if exit_code < 0:
        sig = -exit_code
        if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu_seconds >= limits.cpu_seconds - 0.05:
            return "cpu_limit", CodeError(
                "CpuTimeLimit", f"the code used more than {limits.cpu_seconds} s of CPU time and was killed")
        name = signal.Signals(sig).name if sig in signal.Signals.__members__.values() else str(sig)
        return "crashed", CodeError("Crashed", f"the code's process died from signal {name}")
    if "MemoryError" in output:
        return "memory_limit", CodeError("MemoryError", f"the code needed more than the {limits.memory_mb} MB "
                                                        "memory limit")
    tail = output.strip().splitlines()[-1:] if output.strip() else []
    detail = f" (last output: {tail[0][:200]})" if tail else ""
    return "no_result", CodeError("NoResult", f"the code's process exited with status {exit_code} without "
                                              f"reporting a result{detail}")


# ---- probing what this machine allows -------------------------------------------------------------------

_PROBE_CODE = "import json, re, math, statistics, datetime, collections, _strptime\n" \
              "import sys\n_result = list(sys.version_info[:2])\n_explanation = 'probe'\n"


_probe_lock = threading.Lock()
_probed: list[Isolation] = []


def default_isolation() -> Isolation:
    """This machine's isolation, probed on first use and shared by every runner in the process."""
    with _probe_lock:
        if not _probed:
            _probed.append(probe_isolation())
        return _probed[0]


def probe_isolation(limits: Limits | None = None, allow_unsandboxed: bool | None = None) -> Isolation:
    """The OS sandbox this machine offers, found by running a small program in it. Without one: refused,
    or (with the person's opt-in) the unsandboxed fallback, which says so in every report."""
    limits = limits or Limits()
    allowed = sandboxing.unsandboxed_allowed() if allow_unsandboxed is None else allow_unsandboxed
    started = time.perf_counter()
    if sys.platform == "darwin":
        found, reason = _probe_seatbelt(limits)
    else:
        found, reason = _probe_bwrap(limits)
    if found is not None:
        log.info("isolation_probed", kind=found.kind, interpreter=found.interpreter,
                 ms=round((time.perf_counter() - started) * 1000))
        return found
    refusal = (f"custom code was not run: {reason}. Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) "
               "on Linux, or use macOS's sandbox-exec; or set CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1 to run it "
               "without an OS sandbox (then the code can read what the server's user can read)")
    if not allowed:
        log.warning("isolation_refused", reason=reason)
        return Isolation(_resolved(sys.executable), kind="refused", refusal=refusal)
    fallback = _probe_unsandboxed(limits)
    log.warning("isolation_unsandboxed", reason=reason, interpreter=fallback.interpreter)
    return dataclasses.replace(fallback, notes=(f"no OS sandbox: {reason}", *fallback.notes))


def _probe_works(trial: Isolation, limits: Limits) -> tuple[bool, str]:
    report = run_isolated(_PROBE_CODE, {}, no_judge, limits, trial)
    if report.status == "ok" and report.result is not None and report.result.value == list(sys.version_info[:2]):
        return True, ""
    detail = report.error.describe() if report.error else report.status
    first = (report.output.strip().splitlines() or [detail])[0][:200]
    return False, first


def _probe_bwrap(limits: Limits) -> tuple[Isolation | None, str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (`bwrap`) is not installed"
    disk = limits.disk_mb * 1024 * 1024
    # Root starts bubblewrap as `nobody`: the kernel's process limit then applies (it exempts root), and
    # the interpreter must be one `nobody` can read (the server's own may live under /root).
    spawn_user = sandboxing.nobody() if os.geteuid() == 0 else None
    failure = "no Python interpreter of this version could start inside bubblewrap"
    for interpreter in _candidates():
        files = sandboxing.interpreter_files(interpreter)
        if files is None:
            continue
        trial = Isolation(files.executable, kind="bwrap", prefix=sandboxing.bwrap_prefix(bwrap, files, disk),
                          spawn_user=spawn_user)
        works, why = _probe_works(trial, limits)
        if works:
            notes = () if files.executable == _resolved(sys.executable) else (
                f"runs use {files.executable} (same Python version as the server's)",)
            return dataclasses.replace(trial, notes=notes), ""
        failure = f"bubblewrap could not start a sandbox here (user namespaces blocked?): {why}"
    return None, failure


def _probe_seatbelt(limits: Limits) -> tuple[Isolation | None, str]:
    tool = shutil.which("sandbox-exec")
    if tool is None:
        return None, "`sandbox-exec` (Seatbelt) is not available"
    interpreter = _resolved(sys.executable)
    profile = sandboxing.seatbelt_profile(sandboxing.interpreter_files(interpreter), interpreter)
    trial = Isolation(interpreter, kind="seatbelt", prefix=(tool, "-p", profile))
    works, why = _probe_works(trial, limits)
    return (trial, "") if works else (None, f"sandbox-exec could not run Python: {why}")


def _probe_unsandboxed(limits: Limits) -> Isolation:
    """The weaker isolation used only with CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1."""
    prefix, net_note = _network_prefix()
    notes = [net_note] if net_note else []
    version = list(sys.version_info[:2])
    if os.geteuid() == 0:
        nobody = sandboxing.nobody()
        for interpreter in _candidates():
            trial = Isolation(interpreter, "unsandboxed", prefix, nobody)
            report = run_isolated(_PROBE_CODE, {}, no_judge, limits, trial)
            if report.status == "ok" and report.result is not None and report.result.value == version:
                return Isolation(interpreter, "unsandboxed", prefix, nobody, notes=tuple(notes))
        notes.append("no Python interpreter of this version is readable by an unprivileged user: runs keep "
                     "root's identity")
    isolation = Isolation(_resolved(sys.executable), "unsandboxed", prefix, None, notes=tuple(notes))
    report = run_isolated(_PROBE_CODE, {}, no_judge, limits, isolation)
    if report.status != "ok" and prefix:
        isolation = Isolation(_resolved(sys.executable), "unsandboxed", (), None,
                              notes=(*notes, "the network namespace could not run Python; using the audit hook only"))
    return isolation


def _network_prefix() -> tuple[tuple[str, ...], str]:
    tool = shutil.which("unshare")
    if tool is None:
        return (), "`unshare` is not installed: no network namespace"
    # Root needs no user namespace; one would map root only, and the drop to `nobody` would fail inside it.
    option = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
    try:
        done = subprocess.run([tool, *option, "true"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return (), "`unshare` could not be run: no network namespace"
    if done.returncode == 0:
        return (tool, *option), ""
    return (), "this machine does not allow a private network namespace (unshare failed)"


def _resolved(path: str) -> str:
    return os.path.realpath(path)


def _candidates() -> list[str]:
    major, minor = sys.version_info[:2]
    names = [sys.executable, f"/usr/bin/python{major}.{minor}", f"/usr/local/bin/python{major}.{minor}",
             "/usr/bin/python3"]
    seen: list[str] = []
    for name in names:
        real = _resolved(name)
        if os.path.exists(real) and real not in seen:
            seen.append(real)
    return seen
