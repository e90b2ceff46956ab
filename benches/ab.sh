#!/usr/bin/env bash
# Before/after throughput of two ringmq builds, in alternating runs on one
# machine: the "no slower" check of a change (docs/benchmarks.md).
#
#   benches/ab.sh OLD_RINGMQ NEW_RINGMQ [RUNS]      (default RUNS=3)
#
# Each round runs, for OLD then NEW (then NEW then OLD in the next round, so
# neither build always goes first):
#   e2e16   `ringmq pub` / `ringmq sub` of COUNT 16-byte messages through one
#           queue (benches/e2e.sh's workload, each build with its own tools);
#   amqp16  ringmq-loadgen's AMQP client at full speed, 16 B, one producer and
#           one consumer, against the build's AMQP listener (DURATION s);
#   e2e1k   as e2e16 with 1 KiB messages (COUNT_1K of them);
#   pers1k  as e2e1k, persistent with publisher confirms, into a durable
#           queue (COUNT_PERS of them: every confirm waited for an fdatasync).
# WORKLOADS (default "e2e16 amqp16") picks which run, in that order.
# Prints every run and the median of each build per workload, with the
# ratio NEW/OLD. LOADGEN (default target/release/ringmq-loadgen) is the same
# generator for both builds. Bounded: RUNS x 2 x (e2e + DURATION + WARMUP).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1
NEW=$2
RUNS=${3:-3}
COUNT=${COUNT:-10000000}
COUNT_1K=${COUNT_1K:-3000000}
COUNT_PERS=${COUNT_PERS:-2000000}
WORKLOADS=${WORKLOADS:-e2e16 amqp16}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
LOADGEN=${LOADGEN:-target/release/ringmq-loadgen}

work=$(mktemp -d /tmp/ringmq-ab.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

start() { # $1 = binary; sets pid, NATIVE, AMQP
  rm -rf "$work/data"
  "$1" serve --listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$work/data" >"$work/serve.out" 2>"$work/serve.err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q "ringmq ready" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "ringmq ready" "$work/serve.out" || {
    echo "$1 serve did not get ready within 10 s:" >&2
    cat "$work/serve.out" "$work/serve.err" >&2
    exit 1
  }
  NATIVE=$(grep -o 'native=[^ ]*' "$work/serve.out" | cut -d= -f2)
  AMQP=$(grep -o 'amqp=[^ ]*' "$work/serve.out" | cut -d= -f2)
  HTTP=$(grep -o 'metrics=[^ ]*' "$work/serve.out" | cut -d= -f2)
}

stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

# e2e BINARY COUNT SIZE [PUB_FLAGS...]: prints the consumer's msg/s.
e2e() {
  local bin=$1 count=$2 size=$3 q=ab-e2e-$RANDOM sub_flags=""
  shift 3
  case " $* " in *" --persistent "*) sub_flags=--durable ;; esac
  # shellcheck disable=SC2086
  "$bin" sub --url "ringmq://$NATIVE" --queue "$q" --count "$count" --quiet --timeout 120 $sub_flags \
    2>"$work/sub.err" >"$work/sub.out" &
  local sub=$!
  sleep 0.3
  # Fire and forget, as the figures have always been, unless confirms are
  # asked for: `ringmq pub` confirms by default since --no-confirm exists
  # (an older build has neither the default nor the flag).
  case " $* " in *" --confirm "*) ;; *) "$bin" pub --help | grep -- --no-confirm >/dev/null && set -- "$@" --no-confirm ;; esac
  "$bin" pub --url "ringmq://$NATIVE" --queue "$q" --count "$count" --size "$size" "$@" >"$work/pub.out" ||
    { echo "pub failed: $(cat "$work/pub.out")" >&2; return 1; }
  wait "$sub" || { echo "sub failed: $(cat "$work/sub.err")" >&2; return 1; }
  grep -o '[0-9]* msg/s' "$work/sub.err" | cut -d' ' -f1
}

e2e16() { e2e "$1" "$COUNT" 16; }
e2e1k() { e2e "$1" "$COUNT_1K" 1024; }
pers1k() { e2e "$1" "$COUNT_PERS" 1024 --persistent --confirm; }

amqp16() { # prints msg/s and messages lost
  "$LOADGEN" --url "amqp://guest:guest@$AMQP/%2F" --size 16 --duration "$DURATION" --warmup "$WARMUP" \
    --json "$work/amqp.json" --quiet >"$work/amqp.out" 2>&1 || { cat "$work/amqp.out" >&2; exit 1; }
  local r
  r=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["msgs_per_s"]), r["lost"])' "$work/amqp.json")
  case "$r" in
    *" 0") ;;
    *) # A lost message is a bug: keep what the broker and the loadgen said.
      local keep
      keep=$(mktemp -d /tmp/ringmq-ab-lost.XXXXXX)
      cp "$work/amqp.out" "$work/amqp.json" "$work/serve.out" "$work/serve.err" "$keep/" 2>/dev/null || true
      curl -s -u guest:guest "http://$HTTP/api/queues" >"$keep/queues.json" 2>/dev/null || true
      curl -s -u guest:guest "http://$HTTP/api/connections" >"$keep/connections.json" 2>/dev/null || true
      echo "amqp16 lost messages ($r): broker and loadgen output kept in $keep" >&2 ;;
  esac
  echo "$r"
}

: >"$work/results"
for round in $(seq 1 "$RUNS"); do
  order="old new"
  if [ $((round % 2)) = 0 ]; then order="new old"; fi
  for which in $order; do
    bin=$OLD
    if [ "$which" = new ]; then bin=$NEW; fi
    start "$bin"
    line="round $round $which:"
    for wl in $WORKLOADS; do
      if [ "$wl" = amqp16 ]; then
        r=$(amqp16) || { echo "amqp16 failed on $which ($bin)" >&2; exit 1; }
        read -r v lost <<<"$r"
        line="$line $wl $v msg/s (lost $lost),"
      else
        v=$("$wl" "$bin") || { echo "$wl failed on $which ($bin)" >&2; exit 1; }
        line="$line $wl $v msg/s,"
      fi
      echo "$which $wl $v" >>"$work/results"
    done
    stop
    echo "${line%,}"
  done
done
python3 - "$work/results" $WORKLOADS <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    which, wl, v = line.split()
    runs.setdefault((wl, which), []).append(float(v))
for wl in sys.argv[2:]:
    old, new = statistics.median(runs[(wl, "old")]), statistics.median(runs[(wl, "new")])
    print(f"{wl:<7} old median {old:>10.0f} msg/s  new median {new:>10.0f} msg/s  new/old {new / old:.3f}"
          f"   (old {sorted(runs[(wl, 'old')])}, new {sorted(runs[(wl, 'new')])})")
EOF
