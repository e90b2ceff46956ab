#!/usr/bin/env bash
# Runs the power-loss simulation (tests/storage_powerloss.rs) over N seeded
# crash points (default 10000) in release mode, in slices so a failure
# names its slice; each crash point is one seed, from BASE (default 0).
# Usage: scripts/powerloss.sh [N] [BASE]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
BASE="${2:-0}"
SLICE=2000
cargo test --release --test storage_powerloss --no-run
done_n=0
while [ "$done_n" -lt "$N" ]; do
  n=$((N - done_n < SLICE ? N - done_n : SLICE))
  RINGMQ_POWERLOSS_BASE=$((BASE + done_n)) RINGMQ_POWERLOSS_SEEDS="$n" \
    cargo test --release --test storage_powerloss -- --nocapture 2>&1 | grep -E "^power loss:|crash points lost|^seed |test result"
  done_n=$((done_n + n))
done
echo "powerloss: $N crash points from seed $BASE, none lost anything"
