#!/usr/bin/env bash
# Three ringmq nodes and three RabbitMQ nodes on this machine, the same
# load spread over each cluster's queues (issue 17's benchmark):
#
#   ringmq-direct  native client, cluster-aware: each queue's traffic goes
#                  straight to its node's owning shard (ringmq://node1)
#   ringmq-fwd     the same client through node 1 (--no-cluster-aware):
#                  node 1 forwards to the queue's node over the data links
#   ringmq-amqp    AMQP through node 1 (AMQP clients are never
#                  cluster-aware: node 1 forwards, as RabbitMQ does)
#   rabbitmq       RabbitMQ 3.10, three nodes, classic queues, AMQP
#                  through node 1 (it forwards over Erlang distribution)
#
# QUEUES queues (default 3) are declared so that each node owns as many:
# queue i through a connection to node i % 3 (pika), checked on each
# broker before the runs. Then QUEUES producers and QUEUES consumers, one
# of each per queue, run against node 1 in every case. Each workload runs
# RUNS rounds, the cases alternating (each round starts one case later).
# Prints markdown tables (each case's median and range; the ratios) and
# writes them to OUT_DIR/table.md with every run's JSON and output.
#
#   benches/cluster.sh [OUT_DIR]          (default: target/cluster)
#
# Environment:
#   RUNS=3 DURATION=10 WARMUP=2 DRAIN=5   rounds; seconds per run
#   QUEUES=3              queues (and producers, consumers): a multiple of 3
#   RATE=5000             msg/s of the fixed-rate latency workload
#   MEM_MIN_GIB=6         skip a run when less memory is available (the
#                         machine is shared; a max-rate backlog takes GBs)
#   ONLY=16b,pers,lat     only these workloads (default all)
#   CORES=                loadgen --cores (default: 0 on machines with 2 cores
#                         or fewer, as compare.sh; else all)
#   (ports below Linux's ephemeral range, 32768-60999, where an outgoing
#   connection of another program can take a port before a broker listens)
#   RINGMQ_PORT_BASE=14000   ringmq node k (0..2) on BASE + 100 k: native
#                         +0 (shards +1..), link +50 (data links +51..),
#                         AMQP +90, metrics +91
#   RABBIT_CLUSTER_BASE=14600 RabbitMQ: node i AMQP BASE + 10 (i - 1),
#                         distribution +1; epmd BASE + 90 (rabbitmq-lib.sh)
#   SKIP_RABBITMQ=1       ringmq only
#   PYTHON=.venv/bin/python  a Python with pika (scripts/test.sh makes .venv)
#
# Needs root (or the rabbitmq user) for RabbitMQ, installed from Debian's
# packages when missing (benches/rabbitmq-lib.sh). Loopback only. Every
# broker is stopped and every file removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/cluster}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
DRAIN=${DRAIN:-5}
QUEUES=${QUEUES:-3}
RATE=${RATE:-5000}
MEM_MIN_GIB=${MEM_MIN_GIB:-6}
RINGMQ_PORT_BASE=${RINGMQ_PORT_BASE:-14000}
RABBIT_CLUSTER_BASE=${RABBIT_CLUSTER_BASE:-14600}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/ringmq
LOADGEN=$TARGET/release/ringmq-loadgen
NODES=3
TMP=$(mktemp -d /tmp/ringmq-cluster.XXXXXX)
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.left "$OUT"/*.peak "$OUT"/table.md
LOG=$OUT/cluster.log
: >"$LOG"

say() { echo "cluster: $*" >&2; }

# shellcheck source=benches/rabbitmq-lib.sh
source "$ROOT/benches/rabbitmq-lib.sh"
RINGMQ_PIDS=()
WATCH_PID=

cleanup() {
    set +eu
    local p
    for p in "${RINGMQ_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${RINGMQ_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    bench_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ $((QUEUES % NODES)) = 0 ] || { say "QUEUES must be a multiple of $NODES"; exit 1; }
"$PYTHON" -c "import pika" 2>/dev/null || {
    say "no pika in $PYTHON: run scripts/test.sh once (it makes .venv) or set PYTHON"
    exit 1
}

# ---------------------------------------------------------------- build
say "building ringmq and ringmq-loadgen (release; log in $LOG)"
(cd "$ROOT" && nice -n 19 cargo build --release -p ringmq -p ringmq-loadgen) >>"$LOG" 2>&1 ||
    { say "build failed; see $LOG"; exit 1; }
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
git -C "$ROOT" diff --quiet HEAD -- src loadgen benches Cargo.toml Cargo.lock || COMMIT="$COMMIT (with uncommitted changes)"

# Other processes' CPU use while this runs (benches/report.py).
python3 "$ROOT/benches/report.py" watch $$ "$OUT/noise.txt" &
WATCH_PID=$!
LOAD_START=$(uptime)

# ---------------------------------------------------------------- ringmq
rport() { echo $((RINGMQ_PORT_BASE + 100 * $1 + $2)); } # node offset
SHARDS=$(nproc)
[ "$SHARDS" -le 39 ] || { say "more than 39 cores: the port layout needs --cores"; exit 1; }

ringmq_ctl() { # node args...: ringmq ctl --json, bounded in time
    local k=$1
    shift
    timeout 30 "$BIN" ctl --json --url "ringmq://127.0.0.1:$(rport "$k" 0)" "$@"
}

start_ringmq_cluster() {
    local k p busy=
    for p in $(seq "$RINGMQ_PORT_BASE" $((RINGMQ_PORT_BASE + 100 * NODES - 1))); do
        if ss -ltnH "sport = :$p" | grep -q .; then busy="$busy $p"; fi
    done
    [ -z "$busy" ] || { say "ringmq: ports in use:$busy (set RINGMQ_PORT_BASE)"; return 1; }
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/secret"
    chmod 600 "$TMP/secret"
    for k in $(seq 0 $((NODES - 1))); do
        local join=()
        [ "$k" = 0 ] || join=(--join "127.0.0.1:$(rport 0 50)")
        RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --node-name "n$((k + 1))" --data-dir "$TMP/ringmq-$k" \
            --listen "127.0.0.1:$(rport "$k" 0)" --amqp-listen "127.0.0.1:$(rport "$k" 90)" \
            --metrics-listen "127.0.0.1:$(rport "$k" 91)" --cluster-listen "127.0.0.1:$(rport "$k" 50)" \
            --cluster-secret-file "$TMP/secret" "${join[@]}" >"$OUT/ringmq-n$((k + 1)).log" 2>&1 &
        RINGMQ_PIDS+=($!)
        if ! wait_port "$(rport "$k" 0)" 60 || ! kill -0 "$!" 2>/dev/null; then
            say "ringmq node n$((k + 1)) did not start (see $OUT/ringmq-n$((k + 1)).log)"
            return 1
        fi
    done
    local up=0
    for _ in $(seq 1 120); do
        up=0
        for k in $(seq 0 $((NODES - 1))); do
            n=$(ringmq_ctl "$k" cluster-status 2>/dev/null |
                python3 -c 'import json,sys; print(sum(n["state"] == "up" for n in json.load(sys.stdin)["nodes"]))' \
                    2>/dev/null || echo 0)
            [ "$n" = "$NODES" ] && up=$((up + 1))
        done
        [ "$up" = "$NODES" ] && break
        sleep 0.5
    done
    [ "$up" = "$NODES" ] || { say "ringmq: not every node sees $NODES up (see $OUT/ringmq-n*.log)"; return 1; }
    say "ringmq: $NODES nodes up, $SHARDS shards each, native on 127.0.0.1:$(rport 0 0) + 100 k"
}

ringmq_alive() {
    local p
    for p in "${RINGMQ_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
}

# ---------------------------------------------------------------- queues
# Queue i of PREFIX through node i % 3's AMQP port: each node owns QUEUES / 3.
declare_queues() { # prefix durable(0|1) amqp-url-of-node-1 node-2 node-3
    "$PYTHON" - "$QUEUES" "$@" <<'PYEOF'
import sys, pika
count, prefix, durable, urls = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
for i in range(count):
    conn = pika.BlockingConnection(pika.URLParameters(urls[i % len(urls)]))
    conn.channel().queue_declare(f"{prefix}-{i}", durable=durable)
    conn.close()
PYEOF
}

# "NAME NODE MESSAGES" lines (ready and unacked), one a queue of PREFIX,
# asked of each node about the queues it owns.
ringmq_queues() { # prefix
    local k
    for k in $(seq 0 $((NODES - 1))); do
        ringmq_ctl "$k" list-queues --interval 0.1 | python3 -c '
import json, sys
for q in json.load(sys.stdin):
    if q["name"].startswith(sys.argv[1] + "-"):
        print(q["name"], int(sys.argv[2]) + 1, q["ready"] + q["unacked"])' "$1" "$k" || return 1
    done
}
rabbit_queues() { # prefix: each node's own queues (--local)
    local i
    for i in $(seq 1 "$NODES"); do
        rabbit_ctl "$i" -q list_queues --local name messages --formatter json | python3 -c '
import json, sys
for q in json.load(sys.stdin):
    if q["name"].startswith(sys.argv[1] + "-"):
        print(q["name"], sys.argv[2], q["messages"])' "$1" "$i" || return 1
    done
}

# The messages the queues of PREFIX hold, once two readings a second apart
# agree (a broker may still be taking in what was sent just before the
# run ended); "?" when the broker does not answer.
queued_after() { # broker prefix
    local prev=-1 cur
    for _ in $(seq 1 20); do
        cur=$("${1}_queues" "$2" 2>>"$LOG" | awk '{s += $3} END {print s + 0}') || { echo "?"; return; }
        [ "$cur" = "$prev" ] && break
        prev=$cur
        sleep 1
    done
    echo "$cur"
}

# The most ready messages the nodes held together during a run, sampled
# every second from each node's metrics: a publisher that outruns its
# consumers builds a backlog up to the publish pause mark
# (`publish_pause_messages`), wherever it publishes from. Until killed.
peak_ready() { # out-file
    local peak=0 cur k n
    echo 0 >"$1"
    while sleep 1; do
        cur=0
        for k in $(seq 0 $((NODES - 1))); do
            n=$(curl -s -m 1 "http://127.0.0.1:$(rport "$k" 91)/metrics" |
                awk '$1 == "ringmq_messages_ready" {print $2}')
            cur=$((cur + ${n:-0}))
        done
        if [ "$cur" -gt "$peak" ]; then
            peak=$cur
            echo "$peak" >"$1"
        fi
    done
}

# Empties the queues of PREFIX through node 1 (which forwards).
purge_queues() { # broker prefix
    local url
    if [ "$1" = ringmq ]; then url=${RINGMQ_AMQP[0]}; else url=${RABBIT_AMQP[0]}; fi
    timeout 300 "$PYTHON" - "$QUEUES" "$2" "$url" <<'PYEOF'
import sys, pika
count, prefix, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
for i in range(count):
    print(f"purged {ch.queue_purge(f'{prefix}-{i}').method.message_count} from {prefix}-{i}")
conn.close()
PYEOF
}

# Fails unless queue i of PREFIX lives on node i % 3 + 1 and nowhere else.
check_placement() { # broker prefix
    local list
    list=$("${1}_queues" "$2") || { say "$1: could not list queues"; return 1; }
    echo "$list" | sed "s/^/  $1 placement: /" >>"$LOG"
    python3 - "$QUEUES" "$2" "$NODES" "$list" <<'PYEOF' || { say "$1: queues not spread as declared: $list"; return 1; }
import sys
count, prefix, nodes, text = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
got = sorted((l.split()[0], int(l.split()[1])) for l in text.splitlines() if l.strip())
want = sorted((f"{prefix}-{i}", i % nodes + 1) for i in range(count))
sys.exit(0 if got == want else 1)
PYEOF
}

# ---------------------------------------------------------------- brokers
CASES=() BROKERS=()
if start_ringmq_cluster; then
    BROKERS+=(ringmq)
    N1=ringmq://127.0.0.1:$(rport 0 0)
    CASES+=("ringmq-direct|ringmq|$N1|" "ringmq-fwd|ringmq|$N1|--no-cluster-aware"
        "ringmq-amqp|ringmq|amqp://guest:guest@127.0.0.1:$(rport 0 90)/%2f|")
    RINGMQ_AMQP=()
    for k in $(seq 0 $((NODES - 1))); do RINGMQ_AMQP+=("amqp://guest:guest@127.0.0.1:$(rport "$k" 90)/%2f"); done
fi
if [ "${SKIP_RABBITMQ:-0}" != 1 ] && start_rabbitmq_cluster; then
    BROKERS+=(rabbit)
    CASES+=("rabbitmq|rabbit|amqp://guest:guest@127.0.0.1:$(rabbit_node_port 1)/%2f|")
    RABBIT_AMQP=()
    for i in $(seq 1 "$NODES"); do RABBIT_AMQP+=("amqp://guest:guest@127.0.0.1:$(rabbit_node_port "$i")/%2f"); done
    RABBIT_VERSION=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null | sed 's/-.*//')
fi
[ ${#CASES[@]} -gt 0 ] || { say "no broker started"; exit 1; }

# One run's figures, for the progress lines.
run_line() { # base
    python3 - "$1" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1] + ".json"))
left = open(sys.argv[1] + ".left").read().strip()
print(f"{r['msgs_per_s']:,.0f} msg/s, p50 {r['latency_us']['p50']:,.0f} us, p99 {r['latency_us']['p99']:,.0f} us,"
      f" lost {r['lost']} (still queued {left}), dup {r['duplicates']}, stalls {r['stalls']}")
PYEOF
}

# ---------------------------------------------------------------- workloads
WORKLOADS=(
    "16b|16 B transient, max rate|0|--size 16"
    "pers|1 KiB persistent with confirms, max rate|1|--size 1024 --persistent --confirm"
    "lat|1 KiB transient at $RATE msg/s in all (latency)|0|--size 1024 --rate $RATE"
)
only_workloads
if [ -z "${CORES:-}" ] && [ "$(nproc)" -le 2 ]; then CORES=0; fi
CORE_ARGS=()
[ -z "${CORES:-}" ] || CORE_ARGS=(--cores "$CORES")
LIMIT=$(python3 -c "import math; print(math.ceil($DURATION + $WARMUP + $DRAIN) + 90)")

for wl in "${WORKLOADS[@]}"; do
    IFS='|' read -r key title durable args <<<"$wl"
    prefix=cb-$key
    for broker in "${BROKERS[@]}"; do
        if [ "$broker" = ringmq ]; then urls=("${RINGMQ_AMQP[@]}"); else urls=("${RABBIT_AMQP[@]}"); fi
        declare_queues "$prefix" "$durable" "${urls[@]}" >>"$LOG" 2>&1 ||
            { say "$broker: declaring $prefix-* failed; see $LOG"; exit 1; }
        check_placement "$broker" "$prefix" || exit 1
    done
    say "== $title: $QUEUES queues spread over $NODES nodes, ${QUEUES}p ${QUEUES}c"
    for r in $(seq 1 "$RUNS"); do
        n=${#CASES[@]}
        for j in $(seq 0 $((n - 1))); do
            IFS='|' read -r name broker url extra <<<"${CASES[$(((j + r - 1) % n))]}"
            base=$OUT/$name-$key-$r
            if [ "$broker" = ringmq ] && ! ringmq_alive; then
                say "  $name run $r: a ringmq node is gone (see $OUT/ringmq-n*.log)"
                continue
            fi
            # The machine is shared: a run that can pile up gigabytes (a
            # backlog at max rate) starts only with room for it.
            avail=$(awk '/^MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
            if [ "$avail" -lt "$MEM_MIN_GIB" ]; then
                say "  $name run $r: skipped, $avail GiB of memory available (MEM_MIN_GIB=$MEM_MIN_GIB)"
                continue
            fi
            SAMPLER=
            if [ "$broker" = ringmq ]; then
                peak_ready "$base.peak" &
                SAMPLER=$!
            fi
            # shellcheck disable=SC2086
            if timeout -k 10 "$LIMIT" "$LOADGEN" --url "$url" $extra $args --queues "$QUEUES" \
                --producers "$QUEUES" --consumers "$QUEUES" --queue-prefix "$prefix" \
                --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" "${CORE_ARGS[@]}" --quiet \
                --label "$name: $title" --json "$base.json" >"$base.txt" 2>&1; then
                # What the queues still hold: a max-rate run's backlog left
                # after the drain, which the loadgen counts as lost.
                queued_after "$broker" "$prefix" >"$base.left"
                say "  $name run $r: $(run_line "$base")"
            else
                say "  $name run $r failed: $(tail -1 "$base.txt")"
                rm -f "$base.json"
            fi
            if [ -n "$SAMPLER" ]; then
                kill "$SAMPLER" 2>/dev/null || true
                # Killed: non-zero, which set -e must not take for a failure.
                wait "$SAMPLER" 2>/dev/null || true
            fi
            # A backlog left in memory would weigh on the next runs.
            purge_queues "$broker" "$prefix" >>"$LOG" 2>&1 || say "  $name run $r: purging $prefix-* failed; see $LOG"
        done
    done
done

# ---------------------------------------------------------------- table
kill "$WATCH_PID" 2>/dev/null || true
WATCH_PID=
LOAD_END=$(uptime)
NAMES=()
for c in "${CASES[@]}"; do NAMES+=("${c%%|*}"); done
{
    echo "Command: \`RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP QUEUES=$QUEUES benches/cluster.sh\`" \
        "(commit $COMMIT, $(date -u +%Y-%m-%d), $(nproc) vCPUs, $(free -g | awk '/^Mem/ {print $2}') GiB;" \
        "ringmq: 3 nodes × $SHARDS shards; RabbitMQ ${RABBIT_VERSION:-not run}: 3 nodes, classic queues)."
    echo "Each run: \`ringmq-loadgen --url NODE1 --queues $QUEUES --producers $QUEUES --consumers $QUEUES" \
        "--queue-prefix cb-KEY --duration $DURATION --warmup $WARMUP --drain $DRAIN${CORES:+ --cores $CORES} ARGS\`."
    echo
    python3 - "$OUT" "$RUNS" "${NAMES[*]}" "${WORKLOADS[@]}" <<'PYEOF'
import json, os, statistics, sys
out, runs, names, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
args_of = {"ringmq-direct": "ringmq://node1", "ringmq-fwd": "ringmq://node1 --no-cluster-aware",
           "ringmq-amqp": "amqp://node1", "rabbitmq": "amqp://rabbit1"}

def load(n, k):
    rs = []
    for r in range(1, runs + 1):
        p = os.path.join(out, f"{n}-{k}-{r}")
        if os.path.exists(p + ".json"):
            j = json.load(open(p + ".json"))
            left = open(p + ".left").read().strip() if os.path.exists(p + ".left") else ""
            j["left"] = int(left) if left.isdigit() else None
            peak = open(p + ".peak").read().strip() if os.path.exists(p + ".peak") else ""
            j["peak"] = int(peak) if peak.isdigit() else None
            rs.append(j)
    return rs

def si(v):
    for d, s in ((1e6, "M"), (1e3, "k")):
        if v >= d:
            return f"{v / d:.3g} {s}"
    return f"{v:.0f}"

def us(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    return f"{v / 1000:.1f} ms" if v >= 1000 else f"{v:.0f} µs"

def backlog(rs):
    """Whether the runs left more than 1% of what they sent in the queues."""
    return sum(r["left"] or 0 for r in rs) > 0.01 * sum(r["sent"] for r in rs)

res, flagged = {}, False
print("| workload | case | delivered msg/s (median, range) | published msg/s | p50 | p99 | runs "
      "| lost, of which still queued; dup; stalls | peak ready (most) |")
print("|---|---|---|---|---|---|---|---|---|")
for wl in workloads:
    key, title, _, args = wl.split("|", 3)
    for n in names:
        rs = load(n, key)
        res[(key, n)] = rs
        case = f"{n} (`{args_of.get(n, n)}`)"
        if not rs:
            print(f"| {title} | {case} | **failed** | | | | 0 of {runs} | | |")
            continue
        m = [r["msgs_per_s"] for r in rs]
        sent = statistics.median(r["send_msgs_per_s"] for r in rs)
        # Runs with no delivery of a message sent in the measured window
        # have no latency.
        timed = [r for r in rs if r["latency_us"]["count"] > 0]
        p50 = us(statistics.median(r["latency_us"]["p50"] for r in timed)) if timed else "—"
        p99 = us(statistics.median(r["latency_us"]["p99"] for r in timed)) if timed else "—"
        lost = sum(r["lost"] for r in rs)
        left = sum(r["left"] or 0 for r in rs)
        integ = f"{lost:,}, {left:,}; {sum(r['duplicates'] for r in rs):,}; {sum(r['stalls'] for r in rs)}"
        # Lost and not in the queues, or not counted: say so.
        if lost > left or any(r["left"] is None for r in rs) or any(r["duplicates"] for r in rs):
            integ = f"**{integ}**"
        mark = " †" if backlog(rs) else ""
        flagged |= bool(mark)
        peaks = [r["peak"] for r in rs if r["peak"] is not None]
        peak = si(max(peaks)) if peaks else "—"
        print(f"| {title} | {case} | **{si(statistics.median(m))}**{mark} ({si(min(m))}–{si(max(m))}) "
              f"| {si(sent)} | {p50} | {p99} | {len(rs)} of {runs} | {integ} | {peak} |")
print()
print("| workload | direct / forwarded (native) | ringmq AMQP / RabbitMQ (both through node 1) "
      "| ringmq native direct / RabbitMQ |")
print("|---|---|---|---|")
for wl in workloads:
    key, title, _, args = wl.split("|", 3)
    fixed = "--rate" in args
    def ratio(a, b):
        ra, rb = res.get((key, a)), res.get((key, b))
        if not ra or not rb:
            return "—"
        mark = " †" if backlog(ra) or backlog(rb) else ""
        if fixed:  # the rate is given: compare the latency (p99, lower is better)
            pa = statistics.median(r["latency_us"]["p99"] for r in ra)
            pb = statistics.median(r["latency_us"]["p99"] for r in rb)
            if pa <= 0 or pb <= 0:
                return "—"
            if pb >= pa:
                return f"**{pb / pa:.2f}×** lower p99{mark}"
            return f"**{pa / pb:.2f}×** higher p99{mark}"
        ma = statistics.median(r["msgs_per_s"] for r in ra)
        mb = statistics.median(r["msgs_per_s"] for r in rb)
        return f"**{ma / mb:.2f}×** msg/s{mark}" if mb > 0 else "—"
    print(f"| {title} | {ratio('ringmq-direct', 'ringmq-fwd')} | {ratio('ringmq-amqp', 'rabbitmq')} "
          f"| {ratio('ringmq-direct', 'rabbitmq')} |")
if flagged:
    print()
    print("† the case's runs left more than 1% of what they published in the queues after the drain: "
          "it published faster than it delivered, so its msg/s measures a growing backlog, not a steady state.")
PYEOF
    echo
    python3 - "$OUT/noise.txt" <<'PYEOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
others = [max(0.0, float(t) - float(o)) for _, t, o in rows]
if others:
    print(f"Other processes on the machine used {sum(others) / len(others):.2f} cores on average "
          f"during the run (worst 2 s: {max(others):.2f}).")
PYEOF
    echo "Load: before \`$(echo "$LOAD_START" | sed 's/^ *//')\`, after \`$(echo "$LOAD_END" | sed 's/^ *//')\`."
} | tee "$OUT/table.md"
say "results in $OUT (table.md, CASE-WORKLOAD-RUN.json/.txt/.left, cluster.log, ringmq-n*.log)"
