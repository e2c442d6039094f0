#!/usr/bin/env bash
# Make sure the etcd server and etcdctl binaries the test harness needs are present.
#
# Resolution order (the same as test/harness/etcd.ts uses):
#   1. $ETCD_BIN: the etcd binary itself, or a directory holding both etcd and etcdctl
#   2. PATH
#   3. /usr/bin
# If nothing is found, ETCD_BIN is unset, we are root and apt-get exists (Debian/Ubuntu),
# the Debian packages etcd-server + etcd-client are installed. Otherwise we fail and say
# exactly what is missing and how to get it.
# Also makes sure the openssl CLI exists (the harness's TLS option issues throwaway
# certificates with it); without it only a warning, since only TLS tests need it.
#
# Set ENSURE_ETCD_NO_INSTALL=1 to never install anything (fail with the instructions instead);
# the script's own tests use it, so they can never trigger apt-get.
#
# Every failure says what failed: the command, its exit code and its output. (Before, a failing
# `etcd --version` made `set -e` end the script without a word.)
#
# Fast and silent-ish when already installed: prints only the resolved paths and versions.
set -euo pipefail

# Anything that still fails unexpectedly names itself instead of exiting silently.
trap 'rc=$?; printf "ensure-etcd: ERROR: command failed with exit code %s (line %s): %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

MIN_MAJOR=3
MIN_MINOR=4
APT_PACKAGES=(etcd-server etcd-client)

say() { printf 'ensure-etcd: %s\n' "$*"; }
die() { printf 'ensure-etcd: ERROR: %s\n' "$*" >&2; exit 1; }

ETCD=""
ETCDCTL=""

# Fill ETCD/ETCDCTL from the rules above; leaves them empty when not found.
resolve() {
  ETCD=""
  ETCDCTL=""
  if [[ -n "${ETCD_BIN:-}" ]]; then
    if [[ -d "$ETCD_BIN" ]]; then
      ETCD="$ETCD_BIN/etcd"
      ETCDCTL="$ETCD_BIN/etcdctl"
    else
      ETCD="$ETCD_BIN"
      ETCDCTL="$(dirname -- "$ETCD_BIN")/etcdctl"
    fi
    [[ -x "$ETCD" ]] || ETCD=""
    [[ -x "$ETCDCTL" ]] || ETCDCTL=""
    return 0
  fi
  ETCD="$(command -v etcd || true)"
  ETCDCTL="$(command -v etcdctl || true)"
  if [[ -z "$ETCD" && -x /usr/bin/etcd ]]; then ETCD=/usr/bin/etcd; fi
  if [[ -z "$ETCDCTL" && -x /usr/bin/etcdctl ]]; then ETCDCTL=/usr/bin/etcdctl; fi
}

missing_list() {
  local m=()
  [[ -n "$ETCD" ]] || m+=("etcd (server, Debian package etcd-server)")
  [[ -n "$ETCDCTL" ]] || m+=("etcdctl (client, Debian package etcd-client)")
  local out="${m[0]}"
  [[ ${#m[@]} -lt 2 ]] || out+=", ${m[1]}"
  printf '%s' "$out"
}

can_apt() {
  [[ "${ENSURE_ETCD_NO_INSTALL:-}" != 1 ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1
}

# (apt_knows_packages and apt_install went missing in a44ea3d while the script still calls them;
# restored from 4807863: without them a machine without etcd could not install it.)
apt_knows_packages() {
  local pkg policy
  for pkg in "$@"; do
    # Capture first: with pipefail, grep -q closing the pipe early would fail the pipeline.
    policy="$(apt-cache policy "$pkg" 2>/dev/null || true)"
    grep -Eq 'Candidate: [^(]' <<<"$policy" || return 1
  done
}

# apt_install PKG...: quiet unless it fails.
apt_install() {
  local log
  log="$(mktemp)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt_knows_packages "$@"; then
    say "running apt-get update"
    apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get update failed"; }
  fi
  say "installing $* with apt-get"
  if ! apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
    # A stale package index can point at files the mirror no longer has: refresh once and retry.
    apt-get update -q >>"$log" 2>&1 || true
    if ! apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      die "apt-get install $* failed (output above)"
    fi
  fi
  rm -f "$log"
  hash -r
}

# show_output TEXT: indented, at most 20 lines, for error messages.
show_output() {
  printf '%s\n' "${1:-(no output)}" | head -n 20 | sed 's/^/  | /'
}

# run_version CMD...: runs a version command, its output in RUN_OUT; on failure dies naming
# the command, its exit code and what it printed. (Not called as $(...): die must end the script.)
RUN_OUT=""
run_version() {
  local rc=0
  RUN_OUT="$("$@" 2>&1)" || rc=$?
  if (( rc != 0 )); then
    die "\`$*\` failed with exit code $rc (is it an etcd build for this machine?). Its output:
$(show_output "$RUN_OUT")"
  fi
}

resolve
if [[ -z "$ETCD" || -z "$ETCDCTL" ]]; then
  missing="$(missing_list)"
  if [[ -n "${ETCD_BIN:-}" ]]; then
    die "ETCD_BIN=$ETCD_BIN does not provide: $missing. Point ETCD_BIN at the etcd binary or at a directory containing both etcd and etcdctl (v$MIN_MAJOR.$MIN_MINOR+), or unset it to use PATH / apt."
  fi
  if can_apt; then
    say "missing: $missing"
    apt_install "${APT_PACKAGES[@]}"
    resolve
  fi
  if [[ -z "$ETCD" || -z "$ETCDCTL" ]]; then
    nothing_installed=""
    [[ "${ENSURE_ETCD_NO_INSTALL:-}" != 1 ]] || nothing_installed=" (not installing: ENSURE_ETCD_NO_INSTALL=1)"
    die "missing: $(missing_list)$nothing_installed.
  Install on Debian/Ubuntu (as root):  apt-get update && apt-get install -y ${APT_PACKAGES[*]}
  Or download an etcd v$MIN_MAJOR.$MIN_MINOR+ release (https://github.com/etcd-io/etcd/releases), unpack it and
  set ETCD_BIN to the directory holding etcd and etcdctl (or put them on PATH)."
  fi
fi

# The harness relies on etcd >= 3.4 flags (--log-level, --logger zap) and on the v3 API.
run_version "$ETCD" --version
etcd_out="$RUN_OUT"
version="$(sed -n 's/^etcd Version: *//p' <<<"$etcd_out" | head -n 1)"
[[ -n "$version" ]] || die "\`$ETCD --version\` did not report a version (no \"etcd Version:\" line); is it really etcd? Its output:
$(show_output "$etcd_out")"
IFS=. read -r major minor _ <<<"$version"
if (( major < MIN_MAJOR || (major == MIN_MAJOR && minor < MIN_MINOR) )); then
  die "$ETCD is etcd $version; v$MIN_MAJOR.$MIN_MINOR or newer is required (set ETCD_BIN to a newer build)."
fi
ETCDCTL_API=3 run_version "$ETCDCTL" version
ctl_out="$RUN_OUT"
ctl_version="$(sed -n 's/^etcdctl version: *//p' <<<"$ctl_out" | head -n 1)"
[[ -n "$ctl_version" ]] || die "\`$ETCDCTL version\` did not report a version (no \"etcdctl version:\" line); is it really etcdctl? Its output:
$(show_output "$ctl_out")"

say "etcd $version at $ETCD; etcdctl $ctl_version at $ETCDCTL"

if ! command -v openssl >/dev/null 2>&1; then
  if can_apt; then
    apt_install openssl
  else
    printf 'ensure-etcd: WARNING: the openssl CLI is missing; tests that start etcd with TLS will fail. Install it with: apt-get install -y openssl\n' >&2
  fi
fi
