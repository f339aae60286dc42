"""The process that runs one custom_code metric on one call.

The parent starts it as `python -I -S -B -c <this file's text> <message fd>`, so it imports nothing
from this package and needs no file of its own. Protocol:
- stdin, from the trusted parent: length-prefixed `marshal` frames, first `{"code", "data", "limits",
  "user"}`, then one answer per judge request;
- the message fd, to the parent, which must not trust it: JSON lines, `{"type": "judge", ...}` requests
  and one final `{"type": "result", ...}`;
- stdout/stderr: whatever the code prints (the parent keeps the start of it and caps the total).

It imports only modules that are built in or already loaded at start-up (no `json`, `re`, `signal` or
`typing`, which pull in `enum` and cost more than the rest of a run), and encodes its JSON by hand.

Limits are set here rather than in a `preexec_fn`, because `preexec_fn` is unsafe in a parent that
runs threads (the MCP server and the sandbox both do); nothing of the metric's code runs before them.
The audit hook is a second line after the kernel limits, not a security boundary of its own: see the
module docstring of `runner.py` for what is and is not enforced.
"""

from __future__ import annotations

import builtins
import faulthandler
import marshal
import os
import resource
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import Any
else:
    import _signal as signal  # the C module: `signal` itself imports `enum`

FILENAME = "<custom_code>"
_BLOCKED_EXACT = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "signal.pthread_kill", "os.chdir", "os.fchdir", "os.chroot", "os.symlink",
    "os.link", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.setprofile", "sys.settrace",
    "os.setuid", "os.setgid", "os.setgroups", "resource.setrlimit", "resource.prlimit", "os.startfile",
    "pty.spawn", "webbrowser.open", "cpython.PyInterpreterState_New",
})
_BLOCKED_PREFIXES = ("socket.", "ctypes.", "_winapi.", "winreg.", "urllib.Request")
_PATH_EVENTS = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime", "os.truncate",
    "os.setxattr", "os.removexattr", "shutil.rmtree", "shutil.copyfile", "shutil.copymode",
    "shutil.copystat", "shutil.copytree", "shutil.move", "shutil.chown",
})
_LISTING_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "glob.glob/2"})
_READABLE_FILES = ("/dev/null", "/dev/urandom", "/dev/zero")
_READABLE_DIRS = ("/usr/share/zoneinfo",)
_MAX_WRITE_OPENS = 32
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class CpuTimeLimit(BaseException):
    """Raised at the soft CPU limit; a BaseException so `except Exception` in the code cannot swallow it."""


class JudgeCallFailed(RuntimeError):
    pass


_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})
_MAX_DEPTH = 200


def encode(value: Any, depth: int = 0) -> str:
    """JSON text for `value`; like `json.dumps(value, default=str)` (NaN and Infinity included)."""
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(float(value))
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(item, depth + 1) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(encode(str(k)) + ":" + encode(v, depth + 1) for k, v in value.items()) + "}"
    return encode(str(value), depth)


def _plain(value: Any, depth: int = 0) -> bool:
    """Only JSON's own types all the way down (so nothing would be silently turned into text)."""
    if depth > _MAX_DEPTH:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _send(fd: int, message: dict[str, Any]) -> None:
    payload = memoryview((encode(message) + "\n").encode("utf-8", "backslashreplace"))
    while payload:
        written = os.write(fd, payload)
        payload = payload[written:]


def _read_frame() -> Any:
    head = sys.stdin.buffer.read(8)
    if len(head) < 8:
        return None
    return marshal.loads(sys.stdin.buffer.read(int.from_bytes(head, "big")))


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _real(path: object) -> str | None:
    if isinstance(path, int):
        return None
    try:
        return os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?"


def _make_hook(read_roots: tuple[str, ...], work: str, blocked: list[str]) -> Callable[[str, tuple[Any, ...]], None]:
    """The hook keeps its configuration in closure cells holding immutable values; the only references
    to it are the interpreter's, and `gc.get_objects`/`get_referrers` are refused."""
    writable = (work,)
    readable = (work, *read_roots, *_READABLE_DIRS)
    writes_left = [_MAX_WRITE_OPENS]  # with RLIMIT_FSIZE, bounds what the code can put on disk

    def deny(event: str, what: str) -> None:
        blocked.append(event)
        raise PermissionError(f"custom code may not {what} (blocked: {event})")

    def check_open(args: tuple[Any, ...]) -> None:
        path, mode, flags = [*args, None, None, None][:3]
        real = _real(path)
        if real is None:
            return
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and not _inside(real, writable):
            deny("open", f"write outside its working directory ({real})")
        if writes:
            if writes_left[0] <= 0:
                deny("open", f"open files for writing more than {_MAX_WRITE_OPENS} times")
            writes_left[0] -= 1
        if not writes and not (_inside(real, readable) or real in _READABLE_FILES):
            deny("open", f"read files outside its working directory ({real})")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            check_open(args)
        elif event in _BLOCKED_EXACT:
            deny(event, "start processes, send signals or inspect the interpreter")
        elif event.startswith(_BLOCKED_PREFIXES):
            deny(event, "use the network or native code")
        elif event in _PATH_EVENTS:
            for arg in args[:2]:
                real = _real(arg) if isinstance(arg, str | bytes | os.PathLike) else None
                if real is not None and not _inside(real, writable):
                    deny(event, f"change files outside its working directory ({real})")
        elif event in _LISTING_EVENTS and args:
            real = _real(args[0]) if isinstance(args[0], str | bytes | os.PathLike) else None
            if real is not None and not _inside(real, readable):
                deny(event, f"list directories outside its working directory ({real})")

    return hook


def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    current_hard = resource.getrlimit(kind)[1]
    wanted_hard = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        wanted_hard = min(wanted_hard, current_hard)
    resource.setrlimit(kind, (min(soft, wanted_hard), wanted_hard))


# keyctl's system call number per machine (it has no libc wrapper); KEYCTL_JOIN_SESSION_KEYRING is 1.
_KEYCTL = {"x86_64": 250, "aarch64": 219, "i686": 288, "armv7l": 311, "ppc64le": 311, "s390x": 280, "riscv64": 219}


def _leave_session_keyring() -> None:
    """Linux hands a process its parent's session keyring, and neither bubblewrap nor the namespaces change
    that: native code could read (and write) the secrets of the server's login session (Kerberos tickets,
    tokens put there by other tools). Joining a new, empty session keyring drops possession of the old one."""
    if sys.platform != "linux":
        return
    number = _KEYCTL.get(os.uname().machine)
    if number is None:
        return
    # `_ctypes` alone (a millisecond; the `ctypes` package would add ~25 ms to every run), forgotten again after,
    # so the code's own `import ctypes` meets the audit hook as before.
    import _ctypes as loaded

    _ctypes: Any = loaded  # its private types, used as ctypes itself uses them

    class Long(_ctypes._SimpleCData):  # type: ignore[misc]
        _type_ = "l"

    class Syscall(_ctypes.CFuncPtr):  # type: ignore[misc]
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Long

    class Libc:
        _handle = _ctypes.dlopen(None, 0)

    failed = Syscall(("syscall", Libc()))(number, 1, None) < 0 and _ctypes.get_errno() != 38  # 38: ENOSYS, no keyrings
    errno = _ctypes.get_errno()
    del sys.modules["_ctypes"]
    if failed:
        raise OSError(errno, "could not leave the server's session keyring")


def _restrict(limits: dict[str, int], user: list[int] | None) -> None:
    _leave_session_keyring()
    if user is not None:
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
    _limit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)
    _limit(resource.RLIMIT_AS, limits["memory_bytes"])
    _limit(resource.RLIMIT_FSIZE, limits["file_bytes"])
    _limit(resource.RLIMIT_NOFILE, limits["open_files"])
    _limit(resource.RLIMIT_CORE, 0)
    # Enforced by the kernel for every user but root (hence the drop to an unprivileged user above).
    _limit(resource.RLIMIT_NPROC, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead of killing
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    # The parent sends SIGUSR1 just before a wall-clock kill: the dump says which line was running.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def _on_cpu_limit(_signum: int, _frame: object) -> None:
    # The kernel repeats SIGXCPU every second until the hard limit: once is enough to unwind and report.
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    raise CpuTimeLimit("CPU time limit reached")


def _portable(value: Any, limit: int) -> dict[str, Any]:
    """A value in JSON's types plus its Python type, so the parent can check `_result` as it was."""
    kind = type(value).__name__
    try:
        if _plain(value):
            if len(encode(value)) > limit:
                return {"value": None, "type": kind, "too_large": True}
            return {"value": list(value) if isinstance(value, tuple) else value, "type": kind}
    except (ValueError, RecursionError):
        pass
    try:
        shown = repr(value)[:200]
    except Exception:  # a broken __repr__ must not stop the report
        shown = f"a {kind}"
    return {"value": None, "type": kind, "repr": shown}


def _error(exc: BaseException, lines: list[str]) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    if isinstance(exc, SyntaxError) and exc.filename == FILENAME:
        frames.append({"line": exc.lineno, "function": "<module>"})
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            frames.append({"line": tb.tb_lineno, "function": tb.tb_frame.f_code.co_name})
        tb = tb.tb_next
    line = frames[-1]["line"] if frames else None
    source = lines[line - 1].strip()[:200] if isinstance(line, int) and 0 < line <= len(lines) else None
    message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    if isinstance(exc, SystemExit):
        message = f"the code called sys.exit({exc.code!r})"
    return {"type": type(exc).__name__, "message": str(message)[:500], "line": line, "source": source,
            "frames": frames[-5:]}


def _judge(msg_fd: int, default_data: dict[str, Any], max_bytes: int) -> Callable[..., dict[str, Any]]:
    def evaluate_llm_judge_metric(
        data: dict[str, Any] | None = None, api_key: str | None = None, description: str = "",
        eval_type: str | None = None, enum_values: list[str] | None = None, audio: bool = False,
        audio_start_time: float | None = None, audio_end_time: float | None = None,
    ) -> dict[str, Any]:
        """Served by the parent (the key never enters this process); `api_key` is accepted and ignored, as on
        Cekura ("Deprecated ... ignored"); `audio*` are accepted and not used (no recording is analysed here)."""
        request = {"type": "judge", "data": default_data if data is None else data,
                   "description": description, "eval_type": eval_type, "enum_values": enum_values}
        if len(encode(request)) > max_bytes:
            raise ValueError(f"the data passed to evaluate_llm_judge_metric is larger than {max_bytes} bytes")
        _send(msg_fd, request)
        answer = _read_frame()
        if not isinstance(answer, dict):
            raise JudgeCallFailed("the server stopped answering judge calls")
        if answer.get("error"):
            # As Cekura documents it: no exception, `result` None and the error message as the explanation.
            return {"result": None, "explanation": ["Judge error: " + str(answer["error"])]}
        return {"result": answer.get("result"), "explanation": list(answer.get("explanation") or [])}

    return evaluate_llm_judge_metric


def main() -> None:
    msg_fd = int(sys.argv[1])
    config = _read_frame()
    code: str = config["code"]
    data: dict[str, Any] = config["data"]
    limits: dict[str, int] = config["limits"]
    os.environ.pop("PWD", None)  # bubblewrap sets it when it enters the working directory; nothing else is set
    _restrict(limits, config.get("user"))
    blocked: list[str] = []
    sys.addaudithook(_make_hook(tuple(p for p in sys.path if p), os.getcwd(), blocked))
    namespace: dict[str, Any] = {k: v for k, v in data.items() if isinstance(k, str) and k.isidentifier()}
    namespace.update(__name__="__main__", __builtins__=builtins, data=data,
                     evaluate_llm_judge_metric=_judge(msg_fd, data, limits["message_bytes"]))
    lines = code.splitlines()
    error: dict[str, Any] | None = None
    try:
        exec(compile(code, FILENAME, "exec"), namespace)
    except MemoryError as exc:
        namespace.clear()
        error = _error(exc, lines)
    except BaseException as exc:  # every failure of the code is reported; none may stop the report
        error = _error(exc, lines)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    _report(msg_fd, namespace, error, blocked, limits["message_bytes"])


def _report(msg_fd: int, namespace: dict[str, Any], error: dict[str, Any] | None, blocked: list[str],
            max_bytes: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    message: dict[str, Any] = {"type": "result", "error": error, "blocked": sorted(set(blocked)),
                               "cpu_seconds": usage.ru_utime + usage.ru_stime,
                               "has_result": "_result" in namespace,
                               "has_explanation": "_explanation" in namespace}
    if error is None:
        message["result"] = _portable(namespace.get("_result"), max_bytes // 4)
        message["explanation"] = _portable(namespace.get("_explanation"), max_bytes // 2)
        large = [name for name in ("result", "explanation") if message[name].get("too_large")]
        if large:
            message["error"] = {
                "type": "ResultTooLarge", "message": f"_{large[0]} is larger than the runner accepts "
                f"({max_bytes // 4 if large[0] == 'result' else max_bytes // 2:,} bytes)",
                "line": None, "source": None, "frames": []}
    _send(msg_fd, message)


if __name__ == "__main__":
    main()
