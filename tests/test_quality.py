"""The project's own checks, so CI enforces them: ruff lint and mypy --strict over the sources."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
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


def _unfollowed_packages() -> list[str]:
    """The module patterns pyproject's mypy overrides do not follow (`follow_imports = "skip"`)."""
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["overrides"]
    return [pattern for table in overrides if table.get("follow_imports") == "skip" for pattern in table["module"]]


def _is_unfollowed(module: str, patterns: list[str]) -> bool:
    # mypy's per-module patterns: "a.b.*" is a.b and everything under it; a name without ".*" is that module only.
    return any(module == pattern.removesuffix(".*") or (pattern.endswith(".*") and module.startswith(pattern[:-1]))
               for pattern in patterns)


def _imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute module an import statement of this file names, `from a import b` as both a and a.b."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def test_mypy_follows_every_package_our_code_imports() -> None:
    # mypy skips some of the dependencies' own dependencies (pyproject's overrides, for a cold run's time): a name
    # of ours imported from one would silently be Any, so our code must import none of them.
    patterns = _unfollowed_packages()
    assert patterns, "pyproject.toml has no follow_imports = \"skip\" override: drop this test with it"
    files = [p for top in (*SOURCES, "tests/contracts") for p in sorted((ROOT / top).rglob("*.py"))]
    found = [f"{path.relative_to(ROOT)}:{line} imports {module}" for path in files
             for line, module in _imported_modules(path) if _is_unfollowed(module, patterns)]
    assert not found, ("mypy does not follow these (pyproject's [[tool.mypy.overrides]], follow_imports = "
                       f"\"skip\"): take the package off that list or import something else: {found}")
