# Sourced by the build scripts of the Go programs the tests run
# (tests/kube-apiserver, tests/flux-controller, tests/flux-recorder): builds
# one into $CARGO_TARGET_DIR (default: the repository's target/) only when
# its sources or the Go toolchain changed, one build at a time, and prints
# the binary's path on stdout.
#
#   go_build NAME WHAT PACKAGE SOURCES...
#
# NAME is the binary's file name, WHAT how messages name it, PACKAGE what
# `go build` builds (in the calling script's folder), SOURCES the files
# (globs, in that folder) whose change means a rebuild.

go_build() {
  local name="$1" what="$2" package="$3"
  shift 3
  local here root target out version stamp start
  here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
  root="$(cd "$here/../.." && pwd)"
  target="${CARGO_TARGET_DIR:-$root/target}"
  case "$target" in
    /*) ;;
    *) target="$root/$target" ;;
  esac
  out="$target/$name"
  if ! command -v go >/dev/null 2>&1; then
    echo "error: the Go toolchain ('go') is not on PATH: the tests build $what from Go modules; install Go 1.26 or newer (with the Go module proxy reachable)" >&2
    exit 127
  fi
  version="$(go env GOVERSION)"
  mkdir -p "$target"
  # Test processes may call this at the same time: build one at a time.
  exec 9>"$out.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  # shellcheck disable=SC2068 # the sources are globs, expanded in $here
  stamp="$(cd "$here" && cat $@ | sha256sum | cut -d' ' -f1) $version"
  if [[ -x "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp" ]]; then
    echo "$out"
    return 0
  fi
  echo "building $what ($version) into $out ..." >&2
  start=$SECONDS
  (
    cd "$here"
    CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$out.tmp" "$package"
  )
  mv "$out.tmp" "$out"
  echo "$stamp" >"$out.stamp"
  echo "built $what in $((SECONDS - start))s" >&2
  echo "$out"
}
