#!/usr/bin/env bash
# The command line: error messages and exit codes as qemu-nbd prints them
# (program name aside), --help/--version, the options cownbd refuses,
# --fork with --pid-file.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

img=$TMP/img.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 1M
long=$(printf 'n%.0s' $(seq 4100))

# compare_cli "description" args...: both programs fail the same way
# (argv[0] set to the bare name, as when run from PATH).
compare_cli() {
    local desc=$1; shift
    local q c qrc crc
    q=$(cd "$TMP" && timeout 10 "$QEMU_NBD" "$@" 2>&1); qrc=$?
    c=$(cd "$TMP" && exec -a cownbd timeout 10 "$COWNBD" "$@" 2>&1); crc=$?
    q=${q//qemu-nbd/cownbd}
    if [[ "$q" == "$c" && $qrc == "$crc" ]]; then
        ok "$desc (exit $crc)"
    else
        not_ok "$desc"
        diag "qemu-nbd ($qrc): $q" "cownbd ($crc): $c"
    fi
}

sock=$TMP/cli.sock
compare_cli "no file" -k "$sock"
compare_cli "two files" -k "$sock" a b
compare_cli "unknown option" --bogus x
compare_cli "missing option argument" "$img" -p
compare_cli "relative socket path" -k rel "$img"
compare_cli "missing image" -k "$sock" "$TMP/nonexistent.qcow2"
compare_cli "unknown format" -k "$sock" -f bogus "$img"
compare_cli "bad shared count" -k "$sock" -e x "$img"
compare_cli "negative shared count" -k "$sock" -e -1 "$img"
compare_cli "bad cache mode" -k "$sock" --cache=sometimes "$img"
compare_cli "cache given twice" -k "$sock" -n --cache=none "$img"
compare_cli "bad discard mode" -k "$sock" --discard=maybe "$img"
compare_cli "bad detect-zeroes mode" -k "$sock" --detect-zeroes=maybe "$img"
compare_cli "detect-zeroes=unmap without discard=unmap" -k "$sock" --detect-zeroes=unmap "$img"
compare_cli "bad aio mode" -k "$sock" --aio=fast "$img"
compare_cli "export name too long" -k "$sock" -x "$long" "$img"
compare_cli "description too long" -k "$sock" -D "$long" "$img"
compare_cli "socket in a missing directory" -k "$TMP/no/such/dir.sock" "$img"
compare_cli "unresolvable bind address" -b nohost.invalid -p 10999 "$img"
compare_cli "bad port name" -b 127.0.0.1 -p nosuchservice "$img"
compare_cli "--fork reports start-up errors" --fork -k "$sock" "$TMP/nonexistent.qcow2"

out=$("$COWNBD" -c /dev/nbd0 "$img" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"not supported"* ]] && ok "-c: kernel client not supported (exit 1)" ||
    { not_ok "-c: kernel client not supported"; diag "$rc: $out"; }
out=$("$COWNBD" -d /dev/nbd0 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"not supported"* ]] && ok "-d: kernel client not supported (exit 1)" ||
    { not_ok "-d: kernel client not supported"; diag "$rc: $out"; }
out=$("$COWNBD" -o 512 -k "$sock" "$img" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"-o/--offset is not supported"* ]] && ok "-o is refused clearly" ||
    { not_ok "-o is refused clearly"; diag "$rc: $out"; }
out=$("$COWNBD" --help); rc=$?
[[ $rc == 0 && "$out" == *"Usage:"*"--allocation-depth"* ]] && ok "--help" || not_ok "--help"
out=$("$COWNBD" -V); rc=$?
[[ $rc == 0 && "$out" == *"7.2"* ]] && ok "-V" || not_ok "-V"

# --fork returns once the server listens; the pid file names it; -T and
# --detect-zeroes=off are accepted.
if start_server fork "$COWNBD" -T 'nbd_*' --detect-zeroes=off -f qcow2 -k "$sock" "$img"; then
    pid=$(cat "$TMP/fork.pid")
    [[ -S "$sock" ]] && alive "$pid" && ok "--fork: listening when the parent returns" ||
        not_ok "--fork: listening when the parent returns"
    check "--fork: serves a client" "$QEMU_IO" -f raw -c "write -P 9 0 4k" "$(nbd_unix "$sock")"
    wait_server_exit fork && ok "--fork: exits after the client" || not_ok "--fork: exits after the client"
    [[ ! -e "$sock" ]] && ok "the socket is removed on exit" || not_ok "the socket is removed on exit"
else
    not_ok "--fork: server starts"
fi
check "--fork: data written" "$QEMU_IO" -f qcow2 -c "read -P 9 0 4k" "$img"

# In the foreground, sandboxed (the default): the exit after the last
# client is a clean one, status 0 (a sanitized build's leak check at exit
# runs inside the sandbox too).
rm -f "$sock"
"$COWNBD" -f qcow2 -k "$sock" "$img" 2>"$TMP/fg.err" &
fg=$!
for _ in $(seq 200); do [[ -S "$sock" ]] && break; sleep 0.05; done
check "foreground: serves a client" "$QEMU_IO" -f raw -c "read -P 9 0 4k" "$(nbd_unix "$sock")"
wait "$fg"
rc=$?
[[ $rc == 0 ]] && ok "foreground: exits 0 after its client" ||
    { not_ok "foreground: exits 0 after its client"; diag "exit $rc: $(cat "$TMP/fg.err")"; }
done_testing
