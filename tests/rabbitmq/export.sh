#!/usr/bin/env bash
# Starts a private RabbitMQ node (benches/rabbitmq-lib.sh: its own ports,
# dirs and epmd; run as root), declares a topology (a user, a vhost,
# permissions with rabbitmqctl; exchanges, queues, bindings with pika:
# tests/rabbitmq/declare.py) and exports its definitions to OUT with
# `rabbitmqctl export_definitions`. The node is stopped on every exit.
# Used by tests/definitions.rs; also how tests/data/rabbitmq-definitions.json
# was captured. Usage: export.sh OUT [PYTHON]
set -euo pipefail
OUT=$1
PYTHON=${2:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d /tmp/ringmq-rabbit-defs.XXXXXX)
LOG=$TMP/log
say() { echo "export.sh: $*" >&2; }
# shellcheck source=../../benches/rabbitmq-lib.sh
. "$HERE/../../benches/rabbitmq-lib.sh"
cleanup() {
    stop_rabbitmq || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' TERM INT
if ! start_rabbitmq; then
    cat "$LOG" >&2 || true
    exit 1
fi
ctl() { timeout 60 rabbitmqctl -q -n "$RABBIT_NODE" "$@" >>"$LOG" 2>&1; }
ctl add_vhost staging
ctl set_permissions -p staging guest '.*' '.*' '.*'
ctl add_user alice wonderland
ctl set_user_tags alice monitoring
ctl set_permissions -p / alice '^alice\..*' '.*' '^(alice\..*|orders\.eu)$'
ctl set_permissions -p staging alice '' 'stage\..*' '.*'
timeout 60 "$PYTHON" "$HERE/declare.py" "$RABBIT_PORT" >>"$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }
# rabbitmqctl runs as the rabbitmq user: a directory it may write in.
mkdir -m 777 "$TMP/export"
ctl export_definitions "$TMP/export/out.json" || { cat "$LOG" >&2; exit 1; }
cp "$TMP/export/out.json" "$OUT"
say "exported to $OUT"
