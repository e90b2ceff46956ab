#!/usr/bin/env bash
# The whole test suite, on a fresh Linux machine: installs what the tests
# need, then runs formatting and lint checks, the unit, property and
# integration tests of every workspace member.
#
# A client that cannot be installed fails the run; RINGMQ_SKIP_CLIENTS=java
# (comma separated names: node, java, go, rabbitmq) skips it on purpose. The last line
# names what ran and what was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/clients-lib.sh
clients_check_skip_list
# The tests read the same list (tests/amqp_clients.rs, tests/definitions.rs).
export RINGMQ_SKIP_CLIENTS

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
# rustfmt and clippy ship with rustup's default profile; add them if not.
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The AMQP tests run real clients: pika from a venv at .venv.
echo "== python venv with pika (.venv)"
if ! .venv/bin/python -c "import pika" >/dev/null 2>&1; then
  if python3 -m venv .venv >/dev/null 2>&1; then
    .venv/bin/pip install -q pika
  else
    # Debian without python3-venv has no ensurepip: make the venv without
    # pip and let the system's pip install pika into it.
    rm -rf .venv
    python3 -m venv --without-pip .venv
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python3 -m pip install -q --target "$site" pika
  fi
  .venv/bin/python -c "import pika" || { echo "could not install pika into .venv" >&2; exit 1; }
fi

# The other AMQP clients (tests/amqp_clients.rs): Node's amqplib, the Java
# client and amqp091-go, cached under tests/node and target/client-deps; and
# headless Chromium for the web UI (tests/webui.rs).
./scripts/install-clients.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# Every `test result:` line of both cargo runs goes to a log for the summary.
log=target/test-results.log
mkdir -p target
: >"$log"
echo "== cargo test"
cargo test --workspace --all-targets 2>&1 | tee -a "$log"
# --all-targets leaves the doctests out; they run here.
echo "== cargo test --doc"
cargo test --workspace --doc 2>&1 | tee -a "$log"

ran="" skipped=""
for client in $RINGMQ_CLIENTS; do
  if clients_skipped "$client"; then skipped="$skipped $client"; else ran="$ran $client"; fi
done
# Sums of `test result: ok. P passed; F failed; I ignored; ...` lines.
read -r passed failed ignored < <(awk '/^test result:/ {
  for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?/) p += $(i-1); if ($(i) ~ /^failed;?/) f += $(i-1); if ($(i) ~ /^ignored;?/) g += $(i-1) }
} END { print p+0, f+0, g+0 }' "$log")
echo "tests: $passed passed, $failed failed, $ignored skipped"
echo "summary: ran fmt, clippy, the workspace's unit, property, integration and doc tests," \
  "clients (AMQP, browser):${ran:- none}; skipped on request (RINGMQ_SKIP_CLIENTS):${skipped:- none}; #[ignore]d tests: $ignored"
