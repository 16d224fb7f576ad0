#!/usr/bin/env bash
# Image locks in QEMU's layout (OFD locks on bytes 100+ and 200+): our
# programs and QEMU's refuse to write an image another process uses, each
# honouring the other's locks; -U and file.locking=off as in QEMU.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

img=$TMP/a.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 16M
sock=$TMP/n.sock

# expect_refused "description" "message part" command...
expect_refused() {
    local desc=$1 want=$2; shift 2
    local out
    if out=$("$@" 2>&1); then
        not_ok "$desc (unexpectedly succeeded)"; diag "$out"
    elif grep -qF "$want" <<<"$out" && grep -q "Is another process using the image" <<<"$out"; then
        ok "$desc"
    else
        not_ok "$desc"; diag "$out"
    fi
}

start_server qnbd "$QEMU_NBD" --persistent -f qcow2 -k "$sock" "$img" || exit 1
expect_refused "cowio cannot write an image qemu-nbd serves" 'Failed to get "write" lock' \
    "$COWIO" -c 'write -P 1 0 64k' "$img"
expect_refused "cowio -r cannot read it without -U either" 'Failed to get shared "write" lock' \
    "$COWIO" -r -c 'read 0 64k' "$img"
check "cowio -r -U can read it" "$COWIO" -r -U -c 'read 0 64k' "$img"
check "cowimg info -U can read it" "$COWIMG" info -U "$img"
expect_refused "cowimg info without -U is refused" 'Failed to get shared "write" lock' "$COWIMG" info "$img"
expect_refused "cowimg create cannot overwrite it" 'Failed to get "write" lock' \
    "$COWIMG" create -f qcow2 "$img" 1M
check "cowio with file.locking=off opens it anyway" \
    "$COWIO" -r --image-opts -c 'read 0 512' "driver=qcow2,file.filename=$img,file.locking=off"
stop_servers
check "the image survived the attempts" "$QEMU_IMG" check -q "$img"

# The other way round: cownbd holds locks the real qemu-io honours.
start_server cnbd "$COWNBD" --persistent -f qcow2 -k "$sock" "$img" || exit 1
expect_refused "qemu-io cannot write an image cownbd serves" 'Failed to get "write" lock' \
    "$QEMU_IO" -c 'write -P 1 0 64k' "$img"
expect_refused "qemu-img resize cannot resize it" 'lock' "$QEMU_IMG" resize "$img" 32M
expect_refused "a second cownbd cannot serve it" 'Failed to get "write" lock' \
    "$COWNBD" -f qcow2 -k "$TMP/m.sock" "$img"
# The destruction of the report: cownbd writes while cowio writes other ranges.
"$QEMU_IO" -f raw -c 'write -P 0x11 0 1M' "nbd+unix:///?socket=$sock" >/dev/null 2>&1 &
writer=$!
expect_refused "cowio cannot write beside a cownbd client" 'Failed to get "write" lock' \
    "$COWIO" -c 'write -P 0x22 8M 1M' "$img"
wait $writer
stop_servers
check "qemu-img check calls the image clean" "$QEMU_IMG" check -q "$img"
check "the client's write landed" "$QEMU_IO" -r -c 'read -P 0x11 0 1M' "$img"

# Readers share; a writer excludes them, in both directions.
start_server ronbd "$COWNBD" --persistent -r -f qcow2 -k "$sock" "$img" || exit 1
check "qemu-io -r reads beside a read-only cownbd" "$QEMU_IO" -r -c 'read 0 512' "$img"
expect_refused "qemu-io cannot write beside it" 'Failed to get "write" lock' \
    "$QEMU_IO" -c 'write 0 512' "$img"
stop_servers

# A backing file is locked against writes while an overlay uses it.
"$QEMU_IMG" create -q -f qcow2 -b "$img" -F qcow2 "$TMP/top.qcow2"
start_server top "$COWNBD" --persistent -f qcow2 -k "$sock" "$TMP/top.qcow2" || exit 1
expect_refused "the backing file of a served overlay cannot be written" 'Failed to get "write" lock' \
    "$QEMU_IO" -c 'write 0 512' "$img"
check "it can be read by a reader that shares" "$QEMU_IO" -r -c 'read 0 512' "$img"
stop_servers

# Within one process too: convert onto its own source is refused, as by
# qemu-img (it used to truncate the source), and -U -s works as in qemu-io.
"$QEMU_IO" -c 'write -P 0x44 0 64k' "$TMP/top.qcow2" >/dev/null
expect_refused "cowimg convert onto its own source is refused" 'Failed to get "write" lock' \
    "$COWIMG" convert -O qcow2 "$TMP/top.qcow2" "$TMP/top.qcow2"
check "and the source keeps its data" "$QEMU_IO" -r -c 'read -P 0x44 0 64k' "$TMP/top.qcow2"
check "cowio -U -s writes to its temporary overlay" "$COWIO" -U -s -c 'write 0 4k' "$TMP/top.qcow2"
check "cowimg commit writes the base its own chain holds" "$COWIMG" commit "$TMP/top.qcow2"

# After every holder is gone, everything opens again; -U needs read-only.
check "cowio writes once the servers are gone" "$COWIO" -c 'write -P 3 0 4k' "$img"
out=$("$COWIO" -U -c 'read 0 512' "$img" 2>&1)
grep -q "force-share=on can only be used with read-only images" <<<"$out" &&
    ok "-U without -r is refused as in qemu-io" || { not_ok "-U without -r is refused as in qemu-io"; diag "$out"; }
done_testing
