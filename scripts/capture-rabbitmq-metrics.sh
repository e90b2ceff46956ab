#!/usr/bin/env bash
# Regenerates tests/data/rabbitmq_prometheus_names.txt: the metric names,
# types and label names that RabbitMQ's rabbitmq_prometheus plugin serves,
# taken from a real node after real traffic. tests/metrics_names.rs checks
# ringmq's /metrics against it.
#
#   scripts/capture-rabbitmq-metrics.sh [OUT]
#   DASHBOARD=RabbitMQ-Overview.json scripts/capture-rabbitmq-metrics.sh
#   scripts/capture-rabbitmq-metrics.sh --dashboard-only RabbitMQ-Overview.json
#
# With DASHBOARD (the stock dashboard's JSON, from the rabbitmq-server
# repository at the captured version: deps/rabbitmq_prometheus/docker/
# grafana/dashboards/RabbitMQ-Overview.json), it also writes
# tests/data/rabbitmq_overview_dashboard_names.txt: the metric names the
# dashboard's queries read (those of the /metrics capture). The
# --dashboard-only form does that step alone, against the capture there.
#
# Starts a private RabbitMQ node (benches/rabbitmq-lib.sh: its own ports,
# data and logs under a temporary directory; root, as the package's
# scripts need), enables rabbitmq_prometheus on a free loopback port,
# declares a queue, publishes with confirms, consumes part with manual
# acks (some left unacked on an open channel, so the channel and queue
# series have samples), then scrapes /metrics (aggregated, what the stock
# RabbitMQ-Overview dashboard reads) and /metrics/per-object, and writes
# one line per (endpoint, name):
#
#   ENDPOINT NAME TYPE LABEL,LABEL,...     ("-" when it has no labels)
#
# A histogram or summary is listed under its family name; its samples'
# suffixes (_bucket, _sum, _count) and `le`/`quantile` are left out.
# Needs pika: PYTHON (default .venv/bin/python).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DASHBOARD_OUT=$ROOT/tests/data/rabbitmq_overview_dashboard_names.txt

# The names of capture $1 that dashboard JSON $2 queries, into $3.
dashboard_names() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
capture, dashboard, out = sys.argv[1:4]
names = {l.split()[1] for l in open(capture) if l.startswith("metrics ")}
exprs = []
def walk(p):
    for t in p.get("targets", []):
        exprs.append(t.get("expr", ""))
    for q in p.get("panels", []):
        walk(q)
for p in json.load(open(dashboard))["panels"]:
    walk(p)
used = sorted({w for e in exprs for w in re.findall(r"[a-z_][a-z0-9_]*", e)} & names)
with open(out, "w") as f:
    f.write(f"# Metric names queried by {dashboard.split('/')[-1]} (scripts/capture-rabbitmq-metrics.sh)\n")
    f.write("\n".join(used) + "\n")
print(f"capture: {len(used)} dashboard names into {out}", file=sys.stderr)
PY
}

if [ "${1:-}" = --dashboard-only ]; then
    dashboard_names "$ROOT/tests/data/rabbitmq_prometheus_names.txt" "$2" "$DASHBOARD_OUT"
    exit 0
fi
OUT=${1:-$ROOT/tests/data/rabbitmq_prometheus_names.txt}
TMP=$(mktemp -d)
LOG=$TMP/capture.log
say() { echo "capture: $*" >&2; }
# shellcheck source=../benches/rabbitmq-lib.sh
. "$ROOT/benches/rabbitmq-lib.sh"
trap 'stop_rabbitmq; rm -rf "$TMP"' EXIT

rabbit_install
base=$(free_ports 5)
RABBIT_PORT=$base DIST_PORT=$((base + 1)) EPMD_PORT=$((base + 2)) PROM_PORT=$((base + 4))
rabbit_config "$TMP/rabbit" "$RABBIT_PORT"
# Statistics every 500 ms (default 5 s), so the scrape sees the traffic.
cat >>"$TMP/rabbit/rabbitmq.conf" <<CONF
prometheus.tcp.port = $PROM_PORT
prometheus.tcp.ip = 127.0.0.1
collect_statistics_interval = 500
CONF
if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$TMP/rabbit"; fi
chmod 755 "$TMP"
rabbit_env
rabbitmq-plugins enable --offline rabbitmq_prometheus >>"$LOG" 2>&1
VERSION=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)
say "starting RabbitMQ $VERSION, AMQP 127.0.0.1:$RABBIT_PORT, Prometheus 127.0.0.1:$PROM_PORT"
nohup rabbitmq-server >"$TMP/rabbit/stdout.log" 2>&1 &
RABBIT_STARTED=1
wait_port "$RABBIT_PORT" 90 || true
if ! rabbitmqctl -n "$RABBIT_NODE" await_startup --timeout 90 >>"$LOG" 2>&1; then
    say "RabbitMQ did not start"
    cat "$LOG" "$TMP/rabbit/stdout.log" >&2
    exit 1
fi
wait_port "$PROM_PORT" 30

"$PYTHON" - "$RABBIT_PORT" "$PROM_PORT" "$OUT" "$VERSION" <<'PY'
import re, sys, time, urllib.request
import pika

amqp_port, prom_port, out, version = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
params = pika.ConnectionParameters("127.0.0.1", amqp_port)
pub = pika.BlockingConnection(params)
ch = pub.channel()
ch.confirm_delivery()
ch.queue_declare("capture.q", durable=True)
ch.exchange_declare("capture.x", "direct", durable=True)
ch.queue_bind("capture.q", "capture.x", "k")
for i in range(20):
    ch.basic_publish("capture.x", "k", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
ch.basic_publish("capture.x", "nowhere", b"unroutable")
ch.basic_publish("", "capture.q", b"default exchange")
# A consumer with manual acks: 5 acked, 5 left unacked on the open channel.
con = pika.BlockingConnection(params)
cc = con.channel()
cc.basic_qos(prefetch_count=10)
got = []
cc.basic_consume("capture.q", lambda c, m, p, b: got.append(m.delivery_tag))
deadline = time.time() + 10
while len(got) < 10 and time.time() < deadline:
    con.process_data_events(time_limit=0.2)
for tag in got[:5]:
    cc.basic_ack(tag)
g = pub.channel()
g.basic_get("capture.q", auto_ack=False)
g.basic_get("capture.q", auto_ack=True)
g.queue_declare("capture.empty")
g.basic_get("capture.empty", auto_ack=True)
time.sleep(2.5)  # two statistics intervals and more

def families(endpoint):
    body = urllib.request.urlopen(f"http://127.0.0.1:{prom_port}{endpoint}", timeout=30).read().decode()
    types, labels = {}, {}
    for line in body.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            labels.setdefault(m.group(1), set())
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        name = m.group(1)
        family = name
        if name not in types:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
        names = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or "")) - {"le", "quantile"}
        labels.setdefault(family, set()).update(names)
    return types, labels

lines = []
for endpoint, key in (("/metrics", "metrics"), ("/metrics/per-object", "per-object")):
    types, labels = families(endpoint)
    for name in sorted(types):
        lines.append(f"{key} {name} {types[name]} {','.join(sorted(labels[name])) or '-'}")
with open(out, "w") as f:
    f.write(f"# rabbitmq_prometheus names, from RabbitMQ {version} (scripts/capture-rabbitmq-metrics.sh)\n")
    f.write("# ENDPOINT NAME TYPE LABELS\n")
    f.write("\n".join(lines) + "\n")
print(f"capture: {len(lines)} lines into {out}", file=sys.stderr)
pub.close()
con.close()
PY
if [ -n "${DASHBOARD:-}" ]; then dashboard_names "$OUT" "$DASHBOARD" "$DASHBOARD_OUT"; fi
