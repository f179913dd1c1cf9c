#!/usr/bin/env bash
# herald at the scale users run it, each measure beside its baseline in the
# same run (rounds alternate herald and the baseline):
#   * 10,000 Alerts, each with its own exclusionList regex, and 10,000
#     Providers, each with its own address (a distinct path on one sink
#     host), over 100 namespaces (bench/generate.py --distinct);
#   * start: time from start to /readyz 200;
#   * ingest: events no Alert matches, herald vs the bare hyper 202 server;
#   * pipeline: events each matching one Alert, spread over the 10,000
#     destinations, every accepted notification delivered (counted at the
#     sink), vs nginx proxy_pass of every request to the same sink;
#   * memory: RSS once loaded and after the load;
#   * the pipeline again with the durable spool on (--spool-dir), vs nginx.
# The sink is bench/tools' hyper sink, or with --sink nginx an nginx that
# answers every POST 200 (faster: the harder comparison, as both sides'
# cost is then less hidden behind the sink's).
# Usage: bench/scale.sh [--quick] [--rounds N] [--alerts N] [--no-spool] [--sink hyper|nginx]
# HERALD_BIN, when set, is the herald binary to measure (default: the
# release build). HERALD_WRAP, when set, is put before herald's command (a profiler, or
# `env LD_PRELOAD=...` to try another allocator).
# Needs wrk and nginx (Debian packages; installed when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
rounds=3
alerts=10000
spool=1
sink=hyper
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) seconds=3; rounds=1 ;;
    --rounds) rounds=$2; shift ;;
    --alerts) alerts=$2; shift ;;
    --no-spool) spool=0 ;;
    --sink) sink=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

for tool in wrk nginx; do
  if ! command -v "$tool" >/dev/null && ! [[ -x /usr/sbin/$tool ]]; then
    apt-get update -qq && apt-get install -y -qq "$tool"
  fi
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet --workspace --bins
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  [[ -f "$work/sink-nginx.pid" ]] && kill "$(cat "$work/sink-nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

sink_port=19595 events_port=29090 health_port=29440 bare_port=19191 nginx_port=19292
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
# Requests the sink answered (nginx's stub_status counts its own polls too:
# those are subtracted).
sink_count() {
  if [[ $sink == nginx ]]; then
    local polls
    polls=$(( $(cat "$work/polls") + 1 ))
    echo "$polls" >"$work/polls"
    curl -fsS "http://127.0.0.1:$sink_port/count" | awk -v p="$polls" 'NR == 3 {print $3 - p}'
  else
    curl -fsS "http://127.0.0.1:$sink_port/count" | awk '{print $1}'
  fi
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "shape: $alerts Alerts (distinct exclusion regexes) + $alerts Providers (distinct addresses) over 100 namespaces; wrk -t2 -c64, ${seconds}s per measure, $rounds rounds; $sink sink"

python3 bench/generate.py "$work/alerts" "$alerts" "http://127.0.0.1:$sink_port/hook" --distinct
if [[ $sink == nginx ]]; then
  echo 0 >"$work/polls"
  cat >"$work/sink-nginx.conf" <<CONF
worker_processes 1;
pid $work/sink-nginx.pid;
error_log $work/sink-nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/sink-nginx-body;
  server {
    listen 127.0.0.1:$sink_port;
    keepalive_requests 1000000;
    location = /count { stub_status; }
    location / { return 200 ok; }
  }
}
CONF
  "$nginx_bin" -c "$work/sink-nginx.conf"
else
  "$bin/sink" "127.0.0.1:$sink_port" 2>/dev/null &
  pids+=($!)
fi
"$bin/hyper202" "127.0.0.1:$bare_port" 2>/dev/null &
pids+=($!)
cat >"$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  upstream sink { server 127.0.0.1:$sink_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
"$nginx_bin" -c "$work/nginx.conf"
sleep 0.3

start_herald() { # [extra flags...] -> herald_pid, ready_ms
  local started
  started=$(now_ms)
  # shellcheck disable=SC2086 # HERALD_WRAP is a command line to split.
  ${HERALD_WRAP:-} "${HERALD_BIN:-$bin/herald}" serve --manifests "$work/alerts" --events-addr "127.0.0.1:$events_port" \
    --metrics-addr 127.0.0.1:0 --health-addr "127.0.0.1:$health_port" --log-level=warn \
    --rate-limit-interval=5m "$@" >"$work/herald.log" 2>&1 &
  herald_pid=$!
  pids+=("$herald_pid")
  for _ in $(seq 1 3000); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$health_port/readyz" 2>/dev/null; then
      ready_ms=$(( $(now_ms) - started ))
      return 0
    fi
    sleep 0.01
  done
  echo "herald did not become ready" >&2
  cat "$work/herald.log" >&2
  return 1
}
stop_herald() { kill "$herald_pid"; wait "$herald_pid" 2>/dev/null || true; }

# wrk: prints "<requests/s> <requests> <non-2xx>"
load() { # url mode(hit|miss)
  wrk -t2 -c64 -d"${seconds}s" -s bench/spread.lua "$1" -- bench/event.json "$alerts" "$2" "$(date +%s%N)-" |
    awk '/Requests\/sec/ {rps = $2} / requests in / {n = $1} /Non-2xx/ {bad = $NF}
         END {printf "%s %d %d\n", rps, n, bad}'
}

# Start: time to ready, and RSS once loaded (1 s after ready).
starts=() loaded=()
for _ in $(seq 1 "$rounds"); do
  start_herald
  starts+=("$ready_ms")
  sleep 1
  loaded+=("$(rss_kib "$herald_pid")")
  stop_herald
done
echo "start to ready (ms): ${starts[*]}; median $(printf '%s\n' "${starts[@]}" | median) (goal <= 1000)"
echo "RSS once loaded (MiB): $(for k in "${loaded[@]}"; do printf '%s ' "$(mib "$k")"; done)"

start_herald
pid=$herald_pid

# Ingest: alternate herald and the bare server.
ingest_ratios=()
for round in $(seq 1 "$rounds"); do
  read -r h_rps _ h_bad < <(load "http://127.0.0.1:$events_port/" miss)
  read -r b_rps _ _ < <(load "http://127.0.0.1:$bare_port/" miss)
  r=$(ratio "$h_rps" "$b_rps")
  ingest_ratios+=("$r")
  echo "ingest round $round: herald $h_rps events/s (non-202: $h_bad), bare hyper 202 $b_rps requests/s, ratio $r"
done
echo "ingest ratio median $(printf '%s\n' "${ingest_ratios[@]}" | median)"

# Pipeline: alternate nginx proxy_pass and herald; herald's rate counts
# only notifications that reached the sink, until the last one did.
pipeline() { # label
  local pipe_ratios=() round before n_rps n_total n_bad n_sunk t0 h_total h_bad accepted elapsed delivered h_rate r
  for round in $(seq 1 "$rounds"); do
    before=$(sink_count)
    read -r n_rps n_total n_bad < <(load "http://127.0.0.1:$nginx_port/" hit)
    n_sunk=$(( $(sink_count) - before ))
    before=$(sink_count)
    t0=$(now_ms)
    read -r _ h_total h_bad < <(load "http://127.0.0.1:$events_port/" hit)
    accepted=$(( h_total - h_bad ))
    while (( $(sink_count) - before < accepted )) && (( $(now_ms) - t0 < 120000 )); do sleep 0.02; done
    elapsed=$(( $(now_ms) - t0 ))
    delivered=$(( $(sink_count) - before ))
    h_rate=$(awk -v d="$delivered" -v ms="$elapsed" 'BEGIN {printf "%.0f", d * 1000 / ms}')
    r=$(ratio "$h_rate" "$n_rps")
    pipe_ratios+=("$r")
    echo "$1 round $round: nginx proxy_pass $n_rps requests/s ($n_sunk at the sink, non-2xx $n_bad);" \
      "herald accepted $accepted (503: $h_bad), delivered $delivered in $(( elapsed ))ms = $h_rate/s; ratio $r"
  done
  echo "$1 ratio median $(printf '%s\n' "${pipe_ratios[@]}" | median) (goal >= 0.5)"
}
# Warm-up, not measured: one short load through each, so that neither
# round 1 pays for what only a first request does (herald builds an
# Alert's regex automaton when an event first reaches it; both open their
# connections to the sink).
# Then wait until the sink has everything, so no warm-up delivery counts.
settle() {
  local last=-1 now
  now=$(sink_count)
  while (( now != last )); do last=$now; sleep 0.5; now=$(sink_count); done
}
warm() { local saved=$seconds; seconds=2; load "$1" hit >/dev/null; seconds=$saved; settle; }
warm "http://127.0.0.1:$nginx_port/"
warm "http://127.0.0.1:$events_port/"
pipeline pipeline
if [[ $sink == hyper ]]; then
  read -r _ paths connections < <(curl -fsS "http://127.0.0.1:$sink_port/count")
  echo "sink: $paths distinct paths, $connections connections opened (nginx and herald together)"
fi

# herald gives memory back once events have stopped for a few seconds.
sleep 5
echo "RSS after load: $(mib "$(rss_kib "$pid")") MiB (goal <= 80), peak $(mib "$(peak_kib "$pid")") MiB"
stop_herald

# The same pipeline with every accepted notification written to the spool
# (on this machine's disk) before the 202.
if (( spool )); then
  start_herald --spool-dir "$work/spool"
  warm "http://127.0.0.1:$events_port/"
  pipeline "pipeline with --spool-dir"
  echo "spool file after the load: $(du -k "$work/spool" | awk '{print $1}') KiB"
  stop_herald
fi
