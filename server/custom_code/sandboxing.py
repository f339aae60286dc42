"""The operating-system sandbox a custom_code run goes into: bubblewrap on Linux, Seatbelt on macOS.

Custom code comes from the assistant or from a metric stored on Cekura (anyone who can edit a project's
metrics can write it), so it is run as hostile. The audit hook inside the child is a guard rail that one
line of native code or a subinterpreter walks around; the boundary is the kernel's:

- Linux, `bwrap` (bubblewrap): new user, PID, network, IPC, UTS and cgroup namespaces; a root file system
  that holds only the interpreter, its standard library, the shared libraries they load, a minimal
  `/dev` and an empty size-limited tmpfs as working directory, all read-only but that tmpfs; no `/proc`,
  no home, no `/etc`, no `/tmp` of the host; the environment cleared; capabilities dropped, no further
  user namespaces; the sandbox dies with the server. When the server runs as root, bubblewrap itself is
  started as `nobody`, so the kernel's process limit applies and nothing runs with root's identity.
- macOS, `sandbox-exec` (Seatbelt): deny by default; reads of the interpreter's own files and the system
  libraries it needs, reads and writes in a fresh temporary directory, no network, no process creation,
  no signals or process inspection outside itself. (No PID namespace exists on macOS.)

Each is probed once by running a small program in it; where none works, code is refused unless the
person opts in with `CEKURA_LABS_ALLOW_UNSANDBOXED_CODE=1` (see `runner.py`).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

ALLOW_UNSANDBOXED_ENV = "CEKURA_LABS_ALLOW_UNSANDBOXED_CODE"
WORKDIR_IN_SANDBOX = "/sandbox"
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_READ_ONLY_DATA = ("/usr/share/zoneinfo",)  # the standard library's `zoneinfo` reads the system's tz data


def unsandboxed_allowed(environ: dict[str, str] | None = None) -> bool:
    return (environ if environ is not None else dict(os.environ)).get(ALLOW_UNSANDBOXED_ENV, "").strip() == "1"


@dataclass(frozen=True)
class InterpreterFiles:
    """What one interpreter needs to start and import its standard library: nothing else is mounted."""

    executable: str
    directories: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # (the file on the host, the path the loader looks for it at)


def interpreter_files(executable: str) -> InterpreterFiles | None:
    """The interpreter's standard-library directories (its own `sys.path` without site-packages) and the
    shared libraries it and its extension modules load (from `ldd`); None when it cannot be inspected."""
    real = os.path.realpath(executable)
    try:
        done = subprocess.run([real, "-I", "-S", "-c", "import sys, json; print(json.dumps(sys.path))"],
                              capture_output=True, timeout=20, check=True, env={})
        paths = [p for p in json.loads(done.stdout) if isinstance(p, str) and p and os.path.isdir(p)]
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    directories = [os.path.realpath(p) for p in paths]
    binaries = [real] + [os.path.join(d, name) for d in directories if d.endswith("lib-dynload")
                         for name in sorted(os.listdir(d)) if name.endswith(".so")]
    files = _shared_libraries(binaries)
    if files is None:
        return None
    directories += [d for d in _READ_ONLY_DATA if os.path.isdir(d)]
    return InterpreterFiles(real, tuple(dict.fromkeys(directories)), tuple(sorted(files.items(), key=lambda f: f[1])))


def _shared_libraries(binaries: list[str]) -> dict[str, str] | None:
    ldd = shutil.which("ldd") or shutil.which("ldd", path="/usr/bin:/bin")
    if ldd is None:
        return None
    found: dict[str, str] = {}
    for start in range(0, len(binaries), 40):
        try:
            done = subprocess.run([ldd, *binaries[start:start + 40]], capture_output=True, text=True, timeout=30,
                                  check=False, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        except (OSError, subprocess.SubprocessError):
            return None
        for line in done.stdout.splitlines():
            match = _LDD_LINE.match(line)
            if match and os.path.exists(match.group(1)):
                found[os.path.realpath(match.group(1))] = match.group(1)
    return {host: inside for host, inside in found.items()}


def bwrap_prefix(bwrap: str, files: InterpreterFiles, disk_bytes: int) -> tuple[str, ...]:
    """bubblewrap's arguments before the interpreter's: the namespaces and the minimal file system."""
    args = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox"]
    for directory in files.directories:
        args += ["--ro-bind", directory, directory]
    for installed in _installed_packages(files.directories):
        # python.org, pyenv and Docker builds keep site-packages inside the standard library's directory: an
        # empty read-only tmpfs hides the person's installed packages (and the home path under them).
        args += ["--tmpfs", installed, "--remount-ro", installed]
    args += ["--ro-bind", files.executable, files.executable]
    for host, inside in files.files:
        args += ["--ro-bind", host, inside]
    # bubblewrap's /dev is a tmpfs of its own, writable and sized at half the host's RAM (no --size for it):
    # files there would hold host memory outside every limit, so it is read-only (its devices still work).
    args += ["--dev", "/dev", "--size", str(disk_bytes), "--tmpfs", WORKDIR_IN_SANDBOX,
             "--chdir", WORKDIR_IN_SANDBOX, "--remount-ro", "/dev", "--remount-ro", "/"]
    return tuple(args)


def _installed_packages(directories: tuple[str, ...]) -> list[str]:
    return [os.path.join(d, name) for d in directories for name in ("site-packages", "dist-packages")
            if os.path.isdir(os.path.join(d, name)) and os.path.join(d, name) not in directories]


def seatbelt_profile(files: InterpreterFiles | None, executable: str) -> str:
    """A deny-by-default Seatbelt profile; the working directory arrives as the `WORKDIR` parameter."""
    prefix = os.path.realpath(sys.base_prefix)
    readable = sorted({prefix, *(files.directories if files else ())})
    reads = " ".join(f"(subpath {_sb(p)})" for p in readable)
    return "\n".join([
        "(version 1)",
        "(deny default)",
        f"(allow process-exec (literal {_sb(os.path.realpath(executable))}))",
        # dyld's shared cache lives under /System (Cryptexes on macOS 13+) or /private/var/db/dyld; zoneinfo
        # under /usr/share -> /private/var/db/timezone.
        f"(allow file-read* {reads} (subpath \"/usr/lib\") (subpath \"/usr/share\") (subpath \"/System\") "
        "(subpath \"/private/var/db/dyld\") (subpath \"/private/var/db/timezone\") (literal \"/dev/null\") "
        "(literal \"/dev/urandom\") (literal \"/dev/random\"))",
        *(f"(deny file-read* (subpath {_sb(p)}) (subpath {_sb(os.path.realpath(p))}))"
          for p in _installed_packages(tuple(readable))),  # the last matching rule wins
        "(allow file-read-metadata)",
        "(allow file-read* file-write* (subpath (param \"WORKDIR\")))",
        "(allow sysctl-read)",
        "(allow process-info* (target self))",
        "(allow signal (target self))",
        "(deny network*)",
        "(deny process-fork)",
        "",
    ])


def _sb(path: str) -> str:
    return json.dumps(path)  # a Seatbelt string literal has JSON's escaping for the characters paths use


def nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def sandboxed_leaves(pid: int) -> list[int]:
    """The processes under `pid` that have no children of their own (Linux `/proc/<pid>/task/<pid>/children`):
    under bubblewrap, the interpreter running the code rather than bubblewrap's init. [] where unknown."""
    leaves: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as handle:
                children = [int(c) for c in handle.read().split()]
        except (OSError, ValueError):
            continue
        if not children and current != pid:
            leaves.append(current)
        pending.extend(children)
    return leaves
