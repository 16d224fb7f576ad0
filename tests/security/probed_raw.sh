#!/usr/bin/env bash
# A raw image opened without a format is probed. Whoever writes its first
# sector would choose the format of the next open, and a qcow2 header there
# names any host file as backing file: a guest or NBD client could read host
# files. Such writes must fail as in QEMU (EPERM), in every program, and the
# programs print QEMU's warning where QEMU does.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

secret=$TMP/secret.bin
truncate -s 1M "$secret"
echo TOPSECRET | dd of="$secret" conv=notrunc status=none
evil=$TMP/evil.qcow2
"$QEMU_IMG" create -q -f qcow2 -u -b "$secret" -F raw "$evil" 1M
head -c 512 "$evil" >"$TMP/evil.sector"
printf 'QFI\xfb' >"$TMP/magic"
printf '\x00\x00\x00\x03' >"$TMP/version"
disk=$TMP/disk.img
truncate -s 8M "$disk"

compare_io "cowio refuses a qcow2 header in block 0 of a probed raw image" "$disk" \
    -c "write -s $TMP/evil.sector 0 512" -c "read -P 0 0 512" IMG
compare_io "a header assembled from two writes is refused too" "$disk" \
    -c "write -s $TMP/magic 0 4" -c "write -s $TMP/version 4 4" -c "read -P 0 4 4" IMG
# Formats cowvisor does not read count too: a vmdk descriptor names any host
# file as its extent, a qcow (v1) header any backing file.
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "%s" 0\n' \
    "$secret" >"$TMP/vmdk.desc"
compare_io "a vmdk descriptor in block 0 is refused" "$disk" \
    -c "write -s $TMP/vmdk.desc 0 $(stat -c %s "$TMP/vmdk.desc")" IMG
"$QEMU_IMG" create -q -f qcow -b "$secret" -F raw "$TMP/v1.qcow" 1M
head -c 512 "$TMP/v1.qcow" >"$TMP/v1.sector"
compare_io "a qcow (v1) header in block 0 is refused" "$disk" -c "write -s $TMP/v1.sector 0 512" IMG
compare_io "writes after block 0 are not restricted" "$disk" -c "write -s $TMP/evil.sector 512 512" IMG
compare_io "an explicit raw format lifts the restriction" "$disk" -f raw \
    -c "write -s $TMP/evil.sector 0 512" IMG

# Through cownbd: the reproducer of the report, with the real qemu-io as client.
sock=$TMP/n.sock
start_server nbd "$COWNBD" --persistent -k "$sock" "$disk"
grep -q "probing guessed raw" "$TMP/nbd.err" && ok "cownbd prints QEMU's probing warning" ||
    not_ok "cownbd prints QEMU's probing warning"
out=$("$QEMU_IO" -f raw -c "write -s $evil 0 196616" "$(nbd_unix "$sock")" 2>&1)
grep -q "Operation not permitted" <<<"$out" && ok "an NBD client cannot write a qcow2 header" ||
    { not_ok "an NBD client cannot write a qcow2 header"; diag "$out"; }
out=$("$QEMU_IO" -f raw -c "write -P 0x5a 512 4096" -c "read -P 0x5a 512 4096" "$(nbd_unix "$sock")" 2>&1)
grep -q "read 4096/4096" <<<"$out" && ok "other NBD writes still land" ||
    { not_ok "other NBD writes still land"; diag "$out"; }
stop_servers
start_server nbd2 "$COWNBD" --persistent -k "$sock" "$disk"
out=$("$QEMU_IO" -r -f raw -c 'read -v 0 16' "$(nbd_unix "$sock")" 2>&1)
if grep -q "read 16/16" <<<"$out" && ! grep -q TOPSECRET <<<"$out"; then
    ok "the restarted server serves block 0, not the host file"
else
    not_ok "the restarted server serves block 0, not the host file"; diag "$out"
fi
stop_servers

# Our own NBD client probing an export (no -f): the same restriction on
# the client's side, as qemu-io has (the server exports the format raw, so
# only the client guards). Both clients run on the same export in turn.
# compare_nbd "description" args...: same output and status from both.
compare_nbd() {
    local desc=$1; shift
    local url out_q out_c rc_q rc_c
    url=$(nbd_unix "$sock")
    out_q=$("$QEMU_IO" "$@" "$url" 2>&1 | filter_qemu_io); rc_q=${PIPESTATUS[0]}
    out_c=$("$COWIO" "$@" "$url" 2>&1 | filter_qemu_io); rc_c=${PIPESTATUS[0]}
    if [[ $out_q == "$out_c" && $rc_q == "$rc_c" ]]; then
        ok "$desc: as qemu-io ($rc_c)"
    else
        not_ok "$desc: differs from qemu-io"; diag "qemu-io $rc_q: $out_q" "cowio $rc_c: $out_c"
    fi
}
start_server nbd3 "$COWNBD" --persistent -f raw -k "$sock" "$disk"
compare_nbd "a probed NBD export refuses a qcow2 header in block 0" -c "write -s $TMP/evil.sector 0 512"
compare_nbd "... and one assembled from two writes" -c "write -s $TMP/magic 0 4" -c "write -s $TMP/version 4 4"
compare_nbd "... other block-0 writes land" -c "write -P 0x11 0 512" -c "read -P 0x11 0 512"
compare_nbd "... an explicit raw format lifts it" -f raw -c "write -s $TMP/evil.sector 0 512" \
    -c "write -P 0 0 512"
stop_servers
head -c 512 "$disk" | cmp -s - <(head -c 512 /dev/zero) && ok "block 0 of the export is as the last write left it" ||
    not_ok "block 0 of the export is as the last write left it"

# The warnings, where qemu-io and qemu-img print them (read-write opens only).
warned() { "$@" 2>&1 | grep -c "probing guessed raw"; }
check_eq "cowio warns on a read-write probed open" 1 "$(warned "$COWIO" -c "read 0 512" "$disk")"
check_eq "cowio does not warn on a read-only open" 0 "$(warned "$COWIO" -r -c "read 0 512" "$disk")"
check_eq "cowimg resize warns" 1 "$(warned "$COWIMG" resize "$disk" 9M)"
done_testing
