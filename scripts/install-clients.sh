#!/usr/bin/env bash
# Installs the AMQP clients that tests/amqp_clients.rs runs, where they are
# cached for the next run (a rerun with everything present takes a second):
#
#   Node's amqplib      tests/node/node_modules   npm ci (version pinned in tests/node/package-lock.json)
#   RabbitMQ Java client target/client-deps/java  Debian's librabbitmq-client-java and libslf4j-java jars
#   amqp091-go          target/client-deps/gopath Debian's golang-go and golang-github-rabbitmq-amqp091-go-dev
#
# When a client cannot be installed because the step itself cannot run here
# (no npm, no javac, no apt-get or not root, a registry out of reach), the
# reason goes to target/client-deps/<client>.skip and its test is skipped
# with that reason; a failure of a step that did run stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."

deps=target/client-deps
mkdir -p "$deps"

skip() { # client reason
  echo "   cannot install the $1 client here: $2 (its test will be skipped)"
  echo "$2" >"$deps/$1.skip"
}

# apt-get install, with one `apt-get update` if the package lists are stale.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >"$deps/apt.log" 2>&1 && return 0
  apt-get update -q >>"$deps/apt.log" 2>&1 && apt-get install -y -q "$@" >>"$deps/apt.log" 2>&1
}

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }

echo "== node: amqplib (tests/node/node_modules)"
rm -f "$deps/node.skip"
if [ -f tests/node/node_modules/amqplib/package.json ]; then
  :
elif ! command -v npm >/dev/null 2>&1; then
  skip node "npm is not installed"
elif ! (cd tests/node && npm ci --no-audit --no-fund --loglevel=error); then
  # npm ci failed: a registry out of reach is a reason to skip; anything
  # else (a broken lock file) is an error.
  if (cd tests/node && timeout 60 npm ping >/dev/null 2>&1); then
    echo "npm ci failed in tests/node although the registry answers" >&2
    exit 1
  fi
  skip node "npm ci could not reach the npm registry"
fi

echo "== java: amqp-client (target/client-deps/java)"
rm -f "$deps/java.skip"
java_jars() {
  mkdir -p "$deps/java"
  cp /usr/share/java/amqp-client.jar /usr/share/java/slf4j-api.jar /usr/share/java/slf4j-nop.jar "$deps/java/"
}
if [ -f "$deps/java/amqp-client.jar" ]; then
  :
elif ! command -v javac >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  skip java "no JDK (javac, java) on this machine"
elif [ -f /usr/share/java/amqp-client.jar ] && [ -f /usr/share/java/slf4j-nop.jar ]; then
  java_jars
elif ! can_apt; then
  skip java "the jars come from Debian's librabbitmq-client-java, and apt-get is missing or needs root"
elif apt_install librabbitmq-client-java libslf4j-java; then
  java_jars
else
  skip java "apt-get install librabbitmq-client-java failed (see $deps/apt.log)"
fi

echo "== go: amqp091-go (target/client-deps/gopath)"
rm -f "$deps/go.skip"
go_src=/usr/share/gocode/src/github.com/rabbitmq/amqp091-go
if [ -f "$deps/gopath/src/github.com/rabbitmq/amqp091-go/channel.go" ] && command -v go >/dev/null 2>&1; then
  :
elif { command -v go >/dev/null 2>&1 && [ -d "$go_src" ]; } || { can_apt && apt_install golang-go golang-github-rabbitmq-amqp091-go-dev; }; then
  ln -sfn /usr/share/gocode "$deps/gopath"
elif can_apt; then
  skip go "apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev failed (see $deps/apt.log)"
else
  skip go "go and amqp091-go come from Debian's packages, and apt-get is missing or needs root"
fi
