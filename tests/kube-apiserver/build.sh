#!/usr/bin/env bash
# Builds the kube-apiserver test harness (this folder's Go program) into
# target/kube-apiserver-harness, only when its sources or the Go toolchain
# changed (see ../go-build.sh). Go's build cache makes a rebuild after a
# change fast; the first build on a machine compiles kube-apiserver and etcd
# and takes minutes.
#
# Prints the binary's path on stdout.
set -euo pipefail
if command -v go >/dev/null 2>&1; then
  version="$(go env GOVERSION)"
  minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$version")"
  if ! [[ "$minor" =~ ^[0-9]+$ ]] || ((minor < 26)); then
    echo "error: tests/kube-apiserver needs Go 1.26 or newer; 'go' is $version" >&2
    exit 1
  fi
fi
source "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh"
go_build kube-apiserver-harness "the kube-apiserver test harness" ./ go.mod go.sum './*.go'
