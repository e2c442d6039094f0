#!/usr/bin/env bash
# Make sure a PostgreSQL server (initdb, postgres) and psql exist, for test/postgres-fencing.test.ts
# (the fencing-token recipe of the README, checked against a real database).
#
# Debian's `postgresql` package puts the server in /usr/lib/postgresql/<major>/bin. If none is
# there and we are root with apt-get, it is installed (one `apt-get update`, then the install).
# Otherwise we fail and say what to install; the test then skips with that reason.
# Env: PG_BIN (a directory with initdb, postgres and psql) overrides the search.
#
# On success prints "ensure-postgres: PostgreSQL <version> in <dir>"; exits non-zero otherwise.
set -euo pipefail

say() { printf 'ensure-postgres: %s\n' "$*"; }
die() { printf 'ensure-postgres: ERROR: %s\n' "$*" >&2; exit 1; }

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" && -x "$PG_BIN/psql" ]] && printf '%s' "$PG_BIN"
    return 0
  fi
  local dir
  # Highest major version first.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [[ -x "$dir/initdb" && -x "$dir/postgres" && -x "$dir/psql" ]]; then printf '%s' "$dir"; return 0; fi
  done
}

BIN="$(find_bin)"
if [[ -z "$BIN" ]]; then
  [[ -z "${PG_BIN:-}" ]] || die "PG_BIN=$PG_BIN does not hold initdb, postgres and psql"
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL not found: installing the Debian package postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq postgresql >/dev/null 2>&1 || die "apt-get install postgresql failed"
    BIN="$(find_bin)"
  fi
fi
[[ -n "$BIN" ]] || die "no PostgreSQL server found (looked in /usr/lib/postgresql/*/bin); install the Debian package postgresql or set PG_BIN"
# The server refuses to run as root: the harness runs it as the package's postgres user.
if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
  die "running as root but there is no 'postgres' user to run the server as (the postgresql package creates it)"
fi
say "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') in $BIN"
