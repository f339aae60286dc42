"""Who is reviewing: each bearer token is one reviewer, named in a reviewers file.

The file (`CEKURA_LABS_REVIEWERS_FILE`) is JSON, reviewer name → SHA-256 hex digest of that reviewer's token:

    {"reviewers": {"ana": "9f86d0…", "ben": "60303a…"}}

It never holds a token: `cekura-labs-mcp reviewer add NAME` makes a token, stores its digest and prints the token
once, for the reviewer to keep. A presented token is hashed and compared with every digest in constant time. The
file is read again when it changes, so adding or removing a reviewer needs no restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cekura_labs_mcp.server.errors import LabsError
from cekura_labs_mcp.server.logs import get_logger

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
TOKEN_BYTES = 32
log = get_logger("reviewers")


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "clr_" + secrets.token_urlsafe(TOKEN_BYTES)


def _refuse(path: Path, problem: str) -> LabsError:
    return LabsError(f"The reviewers file {path} {problem}.",
                     'It must be JSON: {"reviewers": {"<name>": "<sha256 hex of the token>"}}; '
                     "add reviewers with `cekura-labs-mcp reviewer add NAME`.")


def read_reviewers(path: Path) -> dict[str, str]:
    """name → digest, checked: a malformed file is refused as a whole (one clear line), never half-read."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"reviewers": {}}
    except (OSError, ValueError) as exc:
        raise _refuse(path, f"cannot be read ({type(exc).__name__})") from None
    listed = raw.get("reviewers") if isinstance(raw, dict) else None
    if not isinstance(listed, dict):
        raise _refuse(path, 'has no "reviewers" object')
    found: dict[str, str] = {}
    for name, digest in listed.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise _refuse(path, f"names a reviewer {str(name)[:40]!r} (letters, digits, . _ @ -, at most 64)")
        if not isinstance(digest, str) or not DIGEST.match(digest):
            raise _refuse(path, f"gives reviewer {name!r} no SHA-256 hex digest")
        found[name] = digest
    return found


def write_reviewers(path: Path, reviewers: dict[str, str]) -> None:
    """Written whole to a private temporary file, then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"reviewers": dict(sorted(reviewers.items()))}, out, indent=2)
        out.write("\n")
    os.replace(temporary, path)


def add_reviewer(path: Path, name: str, *, replace: bool = False) -> str:
    """A new token for `name` (its digest stored); the token is returned once and kept nowhere."""
    if not NAME.match(name):
        raise LabsError(f"Reviewer name {name[:40]!r} is not allowed.",
                        "Use letters, digits, '.', '_', '@' or '-' (at most 64), starting with a letter or digit.")
    reviewers = read_reviewers(path)
    if name in reviewers and not replace:
        raise LabsError(f"Reviewer {name!r} already exists in {path}.",
                        "Pass --replace to give them a new token (the old one stops working).")
    token = new_token()
    reviewers[name] = digest_of(token)
    write_reviewers(path, reviewers)
    return token


def remove_reviewer(path: Path, name: str) -> bool:
    reviewers = read_reviewers(path)
    if reviewers.pop(name, None) is None:
        return False
    write_reviewers(path, reviewers)
    return True


@dataclass(frozen=True)
class _Loaded:
    stamp: bytes  # the file's content: a revocation may keep its size and (coarse, per kernel tick) mtime
    digests: tuple[tuple[bytes, str], ...]


class ReviewerDirectory:
    """Names the reviewer behind a presented token, from the reviewers file (re-read when it changes) and from
    plain shared tokens (`CEKURA_LABS_HTTP_TOKEN`, named by a fingerprint, as before)."""

    def __init__(self, path: Path | None, plain_tokens: list[str] | None = None) -> None:
        self._path = path
        self._plain = [(digest_of(token).encode(), "bearer:" + digest_of(token)[:12]) for token in plain_tokens or []]
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        if path is not None:
            self._current()  # a malformed file stops the server at start, not at the first request

    @property
    def configured(self) -> bool:
        return self._path is not None or bool(self._plain)

    def names(self) -> list[str]:
        return sorted(name for _digest, name in self._current())

    def reviewer_of(self, token: str) -> str | None:
        presented = digest_of(token).encode()
        found = None
        for digest, name in (*self._current(), *self._plain):  # compare with every digest: timing tells nothing
            if hmac.compare_digest(presented, digest):
                found = name
        return found

    def _current(self) -> tuple[tuple[bytes, str], ...]:
        if self._path is None:
            return ()
        # Compared by content, not (mtime, size): `reviewer add NAME --replace` writes a file of the same size, and
        # two writes within one kernel tick share an mtime, which would keep a revoked token working. The file
        # is a few hundred bytes; reading it costs microseconds a request.
        try:
            stamp = self._path.read_bytes()
        except OSError:
            stamp = b""
        with self._lock:
            if self._loaded is None or self._loaded.stamp != stamp:
                try:
                    listed = read_reviewers(self._path)
                except LabsError as exc:
                    if self._loaded is None:
                        raise
                    # A file broken by a hand edit while serving: keep the reviewers read last, say so once.
                    log.warning("reviewers_file_unreadable", problem=exc.message)
                    self._loaded = _Loaded(stamp, self._loaded.digests)
                    return self._loaded.digests
                self._loaded = _Loaded(stamp, tuple((d.encode(), name) for name, d in listed.items()))
            return self._loaded.digests
