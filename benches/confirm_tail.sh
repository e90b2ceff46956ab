#!/usr/bin/env bash
# Publish-to-confirm latency at a fixed rate: one shard pinned to core 0,
# the load generator on core 1, 1 KiB persistent messages with confirms
# into one durable queue, 1 producer and 1 consumer (the storage issue's
# workload). Waits until the machine is quiet first (> 92 % idle for 3 s),
# and says so when anything else used the CPU during the run, because on a
# 2-core machine one build in the background decides the tail.
#
#   benches/confirm_tail.sh [RATE] [DURATION_S]     (default 300000 8)
#
# Env: MODE=memory sends transient messages (no disk at all: the floor of
# the machine and the generator), EXTRA adds config lines (for example
# EXTRA='fsync = "never"'), FLOOR=0 skips the disk floor. Prints first the
# disk's own floor at this rate (benches/disk_floor.py: an ideal group
# commit with no CPU cost, on the same filesystem, just before the broker
# runs), then the generator's confirm and end-to-end percentiles, the
# broker's own confirm histogram, and fsync figures.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${1:-300000}
DUR=${2:-8}
cd "$ROOT"
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringmq-tail.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT

idle_pct() { # CPU idle share over one second
  read -r _ a b c d e f g h _ </proc/stat
  local i0=$((d + e)) t0=$((a + b + c + d + e + f + g + h))
  sleep 1
  read -r _ a b c d e f g h _ </proc/stat
  echo $((100 * (d + e - i0) / (a + b + c + d + e + f + g + h - t0 + 1)))
}
quiet=0
for _ in $(seq 600); do
  if [ "$(idle_pct)" -ge 92 ]; then quiet=$((quiet + 1)); else quiet=0; fi
  [ $quiet -ge 3 ] && break
done
[ $quiet -ge 3 ] || echo "confirm_tail.sh: the machine never got quiet; the figures below are not clean" >&2

if [ "${MODE:-}" != memory ] && [ "${FLOOR:-1}" != 0 ]; then
  python3 "$ROOT/benches/disk_floor.py" "$RATE" 1024 "$DUR" "$DIR"
fi

cat >"$DIR/ringmq.toml" <<TOML
cores = 1
data_dir = "$DIR/data"
listen = "127.0.0.1:0"
amqp_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
${EXTRA:-}
TOML
"$BIN/ringmq" serve --config "$DIR/ringmq.toml" >"$DIR/serve.out" 2>"$DIR/serve.err" &
PID=$!
for _ in $(seq 100); do grep -q "ringmq ready" "$DIR/serve.out" && break; sleep 0.1; done
grep -q "ringmq ready" "$DIR/serve.out" || { echo "broker did not start" >&2; tail "$DIR/serve.err" >&2; exit 1; }
URL=ringmq://$(grep -o 'native=[^ ]*' "$DIR/serve.out" | cut -d= -f2)
METRICS=$(grep -o 'metrics=[^ ]*' "$DIR/serve.out" | cut -d= -f2)
PERSIST=--persistent
[ "${MODE:-}" = memory ] && PERSIST=

# Anything but the broker and the generator using a core spoils the run.
(
  while sleep 0.3; do
    ps -eo pid=,pcpu=,comm= | awk -v b="$PID" '$1 != b && $2 > 20 && $3 !~ /^(ringmq.*|ps|awk)$/ {print; exit}'
  done
) >"$DIR/others" &
WATCH=$!
"$BIN/ringmq-loadgen" --url "$URL" --size 1024 --duration "$DUR" --warmup 2 $PERSIST --confirm \
  --rate "$RATE" --cores 1 --quiet --json "$DIR/lg.json" >"$DIR/lg.out" 2>"$DIR/lg.err"
kill $WATCH 2>/dev/null || true
curl -s "http://$METRICS/metrics" | grep -E '^ringmq_storage_(fsync|segments_reused)|^ringmq_publish_confirm_latency_seconds_(bucket\{le="0.00(1|25|5)"\}|count)'
python3 - "$DIR/lg.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("confirm_latency_us", "latency_us"):
    print(k, {x: j[k][x] for x in ("p50", "p90", "p99", "p999", "max")})
print("delivered/s", j["delivered_per_s"], "lost", j["lost"])
PY
if [ -s "$DIR/others" ]; then
  echo "confirm_tail.sh: something else ran during the measurement: $(head -1 "$DIR/others")" >&2
fi
