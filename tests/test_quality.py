"""The project's own checks, so CI enforces them: ruff lint and mypy --strict over the sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("server", "tools")


def _tool(name: str) -> list[str]:
    return [sys.executable, "-m", name]


def test_ruff_is_clean() -> None:
    result = subprocess.run([*_tool("ruff"), "check", *SOURCES, "tests"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    # Type-check the source tree as the package it becomes in the wheel.
    package = tmp_path / "cekura_labs_mcp"
    package.mkdir()
    for name in (*SOURCES, "skills"):
        if (ROOT / name).exists():
            os.symlink(ROOT / name, package / name)
    env = {**os.environ, "MYPYPATH": str(tmp_path)}
    result = subprocess.run(
        [*_tool("mypy"), "--strict", "--namespace-packages", "--explicit-package-bases",
         "--cache-dir", str(tmp_path / ".mypy_cache"), "--config-file", str(ROOT / "pyproject.toml"),
         *[f"cekura_labs_mcp/{name}" for name in SOURCES], str(ROOT / "tests" / "contracts")],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
