#!/usr/bin/env bash
# Connection flood (issue 14's benchmark; docs/benchmarks.md, "Connection
# flood"): a fixed-rate workload alone, then the same workload while
# benches/flood.py keeps 10,000 hostile sockets open (half idle, half
# sending garbage, oversized frame headers, trickled handshakes or bad
# logins), alternating RUNS times. Prints, for each run, the workload's
# end-to-end p50/p99/max and lost count, and the broker's peak RSS.
#
#   benches/flood.sh [RINGMQ_BIN] [LOADGEN_BIN]
#
# Environment: RATE (20000), SIZE (1024), DURATION (10 s), WARMUP (6 s),
# CONNECTIONS (10000), RUNS (2), PORT (27680), AMQP_PORT (27672),
# HTTP_PORT (27692). Bounded: RUNS x 2 x (WARMUP + DURATION + drain).
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

work=$(mktemp -d)
broker=""
cleanup() {
  if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$RINGMQ" serve --cores 2 --data-dir "$work/data" --listen "127.0.0.1:$PORT" \
  --amqp-listen "127.0.0.1:$AMQP_PORT" --metrics-listen "127.0.0.1:$HTTP_PORT" \
  >"$work/broker.out" 2>"$work/broker.err" &
broker=$!
for _ in $(seq 100); do grep -q '^ringmq ready' "$work/broker.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ringmq ready' "$work/broker.out" || { cat "$work/broker.err" >&2; exit 1; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$broker/status"; }

# Samples the broker's RSS every 200 ms into $1 until killed.
sample_rss() {
  while kill -0 "$broker" 2>/dev/null; do rss_kb >>"$1"; sleep 0.2; done
}

one_run() { # $1 = label, $2 = flood (0/1)
  local label=$1 flood=$2 fpid="" spid
  : >"$work/rss.$label"
  sample_rss "$work/rss.$label" &
  spid=$!
  # The workload connects first; the flood starts during its warmup (the
  # flooder opens its population at 2,000 sockets a second, so the measured
  # window runs with the whole population). While the flood holds every
  # unauthenticated slot, a new login is refused (docs/security.md).
  "$LOADGEN" --url "ringmq://127.0.0.1:$PORT" --size "$SIZE" --rate "$RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --queue-prefix "flood-$label" \
    --label "$label" --json "$work/$label.json" --quiet >"$work/$label.out" 2>&1 &
  local lpid=$!
  if [ "$flood" = 1 ]; then
    sleep 1
    python3 benches/flood.py "$PORT" "$AMQP_PORT" $((WARMUP + DURATION + 4)) "$CONNECTIONS" >"$work/flood.$label" &
    fpid=$!
  fi
  wait "$lpid" || {
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
  one_run "alone-$i" 0
  one_run "flood-$i" 1
done
echo "broker log lines about refused/closed connections: $(grep -c 'closing connection\|refusing' "$work/broker.err" || true)"
