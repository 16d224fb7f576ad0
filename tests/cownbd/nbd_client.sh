#!/usr/bin/env bash
# Our programs as NBD clients (libnbd underneath): nbd+unix://, nbd:// over
# TCP and QEMU's legacy nbd: names, in cowimg and cowio and as a backing
# file, against qemu-nbd and cownbd as servers; results compared with what
# the real qemu-img and qemu-io see.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

disk=$TMP/disk.raw
"$QEMU_IMG" create -q -f raw "$disk" 4M
"$QEMU_IO" -f raw -c "write -P 9 0 64k" -c "write -P 3 1M 128k" "$disk" >/dev/null
cp "$disk" "$TMP/ref.raw"

for server in qemu-nbd cownbd; do
    prog=$QEMU_NBD
    [[ $server == cownbd ]] && prog=$COWNBD
    sock=$TMP/$server.sock
    port=$(free_port)
    start_server "$server-unix" "$prog" -f raw --persistent -k "$sock" "$disk" || { not_ok "$server starts"; continue; }
    cp "$disk" "$TMP/tcp.raw"
    start_server "$server-tcp" "$prog" -f raw --persistent -b 127.0.0.1 -p "$port" -x exp "$TMP/tcp.raw" ||
        { not_ok "$server starts on TCP"; continue; }
    uri=$(nbd_unix "$sock")
    a=$("$COWIMG" info --output=json "$uri" | grep -E '"(virtual-size|format)"' | tr -d ', ')
    b=$("$QEMU_IMG" info --output=json "$uri" | grep -E '"(virtual-size|format)"' | tr -d ', ')
    check_eq "$server: cowimg info of nbd+unix:// as qemu-img" "$b" "$a"
    a=$("$COWIMG" map --output=json "$uri" | sed 's/"offset": [0-9]*}/}/')
    b=$("$QEMU_IMG" map --output=json "$uri" | sed 's/"offset": [0-9]*}/}/')
    check_eq "$server: map as qemu-img" "$b" "$a"
    out=$("$COWIO" -c "read -P 9 0 64k" -c "read -P 3 1M 128k" "nbd://127.0.0.1:$port/exp" 2>&1)
    [[ $(grep -c '^read' <<<"$out") == 2 ]] && ok "$server: cowio reads nbd:// over TCP" ||
        { not_ok "$server: cowio reads nbd:// over TCP"; diag "$out"; }
    out=$("$COWIO" -c "write -P 0x5a 2M 64k" -c "flush" -c "read -P 0x5a 2M 64k" "nbd:unix:$sock" 2>&1)
    [[ $(grep -c '^read' <<<"$out") == 1 ]] && ok "$server: cowio writes through a legacy nbd:unix: name" ||
        { not_ok "$server: cowio writes through nbd:unix:"; diag "$out"; }
    "$QEMU_IO" -f raw -c "write -P 0x5a 2M 64k" "$TMP/ref.raw" >/dev/null
    check "$server: convert from nbd:127.0.0.1:port:exportname= equals the disk" \
        "$COWIMG" convert -O qcow2 "nbd:127.0.0.1:$port:exportname=exp" "$TMP/copy.qcow2"
    check "$server: the copy matches (qemu-img compare)" "$QEMU_IMG" compare -U "$TMP/copy.qcow2" "$TMP/tcp.raw"
    # An overlay whose backing file is the export, created by either tool.
    "$QEMU_IMG" create -q -f qcow2 -b "$uri" -F raw "$TMP/over.qcow2"
    out=$("$COWIO" -c "read -P 9 0 64k" -c "write -P 1 0 4k" -c "read -P 1 0 4k" "$TMP/over.qcow2" 2>&1)
    [[ $(grep -c '^read' <<<"$out") == 2 ]] && ok "$server: overlay over an nbd backing file (qemu-img made)" ||
        { not_ok "$server: overlay over an nbd backing file"; diag "$out"; }
    check "$server: cowimg create -b nbd..." "$COWIMG" create -q -f qcow2 -b "$uri" -F raw "$TMP/over2.qcow2"
    out=$("$QEMU_IO" -c "read -P 9 0 64k" "$TMP/over2.qcow2" 2>&1)
    [[ $out == *"read 65536/65536"* ]] && ok "$server: qemu-io reads our overlay over nbd" ||
        { not_ok "$server: qemu-io reads our overlay over nbd"; diag "$out"; }
    check "$server: cowimg compare over nbd" "$COWIMG" compare "$uri" "$TMP/ref.raw"
    stop_servers
done
out=$("$COWIMG" info "nbd+unix:///?socket=$TMP/none.sock" 2>&1)
[[ $? -ne 0 && $out == *none.sock* ]] && ok "a missing server is an error naming it" || { not_ok "missing server"; diag "$out"; }
done_testing
