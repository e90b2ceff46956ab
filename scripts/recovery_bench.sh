#!/usr/bin/env bash
# Recovery time: fill a log with COUNT persistent messages of SIZE bytes
# (confirmed, no consumer), kill -9 the broker, start it again and report
# the recovery line it logs (`storage recovered ... elapsed_ms=`).
#
#   scripts/recovery_bench.sh [COUNT] [SIZE]      (default 10000000 16)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${1:-10000000}
SIZE=${2:-16}
cd "$ROOT"
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/ringmq
DATA=$(mktemp -d "${TMPDIR:-/tmp}/ringmq-recovery.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$DATA"' EXIT
start() {
  : >"$DATA/serve.out"
  "$BIN" serve --cores 1 --no-pin --listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$DATA/data" >"$DATA/serve.out" 2>"$DATA/serve.err" &
  PID=$!
  for _ in $(seq 1 3000); do grep -q "ringmq ready" "$DATA/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "ringmq ready" "$DATA/serve.out" || { echo "broker did not start" >&2; tail "$DATA/serve.err" >&2; exit 1; }
  URL=ringmq://$(grep -o 'native=[^ ]*' "$DATA/serve.out" | cut -d= -f2)
}
start
"$BIN" pub --url "$URL" --queue recovery --count "$COUNT" --size "$SIZE" --persistent --confirm >"$DATA/pub.out"
echo "filled: $(tail -1 "$DATA/pub.out"); log $(du -sm "$DATA/data" | cut -f1) MiB"
kill -9 $PID
wait $PID 2>/dev/null || true
t0=$(date +%s.%N)
start
t1=$(date +%s.%N)
echo "recovery: $(grep -o 'storage recovered.*' "$DATA/serve.err" | sed 's/\x1b\[[0-9;]*m//g')"
echo "start to ready (process start, recovery, listeners): $(printf %.2f "$(echo "$t1 - $t0" | bc)") s; peak RSS $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$PID/status") MiB"
kill -TERM $PID
wait $PID 2>/dev/null || true
PID=
