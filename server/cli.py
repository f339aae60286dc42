"""`cekura-labs-mcp serve | sandbox`: the console entry point."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cekura_labs_mcp.server.gc_pause import collector_paused

if TYPE_CHECKING:
    from cekura_labs_mcp.server.config import Settings

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
    serve.add_argument("--workers", type=int, default=1,
                       help="HTTP only: this many server processes on one port and one ledger (stateless)")
    serve.add_argument("--stateless", action="store_true",
                       help="HTTP only: keep no MCP session between requests, so several processes (behind a load "
                            "balancer, on one CEKURA_LABS_DATABASE_URL) can answer any request")

    reviewer = commands.add_parser("reviewer", help="manage the reviewers of a team deployment "
                                                    "(CEKURA_LABS_REVIEWERS_FILE)")
    reviewer.add_argument("action", choices=["add", "remove", "list"])
    reviewer.add_argument("name", nargs="?", help="the reviewer's name (add, remove)")
    reviewer.add_argument("--file", default=None, help="the reviewers file (default: CEKURA_LABS_REVIEWERS_FILE)")
    reviewer.add_argument("--replace", action="store_true", help="add: give an existing reviewer a new token")

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
    # Everything up to the server's (or the command's) run is imported and built with the collector paused
    # (server/gc_pause.py); an admin's `reviewer` command is short and may run inside another process (the tests).
    with collector_paused(freeze=args.command != "reviewer"):
        run = _prepare(args)
    return run()


def _prepare(args: argparse.Namespace) -> Callable[[], int]:
    """What the command runs, with the settings read, logging configured and the server built."""
    from cekura_labs_mcp.server.config import Settings
    from cekura_labs_mcp.server.logs import configure_logging, register_secret, scrub
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"cekura-labs-mcp: invalid configuration: {scrub(problems)}", file=sys.stderr)
        return lambda: 2
    if args.command == "reviewer":  # an admin's command: it prints a token once and logs nothing
        return functools.partial(_reviewer, settings, args)
    # The demo talks to a person on the terminal: only warnings from the machinery underneath.
    configure_logging(settings.log_format, "warning" if args.command == "demo" else settings.log_level)
    register_secret(settings.api_key.get_secret_value() if settings.api_key else None)
    if args.command == "demo":
        from cekura_labs_mcp.server.demo import main as demo_main

        return functools.partial(demo_main, args.seed)
    if args.command == "sandbox":
        from cekura_labs_mcp.server.sandbox import serve_forever

        def sandbox() -> int:
            serve_forever(args.host, args.port, args.seed, args.api_key, dialect=args.dialect,
                          org_api_key=args.org_api_key)
            return 0

        return sandbox
    return _prepare_serve(settings, args)


def _prepare_serve(settings: Settings, args: argparse.Namespace) -> Callable[[], int]:
    if args.transport == "http" and args.workers > 1:
        # The parent only starts the workers (and maybe one sandbox): the MCP server is built in each worker.
        from cekura_labs_mcp.server.remote import HttpOptions, prepare_http_workers

        return prepare_http_workers(settings, HttpOptions(host=args.host, port=args.port, workers=args.workers,
                                                          sandbox=args.sandbox, read_only=args.read_only))
    from cekura_labs_mcp.server.app import build_server

    server = build_server(settings, use_sandbox=args.sandbox, read_only=args.read_only, check_key=True)
    if args.transport == "stdio":
        def stdio() -> int:
            server.run("stdio")
            return 0

        return stdio
    from cekura_labs_mcp.server.remote import run_http

    return functools.partial(run_http, server, settings, host=args.host, port=args.port, stateless=args.stateless)


def _reviewer(settings: Settings, args: argparse.Namespace) -> int:
    """Adds (printing the token once: only its digest is stored), removes or lists reviewers."""
    from cekura_labs_mcp.server.errors import LabsError
    from cekura_labs_mcp.server.reviewers import add_reviewer, read_reviewers, remove_reviewer

    path = Path(args.file) if args.file else settings.reviewers_file
    if path is None:
        print("cekura-labs-mcp: no reviewers file: pass --file PATH or set CEKURA_LABS_REVIEWERS_FILE.",
              file=sys.stderr)
        return 2
    if args.action != "list" and not args.name:
        print(f"cekura-labs-mcp: reviewer {args.action} needs the reviewer's NAME.", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            for name in read_reviewers(path):
                print(name)
            return 0
        if args.action == "remove":
            if not remove_reviewer(path, args.name):
                print(f"cekura-labs-mcp: no reviewer {args.name!r} in {path}.", file=sys.stderr)
                return 1
            print(f"Removed reviewer {args.name!r}: their token no longer opens the server.", file=sys.stderr)
            return 0
        token = add_reviewer(path, args.name, replace=args.replace)
    except LabsError as exc:
        print(f"cekura-labs-mcp: {exc.for_assistant()}", file=sys.stderr)
        return 2
    print(f"Reviewer {args.name!r} added to {path}. Their bearer token (shown once, not stored; hand it to them "
          "privately):", file=sys.stderr)
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
