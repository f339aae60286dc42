// The review card: one call before the person, their verdict recorded through the host (record_review).
import "../shared/style.css";
import { button, h, replace, type Child } from "../shared/dom";
import { startView, type Json, type Outcome, type ViewHost } from "../shared/host";
import { drawProposal, type ProposalState } from "../shared/proposal";
import type { CallReview, MetricDefinition, NextReview, Progress, RecordedReview, Turn } from "../shared/types";

const root = document.getElementById("root") as HTMLElement;

interface State {
  review: NextReview | null;
  status: string;
  error: string;
  /** The disagreement the server sent back as vague: the person may send it as written. */
  retry: Json | null;
  /** The auto-improve run this review's feedback started, shown in full to apply or dismiss right here. */
  proposal: ProposalState | null;
  busy: boolean;
  disagreeing: boolean;
  transcript: Turn[] | null;
  /** What the person typed, kept across redraws. */
  reason: string;
}

const state: State = {
  review: null, status: "", error: "", retry: null, proposal: null, busy: false, disagreeing: false,
  transcript: null, reason: "",
};
const definitions = new Map<number, Promise<MetricDefinition | null>>();
let host: ViewHost;
/** Set when the person's own click brought a new call: focus then moves to its question. */
let moveFocus = false;

function definition(metricId: number): Promise<MetricDefinition | null> {
  let known = definitions.get(metricId);
  if (!known) {
    known = host.call("get_metric", { metric_id: metricId }).then((o) => {
      if (o.ok) return o.data as unknown as MetricDefinition;
      definitions.delete(metricId); // a failed read is asked again next time; meanwhile the value is typed
      return null;
    });
    definitions.set(metricId, known);
  }
  return known;
}

function agentId(call: CallReview): number | undefined {
  const given = host.input().agent_id;
  return typeof given === "number" ? given : call.agent_id ?? undefined;
}

function receive(outcome: Outcome, fromView = false): void {
  state.busy = false;
  if (!outcome.ok) {
    state.error = outcome.error;
    draw();
    return;
  }
  state.error = "";
  state.retry = null;
  const data = outcome.data;
  if (typeof data.recorded === "string") {
    const recorded = data as unknown as RecordedReview;
    state.status = recorded.recorded;
    if (fromView) {
      const p = recorded.progress;
      host.tell(`In the review card the person answered: ${recorded.recorded} Progress: ${p.feedback}/${p.needed} feedback `
        + `(${p.agreed} agreed, ${p.disagreed} disagreed, ${p.skipped} skipped).`
        + (recorded.improvement ? " Auto-improve ran; its proposal is shown in the card." : ""));
    }
    state.proposal = recorded.improvement
      ? { result: recorded.improvement, decided: null, error: "", busy: false, acceptDrop: false } : null;
    state.review = recorded.next ?? { progress: recorded.progress, call: null, why_picked: [], question: "" };
    state.review.progress = recorded.progress;
  } else if ("progress" in data) {
    state.review = data as unknown as NextReview;
  }
  state.disagreeing = false;
  state.transcript = null;
  state.reason = "";
  moveFocus = fromView;
  draw();
}

async function record(args: Json): Promise<void> {
  const call = state.review?.call;
  if (!call?.metric || state.busy) return;
  state.busy = true;
  state.error = "";
  draw();
  const base = { agent_id: agentId(call), metric_id: call.metric.id, call_id: call.id };
  const outcome = await host.call("record_review", { ...base, ...args });
  if (!outcome.ok && /insist=true/.test(outcome.error) && args.agree === false) {
    state.busy = false;
    state.error = outcome.error;
    state.retry = { ...base, ...args, insist: true };
    draw();
    return;
  }
  receive(outcome, true);
}

// ---- drawing ---------------------------------------------------------------------------------

function draw(): void {
  const review = state.review;
  const parts: Child[] = [];
  if (!review) {
    parts.push(h("p", { class: "muted" }, "Waiting for the call to review…"));
  } else {
    parts.push(progressSection(review.progress));
    if (state.proposal) parts.push(improvementSection(state.proposal, review.call?.metric?.id));
    if (review.call?.metric) {
      parts.push(...callSections(review, review.call));
    } else if (!state.proposal) {
      parts.push(h("section", { testid: "empty" },
        h("p", {}, "No call left to review in this sample."),
        ...review.why_picked.map((line) => h("p", { class: "muted" }, line))));
    }
  }
  if (state.status) parts.push(h("p", { class: "status", testid: "status", attrs: { role: "status" } }, state.status));
  if (state.error) parts.push(errorSection());
  replace(root, ...parts);
  root.dataset.ready = review ? "true" : "false";
  root.setAttribute("aria-busy", String(state.busy));
  if (review?.call) scrollToCited();
  if (moveFocus && document.hasFocus()) {
    // A new call replaced the one just judged: keyboard users continue from its question, not from <body>.
    root.querySelector<HTMLElement>('[data-testid="question"]')?.focus();
  }
  moveFocus = false;
}

function errorSection(): HTMLElement {
  return h("div", { class: "error", testid: "error", attrs: { role: "alert" } },
    state.error,
    state.retry && !host.readOnly ? h("div", { class: "row" },
      button("Send it as written", "btn-insist", () => {
        const retry = state.retry;
        state.retry = null;
        if (retry) void resend(retry);
      })) : null);
}

async function resend(args: Json): Promise<void> {
  state.busy = true;
  draw();
  receive(await host.call("record_review", args), true);
}

function progressSection(progress: Progress): HTMLElement {
  const share = progress.needed > 0 ? Math.min(1, progress.feedback / progress.needed) : 0;
  const bar = h("div", { class: "bar", testid: "progress-bar",
    attrs: { role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(progress.needed),
      "aria-valuenow": String(progress.feedback), "aria-label": "Feedback toward auto-improve" } }, h("span"));
  (bar.firstChild as HTMLElement).style.width = `${Math.round(share * 100)}%`;
  const auto = progress.auto_improve
    ? `Auto-improve starts by itself at ${progress.needed} feedback items (applied only on your yes).`
    : `Auto-improve needs ${progress.needed} feedback items; it starts when you ask.`;
  return h("section", { testid: "progress-section" },
    h("div", { class: "row spread" },
      h("h1", { testid: "metric-name" }, progress.metric),
      h("span", { testid: "progress" }, `${progress.feedback} / ${progress.needed} feedback`)),
    bar,
    h("p", { class: "muted" },
      `Reviewed ${progress.reviewed}: ${progress.agreed} agreed, ${progress.disagreed} disagreed, ${progress.skipped} skipped. `,
      auto),
    ...progress.check.map((line) => h("p", { class: "warn" }, line)));
}

function improvementSection(proposal: ProposalState, metricId: number | undefined): HTMLElement {
  const box = h("div", { testid: "proposal-view" });
  const given = host.input().metric_id;
  drawProposal(box, proposal, host, proposal.result.metric_id ?? metricId ?? (typeof given === "number" ? given : undefined));
  return h("section", { testid: "improvement" }, h("h2", {}, "Your feedback started auto-improve"), box);
}

function valueClass(value: string | null): string {
  const text = (value ?? "").toUpperCase();
  return text === "FALSE" ? "pill bad" : text === "TRUE" ? "pill good" : "pill";
}

function callSections(review: NextReview, call: CallReview): Child[] {
  const metric = call.metric!;
  const facts = [call.at && `${call.at} UTC`, call.dur && `${call.dur} long`, call.status, call.ended && `ended: ${call.ended}`]
    .filter(Boolean).join(" · ");
  const result = h("section", { testid: "result" },
    h("div", { class: "row spread" },
      h("span", {}, `Call ${call.id}`, h("span", { class: "muted" }, facts ? ` · ${facts}` : "")),
      h("span", { class: valueClass(metric.value), testid: "metric-value" }, metric.value ?? "no result")),
    metric.unreadable ? h("p", { class: "warn" }, metric.unreadable) : null,
    h("h2", {}, "The judge's explanation"),
    h("p", { class: "pre", testid: "metric-explanation" }, metric.explanation),
    metric.moments.length ? h("p", { class: "muted" }, `Cited moments: ${metric.moments.join(", ")}`) : null);
  const others = Object.entries(call.other_metrics);
  const context = others.length || Object.keys(call.metadata).length ? h("details", { testid: "call-context" },
    h("summary", {}, "Other metrics and call details"),
    h("ul", {}, ...others.map(([name, value]) => h("li", {}, `${name}: ${value ?? "no result"}`)),
      ...Object.entries(call.metadata).map(([key, value]) => h("li", { class: "muted" }, `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)))) : null;
  if (context) result.append(context);
  const why = h("section", {},
    h("h2", {}, "Why this call"),
    h("ul", {}, ...review.why_picked.map((line) => h("li", { testid: "why-picked" }, line))));
  return [result, why, transcriptSection(call), verdictSection(review, call)];
}

function citedTimes(call: CallReview, turns: Turn[]): Set<string> {
  // A cited moment marks the turn that is speaking at that time: the last one starting at or before it.
  const seconds = (t: string) => t.split(":").reduce((sum, part) => sum * 60 + Number(part), 0);
  const cited = new Set<string>();
  for (const moment of call.metric?.moments ?? []) {
    const at = seconds(moment);
    let best: Turn | undefined;
    for (const turn of turns) if (seconds(turn.t) <= at) best = turn;
    if (best) cited.add(best.t);
  }
  return cited;
}

function transcriptSection(call: CallReview): HTMLElement {
  const turns = state.transcript ?? call.transcript.turns;
  const cited = citedTimes(call, turns);
  const list = h("ol", { class: "transcript", testid: "transcript", attrs: { "aria-label": "Transcript" } },
    ...turns.map((turn) => {
      const item = h("li", { class: `turn ${turn.who}${cited.has(turn.t) ? " cited" : ""}`, testid: "turn",
        attrs: { "data-t": turn.t, ...(cited.has(turn.t) ? { "data-cited": "true" } : {}) } },
        h("span", { class: "t" }, turn.t), h("span", { class: "who" }, turn.who), h("span", { class: "text" }, turn.text));
      return item;
    }));
  const whole = host.canCall && !state.transcript && call.transcript.shown !== "all"
    && call.transcript.total_turns > turns.length;
  return h("section", {},
    h("div", { class: "row spread" },
      h("h2", {}, "Transcript"),
      h("span", { class: "muted" }, state.transcript ? `all ${turns.length} turns` : `${call.transcript.shown} (${call.transcript.total_turns} turns in all)`)),
    h("p", { class: "muted small" }, call.transcript.note),
    list,
    whole ? h("div", { class: "row" }, button("Show the whole call", "btn-whole-transcript", () => void wholeTranscript(call))) : null);
}

async function wholeTranscript(call: CallReview): Promise<void> {
  const outcome = await host.call("get_call", { call_id: call.id, metric_id: call.metric?.id });
  if (!outcome.ok) {
    state.error = outcome.error;
  } else {
    const transcript = (outcome.data as { transcript?: { turns?: Turn[] } }).transcript;
    state.transcript = transcript?.turns ?? null;
  }
  draw();
}

function scrollToCited(): void {
  const list = root.querySelector<HTMLElement>('[data-testid="transcript"]');
  const first = list?.querySelector<HTMLElement>('[data-cited="true"]');
  if (list && first) list.scrollTop = Math.max(0, first.offsetTop - list.offsetTop - list.clientHeight / 3);
}

function verdictSection(review: NextReview, call: CallReview): HTMLElement {
  if (host.readOnly) {
    return h("section", { testid: "question" }, h("p", {}, review.question),
      h("p", { class: "muted" }, host.readOnlyNote));
  }
  const reason = h("textarea", { testid: "reason", attrs: { id: "reason", rows: "3",
    placeholder: "Why: the moment (e.g. 00:18 or a quote) and the right outcome" },
    on: { input: () => { state.reason = reason.value; } } });
  reason.value = state.reason;
  // The server's question is worded for the assistant (it names record_review's arguments); the card asks the person.
  const value = call.metric?.value ?? "this result";
  const section = h("section", { testid: "verdict" }, h("p", { testid: "question", attrs: { tabindex: "-1" } },
    `Is ${value} right for this call? If not: which value is, and which moment shows it?`));
  const disabled = state.busy ? { disabled: "" } : {};
  if (!state.disagreeing) {
    section.append(
      h("label", {}, "Reason (optional when you agree)", reason),
      h("div", { class: "row" },
        button("Agree", "btn-agree", () => void record({ agree: true, reason: reason.value }), { class: "primary", attrs: { ...disabled, "aria-keyshortcuts": "a" } }),
        button("Disagree…", "btn-disagree", () => { state.disagreeing = true; draw(); }, { attrs: { ...disabled, "aria-keyshortcuts": "d" } }),
        button("Skip (not sure)", "btn-skip", () => void record({ skip: true, reason: reason.value }), { attrs: { ...disabled, "aria-keyshortcuts": "s" } }),
        h("span", { class: "muted" }, h("kbd", {}, "a"), " agree · ", h("kbd", {}, "d"), " disagree · ", h("kbd", {}, "s"), " skip")));
    return section;
  }
  section.append(disagreeForm(call, reason));
  return section;
}

function disagreeForm(call: CallReview, reason: HTMLTextAreaElement): HTMLElement {
  const metric = call.metric!;
  const slot = h("span", {}, h("span", { class: "muted" }, "Loading the metric's values…"));
  let read: () => unknown = () => undefined;
  void definition(metric.id).then((found) => {
    const control = valueControl(found, metric.value);
    read = control.read;
    replace(slot, control.element);
    if (state.disagreeing) control.element.focus();
  });
  const turns = state.transcript ?? call.transcript.turns;
  const cited = citedTimes(call, turns);
  const insert = (t: string) => {
    const prefix = reason.value && !reason.value.endsWith(" ") ? " " : "";
    reason.value += `${prefix}At ${t} `;
    state.reason = reason.value;
    reason.focus();
  };
  const submit = () => void record({ agree: false, expected_value: read(), reason: reason.value });
  // A group, not a <form>: hosts sandbox views without allow-forms, where a form submission never fires.
  const form = h("div", { testid: "disagree-form", attrs: { role: "form", "aria-label": "Disagree" },
    on: {
      keydown: (event) => {
        if (event.key === "Escape") { state.disagreeing = false; draw(); }
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
      },
    } },
    h("label", {}, "The right value", slot),
    h("div", {}, h("span", { class: "muted" }, "Pick the moment that shows it: "),
      h("span", { class: "row", testid: "moment-picker" }, ...turns.map((turn) =>
        button(turn.t, "moment", () => insert(turn.t), { class: cited.has(turn.t) ? "chip cited" : "chip",
          attrs: { "data-t": turn.t, title: `${turn.who}: ${turn.text.slice(0, 80)}` } })))),
    h("label", { attrs: { for: "reason" } }, "Why (a moment and the right outcome)", reason),
    h("div", { class: "row" },
      button("Record disagreement", "btn-submit-disagree", submit, { class: "primary", attrs: state.busy ? { disabled: "" } : {} }),
      button("Cancel", "btn-cancel-disagree", () => { state.disagreeing = false; draw(); }),
      h("span", { class: "muted" }, h("kbd", {}, "Ctrl+Enter"), " record · ", h("kbd", {}, "Esc"), " cancel")));
  return form;
}

interface ValueControl { element: HTMLSelectElement | HTMLInputElement; read: () => unknown }

/** The right value in the metric's own terms: pass/fail/N/A, one of its labels, or a score. */
function valueControl(found: MetricDefinition | null, current: string | null): ValueControl {
  const kind = found?.eval_type ?? "";
  if (kind === "numeric" || kind === "continuous_qualitative") {
    const input = h("input", { testid: "expected-value", attrs: { type: "number", step: "0.5",
      ...(kind === "continuous_qualitative" ? { min: "0", max: "5" } : {}) } });
    return { element: input, read: () => (input.value === "" ? undefined : Number(input.value)) };
  }
  if (kind === "binary" || kind === "enum") {
    const labels = kind === "binary" ? ["TRUE", "FALSE"] : found?.enum_values ?? [];
    const options = [...labels, "N/A"].filter((label) => label.toUpperCase() !== (current ?? "").toUpperCase());
    const select = h("select", { testid: "expected-value" }, ...options.map((label) => h("option", { attrs: { value: label } }, label)));
    return { element: select, read: () => select.value };
  }
  const input = h("input", { testid: "expected-value", attrs: { type: "text", placeholder: "the right value" } });
  return { element: input, read: () => input.value.trim() || undefined };
}

document.addEventListener("keydown", (event) => {
  const target = event.target as HTMLElement | null;
  if (event.ctrlKey || event.metaKey || event.altKey || host.readOnly || state.busy || state.disagreeing) return;
  if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
  const key = event.key.toLowerCase();
  const id = key === "a" ? "btn-agree" : key === "d" ? "btn-disagree" : key === "s" ? "btn-skip" : "";
  const target_button = id ? root.querySelector<HTMLButtonElement>(`[data-testid="${id}"]`) : null;
  if (target_button && !target_button.disabled) {
    event.preventDefault();
    target_button.click();
  }
});

host = startView("review-card", (outcome) => receive(outcome));
draw();
