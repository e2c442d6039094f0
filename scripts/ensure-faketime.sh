#!/usr/bin/env bash
# Make sure libfaketime (Debian's "faketime" package) is installed, for test/jobs.test.ts (instances
# with skewed clocks). Prints "ensure-faketime: <path of libfaketimeMT.so.1>" on success. If it is
# missing and we are root with apt-get, installs it (one `apt-get update` and a retry); otherwise
# exits non-zero saying what to install (the test then skips, saying why).
set -euo pipefail
say() { printf 'ensure-faketime: %s\n' "$*"; }
die() { printf 'ensure-faketime: ERROR: %s\n' "$*" >&2; exit 1; }

find_lib() {
  local candidate
  for candidate in ${FAKETIME_LIB:-} /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 /usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1 /usr/local/lib/faketime/libfaketimeMT.so.1; do
    if [[ -n "$candidate" && -f "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if lib="$(find_lib)"; then say "$lib"; exit 0; fi
command -v apt-get >/dev/null || die "libfaketime not found and no apt-get: install faketime (libfaketime) or set FAKETIME_LIB"
[[ "$(id -u)" == 0 ]] || die "libfaketime not found: run 'apt-get install -y faketime' as root (or set FAKETIME_LIB)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y faketime >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y faketime >/dev/null 2>&1; } || die "apt-get install faketime failed"
lib="$(find_lib)" || die "faketime installed but libfaketimeMT.so.1 not found"
say "$lib"
