#!/usr/bin/env bash
# Builds the real OpenTelemetry Collector (from tools/otelcol-builder.yaml with the
# Collector Builder) and Jaeger v2 (cmd/jaeger of github.com/jaegertracing/jaeger) from
# their Go modules, once, into a cache OUTSIDE the checkout: CI runs in a fresh clone, so
# a folder inside it would be empty every run and force a 10+ minute rebuild.
#
# Idempotent: a binary that already exists for its version (and, for the collector, for
# this exact manifest) is kept, so a second run takes seconds. The Go build and module
# caches live under the same folder so a fresh clone reuses them too.
#
# stdout gets exactly two lines, OTELCOL_BIN=<path> and JAEGER_BIN=<path> (the
# integration tests read them); progress goes to stderr.
set -euo pipefail

OCB_VERSION=0.161.0          # the builder release = the collector release in the manifest
JAEGER_VERSION=v1.76.0       # this tag's cmd/jaeger is the Jaeger v2 binary

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="$here/otelcol-builder.yaml"
cache="${XDG_CACHE_HOME:-${HOME:?set HOME or XDG_CACHE_HOME: the build cache lives there}/.cache}/canarytrace"
bin="$cache/bin"
work="$cache/build"
mkdir -p "$bin" "$work"

export GOCACHE="$cache/go/build"
export GOMODCACHE="$cache/go/mod"
# -modcacherw: the module cache can be deleted with rm -rf like any other cache.
export GOFLAGS="-modcacherw -buildvcs=false"
# Build with the installed Go; never fetch another toolchain at build time.
export GOTOOLCHAIN=local

log() { printf 'build-otel: %s\n' "$*" >&2; }

# Where the official tarball puts Go, for shells whose PATH lacks it (CI's, cron's).
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { log "Go is not installed: install Go >= 1.24 (https://go.dev/dl) and rerun"; exit 1; }

# Two runs at once (make test and a test fixture) must not build into each other.
exec 9>"$cache/build.lock"
flock 9

# The collector binary is keyed by version and by the manifest's content, so editing
# the component list rebuilds it while an unchanged manifest never does.
manifest_key="$(sha256sum "$manifest" | cut -c1-12)"
otelcol_bin="$bin/otelcol-canarytrace-$OCB_VERSION-$manifest_key"
jaeger_bin="$bin/jaeger-$JAEGER_VERSION"

build_otelcol() {
  local ocb="$bin/ocb-$OCB_VERSION"
  if [[ ! -x "$ocb" ]]; then
    log "installing the Collector Builder $OCB_VERSION"
    GOBIN="$work/ocb-gobin" go install "go.opentelemetry.io/collector/cmd/builder@v$OCB_VERSION"
    mv "$work/ocb-gobin/builder" "$ocb"
  fi
  local out="$work/otelcol-$OCB_VERSION-$manifest_key"
  rm -rf "$out"
  log "building the collector from $manifest (first time: several minutes)"
  "$ocb" --config "$manifest" --output-path "$out" >&2
  mv "$out/otelcol-canarytrace" "$otelcol_bin.tmp"
  mv "$otelcol_bin.tmp" "$otelcol_bin"
  rm -rf "$out"
}

build_jaeger() {
  # v1.76.0's go.mod has replace directives, so `go install pkg@version` refuses it:
  # download the module and build cmd/jaeger inside a writable copy of it instead.
  log "downloading github.com/jaegertracing/jaeger@$JAEGER_VERSION"
  local dir
  dir="$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { log "go mod download gave no module folder"; exit 1; }
  local src="$work/jaeger-$JAEGER_VERSION"
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  log "building Jaeger $JAEGER_VERSION (first time: several minutes)"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$jaeger_bin.tmp" ./cmd/jaeger)
  mv "$jaeger_bin.tmp" "$jaeger_bin"
  rm -rf "$src"
}

start=$SECONDS
[[ -x "$otelcol_bin" ]] || build_otelcol
[[ -x "$jaeger_bin" ]] || build_jaeger
log "ready in $((SECONDS - start)) s"
echo "OTELCOL_BIN=$otelcol_bin"
echo "JAEGER_BIN=$jaeger_bin"
