#!/usr/bin/env bash
# Connection flood (issue 14's benchmark; docs/benchmarks.md, "Other
# measurements"): a fixed-rate workload alone, then the same workload while
# benches/flood.py keeps 10,000 hostile sockets open (half idle, half
# sending garbage, oversized frame headers, trickled handshakes or bad
# logins) against the same broker, then against a second broker on the
# same machine (the floor: what the flood costs the machine's cores when
# the workload's broker never sees it), alternating RUNS times. The flood
# starts first and the workload logs in while it holds every
# unauthenticated slot. Prints, for each run, the workload's end-to-end
# p50/p99/max and lost count, and the workload broker's peak RSS.
#
#   benches/flood.sh [RINGMQ_BIN] [LOADGEN_BIN]
#
# Environment: RATE (20000), SIZE (1024), DURATION (10 s), WARMUP (6 s),
# CONNECTIONS (10000), RUNS (2), PORT (27680), AMQP_PORT (27672),
# HTTP_PORT (27692), FLOOR (1: run the second-broker floor), FLOOD_PREFIX
# (a command to run the flooder under, e.g. "nice -n 19").
# Bounded: RUNS x 3 x (3 + WARMUP + DURATION + drain).
set -euo pipefail
cd "$(dirname "$0")/.."

RINGMQ=${1:-target/release/ringmq}
LOADGEN=${2:-target/release/ringmq-loadgen}
RATE=${RATE:-20000}
SIZE=${SIZE:-1024}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-6}
CONNECTIONS=${CONNECTIONS:-10000}
RUNS=${RUNS:-2}
PORT=${PORT:-27680}
AMQP_PORT=${AMQP_PORT:-27672}
HTTP_PORT=${HTTP_PORT:-27692}
FLOOR=${FLOOR:-1}

work=$(mktemp -d)
broker=""
other=""
cleanup() {
  for b in $broker $other; do kill "$b" 2>/dev/null || true; wait "$b" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# start_broker NAME NATIVE AMQP HTTP: starts a 2-shard broker, prints its pid.
start_broker() {
  "$RINGMQ" serve --cores 2 --data-dir "$work/$1" --listen "127.0.0.1:$2" \
    --amqp-listen "127.0.0.1:$3" --metrics-listen "127.0.0.1:$4" \
    >"$work/$1.out" 2>"$work/$1.err" &
  local pid=$!
  for _ in $(seq 100); do grep -q '^ringmq ready' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^ringmq ready' "$work/$1.out" || { cat "$work/$1.err" >&2; exit 1; }
  echo "$pid"
}
broker=$(start_broker broker "$PORT" "$AMQP_PORT" "$HTTP_PORT")
if [ "$FLOOR" = 1 ]; then
  other=$(start_broker other $((PORT + 1000)) $((AMQP_PORT + 1000)) $((HTTP_PORT + 1000)))
fi

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$broker/status"; }

# Samples the broker's RSS every 200 ms into $1 until killed.
sample_rss() {
  while kill -0 "$broker" 2>/dev/null; do rss_kb >>"$1"; sleep 0.2; done
}

one_run() { # $1 = label, $2 = flood target: none, same (the workload's broker) or other
  local label=$1 target=$2 fpid="" spid
  : >"$work/rss.$label"
  sample_rss "$work/rss.$label" &
  spid=$!
  # The flood goes first and holds every unauthenticated slot (it opens
  # its population at 2,000 sockets a second); the workload then logs in
  # through it, which works because a newcomer evicts the oldest socket
  # that has not logged in (docs/security.md).
  if [ "$target" != none ]; then
    local off=0
    if [ "$target" = other ]; then off=1000; fi
    ${FLOOD_PREFIX:-} python3 benches/flood.py $((PORT + off)) $((AMQP_PORT + off)) $((WARMUP + DURATION + 6)) \
      "$CONNECTIONS" >"$work/flood.$label" &
    fpid=$!
    sleep 3
  fi
  "$LOADGEN" --url "ringmq://127.0.0.1:$PORT" --size "$SIZE" --rate "$RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --queue-prefix "flood-$label" \
    --label "$label" --json "$work/$label.json" --quiet >"$work/$label.out" 2>&1 || {
    cat "$work/$label.out" >&2
    exit 1
  }
  if [ -n "$fpid" ]; then wait "$fpid"; fi
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  python3 - "$work/$label.json" "$work/rss.$label" "$label" "${fpid:+$work/flood.$label}" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
rss = [int(x) for x in open(sys.argv[2]).read().split() if x.strip()]
e2e = run["latency_us"]
line = (f"{sys.argv[3]:<10} p50 {e2e['p50']:.0f} us  p99 {e2e['p99']:.0f} us  max {e2e['max']:.0f} us  "
        f"lost {run['lost']}  rate {run['msgs_per_s']:.0f}/s  "
        f"broker RSS peak {max(rss) / 1024:.0f} MiB")
print(line)
if len(sys.argv) > 4 and sys.argv[4]:
    print("           flood:", open(sys.argv[4]).read().strip())
EOF
}

echo "broker RSS at start: $(( $(rss_kb) / 1024 )) MiB; $RATE msg/s of $SIZE B, $CONNECTIONS hostile sockets"
for i in $(seq 1 "$RUNS"); do
  one_run "alone-$i" none
  one_run "flood-$i" same
  if [ "$FLOOR" = 1 ]; then one_run "floor-$i" other; fi
done
echo "broker log lines about evicted/closed connections: $(grep -c 'closing\|unauthenticated_connections_max' "$work/broker.err" || true)"
