#!/usr/bin/env bash
# The QMP monitor as QMP clients see it: greeting, negotiation, errors with
# QEMU's classes and texts, run control with its events, queries, HMP, jobs,
# external snapshots, shutdown. Where QEMU answers the same request the same
# way, the reply is compared with the real qemu-system-x86_64's.
source "$TESTS_DIR/vmstate/common.sh"

truncate -s 8M "$TMP/disk.img"
start_vm a --kernel "$GUEST" --memory 128M --cpus 2 --append "counter spin=10000000" \
    --disk "file=$TMP/disk.img,format=raw,transport=pci"
wait_text "$TMP/a.out" "counter 2 ok"

# Requests whose replies do not depend on the machine: sent to cowvisor and
# to QEMU, replies compared (timestamps and the version package aside).
COMMON=(query-status qmp_capabilities qmp_capabilities bogus-command
        '{"execute": "query-status", "id": "req-1"}'
        '@raw:{"execute": "stop", "bogus": 1}'
        '@raw:[1, 2]'
        '@raw:{"execute": 5}'
        '@raw:{"arguments": {}}'
        '{"execute": "stop", "arguments": {"x": 1}}'
        '{"execute": "human-monitor-command"}'
        '{"execute": "human-monitor-command", "arguments": {"command-line": "bogus"}}'
        stop query-status stop
        '{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}'
        cont cont query-status
        '{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}'
        system_powerdown query-jobs)
normalize() {
    sed -E 's/"timestamp": \{"seconds": [0-9]+, "microseconds": [0-9]+\}/"timestamp": T/; s/"package": "[^"]*"/"package": P/; s/"micro": [0-9]+/"micro": M/; s/"capabilities": \[[^]]*\]/"capabilities": C/'
}
$QMP "$TMP/a.sock" "${COMMON[@]}" | normalize >"$TMP/ours.txt"
if command -v qemu-system-x86_64 >/dev/null; then
    timeout 30 qemu-system-x86_64 -accel tcg -machine none -nodefaults -display none \
        -qmp "unix:$TMP/qemu.sock,server,nowait" 2>"$TMP/qemu.err" &
    VM_PIDS+=($!)
    $QMP "$TMP/qemu.sock" "${COMMON[@]}" quit | normalize | head -n -2 >"$TMP/qemu.txt"
    if diff -u "$TMP/qemu.txt" "$TMP/ours.txt" >"$TMP/qmp.diff"; then
        ok "replies and events match QEMU's for $(wc -l <"$TMP/ours.txt") lines"
    else
        not_ok "replies and events differ from QEMU's"
        sed 's/^/# /' "$TMP/qmp.diff" | head -40
    fi
else
    not_ok "qemu-system-x86_64 is not installed: cannot compare"
fi
has() {  # has DESCRIPTION EXACT-LINE FILE
    check "$1" grep -qxF -- "$2" "$3"
}
has "greeting names QEMU 7.2's protocol" '{"QMP": {"version": {"qemu": {"micro": M, "minor": 2, "major": 7}, "package": P}, "capabilities": C}}' "$TMP/ours.txt"
has "commands before negotiation are refused" '{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with '"'"'qmp_capabilities'"'"'"}}' "$TMP/ours.txt"
has "unknown command: CommandNotFound" '{"error": {"class": "CommandNotFound", "desc": "The command bogus-command has not been found"}}' "$TMP/ours.txt"
has "the request id comes back" '{"return": {"status": "running", "singlestep": false, "running": true}, "id": "req-1"}' "$TMP/ours.txt"
has "stop: STOP event" '{"timestamp": T, "event": "STOP"}' "$TMP/ours.txt"
has "paused status" '{"return": {"status": "paused", "singlestep": false, "running": false}}' "$TMP/ours.txt"
has "cont: RESUME event" '{"timestamp": T, "event": "RESUME"}' "$TMP/ours.txt"
has "HMP info status" '{"return": "VM status: paused\r\n"}' "$TMP/ours.txt"
has "system_powerdown: POWERDOWN event" '{"timestamp": T, "event": "POWERDOWN"}' "$TMP/ours.txt"

# A paused guest does not run; cont lets it go on.
$QMP "$TMP/a.sock" qmp_capabilities stop >/dev/null
n1=$(counter_lines "$TMP/a.out" | wc -l)
sleep 0.5
n2=$(counter_lines "$TMP/a.out" | wc -l)
check_eq "a stopped guest prints nothing" "$n1" "$n2"
$QMP "$TMP/a.sock" qmp_capabilities cont >/dev/null
wait_text "$TMP/a.out" "counter $((n2 + 3)) ok"
check "after cont the guest counts on" test "$(counter_lines "$TMP/a.out" | wc -l)" -gt "$n2"

out=$($QMP "$TMP/a.sock" qmp_capabilities query-cpus-fast query-block)
check "query-cpus-fast lists both vCPUs" python3 -c '
import json, sys
r = [json.loads(l) for l in sys.stdin if "return" in l][1]["return"]
assert [c["cpu-index"] for c in r] == [0, 1] and all(c["target"] == "x86_64" and "qom-path" in c for c in r), r
import os
tids = [c["thread-id"] for c in r]
assert len(set(tids)) == 2 and all(os.path.exists("/proc/%s/task/%d" % (sys.argv[1], t)) for t in tids), tids' "$(vm_pid a)" <<<"$out"
check "query-block describes the disk" python3 -c '
import json, sys
r = [json.loads(l) for l in sys.stdin if "return" in l][2]["return"]
d = r[0]
assert d["device"] == "disk0" and d["inserted"]["drv"] == "raw" and d["inserted"]["file"].endswith("disk.img"), d
assert d["inserted"]["ro"] is False and d["inserted"]["image"]["virtual-size"] == 8 << 20, d' <<<"$out"

# Snapshots need qcow2 disks: clear refusals through HMP and jobs.
out=$($QMP "$TMP/a.sock" qmp_capabilities \
    '{"execute": "human-monitor-command", "arguments": {"command-line": "savevm s1"}}' \
    '{"execute": "snapshot-save", "arguments": {"job-id": "j1", "tag": "s1", "vmstate": "disk0", "devices": ["disk0"]}}' \
    '@sleep:0.3' query-jobs '{"execute": "job-dismiss", "arguments": {"id": "j1"}}' query-jobs \
    '{"execute": "snapshot-save", "arguments": {"job-id": "j2", "tag": "s1", "vmstate": "disk9", "devices": ["disk9"]}}' \
    '@sleep:0.3' query-jobs)
check "savevm on a raw disk: HMP error text" grep -qF '"Error: Device '"'"'disk0'"'"' is writable but does not support snapshots' <<<"$out"
check "job events: created, running, aborting, concluded" python3 -c '
import json, sys
ev = [json.loads(l)["data"]["status"] for l in sys.stdin if "JOB_STATUS_CHANGE" in l and "\"j1\"" in l]
assert ev == ["created", "running", "aborting", "concluded", "null"], ev' <<<"$out"
check "query-jobs shows the failed job with its error" grep -qF '"status": "concluded", "total-progress": 1, "type": "snapshot-save", "id": "j1", "error": "Device '"'"'disk0'"'"' is writable' <<<"$out"
check "unknown node: QEMU's message" grep -qF '"error": "No block device node '"'"'disk9'"'"'"' <<<"$out"

# External snapshot: the disk moves onto a new qcow2 overlay; the guest
# goes on reading its blocks through it.
out=$($QMP "$TMP/a.sock" qmp_capabilities \
    "{\"execute\": \"blockdev-snapshot-sync\", \"arguments\": {\"device\": \"disk0\", \"snapshot-file\": \"$TMP/overlay.qcow2\", \"format\": \"qcow2\"}}" \
    query-block \
    "{\"execute\": \"blockdev-snapshot-sync\", \"arguments\": {\"device\": \"nodisk\", \"snapshot-file\": \"$TMP/x.qcow2\"}}")
check "blockdev-snapshot-sync returns {}" grep -qxF '{"return": {}}' <<<"$out"
check "query-block: the overlay is on top of the old image" python3 -c '
import json, sys
r = [json.loads(l) for l in sys.stdin if "return" in l][2]["return"][0]["inserted"]
assert r["file"].endswith("overlay.qcow2") and r["drv"] == "qcow2" and r["backing_file_depth"] == 1, r
assert r["image"]["backing-image"]["filename"].endswith("disk.img"), r' <<<"$out"
check "unknown device: DeviceNotFound" grep -qxF '{"error": {"class": "DeviceNotFound", "desc": "Device '"'"'nodisk'"'"' not found"}}' <<<"$out"
at=$(counter_lines "$TMP/a.out" | tail -1)
wait_text "$TMP/a.out" "counter $((at + 20)) "
check_eq "the guest reads its disk through the overlay without failures" 0 "$(grep -c '^FAIL' "$TMP/a.out")"

# system_reset: RESET event, the guest boots again.
out=$($QMP "$TMP/a.sock" qmp_capabilities system_reset)
check "system_reset: RESET event from the host" grep -qF '"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}' <<<"$out"
wait_text "$TMP/a.out" "counter mode: 4096 pattern pages" && sleep 0.1
check_eq "the guest booted again" 2 "$(grep -c 'cowvisor test guest: hello' "$TMP/a.out")"

out=$($QMP "$TMP/a.sock" qmp_capabilities quit)
check "quit: SHUTDOWN event, then {}" bash -c 'grep -qF "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}" <<<"$1" && tail -1 <<<"$1" | grep -qxF "{\"return\": {}}"' _ "$out"
check_eq "quit: status 0" 0 "$(wait_vm a)"
if command -v qemu-img >/dev/null; then
    check "qemu-img sees the overlay's backing file" bash -c "qemu-img info -U '$TMP/overlay.qcow2' | grep -q 'backing file: $TMP/disk.img'"
    check "qemu-img check: the overlay is clean" qemu-img check "$TMP/overlay.qcow2"
fi

# The guest powers off: SHUTDOWN from the guest. Without nowait cowvisor
# waits for the client before the guest starts, as QEMU does.
rm -f "$TMP/b.sock"
( timeout 30 "$COWVISOR" --kernel "$GUEST" --memory 64M --append poweroff --console "file:$TMP/b.out" \
      --qmp "unix:$TMP/b.sock,server" 2>"$TMP/b.err"; echo $? >"$TMP/b.status" ) &
VM_PIDS+=($!)
out=$($QMP "$TMP/b.sock" qmp_capabilities '@wait:SHUTDOWN')
check "guest power off: SHUTDOWN from the guest" grep -qF '"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}' <<<"$out"
check_eq "guest power off: status 0" 0 "$(wait_vm b)"

# The guest resets itself (i8042), then exits: RESET from the guest.
# QEMU's newer spelling server=on,wait=on works too.
rm -f "$TMP/c.sock"
( timeout 30 "$COWVISOR" --kernel "$GUEST" --memory 64M --append "reset exit=0" --console "file:$TMP/c.out" \
      --qmp "unix:$TMP/c.sock,server=on,wait=on" 2>"$TMP/c.err"; echo $? >"$TMP/c.status" ) &
VM_PIDS+=($!)
out=$($QMP "$TMP/c.sock" qmp_capabilities '@wait:RESET')
check "guest reset: RESET from the guest" grep -qF '"event": "RESET", "data": {"guest": true, "reason": "guest-reset"}' <<<"$out"
check_eq "guest reset, then debug exit 0: status 1" 1 "$(wait_vm c)"

# Bad --qmp arguments.
timeout 10 "$COWVISOR" --kernel "$GUEST" --append exit=0 --qmp tcp:localhost:4444 >/dev/null 2>"$TMP/e.err"
check_eq "--qmp tcp: refused" 255 "$?"
check "... with a message" grep -q "only unix:PATH" "$TMP/e.err"
timeout 10 "$COWVISOR" --kernel "$GUEST" --append exit=0 --qmp "unix:$TMP/e.sock,server,bogus" >/dev/null 2>"$TMP/e2.err"
check "--qmp with an unknown option names it" grep -q "bogus" "$TMP/e2.err"
done_testing
