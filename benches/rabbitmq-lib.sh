# shellcheck shell=bash
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

# The environment of the node RABBIT_NODE, its files under RABBIT_DIR
# (default $TMP/rabbit; a cluster's node i under $TMP/rabbit-i).
rabbit_env() {
    local d=${RABBIT_DIR:-$TMP/rabbit}
    export RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_PORT=$EPMD_PORT
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log
    export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins RABBITMQ_PID_FILE=$d/pid
    export RABBITMQ_CONFIG_FILE=$d/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config
    export RABBITMQ_PLUGINS_EXPAND_DIR=$d/plugins-expand
    # A VM that fails to boot writes its crash dump here, not into the
    # rabbitmq user's home (the package's wrapper runs from there).
    export ERL_CRASH_DUMP=$d/erl_crash.dump
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# What every node's configuration has, in DIR: no plugins (management
# off), AMQP on 127.0.0.1:PORT, warnings only in the log.
rabbit_config() { # dir port
    mkdir -p "$1"
    echo "[]." >"$1/enabled_plugins"
    cat >"$1/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$2
loopback_users.guest = true
log.console = false
log.file.level = warning
EOF
}

rabbit_install() {
    if ! command -v rabbitmq-server >/dev/null; then
        say "installing rabbitmq-server from Debian's packages"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server; } >>"$LOG" 2>&1
        # The package may have started a system instance; this script uses its own.
    fi
}

start_rabbitmq() {
    rabbit_install
    local base
    base=$(free_ports 4)
    RABBIT_PORT=$base DIST_PORT=$((base + 1)) EPMD_PORT=$((base + 2)) RABBIT_TLS_PORT=$((base + 3))
    rabbit_config "$TMP/rabbit" "$RABBIT_PORT"
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
    cat "${RABBIT_DIR:-$TMP/rabbit}/pid" 2>/dev/null
}

stop_rabbitmq() {
    [ "$RABBIT_STARTED" = 1 ] || return 0
    RABBIT_STARTED=0
    rabbit_env
    stop_rabbit_node
    stop_epmd
    return 0
}

# Stops the node rabbit_env names; kills its VM if the stop failed.
stop_rabbit_node() {
    timeout 60 rabbitmqctl -n "$RABBIT_NODE" stop >>"$LOG" 2>&1 || true
    local beam
    beam=$(rabbit_pid || true)
    # Only if it is still RabbitMQ's VM (a stop that failed), not a reused pid.
    if [ -n "$beam" ] && grep -q beam "/proc/$beam/comm" 2>/dev/null; then kill -9 "$beam" || true; fi
}

# The epmd RabbitMQ started on its private port (EPMD_PORT): only if what
# listens there is an epmd, since the port may since have gone to another
# program (another benchmark's broker on an ephemeral port).
stop_epmd() {
    local epmd
    epmd=$(ss -ltnpH "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    if [ -n "$epmd" ] && [ "$(cat "/proc/$epmd/comm" 2>/dev/null)" = epmd ]; then kill "$epmd" 2>/dev/null || true; fi
}

# ---------------------------------------------------------------- a cluster
# RabbitMQ as a cluster of RABBIT_NODES nodes on this machine
# (benches/cluster.sh). Node i (1..RABBIT_NODES) is rabbit<i>@localhost
# with its files in $TMP/rabbit-i. From RABBIT_CLUSTER_BASE (default: 100
# free ports), node i takes BASE + 10 (i - 1) for AMQP and the port after
# it for Erlang distribution; one epmd for all at BASE + 90, the CLI
# tools' own distribution ports at BASE + 91..99. One Erlang cookie: the
# rabbitmq user's (root runs the tools as that user, through the
# package's wrapper), so the nodes and rabbitmqctl all share it.
RABBIT_NODES=${RABBIT_NODES:-3}
RABBIT_CLUSTER_STARTED=0
RABBIT_LAUNCHERS=() # node i's rabbitmq-server (the wrapper script), by i

# Sets and exports node i's environment (RABBIT_NODE, RABBIT_PORT, ...).
rabbit_node_env() { # i
    RABBIT_NODE=rabbit$1@localhost RABBIT_DIR=$TMP/rabbit-$1
    RABBIT_PORT=$(rabbit_node_port "$1") DIST_PORT=$(($(rabbit_node_port "$1") + 1))
    EPMD_PORT=$((RABBIT_CLUSTER_BASE + 90))
    rabbit_env
    export RABBITMQ_CTL_DIST_PORT_MIN=$((RABBIT_CLUSTER_BASE + 91))
    export RABBITMQ_CTL_DIST_PORT_MAX=$((RABBIT_CLUSTER_BASE + 99))
}

# The AMQP port of node i.
rabbit_node_port() { echo $((RABBIT_CLUSTER_BASE + 10 * ($1 - 1))); }

# rabbitmqctl against node i, in a subshell (the caller's environment
# stays as it was), bounded in time.
rabbit_ctl() { # i args...
    local i=$1
    shift
    (rabbit_node_env "$i" && timeout 120 rabbitmqctl -n "$RABBIT_NODE" "$@")
}

# The nodes registered with the cluster's epmd ("rabbit1 rabbit3").
rabbit_epmd_names() {
    { epmd -port $((RABBIT_CLUSTER_BASE + 90)) -names 2>/dev/null || true; } | awk '$1 == "name" {printf "%s ", $2}'
}

# Says why node i failed and shows what RabbitMQ said about it, since its
# files go with TMP on exit: the telling lines of the CLI's answer (ctl
# file, if any); of the node's console output and log file
# (log.file.level = warning), the first errors (a failed boot's cause
# comes first, its crash report after) and the last lines (how far the
# boot got: "Starting broker... completed"); all of them into LOG.
rabbit_node_failed() { # i reason [ctl-output-file]
    local i=$1 f
    say "RabbitMQ node rabbit$i@localhost: $2; registered with epmd: $(rabbit_epmd_names)(logs in $LOG)"
    if [ -n "${3:-}" ] && [ -s "$3" ]; then
        grep -E 'Error|epmd|reason|nodedown|timeout|timed out|inconsistent|not running' "$3" | head -8 |
            sed "s|^ *|  rabbitmqctl: |" >&2 || true
    fi
    for f in "$TMP/rabbit-$i/stdout.log" "$TMP/rabbit-$i/log/rabbit$i@localhost.log"; do
        [ -s "$f" ] || continue
        { echo "==== $f"; cat "$f"; } >>"$LOG"
        {
            grep -m 6 -E '\[(error|critical)\]|BOOT FAILED|eaddrinuse' "$f" || true
            echo "..."
            grep -v -E '^ *(##|$|Doc guides|Support|Tutorials|Monitoring|Release series|Erlang|TLS Library|Logs|Config file|/|<stdout>)' "$f" |
                tail -n 4
        } | sed "s|^|  rabbit$i $(basename "$f"): |" >&2
    done
}

# Waits until node i has booted, at most SECONDS for each step: until its
# VM has registered with epmd (while its launcher, pid, runs: a node that
# cannot boot exits), then until the broker has started. The first wait
# is needed because `rabbitmqctl await_startup` fails at once for a node
# that has not registered yet ("epmd reports: node 'rabbit2' not running
# at all") instead of waiting for it; on 2 busy cores a node's launcher
# scripts and VM can take longer to get there than the CLI's own VM.
rabbit_await_node() { # i pid seconds
    local i=$1 pid=$2 secs=$3 out=$TMP/rabbit-$1/ctl.out
    for _ in $(seq 1 $((secs * 5))); do
        case " $(rabbit_epmd_names) " in *" rabbit$i "*) break ;; esac
        if ! kill -0 "$pid" 2>/dev/null; then
            rabbit_node_failed "$i" "exited while starting"
            return 1
        fi
        sleep 0.2
    done
    case " $(rabbit_epmd_names) " in
        *" rabbit$i "*) ;;
        *) rabbit_node_failed "$i" "not registered with epmd after $secs s"; return 1 ;;
    esac
    if ! rabbit_ctl "$i" await_startup --timeout "$secs" >"$out" 2>&1; then
        cat "$out" >>"$LOG"
        rabbit_node_failed "$i" "did not start in $secs s" "$out"
        return 1
    fi
}

# The ports of the cluster's range that something listens on, each with
# its program ("14600:beam.smp"). An epmd on the cluster's epmd port with
# no node registered is not counted: a previous run that was killed
# before its exit trap leaves it behind (epmd outlives the nodes), and
# the nodes can share it; stop_rabbitmq_cluster stops it.
rabbit_busy_ports() {
    local p line prog epmd_port=$((RABBIT_CLUSTER_BASE + 90))
    for p in $(seq "$RABBIT_CLUSTER_BASE" $((RABBIT_CLUSTER_BASE + 99))); do
        line=$(ss -ltnpH "sport = :$p" 2>/dev/null | head -1)
        [ -n "$line" ] || continue
        prog=$(echo "$line" | grep -o 'users:(("[^"]*"' | cut -d'"' -f2 || true)
        if [ "$p" = "$epmd_port" ] && [ "$prog" = epmd ] && [ -z "$(rabbit_epmd_names)" ]; then
            say "RabbitMQ cluster: reusing an idle epmd left on port $p"
            continue
        fi
        printf ' %s' "$p:${prog:-?}"
    done
}

# Starts the nodes, joins nodes 2.. to node 1 (stop_app, join_cluster,
# start_app) and checks that node 1 sees them all running.
start_rabbitmq_cluster() {
    rabbit_install
    [ -n "${RABBIT_CLUSTER_BASE:-}" ] || RABBIT_CLUSTER_BASE=$(free_ports 100)
    local i busy
    busy=$(rabbit_busy_ports)
    if [ -n "$busy" ]; then
        say "RabbitMQ cluster: ports in use:$busy (set RABBIT_CLUSTER_BASE)"
        return 1
    fi
    chmod 755 "$TMP"
    RABBIT_CLUSTER_STARTED=1
    say "starting RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null):" \
        "$RABBIT_NODES nodes, AMQP on 127.0.0.1:$RABBIT_CLUSTER_BASE + 10 (i - 1)"
    for i in $(seq 1 "$RABBIT_NODES"); do
        rabbit_config "$TMP/rabbit-$i" "$(rabbit_node_port "$i")"
        if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$TMP/rabbit-$i"; fi
        (rabbit_node_env "$i" && exec nohup rabbitmq-server >"$TMP/rabbit-$i/stdout.log" 2>&1) &
        RABBIT_LAUNCHERS[i]=$!
        # The first node starts the shared epmd (and, on a fresh machine,
        # writes the cookie) before the others look for them; the others
        # boot side by side.
        if [ "$i" = 1 ]; then rabbit_await_node 1 "${RABBIT_LAUNCHERS[1]}" 90 || return 1; fi
    done
    for i in $(seq 2 "$RABBIT_NODES"); do
        rabbit_await_node "$i" "${RABBIT_LAUNCHERS[i]}" 90 || return 1
    done
    local out=$TMP/join.out
    for i in $(seq 2 "$RABBIT_NODES"); do
        if ! { rabbit_ctl "$i" stop_app && rabbit_ctl "$i" join_cluster rabbit1@localhost &&
            rabbit_ctl "$i" start_app; } >"$out" 2>&1; then
            cat "$out" >>"$LOG"
            rabbit_node_failed "$i" "did not join rabbit1@localhost" "$out"
            return 1
        fi
        cat "$out" >>"$LOG"
    done
    local running
    running=$(rabbit_ctl 1 -q cluster_status --formatter json 2>>"$LOG" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))' 2>>"$LOG" || echo 0)
    if [ "$running" != "$RABBIT_NODES" ]; then
        say "RabbitMQ cluster: $running of $RABBIT_NODES nodes running; see $LOG"
        return 1
    fi
}

# The Erlang VM (beam.smp) under process pid: a node's launcher runs the
# package's wrapper, su, sh, RabbitMQ's script and then the VM.
rabbit_launcher_beam() { # pid
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        if [ "$(cat "/proc/$c/comm" 2>/dev/null)" = beam.smp ]; then echo "$c"; return; fi
        rabbit_launcher_beam "$c"
    done
}

stop_rabbitmq_cluster() {
    [ "$RABBIT_CLUSTER_STARTED" = 1 ] || return 0
    RABBIT_CLUSTER_STARTED=0
    local i beam launcher
    for i in $(seq "$RABBIT_NODES" -1 1); do
        (rabbit_node_env "$i" && stop_rabbit_node)
        # A node still booting when the start gave up may have neither
        # answered the stop nor written its pid file: its VM is found
        # under its launcher, which runs until the VM has exited (a few
        # seconds after a stop that worked).
        launcher=${RABBIT_LAUNCHERS[i]:-}
        [ -n "$launcher" ] || continue
        for _ in $(seq 1 50); do
            kill -0 "$launcher" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$launcher" 2>/dev/null; then
            beam=$(rabbit_launcher_beam "$launcher")
            if [ -n "$beam" ]; then kill -9 "$beam" 2>/dev/null || true; fi
        fi
    done
    RABBIT_LAUNCHERS=()
    (rabbit_node_env 1 && stop_epmd)
    return 0
}

# The exit trap the benchmark scripts share: the ringmq they started
# (RINGMQ_PID), a helper process (WATCH_PID), RabbitMQ (one node or a
# cluster), and TMP.
bench_cleanup() {
    set +eu
    [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null
    if [ -n "${RINGMQ_PID:-}" ]; then
        kill "$RINGMQ_PID" 2>/dev/null
        wait "$RINGMQ_PID" 2>/dev/null
    fi
    stop_rabbitmq
    stop_rabbitmq_cluster
    rm -rf "$TMP"
}

# ONLY=a,b keeps the WORKLOADS entries ("key|title|...") whose key is
# listed; none matching is an error (the caller's `say` reports it).
only_workloads() {
    [ -n "${ONLY:-}" ] || return 0
    local keep=() wl
    for wl in "${WORKLOADS[@]}"; do
        case ",$ONLY," in *",${wl%%|*},"*) keep+=("$wl") ;; esac
    done
    [ ${#keep[@]} -gt 0 ] || { say "ONLY=$ONLY matches no workload"; exit 1; }
    WORKLOADS=("${keep[@]}")
}
