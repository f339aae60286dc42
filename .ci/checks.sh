#!/usr/bin/env bash
# Install checks that need Node.js: the Claude Desktop bundle's manifest validates with the official
# mcpb tool, the Claude Code plugin manifest with Claude Code's own validator, and the server, started
# as a client would start it (stdio, no API key, so the built-in sandbox), answers the MCP Inspector
# (its CLI, then one session through the CLI's own client) with our tools, prompts and skill resources.
#
#   bash .ci/checks.sh             run every check (tests/test_installs.py runs this)
#   bash .ci/checks.sh node-bin    only install the pinned npm tools (cached) and print their bin dir
#
# Environment (all optional):
#   CEKURA_CI_NODE_DIR    where the npm tools are installed and cached
#                         (default: ${XDG_CACHE_HOME:-~/.cache}/cekura-labs-mcp/ci-node)
#   CEKURA_LABS_MCP_CMD   command that starts the server, before its `serve` argument (default: the
#                         `cekura-labs-mcp` on PATH, else `$PYTHON -m cekura_labs_mcp.server.cli` on this checkout)
#   PYTHON                interpreter for that fallback and for reading the JSON answers (default: python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MCPB_VERSION=2.1.2
INSPECTOR_VERSION=0.15.0 # the newest Inspector that runs on Node 20 (0.16 and later need Node >= 22.7.5)
CLAUDE_CODE_VERSION=2.1.197
NODE_DIR=${CEKURA_CI_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cekura-labs-mcp/ci-node}
PYTHON=${PYTHON:-python3}
BIN="$NODE_DIR/node_modules/.bin"

say() { printf 'checks.sh: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "'$1' is not installed ($2)"; }

install_node_tools() {
  need node "Node.js 20 or later is required for the install checks"
  need npm "npm comes with Node.js"
  local stamp="$NODE_DIR/.installed-mcpb-$MCPB_VERSION-inspector-$INSPECTOR_VERSION-claude-$CLAUDE_CODE_VERSION"
  if [[ -f "$stamp" && -x "$BIN/mcpb" && -x "$BIN/mcp-inspector" && -x "$BIN/claude" ]]; then
    return
  fi
  # Two runs at once (the test suite's two workers) must not both wipe and fill the same directory: the second
  # waits for the first, then finds the tools installed.
  mkdir -p "$(dirname "$NODE_DIR")"
  exec 9>"$NODE_DIR.lock"
  flock 9
  if [[ -f "$stamp" && -x "$BIN/mcpb" && -x "$BIN/mcp-inspector" && -x "$BIN/claude" ]]; then
    exec 9>&-
    return
  fi
  local started=$SECONDS
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/mcpb@$MCPB_VERSION" "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >&2
  touch "$stamp"
  exec 9>&-
  say "npm tools installed in $NODE_DIR ($((SECONDS - started)) s)"
}

if [[ "${1:-}" == "node-bin" ]]; then
  install_node_tools
  printf '%s\n' "$BIN"
  exit 0
fi
[[ $# -eq 0 ]] || fail "unknown argument '$1' (use no argument, or node-bin)"

install_node_tools
need "$PYTHON" "set PYTHON to a Python 3.11+ interpreter"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cekura-checks.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
checks=0

# (b) the bundle manifest, with the validator Claude Desktop's own tooling uses
"$BIN/mcpb" validate "$ROOT/manifest.json" >"$WORK/validate.log" 2>&1 ||
  { cat "$WORK/validate.log" >&2; fail "mcpb validate manifest.json"; }
checks=$((checks + 1))
say "ok: mcpb validate manifest.json"

# the Claude Code plugin and its one-plugin marketplace, strictly (unknown fields, missing metadata fail). One run
# checks both: validating marketplace.json runs Claude Code's plugin.json validator (the one `claude plugin validate
# .claude-plugin/plugin.json` runs) on each local plugin it lists, here ./ (tests/test_installs.py asserts that
# entry), and reports its findings as `plugins[0] plugin.json -> ...`; it also fails a version that differs between
# the two files. A second start of Claude Code's 245 MB binary for plugin.json alone cost 0.7-1.1 s of CPU.
mkdir -p "$WORK/home" # Claude Code writes its settings under HOME: keep them out of the real one
HOME="$WORK/home" "$BIN/claude" plugin validate --strict "$ROOT/.claude-plugin/marketplace.json" >"$WORK/plugin.log" 2>&1 ||
  { cat "$WORK/plugin.log" >&2; fail "claude plugin validate --strict .claude-plugin/marketplace.json (and its plugin.json)"; }
grep -q "Validating marketplace manifest" "$WORK/plugin.log" ||
  { cat "$WORK/plugin.log" >&2; fail "claude plugin validate did not validate .claude-plugin/marketplace.json as a marketplace"; }
checks=$((checks + 2))
say "ok: claude plugin validate --strict .claude-plugin/marketplace.json and, through its entry ./, plugin.json"

# (c) the server over stdio, as a client starts it: no API key (the sandbox), a throwaway data dir
if [[ -n "${CEKURA_LABS_MCP_CMD:-}" ]]; then
  read -r -a SERVER <<<"$CEKURA_LABS_MCP_CMD"
elif command -v cekura-labs-mcp >/dev/null 2>&1; then
  SERVER=("$(command -v cekura-labs-mcp)")
else
  mkdir -p "$WORK/src/cekura_labs_mcp"
  for dir in server tools skills; do ln -s "$ROOT/$dir" "$WORK/src/cekura_labs_mcp/$dir"; done
  export PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}"
  SERVER=("$(command -v "$PYTHON")" -m cekura_labs_mcp.server.cli)
fi
say "server command: ${SERVER[*]} serve"

# The Inspector passes its own environment to the server: keep real credentials out of it.
unset CEKURA_API_KEY CEKURA_API_URL CEKURA_LABS_HTTP_TOKEN
export CEKURA_LABS_DATA_DIR="$WORK/data"
# The server's stderr goes to a log, shown if a check fails.
cat >"$WORK/server.sh" <<EOF
#!/usr/bin/env bash
exec "\$@" 2>>"$WORK/server.log"
EOF
chmod +x "$WORK/server.sh"

# Two server starts, not one per method (a start costs about 2.5 s of CPU, mostly importing mcp and pydantic):
# the MCP Inspector CLI itself, exactly as a person runs it, lists the tools; then one session through the
# Inspector CLI's own client (its transport, its Client and its calls, as `--method` uses them) lists the prompts
# and resources, reads the labs skill and gets a prompt. Each answer lands in $WORK/<name>.json, as the CLI prints it.
server_failed() {
  say "server stderr (last 40 lines):"
  tail -n 40 "$WORK/server.log" >&2 || true
  fail "$1"
}

"$BIN/mcp-inspector" --cli "$WORK/server.sh" "${SERVER[@]}" serve --method tools/list >"$WORK/tools.json" \
  2>"$WORK/tools.err" || { cat "$WORK/tools.json" "$WORK/tools.err" >&2; server_failed "MCP Inspector --method tools/list"; }

# The session script imports the Inspector's modules by name: it sits beside a link to the installed node_modules.
ln -s "$NODE_DIR/node_modules" "$WORK/node_modules"
cat >"$WORK/session.mjs" <<'JS'
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { connect, disconnect, getPrompt, listPrompts, listResources, readResource }
  from "@modelcontextprotocol/inspector/cli/build/client/index.js";
import { createTransport } from "@modelcontextprotocol/inspector/cli/build/transport.js";

const [work, command, ...args] = process.argv.slice(2);
const transport = createTransport({ transportType: "stdio", command, args });
const client = new Client({ name: "inspector-cli", version: "0.5.1" }); // as the CLI names itself
const save = (name, answer) => writeFileSync(join(work, `${name}.json`), JSON.stringify(answer, null, 2));
let method = "connect";
try {
  await connect(client, transport);
  method = "prompts/list";
  save("prompts", await listPrompts(client));
  method = "resources/list";
  const resources = await listResources(client);
  save("resources", resources);
  if (!resources.resources.some((r) => r.uri.startsWith("skill://"))) {
    throw new Error("the server serves no skill:// resources: server/app.py must call register_guidance(server) "
      + "from cekura_labs_mcp.server.guidance");
  }
  method = "resources/read skill://labs-metric-improvement/SKILL.md";
  save("skill", await readResource(client, "skill://labs-metric-improvement/SKILL.md"));
  method = "prompts/get improve_metric agent_id=12 metric_id=34";
  save("prompt", await getPrompt(client, "improve_metric", { agent_id: "12", metric_id: "34" }));
  await disconnect(transport);
} catch (error) {
  console.error(`${method}: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
JS
node "$WORK/session.mjs" "$WORK" "$WORK/server.sh" "${SERVER[@]}" serve 2>"$WORK/session.err" ||
  { cat "$WORK/session.err" >&2; server_failed "MCP Inspector client session: $(tail -n 1 "$WORK/session.err")"; }

"$PYTHON" - "$WORK" "$ROOT/manifest.json" <<'PY' || fail "the server's answers do not match manifest.json and the skills"
import json
import sys
from pathlib import Path

work, manifest = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())


def answer(name):
    return json.loads((work / f"{name}.json").read_text())


problems = []
tools = {t["name"] for t in answer("tools")["tools"]}
# The manifest names every tool; a conversation starts with the core ones listed, the rest wait in toolsets that
# load_toolset adds (the manifest says which: "(toolset ...").
listed = {t["name"] for t in manifest["tools"] if "(toolset " not in t.get("description", "")}
if tools != listed:
    problems.append(f"tools/list differs from manifest.json's core tools: only served {sorted(tools - listed)}, "
                    f"only listed {sorted(listed - tools)} (python mcpb/build.py sync-manifest)")
prompts = {p["name"] for p in answer("prompts")["prompts"]}
if prompts != {p["name"] for p in manifest["prompts"]}:
    problems.append(f"prompts/list {sorted(prompts)} differs from manifest.json")
resources = {r["uri"]: r for r in answer("resources")["resources"]}
for skill in ("labs-metric-improvement", "interactive-review", "writing-feedback", "python-metrics"):
    uri = f"skill://{skill}/SKILL.md"
    if uri not in resources:
        problems.append(f"resources/list lacks {uri}")
    elif resources[uri].get("mimeType") != "text/markdown":
        problems.append(f"{uri} is not served as text/markdown")
for view in ("review-card", "report", "proposal"):  # MCP Apps views, as an independent client lists them
    uri = f"ui://cekura-labs/{view}.html"
    if resources.get(uri, {}).get("mimeType") != "text/html;profile=mcp-app":
        problems.append(f"resources/list lacks {uri} as text/html;profile=mcp-app")
review_tool = next((t for t in answer("tools")["tools"] if t["name"] == "next_review"), {})
if review_tool.get("_meta", {}).get("ui", {}).get("resourceUri") != "ui://cekura-labs/review-card.html":
    problems.append("next_review does not name its view in _meta.ui.resourceUri")
text = answer("skill")["contents"][0].get("text", "")
if not text.startswith("---\nname: labs-metric-improvement\n"):
    problems.append("resources/read of the labs skill did not return the SKILL.md")
prompt = answer("prompt")["messages"][0]["content"]["text"]
if "metric 34" not in prompt or "agent 12" not in prompt:
    problems.append("prompts/get improve_metric did not fill in its arguments")
for problem in problems:
    print("checks.sh: " + problem, file=sys.stderr)
print(f"checks.sh: {len(tools)} tools, {len(prompts)} prompts, {len(resources)} resources served", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
checks=$((checks + 5))
say "ok: MCP Inspector tools/list (CLI); prompts/list, resources/list, resources/read, prompts/get (one session)"
say "all $checks install checks passed"
