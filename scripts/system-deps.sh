#!/usr/bin/env bash
# Install the Debian packages the test suite needs, where this machine can:
# golang-go and golang-golang-x-mod-dev for the Go interoperability test, postgresql for the PostgreSQL store
# tests, chromium for the dashboard browser tests.
set -euo pipefail
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/golang.org/x/mod/sumdb ] || need+=(golang-golang-x-mod-dev)
# PostgreSQL server binaries (initdb, pg_ctl) for the PostgreSQL store tests (tests/pg_fixture.py)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the dashboard's browser tests (Playwright)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (for the test suite: Go interop, PostgreSQL store, browser tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "note: cannot install ${need[*]} here (not root or no apt-get); the Go interop test will say so" >&2
fi
