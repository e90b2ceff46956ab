#!/usr/bin/env bash
# End-to-end throughput of the `ringmq pub` / `ringmq sub` tools against a
# fresh broker: one queue, one producer, one consumer that acks everything.
#
#   benches/e2e.sh [COUNT] [SIZE] [RUNS]      (default 20000000 16 3)
#
# Prints the consumer's rate (first to last message) for each run and the
# median. Extra `pub` flags can be given in PUB_FLAGS (e.g. "--confirm"); with
# "--persistent" the consumer declares the queue durable too. Without
# "--confirm" in them the producer runs with --no-confirm, the workload these
# figures have always measured (`ringmq pub` confirms by default).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${1:-20000000}
SIZE=${2:-16}
RUNS=${3:-3}
PUB_FLAGS=${PUB_FLAGS:-}
SUB_FLAGS=
case "$PUB_FLAGS" in *--persistent*) SUB_FLAGS=--durable ;; esac
case "$PUB_FLAGS" in *--confirm*) ;; *) PUB_FLAGS="$PUB_FLAGS --no-confirm" ;; esac
cd "$ROOT"
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/ringmq
DATA=$(mktemp -d /tmp/ringmq-e2e.XXXXXX)
OUT=$DATA/serve.out
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA/data" >"$OUT" 2>"$DATA/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do grep -q "ringmq ready" "$OUT" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o 'native=[^ ]*' "$OUT" | cut -d= -f2)
URL=ringmq://$ADDR
rates=()
for i in $(seq 1 "$RUNS"); do
  q=e2e-$i
  # shellcheck disable=SC2086
  "$BIN" sub --url "$URL" --queue "$q" --count "$COUNT" --quiet --timeout 30 $SUB_FLAGS 2>"$DATA/sub.err" >"$DATA/sub.out" &
  SUB=$!
  sleep 0.3
  # shellcheck disable=SC2086
  "$BIN" pub --url "$URL" --queue "$q" --count "$COUNT" --size "$SIZE" $PUB_FLAGS >"$DATA/pub.out"
  wait $SUB
  rate=$(grep -o '[0-9]* msg/s' "$DATA/sub.err" | cut -d' ' -f1)
  echo "run $i: $(tail -1 "$DATA/pub.out"), $(tail -1 "$DATA/sub.out"), $rate msg/s"
  rates+=("$rate")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median: $median msg/s ($COUNT x $SIZE B, pub flags: ${PUB_FLAGS:-none})"
