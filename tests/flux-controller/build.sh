#!/usr/bin/env bash
# Builds Flux's notification-controller (the version go.mod requires) from
# the Go module proxy into $CARGO_TARGET_DIR (default: the repository's
# target/) as flux-notification-controller, only when go.mod, go.sum or the
# Go toolchain changed. The side-by-side test (tests/side_by_side.rs) runs
# it and herald in turn against the same kube-apiserver and compares what
# each sends. The first build on a machine takes a few minutes.
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
out="$target/flux-notification-controller"

if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain ('go') is not on PATH; the side-by-side test builds Flux's notification-controller from Go modules" >&2
  exit 127
fi
version="$(go env GOVERSION)"

mkdir -p "$target"
# Test processes may call this at the same time: build one at a time.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

stamp="$(cd "$here" && cat go.mod go.sum | sha256sum | cut -d' ' -f1) $version"
if [[ -x "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp" ]]; then
  echo "$out"
  exit 0
fi

echo "building Flux's notification-controller ($version) into $out ..." >&2
start=$SECONDS
(
  cd "$here"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$out.tmp" github.com/fluxcd/notification-controller
)
mv "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "built Flux's notification-controller in $((SECONDS - start))s" >&2
echo "$out"
