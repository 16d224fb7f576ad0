#!/usr/bin/env bash
# Hostile clients: malformed handshakes, bad magic, oversized lengths,
# out-of-range offsets, unknown commands and flags, truncated messages, sent
# by a raw NBD client (nbd_client.py). Each gets the protocol's error reply
# or a disconnect; the server keeps serving and the image stays clean.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

"$QEMU_IMG" create -q -f qcow2 "$TMP/rw.qcow2" 64M
"$QEMU_IMG" create -q -f qcow2 "$TMP/ro.qcow2" 64M
"$QEMU_IO" -f qcow2 -c "write -P 0x42 0 1M" "$TMP/ro.qcow2" >/dev/null
start_server rw "$COWNBD" -t -e 0 -f qcow2 -k "$TMP/rw.sock" "$TMP/rw.qcow2" || not_ok "cownbd starts"
start_server ro "$COWNBD" -t -e 0 -r -f qcow2 -k "$TMP/ro.sock" "$TMP/ro.qcow2" || not_ok "cownbd -r starts"

while IFS= read -r line; do
    case $line in
        PASS\ *) ok "${line#PASS }" ;;
        FAIL\ *) not_ok "${line#FAIL }" ;;
        *) diag "$line" ;;
    esac
done < <(timeout 50 python3 "$TESTS_DIR/cownbd/nbd_client.py" hostile "$TMP/rw.sock" "$TMP/ro.sock" 2>&1)

# A client that connects and says nothing loses its slot after the 10 s
# handshake limit (qemu-nbd's default), so -e 1 cannot be blocked forever.
silent=$(timeout 30 python3 - "$TMP/ro.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(25)
s.recv(18)
try:
    print("closed" if s.recv(1) == b"" else "data")
except socket.timeout:
    print("still open after 25 s")
except ConnectionResetError:
    print("closed")
PY
)
check_eq "a silent client is dropped after the handshake limit" closed "$silent"

for s in rw ro; do
    alive "$(cat "$TMP/$s.pid")" && ok "$s server is still running" || not_ok "$s server is still running"
done
check "a real client still gets served" "$QEMU_IO" -f raw -c "write -P 0x17 8M 64k" \
    -c "read -P 0x17 8M 64k" "$(nbd_unix "$TMP/rw.sock")"
stop_servers
check "the image is clean after the hostile session" "$QEMU_IMG" check "$TMP/rw.qcow2"
check "the read-only image is untouched" "$QEMU_IO" -f qcow2 -c "read -P 0x42 0 1M" \
    -c "read -P 0 1M 63M" "$TMP/ro.qcow2"
if grep -qE "AddressSanitizer|runtime error|LeakSanitizer" "$TMP"/rw.err "$TMP"/ro.err; then
    not_ok "no sanitizer reports from the servers"; sed 's/^/# /' "$TMP"/rw.err | head -30
else
    ok "no sanitizer reports from the servers"
fi
done_testing
