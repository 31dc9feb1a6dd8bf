#!/usr/bin/env bash
# Makes the Pulumi toolchain workhub runs on available, and prints the directory to put first on
# PATH. Uses a suitable `pulumi` already on PATH; otherwise builds the CLI from the Go module
# proxy once and caches it outside the work tree, so later runs take a second.
#
#   scripts/toolchain.sh            # ensure, then print the bin directory on stdout
#
# Progress goes to stderr, and nothing when all was ready. Nothing is downloaded when the engine
# runs: automatic plugin downloads are off in the environment workhub gives the engine.
set -euo pipefail

PULUMI_VERSION=3.274.1         # the CLI; the pinned Python SDK (3.272.0) accepts any newer CLI
MIN_PULUMI_VERSION=3.272.0
CLIPBOARD_FORK=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e
CACHE=${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}/toolchain/pulumi-v$PULUMI_VERSION
BIN=$CACHE/bin

say() { printf 'toolchain: %s\n' "$*" >&2; }
log() { say "$@"; }
die() { say "error: $*"; exit 1; }
# shellcheck source=SCRIPTDIR/lib/logged.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/logged.sh"

version_at_least() {  # version_at_least HAVE WANT
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

installed_pulumi() {
  local found
  found=$(command -v pulumi 2>/dev/null) || return 1
  [ "$found" != "$BIN/pulumi" ] || return 1
  local have
  have=$("$found" version 2>/dev/null | sed 's/^v//')
  version_at_least "$have" "$MIN_PULUMI_VERSION" || return 1
  printf '%s\n' "$found"
}

build_cli() {
  command -v go >/dev/null || die "Go is needed to build the Pulumi CLI (none on PATH)"
  local work=$CACHE/build
  mkdir -p "$work"
  cat >"$work/go.mod" <<EOF
module workhub.local/toolchain

go 1.26

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/atotto/clipboard => ${CLIPBOARD_FORK/@/ }
EOF
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
EOF
  say "building the Pulumi CLI v$PULUMI_VERSION from the Go module proxy (3-10 minutes on a fresh machine; log: $work/build.log)"
  (cd "$work" && logged "resolving modules" "$work/build.log" go mod tidy)
  (cd "$work" && logged "compiling the CLI" "$work/build.log" \
    go build -trimpath -o "$BIN/pulumi.new" \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  mv "$BIN/pulumi.new" "$BIN/pulumi"
}

# The dynamic-provider and language-host scripts ship in the SDK module beside the CLI.
install_sdk_scripts() {
  local sdk
  local log_file="$CACHE/build/sdk.log"
  mkdir -p "$CACHE/build"
  # go's "go: downloading ..." lines go to the log; only the module's directory comes back.
  sdk=$(cd "$CACHE/build" && go list -m -f '{{.Dir}}' "github.com/pulumi/pulumi/sdk/v3" 2>>"$log_file") || true
  if [ -z "$sdk" ]; then
    sdk=$(GOFLAGS=-mod=mod go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" 2>>"$log_file" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || die "could not download the Pulumi SDK module (log: $log_file)"
  fi
  install_whole "$sdk/python/dist/pulumi-resource-pulumi-python"
  install_whole "$sdk/python/cmd/pulumi-language-python-exec"
}

# install_whole FILE: an executable copy in $BIN, renamed into place once whole.
install_whole() {
  local name
  name=$(basename "$1")
  install -m 0755 "$1" "$BIN/$name.new"
  mv "$BIN/$name.new" "$BIN/$name"
}

ready() {
  [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-resource-pulumi-python" ] && [ -x "$BIN/pulumi-language-python-exec" ]
}

# Under the cache's lock (one setup at a time fills it): a setup that waited for another finds all
# ready here and makes nothing. Said once, when this run made something ready.
fill() {
  ready && return 0
  mkdir -p "$BIN"
  local existing
  if [ -x "$BIN/pulumi" ]; then
    :
  elif existing=$(installed_pulumi); then
    say "using the installed $existing ($("$existing" version))"
    ln -sf "$existing" "$BIN/pulumi"
  else
    build_cli
  fi
  if [ ! -x "$BIN/pulumi-resource-pulumi-python" ] || [ ! -x "$BIN/pulumi-language-python-exec" ]; then
    say "installing the Python SDK's plugin scripts"
    install_sdk_scripts
  fi
  say "ready: pulumi $("$BIN/pulumi" version) in $BIN"
}

main() {
  # A warm run takes no lock: what fill makes appears whole (renamed into place) or not at all.
  ready || with_cache_lock "$CACHE.lock" "is making the Pulumi CLI v$PULUMI_VERSION in $CACHE" fill
  "$BIN/pulumi" version >/dev/null || die "$BIN/pulumi does not run"
  printf '%s\n' "$BIN"
}

main "$@"
