#!/usr/bin/env bash
# cownbd -B NAME: the bitmap as the qemu:dirty-bitmap:NAME meta context, the
# same as qemu-nbd -B on the same image (nbdinfo, libnbd's client, reads
# the map), and qemu-nbd's refusals.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

if ! command -v nbdinfo >/dev/null; then
    echo "1..0 # SKIP nbdinfo (libnbd-bin) missing"
    exit 0
fi

img=$TMP/b.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 12M
"$QEMU_IMG" bitmap --add -g 4k "$img" small
"$QEMU_IMG" bitmap --add "$img" big
"$QEMU_IMG" bitmap --add --disable "$img" off
"$QEMU_IO" -c 'write 8k 4k' -c 'write 1M 100k' -c 'write 11M 1M' "$img" >/dev/null
# The last sector of a disk that is not sector aligned is padding.
"$QEMU_IMG" create -q -f qcow2 "$TMP/odd.qcow2" 1000000
"$QEMU_IMG" bitmap --add -g 512 "$TMP/odd.qcow2" b
"$QEMU_IO" -c 'write 999000 1000' "$TMP/odd.qcow2" >/dev/null

# serve PROGRAM NAME IMAGE ARGS...: prints nbdinfo's view and stops the server.
serve() {
    local prog=$1 name=$2 image=$3; shift 3
    start_server "$name" "$prog" -t -r -f qcow2 -k "$TMP/$name.sock" "$@" "$image" || return 1
    local uri
    uri=$(nbd_unix "$TMP/$name.sock")
    for ctx in "$@"; do
        [[ $ctx == -B ]] && continue
        echo "== $ctx"
        timeout 30 nbdinfo --map="qemu:dirty-bitmap:$ctx" "$uri"
    done
    echo "== contexts"
    timeout 30 nbdinfo "$uri" | sed -n '/contexts:/,/is_/p'
    stop_servers
}

compare() { # description image -B names...
    local desc=$1 image=$2; shift 2
    local q c
    q=$(serve "$QEMU_NBD" q "$image" "$@" 2>&1)
    c=$(serve "$COWNBD" c "$image" "$@" 2>&1)
    if [[ "$q" == "$c" && "$c" == *dirty* ]]; then
        ok "$desc: the same as qemu-nbd ($(wc -l <<<"$c") lines)"
    else
        not_ok "$desc: the same as qemu-nbd"
        diff <(echo "$q") <(echo "$c") | head -20 | sed 's/^/# /'
    fi
}

compare "one bitmap at 4k granularity" "$img" -B small
compare "three bitmaps, contexts in qemu-nbd's order" "$img" -B small -B big -B off
compare "a disk size that is not sector aligned" "$TMP/odd.qcow2" -B b

# Refusals, in qemu-nbd's words.
same_error() { # description args...
    local desc=$1; shift
    local q c
    q=$("$QEMU_NBD" -k "$TMP/e.sock" "$@" 2>&1; echo "exit=$?")
    c=$("$COWNBD" -k "$TMP/e.sock" "$@" 2>&1; echo "exit=$?")
    check_eq "$desc" "$q" "$(sed "s/^$(basename "$COWNBD"): /qemu-nbd: /" <<<"$c")"
}
same_error "a bitmap the image does not have" -r -f qcow2 -B nope "$img"
"$QEMU_IMG" create -q -f qcow2 "$TMP/u.qcow2" 1M
"$QEMU_IMG" bitmap --add "$TMP/u.qcow2" b
"$QEMU_IO" -c 'write 0 4k' -c abort "$TMP/u.qcow2" >/dev/null 2>&1
same_error "an inconsistent bitmap" -r -f qcow2 -B b "$TMP/u.qcow2"

# A writable export: NBD writes land in the enabled bitmap, stored on exit.
"$QEMU_IMG" create -q -f qcow2 "$TMP/w.qcow2" 4M
"$QEMU_IMG" bitmap --add -g 64k "$TMP/w.qcow2" b
start_server w "$COWNBD" -f qcow2 -k "$TMP/w.sock" -B b "$TMP/w.qcow2"
"$QEMU_IO" -f raw -c 'write 3M 1k' "$(nbd_unix "$TMP/w.sock")" >/dev/null
wait_server_exit w
check_eq "writes over NBD are recorded and stored on exit" "3145728 65536" \
    "$(nbdinfo --map=qemu:dirty-bitmap:b -- [ "$QEMU_NBD" -r -f qcow2 -B b "$TMP/w.qcow2" ] |
       awk '$3 == 1 { print $1, $2 }')"
check "qemu-img check is clean after the export" "$QEMU_IMG" check -q "$TMP/w.qcow2"

done_testing
