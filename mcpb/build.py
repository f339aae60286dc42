#!/usr/bin/env python3
"""Build the Claude Desktop bundle (.mcpb) of cekura-labs-mcp, and keep manifest.json in sync.

    python mcpb/build.py pack dist/cekura-labs-mcp.mcpb        # full bundle, dependencies vendored
    python mcpb/build.py pack out.mcpb --no-deps               # quick bundle: our code only (CI check)
    python mcpb/build.py stage build/mcpb                      # only lay out the bundle directory
    python mcpb/build.py sync-manifest [--check]               # tools/prompts in manifest.json from the server

Bundle layout (manifest `server.type` "python"):
    manifest.json
    server/run.py                      entry point (mcpb/run.py)
    server/lib/cekura_labs_mcp/...     this project's server/, tools/ and skills/
    server/lib/<dependencies>          vendored with `pip install --target` (unless --no-deps)

The dependencies include compiled wheels (pydantic-core), so a full bundle only runs on the
platform and Python minor version it was built for: build it on (or, with --platform and
--python-version, for) each target. The staged manifest records the Python version it was built for.
Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.json"
PACKAGE = "cekura_labs_mcp"
SOURCE_DIRS = ("server", "tools", "skills")
MCPB_NPM = "@anthropic-ai/mcpb@2.1.2"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".ruff_cache")


# ---- importing the package from the source tree ----------------------------------------------------

@contextmanager
def importable_package() -> Iterator[None]:
    """Make `cekura_labs_mcp` importable: as installed if it is, else from this checkout (the wheel's
    layout, rebuilt with symlinks in a temporary directory)."""
    try:
        __import__(f"{PACKAGE}.tools")
        yield
        return
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="cekura-labs-src-") as tmp:
        package = Path(tmp) / PACKAGE
        package.mkdir()
        for name in SOURCE_DIRS:
            (package / name).symlink_to(ROOT / name, target_is_directory=True)
        sys.path.insert(0, tmp)
        try:
            yield
        finally:
            sys.path.remove(tmp)


def server_listing() -> dict[str, list[dict[str, Any]]]:
    """The tools and prompts the server registers, as manifest entries."""
    with importable_package():
        from cekura_labs_mcp.server.guidance import PROMPTS
        from cekura_labs_mcp.tools import ALL_TOOLS
        from cekura_labs_mcp.tools.toolsets import CORE

        tools = [{"name": spec.name, "description": spec.title if spec.toolset == CORE else
                  f"{spec.title} (toolset {spec.toolset}: listed once load_toolset loads it)"} for spec in ALL_TOOLS]
        prompts = [{
            "name": spec.name,
            "description": spec.description,
            "arguments": ["agent_id", "metric_id"],
            "text": f"{spec.description} Cekura agent ${{arguments.agent_id}}, metric ${{arguments.metric_id}}. "
                    f"Follow the guide at {spec.guide} (an MCP resource of this server).",
        } for spec in PROMPTS]
    return {"tools": tools, "prompts": prompts}


def synced_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    manifest["version"] = project["version"]
    manifest.update(server_listing())
    return manifest


def sync_manifest(check: bool) -> int:
    current = MANIFEST.read_text(encoding="utf-8")
    wanted = json.dumps(synced_manifest(), indent=2, ensure_ascii=False) + "\n"
    if current == wanted:
        print("manifest.json is in sync with the server")
        return 0
    if check:
        print("manifest.json is out of date: run `python mcpb/build.py sync-manifest`", file=sys.stderr)
        return 1
    MANIFEST.write_text(wanted, encoding="utf-8")
    print("manifest.json updated")
    return 0


# ---- staging and packing -------------------------------------------------------------------------

def dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"])


def vendor(lib: Path, platform_tag: str | None, python_version: str | None) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--target", str(lib)]
    if platform_tag or python_version:
        command += ["--only-binary=:all:"]
        if platform_tag:
            command += ["--platform", platform_tag]
        if python_version:
            command += ["--python-version", python_version]
    command += dependencies()
    print("+ " + shlex.join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    for cache in lib.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def stage(out: Path, *, with_deps: bool, platform_tag: str | None = None,
          python_version: str | None = None) -> Path:
    if out.exists():
        shutil.rmtree(out)
    lib = out / "server" / "lib"
    package = lib / PACKAGE
    package.mkdir(parents=True)
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, package / name, ignore=IGNORED)
    shutil.copy2(ROOT / "mcpb" / "run.py", out / "server" / "run.py")
    manifest: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if with_deps:
        vendor(lib, platform_tag, python_version)
        built_for = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
        runtimes = manifest.setdefault("compatibility", {}).setdefault("runtimes", {})
        runtimes["python"] = f">={built_for},<{built_for.split('.')[0]}.{int(built_for.split('.')[1]) + 1}"
        if not platform_tag:
            system = {"Darwin": "darwin", "Windows": "win32", "Linux": "linux"}.get(platform.system())
            if system:
                manifest["compatibility"]["platforms"] = [system]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def mcpb_command(explicit: str | None) -> list[str]:
    if explicit:
        return shlex.split(explicit)
    if os.environ.get("MCPB"):
        return shlex.split(os.environ["MCPB"])
    return ["npx", "-y", MCPB_NPM]


def pack(output: Path, *, with_deps: bool, mcpb: str | None, platform_tag: str | None,
         python_version: str | None) -> int:
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cekura-labs-mcpb-") as tmp:
        staged = stage(Path(tmp) / "bundle", with_deps=with_deps, platform_tag=platform_tag,
                       python_version=python_version)
        command = [*mcpb_command(mcpb), "pack", str(staged), str(output)]
        print("+ " + shlex.join(command), file=sys.stderr)
        result = subprocess.run(command, check=False)
    if result.returncode == 0 and output.exists():
        print(f"{output} ({output.stat().st_size / 1_048_576:.1f} MiB)")
        return 0
    print("mcpb pack failed", file=sys.stderr)
    return result.returncode or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("stage", "pack"):
        sub = commands.add_parser(name)
        sub.add_argument("output", type=Path, help="directory (stage) or .mcpb file (pack)")
        sub.add_argument("--no-deps", action="store_true", help="do not vendor the dependencies")
        sub.add_argument("--platform", dest="platform_tag", help="pip --platform tag, e.g. macosx_11_0_arm64")
        sub.add_argument("--python-version", help="target Python, e.g. 3.12 (with --platform)")
        if name == "pack":
            sub.add_argument("--mcpb", help=f"mcpb command (default: $MCPB or npx -y {MCPB_NPM})")
    sync = commands.add_parser("sync-manifest")
    sync.add_argument("--check", action="store_true", help="only report whether manifest.json is in sync")
    args = parser.parse_args(argv)
    if args.command == "sync-manifest":
        return sync_manifest(args.check)
    if args.command == "stage":
        print(stage(args.output, with_deps=not args.no_deps, platform_tag=args.platform_tag,
                    python_version=args.python_version))
        return 0
    return pack(args.output, with_deps=not args.no_deps, mcpb=args.mcpb, platform_tag=args.platform_tag,
                python_version=args.python_version)


if __name__ == "__main__":
    raise SystemExit(main())
