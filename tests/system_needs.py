"""One rule for the system parts some tests need (Node.js, Chromium, PostgreSQL): where a part is missing the
tests skip and say why, unless its CEKURA_LABS_REQUIRE_* variable says they must run here (CI sets each to 1),
in which case they fail."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import NoReturn

import pytest

REQUIRE_NODE = "CEKURA_LABS_REQUIRE_NODE"


def required(variable: str) -> bool:
    return os.environ.get(variable, "") not in ("", "0")


def missing(reason: str, variable: str) -> NoReturn:
    if required(variable):
        pytest.fail(f"{reason}; {variable} is set: it must run here")
    pytest.skip(f"{reason}; set {variable}=1 to make this a failure (CI does)")


def node_problem() -> str | None:
    absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if absent:
        return f"{' and '.join(absent)} not found"
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        return f"node {version or '(no version)'} is older than 20"
    return None


def require_node(needed_by: str) -> None:
    """`needed_by` names what needs Node, as the start of a sentence ("the install checks")."""
    problem = node_problem()
    if problem is not None:
        missing(f"{problem}: {needed_by} need Node.js 20+ and npm (Debian: apt-get install nodejs npm)", REQUIRE_NODE)
