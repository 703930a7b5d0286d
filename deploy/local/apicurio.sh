#!/usr/bin/env bash
# Run Apicurio Registry (in-memory storage) from its Maven Central archive, for tests and the demo
# on machines without Docker. Serves the Confluent-compatible API at /apis/ccompat/v7. Binds to
# 127.0.0.1 only, the Quarkus management interface too (on a random port: 9000 would clash).
#
#   apicurio.sh fetch
#   apicurio.sh start --port P --data-dir D [--heap 512m] [--timeout 120]
#   apicurio.sh stop  --data-dir D [--timeout 30] [--kill]
#   apicurio.sh java          (prints the java it would use)
#
# Env: APICURIO_DIR overrides the unpacked cache (default deploy/local/.cache/apicurio-<version>);
# APICURIO_JAVA names the java binary (else: JAVA_HOME, PATH, /usr/lib/jvm/*, the first >= 21).
# Layout of D: registry.pid, registry.log. Storage is in memory: a restart starts empty.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/apicurio/pom.xml"
VERSION="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$POM")"
APP="${APICURIO_DIR:-$HERE/.cache/apicurio-$VERSION}"
MIN_JAVA=21
PROBE_PATH="/apis/ccompat/v7/subjects"

SERVICE=apicurio.sh
ERROR_PATTERN=' (ERROR|FATAL) '
# shellcheck source=lib/service.sh
. "$HERE/lib/service.sh"

usage() {
    sed -n '6,9p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

unpack_archive() {
    local tmp="$1" archive
    archive="$(compgen -G "$tmp/apicurio-registry-app-*-all.tar.gz" | head -n 1)" ||
        die "no apicurio-registry-app archive in $tmp"
    tar -xzf "$archive" -C "$tmp"
    rm -f "$archive"
    [[ -f "$tmp/quarkus-run.jar" ]] || die "no quarkus-run.jar in the archive"
}

cmd_fetch() {
    maven_fetch "$APP" "$POM" \
        "Apicurio Registry $VERSION (io.apicurio:apicurio-registry-app:tar.gz:all)" unpack_archive
}

# The major version of the java binary $1 (17, 21, 25, ...), or nothing.
java_major() {
    "$1" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = \([0-9][0-9]*\).*/\1/p' | head -n 1
}

# The first java >= MIN_JAVA: APICURIO_JAVA, JAVA_HOME, PATH, then the newest under /usr/lib/jvm.
find_java() {
    local candidate major
    if [[ -n "${APICURIO_JAVA:-}" ]]; then
        major="$(java_major "$APICURIO_JAVA")"
        [[ -n "$major" && "$major" -ge $MIN_JAVA ]] ||
            die "APICURIO_JAVA=$APICURIO_JAVA is not Java $MIN_JAVA+ (found '${major:-none}')"
        echo "$APICURIO_JAVA"
        return 0
    fi
    local -a candidates=()
    [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && candidates+=("$JAVA_HOME/bin/java")
    command -v java >/dev/null && candidates+=("$(command -v java)")
    local dir
    while IFS= read -r dir; do
        dir="${dir%/}"
        [[ -x "$dir/bin/java" ]] && candidates+=("$dir/bin/java")
    done < <(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV)
    for candidate in "${candidates[@]}"; do
        major="$(java_major "$candidate")"
        if [[ -n "$major" && "$major" -ge $MIN_JAVA ]]; then
            echo "$candidate"
            return 0
        fi
    done
    die "Apicurio Registry $VERSION needs Java $MIN_JAVA+; none found (set APICURIO_JAVA)"
}

# True if PID is a live registry started for DATA_DIR (guards against pid reuse).
alive() {
    cmdline_has "$1" "-Dlocal.data.dir=$2 "
}

cmd_start() {
    local port="" data_dir="" heap="512m" timeout=120
    while (($#)); do
        case "$1" in
            --port) port="${2:?}"; shift 2 ;;
            --data-dir) data_dir="${2:?}"; shift 2 ;;
            --heap) heap="${2:?}"; shift 2 ;;
            --timeout) timeout="${2:?}"; shift 2 ;;
            *) usage ;;
        esac
    done
    [[ -n "$port" && -n "$data_dir" ]] || usage
    [[ "$port" =~ ^[0-9]+$ && "$timeout" =~ ^[0-9]+$ ]] || die "port and timeout must be integers"
    command -v curl >/dev/null || die "curl not found on PATH (used to wait for readiness)"
    local java
    java="$(find_java)"
    cmd_fetch

    mkdir -p "$data_dir"
    data_dir="$(cd "$data_dir" && pwd)"
    local pidfile="$data_dir/registry.pid" log="$data_dir/registry.log"
    if [[ -f "$pidfile" ]] && alive "$(cat "$pidfile")" "$data_dir"; then
        die "a registry is already running for $data_dir (pid $(cat "$pidfile"))"
    fi
    rm -f "$pidfile"
    [[ -f "$log" ]] && mv -f "$log" "$log.prev"
    : >"$log"
    # The marker property lets stop recognise the process; cwd is the data dir so nothing the
    # app might write lands in the caller's directory.
    (cd "$data_dir" && exec "$java" -Xms64m -Xmx"$heap" -Djava.awt.headless=true \
        -Djava.io.tmpdir="$data_dir" \
        "-Dlocal.data.dir=$data_dir" \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
        -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=0 \
        -jar "$APP/quarkus-run.jar" </dev/null >>"$log" 2>&1) &
    local pid=$!
    echo "$pid" >"$pidfile"

    await_ready "$pid" "$pidfile" "$timeout" "$log" registry \
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port$PROBE_PATH"
}

main() {
    (($#)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
        fetch) (($# == 0)) || usage; cmd_fetch ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop_service registry.pid registry "$@" ;;
        java) (($# == 0)) || usage; find_java ;;
        *) usage ;;
    esac
}

main "$@"
