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
    # pip and unpack pika's pure-Python wheel from PyPI into it.
    rm -rf .venv
    python3 -m venv --without-pip .venv
    .venv/bin/python - <<'PY'
import io, json, sysconfig, urllib.parse, urllib.request, zipfile
index = "https://pypi.org/pypi/pika/json"
meta = json.load(urllib.request.urlopen(index, timeout=60))
url = next(f["url"] for f in meta["urls"] if f["filename"].endswith("-py3-none-any.whl"))
url = urllib.parse.urljoin(index, url)
zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(url, timeout=60).read())).extractall(sysconfig.get_paths()["purelib"])
PY
  fi
  .venv/bin/python -c "import pika" || { echo "could not install pika into .venv" >&2; exit 1; }
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
