"""README is true to what a newcomer sees: its tools table is the registry, its admin-route table is the
sandbox's routes, its session excerpt is the demo's real output, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from cekura_labs_mcp.server.sandbox.app import build_app
from cekura_labs_mcp.tools import ALL_TOOLS, READ_TOOLS
from cekura_labs_mcp.tools.toolsets import CORE
from support import demo_transcript

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEMO_SEED, DEMO_WIDTH = 7, 72
OMITTED = "…"


def _between(start: str, end: str) -> str:
    assert start in README and end in README, f"README lost its {start} marker"
    return README.split(start, 1)[1].split(end, 1)[0]


def _section(heading: str) -> str:
    return README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_tools_table_is_the_registry() -> None:
    table = _between("<!-- tools-table", "<!-- /tools-table -->")
    rows = [line for line in table.splitlines() if line.startswith("|") and "---" not in line][1:]
    named = [name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[2])]
    assert sorted(named) == sorted(spec.name for spec in ALL_TOOLS), "README's tools table and tools/__init__.py"
    assert len(named) == len(set(named)), "a tool is listed twice"
    toolset_of = {spec.name: spec.toolset for spec in ALL_TOOLS}
    for row in rows:
        cells = row.split("|")
        said = re.match(r"\s*toolset `([a-z_]+)`:", cells[3])
        for name in re.findall(r"`([a-z_]+)`", cells[2]):
            assert toolset_of[name] == (said.group(1) if said else CORE), f"README gives {name} the wrong toolset"


def test_the_read_only_list_is_the_read_only_registry() -> None:
    paragraph = README.split("With `--read-only` only the tools that change nothing on Cekura are offered", 1)[1]
    listed = re.findall(r"`([a-z_]+)`", paragraph.split(")", 1)[0])
    assert sorted(listed) == sorted(spec.name for spec in READ_TOOLS)


def test_every_admin_route_of_the_sandbox_is_documented() -> None:
    routes = {route.path.rstrip("/") for route in build_app(seed=7).routes  # type: ignore[attr-defined]
              if route.path.startswith("/_sandbox")}
    table = _section("The sandbox")
    documented = set(re.findall(r"`(?:GET|POST|DELETE)(?:\\\|(?:GET|POST))? (/_sandbox/[a-z0-9/_-]+)", table))
    assert routes == documented
    truth_row = next(line for line in table.splitlines() if "/_sandbox/truth" in line)
    for field in ("expected", "pattern", "actual"):
        assert f"`{field}`" in truth_row


def test_the_session_excerpt_is_the_demos_real_output() -> None:
    text, _report = demo_transcript(DEMO_SEED, DEMO_WIDTH)
    printed = {line.rstrip() for line in text.splitlines()}
    excerpt = _between("<!-- demo-excerpt -->", "<!-- /demo-excerpt -->").strip().strip("`").strip("\n")
    lines = [line.rstrip() for line in excerpt.splitlines() if line.strip() and line.strip() != OMITTED]
    assert len(lines) >= 15, "the excerpt shows a session"
    missing = [line for line in lines if line not in printed]
    assert not missing, ("README's session excerpt is no longer what `cekura-labs-mcp demo` prints (seed "
                         f"{DEMO_SEED}, {DEMO_WIDTH} columns); copy the new lines in. Not printed: {missing}")


def test_the_quickstart_commands_name_what_exists() -> None:
    for marker in ("main-command", "test-command"):
        assert f"<!-- {marker} -->" in README
    assert (ROOT / ".ci" / "run").is_file()
    assert "cekura-labs-mcp demo" in _between("<!-- main-command -->", "<!-- /main-command -->")
    # The test command sets up what the suite needs from the system too (bubblewrap, a C compiler).
    assert _between("<!-- test-command -->", "<!-- /test-command -->").strip("`\n ").startswith(
        "bash scripts/test-system-deps.sh && ")
    assert (ROOT / "scripts" / "test-system-deps.sh").is_file()
