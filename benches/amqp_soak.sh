#!/usr/bin/env bash
# Repeated AMQP 16 B runs, each against a fresh broker, logging where the
# kernel placed the publisher's and consumer's connections (which shard)
# and keeping the broker's view and logs of any run that loses a message
# or falls under MIN_RATE (docs/benchmarks.md, History: what decides the AMQP mode,
# and the hunt for a rare loss, 2f8784f).
#
#   benches/amqp_soak.sh RINGMQ [RUNS]        (default RUNS=10)
#
# LOADGEN (default target/release/ringmq-loadgen), DURATION (8 s), MIN_RATE
# (1000000 msg/s). Bounded: RUNS x (DURATION + 2 s warmup + 5 s drain + 3 s).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
RUNS=${2:-10}
LOADGEN=${LOADGEN:-target/release/ringmq-loadgen}
DURATION=${DURATION:-8}
MIN_RATE=${MIN_RATE:-1000000}
work=$(mktemp -d /tmp/ringmq-soak.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
api() { curl -s -u guest:guest "http://$HTTP/api/$1"; }
for i in $(seq 1 "$RUNS"); do
  rm -rf "$work/data"
  RUST_LOG=info "$BIN" serve --listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$work/data" >"$work/serve.out" 2>"$work/serve.err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q "ringmq ready" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  AMQP=$(grep -o 'amqp=[^ ]*' "$work/serve.out" | cut -d= -f2)
  HTTP=$(grep -o 'metrics=[^ ]*' "$work/serve.out" | cut -d= -f2)
  "$LOADGEN" --url "amqp://guest:guest@$AMQP/%2F" --size 16 --duration "$DURATION" --warmup 2 \
    --json "$work/amqp.json" --quiet >"$work/amqp.out" 2>&1 &
  lg=$!
  sleep 3
  # (peer port, shard) of each connection, oldest first: the consumer connects first.
  conns=$(api connections | python3 -c 'import json,sys; print([(c["peer_port"], c["shard"]) for c in sorted(json.load(sys.stdin), key=lambda c: c["peer_port"])])')
  queues=$(api queues | python3 -c 'import json,sys; print([(q["name"], q["shard"]) for q in json.load(sys.stdin)])')
  wait "$lg" || { cat "$work/amqp.out" >&2; exit 1; }
  read -r rate lost stalls < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["msgs_per_s"]), r["lost"], r.get("stalls", 0))' "$work/amqp.json")
  # A run whose generator stalled (loadgen's stall watch) measured the
  # generator: its "lost" messages sat unread in the generator's socket.
  echo "run $i: $rate msg/s, lost $lost, generator stalls $stalls, connections $conns, queues $queues"
  if [ "$lost" != 0 ] || [ "$rate" -lt "$MIN_RATE" ]; then
    keep=$(mktemp -d /tmp/ringmq-soak-kept.XXXXXX)
    api queues >"$keep/queues.json"
    api connections >"$keep/connections.json"
    cp "$work/amqp.out" "$work/amqp.json" "$work/serve.out" "$work/serve.err" "$keep/"
    echo "  kept the broker's view and logs in $keep"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
