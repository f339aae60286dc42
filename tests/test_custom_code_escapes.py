"""Every escape from issue 12, tried by custom code run as a NON-ROOT user, as a person's server runs.

The server side here is a small helper process started as an unprivileged user (created with `useradd`
when the tests run as root, as CI does), with a secret `CEKURA_API_KEY` in its environment and a HOME
holding `~/.ssh/id_rsa`, `~/.claude.json` and the ledger. It runs the real runner (its source copied
from this tree) and reports what the code got. Three machines are played: bubblewrap available (every
escape must fail: the code runs, the kernel refuses), bubblewrap missing or unable to start (the code
is refused), and the person's opt-in to run without a sandbox (the answers say "unsandboxed").

The native module is the decisive case: a `.so` the code writes to its working directory and imports,
whose constructor tries every escape with raw system calls, where no audit hook sees it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from cekura_labs_mcp.server import custom_code as custom_code_package
from cekura_labs_mcp.server.custom_code import runner, sandboxing
from cekura_labs_mcp.server.sandbox import SandboxServer
from support import SandboxAdmin

TEST_USER = "cekura-sbx"

HELPER = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from cekura_labs_mcp.server.custom_code.runner import CodeRunner, Limits, probe_isolation

job = json.load(sys.stdin)
if job.get("keyring"):
    # Like a desktop session or a Kerberos login: a secret in the server's session keyring.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    SYS_add_key, SYS_keyctl = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
    libc.syscall(SYS_keyctl, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING: a session keyring of its own
    secret = job["keyring"].encode()
    assert libc.syscall(SYS_add_key, b"user", b"cekura-secret", secret, len(secret), -3) > 0
limits = Limits(wall_seconds=30, cpu_seconds=10)
isolation = probe_isolation(limits)
runner = CodeRunner(limits=limits, isolation=isolation)
answer = {"kind": isolation.kind, "summary": isolation.summary(), "pid": os.getpid(), "cases": {}}
for name, code in job["cases"].items():
    report = runner.run(code, dict(job["data"], server_pid=os.getpid()))
    answer["cases"][name] = {
        "status": report.status, "sandbox": report.sandbox, "unsandboxed": report.unsandboxed,
        "result": report.result.value if report.result else None,
        "error": report.error.describe() if report.error else None, "output": report.output}
print(json.dumps(answer))
'''

NATIVE_SOURCE = r'''
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static FILE *out;

static void try_read(const char *name, const char *path) {
    char buf[200];
    int fd = open(path, O_RDONLY);
    if (fd < 0) { fprintf(out, "%s: refused (errno %d)\n", name, errno); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    for (ssize_t i = 0; i < n; i++) if (buf[i] == 0) buf[i] = ' ';
    fprintf(out, "%s: READ %s\n", name, buf);
}

__attribute__((constructor)) static void escape(void) {
    int pid = 0, port = 0;
    char home[512] = "", outside[512] = "", path[1100];
    FILE *params = fopen("params.txt", "r");
    if (params) { if (fscanf(params, "%d %d %511s %511s", &pid, &port, home, outside) != 4) pid = 0; fclose(params); }
    out = fopen("native.txt", "w");
    if (!out) return;
    snprintf(path, sizeof path, "/proc/%d/environ", pid); try_read("parent_environ", path);
    try_read("init_environ", "/proc/1/environ");
    snprintf(path, sizeof path, "%s/.ssh/id_rsa", home); try_read("ssh_key", path);
    snprintf(path, sizeof path, "%s/.claude.json", home); try_read("claude_json", path);
    snprintf(path, sizeof path, "%s/.local/share/cekura-labs-mcp/ledger.sqlite3", home); try_read("ledger", path);
    int fd = open(outside, O_WRONLY | O_CREAT, 0644);
    fprintf(out, "write_outside: %s\n", fd >= 0 ? "WROTE" : "refused");
    if (fd >= 0) close(fd);
    fprintf(out, "mkdir_tmp: %s\n", mkdir("/tmp/cekura-native-escape", 0700) == 0 ? "MADE" : "refused");
    /* /dev is a tmpfs the size of half the host's RAM: files there would hold host memory, outside every limit. */
    fd = open("/dev/cekura-fill", O_WRONLY | O_CREAT, 0644);
    fprintf(out, "write_dev: %s\n", fd >= 0 ? "WROTE" : "refused");
    if (fd >= 0) close(fd);
    fd = open("/dev/shm/cekura-fill", O_WRONLY | O_CREAT, 0644);
    fprintf(out, "write_dev_shm: %s\n", fd >= 0 ? "WROTE" : "refused");
    if (fd >= 0) close(fd);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int connected = s >= 0 && connect(s, (struct sockaddr *)&to, sizeof to) == 0;
    fprintf(out, "loopback_connect: %s\n", connected ? "CONNECTED" : "refused");
    /* The server's session keyring (KEYCTL_SEARCH from the session keyring -3, then KEYCTL_READ). */
    long key = syscall(SYS_keyctl, 10, -3, "user", "cekura-secret", 0);
    char secret[200] = "";
    long got = key > 0 ? syscall(SYS_keyctl, 11, key, secret, sizeof secret - 1) : -1;
    if (got > 0 && got < (long)sizeof secret) secret[got] = 0;
    fprintf(out, "keyring: %s%s\n", got > 0 ? "READ " : "refused", got > 0 ? secret : "");
    fprintf(out, "kill_server: %s\n", kill(pid, SIGKILL) == 0 ? "KILLED" : "refused");
    fprintf(out, "kill_everything: %s\n", kill(-1, SIGKILL) == 0 ? "SENT" : "refused");
    fclose(out);
}
'''

NATIVE_CASE = '''
import base64, os, sys
open("params.txt", "w").write(f"{server_pid} {data['port']} {data['home']} {data['outside']}")
open("escape.so", "wb").write(base64.b64decode(data["native"]))
sys.path.insert(0, os.getcwd())
try:
    import escape  # the constructor runs at load; there is no PyInit_escape, so the import then fails
except ImportError as exc:
    loaded = str(exc)
_result = {"native": open("native.txt").read(), "import": loaded}
_explanation = "native"
'''

PYTHON_CASES = {
    "parent_environ": "_result = open(f'/proc/{server_pid}/environ').read()\n",
    "own_environ": "import os\n_result = dict(os.environ)\n_explanation = 'env'\n",
    "home_files": "_result = [open(data['home'] + p).read() for p in ('/.ssh/id_rsa', '/.claude.json')]\n",
    "home_by_tilde": "import os\n_result = open(os.path.expanduser('~/.ssh/id_rsa')).read()\n",
    "ledger": "_result = open(data['ledger']).read()\n",
    "ledger_write": "open(data['ledger'], 'a').write('forged spend')\n",
    "loopback_post": ("import urllib.request\n"
                      "_result = urllib.request.urlopen(urllib.request.Request(data['url'], data=b'{}',"
                      " method='POST'), timeout=2).read().decode()\n"),
    "raw_socket": "import socket\nsocket.create_connection(('127.0.0.1', data['port']), timeout=2)\n",
    "signal_parent": "import os, signal\nos.kill(server_pid, signal.SIGKILL)\n",
    "subinterpreter": ("import _xxsubinterpreters as interpreters\n"
                       "interpreters.run_string(interpreters.create(), "
                       "f'open(\"/proc/{server_pid}/environ\").read()')\n"),
    "write_outside": "open(data['outside'], 'w').write('escaped')\n",
    "forged_result": ("import os, sys\nos.write(int(sys.argv[1]), b'{\"type\": \"result\", \"has_result\": true, "
                      "\"has_explanation\": true, \"result\": {\"value\": true, \"type\": \"bool\"}, "
                      "\"explanation\": {\"value\": \"forged\", \"type\": \"str\"}}\\n')\n"
                      "_result = False\n_explanation = 'real'\n"),
    # Lines the parent must parse as untrusted data without failing itself: nested too deeply for `json`,
    # and a single result whose fields have the wrong types.
    "forged_nested": "import os, sys, time\nos.write(int(sys.argv[1]), b'[' * 200000 + b'\\n')\ntime.sleep(60)\n",
    "forged_malformed": ("import os, sys\nos.write(int(sys.argv[1]), b'{\"type\": \"result\", \"blocked\": 5, "
                         "\"error\": {\"frames\": 7}}\\n')\nos._exit(0)\n"),
    "forged_then_exit": ("import os, sys\nos.write(int(sys.argv[1]), b'{\"type\": \"result\"}\\n"
                         "{\"type\": \"result\"}\\n')\nos._exit(0)\n"),
    "what_it_sees": ("import os, tempfile\n"
                     "fds = []\nfor fd in range(256):\n    try:\n        os.fstat(fd)\n        fds.append(fd)\n"
                     "    except OSError:\n        pass\n"
                     "kept = tempfile.mkdtemp()\nopen(kept + '/left.txt', 'w').write('x')\n"
                     "_result = {'fds': fds, 'message_fd': int(__import__('sys').argv[1]), 'pid': os.getpid(),"
                     " 'ppid': os.getppid(), 'proc': os.path.exists('/proc'), 'home': os.path.exists(data['home']),"
                     " 'etc': os.path.exists('/etc/passwd'),"
                     " 'tmp': kept, 'cwd': os.getcwd()}\n_explanation = 'seen'\n"),
}


@dataclass
class Machine:
    """The unprivileged server's world: its user, interpreter, staged runner and planted secrets."""

    run_as: list[str]
    uid: int
    interpreter: str
    stage: Path
    home: Path
    tmp: Path
    secrets: dict[str, str]
    native: str

    def serve(self, cases: dict[str, str], data: dict[str, Any], path: str, allow: bool = False) -> dict[str, Any]:
        env = {"PATH": path, "HOME": str(self.home), "TMPDIR": str(self.tmp), "LANG": "C.UTF-8",
               "CEKURA_API_KEY": self.secrets["api_key"]}
        if allow:
            env["CEKURA_LABS_ALLOW_UNSANDBOXED_CODE"] = "1"
        done = subprocess.run([*self.run_as, self.interpreter, str(self.stage / "helper.py"), str(self.stage / "pkg")],
                              input=json.dumps({"cases": cases, "data": data, "keyring": self.secrets["keyring"]}),
                              capture_output=True, text=True,
                              env=env, timeout=600, check=False)
        assert done.returncode == 0, f"the unprivileged server died (killed by its code?): {done.stderr[-2000:]}"
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer


def _user() -> tuple[list[str], int, int]:
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        TEST_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(TEST_USER)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop to the unprivileged test user"
    return ([setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"],
            entry.pw_uid, entry.pw_gid)


def _interpreter(run_as: list[str]) -> str:
    major, minor = sys.version_info[:2]
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{major}.{minor}",
                      f"/usr/local/bin/python{major}.{minor}"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            # It must also be able to start itself again (the runner's children use the same interpreter).
            check = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True); " \
                    "print(sys.version_info[:2])"
            done = subprocess.run([*run_as, candidate, "-c", check],
                                  capture_output=True, text=True, timeout=30, check=False)
            if done.returncode == 0 and done.stdout.strip() == f"({major}, {minor})":
                return candidate
    pytest.fail(f"no Python {major}.{minor} the unprivileged test user can run")


def _stage(root: Path) -> None:
    """The runner's own source (stdlib-only but for structlog), readable by the unprivileged user."""
    server = Path(custom_code_package.__file__).parent.parent
    package = root / "pkg" / "cekura_labs_mcp" / "server"
    (package / "custom_code").mkdir(parents=True)
    for name in ("__init__.py", "logs.py"):
        shutil.copy(server / name, package / name)
    for source in (server / "custom_code").glob("*.py"):
        shutil.copy(source, package / "custom_code" / source.name)
    shutil.copytree(Path(structlog.__file__).parent, root / "pkg" / "structlog")
    (root / "helper.py").write_text(HELPER, encoding="utf-8")


def _native(root: Path) -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to build the native-module escape (.ci/run installs gcc)"
    (root / "escape.c").write_text(NATIVE_SOURCE, encoding="utf-8")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(root / "escape.so"), str(root / "escape.c")],
                   check=True, capture_output=True)
    return base64.b64encode((root / "escape.so").read_bytes()).decode()


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    run_as, uid, gid = _user()
    root = Path(tempfile.mkdtemp(prefix="cekura-escapes-"))
    try:
        root.chmod(0o755)
        _stage(root)
        for directory in (root / "pkg", root / "bin-empty", root / "bin-blocked"):
            directory.mkdir(exist_ok=True)
        fake = root / "bin-blocked" / "bwrap"
        fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
        fake.chmod(0o755)
        tag = secrets.token_hex(6)
        planted = {"api_key": f"sk-SECRET-API-{tag}", "ssh": f"SECRET-SSH-{tag}", "claude": f"SECRET-CLAUDE-{tag}",
                   "ledger": f"SECRET-LEDGER-{tag}", "keyring": f"SECRET-KEYRING-{tag}"}
        home, tmp = root / "home", root / "tmp"
        for path, text in ((home / ".ssh" / "id_rsa", planted["ssh"]), (home / ".claude.json", planted["claude"]),
                           (home / ".local/share/cekura-labs-mcp/ledger.sqlite3", planted["ledger"])):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o600)
        tmp.mkdir()
        for path in (home, tmp, *home.rglob("*")):
            os.chown(path, uid, gid)
        home.chmod(0o700)
        native = _native(root)
        for path in root.rglob("*"):
            if not path.is_relative_to(home) and not path.is_relative_to(tmp):
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        yield Machine(run_as, uid, _interpreter(run_as), root, home, tmp, planted, native)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A loopback port on the host that records any connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept())

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def _data(machine: Machine, port: int, url: str, outside: Path) -> dict[str, Any]:
    return {"home": str(machine.home), "ledger": str(machine.home / ".local/share/cekura-labs-mcp/ledger.sqlite3"),
            "port": port, "url": url, "outside": str(outside), "native": machine.native}


def _owned_tmp_entries(uid: int) -> set[str]:
    found = set()
    for entry in os.scandir("/tmp"):
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid == uid:
                found.add(entry.name)
    return found


def test_every_escape_fails_inside_bubblewrap(machine: Machine, listener: tuple[int, list[object]],
                                              sandbox_server: SandboxServer, sandbox: SandboxAdmin) -> None:
    port, accepted = listener
    outside = machine.home / f"outside-{secrets.token_hex(4)}"  # where the server's user may write
    rerun = f"{sandbox.url}/test_framework/v1/metrics/rerun_evaluation/"
    before_tmp = _owned_tmp_entries(machine.uid)
    answer = machine.serve({**PYTHON_CASES, "native_module": NATIVE_CASE}, _data(machine, port, rerun, outside),
                           path="/usr/local/bin:/usr/bin:/bin")
    assert answer["kind"] == "bwrap", answer["summary"]
    cases = answer["cases"]
    assert {c["sandbox"] for c in cases.values()} == {"bwrap"}
    # Nothing planted reached any answer: not the key in the server's environment, nor the home's files.
    shown = json.dumps(answer)
    for secret in machine.secrets.values():
        assert secret not in shown

    native = cases["native_module"]
    assert native["status"] == "ok", native["error"]
    lines = dict(line.split(": ", 1) for line in native["result"]["native"].splitlines())
    assert "PyInit_escape" in native["result"]["import"]  # the constructor ran: the native code did execute
    for name in ("parent_environ", "init_environ", "ssh_key", "claude_json", "ledger"):
        assert lines[name].startswith("refused"), (name, lines[name])
    assert lines["write_outside"] == "refused" and lines["mkdir_tmp"] == "refused"
    assert lines["write_dev"] == "refused" and lines["write_dev_shm"] == "refused"
    assert lines["loopback_connect"] == "refused"
    assert lines["kill_server"] == "refused" and lines["kill_everything"] == "refused"
    assert lines["keyring"] == "refused", lines["keyring"]

    for name in ("parent_environ", "home_files", "home_by_tilde", "ledger", "ledger_write", "loopback_post",
                 "raw_socket", "signal_parent", "subinterpreter", "write_outside"):
        assert cases[name]["status"] == "error", (name, cases[name])
    assert "CEKURA_API_KEY" not in cases["own_environ"]["result"]
    for name in ("forged_result", "forged_then_exit", "forged_nested", "forged_malformed"):
        assert cases[name]["status"] == "error" and "ProtocolError" in cases[name]["error"], cases[name]
        assert cases[name]["result"] is None
    seen = cases["what_it_sees"]["result"]
    assert seen["fds"] == [0, 1, 2, seen["message_fd"]]  # nothing inherited but its own pipes
    assert (seen["pid"], seen["ppid"]) == (2, 1)  # its own PID namespace: the server is not even visible
    assert not seen["proc"] and not seen["home"] and not seen["etc"]
    assert seen["cwd"] == "/sandbox" and seen["tmp"].startswith("/sandbox/")

    # The server is alive (it answered), nothing connected to the host's loopback, nothing reached the sandbox
    # API, nothing was written outside, and no temporary directory was left behind.
    assert accepted == []
    assert sandbox.requests(contains="rerun") == []
    assert not outside.exists() and not Path("/tmp/cekura-native-escape").exists()
    assert (machine.home / ".local/share/cekura-labs-mcp/ledger.sqlite3").read_text() == machine.secrets["ledger"]
    assert list(machine.tmp.iterdir()) == [] and _owned_tmp_entries(machine.uid) == before_tmp


@pytest.mark.parametrize("bin_dir", ["bin-empty", "bin-blocked"])
def test_without_a_working_sandbox_code_is_refused(machine: Machine, bin_dir: str) -> None:
    outside = machine.home / f"refused-{secrets.token_hex(4)}"
    answer = machine.serve({"would_write": f"open({str(outside)!r}, 'w').write('ran')\n",
                            "native_module": NATIVE_CASE}, _data(machine, 9, "http://127.0.0.1:9/", outside),
                           path=str(machine.stage / bin_dir))
    assert answer["kind"] == "refused"
    why = "not installed" if bin_dir == "bin-empty" else "could not start a sandbox"
    for case in answer["cases"].values():
        assert case["status"] == "refused" and case["sandbox"] == "refused"
        assert why in case["error"] and "CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1" in case["error"]
    assert not outside.exists()


def test_the_opt_in_runs_without_a_sandbox_and_says_so(machine: Machine) -> None:
    # A directory the code locks (`chmod 0`, with a file in it) must not stop the clean-up of its working dir.
    locked = ("import os\nos.mkdir('locked')\nopen('locked/f', 'w').write('x')\nos.chmod('locked', 0)\n"
              "os.chmod('.', 0)\n_result = True\n_explanation = 'locked'\n")
    answer = machine.serve({"plain": "_result = True\n_explanation = 'ran'\n", "locked": locked},
                           _data(machine, 9, "http://127.0.0.1:9/", machine.stage / "unused"),
                           path=str(machine.stage / "bin-empty"), allow=True)
    assert answer["kind"] == "unsandboxed"
    assert answer["summary"][0].startswith("ran UNSANDBOXED")
    case = answer["cases"]["plain"]
    assert case["status"] == "ok" and case["result"] is True
    assert case["sandbox"] == "unsandboxed" and case["unsandboxed"] is True
    assert answer["cases"]["locked"]["status"] == "ok", answer["cases"]["locked"]
    assert list(machine.tmp.iterdir()) == []  # no working directory left behind


def test_site_packages_inside_a_mounted_standard_library_stay_hidden() -> None:
    """A python.org, pyenv or Docker `python` build keeps `site-packages` inside its standard-library directory,
    which the sandbox mounts: the person's installed packages (and the home path they live under) must not
    come with it. `os.stat` raises no audit event, so this is the kernel's answer, not the hook's."""
    found = runner.probe_isolation()
    assert found.kind == "bwrap", found.summary()
    files = sandboxing.interpreter_files(found.interpreter)
    assert files is not None
    root = Path(tempfile.mkdtemp(prefix="cekura-site-packages-"))  # not under pytest's 0700 tmp: nobody reads it
    try:
        _run_with_extra_stdlib(found, files, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_with_extra_stdlib(found: runner.Isolation, files: sandboxing.InterpreterFiles, root: Path) -> None:
    stdlib = root / "lib" / "python3"
    (stdlib / "site-packages").mkdir(parents=True)
    (stdlib / "stdlib_module.py").write_text("")
    (stdlib / "site-packages" / "installed.py").write_text("")
    for path in (root, *root.rglob("*")):
        path.chmod(0o755)
    files = dataclasses.replace(files, directories=(*files.directories, str(stdlib)))
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    isolation = runner.Isolation(found.interpreter, kind="bwrap", spawn_user=found.spawn_user,
                                 prefix=sandboxing.bwrap_prefix(bwrap, files, 64 * 1024 * 1024))
    paths = [str(stdlib / "stdlib_module.py"), str(stdlib / "site-packages" / "installed.py")]
    report = runner.CodeRunner(isolation=isolation).run(
        "import os\n_result = [os.path.exists(p) for p in data['paths']]\n_explanation = 'seen'\n", {"paths": paths})
    assert report.status == "ok", report.error
    assert report.result is not None and report.result.value == [True, False]
