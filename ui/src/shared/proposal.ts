// An auto-improve proposal as the person judges it: the description change side by side, the trigger change,
// the Lab score old -> new, and (where the server may write) Apply / Dismiss.
import { button, h, percent, replace, type Child } from "./dom";
import type { Outcome, ViewHost } from "./host";
import type { ImprovementResult, PatchPreview, ScoreView } from "./types";

export function score(view: ScoreView | null): string {
  if (!view || view.score === null || view.score === undefined) return "–";
  const counts = view.correct !== null && view.total !== null ? ` (${view.correct}/${view.total})` : "";
  return `${percent(view.score)}${counts}`;
}

interface Row { old: string | null; new: string | null; kind: "same" | "change" | "hunk" | "note" }

/** The unified diff the server sends, laid out side by side (deleted lines left, added lines right). */
export function sideBySide(diff: string): Row[] {
  const rows: Row[] = [];
  let dels: string[] = [];
  let adds: string[] = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i++) {
      rows.push({ old: dels[i] ?? null, new: adds[i] ?? null, kind: "change" });
    }
    dels = [];
    adds = [];
  };
  for (const line of diff.split("\n")) {
    if (line.startsWith("--- ") || line.startsWith("+++ ")) continue;
    if (line.startsWith("@@")) { flush(); rows.push({ old: line, new: line, kind: "hunk" }); }
    else if (line.startsWith("-")) dels.push(line.slice(1));
    else if (line.startsWith("+")) adds.push(line.slice(1));
    else if (line.startsWith(" ") || line === "") { flush(); rows.push({ old: line.slice(1), new: line.slice(1), kind: "same" }); }
    else { flush(); rows.push({ old: line, new: null, kind: "note" }); }
  }
  flush();
  return rows;
}

function diffTable(diff: string): HTMLElement {
  const rows = sideBySide(diff);
  return h("table", { class: "diff", testid: "diff" },
    h("thead", {}, h("tr", {}, h("th", {}, "Current"), h("th", {}, "Proposed"))),
    h("tbody", {}, ...rows.map((row) => {
      if (row.kind === "hunk" || row.kind === "note") {
        return h("tr", { class: row.kind }, h("td", { attrs: { colspan: "2" } }, row.old ?? ""));
      }
      const changed = row.kind === "change";
      return h("tr", {},
        h("td", { testid: "diff-old", class: changed && row.old !== null ? "del" : changed ? "blank" : "" }, row.old ?? ""),
        h("td", { testid: "diff-new", class: changed && row.new !== null ? "add" : changed ? "blank" : "" }, row.new ?? ""));
    })));
}

export interface ProposalState {
  result: ImprovementResult;
  decided: PatchPreview | null;
  error: string;
  busy: boolean;
  acceptDrop: boolean;
}

/** Draws the whole proposal into `root`; button clicks call the server through the host and redraw. */
export function drawProposal(root: HTMLElement, state: ProposalState, host: ViewHost, metricId: number | undefined): void {
  const { result } = state;
  const redraw = () => drawProposal(root, state, host, metricId);
  const act = async (tool: string, args: Record<string, unknown>, onOk: (outcome: Extract<Outcome, { ok: true }>) => void) => {
    state.busy = true;
    state.error = "";
    redraw();
    const outcome = await host.call(tool, args);
    state.busy = false;
    if (outcome.ok) onOk(outcome);
    else state.error = outcome.error;
    redraw();
  };
  const improved = (outcome: Extract<Outcome, { ok: true }>) => { state.result = outcome.data as unknown as ImprovementResult; };
  const parts: Child[] = [h("h1", {}, `Auto-improve proposal${metricId ? ` for metric ${metricId}` : ""}`)];
  if (!result.done) {
    // The server's message tells the assistant which tool to call next; the person reads where the run stands.
    const where = result.questions.length
      ? "Auto-improve paused: it asks you about the Lab's feedback before it goes on."
      : `Auto-improve is still running${result.status ? ` (${result.status})` : ""}: nothing is proposed yet.`;
    parts.push(h("section", { testid: "running" }, h("p", {}, where),
      result.used ? h("p", { class: "muted" }, `Learning from ${result.used}.`) : null));
    if (result.questions.length) parts.push(questionsSection(state, host, act, improved, metricId));
    else parts.push(h("div", { class: "row" }, button("Keep waiting", "btn-poll", () =>
      void act("poll_progress", { progress_id: result.progress_id, metric_id: metricId }, improved), busyAttrs(state))));
  } else {
    parts.push(h("section", {},
      h("div", { class: "row" }, h("span", {}, "Lab score "),
        h("b", { testid: "score-old" }, score(result.old_score)), h("span", {}, " → "),
        h("b", { testid: "score-new" }, score(result.new_score))),
      result.score_dropped ? h("p", { class: "warn", testid: "score-drop" },
        "The Lab scores this proposal LOWER than the current metric. Apply it only if you mean to.") : null,
      result.used ? h("p", { class: "muted" }, `Learned from ${result.used}.`) : null,
      result.summary ? h("p", { class: "muted" }, result.summary) : null));
    parts.push(h("section", {}, h("h2", {}, "Trigger"),
      h("p", { testid: "trigger-change" }, result.trigger_change ?? `No change (${result.trigger_kind ?? "always"}).`)));
    parts.push(h("section", {}, h("h2", {}, "Description"),
      result.identical ? h("p", { testid: "identical" }, "The proposal is identical to the current metric: nothing to apply.")
        : result.diff ? diffTable(result.diff)
          : h("div", {}, h("p", { class: "muted" }, "No diff (the run was read without its metric): the proposed description."),
            h("p", { class: "pre", testid: "proposed-description" }, result.proposed_description ?? ""))));
    if (result.proposed_custom_code) {
      parts.push(h("section", {}, h("h2", {}, `Proposed custom_code (${result.proposed_type ?? "custom_code"})`),
        h("pre", { class: "pre code", testid: "proposed-code" }, result.proposed_custom_code)));
    }
    if (result.unresolved_samples.length) {
      parts.push(h("section", {}, h("h2", {}, `Still wrong in the Lab (${result.unresolved})`),
        h("ul", {}, ...result.unresolved_samples.map((line) => h("li", {}, line)))));
    }
    if (state.decided) {
      parts.push(h("p", { class: "status", testid: "status", attrs: { role: "status" } }, state.decided.message));
    } else if (!host.readOnly && !result.identical && metricId !== undefined) {
      parts.push(decisionSection(state, host, redraw, act, metricId));
    } else if (host.readOnly) {
      parts.push(h("p", { class: "muted" }, host.readOnlyNote));
    } else if (metricId === undefined && !result.identical) {
      parts.push(h("p", { class: "muted" }, "Which metric this run improves is unknown here: ask for poll_progress with its metric_id to apply it."));
    }
  }
  if (state.error) parts.push(h("div", { class: "error", testid: "error", attrs: { role: "alert" } }, state.error));
  replace(root, ...parts);
  root.dataset.ready = "true";
  root.setAttribute("aria-busy", String(state.busy));
}

function busyAttrs(state: ProposalState) {
  return { attrs: state.busy ? { disabled: "" } : {} };
}

type Act = (tool: string, args: Record<string, unknown>, onOk: (outcome: Extract<Outcome, { ok: true }>) => void) => Promise<void>;

function decisionSection(state: ProposalState, host: ViewHost, redraw: () => void, act: Act, metricId: number): HTMLElement {
  const { result } = state;
  const decided = (outcome: Extract<Outcome, { ok: true }>) => {
    state.decided = outcome.data as unknown as PatchPreview;
    host.tell(`In the proposal view the person chose: ${state.decided.message}`);
  };
  const needsDrop = result.score_dropped && !state.acceptDrop;
  const apply = button("Apply", "btn-apply", () => void act("apply_proposal", {
    metric_id: metricId, progress_id: result.progress_id, decision: "apply", confirm: true,
    accept_score_drop: result.score_dropped && state.acceptDrop }, decided),
  { class: "primary", attrs: state.busy || needsDrop ? { disabled: "" } : {} });
  const dismiss = button("Dismiss", "btn-dismiss", () => void act("apply_proposal", {
    metric_id: metricId, progress_id: result.progress_id, decision: "dismiss", confirm: true }, decided), busyAttrs(state));
  const accept = result.score_dropped ? h("label", { class: "row" },
    h("input", { testid: "accept-score-drop", attrs: { type: "checkbox", ...(state.acceptDrop ? { checked: "" } : {}) },
      on: { change: (event) => { state.acceptDrop = (event.target as HTMLInputElement).checked; redraw(); } } }),
    "I accept the lower Lab score") : null;
  return h("section", { testid: "decision" },
    h("p", {}, "Apply saves the current version first (rollback_metric restores it)."),
    accept, h("div", { class: "row" }, apply, dismiss));
}

function questionsSection(state: ProposalState, host: ViewHost, act: Act,
  improved: (outcome: Extract<Outcome, { ok: true }>) => void, metricId: number | undefined): HTMLElement {
  const { result } = state;
  return h("section", { testid: "questions" }, h("h2", {}, "Auto-improve asks"),
    ...result.questions.map((question) => {
      const answer = h("textarea", { testid: "answer", attrs: { rows: "2", placeholder: "Your answer" } });
      return h("div", {},
        h("p", {}, question.text),
        question.options.length ? h("p", { class: "muted" }, `Options: ${question.options.join(", ")}`) : null,
        question.context ? h("p", { class: "pre muted" }, question.context) : null,
        host.readOnly ? null : answer,
        host.readOnly ? null : h("div", { class: "row" },
          button("Answer", "btn-answer", () => void act("answer_improvement_question", {
            progress_id: result.progress_id, question_id: question.id, answer: answer.value, metric_id: metricId }, improved),
          { class: "primary", ...busyAttrs(state) }),
          button("Skip question", "btn-skip-question", () => void act("answer_improvement_question", {
            progress_id: result.progress_id, question_id: question.id, skip: true, metric_id: metricId }, improved),
          busyAttrs(state))));
    }));
}
