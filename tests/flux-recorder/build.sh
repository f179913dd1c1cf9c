#!/usr/bin/env bash
# Builds a program around Flux's own event recorder (this folder's main.go)
# into $CARGO_TARGET_DIR (default: the repository's target/) as
# flux-recorder, only when its sources changed. tests/side_by_side.rs runs
# it to post event API v1 events to herald. fluxcd/pkg's event API v1 needs
# Go 1.27, which the go command fetches from the Go module proxy
# (GOTOOLCHAIN below); the first build on a machine takes a few minutes.
#
# Prints the binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in
  /*) ;;
  *) target="$root/$target" ;;
esac
out="$target/flux-recorder"

if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain ('go') is not on PATH; the side-by-side tests build Flux's event recorder from Go modules" >&2
  exit 127
fi
export GOTOOLCHAIN=go1.27.3
version="$(go env GOVERSION)"

mkdir -p "$target"
# Test processes may call this at the same time: build one at a time.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

stamp="$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -d' ' -f1) $version"
if [[ -x "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp" ]]; then
  echo "$out"
  exit 0
fi

echo "building the Flux event recorder program ($version) into $out ..." >&2
start=$SECONDS
(
  cd "$here"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$out.tmp" ./
)
mv "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "built the Flux event recorder program in $((SECONDS - start))s" >&2
echo "$out"
