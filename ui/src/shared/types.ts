// The structuredContent the views read: the server's pydantic models (server/services/*.py), as JSON.

export interface Progress {
  session_id: number;
  metric: string;
  reviewed: number;
  skipped: number;
  agreed: number;
  disagreed: number;
  feedback: number;
  needed: number;
  auto_improve: boolean;
  check: string[];
}

export interface Turn { t: string; who: string; text: string }

export interface CallReview {
  id: number;
  agent_id: number | null;
  at: string | null;
  dur: string | null;
  status: string | null;
  reviewed: boolean;
  ended: string | null;
  metric: {
    id: number;
    name: string;
    value: string | null;
    unreadable: string | null;
    explanation: string;
    moments: string[];
  } | null;
  other_metrics: Record<string, string | null>;
  metadata: Record<string, unknown>;
  transcript: { note: string; turns: Turn[]; shown: string; total_turns: number };
}

export interface NextReview {
  progress: Progress;
  call: CallReview | null;
  why_picked: string[];
  question: string;
}

export interface ScoreView { correct: number | null; total: number | null; score: number | null }

export interface Question { id: string; text: string; options: string[]; call_ids: number[]; context: string | null }

export interface ImprovementResult {
  progress_id: string;
  done: boolean;
  status: string | null;
  message: string;
  metric_id: number | null;
  used: string | null;
  questions: Question[];
  identical: boolean;
  score_dropped: boolean;
  diff: string | null;
  proposed_description: string | null;
  proposed_type: string | null;
  proposed_custom_code: string | null;
  trigger_kind: string | null;
  trigger_change: string | null;
  old_score: ScoreView | null;
  new_score: ScoreView | null;
  summary: string | null;
  unresolved: number;
  unresolved_samples: string[];
}

export interface RecordedReview {
  recorded: string;
  progress: Progress;
  improvement: ImprovementResult | null;
  next: NextReview | null;
}

export interface MetricDefinition { id: number; name: string; eval_type: string; enum_values: string[] | null }

export interface PatchPreview { metric_id: number; name: string; applied: boolean; diff: string; message: string }

export interface Scores { agreement: number; kappa: number; matrix: Record<string, Record<string, number>> }

export interface Change { call_id: number; expected: string; before: string; after: string }
export interface FixedCall extends Change { explanation_before: string; explanation_after: string }

export interface GroupReport {
  calls: number;
  before: Scores;
  after: Scores;
  fixed: FixedCall[];
  regressed: Change[];
  still_wrong: Change[];
  unchanged_right: number;
}

export interface FreshReport {
  calls: number;
  changed: number;
  applicability_flips: number;
  judged: number;
  fixed: FixedCall[];
  regressed: Change[];
  still_wrong: Change[];
  basis: string;
  before: Scores | null;
  after: Scores | null;
}

export interface ChangeToJudge {
  call_id: number;
  before: string;
  after: string;
  applicability_flip: boolean;
  explanation_before: string;
  explanation_after: string;
  remaining: number;
  question: string;
}

export interface RegressionCheck {
  check_id: number;
  metric: string;
  status: "evaluating" | "judging" | "done" | "estimate";
  message: string;
  credits_estimated: number;
  confirmation: string;
  waiting_for: number;
  not_evaluated: number[];
  reviewed: GroupReport | null;
  fresh: FreshReport | null;
  next_change: ChangeToJudge | null;
  regression_groups: { failure_mode: string; call_ids: number[]; proposed: number[] }[];
  verdict: string;
}
