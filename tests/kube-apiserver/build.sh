#!/usr/bin/env bash
# Builds the kube-apiserver test harness (this folder's Go program) into
# $CARGO_TARGET_DIR (default: the repository's target/) as
# kube-apiserver-harness, only when its sources or the Go toolchain changed.
# Go's build cache makes a rebuild after a change fast; the first build on a
# machine compiles kube-apiserver and etcd and takes minutes.
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
out="$target/kube-apiserver-harness"

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<'MSG'
error: the Go toolchain ('go') is not on PATH.
herald's controller tests run a real kube-apiserver with embedded etcd, built
from Go modules by tests/kube-apiserver/. Install Go 1.26 or newer (and let it
reach the Go module proxy), put 'go' on PATH, and run the tests again.
MSG
  exit 127
fi
version="$(go env GOVERSION)"
minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$version")"
if ! [[ "$minor" =~ ^[0-9]+$ ]] || ((minor < 26)); then
  echo "error: tests/kube-apiserver needs Go 1.26 or newer; 'go' is $version" >&2
  exit 1
fi

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

echo "building the kube-apiserver test harness ($version) into $out ..." >&2
start=$SECONDS
(
  cd "$here"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$out.tmp" ./
)
mv "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "built the kube-apiserver test harness in $((SECONDS - start))s" >&2
echo "$out"
