#!/usr/bin/env bash
# Traffic latency while /metrics/per-object is scraped back to back on a
# broker holding many queues (docs/benchmarks.md, "Other measurements").
#
#   benches/scrape.sh [RINGMQ_BIN] [LOADGEN_BIN]
#
# Starts a 2-shard broker on loopback ports with a temporary data dir,
# declares $QUEUES idle queues over AMQP (pika from .venv), then runs the
# load generator at a fixed rate twice: once alone, once with a curl loop
# scraping /metrics/per-object for as long as the run lasts. Prints the
# generator's end-to-end p50/p99/max for both runs and the scrape times.
# Bounded: two runs of WARMUP + DURATION seconds plus the setup.
set -euo pipefail
cd "$(dirname "$0")/.."

RINGMQ=${1:-target/release/ringmq}
LOADGEN=${2:-target/release/ringmq-loadgen}
QUEUES=${QUEUES:-10000}
RATE=${RATE:-10000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
PORT=${PORT:-25680}
AMQP_PORT=${AMQP_PORT:-25672}
HTTP_PORT=${HTTP_PORT:-25692}
PY=${PY:-.venv/bin/python}

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

"$PY" - "$AMQP_PORT" "$QUEUES" <<'EOF'
import sys, pika
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = conn.channel()
for i in range(n):
    ch.queue_declare(f"scrape-idle-{i}")
conn.close()
EOF
queues=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '$1 == "ringmq_queues" {print $2}')
bytes=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics/per-object" | wc -c)
echo "queues: $queues; /metrics/per-object: $bytes bytes"

run() { # label
  "$LOADGEN" --url "ringmq://127.0.0.1:$PORT" --rate "$RATE" --duration "$DURATION" \
    --warmup "$WARMUP" --drain 2 --quiet --json "$work/$1.json" >/dev/null
  "$PY" - "$work/$1.json" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_us"]
print(f"{sys.argv[2]:>10}: received {r['received']} lost {r['lost']}  end-to-end p50 {l['p50']:.0f} us"
      f"  p99 {l['p99']:.0f} us  p99.9 {l['p999']:.0f} us  max {l['max']:.0f} us")
EOF
}

run quiet
# The scraper: back to back for the length of the second run.
end=$(( $(date +%s) + WARMUP + DURATION + 1 ))
( while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$HTTP_PORT/metrics/per-object"
  done >"$work/scrapes" ) &
scraper=$!
run scraping
wait "$scraper"
sort -n "$work/scrapes" | awk '{ t[NR] = $1; s += $1 } END {
  printf "   scrapes: %d, %.1f ms mean, %.1f ms median, %.1f ms max\n", NR, 1000 * s / NR, 1000 * t[int((NR + 1) / 2)], 1000 * t[NR] }'
