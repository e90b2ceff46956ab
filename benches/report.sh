#!/usr/bin/env bash
# The headline benchmarks: every workload of the table at the top of
# docs/benchmarks.md, against ringmq and RabbitMQ in the same run, and the
# table itself, written into docs/benchmarks.md and README.md between their
# report markers, with the plots in docs/img/.
#
#   benches/report.sh [OUT_DIR]          (default target/report)
#
#   QUICK=1      one run of each, 3 s measured: a few minutes; leaves the docs
#                alone unless WRITE_DOCS=1 (default: 3 runs of each, 6 s
#                measured: about 20 minutes, and the docs rewritten)
#   ONLY=k1,k2   only these workloads (keys below); the docs are then left alone
#   WRITE_DOCS=0 leave the docs alone (the table is in OUT_DIR/table.md)
#   WAIT_QUIET=S before each workload, wait up to S seconds (default 0) for
#                other processes to use less than a fifth of a core (from
#                /proc, over 4 s); rows that ran on a busy machine say so anyway
#   RINGMQ_BIN, LOADGEN_BIN  use these binaries instead of building them
#                (the table's commit then names the broker binary too)
#   RUNS, DURATION, WARMUP, SIZES, RATE, FAST_RATE, PERS_RATE, PERS_HIGH_RATE,
#   RECOVERY_COUNT, ORDINARY_SPIN_US override the defaults below.
#   The layout (defaults for two cores; see "On a machine with more cores"):
#   GEN_CORES_TPUT=0  the generator's cores for the throughput workloads
#   LAT_SHARDS=1      the latency workloads' broker cores: ringmq --cores N (shards
#                     pinned to cores 0..N-1), RabbitMQ pinned to the same cores
#                     with N schedulers online
#   GEN_CORES_LAT=1   the clients' cores for the latency workloads
#
# Workload keys, in the order they run:
#   tput      max-rate throughput by message size (SIZES), 1 producer 1 consumer:
#             ringmq native, ringmq AMQP, RabbitMQ, all with ringmq-loadgen
#   pers      1 KiB persistent with publisher confirms, max rate
#   fanout    16 B through a fanout exchange to 10 queues, deliveries/s
#   recovery  fill a durable queue, kill -9, restart: time until it is back
#   lat       1 KiB at a fixed RATE msg/s, end-to-end latency (open loop)
#   lat100k   16 B at a fixed FAST_RATE msg/s
#   perslat   1 KiB persistent, publish-to-confirm latency at PERS_RATE for both
#             brokers and at PERS_HIGH_RATE for ringmq, each next to the disk's
#             own floor (benches/disk_floor.py) measured just before
#   ordinary  benches/ordinary (amqp091-go, one publish per call): 16 B as fast
#             as the client can (broker CPU per message from /proc), and 1 KiB
#             at RATE msg/s; beside them the physical floor: the same client
#             (`ordinary floor`) through ringmq-floor, a bare relay (one
#             wake-up, one read and one write per arrival), on the brokers'
#             cores: epoll, blocking and io_uring relays, one write per
#             message instead of amqp091-go's three, and epoll and io_uring
#             at ringmq's rate; and the 1 KiB run once more against ringmq
#             with idle_spin_us = ORDINARY_SPIN_US (default 100; 0 skips it)
#   pika      benches/ordinary/pika_ordinary.py (pika's BlockingConnection,
#             one basic_publish per call), auto_ack and one basic_ack per
#             delivery, 16 B: broker CPU per message, msg/s, and the
#             broker's send syscalls per delivery (perf stat)
#
# Layout on the machine: throughput workloads (tput, pers, fanout) run
# ringmq with its default shards (one per core) and RabbitMQ unrestricted,
# the generator on GEN_CORES_TPUT (as benches/compare.sh). Latency workloads
# run each broker on cores 0..LAT_SHARDS-1 alone (ringmq --cores N;
# RabbitMQ's VM pinned with taskset, N schedulers online) and the client on
# GEN_CORES_LAT: the layout of the tail-latency targets. See
# docs/benchmarks.md, "Methodology".
#
# RabbitMQ comes from Debian's packages (benches/rabbitmq-lib.sh, as for
# compare.sh); it needs root or the rabbitmq user. Both brokers are stopped
# on exit. Every client run is bounded by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${1:-$ROOT/target/report}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-1} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1} SIZES=${SIZES:-16 1024}
    RECOVERY_COUNT=${RECOVERY_COUNT:-20000}
else
    RUNS=${RUNS:-3} DURATION=${DURATION:-6} WARMUP=${WARMUP:-2} SIZES=${SIZES:-16 256 1024 4096}
    RECOVERY_COUNT=${RECOVERY_COUNT:-200000}
fi
RATE=${RATE:-5000}
FAST_RATE=${FAST_RATE:-100000}
PERS_RATE=${PERS_RATE:-5000}
PERS_HIGH_RATE=${PERS_HIGH_RATE:-50000}
ORDINARY_SPIN_US=${ORDINARY_SPIN_US:-100}
GEN_CORES_TPUT=${GEN_CORES_TPUT:-0}
LAT_SHARDS=${LAT_SHARDS:-1}
GEN_CORES_LAT=${GEN_CORES_LAT:-1}
WAIT_QUIET=${WAIT_QUIET:-0}
ONLY=${ONLY:-}
if [ "$QUICK" = 1 ]; then WRITE_DOCS=${WRITE_DOCS:-0}; else WRITE_DOCS=${WRITE_DOCS:-1}; fi
[ -n "$ONLY" ] && WRITE_DOCS=0
STARTED=$(date +%s)

rm -rf "$OUT"
mkdir -p "$OUT"
LOG=$OUT/report.log
: >"$LOG"
TMP=$(mktemp -d /tmp/ringmq-report.XXXXXX)
say() { echo "report: $*" >&2; }
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# shellcheck source=benches/rabbitmq-lib.sh
source "$ROOT/benches/rabbitmq-lib.sh"
RINGMQ_PID=
WATCH_PID=

# The relays and perf counters this script starts go with the brokers.
trap 'set +eu; stop_floors 2>/dev/null; perf_stop 2>/dev/null; bench_cleanup' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
say "building (release; log in $LOG)"
# RINGMQ_BIN / LOADGEN_BIN: binaries built already (an A/B's, or main's
# for a change that leaves them alone); not built here then.
(cd "$ROOT" && { [ -n "${RINGMQ_BIN:-}" ] || nice -n 19 cargo build --release --bin ringmq; } &&
    { [ -n "${LOADGEN_BIN:-}" ] || nice -n 19 cargo build --release -p ringmq-loadgen; } &&
    nice -n 19 cargo build --release -p ringmq-floor) \
    >>"$LOG" 2>&1 || { say "build failed; see $LOG"; exit 1; }
BIN=${RINGMQ_BIN:-$TARGET/release/ringmq}
LOADGEN=${LOADGEN_BIN:-$TARGET/release/ringmq-loadgen}
FLOOR=$TARGET/release/ringmq-floor
ORDINARY=$TMP/ordinary
(cd "$ROOT" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE=$TMP/gocache \
    nice -n 19 go build -o "$ORDINARY" benches/ordinary/ordinary.go) >>"$LOG" 2>&1 ||
    { say "benches/ordinary does not build (Go and Debian's golang-github-rabbitmq-amqp091-go-dev); see $LOG"; exit 1; }

# The code measured: the commit the binaries were built from, and whether
# the tree differed from it.
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
git -C "$ROOT" diff --quiet HEAD -- src loadgen floor benches Cargo.toml Cargo.lock || COMMIT="$COMMIT (with uncommitted changes)"
[ -z "${RINGMQ_BIN:-}" ] || COMMIT="$COMMIT (broker: $(basename "$(dirname "$RINGMQ_BIN")")/$(basename "$RINGMQ_BIN"))"

# ---------------------------------------------------------------- bookkeeping
python3 "$ROOT/benches/report.py" watch $$ "$OUT/noise.txt" &
WATCH_PID=$!
: >"$OUT/commands.txt"
: >"$OUT/times.txt"
cmd() { # key text: the command line a row's figures come from
    grep -qxF "$1|$2" "$OUT/commands.txt" || echo "$1|$2" >>"$OUT/commands.txt"
}
T_KEY= T_START=
# Other processes' share of the CPU in the watcher's last two samples (4 s).
others_busy() {
    tail -2 "$OUT/noise.txt" 2>/dev/null | awk '{o += $2 - $3; n++} END {print (n == 2 && o / n < 0.2) ? "quiet" : "busy"}'
}
wait_quiet() {
    [ "$WAIT_QUIET" -gt 0 ] || return 0
    local waited=0
    while [ "$(others_busy)" = busy ] && [ $waited -lt "$WAIT_QUIET" ]; do
        sleep 2
        waited=$((waited + 2))
    done
    say "  waited ${waited} s for a quiet machine ($(others_busy))"
}
begin() { wait_quiet; T_KEY=$1 T_START=$(date +%s.%N); say "== $1"; }
end() { echo "$T_KEY $T_START $(date +%s.%N)" >>"$OUT/times.txt"; }

# One loadgen run: JSON, label (the broker), url, flags...
lg() {
    local json=$1 label=$2 url=$3
    shift 3
    if [ "$label" != rabbitmq ] && ! kill -0 "$RINGMQ_PID" 2>/dev/null; then
        ensure_ringmq
        url=$(url_of "$label")
    fi
    local rc=0
    timeout $((${DURATION%.*} + ${WARMUP%.*} + 120)) "$LOADGEN" --url "$url" --duration "$DURATION" \
        --warmup "$WARMUP" --quiet --label "$label" --json "$json" "$@" >"${json%.json}.txt" 2>&1 || rc=$?
    # 3: the run finished and its integrity check failed (lost, duplicated
    # or reordered messages; at max rate, a backlog --drain did not empty):
    # the row is kept, with its `lost` figure, and the log says so.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
        say "  $label failed: $(tail -1 "${json%.json}.txt")"
        rm -f "$json"
        return 0
    fi
    if [ "$rc" -eq 3 ]; then
        say "  $label: $(grep 'FAILED integrity check' "${json%.json}.txt" | tail -1)"
    fi
    say "  $label: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f msg/s, p99 %.0f us, lost %d" % (r["msgs_per_s"], r["latency_us"]["p99"], r["lost"]))' "$json")"
}

# utime + stime of a process, in clock ticks (empty if it is gone).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }

# The bare relays (ringmq-floor), one process per mode, started on first
# use on the brokers' cores, each measured alone from /proc.
declare -A FLOOR_PID FLOOR_ADDR
start_floor() { # mode
    local out=$TMP/floor-$1.out i
    taskset -c "0-$((LAT_SHARDS - 1))" "$FLOOR" --mode "$1" >"$out" 2>>"$OUT/floor.log" &
    FLOOR_PID[$1]=$!
    for i in $(seq 1 50); do
        grep -q "ringmq-floor ready" "$out" 2>/dev/null && break
        sleep 0.1
    done
    FLOOR_ADDR[$1]=$(grep -o 'addr=[^ ]*' "$out" | cut -d= -f2)
    [ -n "${FLOOR_ADDR[$1]}" ] || say "  ringmq-floor --mode $1 did not start; see $OUT/floor.log"
}
stop_floors() {
    local m
    for m in "${!FLOOR_PID[@]}"; do
        kill "${FLOOR_PID[$m]}" 2>/dev/null || true
        wait "${FLOOR_PID[$m]}" 2>/dev/null || true
    done
    FLOOR_PID=() FLOOR_ADDR=()
}
# One `ordinary floor` run through the relay of MODE: BASE.json and the
# relay's CPU ticks over the run in BASE.cpu.
ordinary_floor() { # mode base flags...
    local mode=$1 base=$2 pid c0 c1
    shift 2
    [ -n "${FLOOR_PID[$mode]:-}" ] && kill -0 "${FLOOR_PID[$mode]}" 2>/dev/null || start_floor "$mode"
    pid=${FLOOR_PID[$mode]}
    c0=$(cpu_ticks "$pid")
    timeout $((${DURATION%.*} + ${WARMUP%.*} + 60)) taskset -c "$GEN_CORES_LAT" "$ORDINARY" floor \
        -addr "${FLOOR_ADDR[$mode]}" -duration "$DURATION" -warmup "$WARMUP" -label "floor-$mode" \
        -json "$base.json" "$@" >/dev/null 2>>"$LOG" || say "  ordinary floor ($mode $*) failed"
    c1=$(cpu_ticks "$pid")
    if [ -n "$c0" ] && [ -n "$c1" ]; then echo $((c1 - c0)) >"$base.cpu"; fi
}

# The broker's sends over a run, counted by perf (none if perf cannot):
# socket send syscalls and io_uring send operations.
# io_uring's are filtered to IORING_OP_SEND (26) and IORING_OP_SENDMSG (9).
PERF_SENDS='syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev,syscalls:sys_enter_write,io_uring:io_uring_submit_req (opcode 26 or 9)'
PERF_PID=
perf_start() { # pid file
    PERF_PID=
    command -v perf >/dev/null || return 0
    perf stat -x, -o "$2" -e syscalls:sys_enter_sendto -e syscalls:sys_enter_sendmsg -e syscalls:sys_enter_writev \
        -e syscalls:sys_enter_write -e io_uring:io_uring_submit_req --filter 'opcode == 26 || opcode == 9' \
        -p "$1" >/dev/null 2>>"$LOG" &
    PERF_PID=$!
    sleep 0.2
}
perf_stop() {
    [ -n "$PERF_PID" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
}

# ---------------------------------------------------------------- brokers
# ringmq: data dir, then serve flags. Waits until it is ready.
start_ringmq() {
    local dir=$1
    shift
    "$BIN" serve --data-dir "$dir" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" \
        >"$TMP/ringmq.out" 2>>"$OUT/ringmq.log" &
    RINGMQ_PID=$!
}
await_ringmq() { # seconds
    local i
    for i in $(seq 1 $(($1 * 10))); do
        grep -q "ringmq ready" "$TMP/ringmq.out" 2>/dev/null && break
        kill -0 "$RINGMQ_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "ringmq ready" "$TMP/ringmq.out" || { say "ringmq did not start; see $OUT/ringmq.log"; exit 1; }
    RINGMQ_NATIVE=ringmq://$(grep -o 'native=[^ ]*' "$TMP/ringmq.out" | cut -d= -f2)
    RINGMQ_AMQP_ADDR=$(grep -o 'amqp=[^ ]*' "$TMP/ringmq.out" | cut -d= -f2)
    RINGMQ_AMQP=amqp://guest:guest@$RINGMQ_AMQP_ADDR/%2f
}
# Before each ringmq run: if the broker is gone (it crashed, or something
# outside this script stopped it), say so in OUT/incidents.txt, which the
# table reports, and start a fresh one with the same flags.
RINGMQ_ARGS=()
ensure_ringmq() {
    [ -n "$RINGMQ_PID" ] && kill -0 "$RINGMQ_PID" 2>/dev/null && return 0
    local how="exited"
    wait "$RINGMQ_PID" 2>/dev/null || how="exited with status $?"
    echo "$(date -u +%T) ringmq $how during '$T_KEY'; restarted (log: ringmq.log)" | tee -a "$OUT/incidents.txt" >&2
    rm -rf "$TMP/restarted"
    start_ringmq "$TMP/restarted" "${RINGMQ_ARGS[@]}"
    await_ringmq 30
}
stop_ringmq() {
    [ -n "$RINGMQ_PID" ] || return 0
    kill "$RINGMQ_PID" 2>/dev/null || true
    wait "$RINGMQ_PID" 2>/dev/null || true
    RINGMQ_PID=
}

start_rabbitmq || exit 1
RABBIT=amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f
RABBIT_VERSION=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null | cut -d- -f1)

# The targets of a throughput workload, in this round's order: the order
# alternates between rounds, so no broker always runs first.
targets() { # round
    if [ $(($1 % 2)) = 1 ]; then echo "rabbitmq ringmq ringmq-amqp"; else echo "ringmq-amqp ringmq rabbitmq"; fi
}
url_of() {
    case $1 in
        rabbitmq) echo "$RABBIT" ;;
        ringmq) echo "$RINGMQ_NATIVE" ;;
        ringmq-amqp) echo "$RINGMQ_AMQP" ;;
    esac
}

# ---------------------------------------------------------------- throughput (both cores)
if want tput || want pers || want fanout; then
    mkdir -p "$TMP/a"
    RINGMQ_ARGS=(--amqp-listen 127.0.0.1:0)
    start_ringmq "$TMP/a" "${RINGMQ_ARGS[@]}"
    await_ringmq 30
    TCORES=(--cores "$GEN_CORES_TPUT")
    if want tput; then
        begin tput
        for r in $(seq 1 "$RUNS"); do
            for size in $SIZES; do
                for t in $(targets "$r"); do
                    lg "$OUT/tput-$t-$size-$r.json" "$t" "$(url_of "$t")" --size "$size" "${TCORES[@]}"
                done
            done
        done
        cmd tput "ringmq-loadgen --url URL --size SIZE --duration $DURATION --warmup $WARMUP --cores $GEN_CORES_TPUT   (SIZE in $SIZES)"
        end
    fi
    if want pers; then
        begin pers
        for r in $(seq 1 "$RUNS"); do
            for t in $(targets "$r"); do
                lg "$OUT/pers-$t-$r.json" "$t" "$(url_of "$t")" --size 1024 --persistent --confirm "${TCORES[@]}"
            done
        done
        cmd pers "ringmq-loadgen --url URL --size 1024 --persistent --confirm --duration $DURATION --warmup $WARMUP --cores $GEN_CORES_TPUT"
        end
    fi
    if want fanout; then
        begin fanout
        for r in $(seq 1 "$RUNS"); do
            for t in $(targets "$r"); do
                lg "$OUT/fanout-$t-$r.json" "$t" "$(url_of "$t")" --size 16 --exchange report-fanout \
                    --queues 10 --consumers 10 --drain 5 "${TCORES[@]}"
            done
        done
        cmd fanout "ringmq-loadgen --url URL --size 16 --exchange report-fanout --queues 10 --consumers 10 --drain 5 --duration $DURATION --warmup $WARMUP --cores $GEN_CORES_TPUT"
        end
    fi
    stop_ringmq
fi

# ---------------------------------------------------------------- recovery, then latency (one core each)
LATENCY=0
for k in recovery lat lat100k perslat ordinary pika; do want $k && LATENCY=1; done
if [ $LATENCY = 1 ]; then
    mkdir -p "$TMP/b"
    RINGMQ_ARGS=(--cores "$LAT_SHARDS" --amqp-listen 127.0.0.1:0)
    start_ringmq "$TMP/b" "${RINGMQ_ARGS[@]}"
    await_ringmq 30
    if want recovery; then
        begin recovery
        # ringmq: fill, kill -9, restart on the same data dir and AMQP port.
        timeout 600 "$ORDINARY" fill -url "$RINGMQ_AMQP" -count "$RECOVERY_COUNT" -size 1024 >>"$LOG" 2>&1
        kill -9 "$RINGMQ_PID"
        wait "$RINGMQ_PID" 2>/dev/null || true
        t0=$(date +%s.%N)
        start_ringmq "$TMP/b" --cores "$LAT_SHARDS" --amqp-listen "$RINGMQ_AMQP_ADDR"
        if timeout 900 "$ORDINARY" wait -url "$RINGMQ_AMQP" -count "$RECOVERY_COUNT" -delete >>"$LOG" 2>&1; then
            echo "$(echo "$(date +%s.%N) - $t0" | bc)" >"$OUT/recovery-ringmq-1.txt"
            say "  ringmq: back in $(cat "$OUT/recovery-ringmq-1.txt") s"
        else
            say "  ringmq did not recover its queue; see $OUT/ringmq.log"
        fi
        await_ringmq 30
        # RabbitMQ: the same through its VM's pid.
        timeout 900 "$ORDINARY" fill -url "$RABBIT" -count "$RECOVERY_COUNT" -size 1024 >>"$LOG" 2>&1
        beam=$(rabbit_pid)
        grep -q beam "/proc/$beam/comm" || { say "RabbitMQ's VM ($beam) is not running"; exit 1; }
        kill -9 "$beam"
        sleep 0.5
        rabbit_env
        t0=$(date +%s.%N)
        nohup rabbitmq-server >>"$TMP/rabbit/stdout.log" 2>&1 &
        if timeout 900 "$ORDINARY" wait -url "$RABBIT" -count "$RECOVERY_COUNT" -delete >>"$LOG" 2>&1; then
            echo "$(echo "$(date +%s.%N) - $t0" | bc)" >"$OUT/recovery-rabbitmq-1.txt"
            say "  rabbitmq: back in $(cat "$OUT/recovery-rabbitmq-1.txt") s"
        else
            say "  RabbitMQ did not recover its queue; see $TMP/rabbit"
        fi
        rabbitmqctl -n "$RABBIT_NODE" await_startup --timeout 120 >>"$LOG" 2>&1
        cmd recovery "ordinary fill -url URL -count $RECOVERY_COUNT -size 1024; kill -9 the broker; start it; ordinary wait -url URL -count $RECOVERY_COUNT   (ringmq --cores $LAT_SHARDS)"
        end
    fi

    # RabbitMQ on the same cores as ringmq's shards, with as many schedulers.
    rabbitmqctl -n "$RABBIT_NODE" eval "erlang:system_flag(schedulers_online, $LAT_SHARDS), \
        erlang:system_flag(dirty_cpu_schedulers_online, $LAT_SHARDS)." >>"$LOG" 2>&1
    taskset -a -p -c "0-$((LAT_SHARDS - 1))" "$(rabbit_pid)" >>"$LOG" 2>&1
    say "  RabbitMQ for the latency workloads: $(rabbitmqctl -n "$RABBIT_NODE" eval \
        'erlang:system_info(schedulers_online).' 2>>"$LOG") scheduler(s) online, cores 0-$((LAT_SHARDS - 1))"
    LCORES=(--cores "$GEN_CORES_LAT")
    if want lat; then
        begin lat
        for r in $(seq 1 "$RUNS"); do
            for t in $(targets "$r"); do
                lg "$OUT/lat-$t-$r.json" "$t" "$(url_of "$t")" --size 1024 --rate "$RATE" "${LCORES[@]}"
            done
        done
        cmd lat "ringmq-loadgen --url URL --size 1024 --rate $RATE --duration $DURATION --warmup $WARMUP --cores $GEN_CORES_LAT"
        end
    fi
    if want lat100k; then
        begin lat100k
        for r in $(seq 1 "$RUNS"); do
            for t in $(targets "$r"); do
                lg "$OUT/lat100k-$t-$r.json" "$t" "$(url_of "$t")" --size 16 --rate "$FAST_RATE" --drain 3 "${LCORES[@]}"
            done
        done
        cmd lat100k "ringmq-loadgen --url URL --size 16 --rate $FAST_RATE --drain 3 --duration $DURATION --warmup $WARMUP --cores $GEN_CORES_LAT"
        end
    fi
    if want perslat; then
        begin perslat
        for r in $(seq 1 "$RUNS"); do
            for prate in "$PERS_RATE" "$PERS_HIGH_RATE"; do
                timeout 120 python3 "$ROOT/benches/disk_floor.py" "$prate" 1024 "$DURATION" "$TMP" \
                    >"$OUT/floor-$prate-$r.txt" 2>&1 || say "  disk floor at $prate failed"
                say "  $(cat "$OUT/floor-$prate-$r.txt")"
                for t in $(targets "$r"); do
                    [ "$t" = ringmq-amqp ] && continue
                    [ "$t" = rabbitmq ] && [ "$prate" != "$PERS_RATE" ] && continue
                    lg "$OUT/perslat-$prate-$t-$r.json" "$t" "$(url_of "$t")" --size 1024 --persistent --confirm \
                        --rate "$prate" "${LCORES[@]}"
                done
            done
        done
        cmd perslat "ringmq-loadgen --url URL --size 1024 --persistent --confirm --rate RATE --duration $DURATION --warmup $WARMUP --cores $GEN_CORES_LAT   (RATE $PERS_RATE; $PERS_HIGH_RATE for ringmq only)"
        cmd perslat "benches/disk_floor.py RATE 1024 $DURATION DIR   (the floor, on the brokers' filesystem, just before them)"
        end
    fi
    if want ordinary; then
        begin ordinary
        for r in $(seq 1 "$RUNS"); do
            for t in $(targets "$r"); do
                [ "$t" = ringmq ] && continue # an AMQP client: ringmq-amqp is ringmq here
                name=${t%-amqp}
                [ "$name" = ringmq ] && ensure_ringmq
                case $name in ringmq) pid=$RINGMQ_PID ;; *) pid=$(rabbit_pid) ;; esac
                c0=$(cpu_ticks "$pid")
                timeout $((${DURATION%.*} + ${WARMUP%.*} + 60)) taskset -c "$GEN_CORES_LAT" "$ORDINARY" run -url "$(url_of "$t")" \
                    -size 16 -duration "$DURATION" -warmup "$WARMUP" -label "$name" \
                    -json "$OUT/ordinary-16-$name-$r.json" >/dev/null 2>>"$LOG" || say "  ordinary 16 B on $name failed"
                c1=$(cpu_ticks "$pid")
                if [ -n "$c0" ] && [ -n "$c1" ]; then echo $((c1 - c0)) >"$OUT/ordinary-16-$name-$r.cpu"; fi
                c0=$(cpu_ticks "$pid")
                timeout $((${DURATION%.*} + ${WARMUP%.*} + 60)) taskset -c "$GEN_CORES_LAT" "$ORDINARY" run -url "$(url_of "$t")" \
                    -size 1024 -rate "$RATE" -duration "$DURATION" -warmup "$WARMUP" -label "$name" \
                    -json "$OUT/ordinary-1024-$name-$r.json" -hgrm "$OUT/ordinary-1024-$name-$r.hgrm" \
                    >/dev/null 2>>"$LOG" || say "  ordinary 1 KiB on $name failed"
                c1=$(cpu_ticks "$pid")
                if [ -n "$c0" ] && [ -n "$c1" ]; then echo $((c1 - c0)) >"$OUT/ordinary-1024-$name-$r.cpu"; fi
                say "  $name: $(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print("16 B %.0f msg/s; 1 KiB at rate: p99 %.0f us" % (a["msgs_per_s"], b["latency_us"]["p99"]))' \
                    "$OUT/ordinary-16-$name-$r.json" "$OUT/ordinary-1024-$name-$r.json" 2>/dev/null || echo failed)"
            done
            # The physical floor, after both brokers in each round (so the
            # run at ringmq's rate knows that rate).
            ringmq_rate=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["msgs_per_s"])' \
                "$OUT/ordinary-16-ringmq-$r.json" 2>/dev/null || echo 0)
            for v in floor-epoll floor-blocking floor-uring floor1w-epoll floorrate-epoll floorrate-uring; do
                mode=${v#*-}
                flags=(-size 16)
                case $v in
                    floor1w-*) flags+=(-writes 1) ;;
                    floorrate-*)
                        [ "$ringmq_rate" -gt 0 ] || continue
                        flags+=(-rate "$ringmq_rate")
                        ;;
                esac
                ordinary_floor "$mode" "$OUT/ordinary-16-$v-$r" "${flags[@]}"
            done
            ordinary_floor epoll "$OUT/ordinary-1024-floor-epoll-$r" -size 1024 -rate "$RATE"
            # ringmq again with its shard spinning before it parks
            # (`idle_spin_us`): on a VM an idle core halts, and the first
            # write of a burst waits for the host to run it again.
            if [ "$ORDINARY_SPIN_US" -gt 0 ]; then
                stop_ringmq
                printf 'idle_spin_us = %s\n' "$ORDINARY_SPIN_US" >"$TMP/spin.toml"
                rm -rf "$TMP/spin"
                start_ringmq "$TMP/spin" --config "$TMP/spin.toml" "${RINGMQ_ARGS[@]}"
                await_ringmq 30
                c0=$(cpu_ticks "$RINGMQ_PID")
                timeout $((${DURATION%.*} + ${WARMUP%.*} + 60)) taskset -c "$GEN_CORES_LAT" "$ORDINARY" run -url "$RINGMQ_AMQP" \
                    -size 1024 -rate "$RATE" -duration "$DURATION" -warmup "$WARMUP" -label ringmq-spin \
                    -json "$OUT/ordinary-1024-spin-$r.json" >/dev/null 2>>"$LOG" || say "  ordinary 1 KiB, spinning, failed"
                c1=$(cpu_ticks "$RINGMQ_PID")
                if [ -n "$c0" ] && [ -n "$c1" ]; then echo $((c1 - c0)) >"$OUT/ordinary-1024-spin-$r.cpu"; fi
                stop_ringmq
                start_ringmq "$TMP/b" "${RINGMQ_ARGS[@]}"
                await_ringmq 30
                say "  ringmq, idle_spin_us = $ORDINARY_SPIN_US: $(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print("1 KiB at rate: p99 %.0f us" % b["latency_us"]["p99"])' \
                    "$OUT/ordinary-1024-spin-$r.json" 2>/dev/null || echo failed)"
            fi
            say "  floor: $(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print("16 B %.0f msg/s; 1 KiB at rate: p99 %.0f us" % (a["msgs_per_s"], b["latency_us"]["p99"]))' \
                "$OUT/ordinary-16-floor-epoll-$r.json" "$OUT/ordinary-1024-floor-epoll-$r.json" 2>/dev/null || echo failed)"
        done
        stop_floors
        cmd ordinary "taskset -c $GEN_CORES_LAT ordinary run -url URL -size 16 -duration $DURATION -warmup $WARMUP   (broker CPU from /proc/PID/stat over the run)"
        cmd ordinary "taskset -c $GEN_CORES_LAT ordinary run -url URL -size 1024 -rate $RATE -duration $DURATION -warmup $WARMUP"
        [ "$ORDINARY_SPIN_US" -gt 0 ] && cmd ordinary "ringmq serve --config FILE (idle_spin_us = $ORDINARY_SPIN_US) --cores $LAT_SHARDS; taskset -c $GEN_CORES_LAT ordinary run -url URL -size 1024 -rate $RATE -duration $DURATION -warmup $WARMUP   (broker CPU from /proc/PID/stat over the run, as for the default's 1 KiB run)"
        cmd ordinary "taskset -c 0-$((LAT_SHARDS - 1)) ringmq-floor --mode MODE; taskset -c $GEN_CORES_LAT ordinary floor -addr ADDR -size 16 [-writes 1] [-rate RINGMQ'S] -duration $DURATION -warmup $WARMUP   (the floor: MODE epoll, blocking, uring; its CPU from /proc/PID/stat)"
        end
    fi
    if want pika; then
        begin pika
        PY=python3
        [ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python
        if ! "$PY" -c 'import pika' 2>>"$LOG"; then
            say "  no pika for $PY (scripts/test.sh makes .venv with it): skipped"
        else
            for r in $(seq 1 "$RUNS"); do
                for t in $(targets "$r"); do
                    [ "$t" = ringmq ] && continue
                    name=${t%-amqp}
                    for ack in auto each; do
                        [ "$name" = ringmq ] && ensure_ringmq
                        case $name in ringmq) pid=$RINGMQ_PID ;; *) pid=$(rabbit_pid) ;; esac
                        base=$OUT/pika-$ack-$name-$r
                        perf_start "$pid" "$base.perf"
                        c0=$(cpu_ticks "$pid")
                        timeout $((${DURATION%.*} + ${WARMUP%.*} + 60)) taskset -c "$GEN_CORES_LAT" "$PY" \
                            "$ROOT/benches/ordinary/pika_ordinary.py" --url "$(url_of "$t")" --ack "$ack" --size 16 \
                            --duration "$DURATION" --warmup "$WARMUP" --label "$name" --json "$base.json" \
                            >/dev/null 2>>"$LOG" || say "  pika ($ack) on $name failed"
                        c1=$(cpu_ticks "$pid")
                        perf_stop
                        if [ -n "$c0" ] && [ -n "$c1" ]; then echo $((c1 - c0)) >"$base.cpu"; fi
                        say "  $name, $ack: $(python3 "$ROOT/benches/report.py" pika-line "$base" 2>/dev/null || echo failed)"
                    done
                done
            done
        fi
        cmd pika "taskset -c $GEN_CORES_LAT benches/ordinary/pika_ordinary.py --url URL --ack auto|each --size 16 --duration $DURATION --warmup $WARMUP   (broker CPU from /proc/PID/stat over the run)"
        cmd pika "perf stat -x, -e $PERF_SENDS -p BROKER_PID   (over the same run: the broker's sends)"
        end
    fi
    stop_ringmq
fi
stop_rabbitmq
echo "all $STARTED $(date +%s.%N)" >>"$OUT/times.txt"
kill "$WATCH_PID" 2>/dev/null || true
WATCH_PID=

# ---------------------------------------------------------------- the table
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
MEM=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
MODE=full
[ "$QUICK" = 1 ] && MODE=QUICK
COMMAND="benches/report.sh"
[ "$QUICK" = 1 ] && COMMAND="QUICK=1 $COMMAND"
[ -n "$ONLY" ] && COMMAND="ONLY=$ONLY $COMMAND"
python3 - "$OUT/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u +%F)", "commit": "$COMMIT", "command": "$COMMAND", "mode": "$MODE",
    "runs": $RUNS, "duration": $DURATION, "warmup": $WARMUP,
    "elapsed_min": ($(date +%s) - $STARTED) / 60,
    "machine": "$(nproc) vCPU, ${MEM} GiB",
    "machine_long": "$(nproc) vCPUs ($CPU), $MEM GiB RAM, Linux $(uname -r), loopback only; brokers and clients share the cores",
    "rabbitmq_version": "$RABBIT_VERSION",
    "rate": $RATE, "fast_rate": $FAST_RATE, "pers_rate": $PERS_RATE, "pers_high_rate": $PERS_HIGH_RATE,
    "recovery_count": $RECOVERY_COUNT, "ordinary_spin_us": $ORDINARY_SPIN_US,
}, open(sys.argv[1], "w"))
EOF
python3 "$ROOT/benches/report.py" table "$OUT" >"$OUT/table.md"

# ---------------------------------------------------------------- plots
plot() { # svg title flags... -- files...
    local svg=$1 title=$2
    shift 2
    local flags=()
    while [ "$1" != -- ]; do flags+=("$1"); shift; done
    shift
    local files=()
    for f in "$@"; do [ -f "$f" ] && files+=("$f"); done
    [ ${#files[@]} -gt 0 ] || return 0
    "$LOADGEN" plot "$OUT/$svg" "${files[@]}" --title "$title" "${flags[@]}" >>"$LOG" 2>&1 ||
        say "plot $svg failed; see $LOG"
}
# The run of each broker whose p99 is the median of its runs.
median_run() { # pattern
    python3 - "$OUT" "$1" <<'EOF'
import glob, json, os, sys
files = sorted(glob.glob(os.path.join(sys.argv[1], sys.argv[2])))
runs = sorted((json.load(open(f))["latency_us"]["p99"], f) for f in files)
print(runs[(len(runs) - 1) // 2][1] if runs else "")
EOF
}
plot latency-fixed-rate.svg "End-to-end latency at $RATE msg/s, 1 KiB (median run of each; broker on core 0, client on core 1)" \
    --log-y -- "$(median_run 'lat-ringmq-[0-9]*.json')" "$(median_run 'lat-ringmq-amqp-*.json')" "$(median_run 'lat-rabbitmq-*.json')"
plot latency-persistent.svg "End-to-end latency at $PERS_RATE msg/s, 1 KiB persistent with confirms (median run of each)" \
    --log-y -- "$(median_run "perslat-$PERS_RATE-ringmq-*.json")" "$(median_run "perslat-$PERS_RATE-rabbitmq-*.json")"
plot latency-ordinary.svg "amqp091-go, one publish per call, 1 KiB at $RATE msg/s: latency from the actual send" \
    --log-y -- "$OUT/ordinary-1024-ringmq-1.hgrm" "$OUT/ordinary-1024-rabbitmq-1.hgrm"
# shellcheck disable=SC2046
plot throughput-by-size.svg "Throughput by message size, 1 producer 1 consumer (median of $RUNS run(s) each)" \
    --by-size -- $(ls "$OUT"/tput-*.json 2>/dev/null)
plot latency-over-time.svg "End-to-end latency over time, 16 B at $FAST_RATE msg/s, ringmq native (first run; 200 ms intervals)" \
    --over-time -- "$OUT/lat100k-ringmq-1.json"
plot latency-over-time-persistent.svg "End-to-end latency over time, 1 KiB persistent with confirms at $PERS_HIGH_RATE msg/s, ringmq native (first run)" \
    --over-time -- "$OUT/perslat-$PERS_HIGH_RATE-ringmq-1.json"

cat "$OUT/table.md"
if [ "$WRITE_DOCS" = 1 ]; then
    python3 "$ROOT/benches/report.py" splice "$ROOT/docs/benchmarks.md" "$OUT/table.md"
    python3 "$ROOT/benches/report.py" splice "$ROOT/README.md" "$OUT/table.md"
    mkdir -p "$ROOT/docs/img"
    cp "$OUT"/*.svg "$ROOT/docs/img/" 2>/dev/null || true
    say "wrote the table into docs/benchmarks.md and README.md, the plots into docs/img/"
fi
say "done in $((($(date +%s) - STARTED) / 60)) min; results in $OUT"
