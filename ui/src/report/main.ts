// The report view: a regression check (validate_metric / judge_change) before and after a change, and the
// changed fresh results for the person to judge one at a time.
import "../shared/style.css";
import { button, h, leadingId, percent, replace, signed, type Child } from "../shared/dom";
import { startView, type Json, type Outcome, type ViewHost } from "../shared/host";
import type { CallReview, Change, ChangeToJudge, FixedCall, MetricDefinition, RegressionCheck, Scores } from "../shared/types";

const root = document.getElementById("root") as HTMLElement;

interface State {
  check: RegressionCheck | null;
  error: string;
  busy: boolean;
  wrong: boolean;
  note: string;
  detail: CallReview | null;
  definition: MetricDefinition | null;
}

const state: State = { check: null, error: "", busy: false, wrong: false, note: "", detail: null, definition: null };
let host: ViewHost;

function metricId(): number | undefined {
  const given = host.input().metric_id;
  return typeof given === "number" ? given : leadingId(state.check?.metric);
}

function receive(outcome: Outcome): void {
  state.busy = false;
  if (!outcome.ok) {
    state.error = outcome.error;
  } else {
    state.error = "";
    state.check = outcome.data as unknown as RegressionCheck;
    state.wrong = false;
    state.note = "";
    const id = metricId();
    if (!state.definition && id !== undefined) {
      void host.call("get_metric", { metric_id: id }).then((o) => {
        if (o.ok) { state.definition = o.data as unknown as MetricDefinition; draw(); }
      });
    }
  }
  draw();
}

async function call(tool: string, args: Json): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  state.error = "";
  draw();
  const outcome = await host.call(tool, args);
  receive(outcome);
  if (outcome.ok && tool === "judge_change") {
    host.tell(`In the report view the person judged call ${String(args.call_id)}: `
      + `${args.new_label_correct ? "the new label is right" : `wrong, the right value is ${String(args.right_value)}`}. `
      + (state.check?.verdict ?? ""));
  }
}

async function showCall(callId: number): Promise<void> {
  const outcome = await host.call("get_call", { call_id: callId, metric_id: metricId() });
  if (outcome.ok) state.detail = outcome.data as unknown as CallReview;
  else state.error = outcome.error;
  draw();
  root.querySelector<HTMLElement>('[data-testid="call-detail"]')?.focus();
}

// ---- drawing ---------------------------------------------------------------------------------

function draw(): void {
  const check = state.check;
  const parts: Child[] = [];
  if (!check) {
    parts.push(h("p", { class: "muted" }, "Waiting for the regression check…"));
  } else {
    parts.push(header(check));
    if (check.next_change) parts.push(changeSection(check, check.next_change));
    if (check.reviewed) parts.push(groupSection("reviewed", `Reviewed calls (${check.reviewed.calls})`, check.reviewed.before,
      check.reviewed.after, check.reviewed.fixed, check.reviewed.regressed, check.reviewed.still_wrong,
      `${check.reviewed.unchanged_right} unchanged and right.`));
    if (check.fresh) parts.push(groupSection("fresh", `Fresh sample (${check.fresh.calls} calls outside the Lab)`,
      check.fresh.before, check.fresh.after, check.fresh.fixed, check.fresh.regressed, check.fresh.still_wrong,
      `${check.fresh.changed} changed (${check.fresh.applicability_flips} N/A flips), ${check.fresh.judged} judged. ${check.fresh.basis}`));
    if (check.regression_groups.length) parts.push(regressionGroups(check));
  }
  if (state.detail) parts.push(callDetail(state.detail));
  if (state.error) parts.push(h("div", { class: "error", testid: "error", attrs: { role: "alert" } }, state.error));
  replace(root, ...parts);
  root.dataset.ready = check ? "true" : "false";
  root.setAttribute("aria-busy", String(state.busy));
}

function header(check: RegressionCheck): HTMLElement {
  const id = metricId();
  const agent = host.input().agent_id;
  return h("section", {},
    h("div", { class: "row spread" },
      h("h1", {}, `Regression check ${check.check_id}: ${check.metric}`),
      h("span", { class: check.status === "done" ? "pill good" : "pill", testid: "report-status" }, check.status)),
    check.verdict ? h("p", { testid: "verdict" }, check.verdict) : null,
    h("p", { class: "muted", testid: "message" }, check.message),
    check.status === "evaluating" ? h("p", {}, `Waiting for ${check.waiting_for} result(s).`) : null,
    check.not_evaluated.length ? h("p", { class: "warn" }, `Not evaluated: ${check.not_evaluated.join(", ")}`) : null,
    check.status === "evaluating" && typeof agent === "number" && id !== undefined && !host.readOnly
      ? h("div", { class: "row" }, button("Check again (nothing is spent again)", "btn-check-again",
        () => void call("validate_metric", { agent_id: agent, metric_id: id, check_id: check.check_id }), busy()))
      : null);
}

function busy() {
  return { attrs: state.busy ? { disabled: "" } : {} };
}

function change(before: number, after: number, format: (n: number) => string): string {
  return `${format(before)} → ${format(after)}`;
}

function groupSection(key: string, title: string, before: Scores | null, after: Scores | null, fixed: FixedCall[],
  regressed: Change[], still: Change[], note: string): HTMLElement {
  const scores = before && after ? [
    h("p", { testid: "agreement" }, "Agreement ", h("b", {}, change(before.agreement, after.agreement, percent)),
      h("span", { class: delta(after.agreement - before.agreement) }, ` (${signed((after.agreement - before.agreement) * 100, 0)} pts)`)),
    h("p", { testid: "kappa" }, "Kappa ", h("b", {}, change(before.kappa, after.kappa, (n) => signed(n))),
      h("span", { class: delta(after.kappa - before.kappa) }, ` (${signed(after.kappa - before.kappa)})`)),
    h("div", { class: "row matrices" }, matrix("Before", "matrix-before", before, after), matrix("After", "matrix-after", after, before)),
  ] : [h("p", { class: "muted" }, "Scores come once every change is judged.")];
  return h("section", { testid: `group-${key}` }, h("h2", {}, title), ...scores,
    callList("Fixed", "fixed-list", fixed), callList("Regressed", "regressed-list", regressed),
    callList("Still wrong", "still-wrong-list", still), h("p", { class: "muted" }, note));
}

function delta(value: number): string {
  return value > 0.0005 ? "good-text" : value < -0.0005 ? "bad-text" : "muted";
}

function matrix(title: string, testid: string, scores: Scores, other: Scores): HTMLElement {
  // The same axes before and after, so the two tables read side by side.
  const labels = [...new Set([...Object.keys(scores.matrix), ...Object.keys(other.matrix),
    ...Object.values(scores.matrix).flatMap(Object.keys), ...Object.values(other.matrix).flatMap(Object.keys)])].sort();
  return h("figure", {},
    h("figcaption", {}, title, h("span", { class: "muted" }, " (rows: the person, columns: the metric)")),
    h("table", { testid },
      h("thead", {}, h("tr", {}, h("th", {}, ""), ...labels.map((label) => h("th", { attrs: { scope: "col" } }, label)))),
      h("tbody", {}, ...labels.map((row) => h("tr", {}, h("th", { attrs: { scope: "row" } }, row),
        ...labels.map((col) => h("td", { class: row === col ? "diag" : (scores.matrix[row]?.[col] ?? 0) > 0 ? "off" : "",
          attrs: { "data-row": row, "data-col": col } }, String(scores.matrix[row]?.[col] ?? 0))))))));
}

function callList(title: string, testid: string, calls: Change[]): HTMLElement | null {
  return h("div", { testid },
    h("h3", {}, `${title} (${calls.length})`),
    calls.length ? h("ul", {}, ...calls.map((c) => h("li", {},
      callLink(c.call_id), ` ${c.before} → ${c.after} (the person: ${c.expected})`,
      "explanation_after" in c ? explanations(c as FixedCall) : null))) : null);
}

function callLink(callId: number): HTMLElement {
  if (!host.canCall) return h("span", { testid: "call-link", attrs: { "data-call-id": String(callId) } }, `call ${callId}`);
  return h("button", { class: "linkish", testid: "call-link", attrs: { type: "button", "data-call-id": String(callId) },
    on: { click: () => void showCall(callId) } }, `call ${callId}`);
}

function explanations(c: { explanation_before: string; explanation_after: string }): HTMLElement {
  return h("details", {}, h("summary", {}, "explanations before / after"),
    h("div", { class: "columns" }, h("p", { class: "pre" }, c.explanation_before), h("p", { class: "pre" }, c.explanation_after)));
}

function rightValueControl(next: ChangeToJudge): { element: HTMLSelectElement | HTMLInputElement; read: () => unknown } {
  const kind = state.definition?.eval_type;
  if (kind === "binary" || kind === "enum") {
    const labels = kind === "binary" ? ["TRUE", "FALSE"] : state.definition?.enum_values ?? [];
    const options = [...labels, "N/A"].filter((label) => label.toUpperCase() !== next.after.toUpperCase());
    const select = h("select", { testid: "right-value" }, ...options.map((label) =>
      h("option", { attrs: { value: label, ...(label === next.before ? { selected: "" } : {}) } }, label)));
    return { element: select, read: () => select.value };
  }
  const input = h("input", { testid: "right-value", attrs: { type: kind === "numeric" || kind === "continuous_qualitative" ? "number" : "text", value: next.before } });
  return { element: input, read: () => (input.type === "number" ? Number(input.value) : input.value.trim()) };
}

function changeSection(check: RegressionCheck, next: ChangeToJudge): HTMLElement {
  const section = h("section", { testid: "next-change" },
    h("h2", {}, `Judge this change (${next.remaining} more after it)`),
    h("p", {}, callLink(next.call_id), ` production said ${next.before}; the changed metric says ${next.after}.`,
      next.applicability_flip ? h("span", { class: "pill" }, " N/A flip") : null),
    h("div", { class: "columns" },
      h("div", {}, h("h3", {}, "Before"), h("p", { class: "pre" }, next.explanation_before)),
      h("div", {}, h("h3", {}, "After"), h("p", { class: "pre" }, next.explanation_after))),
    h("p", {}, next.question));
  if (host.readOnly) {
    section.append(h("p", { class: "muted" }, host.readOnlyNote));
    return section;
  }
  if (!state.wrong) {
    section.append(h("div", { class: "row" },
      button("The new label is right", "btn-change-right", () => void call("judge_change",
        { check_id: check.check_id, call_id: next.call_id, new_label_correct: true }), { class: "primary", ...busy() }),
      button("It is wrong…", "btn-change-wrong", () => { state.wrong = true; draw(); }, busy())));
    return section;
  }
  const control = rightValueControl(next);
  const note = h("textarea", { testid: "change-note", attrs: { rows: "2", placeholder: "Why: a moment or a quote" },
    on: { input: () => { state.note = note.value; } } });
  note.value = state.note;
  const submit = () => void call("judge_change", { check_id: check.check_id, call_id: next.call_id,
    new_label_correct: false, right_value: control.read(), note: note.value });
  // A group, not a <form>: hosts sandbox views without allow-forms, where a form submission never fires.
  section.append(h("div", { testid: "change-form", attrs: { role: "form", "aria-label": "The new label is wrong" }, on: {
    keydown: (event) => {
      if (event.key === "Escape") { state.wrong = false; draw(); }
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
    } } },
    h("label", {}, "The right label", control.element),
    h("label", {}, "Why", note),
    h("div", { class: "row" },
      button("Record", "btn-submit-change", submit, { class: "primary", ...busy() }),
      button("Cancel", "btn-cancel-change", () => { state.wrong = false; draw(); }))));
  queueMicrotask(() => control.element.focus());
  return section;
}

function regressionGroups(check: RegressionCheck): HTMLElement {
  return h("section", { testid: "regression-groups" }, h("h2", {}, "Rejected regressions by failure mode"),
    h("ul", {}, ...check.regression_groups.map((group) => h("li", {},
      h("p", { class: "pre" }, group.failure_mode),
      h("p", {}, "Calls: ", ...group.call_ids.flatMap((id) => [callLink(id), " "]),
        h("span", { class: "muted" }, `(proposed for the Lab: ${group.proposed.join(", ") || "none"})`))))));
}

function callDetail(detail: CallReview): HTMLElement {
  return h("section", { testid: "call-detail", attrs: { tabindex: "-1", "aria-label": `Call ${detail.id}` } },
    h("div", { class: "row spread" }, h("h2", {}, `Call ${detail.id}`),
      button("Close", "btn-close-detail", () => { state.detail = null; draw(); })),
    detail.metric ? h("p", {}, h("b", {}, detail.metric.value ?? "no result"), " ", h("span", { class: "pre" }, detail.metric.explanation)) : null,
    h("p", { class: "muted small" }, detail.transcript.note),
    h("ol", { class: "transcript" }, ...detail.transcript.turns.map((turn) => h("li", { class: `turn ${turn.who}`, testid: "turn",
      attrs: { "data-t": turn.t } }, h("span", { class: "t" }, turn.t), h("span", { class: "who" }, turn.who), h("span", { class: "text" }, turn.text)))));
}

host = startView("report", (outcome) => receive(outcome));
draw();
