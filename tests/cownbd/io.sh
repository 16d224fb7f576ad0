#!/usr/bin/env bash
# Data through cownbd: the real qemu-io writes, zeroes and discards over NBD
# (UNIX socket and TCP) onto qcow2 and raw images; qemu-img compare against
# the same commands run by qemu-io directly on a twin image, qemu-img check.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

# The workload: unaligned writes, zero writes (with and without unmap).
# "DISCARD" becomes a discard over NBD and a zero write on the twin when the
# server unmaps, and nothing on the twin when it ignores discards.
workload=(-c "write -P 0x11 0 1M" -c "write -P 0x22 1536k 700k" -c "write -P 0x33 3000001 12345"
          -c "write -z 8M 2M" -c "write -z -u 12M 1M" -c "write -P 0x44 20M 3M"
          -c "DISCARD 20M 1M" -c "write -P 0x55 63M 1M" -c "flush")

run_workload() { # mode (unmap|ignore|direct) target qemu-io-args...
    local mode=$1; shift
    local args=() c
    for c in "${workload[@]}"; do
        if [[ "$c" == DISCARD* ]]; then
            case $mode in
                unmap|ignore) c="discard ${c#DISCARD }" ;;
                twin-unmap) c="write -z ${c#DISCARD }" ;;
                twin-ignore) c="flush" ;;
            esac
        fi
        args+=("$c")
    done
    "$QEMU_IO" "$@" "${args[@]}"
}

for fmt in qcow2 raw; do
    for discard in unmap ignore; do
        img=$TMP/img.$fmt twin=$TMP/twin.$fmt
        rm -f "$img" "$twin"
        "$QEMU_IMG" create -q -f "$fmt" "$img" 64M
        "$QEMU_IMG" create -q -f "$fmt" "$twin" 64M
        sock=$TMP/io.sock
        if start_server io "$COWNBD" -f "$fmt" -k "$sock" --discard=$discard "$img"; then
            check "$fmt, discard=$discard: qemu-io workload over nbd+unix" \
                run_workload $discard -f raw "$(nbd_unix "$sock")"
            wait_server_exit io && ok "$fmt: server exits after its only client" ||
                not_ok "$fmt: server exits after its only client"
        else
            not_ok "$fmt, discard=$discard: cownbd starts"
        fi
        run_workload twin-$discard -f "$fmt" "$twin" >/dev/null
        check "$fmt, discard=$discard: image equals the twin (qemu-img compare)" \
            "$QEMU_IMG" compare -f "$fmt" -F "$fmt" "$img" "$twin"
        if [[ $fmt == qcow2 ]]; then
            check "$fmt, discard=$discard: qemu-img check is clean" "$QEMU_IMG" check "$img"
        fi
    done

    # TCP with an export name, reading back what was written through it.
    port=$(free_port)
    if start_server tcp "$COWNBD" -f "$fmt" -b 127.0.0.1 -p "$port" -x disk0 "$img"; then
        out=$("$QEMU_IO" -f raw -c "read -P 0x11 0 1M" -c "read -P 0x33 3000001 12345" \
              -c "read -P 0 8M 2M" -c "read -P 0x55 63M 1M" -c "write -P 0x66 5M 4097" \
              -c "read -P 0x66 5M 4097" "nbd://127.0.0.1:$port/disk0" 2>&1)
        if [[ $? -eq 0 && "$out" != *"verification failed"* && "$out" != *rror* ]]; then
            ok "$fmt: reads and writes over nbd://127.0.0.1:PORT/NAME"
        else
            not_ok "$fmt: reads and writes over nbd://127.0.0.1:PORT/NAME"; diag "$out"
        fi
    else
        not_ok "$fmt: cownbd starts on TCP"
    fi
    stop_servers
    "$QEMU_IO" -f "$fmt" -c "write -P 0x66 5M 4097" "$twin" >/dev/null
    check "$fmt: TCP writes landed (qemu-img compare)" \
        "$QEMU_IMG" compare -f "$fmt" -F "$fmt" "$img" "$twin"
done

# -s: writes go to a temporary overlay; the image stays as it was.
img=$TMP/img.qcow2
cp "$img" "$TMP/orig.qcow2"
if start_server snap "$COWNBD" -s -k "$TMP/snap.sock" "$img"; then
    out=$("$QEMU_IO" -f raw -c "write -P 0x77 0 2M" -c "read -P 0x77 0 2M" -c "read -P 0x55 63M 1M" \
          "$(nbd_unix "$TMP/snap.sock")" 2>&1)
    [[ "$out" != *"verification failed"* && "$out" != *rror* ]] &&
        ok "-s: the overlay takes writes and shows the image beneath" ||
        { not_ok "-s: the overlay takes writes and shows the image beneath"; diag "$out"; }
else
    not_ok "-s: cownbd starts"
fi
stop_servers
check "-s: the image itself is unchanged" "$QEMU_IMG" compare "$img" "$TMP/orig.qcow2"
check "-s: the image is still clean" "$QEMU_IMG" check "$img"

# -r: writes are refused, reads work.
if start_server ro "$COWNBD" -r -t -f qcow2 -k "$TMP/ro.sock" "$img"; then
    check "-r: reads work" "$QEMU_IO" -r -f raw -c "read -P 0x55 63M 1M" "$(nbd_unix "$TMP/ro.sock")"
    check_fails "-r: a client cannot open it for writing" \
        "$QEMU_IO" -f raw -c "write -P 0x99 0 4k" "$(nbd_unix "$TMP/ro.sock")"
fi
stop_servers
check "-r: the image is unchanged" "$QEMU_IMG" compare "$img" "$TMP/orig.qcow2"

# Cache modes and detect-zeroes.
for cache in none writethrough directsync unsafe; do
    if start_server cache "$COWNBD" --cache=$cache -f qcow2 -k "$TMP/c.sock" "$img"; then
        check "--cache=$cache: write and read back" "$QEMU_IO" -f raw -c "write -P 0x5a 100k 77k" \
            -c "read -P 0x5a 100k 77k" "$(nbd_unix "$TMP/c.sock")"
        wait_server_exit cache
    else
        not_ok "--cache=$cache: cownbd starts"
    fi
done
check "cache modes: image is clean" "$QEMU_IMG" check "$img"
if start_server dz "$COWNBD" --discard=unmap --detect-zeroes=unmap -f qcow2 -k "$TMP/dz.sock" "$img"; then
    "$QEMU_IO" -f raw -c "write -P 0 0 1M" "$(nbd_unix "$TMP/dz.sock")" >/dev/null
    wait_server_exit dz
fi
map=$("$QEMU_IMG" map --output=json -f qcow2 "$img" | head -1)
[[ "$map" == *'"start": 0, "length": 1048576,'*'"zero": true, "data": false'* ]] &&
    ok "--detect-zeroes=unmap turns a zero write into unallocated clusters" ||
    { not_ok "--detect-zeroes=unmap turns a zero write into unallocated clusters"; diag "$map"; }
check "detect-zeroes: data reads as zeros" "$QEMU_IO" -f qcow2 -c "read -P 0 0 1M" "$img"
# qemu-img convert onto the export: large writes, zero writes with FAST_ZERO.
"$QEMU_IMG" create -q -f qcow2 "$TMP/dst.qcow2" 64M
"$QEMU_IO" -f qcow2 -c "write -P 0x99 0 64M" "$TMP/dst.qcow2" >/dev/null
if start_server conv "$COWNBD" --discard=unmap -f qcow2 -k "$TMP/conv.sock" "$TMP/dst.qcow2"; then
    check "qemu-img convert -n -m 16 -W (16 requests in flight) onto the export" \
        "$QEMU_IMG" convert -n -m 16 -W -f qcow2 -O raw "$img" "$(nbd_unix "$TMP/conv.sock")"
    wait_server_exit conv
else
    not_ok "convert: cownbd starts"
fi
check "convert: the target equals the source" "$QEMU_IMG" compare "$img" "$TMP/dst.qcow2"
check "convert: the target is clean" "$QEMU_IMG" check "$TMP/dst.qcow2"
done_testing
