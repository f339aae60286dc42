"""The browser tests' host bridge (tests/browser/host-bridge.js: ext-apps' AppBridge + PostMessageTransport) is what
`ui/` builds from test-host/host-bridge.ts and the views' lock file, so the host the tests use speaks the SDK version
the views are built with, and no one edits the bundle by hand.

Needs Node.js 20+ and npm, like the views' build check (tests/test_apps_build.py), whose prepared ui/ (its Node
check and its one `npm ci`) and build run (ui/check.mjs) it shares: where Node is absent it skips and says why;
under CEKURA_LABS_REQUIRE_NODE=1 (CI) it fails."""

from __future__ import annotations

from pathlib import Path

from test_apps_build import fresh_build, part_failure

BUNDLE = Path(__file__).resolve().parent / "browser" / "host-bridge.js"
REBUILD = "cd ui && npm ci && npm run build:test-host, then commit tests/browser/host-bridge.js"


def test_the_host_bridge_is_what_ui_builds() -> None:
    # Built by the same `node check.mjs` run as the views (ui/check.mjs: one Node and Vite start for both, and one
    # `npm ci` per test run at most).
    out = fresh_build()
    failure = part_failure(out, "test-host")
    assert not failure, f"building the host bridge failed:\n{failure[-3000:]}"
    fresh = (out / "test-host" / "host-bridge.js").read_bytes()
    assert fresh == BUNDLE.read_bytes(), f"tests/browser/host-bridge.js is not what ui/ builds: {REBUILD}"
