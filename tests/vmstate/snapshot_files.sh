#!/usr/bin/env bash
# Snapshots to files: a full one and diffs taken over QMP while the test
# guest counts; restores with --restore continue the count with verified
# memory (patterns, pages only the VMM's virtio device wrote) and print what
# the original printed after the same instant. Snapshots to files do not
# hold the disks (as with Firecracker): the test copies the disk while the
# VM is stopped for the snapshot and restores with that copy.
source "$TESTS_DIR/vmstate/common.sh"

truncate -s 8M "$TMP/disk.img"
ARGS=(--kernel "$GUEST" --memory 128M --cpus 2 --append "counter spin=10000000"
      --disk "file=$TMP/disk.img,format=raw,transport=pci")
VM=a DISK=$TMP/disk.img
snap() {  # snap DIR [type]: returns the QMP output; $DISK is copied to DIR.disk
    local args="{\"directory\": \"$1\"${2:+, \"type\": \"$2\"}}"
    $QMP "$TMP/$VM.sock" qmp_capabilities stop "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": $args}"
    cp "$DISK" "$1.disk"
    $QMP "$TMP/$VM.sock" qmp_capabilities cont >/dev/null
}

start_vm a "${ARGS[@]}"
wait_text "$TMP/a.out" "counter 10 ok"
out=$($QMP "$TMP/a.sock" qmp_capabilities "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": {\"directory\": \"$TMP/scratch\"}}")
check "a snapshot of a running VM stops it (STOP, RESUME)" \
    bash -c 'grep -q "\"event\": \"STOP\"" <<<"$1" && grep -q "\"event\": \"RESUME\"" <<<"$1"' _ "$out"
before_full=$(counter_lines "$TMP/a.out" | tail -1)
out=$(snap "$TMP/full")
check "full snapshot: QMP returns {}" grep -qxF '{"return": {}}' <<<"$out"
at_full=$(counter_lines "$TMP/a.out" | tail -1)
wait_text "$TMP/a.out" "counter $((at_full + 15)) "
before_diff1=$(counter_lines "$TMP/a.out" | tail -1)
out=$(snap "$TMP/diff1" diff)
check "diff snapshot after the full one" grep -qxF '{"return": {}}' <<<"$out"
at_diff1=$(counter_lines "$TMP/a.out" | tail -1)
wait_text "$TMP/a.out" "counter $((at_diff1 + 15)) "
before_diff2=$(counter_lines "$TMP/a.out" | tail -1)
out=$(snap "$TMP/diff2" diff)
check "second diff snapshot (diff of a diff)" grep -qxF '{"return": {}}' <<<"$out"
out=$($QMP "$TMP/a.sock" qmp_capabilities "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": {\"directory\": \"$TMP/diff2\", \"type\": \"diff\"}}")
check "a diff may not replace its own parent" grep -q "cannot replace its parent" <<<"$out"
at_diff2=$(counter_lines "$TMP/a.out" | tail -1)
wait_text "$TMP/a.out" "counter $((at_diff2 + 40)) "
$QMP "$TMP/a.sock" qmp_capabilities quit >/dev/null
check_eq "original VM quit with status 0" 0 "$(wait_vm a)"
check_eq "original guest: no failed check" 0 "$(grep -c '^FAIL' "$TMP/a.out")"

full_kb=$(du -k "$TMP/full/memory" | cut -f1)
diff_kb=$(du -k "$TMP/diff1/memory" | cut -f1)
diag "memory files on disk: full ${full_kb} KiB, diff ${diff_kb} KiB"
check "the diff memory file holds far fewer pages than the full one" test $((diff_kb * 8)) -lt "$full_kb"
check_eq "memory files have the guest RAM size" 134217728 "$(stat -c %s "$TMP/diff1/memory")"

# (The snapshot may fall inside the line of AFTER + 1: the first complete
# line printed by the restored guest is then AFTER + 2.)
# restore_check DIR NAME BEFORE AFTER: restore and compare; the snapshot
# was taken after the guest printed counter BEFORE and before AFTER + 1.
restore_check() {
    local dir=$1 name=$2 before=$3 at=$4
    cp "$dir.disk" "$TMP/$name.img"
    timeout 20 "$COWVISOR" "${ARGS[@]/$TMP\/disk.img/$TMP/$name.img}" --restore "$dir" --console "file:$TMP/$name.out" \
        --qmp "unix:$TMP/$name.sock,server,nowait" 2>"$TMP/$name.err" &
    local pid=$!
    VM_PIDS+=($pid)
    wait_text "$TMP/$name.out" "counter $((at + 25)) "
    $QMP "$TMP/$name.sock" qmp_capabilities quit >/dev/null
    wait "$pid"
    local first
    first=$(counter_lines "$TMP/$name.out" | head -1)
    diag "$name: snapshot taken between counter $before and $at, restored guest goes on at ${first:-nothing}"
    check "$name: the counter goes on from the snapshot, not from 1" test "${first:-0}" -gt "$before"
    check "$name: the count goes on by one" test "${first:-0}" -le $((at + 2))
    check_eq "$name: no failed memory or device check after restore" 0 "$(grep -c '^FAIL' "$TMP/$name.out")"
    check_eq "$name: no guest hello (no reboot)" 0 "$(grep -c 'hello' "$TMP/$name.out")"
    check "$name: prints what the original printed after that instant" continues "$TMP/a.out" "$TMP/$name.out" 20
}
restore_check "$TMP/full" r_full "$before_full" "$at_full"
restore_check "$TMP/diff1" r_diff1 "$before_diff1" "$at_diff1"
restore_check "$TMP/diff2" r_diff2 "$before_diff2" "$at_diff2"

# A diff snapshot of a restored VM: relative to the snapshot it came from.
cp "$TMP/diff2.disk" "$TMP/b.img"
start_vm b "${ARGS[@]/$TMP\/disk.img/$TMP/b.img}" --restore "$TMP/diff2"
wait_text "$TMP/b.out" "counter $((at_diff2 + 10)) "
before_diff3=$(counter_lines "$TMP/b.out" | tail -1)
VM=b DISK=$TMP/b.img
out=$(snap "$TMP/diff3" diff)
check "diff snapshot of a restored VM" grep -qxF '{"return": {}}' <<<"$out"
at_diff3=$(counter_lines "$TMP/b.out" | tail -1)
wait_text "$TMP/b.out" "counter $((at_diff3 + 30)) "
$QMP "$TMP/b.sock" qmp_capabilities quit >/dev/null
wait_vm b >/dev/null
cp "$TMP/b.out" "$TMP/a.out"
restore_check "$TMP/diff3" r_diff3 "$before_diff3" "$at_diff3"

# Replacing a parent breaks its diffs: refused, not silently wrong.
cp -r "$TMP/diff1" "$TMP/diff1.keep"
start_vm c "${ARGS[@]}"
wait_text "$TMP/c.out" "counter 3 ok"
$QMP "$TMP/c.sock" qmp_capabilities \
    "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": {\"directory\": \"$TMP/diff1\"}}" >/dev/null
out=$($QMP "$TMP/c.sock" qmp_capabilities \
    "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": {\"directory\": \"$TMP/nodiff\", \"type\": \"bogus\"}}" quit)
check "unknown snapshot type refused" grep -q '"class": "GenericError"' <<<"$out"
wait_vm c >/dev/null
timeout 20 "$COWVISOR" "${ARGS[@]}" --restore "$TMP/diff2" --console "file:$TMP/r_bad.out" 2>"$TMP/r_bad.err"
check_eq "restore of a diff whose parent was replaced fails" 255 "$?"
check "... saying the parent was replaced" grep -q "was replaced by another snapshot" "$TMP/r_bad.err"
done_testing
