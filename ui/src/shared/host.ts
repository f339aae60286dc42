// The view's side of MCP Apps (SEP-1865) through the official App SDK: the handshake with the host, the tool's
// input and result, the host's theme, and tool calls the view makes through the host.
import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";

export type Json = Record<string, unknown>;
export type Outcome = { ok: true; data: Json } | { ok: false; error: string };

interface ToolResultLike {
  content?: unknown;
  structuredContent?: unknown;
  isError?: boolean;
}

export interface ViewHost {
  /** The view offers nothing that writes: the server runs --read-only, or the host lets no view call tools. */
  readonly readOnly: boolean;
  /** Why, in a sentence the view shows where the buttons would be. */
  readonly readOnlyNote: string;
  /** The host forwards the view's tool calls (reads included): false hides what only a call could show. */
  readonly canCall: boolean;
  /** The arguments the assistant called the view's tool with (agent_id, metric_id, ...). */
  input(): Json;
  /** Calls a server tool through the host; a refusal or failure comes back as `ok: false` with its one line. */
  call(name: string, args: Json): Promise<Outcome>;
  /** Tells the assistant what the person did in the view (where the host supports it): the next turn knows. */
  tell(text: string): void;
}

/** The server marks the HTML it serves on a read-only server (it offers no tool that writes there). */
export function readOnlyMode(): boolean {
  const mode = document.querySelector('meta[name="cekura-labs-mode"]');
  return mode?.getAttribute("content") === "read-only";
}

function textOf(content: unknown): string {
  if (!Array.isArray(content)) return "";
  return content
    .map((block) => (block && typeof block === "object" && "text" in block ? String((block as Json).text) : ""))
    .join("\n");
}

/** structuredContent when the host passes it on; otherwise the text block, which carries the same JSON. */
export function outcome(result: ToolResultLike): Outcome {
  if (result.isError) return { ok: false, error: textOf(result.content) || "The tool failed." };
  if (result.structuredContent && typeof result.structuredContent === "object") {
    return { ok: true, data: result.structuredContent as Json };
  }
  try {
    const parsed: unknown = JSON.parse(textOf(result.content));
    if (parsed && typeof parsed === "object") return { ok: true, data: parsed as Json };
  } catch {
    // not JSON: fall through
  }
  return { ok: false, error: textOf(result.content) || "The tool answered nothing the view can show." };
}

function applyContext(context: McpUiHostContext | undefined): void {
  if (!context) return;
  if (context.theme) applyDocumentTheme(context.theme);
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
}

/** Connects to the host and calls `render` with each tool result (the first one, and any the host sends later). */
export function startView(name: string, render: (outcome: Outcome, host: ViewHost) => void): ViewHost {
  const app = new App({ name: `cekura-labs-${name}`, version: "0.1.0" }, {}, { autoResize: true });
  let input: Json = {};
  const serverReadOnly = readOnlyMode();
  // Known once the handshake is done (the first tool result comes after it); a host without serverTools
  // cannot forward a click to the server, so the view then asks for the answer in the conversation instead.
  const noTools = () => app.getHostCapabilities() !== undefined && !app.getHostCapabilities()?.serverTools;
  const host: ViewHost = {
    get readOnly() {
      return serverReadOnly || noTools();
    },
    get readOnlyNote() {
      return serverReadOnly ? "Read-only server: nothing is recorded or changed from here."
        : "This host does not let the view call the server: answer in the conversation.";
    },
    get canCall() {
      return !noTools();
    },
    input: () => input,
    tell(text) {
      if (!app.getHostCapabilities()?.updateModelContext) return;
      app.updateModelContext({ content: [{ type: "text", text }] }).catch(() => undefined);
    },
    async call(tool, args) {
      try {
        return outcome(await app.callServerTool({ name: tool, arguments: args }));
      } catch (error) {
        return { ok: false, error: error instanceof Error ? error.message : String(error) };
      }
    },
  };
  // Handlers first: the host may send the tool's input and result right after the handshake.
  app.ontoolinput = (params) => {
    input = (params.arguments as Json | undefined) ?? {};
  };
  app.ontoolresult = (result) => render(outcome(result), host);
  app.ontoolcancelled = () => render({ ok: false, error: "The tool call was cancelled." }, host);
  app.onhostcontextchanged = (context) => applyContext(context);
  app
    .connect()
    .then(() => applyContext(app.getHostContext()))
    .catch((error: unknown) => render({ ok: false, error: `Could not reach the host: ${String(error)}` }, host));
  return host;
}
