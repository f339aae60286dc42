#!/usr/bin/env bash
# What the test suite needs from the system besides Python: bubblewrap (custom code runs inside it and the
# escape tests check every escape against it), a C compiler (the native-module escape test builds a .so),
# Chromium (the MCP Apps views are tested in headless Chromium, driven by Playwright with this system browser:
# Playwright's own browser download cannot work on a closed network) and PostgreSQL's server binaries (initdb,
# pg_ctl: the ledger's tests start a throwaway cluster of their own, see tests/pg_cluster.py; Debian's package
# also sets up a default cluster, which the tests do not use).
# Installs only what is missing, and only where it can (root with apt-get); elsewhere it says what to install.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
{ compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1; } || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "+ apt-get install ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]}); the tests that need them fail without" >&2
fi
