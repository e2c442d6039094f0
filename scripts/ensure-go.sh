#!/usr/bin/env bash
# Make sure the Go toolchain and etcd's Go client sources (clientv3, clientv3/concurrency,
# contrib/recipes) exist, so test/go-interop.test.ts can build test/go/etcd-peer.
#
# Debian packages both: golang-go (Go 1.19 on bookworm) and golang-etcd-server-dev (the 3.4.23
# sources under /usr/share/gocode/src/go.etcd.io/etcd). The program is built in GOPATH mode
# (GO111MODULE=off GOPATH=/usr/share/gocode): the Go module proxy is not needed.
#
# If something is missing and we are root with apt-get, the packages are installed (with one
# `apt-get update` and a retry when the first install fails). Otherwise we fail and say what to
# install. Env: GO (the go binary, default: PATH, then /usr/lib/go/bin/go), GOCODE_ROOT
# (default /usr/share/gocode).
#
# On success prints "ensure-go: go <version> at <path>; etcd Go sources <version> at <dir>" and
# "ensure-go: use GO=<go binary> GOPATH=<dir> GO111MODULE=off" (what to build with); exits
# non-zero with the reason on stderr otherwise.
set -euo pipefail

APT_PACKAGES=(golang-go golang-etcd-server-dev)
GOCODE_ROOT="${GOCODE_ROOT:-/usr/share/gocode}"
ETCD_SRC="$GOCODE_ROOT/src/go.etcd.io/etcd"
# The Go packages the peer program imports, relative to $ETCD_SRC.
REQUIRED_DIRS=(clientv3 clientv3/concurrency contrib/recipes etcdserver/etcdserverpb)

say() { printf 'ensure-go: %s\n' "$*"; }
die() { printf 'ensure-go: ERROR: %s\n' "$*" >&2; exit 1; }

GO_BIN=""
resolve_go() {
  GO_BIN=""
  if [[ -n "${GO:-}" ]]; then
    [[ -x "$GO" ]] && GO_BIN="$GO"
    return 0
  fi
  GO_BIN="$(command -v go || true)"
  if [[ -z "$GO_BIN" && -x /usr/lib/go/bin/go ]]; then GO_BIN=/usr/lib/go/bin/go; fi
}

missing_sources() {
  local d out=()
  for d in "${REQUIRED_DIRS[@]}"; do
    compgen -G "$ETCD_SRC/$d/*.go" >/dev/null || out+=("$ETCD_SRC/$d")
  done
  printf '%s' "${out[*]:-}"
}

what_is_missing() {
  local m=() src
  [[ -n "$GO_BIN" ]] || m+=("the go toolchain (Debian package golang-go)")
  src="$(missing_sources)"
  [[ -z "$src" ]] || m+=("etcd's Go sources: $src (Debian package golang-etcd-server-dev)")
  local IFS=';'
  printf '%s' "${m[*]:-}"
}

can_apt() {
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1
}

apt_install() {
  local log
  log="$(mktemp)"
  export DEBIAN_FRONTEND=noninteractive
  say "installing $* with apt-get"
  if ! apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
    # Unknown packages or a stale index pointing at files the mirror no longer has:
    # refresh the index once and retry.
    say "apt-get install failed; running apt-get update and retrying"
    if ! apt-get update -q >>"$log" 2>&1; then
      tail -n 20 "$log" >&2
      rm -f "$log"
      die "apt-get update failed (output above)"
    fi
    if ! apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      die "apt-get install $* failed (output above)"
    fi
  fi
  rm -f "$log"
  hash -r
  say "installed $*"
}

resolve_go
missing="$(what_is_missing)"
if [[ -n "$missing" ]]; then
  if [[ -n "${GO:-}" && -z "$GO_BIN" ]]; then
    die "GO=$GO is not an executable go binary; point it at one or unset it."
  fi
  say "missing: $missing"
  if can_apt; then
    apt_install "${APT_PACKAGES[@]}"
    resolve_go
    missing="$(what_is_missing)"
  fi
  if [[ -n "$missing" ]]; then
    die "still missing: $missing.
  Install on Debian/Ubuntu (as root):  apt-get update && apt-get install -y ${APT_PACKAGES[*]}
  (or set GO to a go binary and GOCODE_ROOT to a GOPATH holding go.etcd.io/etcd 3.4 sources)."
  fi
fi

go_version="$("$GO_BIN" version 2>/dev/null || true)"
[[ "$go_version" == go\ version\ * ]] || die "$GO_BIN version did not report a Go version (got: ${go_version:-nothing})"
etcd_version="$(sed -n 's/^[[:space:]]*Version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$ETCD_SRC/version/version.go" 2>/dev/null | head -n 1 || true)"
say "${go_version#go version } at $GO_BIN; etcd Go sources ${etcd_version:-(unknown version)} at $ETCD_SRC"
# For callers (test/support/go-peer.ts): what to build with.
say "use GO=$GO_BIN GOPATH=$GOCODE_ROOT GO111MODULE=off"
