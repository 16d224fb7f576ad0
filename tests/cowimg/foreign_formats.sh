#!/usr/bin/env bash
# Images in formats QEMU reads and we do not (made by the real qemu-img, or
# by hand where qemu-img cannot create them) are refused by name in every
# program, never read or converted as if they were raw disks; an explicit
# raw format still reads the file's bytes.
. "$TESTS_DIR/lib.sh"

made=()
for fmt in vmdk vdi vhdx vpc qed qcow parallels; do
    "$QEMU_IMG" create -q -f $fmt "$TMP/img.$fmt" 1M && made+=($fmt)
done
"$QEMU_IMG" create -q -f luks --object secret,id=s0,data=pw -o key-secret=s0 "$TMP/img.luks" 1M &&
    made+=(luks)
"$QEMU_IMG" create -q -f vmdk -o subformat=monolithicFlat "$TMP/flat.vmdk" 1M &&
    cp "$TMP/flat.vmdk" "$TMP/img.vmdkdesc" && made+=(vmdkdesc)
# qemu-img cannot create these: their magic is enough for QEMU's probes.
{ printf 'Bochs Virtual HD Image'; head -c 490 /dev/zero; } >"$TMP/img.bochs" && made+=(bochs)
{ printf '#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$1 && mount -r -t iso9660 /dev/cloop $2\n'
  head -c 4096 /dev/zero; } >"$TMP/img.cloop" && made+=(cloop)
{ head -c 4096 /dev/zero; printf 'koly'; head -c 508 /dev/zero; } >"$TMP/img.dmg" && made+=(dmg)

for f in "${made[@]}"; do
    name=$f
    [[ $f == vmdkdesc ]] && name=vmdk
    img=$TMP/img.$f
    [[ $f == vmdkdesc ]] && img=$TMP/flat.vmdk
    out=$("$COWIMG" convert -O qcow2 "$img" "$TMP/out.qcow2" 2>&1); rc=$?
    if [[ $rc -ne 0 && $out == *"format '$name' is not supported"* && ! -e $TMP/out.qcow2 ]]; then
        ok "convert refuses $f, naming $name"
    else
        not_ok "convert refuses $f, naming $name (rc $rc)"; diag "$out"
    fi
    rm -f "$TMP/out.qcow2"
    out=$("$COWIMG" info "$img" 2>&1)
    [[ $? -ne 0 && $out == *"'$name'"* ]] && ok "info refuses $f" || { not_ok "info refuses $f"; diag "$out"; }
    out=$("$COWIO" -c "read 0 512" "$img" 2>&1)
    [[ $? -ne 0 && $out == *"'$name'"* ]] && ok "cowio refuses $f" || { not_ok "cowio refuses $f"; diag "$out"; }
done

# As a backing file without a recorded format it is refused too.
"$QEMU_IMG" create -q -f qcow2 -u -b "$TMP/img.vdi" "$TMP/over.qcow2" 1M 2>/dev/null ||
    "$QEMU_IMG" create -q -f qcow2 -u -b "$TMP/img.vdi" -F raw "$TMP/over.qcow2" 1M
if "$QEMU_IMG" info "$TMP/over.qcow2" | grep -q 'backing file format'; then
    ok "backing without a format: skipped (qemu-img recorded one)"
else
    out=$("$COWIO" -c "read 0 512" "$TMP/over.qcow2" 2>&1)
    [[ $out == *"'vdi' is not supported"* ]] && ok "a vdi backing file is refused by name" ||
        { not_ok "a vdi backing file is refused by name"; diag "$out"; }
fi

# An explicit raw format still reads the container's bytes, as in QEMU.
check "info -f raw reads a vmdk file as raw" "$COWIMG" info -f raw "$TMP/img.vmdk"
check "convert -f raw copies its bytes" "$COWIMG" convert -f raw -O raw "$TMP/img.vmdk" "$TMP/bytes.raw"
check "and they are the file's bytes" cmp "$TMP/img.vmdk" "$TMP/bytes.raw"

# A probed raw image must not be turned into one of them by a write.
truncate -s 1M "$TMP/disk.raw"
printf 'KDMV' >"$TMP/magic"
out=$("$COWIO" -c "write -s $TMP/magic 0 4" "$TMP/disk.raw" 2>&1)
[[ $out == *"Operation not permitted"* ]] && ok "a vmdk magic in block 0 of a probed raw image is refused" ||
    { not_ok "a vmdk magic in block 0 of a probed raw image is refused"; diag "$out"; }
done_testing
