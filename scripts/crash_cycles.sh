#!/usr/bin/env bash
# Runs the kill -9 crash test for N cycles (default 200) in release mode.
# Usage: scripts/crash_cycles.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200}"
RINGMQ_CRASH_CYCLES="$N" cargo test --release --test storage_crash -- --nocapture
