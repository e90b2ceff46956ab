#!/usr/bin/env bash
# AMQP transactions, commits per second: ringmq against RabbitMQ, with
# `ringmq-loadgen tx` (one channel, closed loop: N publishes and a
# tx.commit in one write, then wait for commit-ok).
#
#   benches/tx.sh [OUT_DIR]          (default: target/tx-bench)
#
# Environment:
#   ROUNDS=3          alternating rounds; each runs every case on ringmq, then RabbitMQ
#   DURATION=5 WARMUP=1   seconds per run (measured, warmup)
#   PER_TX="1 100"    messages per transaction
#   MODES="transient persistent"   16 B messages to a transient queue, or
#                     persistent ones to a durable queue (fdatasync per commit)
#   SIZE=16
#   SKIP_RABBITMQ=1
#
# Prints min / median / max commits per second over the rounds, per case
# and broker; every run's line is in OUT_DIR/tx.log. Then, with the venv
# of ./scripts/test.sh present, runs tests/pika/tx.py against RabbitMQ
# (the same program the test suite runs against ringmq). RabbitMQ is started
# as benches/compare.sh starts it (installed from Debian's packages when
# missing; its own node on spare loopback ports, data under a temporary
# directory); ringmq from `cargo build --release`. Both stop on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/tx-bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PER_TX=${PER_TX:-1 100}
MODES=${MODES:-transient persistent}
SIZE=${SIZE:-16}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TMP=$(mktemp -d /tmp/ringmq-tx.XXXXXX)
mkdir -p "$OUT"
LOG=$OUT/tx.log
: >"$LOG"

say() { echo "tx: $*" >&2; }

RABBIT_NODE=rabbit-tx-$$@localhost
RABBIT_STARTED=0
RINGMQ_PID=
# free_ports, wait_port, start_rabbitmq, stop_rabbitmq (shared with
# compare.sh and report.sh).
# shellcheck source=benches/rabbitmq-lib.sh
. "$ROOT/benches/rabbitmq-lib.sh"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

start_ringmq() {
    local base
    base=$(free_ports 8)
    mkdir -p "$TMP/ringmq"
    say "starting ringmq on 127.0.0.1:$((base + 4)) (AMQP)"
    "$TARGET/release/ringmq" serve --data-dir "$TMP/ringmq" --listen "127.0.0.1:$base" \
        --amqp-listen "127.0.0.1:$((base + 4))" --metrics-listen "127.0.0.1:$((base + 5))" \
        >"$OUT/ringmq.log" 2>&1 &
    RINGMQ_PID=$!
    RINGMQ_AMQP_PORT=$((base + 4))
    wait_port "$RINGMQ_AMQP_PORT" 20
}

say "building ringmq and ringmq-loadgen (release)"
(cd "$ROOT" && cargo build --release --bin ringmq && cargo build --release -p ringmq-loadgen) >>"$LOG.build" 2>&1
LOADGEN=$TARGET/release/ringmq-loadgen
start_ringmq
[ "${SKIP_RABBITMQ:-0}" = 1 ] || start_rabbitmq

run() { # broker port per_tx mode round
    local flags=()
    [ "$4" = persistent ] && flags=(--persistent)
    local line
    line=$("$LOADGEN" tx --url "amqp://guest:guest@127.0.0.1:$2/%2f" --queue "tx-bench-$4" --per-tx "$3" \
        --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" "${flags[@]}")
    echo "broker=$1 mode=$4 round=$5 $line" | tee -a "$LOG" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        for n in $PER_TX; do
            run ringmq "$RINGMQ_AMQP_PORT" "$n" "$mode" "$round"
            [ "${SKIP_RABBITMQ:-0}" = 1 ] || run rabbitmq "$RABBIT_PORT" "$n" "$mode" "$round"
        done
    done
done

# The same pika program the tests run against ringmq (tests/pika/tx.py),
# against this RabbitMQ: the same visible results (docs/amqp.md).
if [ "${SKIP_RABBITMQ:-0}" != 1 ] && [ -x "$ROOT/.venv/bin/python" ]; then
    if (cd "$ROOT/tests/pika" && AMQP_PORT=$RABBIT_PORT "$ROOT/.venv/bin/python" tx.py) >"$OUT/pika-rabbitmq.log" 2>&1; then
        say "tests/pika/tx.py passes against RabbitMQ too ($OUT/pika-rabbitmq.log)"
    else
        say "tests/pika/tx.py FAILS against RabbitMQ: see $OUT/pika-rabbitmq.log"
    fi
fi

# min / median / max commits per second per (mode, per_tx, broker).
echo "mode        per_tx broker    commits/s min / median / max    msgs/s (median)"
for mode in $MODES; do
    for n in $PER_TX; do
        for broker in ringmq rabbitmq; do
            grep -E "broker=$broker mode=$mode .* per_tx=$n " "$LOG" | grep -o 'commits_per_s=[0-9]*' | cut -d= -f2 |
                sort -n | awk -v m="$mode" -v n="$n" -v b="$broker" '
                { v[NR] = $1 }
                END { if (NR == 0) exit; med = v[int((NR + 1) / 2)];
                      printf "%-11s %6s %-9s %8d / %8d / %8d    %10d\n", m, n, b, v[1], med, v[NR], med * n }'
        done
    done
done
