#!/usr/bin/env bash
# A lighter companion to benches/scrape.sh: how long one shard stops
# answering while /metrics/per-object is scraped back to back.
#
#   benches/scrape-probe.sh [RINGMQ_BIN]
#
# One shard (it serves the HTTP listener too, so it both builds and formats
# every snapshot), $QUEUES idle queues, and one AMQP client doing
# queue.declare(passive) round trips one at a time: first alone, then with
# a curl loop scraping. Prints the round-trip p50/p99/max of both phases.
set -euo pipefail
cd "$(dirname "$0")/.."

RINGMQ=${1:-target/release/ringmq}
QUEUES=${QUEUES:-10000}
SECONDS_EACH=${SECONDS_EACH:-8}
AMQP_PORT=${AMQP_PORT:-25772}
HTTP_PORT=${HTTP_PORT:-25792}
PY=${PY:-.venv/bin/python}

work=$(mktemp -d)
broker=""
cleanup() {
  if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$RINGMQ" serve --cores 1 --data-dir "$work/data" --listen 127.0.0.1:0 \
  --amqp-listen "127.0.0.1:$AMQP_PORT" --metrics-listen "127.0.0.1:$HTTP_PORT" \
  >"$work/broker.out" 2>"$work/broker.err" &
broker=$!
for _ in $(seq 100); do grep -q '^ringmq ready' "$work/broker.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ringmq ready' "$work/broker.out" || { cat "$work/broker.err" >&2; exit 1; }

"$PY" - "$AMQP_PORT" "$HTTP_PORT" "$QUEUES" "$SECONDS_EACH" "$work/scrapes" <<'EOF'
import subprocess, sys, time, pika
port, http, n, each = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = conn.channel()
for i in range(n):
    ch.queue_declare(f"probe-idle-{i}")
ch.queue_declare("probe")

def probe(label):
    rtts = []
    end = time.monotonic() + each
    while time.monotonic() < end:
        t = time.monotonic()
        ch.queue_declare("probe", passive=True)
        rtts.append(time.monotonic() - t)
    rtts.sort()
    pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1e3
    print(f"{label:>10}: {len(rtts)} round trips, p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, "
          f"p99.9 {pick(0.999):.2f} ms, max {rtts[-1] * 1e3:.1f} ms", flush=True)

probe("quiet")
url = f"http://127.0.0.1:{http}/metrics/per-object"
log = sys.argv[5]
scraper = subprocess.Popen(["bash", "-c", f"exec > {log}; while :; do curl -s -o /dev/null -w '%{{time_total}}\\n' {url}; done"])
try:
    time.sleep(0.5)
    probe("scraping")
finally:
    scraper.kill()
    scraper.wait()
conn.close()
times = sorted(float(l) for l in open(log) if l.strip())
print(f"   scrapes: {len(times)}, median {times[len(times) // 2] * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms")
EOF
