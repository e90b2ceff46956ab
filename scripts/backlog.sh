#!/usr/bin/env bash
# A backlog larger than the memory budget: publish BYTES of persistent
# messages (confirmed) into one durable queue with no consumer, restart the
# broker (recovery leaves the backlog past the budget on disk), then drain
# it with one consumer. Reports the publish and drain rates, the recovery
# time and the broker's peak RSS (VmHWM) in each of its two lives.
#
#   scripts/backlog.sh [BYTES] [SIZE]      (default 20000000000 4096)
#
# Env: BUDGET (memory_budget_bytes, default 268435456), CORES (default 1),
# SEGMENT (segment_bytes, default 67108864), DATA_PARENT (where the data
# dir goes, default ${TMPDIR:-/tmp}). Not run by CI: it needs BYTES of free
# disk (checked first with df, with 10 % and 1 GiB to spare).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BYTES=${1:-20000000000}
SIZE=${2:-4096}
BUDGET=${BUDGET:-268435456}
CORES=${CORES:-1}
SEGMENT=${SEGMENT:-67108864}
PARENT=${DATA_PARENT:-${TMPDIR:-/tmp}}
COUNT=$((BYTES / SIZE))
need=$((BYTES + BYTES / 10 + (1 << 30)))
avail=$(df -B1 --output=avail "$PARENT" | tail -1 | tr -d ' ')
if [ "$avail" -lt "$need" ]; then
  echo "backlog.sh: $PARENT has $((avail >> 20)) MiB free; $((need >> 20)) MiB needed for $BYTES bytes. Refusing." >&2
  exit 1
fi
cd "$ROOT"
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/ringmq
DATA=$(mktemp -d "$PARENT/ringmq-backlog.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$DATA"' EXIT
cat >"$DATA/ringmq.toml" <<TOML
cores = $CORES
pin_cores = false
data_dir = "$DATA/data"
listen = "127.0.0.1:0"
amqp_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
memory_budget_bytes = $BUDGET
segment_bytes = $SEGMENT
message_bytes_max = $((SIZE > 1048576 ? SIZE : 1048576))
TOML

start() {
  : >"$DATA/serve.out"
  "$BIN" serve --config "$DATA/ringmq.toml" >"$DATA/serve.out" 2>>"$DATA/serve.err" &
  PID=$!
  for _ in $(seq 1 3000); do grep -q "ringmq ready" "$DATA/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "ringmq ready" "$DATA/serve.out" || { echo "broker did not start" >&2; tail "$DATA/serve.err" >&2; exit 1; }
  URL=ringmq://$(grep -o 'native=[^ ]*' "$DATA/serve.out" | cut -d= -f2)
}
hwm() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$PID/status"; }
rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status"; }
now() { date +%s.%N; }

echo "backlog: $COUNT x $SIZE B = $((COUNT * SIZE >> 20)) MiB, budget $((BUDGET >> 20)) MiB, $CORES shard(s), data in $DATA"
start
t0=$(now)
"$BIN" pub --url "$URL" --queue backlog --count "$COUNT" --size "$SIZE" --persistent --confirm >"$DATA/pub.out"
t1=$(now)
pub_rate=$(echo "$COUNT / ($t1 - $t0)" | bc)
pub_mib=$(echo "$COUNT * $SIZE / 1048576 / ($t1 - $t0)" | bc)
echo "publish: $(tail -1 "$DATA/pub.out") in $(printf %.1f "$(echo "$t1 - $t0" | bc)") s: $pub_rate msg/s, $pub_mib MiB/s; broker peak RSS $(hwm) MiB (now $(rss) MiB)"
echo "disk: $(du -sm "$DATA/data" | cut -f1) MiB"
kill -TERM $PID
wait $PID || true
start
echo "restart: $(grep -o 'storage recovered.*' "$DATA/serve.err" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
echo "after recovery: peak RSS $(hwm) MiB"
t0=$(now)
"$BIN" sub --url "$URL" --queue backlog --durable --count "$COUNT" --quiet --timeout 60 2>"$DATA/sub.err" >"$DATA/sub.out"
t1=$(now)
echo "drain: $(tail -1 "$DATA/sub.out") in $(printf %.1f "$(echo "$t1 - $t0" | bc)") s: $(grep -o '[0-9]* msg/s' "$DATA/sub.err"), $(echo "$COUNT * $SIZE / 1048576 / ($t1 - $t0)" | bc) MiB/s; broker peak RSS $(hwm) MiB"
sleep 2
echo "disk after the drain: $(du -sm "$DATA/data" | cut -f1) MiB"
kill -TERM $PID
wait $PID || true
PID=
