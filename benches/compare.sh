#!/usr/bin/env bash
# Runs the same workloads against RabbitMQ and ringmq with ringmq-loadgen,
# prints a table with ratios and writes overlaid latency plots.
#
#   benches/compare.sh [OUT_DIR]          (default: target/compare)
#
# Environment:
#   DURATION=10 WARMUP=2   seconds per run (measured, warmup)
#   RATE=5000              msg/s of the fixed-rate latency run
#   CORES=                 loadgen --cores (default: 0 on machines with 2 cores or
#                          fewer, so the generator leaves the brokers a core; else all)
#   RINGMQ_AMQP=1          also run the workloads against ringmq's AMQP front end
#   TLS=1                  also over TLS: ringmq's native TLS listener (ringmq-tls),
#                          AMQPS on ringmq (ringmq-amqps, with RINGMQ_AMQP=1) and on
#                          RabbitMQ (rabbitmq-amqps), with a CA and certificate this
#                          script makes (openssl); the cost of TLS, side by side
#   SKIP_RINGMQ=1 / SKIP_RABBITMQ=1
#   ONLY=16b,fanout        run only these workloads (keys: 16b 1k 1k-persist 4x4
#                          rate fanout; default all)
#
# Needs root (or the rabbitmq user) for RabbitMQ, which is installed from
# Debian's packages when missing and started without systemd on spare
# loopback ports, with its data and logs under a temporary directory. Both
# brokers are stopped on exit. Only loopback addresses are used.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/compare}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-5000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TMP=$(mktemp -d /tmp/ringmq-compare.XXXXXX)
mkdir -p "$OUT"
LOG=$OUT/compare.log
: >"$LOG"

say() { echo "compare: $*" >&2; }

# shellcheck source=benches/rabbitmq-lib.sh
source "$ROOT/benches/rabbitmq-lib.sh"
RINGMQ_PID=

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
say "building ringmq-loadgen (release)"
NATIVE=1
if ! (cd "$ROOT" && cargo build --release -p ringmq-loadgen --features native) >>"$LOG" 2>&1; then
    say "the native driver does not build yet (see $LOG); building without it: ringmq rows will be skipped"
    NATIVE=0
    (cd "$ROOT" && cargo build --release -p ringmq-loadgen) >>"$LOG" 2>&1 || {
        say "ringmq-loadgen does not build; see $LOG"
        exit 1
    }
fi
LOADGEN=$TARGET/release/ringmq-loadgen

# ---------------------------------------------------------------- TLS
# A CA and a certificate for localhost / 127.0.0.1, for both brokers.
make_certs() {
    mkdir -p "$TMP/tls"
    (
        cd "$TMP/tls"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench-ca"
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
        printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" >ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext
    ) >>"$LOG" 2>&1
    chmod 644 "$TMP/tls/"*
}
TLS_ARGS=()
if [ "${TLS:-0}" = 1 ]; then
    make_certs
    CA="cacertfile=$TMP/tls/ca.pem"
fi

# ---------------------------------------------------------------- ringmq
start_ringmq() {
    if ! (cd "$ROOT" && cargo build --release --bin ringmq) >>"$LOG" 2>&1; then
        say "ringmq does not build (see $LOG): skipping ringmq rows"
        return 1
    fi
    local base
    base=$(free_ports 48)
    RINGMQ_PORT=$base
    RINGMQ_AMQP_PORT=$((base + 20))
    mkdir -p "$TMP/ringmq"
    if [ "${TLS:-0}" = 1 ]; then
        # The native TLS port and its shards' ports (+ 1 + i), then AMQPS.
        RINGMQ_TLS_PORT=$((base + 24)) RINGMQ_AMQPS_PORT=$((base + 46))
        TLS_ARGS=(--tls-listen "127.0.0.1:$RINGMQ_TLS_PORT" --amqps-listen "127.0.0.1:$RINGMQ_AMQPS_PORT"
            --tls-cert-file "$TMP/tls/server.pem" --tls-key-file "$TMP/tls/server.key")
    fi
    say "starting ringmq on 127.0.0.1:$RINGMQ_PORT"
    "$TARGET/release/ringmq" serve --data-dir "$TMP/ringmq" --listen "127.0.0.1:$RINGMQ_PORT" \
        --amqp-listen "127.0.0.1:$RINGMQ_AMQP_PORT" --metrics-listen "127.0.0.1:$((base + 21))" \
        "${TLS_ARGS[@]}" >"$OUT/ringmq.log" 2>&1 &
    RINGMQ_PID=$!
    if ! wait_port "$RINGMQ_PORT" 20 || ! kill -0 "$RINGMQ_PID" 2>/dev/null; then
        say "ringmq did not start (see $OUT/ringmq.log): skipping ringmq rows"
        kill "$RINGMQ_PID" 2>/dev/null || true
        RINGMQ_PID=
        return 1
    fi
}

BROKERS=()
if [ "${SKIP_RABBITMQ:-0}" != 1 ] && start_rabbitmq; then
    BROKERS+=("rabbitmq=amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f")
    if [ "${TLS:-0}" = 1 ]; then
        BROKERS+=("rabbitmq-amqps=amqps://guest:guest@localhost:$RABBIT_TLS_PORT/%2f?$CA")
    fi
fi
if [ "${SKIP_RINGMQ:-0}" != 1 ]; then
    if [ "$NATIVE" = 1 ] || [ "${RINGMQ_AMQP:-0}" = 1 ]; then
        if start_ringmq; then
            if [ "$NATIVE" = 1 ]; then
                BROKERS+=("ringmq=ringmq://127.0.0.1:$RINGMQ_PORT")
                if [ "${TLS:-0}" = 1 ]; then
                    BROKERS+=("ringmq-tls=ringmqs://localhost:$RINGMQ_TLS_PORT --tls-ca $TMP/tls/ca.pem")
                fi
            fi
            if [ "${RINGMQ_AMQP:-0}" = 1 ]; then
                BROKERS+=("ringmq-amqp=amqp://guest:guest@127.0.0.1:$RINGMQ_AMQP_PORT/%2f")
                if [ "${TLS:-0}" = 1 ]; then
                    BROKERS+=("ringmq-amqps=amqps://guest:guest@localhost:$RINGMQ_AMQPS_PORT/%2f?$CA")
                fi
            fi
        fi
    else
        say "native driver not compiled: skipping ringmq rows"
    fi
fi
if [ ${#BROKERS[@]} = 0 ]; then
    say "no broker to measure"
    exit 1
fi

# ---------------------------------------------------------------- workloads
WORKLOADS=(
    "16b|16 B transient, 1p 1c|--size 16"
    "1k|1 KiB transient, 1p 1c|--size 1024"
    "1k-persist|1 KiB persistent + confirms, 1p 1c|--size 1024 --persistent --confirm"
    "4x4|1 KiB transient, 4p 4c 4q|--size 1024 --producers 4 --consumers 4 --queues 4"
    "rate|1 KiB at $RATE msg/s + confirms (latency)|--size 1024 --rate $RATE --confirm"
    "fanout|16 B fanout to 10 queues, 1p 10c (deliveries/s)|--size 16 --exchange loadgen-fanout --queues 10 --consumers 10"
)
only_workloads

CORE_ARGS=()
if [ -z "${CORES:-}" ] && [ "$(nproc)" -le 2 ]; then CORES=0; fi
[ -n "${CORES:-}" ] && CORE_ARGS=(--cores "$CORES")

for wl in "${WORKLOADS[@]}"; do
    IFS='|' read -r key title args <<<"$wl"
    for b in "${BROKERS[@]}"; do
        name=${b%%=*} url=${b#*=} extra=
        # "URL FLAGS...": flags for this broker only (the native TLS row's CA).
        if [[ $url == *" "* ]]; then extra=${url#* } url=${url%% *}; fi
        say "$name: $title"
        # shellcheck disable=SC2086
        if ! "$LOADGEN" --url "$url" $extra $args --duration "$DURATION" --warmup "$WARMUP" \
            "${CORE_ARGS[@]}" --quiet --label "$name: $title" \
            --json "$OUT/$name-$key.json" --hgrm "$OUT/$name-$key.hgrm" \
            >"$OUT/$name-$key.txt" 2>&1; then
            say "  failed: $(tail -1 "$OUT/$name-$key.txt")"
            rm -f "$OUT/$name-$key.json"
        fi
    done
done

# ---------------------------------------------------------------- table and plots
NAMES=()
for b in "${BROKERS[@]}"; do NAMES+=("${b%%=*}"); done
python3 - "$OUT" "${NAMES[*]}" "${WORKLOADS[@]}" <<'EOF' | tee "$OUT/table.md"
import json, os, sys
out, names, workloads = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def load(n, k):
    p = os.path.join(out, f"{n}-{k}.json")
    return json.load(open(p)) if os.path.exists(p) else None
base = names[0]
cols = ["workload"]
for n in names:
    cols += [f"{n} msg/s", f"{n} p50 us", f"{n} p99 us"]
for n in names[1:]:
    cols += [f"{n}/{base} msg/s", f"{n}/{base} p99"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for wl in workloads:
    key, title, _ = wl.split("|", 2)
    row = [title]
    res = {n: load(n, key) for n in names}
    for n in names:
        r = res[n]
        if r is None:
            row += ["failed", "", ""]
        else:
            lat = r["latency_us"]
            flag = " (lost %d)" % r["lost"] if r["lost"] else ""
            row += [f"{r['msgs_per_s']:,.0f}{flag}", f"{lat['p50']:,.0f}", f"{lat['p99']:,.0f}"]
    for n in names[1:]:
        a, b = res[base], res[n]
        if a and b and a["msgs_per_s"] > 0 and a["latency_us"]["p99"] > 0:
            row += [f"{b['msgs_per_s'] / a['msgs_per_s']:.2f}x",
                    f"{b['latency_us']['p99'] / a['latency_us']['p99']:.2f}x"]
        else:
            row += ["-", "-"]
    print("| " + " | ".join(row) + " |")
EOF

plot() { # out.svg title key...
    local svg=$1 title=$2 files=()
    shift 2
    for k in "$@"; do
        for n in "${NAMES[@]}"; do
            [ -f "$OUT/$n-$k.json" ] && files+=("$OUT/$n-$k.json")
        done
    done
    if [ ${#files[@]} -gt 0 ]; then
        "$LOADGEN" plot "$svg" "${files[@]}" --title "$title" --log-y 2>>"$LOG"
    fi
}
plot "$OUT/latency-fixed-rate.svg" "End-to-end latency at $RATE msg/s, 1 KiB, confirms" rate
plot "$OUT/latency-all.svg" "End-to-end latency by percentile, all workloads" 16b 1k 1k-persist 4x4 rate fanout
say "results in $OUT (table.md, *.json, *.hgrm, latency-*.svg)"
