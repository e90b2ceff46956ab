#!/usr/bin/env bash
# The whole test suite, on a fresh Linux machine: installs what the tests
# need, then runs formatting and lint checks, the unit, property and
# integration tests of every workspace member.
set -euo pipefail
cd "$(dirname "$0")/.."

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
# client and amqp091-go, cached under tests/node and target/client-deps.
./scripts/install-clients.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
