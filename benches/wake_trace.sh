#!/usr/bin/env bash
# Where an unbatched client's message waits in the broker: ringmq with one
# shard on core 0 (`--cores 1`), benches/ordinary (amqp091-go, one publish
# per call) on core 1 at a fixed rate, and 3 s of the run recorded with
# `perf record -a`: the shard's wake-ups (`sched_waking`, `sched_wakeup`),
# its switches, its io_uring completions and `sendto`s, and the client's
# body writes. benches/wake_trace.py then prints
#
# - the broker's turnaround: from a publish's body write to the next
#   delivery `sendto` (percentiles);
# - the shard's wake-ups, split by where they ran: queued to its idle CPU
#   (woken there, after an interrupt) or woken in place;
# - with SLOW=N, the N slowest turnarounds' events, one per line.
#
#   benches/wake_trace.sh [RATE] [SIZE]        (default 5000 1024)
#
# BIN (default target/release) holds the `ringmq` to trace; CONF a TOML
# config for it (for example `idle_spin_us = 100`). Needs perf and root.
# docs/benchmarks.md, "Ordinary clients on a quiet machine".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${1:-5000}
SIZE=${2:-1024}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringmq-wake.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT

(cd "$ROOT" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE=$DIR/gocache \
    go build -o "$DIR/ordinary" benches/ordinary/ordinary.go)
taskset -c 0 "$BIN/ringmq" serve ${CONF:+--config "$CONF"} --data-dir "$DIR/data" --listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --cores 1 >"$DIR/out" 2>"$DIR/log" &
PID=$!
for _ in $(seq 1 300); do grep -q "ringmq ready" "$DIR/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o 'amqp=[^ ]*' "$DIR/out" | cut -d= -f2)
taskset -c 1 "$DIR/ordinary" run -url "amqp://guest:guest@$ADDR/%2f" -size "$SIZE" -rate "$RATE" \
    -duration 8 -warmup 2 -json "$DIR/run.json" >/dev/null 2>&1 &
CLIENT=$!
sleep 4
# The client's body frames are the writes of exactly SIZE + 8 bytes.
perf record -q -o "$DIR/perf.data" -a \
    -e sched:sched_waking --filter 'comm ~ "ringmq-shard*"' \
    -e sched:sched_wakeup --filter 'comm ~ "ringmq-shard*"' \
    -e sched:sched_switch --filter 'next_comm ~ "ringmq-shard*" || prev_comm ~ "ringmq-shard*"' \
    -e syscalls:sys_enter_sendto -e io_uring:io_uring_complete \
    -e syscalls:sys_enter_write --filter "count == $((SIZE + 8))" -- sleep 3 >/dev/null 2>&1
wait $CLIENT
perf script -i "$DIR/perf.data" -F comm,tid,cpu,time,event,trace >"$DIR/perf.txt" 2>/dev/null
python3 "$ROOT/benches/wake_trace.py" "$DIR/perf.txt" "$((SIZE + 8))" "${SLOW:-0}"
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["latency_us"]; print("the client: p50 %.0f, p90 %.0f, p99 %.0f us from the actual send" % (l["p50"], l["p90"], l["p99"]))' "$DIR/run.json"
