#!/usr/bin/env bash
# herald's load benchmarks, each beside its baseline in the same run:
#   * ingest: events/s accepted with 10,000 Alerts loaded, vs a bare hyper
#     server answering 202 (same wrk load) -> ratio
#   * end-to-end: p50/p99 from event accepted to webhook received, at a
#     fixed rate of 1,000 events/s
#   * memory: RSS idle, and with 10,000 Alerts + 10,000 Providers
# Usage: bench/run.sh [--quick]   (--quick: shorter runs, about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
if [[ "${1:-}" == "--quick" ]]; then seconds=3; fi

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
cargo build --release --quiet --workspace --bins
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_ready() {
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "herald did not become ready" >&2; return 1
}
start_herald() { # dir events-port health-port
  "$bin/herald" serve --manifests "$1" --events-addr "127.0.0.1:$2" --metrics-addr 127.0.0.1:0 \
    --health-addr "127.0.0.1:$3" --log-level=warn --rate-limit-interval=5m >"$work/herald-$2.log" 2>&1 &
  herald_pid=$!
  pids+=("$herald_pid")
  wait_ready "$3"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"

# Memory: idle.
mkdir -p "$work/empty"
start_herald "$work/empty" 19090 19440
sleep 1
echo "rss idle: $(( $(rss_kib "$herald_pid") / 1024 )) MiB"
kill "$herald_pid"

# 10,000 Alerts + 10,000 Providers (+ Secrets), pointing at the e2e sink.
python3 bench/generate.py "$work/alerts" 10000 "http://127.0.0.1:19595/hook"
sed 's/"name": "app-0"/"name": "app-none"/' bench/event.json >"$work/miss.json"

start_herald "$work/alerts" 29090 29440
loaded=$herald_pid
echo "rss with 10000 alerts + 10000 providers: $(( $(rss_kib "$loaded") / 1024 )) MiB"

# Ingest: herald vs a bare 202 server, same wrk load (events match no Alert,
# so the numbers measure receiving, validating, deduplicating and routing).
ingest() { wrk -t2 -c64 -d"${seconds}s" -s bench/post.lua "$1" -- "$2" | awk '/Requests\/sec/ {print $2}'; }
herald_rps=$(ingest http://127.0.0.1:29090/ "$work/miss.json")
"$bin/hyper202" 127.0.0.1:19191 2>/dev/null &
pids+=($!)
sleep 0.3
bare_rps=$(ingest http://127.0.0.1:19191/ "$work/miss.json")
echo "ingest herald: $herald_rps events/s"
echo "ingest bare hyper 202: $bare_rps requests/s"
echo "ratio: $(python3 -c "print(f'{$herald_rps / $bare_rps:.2f}')")"

# End to end at 1,000 events/s: each event matches one Alert; its
# notification goes to the e2e tool's own sink.
"$bin/e2e" --events http://127.0.0.1:29090/ --sink 127.0.0.1:19595 --rate 1000 \
  --seconds "$seconds" --event bench/event.json
echo "rss peak (herald, whole run): $(( $(peak_kib "$loaded") / 1024 )) MiB"
