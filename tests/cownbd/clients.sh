#!/usr/bin/env bash
# Several clients: -e N serves N at once (the rest wait their turn), -t keeps
# the server after the last client, signals end it cleanly.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

img=$TMP/img.qcow2 twin=$TMP/twin.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 64M
"$QEMU_IMG" create -q -f qcow2 "$twin" 64M

# Four writers at once, each on its own 8 MiB with its own pattern, plus a
# reader of a region nobody writes.
writer_cmds() { # index
    local i=$1 k args=()
    for k in $(seq 0 31); do
        args+=(-c "write -P $((i + 1)) $((i * 8192 + k * 256))k 256k")
    done
    printf '%s\n' "${args[@]}"
}
sock=$TMP/multi.sock
if start_server multi "$COWNBD" -e 5 -t -f qcow2 -k "$sock" "$img"; then
    pids=()
    for i in 0 1 2 3; do
        mapfile -t args < <(writer_cmds $i)
        "$QEMU_IO" -f raw "${args[@]}" "$(nbd_unix "$sock")" >"$TMP/w$i.out" 2>&1 &
        pids+=($!)
    done
    "$QEMU_IO" -f raw -c "read -P 0 40M 8M" "$(nbd_unix "$sock")" >"$TMP/r.out" 2>&1 &
    pids+=($!)
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    [[ $failed == 0 ]] && ! grep -q "verification failed\|rror" "$TMP"/w*.out "$TMP/r.out" &&
        ok "-e 5: four writers and a reader at once" ||
        { not_ok "-e 5: four writers and a reader at once"; cat "$TMP"/w*.out "$TMP/r.out" | head | sed 's/^/# /'; }
    alive "$(cat "$TMP/multi.pid")" && ok "-t: still running after all clients left" ||
        not_ok "-t: still running after all clients left"
    check "-t: serves another client" "$QEMU_IO" -f raw -c "read -P 4 24M 8M" "$(nbd_unix "$sock")"
fi
stop_servers
for i in 0 1 2 3; do
    mapfile -t args < <(writer_cmds $i)
    "$QEMU_IO" -f qcow2 "${args[@]}" "$twin" >/dev/null
done
check "concurrent writes all landed (qemu-img compare)" "$QEMU_IMG" compare "$img" "$twin"
check "the image is clean" "$QEMU_IMG" check "$img"

# -e 1: a second client waits in the backlog until the first leaves.
holder() { # socket release-file: negotiates, then holds the connection
    python3 - "$1" "$2" <<'PY'
import os, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(18)
s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 1, 0))
s.recv(10)
print("connected", flush=True)
for _ in range(300):
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.1)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 1, 0, 0))
PY
}
sock=$TMP/one.sock
if start_server one "$COWNBD" -e 1 -t -f qcow2 -k "$sock" "$img"; then
    coproc HOLD { holder "$sock" "$TMP/release"; }
    read -r -t 10 line <&"${HOLD[0]}"
    check_eq "-e 1: the first client is served" "connected" "${line:-}"
    "$QEMU_IO" -f raw -c "read -P 1 0 1M" "$(nbd_unix "$sock")" >"$TMP/second.out" 2>&1 &
    second=$!
    sleep 1
    kill -0 $second 2>/dev/null && ok "-e 1: the second client waits" ||
        { not_ok "-e 1: the second client waits"; sed 's/^/# /' "$TMP/second.out"; }
    touch "$TMP/release"
    wait $second && ok "-e 1: the second client is served once the first left" ||
        { not_ok "-e 1: the second client is served once the first left"; sed 's/^/# /' "$TMP/second.out"; }
    wait
fi
stop_servers

# SIGTERM with a client connected: the server ends and the image is clean.
sock=$TMP/term.sock
rm -f "$TMP/release"
if start_server term "$COWNBD" -f qcow2 -k "$sock" "$img"; then
    coproc HOLD2 { holder "$sock" "$TMP/release" 2>/dev/null; }
    read -r -t 10 line <&"${HOLD2[0]}"
    kill -TERM "$(cat "$TMP/term.pid")"
    wait_server_exit term && ok "SIGTERM ends the server with a client connected" ||
        not_ok "SIGTERM ends the server with a client connected"
    touch "$TMP/release"
    wait
fi
check "the image is clean after SIGTERM" "$QEMU_IMG" check "$img"
if grep -qE "AddressSanitizer|runtime error|LeakSanitizer" "$TMP"/*.err; then
    not_ok "no sanitizer reports"; cat "$TMP"/*.err | head -30 | sed 's/^/# /'
else
    ok "no sanitizer reports"
fi
done_testing
