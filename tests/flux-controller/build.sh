#!/usr/bin/env bash
# Builds Flux's notification-controller (the version go.mod requires) from
# the Go module proxy into target/flux-notification-controller when go.mod,
# go.sum or the Go toolchain changed (see ../go-build.sh). The side-by-side
# test (tests/side_by_side.rs) runs it and herald in turn against the same
# kube-apiserver and compares what each sends. The first build on a machine
# takes a few minutes. Prints the binary's path on stdout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh"
go_build flux-notification-controller "Flux's notification-controller" \
  github.com/fluxcd/notification-controller go.mod go.sum
