"""The ways people install the server: the Claude Code plugin, the Claude Desktop bundle (.mcpb) and
the install checks that need Node.js (.ci/checks.sh: mcpb validate, claude plugin validate, and the
MCP Inspector CLI against the served tools, prompts and resources).

These tests need Node.js 20+ and npm (and the npm registry). Where Node is absent they skip and say why;
CI sets CEKURA_LABS_REQUIRE_NODE=1 (.ci/run), under which a missing Node fails them instead."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cekura_labs_mcp.server.guidance import PROMPTS
from cekura_labs_mcp.tools import ALL_TOOLS
from cekura_labs_mcp.tools.toolsets import CORE
from mcp import Client, StdioServerParameters, stdio_client
from system_needs import REQUIRE_NODE, require_node

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / ".ci" / "checks.sh"
BUILD = ROOT / "mcpb" / "build.py"
STORED_ZIP = ROOT / "tests" / "mcpb_stored" / "register.mjs"
TOOL_NAMES = [spec.name for spec in ALL_TOOLS]
CORE_TOOL_NAMES = [spec.name for spec in ALL_TOOLS if spec.toolset == CORE]  # listed before any load_toolset


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])


def _require_node() -> None:
    """Skip (saying why) where Node.js is missing; fail instead where it must be there (CI)."""
    require_node("the install checks")


def _checks_env() -> dict[str, str]:
    """Run the checks with this interpreter; start the server through the console script installed
    beside it when there is one (as Claude Code would), else through `python -m`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEKURA_")}
    env["PYTHON"] = sys.executable
    script = Path(sys.executable).with_name("cekura-labs-mcp")
    env["CEKURA_LABS_MCP_CMD"] = str(script) if script.exists() else f"{sys.executable} -m cekura_labs_mcp.server.cli"
    if "CEKURA_CI_NODE_DIR" in os.environ:
        env["CEKURA_CI_NODE_DIR"] = os.environ["CEKURA_CI_NODE_DIR"]
    return env


# ---- the manifest and the plugin files -------------------------------------------------------------

def test_manifest_lists_exactly_the_server_tools_and_prompts() -> None:
    manifest = _json(ROOT / "manifest.json")
    listed = [t["name"] for t in manifest["tools"]]
    assert sorted(listed) == sorted(TOOL_NAMES), (
        "manifest.json's tools differ from the server's registry: run `python mcpb/build.py sync-manifest`")
    assert len(listed) == len(set(listed))
    assert all(t.get("description") for t in manifest["tools"])
    assert [p["name"] for p in manifest["prompts"]] == [spec.name for spec in PROMPTS]
    for prompt in manifest["prompts"]:
        assert prompt["arguments"] == ["agent_id", "metric_id"]
        assert "${arguments.agent_id}" in prompt["text"] and "${arguments.metric_id}" in prompt["text"]


def _build_script() -> ModuleType:
    """mcpb/build.py loaded as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("mcpb_build", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_is_in_sync_with_the_generator(capsys: pytest.CaptureFixture[str]) -> None:
    # In this process, whose registry is already imported (a subprocess spent seconds importing it again); the
    # script's own start as a command is covered by the bundle test below, which runs `build.py pack`.
    code = _build_script().main(["sync-manifest", "--check"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "manifest.json is in sync with the server" in captured.out


def test_manifest_runs_the_bundled_server_with_the_users_settings() -> None:
    manifest = _json(ROOT / "manifest.json")
    assert manifest["manifest_version"] == "0.3"
    assert manifest["version"] == _version() == "0.1.0"
    server = manifest["server"]
    assert server["type"] == "python" and server["entry_point"] == "server/run.py"
    config = server["mcp_config"]
    assert config["args"] == ["${__dirname}/server/run.py"]
    assert config["env"] == {"PYTHONPATH": "${__dirname}/server/lib", "CEKURA_API_KEY": "${user_config.api_key}",
                             "CEKURA_API_URL": "${user_config.api_url}"}
    options = manifest["user_config"]
    assert options["api_key"]["sensitive"] is True and options["api_key"]["required"] is False
    assert options["api_url"]["default"] == "https://api.cekura.ai" and options["api_url"]["required"] is False


def test_claude_code_plugin_layout() -> None:
    plugin = _json(ROOT / ".claude-plugin" / "plugin.json")
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", plugin["name"])
    assert plugin["version"] == _version()
    assert plugin["description"] and plugin["author"]["name"]
    servers = _json(ROOT / ".mcp.json")["mcpServers"]
    assert list(servers) == ["cekura-labs"]
    server = servers["cekura-labs"]
    assert [server["command"], *server["args"]] == ["cekura-labs-mcp", "serve"]
    # `${VAR:-}`: an unset key expands to "" (the sandbox); a bare `${VAR}` would arrive as literal text.
    assert server["env"]["CEKURA_API_KEY"] == "${CEKURA_API_KEY:-}"
    assert server["env"]["CEKURA_API_URL"].startswith("${CEKURA_API_URL:-https://api.cekura.ai")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "cekura-labs-mcp" in scripts
    assert sorted(p.parent.name for p in (ROOT / "skills").glob("*/SKILL.md")), "the plugin's skills/ is empty"
    market = _json(ROOT / ".claude-plugin" / "marketplace.json")
    assert [(p["name"], p["source"], p["version"]) for p in market["plugins"]] == [(plugin["name"], "./", _version())]


def test_without_node_the_checks_skip_saying_why_and_fail_where_node_is_required(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "node" else "/usr/bin/" + tool)
    monkeypatch.delenv(REQUIRE_NODE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"node not found: .*Node.js 20\+.*CEKURA_LABS_REQUIRE_NODE=1"):
        _require_node()
    monkeypatch.setenv(REQUIRE_NODE, "1")
    with pytest.raises(pytest.fail.Exception, match=r"node not found: .*must run here"):
        _require_node()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"export {REQUIRE_NODE}=1" in ci.split("bash -c")[0]  # set before the suite runs


# ---- .ci/checks.sh: mcpb validate, claude plugin validate, MCP Inspector CLI ------------------------

def test_install_checks_pass() -> None:
    _require_node()
    started = time.monotonic()
    result = subprocess.run(["bash", str(CHECKS)], cwd=ROOT, env=_checks_env(), capture_output=True, text=True,
                            timeout=900, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "all 8 install checks passed" in output, output[-3000:]
    print(f"checks.sh took {time.monotonic() - started:.1f} s")


# ---- the .mcpb bundle --------------------------------------------------------------------------------

def _mcpb() -> str:
    _require_node()
    result = subprocess.run(["bash", str(CHECKS), "node-bin"], cwd=ROOT, env=_checks_env(), capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return str(Path(result.stdout.strip().splitlines()[-1]) / "mcpb")


def _mcpb_storing() -> str:
    """The pinned mcpb CLI, whose pack stores the files instead of deflating them at level 9 (tests/mcpb_stored/
    register.mjs says why: 7.5 s of CPU in JavaScript). The zip holds the same entries, paths, modes and bytes."""
    return shlex.join(["node", "--import", STORED_ZIP.as_uri(), _mcpb()])  # a URL: what --import takes everywhere


@pytest.mark.anyio
async def test_the_bundle_packs_and_runs_on_its_vendored_packages(tmp_path: Path) -> None:
    bundle = tmp_path / "cekura-labs-mcp.mcpb"
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(BUILD), "pack", str(bundle), "--mcpb", _mcpb_storing()], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "entries stored, not deflated" in result.stderr, "the pack ran without tests/mcpb_stored's hook"
    pack_seconds = time.monotonic() - started

    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        archive.extractall(tmp_path / "unpacked")
    assert {"manifest.json", "server/run.py", "server/lib/cekura_labs_mcp/server/cli.py",
            "server/lib/cekura_labs_mcp/server/guidance.py",
            "server/lib/cekura_labs_mcp/skills/labs-metric-improvement/SKILL.md",
            "server/lib/cekura_labs_mcp/skills/writing-feedback/references/feedback-examples.md"} <= names
    assert any(n.startswith("server/lib/mcp/") for n in names), "the mcp SDK is not vendored"
    assert any(n.startswith("server/lib/pydantic_core/") for n in names), "pydantic-core is not vendored"
    assert not any("__pycache__" in n for n in names)
    assert manifest["server"]["entry_point"] in names
    built_for = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert manifest["compatibility"]["runtimes"]["python"].startswith(f">={built_for},")

    # Start it as Claude Desktop would, minus the site-packages (-S): everything must come from the bundle.
    # The API key option left empty may arrive unexpanded; run.py must treat that as "no key" (sandbox).
    root = tmp_path / "unpacked"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(root / "server" / "lib"),
           "CEKURA_API_KEY": "${user_config.api_key}", "CEKURA_API_URL": "https://api.cekura.ai",
           "CEKURA_LABS_DATA_DIR": str(tmp_path / "data")}
    params = StdioServerParameters(command=sys.executable, args=["-S", str(root / "server" / "run.py")], env=env)
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            prompts = {p.name for p in (await client.list_prompts()).prompts}
        errlog.seek(0)
        stderr = errlog.read()
    assert tools == set(CORE_TOOL_NAMES)
    assert prompts == {spec.name for spec in PROMPTS}, "server/app.py must call register_guidance(server)"
    assert "sandbox_started" in stderr
    size = bundle.stat().st_size / 1_048_576
    print(f"mcpb pack with vendored dependencies: {pack_seconds:.1f} s, {size:.1f} MiB, {len(names)} files")
