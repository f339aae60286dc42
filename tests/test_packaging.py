"""The installed wheel puts one package in site-packages, with everything the server needs at run time."""

from __future__ import annotations

from importlib import metadata


def test_wheel_installs_one_top_level_package() -> None:
    files = metadata.files("cekura-labs-mcp") or []
    tops = {f.parts[0] for f in files if not f.parts[0].endswith(".dist-info") and f.parts[0] != ".."}
    # `server/`, `tools/` and `skills/` of the source tree live under cekura_labs_mcp, never at the top.
    assert tops == {"cekura_labs_mcp"}, tops
    names = {"/".join(f.parts) for f in files}
    assert "cekura_labs_mcp/server/cli.py" in names
    assert "cekura_labs_mcp/tools/__init__.py" in names
    assert any(n.startswith("cekura_labs_mcp/skills/") and n.endswith("SKILL.md") for n in names)


def test_console_script_points_into_the_package() -> None:
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")
               if e.dist is not None and e.dist.name == "cekura-labs-mcp"}
    assert scripts == {"cekura-labs-mcp": "cekura_labs_mcp.server.cli:main"}
