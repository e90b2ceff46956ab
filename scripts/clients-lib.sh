# Sourced by scripts/install-clients.sh and scripts/test.sh: the AMQP
# clients of tests/amqp_clients.rs, the browser of tests/webui.rs, RabbitMQ
# itself (tests/definitions.rs exports a real RabbitMQ's definitions), and
# the skips a person asked for.

# Every client the suite runs, in order.
RINGMQ_CLIENTS="node java go chromium rabbitmq"
RINGMQ_SKIP_CLIENTS="${RINGMQ_SKIP_CLIENTS:-}"

# True when RINGMQ_SKIP_CLIENTS (comma or space separated) names $1.
clients_skipped() {
  local want
  for want in ${RINGMQ_SKIP_CLIENTS//,/ }; do
    [ "$want" = "$1" ] && return 0
  done
  return 1
}

# A misspelt skip would silently run nothing less, or skip nothing: refuse it.
clients_check_skip_list() {
  local want
  for want in ${RINGMQ_SKIP_CLIENTS//,/ }; do
    case " $RINGMQ_CLIENTS " in
      *" $want "*) ;;
      *) echo "RINGMQ_SKIP_CLIENTS names '$want'; the clients are: $RINGMQ_CLIENTS" >&2; return 1 ;;
    esac
  done
}
