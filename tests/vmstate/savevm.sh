#!/usr/bin/env bash
# savevm/loadvm/delvm into a qcow2 disk (HMP through QMP, snapshot jobs,
# --loadvm at start): the guest goes back to the saved instant with its
# memory and its disk (a log of blocks it checks), qemu-img sees the
# snapshot with its VM state size, and mismatches are refused.
source "$TESTS_DIR/vmstate/common.sh"
COWIMG=${COWIMG:-cowimg}

"$COWIMG" create -f qcow2 "$TMP/probe.qcow2" 1M >/dev/null
if ! "$COWIMG" snapshot -c probe "$TMP/probe.qcow2" 2>"$TMP/probe.err"; then
    echo "1..0 # SKIP internal qcow2 snapshots are not available: $(head -1 "$TMP/probe.err")"
    exit 0
fi

"$COWIMG" create -f qcow2 "$TMP/disk.qcow2" 16M >/dev/null
ARGS=(--kernel "$GUEST" --memory 128M --append "counter spin=10000000" --disk "file=$TMP/disk.qcow2,transport=pci")
hmp() {  # hmp SOCK COMMAND...: the replies of human-monitor-command
    local sock=$1; shift
    local cmds=() c
    for c in "$@"; do
        cmds+=("{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"$c\"}}")
    done
    $QMP "$sock" qmp_capabilities "${cmds[@]}" | grep '"return"' | tail -n +2
}

start_vm a "${ARGS[@]}"
wait_text "$TMP/a.out" "counter 10 ok"
before_s1=$(counter_lines "$TMP/a.out" | tail -1)
check_eq "savevm s1: no error" '{"return": ""}' "$(hmp "$TMP/a.sock" "savevm s1")"
after_s1=$(counter_lines "$TMP/a.out" | tail -1)
out=$(hmp "$TMP/a.sock" "info snapshots")
check "info snapshots lists s1 with its VM state size" \
    grep -qE '^\{"return": "List of snapshots present on all disks:\\r\\nID +TAG +VM SIZE +DATE +VM CLOCK +ICOUNT\\r\\n-- +s1 +[0-9.]+ MiB ' <<<"$out"
wait_text "$TMP/a.out" "counter $((after_s1 + 30)) ok"
check_eq "loadvm s1: no error" '{"return": ""}' "$(hmp "$TMP/a.sock" "loadvm s1")"
# Where the count goes back: the first value after loadvm. The guest may have
# printed past AFTER + 31 before loadvm took hold, so wait for the drop itself.
# (AFTER + 2 at most: the snapshot may fall inside the line of AFTER + 1, read
# only once complete.)
first=
for _ in $(seq 1 300); do
    first=$(counter_lines "$TMP/a.out" | awk 'NR > 1 && $1 < prev { print; exit } { prev = $1 }')
    [[ -n "$first" ]] && break
    sleep 0.1
done
diag "savevm between counter $before_s1 and $after_s1; after loadvm the guest goes on at $first"
check "loadvm: the guest is back at the saved instant" test "${first:-0}" -gt "$before_s1" -a "${first:-0}" -le $((after_s1 + 2))
check_eq "loadvm: memory and disk checks pass (disk went back with memory)" 0 "$(grep -c '^FAIL' "$TMP/a.out")"
check_eq "loadvm of a missing snapshot: QEMU's error" \
    "{\"return\": \"Error: Snapshot 'nope' does not exist in one or more devices\\r\\n\"}" "$(hmp "$TMP/a.sock" "loadvm nope")"

# The same through jobs.
out=$($QMP "$TMP/a.sock" qmp_capabilities \
    '{"execute": "snapshot-save", "arguments": {"job-id": "save", "tag": "s2", "vmstate": "disk0", "devices": ["disk0"]}}' \
    '@sleep:0.5' query-jobs \
    '{"execute": "snapshot-load", "arguments": {"job-id": "load", "tag": "s2", "vmstate": "disk0", "devices": ["disk0"]}}' \
    '@sleep:0.5' \
    '{"execute": "snapshot-delete", "arguments": {"job-id": "del", "tag": "s2", "devices": ["disk0"]}}' \
    '@sleep:0.5' query-jobs)
for j in save load del; do
    check "job $j: created, running, waiting, pending, concluded" python3 -c '
import json, sys
ev = [json.loads(l)["data"]["status"] for l in sys.stdin if "JOB_STATUS_CHANGE" in l and "\"'$j'\"" in l]
assert ev == ["created", "running", "waiting", "pending", "concluded"], ev' <<<"$out"
done
check "query-jobs: no error" bash -c '! grep -q "\"error\"" <<<"$1"' _ "$out"
check "snapshot-delete removed s2" bash -c '! grep -q " s2 " <<<"$1"' _ "$(hmp "$TMP/a.sock" "info snapshots")"
$QMP "$TMP/a.sock" qmp_capabilities quit >/dev/null
check_eq "VM quit" 0 "$(wait_vm a)"
check_eq "no failed check in the whole run" 0 "$(grep -c '^FAIL' "$TMP/a.out")"

if command -v qemu-img >/dev/null; then
    qemu-img snapshot -l "$TMP/disk.qcow2" >"$TMP/list.txt"
    check "qemu-img snapshot -l shows s1 with its VM SIZE" grep -qE '^1 +s1 +[0-9.]+ MiB ' "$TMP/list.txt"
    check "qemu-img check: clean image" qemu-img check "$TMP/disk.qcow2"
fi

# --loadvm at start: a new process goes on from s1 as the first one did.
start_vm b "${ARGS[@]}" --loadvm s1
wait_text "$TMP/b.out" "counter $((after_s1 + 25)) ok"
$QMP "$TMP/b.sock" qmp_capabilities quit >/dev/null
wait_vm b >/dev/null
first=$(counter_lines "$TMP/b.out" | head -1)
check "--loadvm: the guest goes on from s1" test "${first:-0}" -gt "$before_s1" -a "${first:-0}" -le $((after_s1 + 2))
check_eq "--loadvm: no failed check" 0 "$(grep -c '^FAIL' "$TMP/b.out")"
check "--loadvm: prints what the first VM printed after s1" continues "$TMP/a.out" "$TMP/b.out" 20

# Refusals: another machine, a missing snapshot, a raw writable disk.
timeout 20 "$COWVISOR" --kernel "$GUEST" --memory 64M --append "counter spin=10000000" --disk "file=$TMP/disk.qcow2,transport=pci" \
    --loadvm s1 --console "file:$TMP/c.out" 2>"$TMP/c.err"
check_eq "--loadvm with another --memory: status 255" 255 "$?"
check "... configuration mismatch named" grep -q "configuration mismatch: the snapshot was taken with --memory 128 MiB" "$TMP/c.err"
timeout 20 "$COWVISOR" "${ARGS[@]}" --loadvm nope --console "file:$TMP/d.out" 2>"$TMP/d.err"
check_eq "--loadvm of a missing snapshot: status 255" 255 "$?"
truncate -s 8M "$TMP/raw.img"
timeout 20 "$COWVISOR" "${ARGS[@]}" --disk "file=$TMP/raw.img,format=raw" --loadvm s1 \
    --console "file:$TMP/e.out" 2>"$TMP/e.err"
check "--loadvm with a writable raw disk: refused by name" grep -q "is writable but does not support snapshots" "$TMP/e.err"

# Snapshot jobs and HMP answers compared line by line with QEMU's (TCG,
# stopped guest: only the monitor matters here).
JOBS=('{"execute": "snapshot-save", "arguments": {"job-id": "j1", "tag": "t2", "vmstate": "disk0", "devices": ["disk0"]}}'
      '@sleep:1' query-jobs
      '{"execute": "snapshot-delete", "arguments": {"job-id": "j3", "tag": "nope", "devices": ["disk0"]}}'
      '@sleep:1' query-jobs
      '{"execute": "snapshot-load", "arguments": {"job-id": "j4", "tag": "t2", "vmstate": "nodisk", "devices": ["disk0"]}}'
      '@sleep:1'
      '{"execute": "job-dismiss", "arguments": {"id": "j9"}}' '{"execute": "job-dismiss", "arguments": {"id": "j1"}}'
      '{"execute": "human-monitor-command", "arguments": {"command-line": "delvm nope"}}'
      '{"execute": "human-monitor-command", "arguments": {"command-line": "loadvm nope"}}' quit)
normalize() {
    sed -E 's/"timestamp": \{"seconds": [0-9]+, "microseconds": [0-9]+\}/"timestamp": T/; 1d'
}
if command -v qemu-system-x86_64 >/dev/null; then
    "$COWIMG" create -f qcow2 "$TMP/g.qcow2" 16M >/dev/null
    qemu-img create -q -f qcow2 "$TMP/qemu.qcow2" 16M
    start_vm g --kernel "$GUEST" --memory 128M --append "counter spin=10000000" --disk "file=$TMP/g.qcow2,transport=pci"
    wait_text "$TMP/g.out" "counter 2 ok"
    $QMP "$TMP/g.sock" qmp_capabilities stop >/dev/null     # as QEMU's -S
    $QMP "$TMP/g.sock" qmp_capabilities "${JOBS[@]}" | normalize >"$TMP/jobs.ours"
    wait_vm g >/dev/null
    timeout 30 qemu-system-x86_64 -accel tcg -m 64 -nodefaults -display none -S \
        -blockdev "driver=file,filename=$TMP/qemu.qcow2,node-name=f0" -blockdev driver=qcow2,file=f0,node-name=disk0 \
        -device virtio-blk-pci,drive=disk0 -qmp "unix:$TMP/qemu.sock,server,nowait" 2>"$TMP/qemu.err" &
    VM_PIDS+=($!)
    $QMP "$TMP/qemu.sock" qmp_capabilities "${JOBS[@]}" | normalize >"$TMP/jobs.qemu"
    if diff -u "$TMP/jobs.qemu" "$TMP/jobs.ours" >"$TMP/jobs.diff"; then
        ok "snapshot jobs, job-dismiss, delvm/loadvm errors: as QEMU's ($(wc -l <"$TMP/jobs.ours") lines)"
    else
        not_ok "snapshot jobs differ from QEMU's"
        sed 's/^/# /' "$TMP/jobs.diff" | head -30
    fi
fi

start_vm f "${ARGS[@]}"
wait_text "$TMP/f.out" "counter 2 ok"
check_eq "delvm s1" '{"return": ""}' "$(hmp "$TMP/f.sock" "delvm s1")"
check_eq "no snapshot left" '{"return": "There is no snapshot available.\r\n"}' "$(hmp "$TMP/f.sock" "info snapshots")"
$QMP "$TMP/f.sock" qmp_capabilities quit >/dev/null
wait_vm f >/dev/null
done_testing
