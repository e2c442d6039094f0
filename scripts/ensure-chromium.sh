#!/usr/bin/env bash
# Make sure the Chromium that the dashboard browser test (test/dashboard.test.ts) drives is
# present: Debian's `chromium` package, driven by playwright-core (a dev dependency).
#
# Resolution order (the same as the test uses):
#   1. $CHROMIUM_BIN: path of a Chromium/Chrome executable
#   2. /usr/bin/chromium
# If nothing is found, CHROMIUM_BIN is unset, we are root and apt-get exists (Debian/Ubuntu),
# the Debian packages chromium + fonts-dejavu-core are installed (a font, so that screenshots
# show text). Otherwise we fail and say exactly what is missing and how to get it.
#
# Fast and quiet when already installed: prints the resolved path and version.
set -euo pipefail

DEFAULT_BIN=/usr/bin/chromium
APT_PACKAGES=(chromium fonts-dejavu-core)

say() { printf 'ensure-chromium: %s\n' "$*"; }
die() { printf 'ensure-chromium: ERROR: %s\n' "$*" >&2; exit 1; }

root_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -d "$root_dir/node_modules/playwright-core" ]] || die "node_modules/playwright-core is missing: run \"npm ci\" (or \"npm install\") in $root_dir first."

# apt-get update is slow, so only run it when apt does not know the packages yet.
apt_knows_packages() {
  local pkg policy
  for pkg in "${APT_PACKAGES[@]}"; do
    policy="$(apt-cache policy "$pkg" 2>/dev/null || true)"
    grep -Eq 'Candidate: [^(]' <<<"$policy" || return 1
  done
}

apt_install() {
  local log
  log="$(mktemp)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt_knows_packages; then
    say "running apt-get update"
    apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get update failed"; }
  fi
  say "installing ${APT_PACKAGES[*]} with apt-get (a few minutes)"
  if ! apt-get install -y -q "${APT_PACKAGES[@]}" >"$log" 2>&1; then
    # A stale package index can point at files the mirror no longer has: refresh once and retry.
    apt-get update -q >>"$log" 2>&1 || true
    if ! apt-get install -y -q "${APT_PACKAGES[@]}" >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      die "apt-get install ${APT_PACKAGES[*]} failed (output above)"
    fi
  fi
  rm -f "$log"
}

if [[ -n "${CHROMIUM_BIN:-}" ]]; then
  [[ -x "$CHROMIUM_BIN" ]] || die "CHROMIUM_BIN=$CHROMIUM_BIN is not an executable file. Point it at a Chromium or Chrome binary, or unset it to use $DEFAULT_BIN (Debian package chromium)."
  BIN="$CHROMIUM_BIN"
else
  BIN="$DEFAULT_BIN"
  if [[ ! -x "$BIN" ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "missing: $BIN"
      apt_install
    fi
    [[ -x "$BIN" ]] || die "missing: $BIN (headless Chromium for the dashboard browser test).
  Install on Debian/Ubuntu (as root):  apt-get update && apt-get install -y ${APT_PACKAGES[*]}
  Or set CHROMIUM_BIN to a Chromium/Chrome executable you have."
  fi
fi

# Debian's /usr/bin/chromium is a wrapper script; --version goes through it to the real binary.
version="$("$BIN" --version 2>/dev/null | grep -Eo '(Chromium|Chrome) [0-9.]+' | head -n 1 || true)"
[[ -n "$version" ]] || die "$BIN --version did not report a Chromium/Chrome version; is it really Chromium?"
say "$version at $BIN"
