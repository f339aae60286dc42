"""An embedded, spec-conformant Cekura-compatible API with a seeded demo data set.

`build_app` gives the Starlette app; `SandboxServer` runs it on a free loopback port in a background
thread (for the MCP server and the tests); `serve_forever` runs it in the foreground for the
`cekura-labs-mcp sandbox` command. The judge and the Labs optimizer behind it are deterministic
stand-ins that read text only (`judge`, `optimizer`; the library entry point is `standin`; the prompt
structure they understand is in docs/sandbox-judge.md).
"""

from __future__ import annotations

from .app import build_app
from .server import SandboxServer, serve_forever

__all__ = ["SandboxServer", "build_app", "serve_forever"]
