// The proposal view: an auto-improve proposal (poll_progress / answer_improvement_question) to apply or dismiss.
import "../shared/style.css";
import { h, replace } from "../shared/dom";
import { startView, type ViewHost } from "../shared/host";
import { drawProposal, type ProposalState } from "../shared/proposal";
import type { ImprovementResult } from "../shared/types";

const root = document.getElementById("root") as HTMLElement;
let state: ProposalState | null = null;

function metricId(host: ViewHost, result: ImprovementResult): number | undefined {
  const given = host.input().metric_id;
  return result.metric_id ?? (typeof given === "number" ? given : undefined);
}

startView("proposal", (outcome, host) => {
  if (!outcome.ok) {
    if (state) {
      state.error = outcome.error;
      drawProposal(root, state, host, metricId(host, state.result));
    } else {
      replace(root, h("div", { class: "error", testid: "error", attrs: { role: "alert" } }, outcome.error));
    }
    return;
  }
  const result = outcome.data as unknown as ImprovementResult;
  state = { result, decided: null, error: "", busy: false, acceptDrop: false };
  drawProposal(root, state, host, metricId(host, result));
});
