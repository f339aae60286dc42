"""Which Cekura the sandbox plays.

- `documented` (the default of `cekura-labs-mcp sandbox`, `serve --sandbox` and `demo`): what Cekura's own
  docs and skills show real answers to be — metric results with `score` 5/0/null and no `value` except on
  enum metrics, legacy result types, N/A as `extra.trigger_failed`, evaluations that land only after a few
  reads, an asynchronous judge endpoint, auto-improve runs that can pause with a question, and the
  documented `metric_evaluations.*` / `same_row` filters.
- `spec`: the spec's component schemas taken literally (every result has `value`, evaluations and the
  judge answer at once, the `metric_value` filter): the sandbox as it was before issue 10.
"""

from __future__ import annotations

import os
from typing import Literal

Dialect = Literal["documented", "spec"]
DOCUMENTED: Dialect = "documented"
SPEC: Dialect = "spec"
DIALECTS: tuple[Dialect, ...] = (DOCUMENTED, SPEC)
ENV_VAR = "CEKURA_LABS_SANDBOX_DIALECT"
# The dialect of the sandbox embedded by `serve --sandbox`, `demo` and the tests' shared sandbox when the
# variable is unset (the `sandbox` command has its own `--dialect`, `documented` by default too): what Cekura's
# docs show real answers to be.
EMBEDDED_DEFAULT: Dialect = DOCUMENTED


def parse_dialect(raw: str) -> Dialect:
    text = raw.strip().lower()
    for dialect in DIALECTS:
        if text == dialect:
            return dialect
    raise ValueError(f"unknown sandbox dialect {raw!r}: use one of {', '.join(DIALECTS)}")


def default_dialect() -> Dialect:
    """The embedded sandbox's dialect: `CEKURA_LABS_SANDBOX_DIALECT`, else `EMBEDDED_DEFAULT`."""
    raw = os.environ.get(ENV_VAR, "")
    return parse_dialect(raw) if raw.strip() else EMBEDDED_DEFAULT
