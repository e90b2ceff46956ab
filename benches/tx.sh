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

cleanup() {
    set +eu
    if [ -n "$RINGMQ_PID" ]; then
        kill "$RINGMQ_PID" 2>/dev/null
        wait "$RINGMQ_PID" 2>/dev/null
    fi
    if [ "$RABBIT_STARTED" = 1 ]; then
        rabbit_env
        rabbitmqctl -n "$RABBIT_NODE" stop >>"$LOG.rabbit" 2>&1
        local epmd
        epmd=$(ss -ltnpH "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
        [ -n "$epmd" ] && kill "$epmd" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
    local count=$1 base p ok
    for _ in $(seq 1 200); do
        base=$((20000 + RANDOM % 30000))
        ok=1
        for p in $(seq "$base" $((base + count - 1))); do
            if ss -ltnH "sport = :$p" | grep -q .; then ok=0; break; fi
        done
        if [ $ok = 1 ]; then echo "$base"; return; fi
    done
    echo "no free ports" >&2
    exit 1
}

wait_port() { # port seconds
    local i
    for i in $(seq 1 $(($2 * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

rabbit_env() {
    export RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_PORT=$EPMD_PORT
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_MNESIA_BASE=$TMP/rabbit/mnesia RABBITMQ_LOG_BASE=$TMP/rabbit/log
    export RABBITMQ_ENABLED_PLUGINS_FILE=$TMP/rabbit/enabled_plugins RABBITMQ_PID_FILE=$TMP/rabbit/pid
    export RABBITMQ_CONFIG_FILE=$TMP/rabbit/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=$TMP/rabbit/advanced.config
    export RABBITMQ_PLUGINS_EXPAND_DIR=$TMP/rabbit/plugins-expand
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

start_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null; then
        say "installing rabbitmq-server from Debian's packages"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server; } >>"$LOG.rabbit" 2>&1
    fi
    local base
    base=$(free_ports 3)
    RABBIT_PORT=$base DIST_PORT=$((base + 1)) EPMD_PORT=$((base + 2))
    mkdir -p "$TMP/rabbit"
    echo "[]." >"$TMP/rabbit/enabled_plugins"
    cat >"$TMP/rabbit/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
EOF
    id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq "$TMP/rabbit"
    chmod 755 "$TMP"
    rabbit_env
    say "starting RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) on 127.0.0.1:$RABBIT_PORT"
    nohup rabbitmq-server >"$TMP/rabbit/stdout.log" 2>&1 &
    RABBIT_STARTED=1
    wait_port "$RABBIT_PORT" 60 || true
    rabbitmqctl -n "$RABBIT_NODE" await_startup --timeout 60 >>"$LOG.rabbit" 2>&1
}

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
