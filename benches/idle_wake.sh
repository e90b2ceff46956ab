#!/usr/bin/env bash
# Idle wake-up (issue 19, item 3): what a parked shard costs the first
# message that arrives. 1 KiB at 200 msg/s (5 ms apart, so a shard with
# `idle_spin_us = 0` parks in io_uring_enter before every message) through
# benches/tail.sh, alternating two brokers of the same build:
#   parked:  idle_spin_us = 0      (the default: park at once)
#   awake:   idle_spin_us = 10000  (spins 10 ms, longer than the gap, so it
#            never parks)
# The generator is the same in both (its own consumer parks in both), so
# the difference of the two end-to-end latencies, in the same window, is
# the shard's wake-up: the kernel waking the thread out of
# io_uring_enter, glommio's reactor turn, and the read's task running.
#
#   benches/idle_wake.sh [ROUNDS] [DURATION_S]     (default 3 rounds, 10 s)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
DUR=${2:-10}
for r in $(seq "$ROUNDS"); do
  for mode in parked awake; do
    if [ $mode = parked ]; then spin=0; else spin=10000; fi
    printf 'round %s %-6s ' "$r" "$mode"
    EXTRA="idle_spin_us = $spin" "$ROOT/benches/tail.sh" idle1k "$DUR" | grep -E '^idle1k|^idle before' | tr '\n' ' '
    echo
  done
done
