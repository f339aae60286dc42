"""`cekura-labs-mcp serve | sandbox`: the console entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cekura_labs_mcp.server.config import Settings
from cekura_labs_mcp.server.logs import configure_logging, register_secret, scrub
from pydantic import ValidationError

LOOPBACK = "127.0.0.1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cekura-labs-mcp",
        description="MCP server for improving Cekura metrics (the labs cycle). Without CEKURA_API_KEY it "
                    "runs against a built-in demo sandbox.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default=LOOPBACK, help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument("--sandbox", action="store_true", help="use the built-in sandbox even if a key is set")
    serve.add_argument("--read-only", action="store_true",
                       help="offer only tools that change nothing on Cekura (also CEKURA_LABS_READ_ONLY=1)")

    demo = commands.add_parser("demo", help="play a whole labs session against the sandbox, in the terminal")
    demo.add_argument("--seed", type=int, default=7)

    sandbox = commands.add_parser("sandbox", help="serve the Cekura-compatible sandbox API")
    sandbox.add_argument("--host", default=LOOPBACK)
    sandbox.add_argument("--port", type=int, default=8000)
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    sandbox.add_argument("--org-api-key", default=None,
                         help="also accept this organisation-level key (default: any key starting with 'org-' "
                              "when any key is accepted)")
    sandbox.add_argument("--dialect", choices=["documented", "spec"], default="documented",
                         help="documented: answers as Cekura's docs and skills show them (default); spec: the "
                              "spec's schemas taken literally")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"cekura-labs-mcp: invalid configuration: {scrub(problems)}", file=sys.stderr)
        return 2
    # The demo talks to a person on the terminal: only warnings from the machinery underneath.
    configure_logging(settings.log_format, "warning" if args.command == "demo" else settings.log_level)
    register_secret(settings.api_key.get_secret_value() if settings.api_key else None)
    if args.command == "demo":
        from cekura_labs_mcp.server.demo import main as demo_main

        return demo_main(args.seed)
    if args.command == "sandbox":
        from cekura_labs_mcp.server.sandbox import serve_forever

        serve_forever(args.host, args.port, args.seed, args.api_key, dialect=args.dialect,
                      org_api_key=args.org_api_key)
        return 0
    return _serve(settings, args)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from cekura_labs_mcp.server.app import build_server

    server = build_server(settings, use_sandbox=args.sandbox, read_only=args.read_only, check_key=True)
    if args.transport == "stdio":
        server.run("stdio")
        return 0
    from cekura_labs_mcp.server.remote import run_http

    return run_http(server, settings, host=args.host, port=args.port)


if __name__ == "__main__":
    raise SystemExit(main())
