"""Entry point of the Claude Desktop bundle (copied to `server/run.py` by mcpb/build.py).

Runs `cekura-labs-mcp serve` from the packages vendored in `server/lib` beside this file, so the
bundle needs nothing but a Python interpreter of the version it was built for."""

from __future__ import annotations

import os
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent / "lib"
PASSED_THROUGH = ("CEKURA_API_KEY", "CEKURA_API_URL")


def _drop_unset_options() -> None:
    # An optional user_config field left empty may arrive as "" or as the unexpanded placeholder;
    # either way it means "not set": no key runs the demo sandbox, no URL uses the default.
    for name in PASSED_THROUGH:
        value = os.environ.get(name)
        if value is not None and (not value.strip() or value.strip().startswith("${")):
            del os.environ[name]


def main() -> int:
    if str(LIB) not in sys.path:
        sys.path.insert(0, str(LIB))
    _drop_unset_options()
    from cekura_labs_mcp.server.cli import main as cli_main

    return int(cli_main(["serve", *sys.argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main())
