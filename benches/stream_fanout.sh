#!/usr/bin/env bash
# Stream fan-out (issue 18): one producer fills a stream, then CONSUMERS
# consumers each read all of it, at once. The same AMQP program
# (examples/stream_fanout_amqp.rs, lapin: x-stream-offset first,
# prefetch 2000) against ringmq and RabbitMQ 3.10's streams, then ringmq's
# native stream consumer (examples/stream_fanout.rs, StreamSubscribe).
#
#   benches/stream_fanout.sh [OUT_DIR]     (default: target/stream-fanout)
#
# Environment:
#   CONSUMERS=10  SIZES="16 1024"  MESSAGES=1000000 (per size; 1 KiB: MESSAGES/4)
#   ROUNDS=1  SKIP_RABBITMQ=1
#   CLIENTS="amqp native" (which of ringmq's runs)
#   SKIP_BUILD=1: use the binaries already in $CARGO_TARGET_DIR/release
#     (to compare two builds kept apart, in alternating runs)
#
# Prints, per broker, size and client, the deliveries per second in all,
# the MB/s of bodies and the broker's peak RSS (VmHWM) after the run; and
# the loopback bandwidth from iperf3, installed if missing (the ceiling for
# deliveries on one machine). Each run's line is in OUT_DIR/fanout.log.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/stream-fanout}
CONSUMERS=${CONSUMERS:-10}
SIZES=${SIZES:-16 1024}
MESSAGES=${MESSAGES:-1000000}
ROUNDS=${ROUNDS:-1}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TMP=$(mktemp -d /tmp/ringmq-fanout.XXXXXX)
mkdir -p "$OUT"
LOG=$OUT/fanout.log
: >"$LOG"

say() { echo "fanout: $*" >&2; }

RABBIT_NODE=rabbit-fanout-$$@localhost
RABBIT_STARTED=0
RINGMQ_PID=
# shellcheck source=benches/rabbitmq-lib.sh
. "$ROOT/benches/rabbitmq-lib.sh"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

start_ringmq() {
    local base
    base=$(free_ports 8)
    rm -rf "$TMP/ringmq"
    mkdir -p "$TMP/ringmq"
    "$TARGET/release/ringmq" serve --data-dir "$TMP/ringmq" --listen "127.0.0.1:$base" \
        --amqp-listen "127.0.0.1:$((base + 4))" --metrics-listen "127.0.0.1:$((base + 5))" \
        >"$OUT/ringmq.log" 2>&1 &
    RINGMQ_PID=$!
    RINGMQ_PORT=$base
    RINGMQ_AMQP_PORT=$((base + 4))
    wait_port "$RINGMQ_AMQP_PORT" 20
}

stop_ringmq() {
    kill "$RINGMQ_PID" 2>/dev/null || true
    wait "$RINGMQ_PID" 2>/dev/null || true
    RINGMQ_PID=
}

hwm_mb() { # pid
    awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

CLIENTS=${CLIENTS:-amqp native}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "building ringmq and the fan-out programs (release)"
    (cd "$ROOT" && cargo build --release --bin ringmq --example stream_fanout --example stream_fanout_amqp) >>"$LOG.build" 2>&1
fi
EX=$TARGET/release/examples

# The ceiling for deliveries on one machine: installed from Debian's
# packages when missing, as the RabbitMQ it compares against is.
if ! command -v iperf3 >/dev/null && command -v apt-get >/dev/null; then
    say "installing iperf3"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y iperf3; } >>"$LOG.build" 2>&1 || true
fi
if command -v iperf3 >/dev/null; then
    port=$(free_ports 1)
    iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    sleep 0.5
    bw=$(iperf3 -c 127.0.0.1 -p "$port" -t 5 -f g 2>/dev/null | awk '/receiver/ { print $(NF-2) }')
    say "loopback bandwidth (iperf3, 5 s): ${bw:-?} Gbit/s"
    echo "iperf3_gbit_per_s=${bw:-?}" >>"$LOG"
else
    say "iperf3 is not installed: no loopback bandwidth figure"
fi

[ "${SKIP_RABBITMQ:-0}" = 1 ] || start_rabbitmq

for round in $(seq 1 "$ROUNDS"); do
    for size in $SIZES; do
        n=$MESSAGES
        [ "$size" -ge 1024 ] && n=$((MESSAGES / 4))
        # A fresh broker per run: each run's peak RSS is its own.
        if [[ " $CLIENTS " == *" amqp "* ]]; then
            start_ringmq
            line=$("$EX/stream_fanout_amqp" "amqp://guest:guest@127.0.0.1:$RINGMQ_AMQP_PORT/%2f" "$CONSUMERS" "$size" "$n" 2>>"$LOG")
            echo "broker=ringmq client=amqp size=$size messages=$n consumers=$CONSUMERS round=$round $line rss_peak_mb=$(hwm_mb "$RINGMQ_PID")" | tee -a "$LOG" >&2
            stop_ringmq
        fi
        if [[ " $CLIENTS " == *" native "* ]]; then
            start_ringmq
            line=$("$EX/stream_fanout" "ringmq://127.0.0.1:$RINGMQ_PORT" "$CONSUMERS" "$size" "$n" 2>>"$LOG" | tail -1)
            echo "broker=ringmq client=native size=$size messages=$n consumers=$CONSUMERS round=$round $line rss_peak_mb=$(hwm_mb "$RINGMQ_PID")" | tee -a "$LOG" >&2
            stop_ringmq
        fi
        if [ "${SKIP_RABBITMQ:-0}" != 1 ]; then
            line=$("$EX/stream_fanout_amqp" "amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f" "$CONSUMERS" "$size" "$n" 2>>"$LOG")
            echo "broker=rabbitmq client=amqp size=$size messages=$n consumers=$CONSUMERS round=$round $line rss_peak_mb=$(hwm_mb "$(rabbit_pid)")" | tee -a "$LOG" >&2
        fi
    done
done
