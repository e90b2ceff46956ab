#!/usr/bin/env bash
# Installs the AMQP clients that tests/amqp_clients.rs runs, where they are
# cached for the next run (a rerun with everything present takes a second):
#
#   Node's amqplib      tests/node/node_modules   npm ci (version pinned in tests/node/package-lock.json)
#   RabbitMQ Java client target/client-deps/java  Debian's librabbitmq-client-java and libslf4j-java jars
#   amqp091-go          target/client-deps/gopath Debian's golang-go and golang-github-rabbitmq-amqp091-go-dev
#   headless Chromium   /usr/bin/chromium         Debian's chromium (tests/webui.rs drives the web UI in it)
#   RabbitMQ            /usr/sbin/rabbitmq-server  Debian's rabbitmq-server (tests/definitions.rs imports a
#                                                  real RabbitMQ's export; the package's own service is stopped)
#
# A client that cannot be installed stops the script with the reason, on a
# CI run (CI=true) and everywhere else: a test that cannot run must not pass
# by being skipped. A person who knows a client cannot run on a machine asks
# for the skip by name, e.g. RINGMQ_SKIP_CLIENTS=java or
# RINGMQ_SKIP_CLIENTS=node,go; the tests read the same variable, and
# scripts/test.sh names every skipped client in its summary line. Nothing of
# a skip is remembered between runs: each run decides afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/clients-lib.sh

deps=target/client-deps
mkdir -p "$deps"
# Skip markers of earlier versions of this script: each run decides afresh.
rm -f "$deps"/*.skip

clients_check_skip_list || exit 1

fail() { # client reason
  echo "cannot install the $1 client: $2" >&2
  echo "  (to run the suite without it on purpose: RINGMQ_SKIP_CLIENTS=$1 ./scripts/test.sh)" >&2
  exit 1
}

# apt-get install, with one `apt-get update` if the package lists are stale.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >"$deps/apt.log" 2>&1 && return 0
  apt-get update -q >>"$deps/apt.log" 2>&1 && apt-get install -y -q "$@" >>"$deps/apt.log" 2>&1
}

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }

install_node() {
  if [ -f tests/node/node_modules/amqplib/package.json ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    fail node "npm is not installed"
  fi
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) || fail node "npm ci failed in tests/node"
}

install_java() {
  java_jars() {
    mkdir -p "$deps/java"
    cp /usr/share/java/amqp-client.jar /usr/share/java/slf4j-api.jar /usr/share/java/slf4j-nop.jar "$deps/java/"
  }
  if [ -f "$deps/java/amqp-client.jar" ]; then
    return 0
  fi
  if ! command -v javac >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    fail java "no JDK (javac, java) on this machine"
  fi
  if [ -f /usr/share/java/amqp-client.jar ] && [ -f /usr/share/java/slf4j-nop.jar ]; then
    java_jars
    return 0
  fi
  can_apt || fail java "the jars come from Debian's librabbitmq-client-java, and apt-get is missing or needs root"
  apt_install librabbitmq-client-java libslf4j-java ||
    fail java "apt-get install librabbitmq-client-java libslf4j-java failed (see $deps/apt.log)"
  java_jars
}

install_go() {
  local go_src=/usr/share/gocode/src/github.com/rabbitmq/amqp091-go
  if [ -f "$deps/gopath/src/github.com/rabbitmq/amqp091-go/channel.go" ] && command -v go >/dev/null 2>&1; then
    return 0
  fi
  if ! { command -v go >/dev/null 2>&1 && [ -d "$go_src" ]; }; then
    can_apt || fail go "go and amqp091-go come from Debian's packages, and apt-get is missing or needs root"
    apt_install golang-go golang-github-rabbitmq-amqp091-go-dev ||
      fail go "apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev failed (see $deps/apt.log)"
  fi
  ln -sfn /usr/share/gocode "$deps/gopath"
}

install_chromium() {
  if [ -x /usr/bin/chromium ] || [ -n "${RINGMQ_CHROMIUM:-}" ]; then
    return 0
  fi
  can_apt || fail chromium "chromium comes from Debian's package, and apt-get is missing or needs root"
  apt_install chromium || fail chromium "apt-get install chromium failed (see $deps/apt.log)"
}

install_rabbitmq() {
  if command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ]; then
    return 0
  fi
  can_apt || fail rabbitmq "rabbitmq-server comes from Debian's packages, and apt-get is missing or needs root"
  apt_install rabbitmq-server || fail rabbitmq "apt-get install rabbitmq-server failed (see $deps/apt.log)"
  # The package may start its own node on 5672; the test starts a private one.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop rabbitmq-server >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then service rabbitmq-server stop >/dev/null 2>&1 || true; fi
}

for client in $RINGMQ_CLIENTS; do
  if clients_skipped "$client"; then
    echo "== $client: SKIPPED on request (RINGMQ_SKIP_CLIENTS=$RINGMQ_SKIP_CLIENTS)"
    continue
  fi
  case $client in
    node) echo "== node: amqplib (tests/node/node_modules)" ;;
    java) echo "== java: amqp-client (target/client-deps/java)" ;;
    go) echo "== go: amqp091-go (target/client-deps/gopath)" ;;
    chromium) echo "== chromium: headless Chromium for the web UI test (/usr/bin/chromium)" ;;
    rabbitmq) echo "== rabbitmq: rabbitmq-server (/usr/sbin/rabbitmq-server)" ;;
  esac
  "install_$client"
done
