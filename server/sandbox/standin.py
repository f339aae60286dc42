"""The sandbox's stand-in judge and Labs optimizer, as a small library (for benchmarks and tests).

    from cekura_labs_mcp.server.sandbox.standin import LabEntry, judge, optimize

    verdict = judge(description, "binary", [], call)            # Verdict(value, explanation)
    proposal = optimize(description, "binary", [], [LabEntry(call, True, "At 00:14 the agent ...")])
    proposal.description, proposal.changed, proposal.old_score, proposal.new_score

Both read text only: `judge` the metric's description (its documented sections and `{{variables}}`,
see docs/sandbox-judge.md) and the call; `optimize` the description and each Lab entry's expected
value and note, scoring old and new descriptions with `judge`. Neither reads the sandbox's hidden truth.
Calls come from a data set: `data.generate(seed, anchor, engine.Evaluator(runner.InProcessRunner()))`.
"""

from __future__ import annotations

from .judge import PromptError, Verdict, judge, safe_judge
from .optimizer import Clause, LabEntry, Proposal, Score, optimize, reason_of

__all__ = ["Clause", "LabEntry", "PromptError", "Proposal", "Score", "Verdict", "judge", "optimize", "reason_of",
           "safe_judge"]
