#!/usr/bin/env bash
# Tail latency at fixed rates (issue 19's targets): one shard pinned to
# core 0 (`--cores 1`), ringmq-loadgen pinned to core 1, open loop, one
# producer and one consumer.
#
#   benches/tail.sh WORKLOAD [DURATION_S]       (default 30)
#
# WORKLOAD: native1k (1 KiB at 5 k/s), idle1k (1 KiB at 200/s: the shard
# parks between messages, benches/idle_wake.sh), native16 (16 B at 100 k/s), amqp16
# (the loadgen's AMQP client, 16 B at 100 k/s), pers1k (1 KiB persistent
# with confirms at 50 k/s; also prints the disk's own floor,
# benches/disk_floor.py, at that rate just before). BIN (default
# target/release) holds the `ringmq` to measure; LOADGEN (default
# $BIN/ringmq-loadgen) the generator, so two brokers can be compared with
# one generator. Prints the CPU idle share of the second before the run
# (the machine is shared: say how quiet it was), the generator's
# percentiles, its own stall count, and the broker's scheduling figures
# (`ringmq_sched_*`, when the build has them). KEEP=DIR keeps the loadgen
# JSON (for `ringmq-loadgen plot --over-time`). Prints the host's steal time
# on each CPU over the run (the VM's CPU cap: a throttled VM freezes until
# the host's 100 ms period ends). TRACE=1 also records every context switch
# (`perf record -e sched:sched_switch`) and prints the longest times the
# shard and the generator were off and on their CPUs (benches/sched_gaps.py).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WL=${1:?workload: native1k idle1k native16 amqp16 pers1k}
DUR=${2:-30}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
LOADGEN=${LOADGEN:-$BIN/ringmq-loadgen}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringmq-tail.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT

idle_pct() { # CPU idle share over one second
  read -r _ a b c d e f g h _ </proc/stat
  local i0=$((d + e)) t0=$((a + b + c + d + e + f + g + h))
  sleep 1
  read -r _ a b c d e f g h _ </proc/stat
  echo $((100 * (d + e - i0) / (a + b + c + d + e + f + g + h - t0 + 1)))
}

case "$WL" in
  native1k) SCHEME=ringmq; ARGS="--size 1024 --rate 5000" ;;
  idle1k) SCHEME=ringmq; ARGS="--size 1024 --rate 200" ;;
  native16) SCHEME=ringmq; ARGS="--size 16 --rate 100000" ;;
  amqp16) SCHEME=amqp; ARGS="--size 16 --rate 100000" ;;
  pers1k) SCHEME=ringmq; ARGS="--size 1024 --rate 50000 --persistent --confirm" ;;
  *) echo "unknown workload $WL" >&2; exit 2 ;;
esac
if [ "$WL" = pers1k ]; then
  python3 "$ROOT/benches/disk_floor.py" 50000 1024 "$DUR" "$DIR" | sed 's/^/disk floor: /'
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
NATIVE=$(grep -o 'native=[^ ]*' "$DIR/serve.out" | cut -d= -f2)
AMQP=$(grep -o 'amqp=[^ ]*' "$DIR/serve.out" | cut -d= -f2)
METRICS=$(grep -o 'metrics=[^ ]*' "$DIR/serve.out" | cut -d= -f2)
if [ "$SCHEME" = amqp ]; then URL="amqp://guest:guest@$AMQP/%2f"; else URL="ringmq://$NATIVE"; fi
echo "idle before: $(idle_pct) %"
# Steal time per CPU over the run: this machine is a VM whose host caps its
# CPU time per 100 ms period; a throttled VM freezes until the period ends,
# and every message in flight then waits (docs/benchmarks.md, "What the
# machine itself does"). USER_HZ ticks of 10 ms, summed from ns by the kernel.
steal() { awk '/^cpu[0-9]/ { printf "%s ", $9 }' /proc/stat; }
STEAL0=$(steal)
if [ -n "${TRACE:-}" ]; then # every context switch, for benches/sched_gaps.py
  perf record -q -e sched:sched_switch -a -o "$DIR/perf.data" -- sleep $((DUR + 2)) 2>/dev/null &
  PERF=$!
fi
# shellcheck disable=SC2086
"$LOADGEN" --url "$URL" $ARGS --duration "$DUR" --warmup 2 --cores 1 --quiet \
  --json "$DIR/lg.json" >"$DIR/lg.out" 2>"$DIR/lg.err" || { cat "$DIR/lg.err" >&2; exit 1; }
STEAL1=$(steal)
if [ -n "${TRACE:-}" ]; then
  wait "$PERF" || true
  perf script -i "$DIR/perf.data" 2>/dev/null | python3 "$ROOT/benches/sched_gaps.py" 5
fi
python3 -c 'import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); print("host steal during the run: " + ", ".join("cpu%d %d ms" % (i, (int(y) - int(x)) * 10) for i, (x, y) in enumerate(zip(a, b))))' "$STEAL0" "$STEAL1"
[ -n "${KEEP:-}" ] && cp "$DIR/lg.json" "$KEEP/$WL-$(date +%s).json"
curl -s "http://$METRICS/metrics" >"$DIR/metrics"
python3 - "$DIR/lg.json" "$DIR/metrics" "$WL" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
k = "confirm_latency_us" if sys.argv[3] == "pers1k" else "latency_us"
p = j[k]
print(f"{sys.argv[3]} {k} p50={p['p50']:.0f} p99={p['p99']:.0f} p999={p['p999']:.0f} max={p['max']:.0f} us; "
      f"delivered/s {j['delivered_per_s']:.0f}; lost {j['lost']}; generator stalls {j.get('stalls', 0)}")
g = j.get("send_lag_us") or {}
if g.get("count"):
    print(f"  generator send lag p50={g['p50']:.0f} p99={g['p99']:.0f} p999={g['p999']:.0f} max={g['max']:.0f} us "
          f"(its own lateness: a stall here is the generator's or its CPU's, not the broker's)")
if sys.argv[3] == "pers1k":
    p = j["latency_us"]
    print(f"  end to end p50={p['p50']:.0f} p99={p['p99']:.0f} p999={p['p999']:.0f} max={p['max']:.0f} us")
# The broker's scheduling delay per queue: samples over 1 ms and the top bucket reached.
rows = {}
for line in open(sys.argv[2]):
    if line.startswith("ringmq_sched_delay_seconds_bucket"):
        lab, v = line.rsplit(" ", 1)
        q = lab.split('queue="')[1].split('"')[0]
        le = lab.split('le="')[1].split('"')[0]
        rows.setdefault(q, []).append((le, float(v)))
    if line.startswith("ringmq_sched_run_max_seconds"):
        lab, v = line.rsplit(" ", 1)
        q = lab.split('queue="')[1].split('"')[0]
        rows.setdefault("runmax:" + q, float(v))
for q, b in rows.items():
    if q.startswith("runmax:"):
        continue
    total = b[-1][1]
    under1 = dict(b).get("0.001", total)
    top = next((le for le, v in b if v >= total), "+Inf")
    print(f"  sched {q}: {int(total)} probes, {int(total - under1)} over 1 ms, all within {top} s; "
          f"longest run per interval {rows.get('runmax:' + q, 0) * 1e6:.0f} us")
PY
