#!/usr/bin/env bash
# Fuzzes every decoder with libFuzzer on the STABLE toolchain.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Builds the targets in fuzz/ with the coverage instrumentation that
# `cargo fuzz build -s none` would ask rustc for (all of it stable `-C`
# flags: no nightly, no sanitizer runtime), then runs each target for
# SECONDS at nice 19, from its committed seeds (fuzz/seeds/<target>, read
# only) and its working corpus (fuzz/corpus/<target>, kept between runs,
# not committed). Prints the executions and crashes of each target; a crash
# input is saved under fuzz/artifacts/<target>/ and the script exits 1.
# FUZZ_JOBS=N runs N targets at once (default 1). Nothing to install: the
# libfuzzer-sys crate builds libFuzzer from its C++ source with the system
# compiler. See docs/security.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
all=(decode amqp_frame amqp_diff amqp_props table record recovery definitions config link data_link reply_name)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
jobs=${FUZZ_JOBS:-1}

if ! command -v c++ >/dev/null 2>&1; then
  echo "a C++ compiler (c++) is needed to build libFuzzer: apt-get install g++" >&2
  exit 1
fi
host=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
echo "== building fuzz targets (release, debug assertions and overflow checks on)"
nice -n 19 cargo build --release --target "$host" --bins

bin=target/$host/release
# The recovery target writes segment files for every input: on tmpfs that
# is ten times faster than on a disk (and spares it).
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
mkdir -p logs
run_one() {
  local t=$1 max_len=4096
  case $t in record | recovery) max_len=12800 ;; esac
  mkdir -p "corpus/$t" "artifacts/$t"
  nice -n 19 "$bin/$t" "corpus/$t" "seeds/$t" \
    -max_total_time="$secs" -max_len="$max_len" -timeout=20 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || true
}

running=0
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "no fuzz target $t" >&2; exit 2; }
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

total=0
crashed=0
printf '%-12s %14s %8s\n' target executions crashes
for t in "${targets[@]}"; do
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
  crashes=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  printf '%-12s %14s %8s\n' "$t" "${execs:-?}" "$crashes"
  total=$((total + ${execs:-0}))
  crashed=$((crashed + crashes))
done
printf '%-12s %14s %8s\n' total "$total" "$crashed"
if [ "$crashed" -gt 0 ]; then
  echo "crash inputs are in fuzz/artifacts/; logs in fuzz/logs/" >&2
  exit 1
fi
