#!/usr/bin/env bash
# Builds a program around Flux's own event recorder (this folder's main.go)
# into target/flux-recorder when its sources changed (see ../go-build.sh).
# tests/side_by_side.rs runs it to post event API v1 events to herald.
# fluxcd/pkg's event API v1 needs Go 1.27, which the go command fetches from
# the Go module proxy (GOTOOLCHAIN below); the first build on a machine takes
# a few minutes. Prints the binary's path on stdout.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
source "$(dirname "${BASH_SOURCE[0]}")/../go-build.sh"
go_build flux-recorder "the Flux event recorder program" ./ go.mod go.sum './*.go'
