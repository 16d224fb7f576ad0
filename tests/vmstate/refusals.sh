#!/usr/bin/env bash
# Restores that must be refused with a clear message, never half-done: a
# corrupted stream (checksums), another stream version, another magic, a
# truncated file, and a machine configured differently from the snapshot.
source "$TESTS_DIR/vmstate/common.sh"

truncate -s 8M "$TMP/disk.img"
ARGS=(--kernel "$GUEST" --memory 64M --append "counter spin=10000000"
      --disk "file=$TMP/disk.img,format=raw,transport=mmio" --device virtio-rng,transport=pci)
start_vm a "${ARGS[@]}"
wait_text "$TMP/a.out" "counter 3 ok"
out=$($QMP "$TMP/a.sock" qmp_capabilities \
    '{"execute": "x-cowvisor-snapshot-files", "arguments": {"type": "diff", "directory": "'"$TMP/d0"'"}}' \
    '{"execute": "x-cowvisor-snapshot-files", "arguments": {"directory": "'"$TMP/snap"'"}}' quit)
check "a diff snapshot needs an earlier one" \
    grep -qF '{"error": {"class": "GenericError", "desc": "a diff snapshot needs an earlier snapshot to files (or a restore) of this VM"}}' <<<"$out"
check "full snapshot taken" grep -qxF '{"return": {}}' <<<"$out"
check_eq "VM quit" 0 "$(wait_vm a)"

# restore_fails NAME MESSAGE args...: status 255 and MESSAGE on stderr.
restore_fails() {
    local name=$1 msg=$2; shift 2
    timeout 20 "$COWVISOR" "$@" --console "file:$TMP/$name.out" >/dev/null 2>"$TMP/$name.err"
    local st=$?
    if [[ $st -eq 255 ]] && grep -qF -- "$msg" "$TMP/$name.err"; then
        ok "$name: refused ($(head -c 200 "$TMP/$name.err"))"
    else
        not_ok "$name: status $st, expected 255 and '$msg'"
        sed 's/^/# /' "$TMP/$name.err" | head -5
    fi
    check_eq "$name: the guest never ran" 0 "$(cat "$TMP/$name.out" 2>/dev/null | grep -c counter)"
}

# The untouched snapshot restores (so the refusals below are about the damage).
timeout 20 "$COWVISOR" "${ARGS[@]}" --restore "$TMP/snap" --console "file:$TMP/good.out" \
    --qmp "unix:$TMP/good.sock,server,nowait" 2>"$TMP/good.err" &
VM_PIDS+=($!)
wait_text "$TMP/good.out" "counter"
$QMP "$TMP/good.sock" qmp_capabilities quit >/dev/null
check "the intact snapshot restores" grep -q "^counter [0-9]* ok" "$TMP/good.out"

variant() {  # variant NAME PYTHON-EXPR-ON-data: a damaged copy of the snapshot
    rm -rf "$TMP/$1"
    cp -r "$TMP/snap" "$TMP/$1"
    python3 - "$TMP/$1/state" "$2" <<'PY'
import struct, sys, zlib
path, expr = sys.argv[1], sys.argv[2]
data = bytearray(open(path, "rb").read())
exec(expr)
open(path, "wb").write(data)
PY
}
# A byte inside the device section's payload.
variant corrupt 'i = data.find(b"virtio.0"); data[i + 48 + 20] ^= 0x40'
restore_fails corrupt "VM state section 'virtio.0' is corrupted (checksum mismatch)" "${ARGS[@]}" --restore "$TMP/corrupt"
variant corrupt_hdr 'i = data.find(b"vcpu.0"); data[i + 37] ^= 1'
restore_fails corrupt_hdr "section header at byte" "${ARGS[@]}" --restore "$TMP/corrupt_hdr"
variant version 'data[8:12] = struct.pack("<I", 3); data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[:12])))'
restore_fails version "VM state version 3 is not supported (this cowvisor reads version 2)" "${ARGS[@]}" --restore "$TMP/version"
# What cowvisor wrote before device state had one framing.
variant version1 'data[8:12] = struct.pack("<I", 1); data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[:12])))'
restore_fails version1 "VM state version 1 (written before device state had one framing) is not supported" "${ARGS[@]}" --restore "$TMP/version1"
variant magic 'data[0:8] = b"QEVM\0\0\0\3"'
restore_fails magic "not a cowvisor VM state (bad magic)" "${ARGS[@]}" --restore "$TMP/magic"
variant truncated 'del data[len(data) // 2:]'
restore_fails truncated "truncated" "${ARGS[@]}" --restore "$TMP/truncated"
rm -rf "$TMP/nomem"; cp -r "$TMP/snap" "$TMP/nomem"; truncate -s 1M "$TMP/nomem/memory"
restore_fails short_memory "memory file" "${ARGS[@]}" --restore "$TMP/nomem"

# Another machine than the snapshot's.
restore_fails memory_size "configuration mismatch: the snapshot was taken with --memory 64 MiB, this VM has --memory 128 MiB" \
    --kernel "$GUEST" --memory 128M --append "counter spin=10000000" --disk "file=$TMP/disk.img,format=raw,transport=mmio" \
    --device virtio-rng,transport=pci --restore "$TMP/snap"
restore_fails cpus "configuration mismatch: the snapshot was taken with --cpus 1, this VM has --cpus 2" \
    "${ARGS[@]}" --cpus 2 --restore "$TMP/snap"
restore_fails no_disk "configuration mismatch: the snapshot has 1 disk(s), this VM has 0" \
    --kernel "$GUEST" --memory 64M --append "counter spin=10000000" --device virtio-rng,transport=pci --restore "$TMP/snap"
restore_fails transport "configuration mismatch: disk 0 was on transport mmio, here it is on pci" \
    --kernel "$GUEST" --memory 64M --append "counter spin=10000000" --disk "file=$TMP/disk.img,format=raw,transport=pci" \
    --device virtio-rng,transport=pci --restore "$TMP/snap"
restore_fails rng "configuration mismatch: the snapshot has 1 virtio-rng device(s), this VM has 0" \
    --kernel "$GUEST" --memory 64M --append "counter spin=10000000" --disk "file=$TMP/disk.img,format=raw,transport=mmio" \
    --restore "$TMP/snap"
restore_fails missing "nonexistent': No such file or directory" "${ARGS[@]}" --restore "$TMP/nonexistent"
done_testing
