#!/usr/bin/env bash
# Run a single-node Apache Kafka 4.x broker (KRaft, broker+controller in one JVM) from Maven
# Central jars, for tests and the demo on machines without Docker. Binds to 127.0.0.1 only.
#
#   kafka.sh fetch
#   kafka.sh start --port P --controller-port C --data-dir D [--log-dir L] [--heap 512m]
#                  [--timeout 120]
#   kafka.sh stop  --data-dir D [--timeout 30] [--kill]
#
# Env: KAFKA_LIBS_DIR overrides the jar cache (default deploy/local/.cache/kafka-libs).
# Layout of D: server.properties, cluster.id, broker.pid, kraft/ (log.dirs), logs/ (default L).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/kafka/pom.xml"
SERVER_LOG4J="$HERE/kafka/log4j2-server.xml"
TOOLS_LOG4J="$HERE/kafka/log4j2-tools.xml"
LIBS="${KAFKA_LIBS_DIR:-$HERE/.cache/kafka-libs}"
READY_LINE="Kafka Server started"

SERVICE=kafka.sh
ERROR_PATTERN=' ERROR '
# shellcheck source=lib/service.sh
. "$HERE/lib/service.sh"

usage() {
    sed -n '5,8p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

check_jars() {
    compgen -G "$1/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $1"
}

cmd_fetch() {
    maven_fetch "$LIBS" "$POM" "Kafka jars" check_jars
}

# True if PID is a live (non-zombie) broker started from DATA_DIR. Guards against pid reuse and
# against zombies: our init may not reap a broker whose launching shell has already exited.
alive() {
    cmdline_has "$1" "$2/server.properties"
}

write_properties() {
    local file="$1" port="$2" cport="$3" kraft_dir="$4"
    cat >"$file" <<EOF
# Written by deploy/local/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$kraft_dir
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Keeps the log cleaner from reserving 128 MB of heap at start-up.
log.cleaner.dedupe.buffer.size=2097152
EOF
}

# Print why start-up failed: the first ERROR lines (the cause; a stack trace buries it) and the tail.
storage_tool() {
    java -cp "$LIBS/*" -Dlog4j2.configurationFile="$TOOLS_LOG4J" kafka.tools.StorageTool "$@"
}

cmd_start() {
    local port="" cport="" data_dir="" log_dir="" heap="512m" timeout=120
    while (($#)); do
        case "$1" in
            --port) port="${2:?}"; shift 2 ;;
            --controller-port) cport="${2:?}"; shift 2 ;;
            --data-dir) data_dir="${2:?}"; shift 2 ;;
            --log-dir) log_dir="${2:?}"; shift 2 ;;
            --heap) heap="${2:?}"; shift 2 ;;
            --timeout) timeout="${2:?}"; shift 2 ;;
            *) usage ;;
        esac
    done
    [[ -n "$port" && -n "$cport" && -n "$data_dir" ]] || usage
    [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ && "$timeout" =~ ^[0-9]+$ ]] ||
        die "ports and timeout must be integers"
    command -v java >/dev/null || die "java not found on PATH"
    cmd_fetch

    mkdir -p "$data_dir"
    data_dir="$(cd "$data_dir" && pwd)"
    log_dir="${log_dir:-$data_dir/logs}"
    mkdir -p "$log_dir"
    log_dir="$(cd "$log_dir" && pwd)"
    local props="$data_dir/server.properties" pidfile="$data_dir/broker.pid"
    local log="$log_dir/broker.log" kraft_dir="$data_dir/kraft"

    if [[ -f "$pidfile" ]] && alive "$(cat "$pidfile")" "$data_dir"; then
        die "a broker is already running from $data_dir (pid $(cat "$pidfile"))"
    fi
    rm -f "$pidfile"

    write_properties "$props" "$port" "$cport" "$kraft_dir"
    # Keep the cluster id beside the data so a restart with the same data dir reuses it.
    if [[ ! -s "$data_dir/cluster.id" ]]; then
        storage_tool random-uuid >"$data_dir/cluster.id.tmp"
        mv "$data_dir/cluster.id.tmp" "$data_dir/cluster.id"
    fi
    storage_tool format -t "$(cat "$data_dir/cluster.id")" -c "$props" --ignore-formatted >&2

    # A fresh log per start: waiting must not match the ready line of a previous run.
    [[ -f "$log" ]] && mv -f "$log" "$log.prev"
    : >"$log"
    java -Xms256m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -cp "$LIBS/*" -Dlog4j2.configurationFile="$SERVER_LOG4J" -Dkafka.logs.dir="$log_dir" \
        kafka.Kafka "$props" </dev/null >>"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"

    await_ready "$pid" "$pidfile" "$timeout" "$log" broker grep -qF "$READY_LINE" "$log"
}

main() {
    (($#)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
        fetch) (($# == 0)) || usage; cmd_fetch ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop_service broker.pid broker "$@" ;;
        *) usage ;;
    esac
}

main "$@"
