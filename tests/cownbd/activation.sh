#!/usr/bin/env bash
# Socket activation (LISTEN_FDS/LISTEN_PID) as qemu-nbd supports it: an
# inherited listening socket serves the export (nbdinfo, nbdcopy), side by
# side with qemu-nbd; the same refusals in the same words (program name
# aside): -k or -p with activation (-b is refused alike), more than one socket; a passed fd
# that is no listening socket, or none at all, is a clear error; a socket
# shut down under a running cownbd ends it (no busy loop). With systemd-socket-activate
# (package systemd) the real activator too.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"
ACTIVATE="python3 $TESTS_DIR/cownbd/activate.py"

img=$TMP/img.raw
printf 'activated' >"$img"
truncate -s 1M "$img"

# serve NAME PROGRAM: the program activated on $TMP/NAME.sock; one client
# copies the export (the server then exits): its size and first bytes.
serve() {
    local sock=$TMP/$1.sock
    timeout -k 5 20 $ACTIVATE "$sock" 1 "$2" -f raw "$img" 2>"$TMP/$1.err" &
    local pid=$!
    for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
    nbdcopy "nbd+unix:///?socket=$sock" "$TMP/$1.copy"
    stat -c %s "$TMP/$1.copy"
    head -c 9 "$TMP/$1.copy"
    echo
    wait "$pid"
    echo "exit $?"
}
q=$(serve qemu "$QEMU_NBD")
c=$(serve cow "$COWNBD")
check_eq "an activated cownbd serves the export as qemu-nbd" "$q" "$c"
check_eq "... its size, data and exit after the client" "1048576 activated exit 0" "$(echo $c)"

# refused "description" NFDS args...: both programs refuse alike.
refused() {
    local desc=$1 n=$2; shift 2
    local q c qrc crc
    rm -f "$TMP"/r.sock*
    q=$(timeout 10 $ACTIVATE "$TMP/r.sock" "$n" "$QEMU_NBD" "$@" -f raw "$img" 2>&1); qrc=$?
    rm -f "$TMP"/r.sock*
    c=$(timeout 10 $ACTIVATE "$TMP/r.sock" "$n" bash -c 'exec -a cownbd "$0" "$@"' "$COWNBD" "$@" -f raw "$img" 2>&1); crc=$?
    q=${q//qemu-nbd/cownbd}
    if [[ "$q" == "$c" && $qrc == "$crc" && $crc != 0 ]]; then
        ok "$desc (exit $crc)"
    else
        not_ok "$desc"
        diag "qemu-nbd ($qrc): $q" "cownbd ($crc): $c"
    fi
}
refused "activation with -k" 1 -k "$TMP/other.sock"
refused "activation with -p" 1 -p 10999
refused "two activated sockets" 2

out=$(timeout 10 $ACTIVATE "$TMP/f.sock" file "$COWNBD" -f raw "$img" 2>&1)
rc=$?
check_eq "a passed fd that is a file: a clear error" \
    "1 cownbd: Failed to use socket activation: fd 3: Socket operation on non-socket" "$rc ${out//$COWNBD/cownbd}"

out=$(timeout 10 $ACTIVATE "$TMP/c.sock" closed "$COWNBD" -f raw "$img" 2>&1)
check_eq "LISTEN_FDS=1 with no fd 3: a clear error" \
    "1 cownbd: Socket activation failed: invalid file descriptor fd = 3: Bad file descriptor" "$? ${out//$COWNBD/cownbd}"

# The manager shuts the passed socket down while cownbd waits on it: poll
# then says "ready" forever and accept fails each time. cownbd must end
# with a message, not spin (qemu-nbd 7.2 spins: no comparison). Its CPU
# time is a second, loose check (a busy loop on a loaded machine may get
# little of a core; the exit is what decides).
out=$(timeout 10 $ACTIVATE "$TMP/s.sock" shutdown "$COWNBD" -f raw "$img" 2>&1)
rc=$?
check_eq "a listening socket shut down under cownbd: it exits with a clear error" \
    "1 cownbd: The listening socket can no longer accept clients (it was shut down)" \
    "$rc $(grep -v '^cpu ' <<<"${out//$COWNBD/cownbd}")"
cpu=$(sed -n 's/^cpu //p' <<<"$out")
check_eq "... and uses under 0.5 s of CPU meanwhile (used $cpu s)" yes "$(awk -v c="$cpu" 'BEGIN { print (c != "" && c < 0.5) ? "yes" : "no" }')"

if command -v systemd-socket-activate >/dev/null; then
    sock=$TMP/sd.sock
    # Not killed: cownbd ends after its client, as qemu-nbd without -t. A
    # SIGTERM that met its exit hung the ASan build's leak check for good.
    timeout -k 5 20 systemd-socket-activate -l "$sock" "$COWNBD" -f raw "$img" 2>"$TMP/sd.err" &
    pid=$!
    for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
    check_eq "systemd-socket-activate starts cownbd on the first client" 1048576 \
        "$(nbdinfo --size "nbd+unix:///?socket=$sock" 2>&1)"
    wait "$pid"
    check_eq "... which exits 0 after that client" 0 "$?"
else
    ok "# SKIP systemd-socket-activate is not installed (package systemd)"
fi
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
