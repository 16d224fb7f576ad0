# Helpers for the cownbd tests: start cownbd or qemu-nbd in the background
# (--fork returns once the server listens), remember them, stop them all
# when the test ends.
COWNBD=${COWNBD:-cownbd}
QEMU_NBD=${QEMU_NBD:-qemu-nbd}
NBD_PIDFILES=()

# A daemonized server is reaped by whatever runs as PID 1, maybe late: a
# zombie counts as gone.
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

stop_servers() {
    local f pid
    for f in "${NBD_PIDFILES[@]}"; do
        [[ -s "$f" ]] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.05; done
    done
    NBD_PIDFILES=()
}
trap 'stop_servers; rm -rf "$TMP"' EXIT

# start_server NAME PROGRAM ARGS...: forks the server; its pid goes to
# $TMP/NAME.pid. Fails when the server did not come up.
start_server() {
    local name=$1 prog=$2; shift 2
    local pidfile="$TMP/$name.pid"
    rm -f "$pidfile"
    NBD_PIDFILES+=("$pidfile")
    "$prog" --fork --pid-file "$pidfile" "$@" 2>"$TMP/$name.err" || {
        sed 's/^/# /' "$TMP/$name.err"; return 1; }
}

# wait_server_exit NAME: true when the server of NAME exits within 10 s.
wait_server_exit() {
    local pid
    pid=$(cat "$TMP/$1.pid") || return 1
    for _ in $(seq 200); do alive "$pid" || return 0; sleep 0.05; done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

nbd_unix() { echo "nbd+unix:///${2:-}?socket=$1"; }
