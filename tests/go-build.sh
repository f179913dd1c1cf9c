# Sourced by the build scripts of the Go programs the tests run
# (tests/kube-apiserver, tests/flux-controller, tests/flux-recorder,
# tests/flux-cli): builds one into $CARGO_TARGET_DIR (default: the
# repository's target/) only when its inputs or the Go toolchain changed,
# one build at a time, and prints the binary's path on stdout.
#
#   go_build NAME WHAT PACKAGE SOURCES...
#
# NAME is the binary's file name, WHAT how messages name it, PACKAGE what
# `go build` builds (in the calling script's folder), SOURCES the files
# (globs, in that folder) whose change means a rebuild.
#
# A script that builds otherwise (tests/flux-cli builds a module's source)
# uses the steps: `go_begin NAME WHAT` (sets go_out, takes the lock),
# `go_current STAMP` (prints the path and succeeds when the binary was built
# with that stamp), then builds "$go_out.tmp" and calls `go_done STAMP WHAT`.

# Where NAME goes (go_out), after checking that Go is there; holds the
# build lock from then on (test processes may build at the same time).
go_begin() {
  local name="$1" what="$2" root target
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  target="${CARGO_TARGET_DIR:-$root/target}"
  case "$target" in
    /*) ;;
    *) target="$root/$target" ;;
  esac
  go_out="$target/$name"
  if ! command -v go >/dev/null 2>&1; then
    echo "error: the Go toolchain ('go') is not on PATH: the tests build $what from Go modules; install Go 1.26 or newer (with the Go module proxy reachable)" >&2
    exit 127
  fi
  mkdir -p "$target"
  exec 9>"$go_out.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
}

# Prints go_out and succeeds when it was built with STAMP.
go_current() {
  if [[ -x "$go_out" && -f "$go_out.stamp" && "$(cat "$go_out.stamp")" == "$1" ]]; then
    echo "$go_out"
    return 0
  fi
  echo "building $2 into $go_out ..." >&2
  go_started=$SECONDS
  return 1
}

# Puts the binary built as "$go_out.tmp" in place with its STAMP.
go_done() {
  mv "$go_out.tmp" "$go_out"
  echo "$1" >"$go_out.stamp"
  echo "built $2 in $((SECONDS - go_started))s" >&2
  echo "$go_out"
}

go_build() {
  local name="$1" what="$2" package="$3" here stamp
  shift 3
  here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
  go_begin "$name" "$what"
  # shellcheck disable=SC2068 # the sources are globs, expanded in $here
  stamp="$(cd "$here" && cat $@ | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
  if go_current "$stamp" "$what ($(go env GOVERSION))"; then
    return 0
  fi
  (
    cd "$here"
    CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$go_out.tmp" "$package"
  )
  go_done "$stamp" "$what"
}
