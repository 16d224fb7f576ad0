#!/usr/bin/env bash
# What clients learn about the export is the same from cownbd as from
# qemu-nbd serving the same image: qemu-img map --output=json over NBD
# (base:allocation, and qemu:allocation-depth with -A) and qemu-nbd --list.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

# A chain raw <- qcow2 <- qcow2 with data, zero clusters, discards and holes.
truncate -s 32M "$TMP/base.raw"
"$QEMU_IO" -f raw -c "write -P 1 0 4M" -c "write -P 2 10M 3M" -c "write -P 3 31M 1M" \
    "$TMP/base.raw" >/dev/null
"$QEMU_IMG" create -q -f qcow2 -b base.raw -F raw "$TMP/mid.qcow2"
"$QEMU_IO" -f qcow2 -c "write -P 4 1M 1M" -c "write -z 11M 512k" -c "write -P 5 20M 100k" \
    "$TMP/mid.qcow2" >/dev/null
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k -b mid.qcow2 -F qcow2 "$TMP/top.qcow2" 40M
"$QEMU_IO" -f qcow2 -c "write -P 6 2M 8k" -c "write -z -u 3M 64k" -c "write -P 7 33M 1M" \
    -c "write -z 12M 1M" -c "discard 33M 64k" "$TMP/top.qcow2" >/dev/null
"$QEMU_IMG" create -q -f qcow2 -o extended_l2=on,cluster_size=128k "$TMP/sub.qcow2" 16M
"$QEMU_IO" -f qcow2 -c "write -P 8 4k 4k" -c "write -P 9 200k 40k" -c "write -z 1M 256k" \
    "$TMP/sub.qcow2" >/dev/null
truncate -s 20M "$TMP/sparse.raw"
"$QEMU_IO" -f raw -c "write -P 10 1M 1M" -c "write -P 11 7M 64k" "$TMP/sparse.raw" >/dev/null

# map_via SERVER-PROGRAM FORMAT IMAGE [CONTEXT] [SERVER ARGS...]: qemu-img map
# through the server; CONTEXT other than base:allocation is read as QEMU's
# own tests do, through the client's x-dirty-bitmap option.
map_via() {
    local prog=$1 fmt=$2 img=$3 ctx=$4; shift 4
    local sock=$TMP/map.sock
    start_server map "$prog" -r -f "$fmt" -k "$sock" "$@" "$img" || return 1
    if [[ $ctx == base:allocation ]]; then
        "$QEMU_IMG" map --output=json -f raw "$(nbd_unix "$sock")"
    else
        "$QEMU_IMG" map --output=json --image-opts \
            "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=$ctx"
    fi
    stop_servers
}

compare_map() { # description format image context [server args]
    local desc=$1 fmt=$2 img=$3 ctx=$4; shift 4
    local q c
    q=$(map_via "$QEMU_NBD" "$fmt" "$img" "$ctx" "$@" 2>&1)
    c=$(map_via "$COWNBD" "$fmt" "$img" "$ctx" "$@" 2>&1)
    if [[ "$q" == "$c" && $(wc -l <<<"$c") -ge 3 ]]; then
        ok "$desc: same map as qemu-nbd ($(wc -l <<<"$c") extents)"
    else
        not_ok "$desc: same map as qemu-nbd"
        diff <(echo "$q") <(echo "$c") | head -20 | sed 's/^/# /'
    fi
}

compare_map "qcow2 chain, base:allocation" qcow2 "$TMP/top.qcow2" base:allocation
compare_map "qcow2 chain, qemu:allocation-depth" qcow2 "$TMP/top.qcow2" qemu:allocation-depth -A
compare_map "middle of the chain" qcow2 "$TMP/mid.qcow2" base:allocation
compare_map "subclusters (extended L2)" qcow2 "$TMP/sub.qcow2" base:allocation
compare_map "sparse raw" raw "$TMP/sparse.raw" base:allocation

# On the wire: the extents of both meta contexts (with -A) and the chunks
# of structured reads (data and holes), from a raw client.
dump_via() { # program format image
    start_server dump "$1" -r -A -f "$2" -k "$TMP/dump.sock" "$3" || return 1
    timeout 30 python3 "$TESTS_DIR/cownbd/nbd_client.py" dump "$TMP/dump.sock"
    stop_servers
}
for img in top.qcow2 mid.qcow2 sub.qcow2 sparse.raw; do
    fmt=${img##*.}
    q=$(dump_via "$QEMU_NBD" "$fmt" "$TMP/$img" 2>&1)
    c=$(dump_via "$COWNBD" "$fmt" "$TMP/$img" 2>&1)
    if [[ "$q" == "$c" && "$c" == *"qemu:allocation-depth"*"read data"* ]]; then
        ok "$img: same extents and read chunks on the wire as qemu-nbd ($(wc -l <<<"$c") lines)"
    else
        not_ok "$img: same extents and read chunks on the wire as qemu-nbd"
        diff <(echo "$q") <(echo "$c") | head -20 | sed 's/^/# /'
    fi
done

# The data read over NBD (structured replies with holes) matches the chain.
start_server rd "$COWNBD" -r -f qcow2 -k "$TMP/rd.sock" "$TMP/top.qcow2"
check "reads over NBD equal the image (qemu-img compare)" \
    "$QEMU_IMG" compare -f raw -F qcow2 "$(nbd_unix "$TMP/rd.sock")" "$TMP/top.qcow2"
stop_servers

# list_via PROGRAM IMAGE SERVER-ARGS...: qemu-nbd --list's view of the server.
list_via() {
    local prog=$1 img=$2; shift 2
    start_server list "$prog" -k "$TMP/list.sock" "$@" "$img" || return 1
    "$QEMU_NBD" --list -k "$TMP/list.sock"
    # Listing is not a connection that ends the server.
    alive "$(cat "$TMP/list.pid")" || echo "server exited after the listing"
    stop_servers
}

compare_list() { # description server-args...
    local desc=$1; shift
    cp "$TMP/sub.qcow2" "$TMP/list.qcow2"
    local q c
    q=$(list_via "$QEMU_NBD" "$TMP/list.qcow2" "$@" 2>&1)
    c=$(list_via "$COWNBD" "$TMP/list.qcow2" "$@" 2>&1)
    if [[ "$q" == "$c" && "$c" == *"exports available: 1"* ]]; then
        ok "qemu-nbd --list: $desc"
    else
        not_ok "qemu-nbd --list: $desc"
        diff <(echo "$q") <(echo "$c") | head -20 | sed 's/^/# /'
    fi
}

compare_list "default export" -f qcow2
compare_list "named export with description, read-only" -f qcow2 -x "disk one" -D "a test disk" -r
compare_list "shared by 3 clients, allocation depth" -f qcow2 -e 3 -A -x d
compare_list "unlimited clients, persistent, read-only" -f qcow2 -e 0 -t -r
compare_list "raw, probed format" -r
compare_list "snapshot mode" -s -x snap
done_testing
