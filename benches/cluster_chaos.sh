#!/usr/bin/env bash
# Fault injection for a three-node ringmq cluster, checked by the load
# generator's checker. Long-running; not part of the test suite.
#
#   sudo DURATION=600 benches/cluster_chaos.sh          (root: iptables, cgroups)
#
# What it does
#   1. Starts n1, n2, n3 (`ringmq serve --cores 2 --no-pin`) on 127.0.0.1,
#      each with its own data dir under OUT and fixed ports (native and its
#      shard ports, AMQP, metrics, the cluster link and its data ports
#      link+1, link+2), one shared secret; n2 and n3 join n1. Waits until
#      every node's `ctl cluster-status` shows three members up.
#   2. Declares 24 durable queues, chaos-L{1,2,3,4}-{0..5}, each through
#      the node it is to live on (a queue lives where it is first
#      declared): -0,-1 on n1, -2,-3 on n2, -4,-5 on n3; checks the
#      placement with `ctl list-queues` on each node.
#   3. Runs four ringmq-loadgen instances for the whole run, each with its
#      own six queues (two local to the node it is connected to, four
#      forwarded): Lk (k = 1..3) over the native protocol through node nk,
#      L4 over AMQP 0-9-1 through n1 (AMQP_LOADGEN=0: without it). Each
#      has 6 producers and 6 consumers, persistent, --confirm, RATE msg/s
#      in all (open loop), --reconnect.
#   4. For DURATION seconds, every GAP_MIN..GAP_MAX s, injects one fault
#      (never two at once) on a random node:
#        kill      kill -9, down DOWN_MIN..DOWN_MAX s, restarted on the same
#                  data dir and ports;
#        partition iptables DROP rules on loopback only: nothing reaches
#                  the node's link and data ports, nothing leaves them, and
#                  the node's own process (matched by its cgroup) cannot
#                  reach the other nodes' link and data ports; clients'
#                  ports stay open. Healed after PART_MIN..PART_MAX s;
#        freeze    SIGSTOP, SIGCONT after FREEZE_MIN..FREEZE_MAX s.
#      After each heal it waits (at most CONVERGE s) for all three nodes to
#      show three up, and records how long that took (or that it did not).
#   5. Then TAIL fault-free seconds of load, the producers stop and the
#      consumers drain (until nothing new for DRAIN_IDLE s, at most DRAIN);
#      prints the checker's verdict summed over the instances and the queue
#      depths left on each node.
#
# Why the accounting is honest
#   Each loadgen instance is ONE process for the whole run: with
#   --reconnect, a producer or consumer whose connection fails (its node
#   was killed, frozen or cut off) or whose subscribe is refused (the
#   queue's node is unavailable: native code 72) connects again with
#   backoff, and the same checker goes on, so nothing is forgotten across
#   a reconnect (a loadgen restarted per fault would be: a new run ignores
#   the old run's messages as "stale"). A publish is confirmed only when
#   the broker confirmed it; a refused publish or one whose connection
#   failed before its confirm is "not confirmed" and may legitimately be
#   lost or arrive. So:
#     lost (the verdict) = messages CONFIRMED whose (queue, producer, seq)
#                          no consumer of that queue ever received;
#     duplicates         = deliveries of a message already received
#                          (expected after redeliveries: at-least-once);
#     reordered          = a first delivery below the highest sequence that
#                          consumer already had from that producer (a
#                          requeue after a lost consumer does this);
#     received unconfirmed, client errors by kind, reconnects: reported.
#   A consumer that gets nothing for RESUB_IDLE s (each queue gets
#   RATE/6 msg/s) drops its connection and subscribes again: a native
#   client is not told when the node it is connected to loses the data
#   link its forwarded subscription ran over (the broker drops
#   `ConsumerGone` in native/encode.rs; found by this script, see
#   /work/wt/notes/chaos/), and without this every forwarded queue would
#   stop being consumed after the first fault. These resubscribes are
#   counted under "no delivery for N s" in the client errors.
#   Loss is only judged after the faults are healed, TAIL s of load and
#   the drain; the queue depths printed at the end tell a message still
#   queued (not drained) from one that is gone.
#
# A restart the storage refuses (a corrupt record: seen after kill -9)
# is an anomaly; the segment it names is kept in OUT/evidence/ and the
# node is started again with storage_skip_corrupt = true (SKIP_CORRUPT=0:
# it stays down), so the run goes on and the checker counts whatever that
# drops. A node that cannot start is left down and out of the faults.
#
# Exit status: 0 clean; 1 a confirmed message was lost; 2 no loss but an
# anomaly (a node crashed or panicked, did not restart, the cluster did not
# converge after a heal, a loadgen failed or hung, a queue misplaced).
#
# Settings (environment): DURATION (600), RATE (120 msg/s per instance),
# GAP_MIN/GAP_MAX (15/40), FAULTS ("kill partition freeze"), FAULT_NODES
# ("1 2 3": the nodes faults may hit), DOWN_MIN/MAX
# (2/8), PART_MIN/MAX (5/25), FREEZE_MIN/MAX (3/12), CONVERGE (60), TAIL
# (30), DRAIN (180), DRAIN_IDLE (20), RESUB_IDLE (5; 0 = off), SEED (random; the fault sequence),
# OUT (a new /tmp/ringmq-chaos.XXXXXX; logs are kept, data dirs removed
# unless KEEP_DATA=1 or the run failed), BIN_DIR (the release binaries;
# default $CARGO_TARGET_DIR/release, else target/release), BUILD=1 to
# build them first, LOADGEN_ARGS (more loadgen options for the native
# instances, e.g. --no-cluster-aware: every queue through its instance's
# node, forwarded). Everything runs under `nice -n 19`.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-600}
RATE=${RATE:-120}
GAP_MIN=${GAP_MIN:-15}
GAP_MAX=${GAP_MAX:-40}
FAULTS=${FAULTS:-"kill partition freeze"}
FAULT_NODES=${FAULT_NODES:-"1 2 3"}
DOWN_MIN=${DOWN_MIN:-2}
DOWN_MAX=${DOWN_MAX:-8}
PART_MIN=${PART_MIN:-5}
PART_MAX=${PART_MAX:-25}
FREEZE_MIN=${FREEZE_MIN:-3}
FREEZE_MAX=${FREEZE_MAX:-12}
CONVERGE=${CONVERGE:-60}
TAIL=${TAIL:-30}
DRAIN=${DRAIN:-180}
DRAIN_IDLE=${DRAIN_IDLE:-20}
RESUB_IDLE=${RESUB_IDLE:-5}
SEED=${SEED:-$((($$ * 7919 + $(date +%s)) % 32768))}
KEEP_DATA=${KEEP_DATA:-0}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
RINGMQ=$BIN_DIR/ringmq
LOADGEN=$BIN_DIR/ringmq-loadgen
RANDOM=$SEED
TAG="ringmq-chaos-$$"
NODES=(1 2 3)

OUT=${OUT:-$(mktemp -d /tmp/ringmq-chaos.XXXXXX)}
mkdir -p "$OUT"
LOG=$OUT/chaos.log
FAULT_LOG=$OUT/faults.log
: >"$FAULT_LOG"

say() { printf '[%s %s] %s\n' "$(date +%T)" "$(date +%s.%3N)" "$*" | tee -a "$LOG" >&2; }
rand() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }
ANOMALIES=()
anomaly() {
    ANOMALIES+=("$*")
    say "ANOMALY: $*"
}

# ------------------------------------------------------------ preflight
if [ "${BUILD:-0}" = 1 ]; then
    say "building (release)"
    (cd "$ROOT" && nice -n 19 cargo build --release -p ringmq -p ringmq-loadgen) >>"$LOG" 2>&1 ||
        { say "build failed; see $LOG"; exit 2; }
fi
for b in "$RINGMQ" "$LOADGEN"; do
    [ -x "$b" ] || { say "missing $b (BUILD=1, or set BIN_DIR)"; exit 2; }
done
"$LOADGEN" --help | grep -q -- --reconnect ||
    { say "$LOADGEN has no --reconnect (build this branch's loadgen)"; exit 2; }
command -v jq >/dev/null || { say "needs jq"; exit 2; }
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
case " $FAULTS " in *" partition "*)
    [ "$(id -u)" = 0 ] || { say "partitions need root (iptables); or FAULTS=\"kill freeze\""; exit 2; }
    command -v iptables >/dev/null || { say "partitions need iptables (apt-get install iptables)"; exit 2; }
    [ -n "$CG2" ] || { say "partitions need a cgroup2 mount (to match a node's own packets)"; exit 2; }
    ;;
esac

# ------------------------------------------------------------ ports
# Per node a block of 10 ports below the ephemeral range (so no outgoing
# connection takes one while its node is down): native, its two shard
# ports, AMQP, metrics, the link, the link's two data ports.
port_busy() { ss -Htan "( sport = :$1 )" 2>/dev/null | grep -q .; }
pick_base() {
    local base p ok
    for base in $(seq $((21000 + ($$ % 50) * 100)) 100 31000); do
        ok=1
        for p in $(seq "$base" $((base + 29))); do
            if port_busy "$p"; then ok=0; break; fi
        done
        [ $ok = 1 ] && { echo "$base"; return; }
    done
    return 1
}
BASE=$(pick_base) || { say "no free block of ports"; exit 2; }
declare -A NATIVE AMQP METRICS LINK DATA0 DATA1 PID CG STARTS FROZEN DEAD SKIPCFG
for i in "${NODES[@]}"; do
    o=$((BASE + (i - 1) * 10))
    NATIVE[$i]=$o
    AMQP[$i]=$((o + 3))
    METRICS[$i]=$((o + 4))
    LINK[$i]=$((o + 5))
    DATA0[$i]=$((o + 6))
    DATA1[$i]=$((o + 7))
    STARTS[$i]=0
    FROZEN[$i]=0
done
cluster_ports() { echo "${LINK[$1]},${DATA0[$1]},${DATA1[$1]}"; }
other_ports() {
    local j out=""
    for j in "${NODES[@]}"; do [ "$j" = "$1" ] || out+="${out:+,}$(cluster_ports "$j")"; done
    echo "$out"
}

# ------------------------------------------------------------ cleanup
WATCH_PID=
RULES=()   # iptables rules added and not yet removed, as argument strings
LOADGEN_PIDS=()
ipt_add() {
    iptables -I "$@" -m comment --comment "$TAG" -j DROP && RULES+=("$*")
}
heal_partition() {
    local r keep=()
    for r in "${RULES[@]}"; do
        # shellcheck disable=SC2086
        iptables -D $r -m comment --comment "$TAG" -j DROP 2>>"$LOG" || keep+=("$r")
    done
    RULES=("${keep[@]}")
}
sweep_rules() {
    # Anything of ours that survived (by its comment), then check.
    local chain line
    for chain in INPUT OUTPUT; do
        iptables -S "$chain" 2>/dev/null | grep -F -- "$TAG" | while read -r line; do
            # shellcheck disable=SC2086
            iptables ${line/-A /-D } 2>>"$LOG"
        done
    done
    if iptables -S 2>/dev/null | grep -qF -- "$TAG"; then
        say "WARNING: iptables rules tagged $TAG remain: iptables -S | grep $TAG"
    fi
}
cleanup() {
    set +u
    trap - EXIT INT TERM
    for i in "${NODES[@]}"; do
        [ "${FROZEN[$i]}" = 1 ] && kill -CONT "${PID[$i]}" 2>/dev/null
    done
    if command -v iptables >/dev/null; then
        heal_partition
        sweep_rules
    fi
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
    for p in "${LOADGEN_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for i in "${NODES[@]}"; do
        [ -n "${PID[$i]}" ] && kill -TERM "${PID[$i]}" 2>/dev/null
    done
    sleep 1
    for p in "${LOADGEN_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for i in "${NODES[@]}"; do
        [ -n "${PID[$i]}" ] && kill -9 "${PID[$i]}" 2>/dev/null
    done
    wait 2>/dev/null
    for i in "${NODES[@]}"; do [ -n "${CG[$i]}" ] && rmdir "${CG[$i]}" 2>/dev/null; done
    if [ "${RESULT:-2}" = 0 ] && [ "$KEEP_DATA" != 1 ]; then
        rm -rf "$OUT"/n*/data
    fi
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------ nodes
printf 'the chaos run shared secret %s\n' "$TAG" >"$OUT/secret"
chmod 600 "$OUT/secret"

# One attempt to start node $1; 0 when its ready line came.
launch_node() {
    local i=$1 dir=$OUT/n$1 n out
    mkdir -p "$dir"
    STARTS[$i]=$((STARTS[$i] + 1))
    n=${STARTS[$i]}
    out=$dir/ready.$n
    if [ -n "$CG2" ] && [ -z "${CG[$i]:-}" ]; then
        CG[$i]=$CG2/$TAG-n$i
        mkdir -p "${CG[$i]}"
    fi
    local extra=()
    [ "$i" != 1 ] && extra=(--join "127.0.0.1:${LINK[1]}")
    [ "${SKIPCFG[$i]:-0}" = 1 ] && extra+=(--config "$OUT/skip-corrupt.toml")
    echo "=== start $n at $(date +%T) ($(date +%s.%3N))${SKIPCFG[$i]:+ with storage_skip_corrupt}" >>"$dir/serve.log"
    (
        # Into the node's own cgroup first: a partition matches its packets.
        [ -n "${CG[$i]:-}" ] && echo "$BASHPID" >"${CG[$i]}/cgroup.procs"
        exec nice -n 19 env RUST_LOG="${RUST_LOG:-info,openraft=off}" "$RINGMQ" serve \
            --node-name "n$i" --cores 2 --no-pin --data-dir "$dir/data" \
            --listen "127.0.0.1:${NATIVE[$i]}" --amqp-listen "127.0.0.1:${AMQP[$i]}" \
            --metrics-listen "127.0.0.1:${METRICS[$i]}" \
            --cluster-listen "127.0.0.1:${LINK[$i]}" --cluster-secret-file "$OUT/secret" "${extra[@]}"
    ) >"$out" 2>>"$dir/serve.log" &
    PID[$i]=$!
    local t
    for t in $(seq 1 600); do
        if grep -q "ringmq ready" "$out" 2>/dev/null; then
            say "n$i up (start $n, pid ${PID[$i]}): $(head -1 "$out")"
            return 0
        fi
        if ! kill -0 "${PID[$i]}" 2>/dev/null; then
            wait "${PID[$i]}" 2>/dev/null
            anomaly "n$i (start $n) exited before it was ready: $(sed -n '/^=== start '"$n"' /,$p' "$dir/serve.log" | grep -m1 -E 'ERROR|panicked' | cut -c1-300)"
            return 1
        fi
        sleep 0.1
    done
    anomaly "n$i (start $n) not ready within 60 s; see $dir/serve.log"
    kill -9 "${PID[$i]}" 2>/dev/null
    wait "${PID[$i]}" 2>/dev/null
    return 1
}

# Starts node $1. A start the storage refuses (a corrupt record) is kept
# as evidence (the segment named, in OUT/evidence/), then, unless
# SKIP_CORRUPT=0, retried once with storage_skip_corrupt = true (what an
# operator would do; whatever that drops, the checker counts). A node
# that still does not start is DEAD for the rest of the run: no more
# faults on it, and convergence is judged among the others.
start_node() {
    local i=$1 seg
    launch_node "$i" && return 0
    seg=$(sed -n '/^=== start '"${STARTS[$i]}"' /,$p' "$OUT/n$i/serve.log" | grep -o -m1 'corrupt record in segment [^ ]*' | awk '{print $4}')
    if [ -n "$seg" ]; then
        mkdir -p "$OUT/evidence"
        local keep
        keep=$OUT/evidence/n$i-start${STARTS[$i]}-$(basename "$(dirname "$seg")")-$(basename "$seg").gz
        gzip -c "$seg" >"$keep"
        say "kept the refused segment as $keep"
        if [ "${SKIP_CORRUPT:-1}" = 1 ] && [ "${SKIPCFG[$i]:-0}" != 1 ]; then
            echo "storage_skip_corrupt = true" >"$OUT/skip-corrupt.toml"
            SKIPCFG[$i]=1
            say "restarting n$i with storage_skip_corrupt = true"
            launch_node "$i" && return 0
        fi
    fi
    DEAD[$i]=1
    anomaly "n$i does not start: left down for the rest of the run"
    return 1
}

ctl() { # NODE ARGS...: ringmq ctl --json against the node, bounded
    local i=$1
    shift
    timeout 10 nice -n 19 "$RINGMQ" ctl --json --url "ringmq://127.0.0.1:${NATIVE[$i]}" "$@" 2>>"$LOG"
}
up_seen_by() { ctl "$1" cluster-status | jq -r '[.nodes[] | select(.state == "up") | .name] | sort | join(" ")' 2>/dev/null; }

# Waits until every node not DEAD sees exactly those nodes up; echoes the
# seconds taken.
converge() {
    local limit=$1 start now i ok want=""
    for i in "${NODES[@]}"; do [ "${DEAD[$i]:-0}" = 1 ] || want+="${want:+ }n$i"; done
    start=$(date +%s.%N)
    while :; do
        ok=1
        for i in "${NODES[@]}"; do
            [ "${DEAD[$i]:-0}" = 1 ] && continue
            [ "$(up_seen_by "$i")" = "$want" ] || { ok=0; break; }
        done
        now=$(date +%s.%N)
        if [ $ok = 1 ]; then
            echo "$now - $start" | bc
            return 0
        fi
        if [ "$(echo "$now - $start > $limit" | bc)" = 1 ]; then
            return 1
        fi
        sleep 0.5
    done
}

# A node whose process ended without being killed by this script.
check_alive() {
    local i
    for i in "${NODES[@]}"; do
        [ "${DEAD[$i]:-0}" = 1 ] && continue
        if ! kill -0 "${PID[$i]}" 2>/dev/null; then
            wait "${PID[$i]}" 2>/dev/null
            anomaly "n$i (pid ${PID[$i]}) died on its own (status $?); see $OUT/n$i/serve.log"
            start_node "$i"
        fi
    done
}

say "OUT=$OUT  seed=$SEED  ports from $BASE  duration=${DURATION}s  faults: $FAULTS"
say "binaries: $RINGMQ ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null))"
for i in "${NODES[@]}"; do
    start_node "$i" || { RESULT=2; exit 2; }
done
if t=$(converge 60); then
    say "cluster formed: three up on every node (${t}s)"
else
    anomaly "the cluster did not form within 60 s"
    for i in "${NODES[@]}"; do ctl "$i" cluster-status >"$OUT/n$i/status.formation.json"; done
    RESULT=2
    exit 2
fi

# ------------------------------------------------------------ queues
# Loadgen instances: Lk (k = 1..3) over the native protocol through nk;
# L4 over AMQP 0-9-1 through n1 (AMQP_LOADGEN=0 leaves it out).
LG=(1 2 3)
[ "${AMQP_LOADGEN:-1}" = 1 ] && LG+=(4)
lg_url() {
    if [ "$1" = 4 ]; then echo "amqp://guest:guest@127.0.0.1:${AMQP[1]}/%2f"; else echo "ringmq://127.0.0.1:${NATIVE[$1]}"; fi
}
lg_via() { if [ "$1" = 4 ]; then echo "n1 (AMQP)"; else echo "n$1"; fi; }
for k in "${LG[@]}"; do
    for j in 0 1 2 3 4 5; do
        home=$((j / 2 + 1))
        q=chaos-L$k-$j
        if ! timeout 30 nice -n 19 "$RINGMQ" pub --url "ringmq://127.0.0.1:${NATIVE[$home]}" --queue "$q" \
            --persistent --count 0 >>"$LOG" 2>&1; then
            anomaly "declaring $q through n$home failed"
        fi
    done
done
misplaced=0
for i in "${NODES[@]}"; do
    mine=$(ctl "$i" list-queues --interval 0.1 | jq -r '[.[].name | select(startswith("chaos-L"))] | sort | join(" ")')
    want=$(for k in "${LG[@]}"; do echo "chaos-L$k-$((2 * i - 2)) chaos-L$k-$((2 * i - 1))"; done | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')
    say "n$i holds: $mine"
    [ "$mine" = "$want" ] || { anomaly "n$i should hold $want"; misplaced=1; }
done

# ------------------------------------------------------------ load
RUN_S=$((DURATION + TAIL))
# shellcheck disable=SC2086
lg_extra() { [ "$1" = 4 ] || echo ${LOADGEN_ARGS:-}; }
RESUB_ARGS=()
[ "$RESUB_IDLE" != 0 ] && RESUB_ARGS=(--resubscribe-idle "$RESUB_IDLE")
for k in "${LG[@]}"; do
    nice -n 19 "$LOADGEN" --url "$(lg_url "$k")" \
        --producers 6 --consumers 6 --queues 6 --queue-prefix "chaos-L$k" \
        --persistent --confirm --rate "$RATE" --size 64 --prefetch 200 \
        --duration "$RUN_S" --warmup 0 --drain "$DRAIN" --drain-idle "$DRAIN_IDLE" \
        --reconnect ${RESUB_ARGS[@]+"${RESUB_ARGS[@]}"} $(lg_extra "$k") --quiet --cores $((k % 2)) --label "chaos L$k via $(lg_via "$k")" \
        --json "$OUT/L$k.json" >"$OUT/L$k.out" 2>"$OUT/L$k.err" &
    LOADGEN_PIDS+=($!)
done
say "loadgens started (pids ${LOADGEN_PIDS[*]}): ${RATE} msg/s each for ${RUN_S}s"

# Every 2 s, each node's view of its own queues (ready, unacked,
# consumers), for the evidence: $OUT/queues.timeline.
watch_queues() {
    local i
    while :; do
        for i in "${NODES[@]}"; do
            [ -e "$OUT/frozen.n$i" ] && continue
            printf '%s n%s %s\n' "$(date +%s.%3N)" "$i" "$(ctl "$i" list-queues --interval 0.1 | jq -c \
                '[.[] | select(.name | startswith("chaos-L")) | [.name, .ready, .unacked, .consumers]]' 2>/dev/null)"
        done
        sleep 2
    done >>"$OUT/queues.timeline"
}
watch_queues &
WATCH_PID=$!
LOAD_START=$(date +%s)

# ------------------------------------------------------------ faults
fault_line() { printf '%s %s\n' "$(date +%s.%3N)" "$*" >>"$FAULT_LOG"; }
read -r -a KINDS <<<"$FAULTS"
read -r -a TARGETS <<<"$FAULT_NODES"
declare -A COUNT
nfaults=0
while :; do
    gap=$(rand "$GAP_MIN" "$GAP_MAX")
    left=$((LOAD_START + DURATION - $(date +%s)))
    [ "$left" -le 0 ] && break
    sleep $((gap < left ? gap : left))
    check_alive
    [ $((LOAD_START + DURATION - $(date +%s))) -le 5 ] && break
    kind=${KINDS[$((RANDOM % ${#KINDS[@]}))]}
    alive=()
    for j in "${TARGETS[@]}"; do [ "${DEAD[$j]:-0}" = 1 ] || alive+=("$j"); done
    [ ${#alive[@]} = 0 ] && { say "no node left to fault"; break; }
    i=${alive[$((RANDOM % ${#alive[@]}))]}
    nfaults=$((nfaults + 1))
    COUNT[$kind]=$((${COUNT[$kind]:-0} + 1))
    case $kind in
    kill)
        down=$(rand "$DOWN_MIN" "$DOWN_MAX")
        say "fault $nfaults: kill -9 n$i (pid ${PID[$i]}), down ${down}s"
        fault_line "start kill n$i down=${down}s"
        kill -9 "${PID[$i]}"
        wait "${PID[$i]}" 2>/dev/null
        sleep "$down"
        start_node "$i"
        fault_line "heal kill n$i"
        ;;
    partition)
        hold=$(rand "$PART_MIN" "$PART_MAX")
        say "fault $nfaults: partition n$i (ports $(cluster_ports "$i")) for ${hold}s"
        fault_line "start partition n$i for=${hold}s"
        ipt_add INPUT -i lo -p tcp -m multiport --dports "$(cluster_ports "$i")"
        ipt_add INPUT -i lo -p tcp -m multiport --sports "$(cluster_ports "$i")"
        ipt_add OUTPUT -o lo -p tcp -m cgroup --path "${CG[$i]#"$CG2"/}" -m multiport --dports "$(other_ports "$i")"
        [ ${#RULES[@]} = 3 ] || anomaly "partition of n$i: only ${#RULES[@]} of 3 rules added"
        sleep "$hold"
        heal_partition
        [ ${#RULES[@]} = 0 ] || anomaly "healing n$i's partition left ${#RULES[@]} rules"
        fault_line "heal partition n$i"
        ;;
    freeze)
        hold=$(rand "$FREEZE_MIN" "$FREEZE_MAX")
        say "fault $nfaults: SIGSTOP n$i (pid ${PID[$i]}) for ${hold}s"
        fault_line "start freeze n$i for=${hold}s"
        touch "$OUT/frozen.n$i"
        kill -STOP "${PID[$i]}"
        FROZEN[$i]=1
        sleep "$hold"
        kill -CONT "${PID[$i]}"
        FROZEN[$i]=0
        rm -f "$OUT/frozen.n$i"
        fault_line "heal freeze n$i"
        ;;
    esac
    if t=$(converge "$CONVERGE"); then
        say "healed: every running node sees the others up after ${t}s"
        fault_line "converged ${t}s"
    else
        anomaly "fault $nfaults ($kind n$i): the running nodes did not all see each other up ${CONVERGE}s after the heal"
        for j in "${NODES[@]}"; do ctl "$j" cluster-status >"$OUT/n$j/status.fault$nfaults.json"; done
        fault_line "not converged"
    fi
done
summary_faults=""
for k in "${KINDS[@]}"; do summary_faults+="$k ${COUNT[$k]:-0}  "; done
say "faults done: $nfaults ($summary_faults)"

# ------------------------------------------------------------ drain
check_alive
if ! t=$(converge "$CONVERGE"); then anomaly "the nodes did not converge at the end of the faults"; fi
limit=$((LOAD_START + RUN_S + DRAIN + 120))
say "waiting for the loadgens (publishing until +${RUN_S}s, then draining; at most until $(date -d "@$limit" +%T))"
LG_FAIL=0
for idx in "${!LOADGEN_PIDS[@]}"; do
    p=${LOADGEN_PIDS[$idx]}
    k=${LG[$idx]}
    while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$limit" ]; do sleep 2; done
    if kill -0 "$p" 2>/dev/null; then
        anomaly "loadgen L$k still running past its deadline (hung?); killed. See $OUT/L$k.err"
        kill "$p"
        LG_FAIL=1
    fi
    wait "$p"
    st=$?
    if [ $st != 0 ] || [ ! -s "$OUT/L$k.json" ]; then
        anomaly "loadgen L$k failed (status $st): $(tail -2 "$OUT/L$k.err" | tr '\n' ' ')"
        LG_FAIL=1
    fi
done
LOADGEN_PIDS=()

# ------------------------------------------------------------ verdict
for i in "${NODES[@]}"; do
    ctl "$i" list-queues --interval 0.1 >"$OUT/n$i/queues.end.json"
done
depths=$(jq -s -r '[.[][] | select(.name | startswith("chaos-L")) | select((.ready // 0) + (.unacked // 0) > 0)
    | "\(.name) ready=\(.ready) unacked=\(.unacked)"] | join(", ")' "$OUT"/n*/queues.end.json 2>/dev/null)
# What was left: can a fresh consumer on the queue's own node get it?
# (Left messages are then stranded, not gone; the verdict stands either
# way: the run's consumers never got them.)
fresh=""
for i in "${NODES[@]}"; do
    while read -r q n; do
        [ -n "$q" ] || continue
        got=$(timeout 30 nice -n 19 "$RINGMQ" sub --url "ringmq://127.0.0.1:${NATIVE[$i]}" --queue "$q" --durable \
            --count "$n" --quiet --timeout 5 2>>"$LOG" | grep -o 'received [0-9]*' | tail -1)
        fresh+="${fresh:+, }$q on n$i: ${got:-received ?} of $n"
    done < <(jq -r '.[] | select(.name | startswith("chaos-L")) | select((.ready // 0) + (.unacked // 0) > 0)
        | "\(.name) \((.ready // 0) + (.unacked // 0))"' "$OUT/n$i/queues.end.json" 2>/dev/null)
done
panics=$(grep -l -E "panicked|RUST_BACKTRACE" "$OUT"/n*/serve.log 2>/dev/null | tr '\n' ' ')
[ -n "$panics" ] && anomaly "panic in $panics"

sum() { jq -s "[.[].$1 // 0] | add" "$OUT"/L*.json 2>/dev/null; }
LOST=$(sum lost_confirmed)
{
    echo "==== cluster chaos: $(date -u +%FT%TZ), commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null), seed $SEED"
    echo "run         ${DURATION}s of faults + ${TAIL}s without, ${#LG[@]} loadgens x ${RATE} msg/s, 6p 6c 6q each, persistent + confirm"
    echo "faults      $nfaults: $summary_faults(log: $FAULT_LOG)"
    echo "messages    sent $(sum sent)  confirmed $(sum confirmed)  not confirmed $(sum nacked)  received $(sum received)"
    echo "checker     LOST (confirmed, never received) ${LOST:-?}  duplicates $(sum duplicates)  reordered $(sum reordered)  received unconfirmed $(sum unconfirmed_received)"
    echo "clients     errors $(jq -s '[.[].client_errors // {} | to_entries[].value] | add // 0' "$OUT"/L*.json 2>/dev/null)  reconnects $(sum reconnects)  generator stalls $(sum stalls)"
    jq -s -r '[.[].client_errors // {} | to_entries[]] | group_by(.key) | map({k: .[0].key, n: (map(.value) | add)})
        | sort_by(-.n) | .[] | "  \(.n)\t\(.k)"' "$OUT"/L*.json 2>/dev/null
    for k in "${LG[@]}"; do
        [ -s "$OUT/L$k.json" ] && jq -r '"L'"$k"' via '"$(lg_via "$k")"': sent \(.sent) confirmed \(.confirmed) received \(.received) lost \(.lost_confirmed) dup \(.duplicates) reord \(.reordered) reconnects \(.reconnects); e2e p50 \(.latency_us.p50/1000|floor) ms p99 \(.latency_us.p99/1000|floor) ms max \(.latency_us.max/1000|floor) ms; confirm p99 \(.confirm_latency_us.p99/1000|floor) ms" + (if (.lost_confirmed_samples|length) > 0 then "\n  first lost: " + (.lost_confirmed_samples|join(", ")) else "" end)' "$OUT/L$k.json"
    done
    nodes_line=""
    for i in "${NODES[@]}"; do
        nodes_line+="n$i started ${STARTS[$i]}x$([ "${SKIPCFG[$i]:-0}" = 1 ] && echo ' (last with storage_skip_corrupt)')$([ "${DEAD[$i]:-0}" = 1 ] && echo ' DEAD')  "
    done
    echo "nodes       $nodes_line"
    echo "left queued ${depths:-none}"
    [ -n "$fresh" ] && echo "            then a fresh consumer on the owner: $fresh"
    echo "anomalies   ${#ANOMALIES[@]}"
    for a in "${ANOMALIES[@]}"; do echo "  - $a"; done
    echo "logs        $OUT"
} | tee "$OUT/summary.txt"

if [ -z "$LOST" ] || [ "$LOST" = null ]; then
    RESULT=2
elif [ "$LOST" -gt 0 ]; then
    RESULT=1
elif [ ${#ANOMALIES[@]} -gt 0 ] || [ $LG_FAIL = 1 ] || [ $misplaced = 1 ]; then
    RESULT=2
else
    RESULT=0
fi
say "result: $RESULT ($([ $RESULT = 0 ] && echo clean || ([ $RESULT = 1 ] && echo 'CONFIRMED MESSAGES LOST') || echo anomalies))"
exit $RESULT
