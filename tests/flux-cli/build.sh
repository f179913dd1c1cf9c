#!/usr/bin/env bash
# Builds the flux CLI (github.com/fluxcd/flux2/v2, the version below) from
# the Go module proxy into $CARGO_TARGET_DIR (default: the repository's
# target/) as `flux`, only when missing or built from another version. The
# tests run `flux get`, `suspend`, `resume` and `reconcile` against herald.
#
# cmd/flux embeds install manifests that Flux's release build generates;
# the commands the tests use never read them, so a placeholder stands in.
# The module's source is copied out of the (read-only) module cache first.
#
# Prints the binary's path on stdout.
set -euo pipefail

version="v2.9.5"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../go-build.sh"
go_begin flux "the flux CLI"
stamp="$version $(go env GOVERSION)"
if go_current "$stamp" "the flux CLI $version"; then
  exit 0
fi
module="$(cd "$here" && GOFLAGS=-mod=mod go mod download -json "github.com/fluxcd/flux2/v2@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$module" || ! -d "$module" ]]; then
  echo "error: cannot download github.com/fluxcd/flux2/v2@$version from the Go module proxy" >&2
  exit 1
fi
src="$(dirname "$go_out")/flux-src"
rm -rf "$src"
cp -r "$module" "$src"
chmod -R u+w "$src"
mkdir -p "$src/cmd/flux/manifests"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: placeholder}\n' >"$src/cmd/flux/manifests/placeholder.yaml"
(
  cd "$src"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$go_out.tmp" ./cmd/flux
)
go_done "$stamp" "the flux CLI"
