"""Messages that name tools are made in the tool layer: below it (server/, but not the sandbox, which knows
nothing of this server's tools) a message says which kind of step comes next (`Step`, server/steps.py), and
tools/steps.py writes the step as the tool's name before the text reaches the assistant. So renaming a tool
touches the tool layer only.

The check reads every string literal of server/ (docstrings aside: they are for developers) and fails on a
registered tool's name in one. What is allowed is listed below with the reason it is not a message."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from cekura_labs_mcp.server.steps import MARK, Step
from cekura_labs_mcp.tools import ALL_TOOLS
from cekura_labs_mcp.tools.steps import TOOL_FOR_STEP, name_tools, name_tools_in

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
TOOL_NAMES = sorted((spec.name for spec in ALL_TOOLS), key=len, reverse=True)
NAMED = re.compile(r"(?<![\w/'])(" + "|".join(TOOL_NAMES) + r")(?![\w/'])")
# Cekura's own endpoint names (path segments of its API), which several tools share: a literal that is such a
# name, bare or as a path, names the endpoint (a request, an audit-log operation), not a tool.
CEKURA_ENDPOINTS = {segment for path in json.loads((ROOT / "tests" / "spec" / "cekura-openapi-subset.json")
                                                   .read_text())["paths"]
                    for segment in path.split("/") if segment and not segment.startswith("{")}
# Whole files whose tool names are not messages from below the tool layer.
ALLOWED_FILES = {
    "server/demo.py": "the demo is an MCP client: it calls the tools by name and prints what they answer",
    "server/apps.py": "which view each tool shows (`_meta.ui`): the tools' names as keys, not a message",
    "server/guidance.py": "the prompts, built from the skills' quick paths: guides that name tools by design, like "
                          "skills/ (tests/test_skills.py checks every name they use is registered)",
}
# Literals allowed by content: SQL naming the audit log's operation (Cekura's endpoint, as stored).
ALLOWED_SQL = re.compile(r"\b(SELECT|UPDATE|INSERT)\b.*operation = '(\w+)'", re.DOTALL)


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _is_endpoint(text: str) -> bool:
    return all(part in CEKURA_ENDPOINTS for part in text.strip("/").split("/") if part)


def tool_names_in_messages(path: Path) -> list[tuple[int, str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docs:
            continue
        text = node.value
        if _is_endpoint(text) or ALLOWED_SQL.search(text):
            continue
        found += [(node.lineno, match.group(1), text[:80]) for match in NAMED.finditer(text)]
    return found


def server_sources() -> list[Path]:
    return sorted(p for p in SERVER.rglob("*.py") if "sandbox" not in p.relative_to(SERVER).parts)


def test_no_message_below_the_tool_layer_names_a_tool() -> None:
    offending = {
        str(path.relative_to(ROOT)): hits for path in server_sources()
        if str(path.relative_to(ROOT)) not in ALLOWED_FILES and (hits := tool_names_in_messages(path))}
    assert not offending, ("name the step (server/steps.py: f\"... {Step.WAIT_FOR_IMPROVEMENT} ...\"), not the tool; "
                           f"tools/steps.py names the tool: {offending}")


def test_the_check_finds_a_tool_name_and_spares_endpoints(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docstrings may name poll_progress."""\n'
                      'PATH = "evaluate_metrics/"\nOP = "process_feedbacks"\n'
                      'HINT = "Call poll_progress to see where it is."\n')
    assert [(line, name) for line, name, _ in tool_names_in_messages(sample)] == [(4, "poll_progress")]


def test_the_allowed_files_still_exist() -> None:
    for name in ALLOWED_FILES:
        assert (ROOT / name).exists(), f"{name} is gone: drop it from ALLOWED_FILES"


def test_every_step_is_written_as_a_registered_tool() -> None:
    registered = {spec.name for spec in ALL_TOOLS}
    assert set(TOOL_FOR_STEP) == set(Step), "a step without a tool (tools/steps.py)"
    for step, tool in TOOL_FOR_STEP.items():
        assert tool in registered
        assert name_tools(f"Call {step} now.") == f"Call {tool} now."
    data = {"next_step": f"Call {Step.WAIT_FOR_IMPROVEMENT}.", "rows": [{"hint": f"{Step.READ_CALL}"}], "n": 3}
    assert name_tools_in(data) == {"next_step": "Call poll_progress.", "rows": [{"hint": "get_call"}], "n": 3}


@pytest.mark.parametrize("text", ["no step here", "⟨NOT_A_STEP⟩ stays", "a ⟨ bracket"])
def test_text_without_a_step_is_left_alone(text: str) -> None:
    assert name_tools(text) == text


def test_no_step_marker_reaches_a_published_schema() -> None:
    import anyio
    from cekura_labs_mcp.server.app import build_server
    from cekura_labs_mcp.server.config import Settings

    server = build_server(Settings(CEKURA_API_KEY="unused-for-listing"))
    for tool in anyio.run(server.list_every_tool):
        published = json.dumps([tool.description, tool.input_schema, tool.output_schema], ensure_ascii=False)
        assert MARK not in published, tool.name


def test_no_tool_module_imports_another() -> None:
    """What tool modules share lives in tools/_*.py (and steps.py, toolsets.py); a tool module imports no other."""
    tool_modules = {p.stem for p in (ROOT / "tools").glob("*.py")
                    if not p.stem.startswith("_") and p.stem not in ("steps", "toolsets", "instructions")}
    for module in sorted(tool_modules):
        tree = ast.parse((ROOT / "tools" / f"{module}.py").read_text(encoding="utf-8"))
        imported = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cekura_labs_mcp.tools.")}
        assert not imported & tool_modules, f"tools/{module}.py imports {sorted(imported & tool_modules)}"
