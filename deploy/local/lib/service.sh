# Process handling shared by the local service scripts (kafka.sh, apicurio.sh): start a JVM in
# the background, wait until it is ready, stop it by pid. Sourced; the caller sets SERVICE (its
# name in messages) and ERROR_PATTERN (what marks an error line in its log), and defines
# `alive PID DATA_DIR` (is PID a live process of ours for DATA_DIR? guards against pid reuse).

die() {
    echo "$SERVICE: $*" >&2
    exit 1
}

process_running() {
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# True if PID runs with MARKER in its command line.
cmdline_has() {
    local pid="$1" marker="$2"
    process_running "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

wait_exit() {
    local pid="$1" data_dir="$2" seconds="$3" i
    for ((i = 0; i < seconds * 10; i++)); do
        alive "$pid" "$data_dir" || return 0
        sleep 0.1
    done
    ! alive "$pid" "$data_dir"
}

show_failure() {
    local why="$1" log="$2"
    echo "$SERVICE: $why; first errors and last lines of $log:" >&2
    grep -m 5 -E "$ERROR_PATTERN" "$log" >&2 || true
    echo "..." >&2
    tail -n 30 "$log" >&2
}

# await_ready PID PIDFILE TIMEOUT LOG WHAT READY_COMMAND...: poll READY_COMMAND four times a
# second until it succeeds (print PID), the process dies, or TIMEOUT seconds pass (kill it:
# never leave a half-started service behind).
await_ready() {
    local pid="$1" pidfile="$2" timeout="$3" log="$4" what="$5" i
    shift 5
    for ((i = 0; i < timeout * 4; i++)); do
        if "$@"; then
            echo "$pid"
            return 0
        fi
        # Our own child, so the pid cannot be reused; its cmdline is not java's until it has
        # exec'd, hence no cmdline check here.
        if ! process_running "$pid"; then
            wait "$pid" 2>/dev/null || true
            rm -f "$pidfile"
            show_failure "$what exited during start-up" "$log"
            exit 1
        fi
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    show_failure "$what not ready after ${timeout}s" "$log"
    exit 1
}

# cmd_stop_service PIDFILE_NAME WHAT ARGS...: the `stop --data-dir D [--timeout 30] [--kill]`
# command: SIGTERM (or SIGKILL) the pid recorded in D, wait, SIGKILL after the timeout.
cmd_stop_service() {
    local pidfile_name="$1" what="$2"
    shift 2
    local data_dir="" timeout=30 signal=TERM
    while (($#)); do
        case "$1" in
            --data-dir) data_dir="${2:?}"; shift 2 ;;
            --timeout) timeout="${2:?}"; shift 2 ;;
            --kill) signal=KILL; shift ;;
            *) usage ;;
        esac
    done
    [[ -n "$data_dir" ]] || usage
    [[ "$timeout" =~ ^[0-9]+$ ]] || die "timeout must be an integer"
    [[ -d "$data_dir" ]] || die "no such data dir: $data_dir"
    data_dir="$(cd "$data_dir" && pwd)"
    local pidfile="$data_dir/$pidfile_name" pid
    if [[ ! -f "$pidfile" ]]; then
        echo "$SERVICE: no $pidfile_name in $data_dir; nothing to stop" >&2
        return 0
    fi
    pid="$(cat "$pidfile")"
    if ! alive "$pid" "$data_dir"; then
        echo "$SERVICE: $what pid $pid is not running" >&2
        rm -f "$pidfile"
        return 0
    fi
    kill -"$signal" "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$data_dir" "$timeout"; then
        echo "$SERVICE: $what pid $pid ignored SIG$signal for ${timeout}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" "$data_dir" 10 || die "$what pid $pid survived SIGKILL"
    fi
    rm -f "$pidfile"
}

pom_digest() {
    sha256sum "$1" | cut -d' ' -f1
}

# True if DEST holds what POM resolves to: its marker records the pom it was made from, so
# editing a version triggers a new fetch.
fetched() {
    [[ -f "$1/.complete" ]] && [[ "$(cat "$1/.complete")" == "$(pom_digest "$2")" ]]
}

# maven_fetch DEST POM WHAT FINISH: resolve POM's runtime dependencies from Maven Central into
# DEST once, serialised by a lock (parallel test sessions share the cache). FINISH TMP checks or
# unpacks what Maven copied into TMP before it becomes DEST.
maven_fetch() {
    local dest="$1" pom="$2" what="$3" finish="$4"
    fetched "$dest" "$pom" && return 0
    command -v mvn >/dev/null || die "mvn not found on PATH"
    mkdir -p "$(dirname "$dest")"
    exec 9>"$dest.lock"
    flock 9
    if ! fetched "$dest" "$pom"; then
        local tmp="$dest.tmp.$$"
        rm -rf "$tmp"
        mkdir -p "$tmp"
        echo "$SERVICE: resolving $what into $dest" >&2
        # The plugin is pinned: Maven 3.8's default is too old.
        if ! mvn -B -q -Dstyle.color=never -f "$pom" \
            org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >&2; then
            rm -rf "$tmp"
            die "maven could not resolve $what"
        fi
        "$finish" "$tmp"
        pom_digest "$pom" >"$tmp/.complete"
        rm -rf "$dest"
        mv "$tmp" "$dest"
    fi
    exec 9>&-
}
