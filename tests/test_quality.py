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


def test_mypy_strict_is_clean() -> None:
    # Type-check the source tree as the package it becomes in the wheel. The package view and mypy's cache
    # live at fixed places (both git-ignored), so after the first run mypy re-checks only what changed: a
    # cold run spends most of its time on the SDK's and pydantic's types.
    view = ROOT / ".pytest_cache" / "mypy-package"
    package = view / "cekura_labs_mcp"
    package.mkdir(parents=True, exist_ok=True)
    for name in (*SOURCES, "skills"):
        link = package / name
        if (ROOT / name).exists() and not link.is_symlink():
            os.symlink(ROOT / name, link)
    env = {**os.environ, "MYPYPATH": str(view)}
    result = subprocess.run(
        [*_tool("mypy"), "--strict", "--namespace-packages", "--explicit-package-bases",
         "--cache-dir", str(ROOT / ".mypy_cache"), "--config-file", str(ROOT / "pyproject.toml"),
         *[f"cekura_labs_mcp/{name}" for name in SOURCES], str(ROOT / "tests" / "contracts")],
        cwd=view, capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
