#!/usr/bin/env bash
# Fanout throughput: ringmq-loadgen publishing through a fanout exchange
# bound to QUEUES queues, one consumer per queue, against a fresh broker
# (release build, default shard count: one per core).
#
#   benches/fanout.sh [QUEUES] [PRODUCERS] [RUNS]      (default 10 1 3)
#
# Prints each run's deliveries/s (messages received by the consumers,
# summed over the queues) and publishes/s, then the median deliveries/s.
# Environment: SIZE=16, DURATION=10, WARMUP=2, CORES (loadgen --cores;
# default 0 on machines with 2 cores or fewer, so the generator takes one
# core and the broker's shards the rest), DRAIN=10 (seconds the consumers
# may take after the run for the backlog), LOADGEN_FLAGS (extra flags, e.g.
# "--confirm"), OUT (where the JSON of each run goes; default a temp dir).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUEUES=${1:-10}
PRODUCERS=${2:-1}
RUNS=${3:-3}
SIZE=${SIZE:-16}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
DRAIN=${DRAIN:-10}
LOADGEN_FLAGS=${LOADGEN_FLAGS:-}
if [ -z "${CORES:-}" ] && [ "$(nproc)" -le 2 ]; then CORES=0; fi
CORE_ARGS=()
[ -n "${CORES:-}" ] && CORE_ARGS=(--cores "$CORES")
cd "$ROOT"
cargo build --release -q --bin ringmq
cargo build --release -q -p ringmq-loadgen
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DATA=$(mktemp -d /tmp/ringmq-fanout.XXXXXX)
OUT=${OUT:-$DATA}
mkdir -p "$OUT"
"$TARGET/release/ringmq" serve --listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$DATA/data" >"$DATA/serve.out" 2>"$DATA/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do grep -q "ringmq ready" "$DATA/serve.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o 'native=[^ ]*' "$DATA/serve.out" | cut -d= -f2)
[ -n "$ADDR" ] || { echo "broker did not start:" >&2; cat "$DATA/serve.err" >&2; exit 1; }
rates=()
for i in $(seq 1 "$RUNS"); do
    json=$OUT/fanout-$QUEUES-q-$PRODUCERS-p-$i.json
    # shellcheck disable=SC2086
    "$TARGET/release/ringmq-loadgen" --url "ringmq://$ADDR" --exchange bench-fanout --queues "$QUEUES" \
        --consumers "$QUEUES" --producers "$PRODUCERS" --size "$SIZE" --duration "$DURATION" \
        --warmup "$WARMUP" --drain "$DRAIN" "${CORE_ARGS[@]}" --quiet --json "$json" $LOADGEN_FLAGS >"$DATA/run.out"
    line=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.0f %.0f %d %d %d" % (r["delivered_per_s"], r["send_msgs_per_s"], r["lost"], r["duplicates"], r["reordered"]))' "$json")
    read -r delivered published lost dups reord <<<"$line"
    echo "run $i: $delivered deliveries/s, $published publishes/s (lost $lost, duplicates $dups, reordered $reord)"
    rates+=("$delivered")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median: $median deliveries/s ($PRODUCERS producer(s), fanout to $QUEUES queues, $SIZE B, loadgen cores ${CORES:-all})"
