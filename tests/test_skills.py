"""The skills: valid Agent Skills documents that name only real tools and link only real files, and the
same text served over MCP as resources and prompts (through a real client session).

How a tool name is detected in skill text (and in the rendered prompts). A name "looks like a tool" when
it is a snake_case identifier (lowercase words joined by "_", at least two words) and
  1. it is written as a call, immediately followed by "(" - in inline code (`get_call(call_id=...)`)
     or in plain prose (get_call(...)); or
  2. it is inline code on a line that starts with "Tools:" (a list of tools); or
  3. it is inline code on its own (`next_review`) and its first word is the first word of a
     registered tool (list, get, mark, triage, record, ...), unless it is a parameter or result field
     of a tool (`test_set_ids`): that is how tools are named here.
Field names such as `thumbs_up`, `expected_value` or `custom_code` match none of these. Python code
blocks (custom_code examples) are not scanned. NOT_TOOLS lists the few look-alikes that are not tools
of this server, each with the reason. Every detected name must be in the registry (ALL_TOOLS).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from cekura_labs_mcp.server.app import build_server
from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.guidance import (
    MIME_TYPE,
    PROMPTS,
    QUICK_PATH,
    SkillFormatError,
    body,
    front_matter,
    register_guidance,
    section,
    skill_documents,
)
from cekura_labs_mcp.tools import ALL_TOOLS
from cekura_labs_mcp.tools.toolsets import CORE
from mcp import Client, MCPError
from mcp.server import MCPServer
from pydantic import BaseModel

pytestmark = pytest.mark.anyio

SKILLS_DIR = Path(__file__).resolve().parent.parent / "skills"
REQUIRED_SKILLS = {"labs-metric-improvement", "interactive-review", "writing-feedback", "python-metrics"}
TOOL_NAMES = {spec.name for spec in ALL_TOOLS}
TOOL_VERBS = {name.split("_", 1)[0] for name in TOOL_NAMES}


def _field_names() -> set[str]:
    """Every parameter and result field of the tools: `test_set_ids` is a field even though it starts
    with the word of a tool (test_custom_code)."""
    names: set[str] = set()
    seen: set[type] = set()

    def walk(annotation: Any) -> None:
        for arg in get_args(annotation):
            walk(arg)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
            seen.add(annotation)
            for name, field in annotation.model_fields.items():
                names.add(name)
                walk(field.annotation)

    for spec in ALL_TOOLS:
        names.update(inspect.signature(spec.fn).parameters)
        walk(get_type_hints(spec.fn).get("return"))
    return names


FIELD_NAMES = _field_names() - TOOL_NAMES
NOT_TOOLS = {
    "evaluate_llm_judge_metric": "a function of Cekura's custom_code runtime, called inside metric code",
    "start_time": "a transcript field (a turn's start, in seconds)",
    "test_profile": "a variable of the custom_code runtime (simulation calls)",
}
SNAKE = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
INLINE = re.compile(r"`([^`\n]+)`")
CALL_IN_CODE = re.compile(rf"^({SNAKE})\(")
CALL_IN_PROSE = re.compile(rf"(?<![\w.\"'])({SNAKE})\(")
BARE = re.compile(rf"^({SNAKE})$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NAME_RULE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def skill_dirs() -> list[Path]:
    return sorted(p for p in SKILLS_DIR.iterdir() if p.is_dir() and (p / "SKILL.md").exists())


def markdown_files() -> list[Path]:
    return sorted(SKILLS_DIR.rglob("*.md"))


def _without_python_blocks(text: str) -> str:
    """Drop fenced ```python blocks (custom_code examples); keep other fences (templates) and prose."""
    kept, in_python, in_fence = [], False, False
    for line in text.splitlines():
        fence = line.strip().startswith("```")
        if fence and not in_fence:
            in_fence, in_python = True, line.strip()[3:].strip().lower() in ("python", "py")
            continue
        if fence and in_fence:
            in_fence = in_python = False
            continue
        if not in_python:
            kept.append(line)
    return "\n".join(kept)


def tool_like_names(text: str) -> set[str]:
    """Every name the text uses as a tool (rules in the module docstring)."""
    found: set[str] = set()
    for line in _without_python_blocks(text).splitlines():
        tools_line = re.match(r"^\W*tools\W*:", line, re.IGNORECASE) is not None
        for code in INLINE.findall(line):
            code = code.strip()
            if call := CALL_IN_CODE.match(code):
                found.add(call.group(1))
            elif bare := BARE.match(code):
                name = bare.group(1)
                if tools_line or (name.split("_", 1)[0] in TOOL_VERBS and name not in FIELD_NAMES):
                    found.add(name)
        found.update(CALL_IN_PROSE.findall(INLINE.sub("", line)))
    return found - NOT_TOOLS.keys()


# ---- the detector itself --------------------------------------------------------------------------

def test_the_detector_flags_unknown_tools_and_spares_field_names() -> None:
    sample = (
        "Call `record_review(agent_id=1)` then `get_call`; set `thumbs_up` and `expected_value`.\n"
        "Then summarize_feedbacks(metric_id=3) and `list_everything`.\n"
        "Tools: `frobnicate_metric`, `next_review`\n"
        "```python\nresult = extract_section(turns)\n```\n"
        "Use `evaluate_llm_judge_metric(data)` and `data.get(\"x\")`; the `custom_code` field.\n"
    )
    assert tool_like_names(sample) == {"record_review", "get_call", "summarize_feedbacks", "list_everything",
                                       "frobnicate_metric", "next_review"}
    unknown = tool_like_names(sample) - TOOL_NAMES
    assert unknown == {"summarize_feedbacks", "list_everything", "frobnicate_metric"}


# ---- the documents --------------------------------------------------------------------------------

def test_the_skills_package_ships_the_required_skills() -> None:
    assert (SKILLS_DIR / "__init__.py").exists(), "skills/ must be a package so the wheel ships it"
    assert {p.name for p in skill_dirs()} >= REQUIRED_SKILLS
    assert (SKILLS_DIR / "writing-feedback" / "references" / "feedback-examples.md").exists()


@pytest.mark.parametrize("skill", [p.name for p in skill_dirs()])
def test_front_matter_is_valid(skill: str) -> None:
    text = (SKILLS_DIR / skill / "SKILL.md").read_text(encoding="utf-8")
    fields = front_matter(text)
    assert set(fields) >= {"name", "description"}, f"{skill}: front matter needs name and description"
    name, description = fields["name"], fields["description"]
    assert name == skill, f"the name {name!r} must equal the folder name {skill!r}"
    assert NAME_RULE.match(name) and len(name) <= 64, f"{name!r}: lowercase letters, digits and single hyphens"
    assert description.strip(), f"{skill}: empty description"
    assert len(description) <= 1024, f"{skill}: description is {len(description)} characters (max 1024)"
    assert "use when" in description.lower(), f"{skill}: the description must say when to use it ('Use when ...')"
    assert "<" not in description and ">" not in description, f"{skill}: no angle brackets in the description"
    assert len(body(text).splitlines()) <= 500, f"{skill}: keep SKILL.md under 500 lines; move detail to references/"
    section(text, QUICK_PATH)  # the prompts are built from it


def test_front_matter_parser_refuses_what_it_cannot_read() -> None:
    with pytest.raises(SkillFormatError):
        front_matter("# no front matter\n")
    with pytest.raises(SkillFormatError):
        front_matter("---\nname: x\ndescription: >\n  folded\n---\n")
    with pytest.raises(SkillFormatError):
        front_matter("---\nname: x\nname: y\n---\n")
    assert front_matter('---\nname: "x"\ndescription: a: b\n---\nbody') == {"name": "x", "description": "a: b"}


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(SKILLS_DIR)))
def test_every_named_tool_exists(path: Path) -> None:
    unknown = tool_like_names(path.read_text(encoding="utf-8")) - TOOL_NAMES
    assert not unknown, (f"{path.relative_to(SKILLS_DIR)} names tools the server does not have: {sorted(unknown)}. "
                         f"Registered: {sorted(TOOL_NAMES)}")


@pytest.mark.parametrize("skill", [p.name for p in skill_dirs()])
def test_a_skill_that_names_a_tool_outside_the_core_says_which_toolset_to_load(skill: str) -> None:
    """Those tools are listed only once `load_toolset` added their toolset (tools/toolsets.py)."""
    text = (SKILLS_DIR / skill / "SKILL.md").read_text(encoding="utf-8")
    toolset_of = {spec.name: spec.toolset for spec in ALL_TOOLS}
    needed = {toolset_of[name] for name in tool_like_names(text) & TOOL_NAMES} - {CORE}
    for toolset in needed:
        assert f'load_toolset(name="{toolset}")' in text or (
            f"`{toolset}`" in text and "load_toolset(name=...)" in text), f"{skill}: say how to load {toolset}"


@pytest.mark.parametrize("skill", [p.name for p in skill_dirs()])
def test_links_resolve_inside_the_skill_and_no_reference_is_orphaned(skill: str) -> None:
    folder = SKILLS_DIR / skill
    linked: set[Path] = set()
    for path in folder.rglob("*.md"):
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            assert resolved.is_file(), f"{path.relative_to(SKILLS_DIR)} links to a missing file: {target}"
            assert folder.resolve() in resolved.parents, (
                f"{path.relative_to(SKILLS_DIR)} links outside its skill ({target}); skills install separately")
            linked.add(resolved)
    references = {p.resolve() for p in (folder / "references").glob("*.md")}
    orphans = references - linked
    assert not orphans, f"{skill}: reference files no document links to: {sorted(p.name for p in orphans)}"
    assert not [p for p in folder.iterdir() if p.is_file() and p.name != "SKILL.md"], (
        f"{skill}: put extra material under references/")


def test_the_package_reads_every_document() -> None:
    served = {(d.skill, d.path) for d in skill_documents()}
    on_disk = {(p.relative_to(SKILLS_DIR).parts[0], "/".join(p.relative_to(SKILLS_DIR).parts[1:]))
               for p in markdown_files()}
    assert served == on_disk


# ---- the custom_code examples actually run ---------------------------------------------------------

def _python_block(text: str, heading: str) -> str:
    match = re.search(r"```python\n(.*?)```", section(text, heading), re.DOTALL)
    assert match, f"no python block under '## {heading}'"
    return match.group(1)


def test_the_conversion_template_runs_in_the_dry_run_harness() -> None:
    text = (SKILLS_DIR / "python-metrics" / "references" / "conversion.md").read_text(encoding="utf-8")
    harness: dict[str, Any] = {}
    exec(compile(_python_block(text, "Local dry run"), "dry-run", "exec"), harness)
    template = _python_block(text, "Template")
    review = {"id": 7, "metadata": {}, "transcript": {"turns": [
        {"t": "00:01", "who": "agent", "text": "Northwind clinic, how can I help?"},
        {"t": "00:05", "who": "caller", "text": "Hi, it's about my bill."},
        {"t": "00:09", "who": "agent", "text": "Sure."},
        {"t": "00:40", "who": "caller", "text": "Also I need to book an appointment for Friday."},
        {"t": "00:46", "who": "agent", "text": "Booked: Friday at 10."},
    ]}}
    result, explanation = harness["dry_run"](template, review)
    assert result is True
    assert explanation.startswith("Judged on turns from 00:05 on.")
    combine = _python_block(text, "Combining other metrics (no judge call)")
    namespace: dict[str, Any] = {"data": {"Booking Completed": True, "Confirms Booking Details": False,
                                          "explanation": {"Confirms Booking Details": ["No read-back."]}}}
    exec(compile(combine, "combine", "exec"), namespace)
    assert namespace["_result"] is False and "No read-back." in namespace["_explanation"]


# ---- served over MCP --------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[MCPServer[Any]]:
    settings = Settings(CEKURA_LABS_DATA_DIR=tmp_path / "data")
    built = build_server(settings, use_sandbox=True)
    register_guidance(built)  # a no-op if server/app.py already registered the guidance
    register_guidance(built)  # and registering twice is harmless
    yield built


async def test_prompts_are_listed_typed_and_rendered(server: MCPServer[Any]) -> None:
    async with Client(server) as client:
        listed = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(listed) == {spec.name for spec in PROMPTS} >= {"improve_metric", "review_calls"}
        for prompt in listed.values():
            assert prompt.description and len(prompt.description) > 40
            arguments = {a.name: a for a in prompt.arguments or []}
            assert set(arguments) == {"agent_id", "metric_id"}
            assert all(a.required and a.description for a in arguments.values())
        for spec in PROMPTS:
            rendered = await client.get_prompt(spec.name, {"agent_id": "12", "metric_id": "34"})
            text = rendered.messages[0].content.text  # type: ignore[union-attr]
            assert "agent 12" in text and "metric 34" in text
            assert spec.guide in text
            assert len(text) < 6000, f"{spec.name} should stay compact ({len(text)} characters)"
            unknown = tool_like_names(text) - TOOL_NAMES
            assert not unknown, f"prompt {spec.name} names unknown tools {sorted(unknown)}"
        with pytest.raises(MCPError):  # the SDK refuses arguments that fail the int validation
            await client.get_prompt("improve_metric", {"agent_id": "not a number", "metric_id": "1"})


async def test_every_skill_document_is_a_readable_resource(server: MCPServer[Any]) -> None:
    async with Client(server) as client:
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        for path in markdown_files():
            rel = path.relative_to(SKILLS_DIR)
            uri = f"skill://{rel.parts[0]}/{'/'.join(rel.parts[1:])}"
            assert uri in resources, f"{uri} is not listed"
            assert resources[uri].mime_type == MIME_TYPE
            assert resources[uri].description
            contents = (await client.read_resource(uri)).contents
            assert contents[0].text == path.read_text(encoding="utf-8")  # type: ignore[union-attr]
        labs = resources["skill://labs-metric-improvement/SKILL.md"]
        assert labs.description and labs.description.startswith("End-to-end method")
