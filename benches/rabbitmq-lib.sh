# RabbitMQ for the benchmarks, sourced by benches/compare.sh and
# benches/report.sh: installed from Debian's packages when missing, started
# without systemd on spare loopback ports, its data and logs under $TMP.
#
# The sourcing script sets TMP (a private temporary directory) and LOG (a
# log file), defines say(), and calls stop_rabbitmq from its exit trap.
# TLS=1 adds an AMQPS listener with the certificate in $TMP/tls.

RABBIT_NODE=rabbit-bench-$$@localhost
RABBIT_STARTED=0

# A port with `count` free ports from it on, on 127.0.0.1.
free_ports() {
    local count=$1 base p ok
    for _ in $(seq 1 200); do
        base=$((20000 + RANDOM % 30000))
        ok=1
        for p in $(seq "$base" $((base + count - 1))); do
            if ss -ltnH "sport = :$p" | grep -q .; then ok=0; break; fi
        done
        if [ $ok = 1 ]; then echo "$base"; return; fi
    done
    echo "no free ports" >&2
    exit 1
}

wait_port() { # port seconds
    local i
    for i in $(seq 1 $(($2 * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

rabbit_env() {
    export RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_PORT=$EPMD_PORT
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_MNESIA_BASE=$TMP/rabbit/mnesia RABBITMQ_LOG_BASE=$TMP/rabbit/log
    export RABBITMQ_ENABLED_PLUGINS_FILE=$TMP/rabbit/enabled_plugins RABBITMQ_PID_FILE=$TMP/rabbit/pid
    export RABBITMQ_CONFIG_FILE=$TMP/rabbit/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=$TMP/rabbit/advanced.config
    export RABBITMQ_PLUGINS_EXPAND_DIR=$TMP/rabbit/plugins-expand
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

start_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null; then
        say "installing rabbitmq-server from Debian's packages"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server; } >>"$LOG" 2>&1
        # The package may have started a system instance; this script uses its own.
    fi
    local base
    base=$(free_ports 4)
    RABBIT_PORT=$base DIST_PORT=$((base + 1)) EPMD_PORT=$((base + 2)) RABBIT_TLS_PORT=$((base + 3))
    mkdir -p "$TMP/rabbit"
    echo "[]." >"$TMP/rabbit/enabled_plugins"
    cat >"$TMP/rabbit/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$RABBIT_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
EOF
    if [ "${TLS:-0}" = 1 ]; then
        cp "$TMP/tls/ca.pem" "$TMP/tls/server.pem" "$TMP/tls/server.key" "$TMP/rabbit/"
        cat >>"$TMP/rabbit/rabbitmq.conf" <<EOF
listeners.ssl.default = 127.0.0.1:$RABBIT_TLS_PORT
ssl_options.cacertfile = $TMP/rabbit/ca.pem
ssl_options.certfile = $TMP/rabbit/server.pem
ssl_options.keyfile = $TMP/rabbit/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
    fi
    id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq "$TMP/rabbit"
    chmod 755 "$TMP"
    rabbit_env
    say "starting RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) on 127.0.0.1:$RABBIT_PORT"
    nohup rabbitmq-server >"$TMP/rabbit/stdout.log" 2>&1 &
    RABBIT_STARTED=1
    wait_port "$RABBIT_PORT" 60 || true
    if ! rabbitmqctl -n "$RABBIT_NODE" await_startup --timeout 60 >>"$LOG" 2>&1; then
        say "RabbitMQ did not start; see $TMP/rabbit and $LOG"
        return 1
    fi
}

# The Erlang VM's pid (beam.smp), from the pid file RabbitMQ writes.
rabbit_pid() {
    cat "$TMP/rabbit/pid" 2>/dev/null
}

stop_rabbitmq() {
    [ "$RABBIT_STARTED" = 1 ] || return 0
    RABBIT_STARTED=0
    rabbit_env
    rabbitmqctl -n "$RABBIT_NODE" stop >>"$LOG" 2>&1 || true
    local beam epmd
    beam=$(rabbit_pid || true)
    # Only if it is still RabbitMQ's VM (a stop that failed), not a reused pid.
    if [ -n "$beam" ] && grep -q beam "/proc/$beam/comm" 2>/dev/null; then kill -9 "$beam" || true; fi
    # The epmd this RabbitMQ started on its private port: only if what
    # listens there is an epmd, since the port may since have gone to
    # another program (another benchmark's broker on an ephemeral port).
    epmd=$(ss -ltnpH "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    if [ -n "$epmd" ] && [ "$(cat "/proc/$epmd/comm" 2>/dev/null)" = epmd ]; then kill "$epmd" 2>/dev/null || true; fi
    return 0
}

# The exit trap the benchmark scripts share: the ringmq they started
# (RINGMQ_PID), a helper process (WATCH_PID), RabbitMQ, and TMP.
bench_cleanup() {
    set +eu
    [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null
    if [ -n "${RINGMQ_PID:-}" ]; then
        kill "$RINGMQ_PID" 2>/dev/null
        wait "$RINGMQ_PID" 2>/dev/null
    fi
    stop_rabbitmq
    rm -rf "$TMP"
}
