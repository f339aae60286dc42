"""The committed views (server/ui/*.html, shipped in the wheel) are exactly what `ui/` builds from its sources
and its lock file, so no one edits a bundle by hand and no source change ships unbuilt.

Needs Node.js 20+ and npm (and the npm registry, or npm's cache, for `npm ci`). Where Node is absent the
comparison skips and says why; CI sets CEKURA_LABS_REQUIRE_NODE=1 (.ci/run), under which it fails instead."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cekura_labs_mcp.server.apps import VIEWS
from system_needs import require_node

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "ui"
BUILT = ROOT / "server" / "ui"
REBUILD = "cd ui && npm ci && npm run build, then commit server/ui/"


def _require_node() -> None:
    require_node("rebuilding the MCP Apps views")


def test_every_view_is_built_and_nothing_else_is_shipped() -> None:
    assert {p.stem for p in BUILT.glob("*.html")} == {v.name for v in VIEWS}
    assert {p.name for p in (UI / "src").iterdir() if p.is_dir() and p.name != "shared"} == {v.name for v in VIEWS}


def test_the_build_is_pinned_by_a_committed_lock_file() -> None:
    lock = json.loads((UI / "package-lock.json").read_text(encoding="utf-8"))
    manifest = json.loads((UI / "package.json").read_text(encoding="utf-8"))
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"]
    # The official App SDK, resolved to one exact version with its integrity hash.
    sdk = lock["packages"]["node_modules/@modelcontextprotocol/ext-apps"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", sdk["version"]) and sdk["integrity"].startswith("sha512-")


def _installed_matches_the_lock() -> bool:
    """ui/node_modules holds exactly what the lock file pins (npm's own record of the install says so): then
    building from it is what `npm ci` would give, without installing again."""
    record = UI / "node_modules" / ".package-lock.json"
    if not record.exists():
        return False
    pinned = json.loads((UI / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    installed = json.loads(record.read_text(encoding="utf-8"))["packages"]

    # Optional packages for other platforms (esbuild's and Rollup's native binaries) are pinned but not installed.
    needed = {name for name, p in pinned.items() if name and not p.get("optional")}
    return needed <= set(installed) and all(
        name in pinned and (p.get("version"), p.get("integrity")) == (pinned[name].get("version"),
                                                                      pinned[name].get("integrity"))
        for name, p in installed.items())


def _npm(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{(done.stdout + done.stderr)[-2000:]}"


@functools.cache
def prepared_ui() -> Path:
    """ui/ ready to build, once per test process (the views' and the browser host's build checks share it):
    ui/ itself when its node_modules is what the lock pins, else a copy of it after one `npm ci`."""
    _require_node()
    if _installed_matches_the_lock():
        return UI  # the builds write only to the output directory given, never into the tree
    source = Path(tempfile.mkdtemp(prefix="cekura-ui-")) / "ui"
    atexit.register(shutil.rmtree, source.parent, True)
    shutil.copytree(UI, source, ignore=shutil.ignore_patterns("node_modules"))
    _npm(["npm", "ci", "--prefer-offline"], source)
    return source


@functools.cache
def fresh_build() -> Path:
    """ui/'s type check, its views and the browser tests' host bridge, from one `node check.mjs` (Node, TypeScript and
    Vite start once for the three freshness checks, which each read their part): the output directory, holding
    views/, test-host/ and a <part>.error file for each part that failed."""
    source = prepared_ui()
    out = Path(tempfile.mkdtemp(prefix="cekura-ui-build-"))
    atexit.register(shutil.rmtree, out, True)
    _npm(["node", "check.mjs", str(out)], source)
    return out


def part_failure(out: Path, part: str) -> str:
    """What check.mjs reported for a part that failed, else ""."""
    error = out / f"{part}.error"
    return error.read_text(encoding="utf-8") if error.exists() else ""


@pytest.fixture
def ui_build() -> Path:
    return fresh_build()


def test_the_view_sources_type_check(ui_build: Path) -> None:
    """`tsc --strict` over ui/src, as `npm run build` runs it first (vite itself strips types unchecked); check.mjs
    runs it through TypeScript's API on ui/tsconfig.json and reports what `tsc -p .` would print."""
    failure = part_failure(ui_build, "typecheck")
    assert not failure, f"ui/src does not type-check (cd ui && npx tsc -p .):\n{failure[-3000:]}"


def test_committed_views_match_a_fresh_build(ui_build: Path) -> None:
    failure = part_failure(ui_build, "views")
    assert not failure, f"building the views failed:\n{failure[-3000:]}"
    for view in VIEWS:
        fresh = (ui_build / "views" / f"{view.name}.html").read_bytes()
        committed = (BUILT / f"{view.name}.html").read_bytes()
        assert fresh == committed, f"server/ui/{view.name}.html is not what ui/ builds: {REBUILD}"
