# Shared by the vmstate tests: the test guest in counter mode under
# cowvisor with a QMP socket, and waiting for what it prints.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
QMP="python3 $TESTS_DIR/vmstate/qmp.py"
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi

VM_PIDS=()
cleanup_vms() {
    local p
    for p in "${VM_PIDS[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup_vms EXIT

# start_vm NAME args...: cowvisor in the background, console in $TMP/NAME.out,
# stderr in $TMP/NAME.err, QMP socket $TMP/NAME.sock, exit status in
# $TMP/NAME.status once it ends.
start_vm() {
    local name=$1; shift
    rm -f "$TMP/$name.sock" "$TMP/$name.status"
    ( timeout 90 "$COWVISOR" "$@" --console "file:$TMP/$name.out" \
          --qmp "unix:$TMP/$name.sock,server,nowait" 2>"$TMP/$name.err" &
      echo $! >"$TMP/$name.timeout-pid"
      wait $!
      echo $? >"$TMP/$name.status" ) &
    VM_PIDS+=($!)
}

# vm_pid NAME: the cowvisor process (the child of its timeout).
vm_pid() {
    pgrep -P "$(cat "$TMP/$1.timeout-pid")" | head -1
}

# wait_vm NAME: waits (at most 30 s) for the VM to end; prints its status.
wait_vm() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -s "$TMP/$1.status" ]] && { cat "$TMP/$1.status"; return; }
        sleep 0.1
    done
    echo timeout
}

# wait_text FILE TEXT: at most 30 s.
wait_text() {
    local i
    for ((i = 0; i < 300; i++)); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# counter_lines FILE: the counter values the guest printed, one a line.
counter_lines() {
    tr -d '\r' <"$1" | sed -n 's/^counter \([0-9][0-9]*\) \(ok\|bad\)$/\1/p'
}

# continues ORIGINAL RESTORED N: what the restored guest printed in its
# first N lines (it may start in the middle of a line the original had
# begun before the snapshot) is exactly what the original printed then.
continues() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys
orig = open(sys.argv[1], "rb").read()
rest = open(sys.argv[2], "rb").read()
n = int(sys.argv[3])
lines = rest.split(b"\n")
if len(lines) <= n:
    sys.exit("restored guest printed only %d lines" % (len(lines) - 1))
piece = b"\n".join(lines[:n]) + b"\n"
if piece not in orig:
    sys.exit("restored output is not a continuation of the original: %r" % piece[:80])
PY
}
